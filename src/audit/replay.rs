//! `subledger replay`: one sub-account's postings in log order, each with
//! the balance after it, and the balance as of a time.
//!
//! It reads only the sub-account's stream, through the stream index.
//! Each event's hash must match its body and its `prev_hash` must be the
//! hash of the event before it in the log, and each posting's balance must
//! follow from the one before, so a tampered posting stops the replay. The
//! balance as of `--until` follows the API's `at` rule: the balance after
//! every posting recorded at or before that time, zero before the first.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::audit::chain::{Break, ScanError};
use crate::audit::{open_data_dir, parse_time_arg, rfc3339, Output, ReportFormat, Verdict};
use crate::domain::events::{BalancePosted, Event};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::money::{checked_add, format_amount, Currency};
use crate::projection::PostingType;
use crate::store::{EventStore, RawEvent, RecordedEvent, GENESIS_HASH};

/// Arguments of `subledger replay`.
pub struct ReplayArgs<'a> {
    pub data_dir: &'a Path,
    pub account: &'a str,
    pub until: Option<&'a str>,
    pub format: ReportFormat,
}

/// One posting as the replay lists it.
struct Row {
    seq: u64,
    recorded_at: DateTime<Utc>,
    kind: PostingType,
    posting: BalancePosted,
}

/// Result of replaying one sub-account's stream.
struct AccountHistory {
    sid: Sid,
    developer: Sid,
    currency: Currency,
    /// Postings at or before `--until` (all of them without it).
    rows: Vec<Row>,
    /// Postings after `--until`, checked but not listed.
    later_postings: usize,
}

/// Replays the sub-account and prints its postings to stdout.
pub fn run(args: ReplayArgs<'_>) -> anyhow::Result<Verdict> {
    let sid = Sid::parse_kind(args.account, SidKind::Account).ok_or_else(|| {
        anyhow::anyhow!(
            "--account must be a sub-account sid: AC and 32 lower-case hex digits, not {:?}",
            args.account
        )
    })?;
    let until = args.until.map(|text| parse_time_arg("--until", text)).transpose()?;
    let store = open_data_dir(args.data_dir)?;
    let sequences = store.stream_sequences(sid)?;
    if sequences.is_empty() {
        anyhow::bail!("sub-account {sid} is not in the log of {}", args.data_dir.display());
    }

    let history = match read_history(store.as_ref(), sid, &sequences, until) {
        Ok(history) => history,
        Err(ScanError::Break(found)) => {
            tracing::error!(
                account = %sid,
                "replay failed at event {}: {}",
                found.seq,
                found.reason
            );
            return Ok(Verdict::Failed);
        }
        Err(ScanError::Store(error)) => return Err(error.into()),
    };
    let mut out = Output::open(None)?;
    match args.format {
        ReportFormat::Text => write_text(&mut out, &history, until)?,
        ReportFormat::Json => write_json(&mut out, &history, until)?,
    }
    out.finish()?;
    Ok(Verdict::Passed)
}

/// Reads and checks every event of the sub-account's stream, whose
/// sequence numbers the stream index lists (at least one).
fn read_history(
    store: &dyn EventStore,
    sid: Sid,
    sequences: &[u64],
    until: Option<DateTime<Utc>>,
) -> Result<AccountHistory, ScanError> {
    let mut history: Option<AccountHistory> = None;
    let mut balance = Decimal::ZERO;
    for (index, seq) in sequences.iter().copied().enumerate() {
        let recorded = read_linked(store, seq)?;
        let version = index as u64 + 1;
        if recorded.stream != sid || recorded.version != version {
            let reason = format!(
                "the stream index lists it as version {version} of {sid}, \
                 but it is version {} of {}",
                recorded.version, recorded.stream
            );
            return Err(Break::new(seq, reason).into());
        }
        match (&mut history, recorded.event) {
            (None, Event::SubAccountCreated(created)) => {
                history = Some(AccountHistory {
                    sid,
                    developer: created.developer_sid,
                    currency: created.currency,
                    rows: Vec::new(),
                    later_postings: 0,
                });
            }
            (None, _) => {
                let reason = format!("the first event of {sid} is not SubAccountCreated");
                return Err(Break::new(seq, reason).into());
            }
            (Some(history), Event::BalanceToppedUp(posting)) => {
                balance = follow_balance(seq, balance, &posting)?;
                history.add(seq, recorded.meta.recorded_at, PostingType::TopUp, posting, until);
            }
            (Some(history), Event::BalanceAdjusted(posting)) => {
                balance = follow_balance(seq, balance, &posting)?;
                history.add(
                    seq,
                    recorded.meta.recorded_at,
                    PostingType::Adjustment,
                    posting,
                    until,
                );
            }
            (Some(_), _) => {}
        }
    }
    Ok(history.expect("the loop ran at least once and the first event created the history"))
}

impl AccountHistory {
    fn add(
        &mut self,
        seq: u64,
        recorded_at: DateTime<Utc>,
        kind: PostingType,
        posting: BalancePosted,
        until: Option<DateTime<Utc>>,
    ) {
        if until.is_some_and(|until| recorded_at > until) {
            self.later_postings += 1;
        } else {
            self.rows.push(Row { seq, recorded_at, kind, posting });
        }
    }

    /// The balance after the last listed posting, zero before the first.
    fn balance(&self) -> Decimal {
        self.rows.last().map_or(Decimal::ZERO, |row| row.posting.balance_after)
    }
}

/// Reads one event and checks its hash and its link to the event before.
fn read_linked(store: &dyn EventStore, seq: u64) -> Result<RecordedEvent, ScanError> {
    let raw = read_listed(store, seq)?;
    if !raw.hash_is_valid() {
        let reason =
            "its stored hash does not match SHA-256(prev_hash ‖ body); the body was altered";
        return Err(Break::new(seq, reason).into());
    }
    let previous = match seq {
        1 => GENESIS_HASH,
        _ => read_listed(store, seq - 1)?.hash,
    };
    if raw.prev_hash != previous {
        let reason = format!("its prev_hash is not the hash of event {}", seq - 1);
        return Err(Break::new(seq, reason).into());
    }
    Ok(raw.decode()?)
}

fn read_listed(store: &dyn EventStore, seq: u64) -> Result<RawEvent, ScanError> {
    store.read_raw(seq)?.ok_or_else(|| {
        Break::new(seq, "missing from the log, though an index or a later event refers to it")
            .into()
    })
}

/// Checks that a posting's balance follows from the balance before it and
/// that its legs sum to zero; returns the new balance.
fn follow_balance(seq: u64, before: Decimal, posting: &BalancePosted) -> Result<Decimal, Break> {
    let [first, second] = &posting.legs;
    if checked_add(first.amount, second.amount) != Some(Decimal::ZERO) {
        return Err(Break::new(seq, format!("the legs of {} do not sum to zero", posting.sid)));
    }
    let expected = checked_add(before, posting.amount)
        .ok_or_else(|| Break::new(seq, "the balance overflows"))?;
    if expected != posting.balance_after {
        let reason = format!(
            "{} records balance {} after it, but {} + {} = {}",
            posting.sid,
            format_amount(posting.balance_after),
            format_amount(before),
            format_amount(posting.amount),
            format_amount(expected)
        );
        return Err(Break::new(seq, reason));
    }
    Ok(expected)
}

const TEXT_HEADER: [&str; 8] = [
    "seq",
    "date_created",
    "sid",
    "type",
    "amount",
    "pay_method",
    "refer_trans_id",
    "balance_after",
];

fn write_text(
    out: &mut Output,
    history: &AccountHistory,
    until: Option<DateTime<Utc>>,
) -> std::io::Result<()> {
    let currency = history.currency.code();
    writeln!(out, "account         {}", history.sid)?;
    writeln!(out, "developer       {}", history.developer)?;
    writeln!(out, "currency        {currency}")?;
    let until_text = until.map_or_else(|| "the end of the log".to_string(), rfc3339);
    writeln!(out, "until           {until_text}")?;
    writeln!(out)?;

    let rows: Vec<[String; 8]> = history
        .rows
        .iter()
        .map(|row| {
            [
                row.seq.to_string(),
                rfc3339(row.recorded_at),
                row.posting.sid.to_string(),
                row.kind.as_str().to_string(),
                format_amount(row.posting.amount),
                row.posting.pay_method.to_string(),
                row.posting.refer_trans_id.clone().unwrap_or_else(|| "-".to_string()),
                format_amount(row.posting.balance_after),
            ]
        })
        .collect();
    let mut widths = TEXT_HEADER.map(|name| name.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = TEXT_HEADER.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Amounts align right, everything else left.
            let cell = if column == 4 || column == 7 {
                format!("{cell:>width$}")
            } else {
                format!("{cell:<width$}")
            };
            line.push_str(&cell);
            line.push_str("  ");
        }
        writeln!(out, "{}", line.trim_end())?;
    }

    writeln!(out)?;
    writeln!(out, "postings        {}", history.rows.len())?;
    if until.is_some() {
        writeln!(out, "later postings  {}", history.later_postings)?;
    }
    writeln!(out, "balance         {} {currency}", format_amount(history.balance()))?;
    Ok(())
}

fn write_json(
    out: &mut Output,
    history: &AccountHistory,
    until: Option<DateTime<Utc>>,
) -> std::io::Result<()> {
    let postings: Vec<serde_json::Value> = history
        .rows
        .iter()
        .map(|row| {
            json!({
                "seq": row.seq,
                "date_created": rfc3339(row.recorded_at),
                "sid": row.posting.sid.to_string(),
                "type": row.kind.as_str(),
                "amount": format_amount(row.posting.amount),
                "pay_method": row.posting.pay_method,
                "refer_trans_id": row.posting.refer_trans_id,
                "desc": row.posting.desc,
                "balance_after": format_amount(row.posting.balance_after),
            })
        })
        .collect();
    let body = json!({
        "account_sid": history.sid.to_string(),
        "developer_sid": history.developer.to_string(),
        "currency": history.currency.code(),
        "until": until.map(rfc3339),
        "postings": postings,
        "later_postings": history.later_postings,
        "balance": format_amount(history.balance()),
    });
    serde_json::to_writer_pretty(&mut *out, &body)?;
    writeln!(out)
}
