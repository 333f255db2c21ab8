//! `subledger verify`: checks a whole data directory and prints a summary.
//!
//! In one pass over the log it checks the hash chain and gap-free
//! sequences, each stream's gap-free versions, the double-entry rules of
//! every posting, and folds every event into fresh projections, whose
//! `apply_recorded` checks every other rule. At the sequence number of
//! each stored projection snapshot it compares the snapshot's state hash
//! with the replayed state's. After the pass it checks that the stream
//! index agrees with the events and that the ledger balances sum to zero.
//! It stops at the first break and names its sequence number.
//!
//! Someone who rewrites the log from some event on and recomputes every
//! later hash leaves a chain that holds. Anchors catch that: an auditor
//! keeps the chain head a run prints (`SEQ:HASH`) outside the system and
//! passes it to a later run with `--anchor`, which checks that event `SEQ`
//! still has that hash.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use rust_decimal::Decimal;

use crate::audit::chain::{Break, ChainReader, ScanError};
use crate::audit::progress::Progress;
use crate::audit::{log_dir, open_data_dir, Output, Verdict};
use crate::domain::events::{BalancePosted, Event};
use crate::domain::ids::Sid;
use crate::domain::money::{checked_add, format_amount, Currency};
use crate::projection::{subaccount_ledger_name, SnapshotError, State};
use crate::store::{ChainHead, EventStore, RawEvent, SnapshotFile, StoredSnapshot};

/// A projection snapshot whose state equals the replayed state.
struct SnapshotCheck {
    seq: u64,
    state_hash: String,
}

/// The replayed state and what the pass has seen so far.
struct Replay {
    state: State,
    /// Each stream's events in version order, as read from the events.
    streams: HashMap<Sid, Vec<u64>>,
    /// Snapshots still to compare, oldest first.
    pending_snapshots: Vec<StoredSnapshot>,
    checked_snapshots: Vec<SnapshotCheck>,
    /// The snapshot files in the data directory, readable or not.
    snapshot_files: usize,
}

/// Event hashes recorded by an earlier run, by sequence number.
type Anchors = BTreeMap<u64, [u8; 32]>;

/// Parses `--anchor` values: a sequence number, a colon and the event's
/// hash in hex, as the `chain head` line of a run shows them.
fn parse_anchors(texts: &[String]) -> anyhow::Result<Anchors> {
    let mut anchors = Anchors::new();
    for text in texts {
        let invalid = || {
            anyhow::anyhow!(
                "--anchor must be SEQ:HASH, an event's sequence number and its 64 hex digit \
                 hash, not {text:?}"
            )
        };
        let (seq, hash) = text.split_once(':').ok_or_else(invalid)?;
        let seq: u64 = seq.trim().parse().map_err(|_| invalid())?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hash.trim(), &mut bytes).map_err(|_| invalid())?;
        if seq == 0 {
            return Err(invalid());
        }
        anchors.insert(seq, bytes);
    }
    Ok(anchors)
}

/// Runs every check and prints the summary to stdout. `anchors` are
/// `SEQ:HASH` values an earlier run printed.
pub fn run(data_dir: &Path, anchors: &[String]) -> anyhow::Result<Verdict> {
    let anchors = parse_anchors(anchors)?;
    let store = open_data_dir(data_dir)?;
    let head = store.head();
    let snapshot_files = SnapshotFile::list(&log_dir(data_dir))?.len();
    let mut snapshots: Vec<_> = store.snapshots()?.collect();
    snapshots.sort_by_key(|snapshot| snapshot.seq);

    let mut out = Output::open(None)?;
    writeln!(out, "data directory  {}", data_dir.display())?;
    let mut replay = Replay {
        state: State::default(),
        streams: HashMap::new(),
        snapshot_files,
        pending_snapshots: snapshots,
        checked_snapshots: Vec::new(),
    };
    let result = check_all(store.as_ref(), head, &anchors, &mut replay);
    write_summary(&mut out, head, anchors.len(), &replay, result.as_ref().err())?;
    out.finish()?;
    match result {
        Ok(()) => Ok(Verdict::Passed),
        Err(ScanError::Break(found)) => {
            tracing::error!(seq = found.seq, reason = %found.reason, "verification failed");
            Ok(Verdict::Failed)
        }
        Err(ScanError::Store(error)) => Err(error.into()),
    }
}

fn check_all(
    store: &dyn EventStore,
    head: ChainHead,
    anchors: &Anchors,
    replay: &mut Replay,
) -> Result<(), ScanError> {
    // The pass over the log: chain, anchors, versions, postings,
    // projections and snapshots, event by event.
    let mut progress = Progress::start("verifying the event log", head.seq);
    let mut reader = ChainReader::from_start(store.read_raw_from(1));
    for raw in reader.by_ref() {
        let raw = raw?;
        check_anchor(anchors, &raw)?;
        replay.fold(&raw)?;
        progress.advance();
    }
    progress.finish();
    reader.check_end(head)?;

    if let Some((seq, _)) = anchors.range(head.seq + 1..).next() {
        let reason =
            format!("missing: an anchor names event {seq}, but the log ends at {}", head.seq);
        return Err(Break::new(head.seq + 1, reason).into());
    }

    // A snapshot beyond the head means the log lost its newest events.
    if let Some(snapshot) = replay.pending_snapshots.first() {
        let reason = format!(
            "missing: a projection snapshot was taken at event {}, but the log ends at {}",
            snapshot.seq, head.seq
        );
        return Err(Break::new(head.seq + 1, reason).into());
    }

    check_stream_index(store, &replay.streams)?;
    check_ledger(&replay.state)?;
    Ok(())
}

fn check_anchor(anchors: &Anchors, raw: &RawEvent) -> Result<(), Break> {
    match anchors.get(&raw.seq) {
        Some(expected) if *expected != raw.hash => {
            let reason = format!(
                "its hash {} differs from the anchor {}: the log was rewritten at or before it",
                hex::encode(raw.hash),
                hex::encode(expected)
            );
            Err(Break::new(raw.seq, reason))
        }
        _ => Ok(()),
    }
}

impl Replay {
    /// Decodes one chain-checked event and folds it in.
    fn fold(&mut self, raw: &RawEvent) -> Result<(), Break> {
        let seq = raw.seq;
        let recorded = raw.decode().map_err(|error| Break::new(seq, error.to_string()))?;

        let versions = self.streams.entry(recorded.stream).or_default();
        let expected_version = versions.len() as u64 + 1;
        if recorded.version != expected_version {
            let reason = format!(
                "stream {} jumps to version {}, expected version {expected_version}",
                recorded.stream, recorded.version
            );
            return Err(Break::new(seq, reason));
        }
        versions.push(seq);

        if let Event::BalanceToppedUp(posting) | Event::BalanceAdjusted(posting) = &recorded.event {
            check_posting(seq, posting)?;
        }
        self.state.apply_recorded(&recorded).map_err(|error| Break::new(seq, error.reason))?;
        self.compare_snapshot(seq)
    }

    /// Compares the oldest pending snapshot with the state when the replay
    /// has reached its sequence number.
    fn compare_snapshot(&mut self, seq: u64) -> Result<(), Break> {
        let Some(snapshot) = self.pending_snapshots.first() else {
            return Ok(());
        };
        if snapshot.seq != seq {
            return Ok(());
        }
        let snapshot = self.pending_snapshots.remove(0);
        let stored = match State::decode(&snapshot.bytes) {
            Ok(stored) => stored,
            // A snapshot without this build's format prefix, as an older
            // build wrote it, is skipped as a start skips it, because there
            // is no state to compare.
            Err(SnapshotError::Format) => {
                tracing::warn!(seq, "projection snapshot of another format is not compared");
                return Ok(());
            }
            Err(error) => {
                let reason = format!("the projection snapshot taken here does not decode: {error}");
                return Err(Break::new(seq, reason));
            }
        };
        let replayed_hash = self.state.state_hash();
        let stored_hash = stored.state_hash();
        if stored_hash != replayed_hash {
            let reason = format!(
                "the projection snapshot taken here has state hash {stored_hash}, \
                 the replayed state has {replayed_hash}"
            );
            return Err(Break::new(seq, reason));
        }
        self.checked_snapshots.push(SnapshotCheck { seq, state_hash: stored_hash });
        Ok(())
    }
}

/// Checks the double-entry rules of one posting: two legs summing to zero,
/// and a prepaid balance that stays at or above zero.
fn check_posting(seq: u64, posting: &BalancePosted) -> Result<(), Break> {
    let [first, second] = &posting.legs;
    if checked_add(first.amount, second.amount) != Some(Decimal::ZERO) {
        let reason = format!(
            "transaction {} has legs {} ({}) and {} ({}), which do not sum to zero",
            posting.sid,
            format_amount(first.amount),
            first.account,
            format_amount(second.amount),
            second.account
        );
        return Err(Break::new(seq, reason));
    }
    if posting.balance_after < Decimal::ZERO {
        let reason = format!(
            "transaction {} leaves sub-account {} at {}, below zero",
            posting.sid,
            posting.account_sid,
            format_amount(posting.balance_after)
        );
        return Err(Break::new(seq, reason));
    }
    Ok(())
}

/// Checks that the stream index lists, for every stream, exactly the
/// events that name it, in version order.
fn check_stream_index(
    store: &dyn EventStore,
    streams: &HashMap<Sid, Vec<u64>>,
) -> Result<(), ScanError> {
    let mut first_break: Option<Break> = None;
    for (stream, from_events) in streams {
        let indexed = store.stream_sequences(*stream)?;
        let Some(found) = index_difference(*stream, from_events, &indexed) else {
            continue;
        };
        if first_break.as_ref().is_none_or(|earlier| found.seq < earlier.seq) {
            first_break = Some(found);
        }
    }
    match first_break {
        Some(found) => Err(found.into()),
        None => Ok(()),
    }
}

/// The first version at which a stream's index and its events disagree.
fn index_difference(stream: Sid, from_events: &[u64], indexed: &[u64]) -> Option<Break> {
    let versions = from_events.len().max(indexed.len());
    for index in 0..versions {
        let version = index + 1;
        let reason = match (from_events.get(index), indexed.get(index)) {
            (Some(event), Some(listed)) if event == listed => continue,
            (Some(event), Some(listed)) => {
                let reason = format!(
                    "the stream index lists event {listed} as version {version} of stream \
                     {stream}, but event {event} is that version"
                );
                return Some(Break::new((*event).min(*listed), reason));
            }
            (Some(event), None) => {
                let reason = format!(
                    "the stream index has no entry for version {version} of stream {stream}"
                );
                (*event, reason)
            }
            (None, Some(listed)) => {
                let reason = format!(
                    "the stream index lists event {listed} as version {version} of stream \
                     {stream}, which has no such version"
                );
                (*listed, reason)
            }
            (None, None) => unreachable!("index is below the longer list's length"),
        };
        return Some(Break::new(reason.0, reason.1));
    }
    None
}

/// Checks the ledger after the last event: per currency, all ledger
/// accounts sum to zero, and every sub-account's ledger balance equals its
/// balance and is not below zero.
fn check_ledger(state: &State) -> Result<(), Break> {
    let head = state.last_seq;
    for (currency, sum) in ledger_sums(state) {
        if !sum.is_zero() {
            let reason = format!(
                "the ledger accounts in {} sum to {}, not zero",
                currency.code(),
                format_amount(sum)
            );
            return Err(Break::new(head, reason));
        }
    }
    for account in state.accounts.values() {
        let name = subaccount_ledger_name(account.sid);
        let ledger = state.ledger_balances.get(&(name, account.currency)).copied();
        let seq = state
            .account_transactions
            .get(&account.sid)
            .and_then(|postings| postings.last())
            .and_then(|position| state.posting(position))
            .map_or(head, |posting| posting.seq);
        if ledger.unwrap_or(Decimal::ZERO) != account.balance {
            let reason = format!(
                "sub-account {} has balance {}, its ledger account {}",
                account.sid,
                format_amount(account.balance),
                format_amount(ledger.unwrap_or(Decimal::ZERO))
            );
            return Err(Break::new(seq, reason));
        }
        if account.balance < Decimal::ZERO {
            let reason = format!("sub-account {} is below zero", account.sid);
            return Err(Break::new(seq, reason));
        }
    }
    Ok(())
}

/// Sums every ledger account per currency. A sum beyond `Decimal`'s range
/// saturates, which the zero check then reports.
fn ledger_sums(state: &State) -> Vec<(Currency, Decimal)> {
    let mut sums: Vec<(Currency, Decimal)> = Vec::new();
    for ((_, currency), balance) in state.ledger_balances.iter() {
        match sums.iter_mut().find(|(known, _)| known == currency) {
            Some((_, sum)) => *sum = sum.saturating_add(*balance),
            None => sums.push((*currency, *balance)),
        }
    }
    sums.sort_by_key(|(currency, _)| currency.code());
    sums
}

fn write_summary(
    out: &mut Output,
    head: ChainHead,
    anchors: usize,
    replay: &Replay,
    failure: Option<&ScanError>,
) -> std::io::Result<()> {
    let state = &replay.state;
    let checked = match failure {
        None => format!("{} of {}", state.last_seq, head.seq),
        Some(_) => format!("{} of {} folded before the failure", state.last_seq, head.seq),
    };

    // What the pass read.
    writeln!(out, "events          {checked}")?;
    writeln!(out, "streams         {}", replay.streams.len())?;
    writeln!(out, "developers      {}", state.developers.len())?;
    writeln!(out, "accounts        {}", state.accounts.len())?;
    writeln!(out, "sip accounts    {}", state.sip_accounts.len())?;
    writeln!(out, "sip aliases     {}", state.sip_aliases.len())?;
    writeln!(out, "transactions    {}", state.transactions.len())?;

    // The chain head as SEQ:HASH, the form `--anchor` takes.
    writeln!(out, "chain head      {}:{}", head.seq, hex::encode(head.hash))?;
    if anchors > 0 && failure.is_none() {
        writeln!(out, "anchors         {anchors} hold")?;
    }

    // What the replay found.
    for (currency, sum) in ledger_sums(state) {
        writeln!(out, "ledger sum      {} {}", format_amount(sum), currency.code())?;
    }
    for snapshot in &replay.checked_snapshots {
        writeln!(
            out,
            "snapshot        event {}, state hash {} equals the replay's",
            snapshot.seq, snapshot.state_hash
        )?;
    }
    if replay.checked_snapshots.is_empty() && failure.is_none() {
        match replay.snapshot_files {
            0 => writeln!(out, "snapshot        none yet")?,
            _ => writeln!(out, "snapshot        none readable")?,
        }
    }

    match failure {
        None => {
            writeln!(out, "state hash      {}", state.state_hash())?;
            writeln!(out, "result          OK")?;
        }
        Some(ScanError::Break(found)) => {
            writeln!(out, "result          FAILED at event {}: {}", found.seq, found.reason)?;
        }
        Some(ScanError::Store(error)) => {
            writeln!(out, "result          FAILED: {error}")?;
        }
    }
    Ok(())
}
