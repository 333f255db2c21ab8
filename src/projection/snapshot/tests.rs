use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::*;
use crate::domain::events::fixtures::{sub_account_created, top_up};
use crate::domain::events::{Actor, DeveloperCreated, Event, EventMeta};
use crate::domain::ids::SidKind;
use crate::projection::ApplyError;

/// A state with one developer and two sub-accounts, and a way to post to it.
#[derive(Clone)]
struct Ledger {
    state: State,
    developer: Sid,
    accounts: [Sid; 2],
    /// Postings made so far, which numbers the next one.
    postings: usize,
}

impl Ledger {
    fn new() -> Ledger {
        let developer = Sid::generate(SidKind::Developer);
        let accounts = [Sid::generate(SidKind::Account), Sid::generate(SidKind::Account)];
        let mut ledger = Ledger { state: State::default(), developer, accounts, postings: 0 };
        let created = DeveloperCreated {
            sid: developer,
            name: "Snapshot".to_string(),
            api_key_sha256: "00".repeat(32),
        };
        ledger.fold(Actor::Platform, Event::DeveloperCreated(created));
        for (index, sid) in accounts.iter().enumerate() {
            let login_id = format!("user{index}");
            let event = Event::SubAccountCreated(sub_account_created(*sid, developer, &login_id));
            ledger.fold(Actor::Developer(developer), event);
        }
        ledger
    }

    /// Builds a ledger with `postings` TOPUPs of 1.00 spread over the two
    /// sub-accounts, every other one with a reference.
    fn with_postings(postings: usize) -> Ledger {
        let mut ledger = Ledger::new();
        for _ in 0..postings {
            ledger.post();
        }
        ledger
    }

    fn fold(&mut self, actor: Actor, event: Event) {
        self.try_fold(actor, event).expect("the event applies");
    }

    fn try_fold(&mut self, actor: Actor, event: Event) -> Result<(), ApplyError> {
        let seq = self.state.last_seq + 1;
        let recorded_at = Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap();
        let meta = EventMeta { recorded_at, actor, request_id: String::new(), idempotency: None };
        let version = self.state.apply(seq, &meta, &event)?;
        let stored = self.state.stream_versions.get(&event.stream()).copied();
        assert_eq!(stored, Some(version), "apply returns the stream's new version");
        Ok(())
    }

    /// Posts the next TOPUP.
    fn post(&mut self) {
        let event = self.next_posting();
        self.fold(Actor::Developer(self.developer), event);
    }

    /// Returns the next TOPUP of 1.00, alternating between the sub-accounts.
    /// Even-numbered ones carry the reference `PAY-<number>`.
    fn next_posting(&mut self) -> Event {
        let index = self.postings;
        self.postings += 1;
        let account = self.accounts[index % self.accounts.len()];
        let balance = self.state.accounts[&account].balance;
        let amount = Decimal::ONE;
        let sid = Sid::generate(SidKind::Transaction);
        let reference = format!("PAY-{index}");
        let reference = index.is_multiple_of(2).then_some(reference.as_str());
        let posting = top_up(sid, account, self.developer, amount, balance + amount, reference);
        Event::BalanceToppedUp(posting)
    }
}

/// Reads the section count at the end of a snapshot.
fn section_count(bytes: &[u8]) -> u32 {
    let count = &bytes[bytes.len() - SECTION_COUNT_BYTES..];
    u32::from_le_bytes(count.try_into().expect("4 bytes"))
}

/// Returns the byte range of section `index`'s length in a snapshot's table.
fn length_range(bytes: &[u8], index: usize) -> std::ops::Range<usize> {
    let count = section_count(bytes) as usize;
    let table = bytes.len() - SECTION_COUNT_BYTES - count * SECTION_LENGTH_BYTES;
    let start = table + index * SECTION_LENGTH_BYTES;
    start..start + SECTION_LENGTH_BYTES
}

#[test]
fn hash_covers_canonical_encoding() {
    let state = Ledger::with_postings(300).state;
    let mut canonical = CANONICAL_PREFIX.to_vec();
    canonical.extend(postcard::to_stdvec(&state).expect("the state serializes"));
    let expected = hex::encode(Sha256::digest(&canonical));
    assert_eq!(state.state_hash(), expected, "the hash of the canonical encoding");
}

#[test]
fn decode_rejects_older_format() {
    // Builds before format version 2 started with the sequence number.
    let oldest = postcard::to_stdvec(&(5u64, 0u8)).expect("encodes");
    let result = State::decode(&oldest);
    assert!(matches!(result, Err(SnapshotError::Format)), "no prefix: {result:?}");

    // Version 2 was the canonical encoding.
    let state = Ledger::with_postings(3).state;
    let mut version_2 = Vec::new();
    state.encode_canonical_into(&mut version_2).expect("encodes");
    let result = State::decode(&version_2);
    assert!(matches!(result, Err(SnapshotError::Format)), "version 2: {result:?}");
}

#[test]
fn empty_state_round_trips() {
    let state = State::default();
    let bytes = state.encode();
    assert_eq!(section_count(&bytes), 2, "two view sections and no transactions");
    let decoded = State::decode(&bytes).expect("decodes");
    assert_eq!(decoded, state, "decoded state");
}

#[test]
fn postings_round_trip() {
    // 150 postings give each sub-account 75, past a short list's 64.
    let state = Ledger::with_postings(150).state;
    for per_section in [TRANSACTIONS_PER_SECTION, 7, 1] {
        let bytes = state.encode_sections(per_section);
        let expected_sections = 2 + 150usize.div_ceil(per_section);
        assert_eq!(section_count(&bytes) as usize, expected_sections, "{per_section} per section");
        let decoded = State::decode(&bytes).expect("decodes");
        let case = format!("{per_section} per section");
        assert_eq!(decoded.transaction_order, state.transaction_order, "posting order, {case}");
        assert_eq!(decoded.transactions, state.transactions, "transactions by sid, {case}");
        assert_eq!(decoded.account_transactions, state.account_transactions, "by account, {case}");
        assert_eq!(
            decoded.developer_transactions, state.developer_transactions,
            "by developer, {case}"
        );
        assert_eq!(decoded.references, state.references, "references, {case}");
        assert_eq!(decoded.ledger_balances, state.ledger_balances, "ledger balances, {case}");
        assert_eq!(decoded, state, "whole state, {case}");
        assert_eq!(decoded.state_hash(), state.state_hash(), "state hash, {case}");
    }
}

#[test]
fn sections_are_postcard_of_each_part() {
    // The sections stream into the output; their bytes must be those of
    // postcard encoding each part on its own, as earlier builds wrote.
    let state = Ledger::with_postings(20).state;

    let s = &state;
    let core = (
        &s.last_seq,
        &s.developers,
        &s.accounts,
        &s.account_order,
        &s.developer_accounts,
        &s.logins,
        &s.idempotency,
        &s.ledger_balances,
        &s.stream_versions,
    );
    let sip = (
        &s.sip_accounts,
        &s.account_sip_accounts,
        &s.account_sip_history,
        &s.sip_aliases,
        &s.sip_names,
    );
    let postings: Vec<&Transaction> = s.transaction_order.iter().collect();

    let mut sections = vec![
        postcard::to_allocvec(&core).expect("core encodes"),
        postcard::to_allocvec(&sip).expect("SIP views encode"),
    ];
    sections.extend(postings.chunks(8).map(|run| postcard::to_allocvec(run).expect("encodes")));

    let mut expected = SNAPSHOT_PREFIX.to_vec();
    for section in &sections {
        expected.extend_from_slice(section);
    }
    for section in &sections {
        expected.extend_from_slice(&(section.len() as u64).to_le_bytes());
    }
    expected.extend_from_slice(&(sections.len() as u32).to_le_bytes());

    assert_eq!(sections.len(), 5, "two view sections and three of postings");
    assert!(state.encode_sections(8) == expected, "the snapshot's bytes");
}

#[test]
fn decoded_state_keeps_folding() {
    let mut folded = Ledger::with_postings(20);
    let mut decoded = Ledger {
        state: State::decode(&folded.state.encode_sections(6)).expect("decodes"),
        ..folded.clone()
    };
    // Ten more postings into both, after the decoded indexes' sorted runs.
    let actor = Actor::Developer(folded.developer);
    for _ in 0..10 {
        let event = folded.next_posting();
        decoded.postings += 1;
        folded.fold(actor, event.clone());
        decoded.fold(actor, event);
    }
    assert_eq!(decoded.state.transactions.len(), 30, "postings by sid");
    assert_eq!(decoded.state, folded.state, "the same state");
    assert_eq!(decoded.state.state_hash(), folded.state.state_hash(), "the same hash");
    let developer = folded.developer;
    for reference in ["PAY-0", "PAY-18", "PAY-20", "PAY-28"] {
        let found = decoded.state.find_reference(developer, 4, reference).map(|found| found.sid());
        let expected =
            folded.state.find_reference(developer, 4, reference).map(|found| found.sid());
        assert!(found.is_some(), "{reference} is found");
        assert_eq!(found, expected, "{reference} finds the same posting");
    }

    // A reference from before the snapshot stays taken.
    let Event::BalanceToppedUp(mut repeated) = decoded.next_posting() else {
        unreachable!("next_posting returns a TOPUP");
    };
    repeated.refer_trans_id = Some("PAY-0".to_string());
    let result = decoded.try_fold(actor, Event::BalanceToppedUp(repeated));
    assert!(result.is_err(), "PAY-0 again is rejected: {result:?}");
}

#[test]
fn decode_rejects_repeated_posting() {
    let mut state = Ledger::with_postings(2).state;
    let first = state.transaction_order[0].clone();
    state.transaction_order.push_back(first);
    for per_section in [TRANSACTIONS_PER_SECTION, 1] {
        let result = State::decode(&state.encode_sections(per_section));
        let rejected =
            matches!(&result, Err(SnapshotError::Inconsistent(reason)) if reason.contains("twice"));
        assert!(rejected, "{per_section} per section: {result:?}");
    }
}

#[test]
fn decode_rejects_repeated_reference() {
    let mut state = Ledger::with_postings(2).state;
    let mut copy = state.transaction_order[0].fields();
    copy.sid = Sid::generate(SidKind::Transaction);
    let copy = Transaction::new(copy).expect("the copy is valid");
    state.transaction_order.push_back(copy);
    let result = State::decode(&state.encode());
    let rejected = matches!(&result, Err(SnapshotError::Inconsistent(reason)) if reason.contains("refer_trans_id"));
    assert!(rejected, "repeated reference: {result:?}");
}

#[test]
fn decode_rejects_unknown_account() {
    let mut state = Ledger::with_postings(2).state;
    let mut stray = state.transaction_order[1].fields();
    stray.sid = Sid::generate(SidKind::Transaction);
    stray.account = Sid::generate(SidKind::Account);
    let stray = Transaction::new(stray).expect("the stray is valid");
    state.transaction_order.push_back(stray);
    let result = State::decode(&state.encode());
    let rejected = matches!(&result, Err(SnapshotError::Inconsistent(reason)) if reason.contains("does not exist"));
    assert!(rejected, "unknown account: {result:?}");
}

#[test]
fn decode_rejects_damaged_sections() {
    let bytes = Ledger::with_postings(10).state.encode_sections(4);
    // Every cut of the snapshot, and one byte too many, fails without a panic.
    for length in 0..bytes.len() {
        let result = State::decode(&bytes[..length]);
        assert!(result.is_err(), "cut at {length} of {} bytes decodes", bytes.len());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let result = State::decode(&longer);
    assert!(matches!(result, Err(SnapshotError::Sections(_))), "a trailing byte: {result:?}");
    let mut longer = bytes.clone();
    longer.insert(SNAPSHOT_PREFIX.len(), 0);
    let result = State::decode(&longer);
    assert!(result.is_err(), "an extra byte before the sections decodes");

    // A section count far beyond the bytes.
    let mut counted = bytes.clone();
    let end = counted.len();
    counted[end - SECTION_COUNT_BYTES..].copy_from_slice(&u32::MAX.to_le_bytes());
    let result = State::decode(&counted);
    assert!(matches!(result, Err(SnapshotError::Sections(_))), "a huge count: {result:?}");

    // A length moved from the first section to the second.
    let mut shifted = bytes.clone();
    let (first, second) = (length_range(&bytes, 0), length_range(&bytes, 1));
    let first_length = u64::from_le_bytes(shifted[first.clone()].try_into().unwrap());
    let second_length = u64::from_le_bytes(shifted[second.clone()].try_into().unwrap());
    shifted[first].copy_from_slice(&(first_length - 1).to_le_bytes());
    shifted[second].copy_from_slice(&(second_length + 1).to_le_bytes());
    let result = State::decode(&shifted);
    assert!(result.is_err(), "a section boundary moved by one byte decodes");
}

#[test]
fn decode_error_names_section() {
    let bytes = Ledger::with_postings(10).state.encode_sections(4);
    let sections = sections_of(&bytes);
    // A map length far beyond the bytes left fails to decode in any
    // section, since each starts with a map or a vector's length.
    let garbage = [0xff; 10];
    let cases = [(0, "core views"), (1, "SIP views"), (2, "transactions")];
    for (index, name) in cases {
        let mut damaged = sections.clone();
        damaged[index] = &garbage;
        let result = State::decode(&snapshot_of(&damaged));
        let Err(error) = result else {
            panic!("section {index} of garbage decodes");
        };
        assert!(matches!(error, SnapshotError::Decode { .. }), "section {index}: {error:?}");
        let message = error.to_string();
        assert!(message.contains(&format!("snapshot's {name} section")), "{message}");
    }
}

#[test]
fn decoded_references_match() {
    let ledger = Ledger::with_postings(4);
    let decoded = State::decode(&ledger.state.encode()).expect("decodes");
    let first = &ledger.state.transaction_order[0];
    let developer = ledger.developer;
    let found = decoded.find_reference(developer, 4, "PAY-0").map(|found| found.sid());
    assert_eq!(found, Some(first.sid()), "PAY-0 finds the first posting");
    assert!(decoded.find_reference(developer, 5, "PAY-0").is_none(), "other pay method");
    assert!(decoded.find_reference(developer, 4, "PAY-1").is_none(), "posting without one");
}

/// Builds a snapshot of the given sections, with their table and count.
fn snapshot_of(sections: &[&[u8]]) -> Vec<u8> {
    let mut bytes = SNAPSHOT_PREFIX.to_vec();
    for section in sections {
        bytes.extend_from_slice(section);
    }
    for section in sections {
        bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
    }
    bytes.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    bytes
}

/// Returns the bytes of each section of a snapshot, in order.
fn sections_of(bytes: &[u8]) -> Vec<&[u8]> {
    let mut offset = SNAPSHOT_PREFIX.len();
    let mut sections = Vec::new();
    for index in 0..section_count(bytes) as usize {
        let length = u64::from_le_bytes(bytes[length_range(bytes, index)].try_into().unwrap());
        let end = offset + length as usize;
        sections.push(&bytes[offset..end]);
        offset = end;
    }
    sections
}

#[test]
fn uneven_sections_round_trip() {
    // Sections of postings whose lengths are not multiples of the 32 of a
    // chunk, empty ones among them, join into the same posting order, and
    // the decoded state folds more postings as the original does.
    let mut folded = Ledger::with_postings(150);
    let bytes = folded.state.encode();
    let views = sections_of(&bytes);
    assert_eq!(views.len(), 3, "two view sections and one of postings");
    let postings: Vec<&Transaction> = folded.state.transaction_order.iter().collect();
    let mut sections = vec![views[0].to_vec(), views[1].to_vec()];
    let mut start = 0;
    for length in [0, 1, 32, 5, 0, 64, 31, 17] {
        let run = &postings[start..start + length];
        sections.push(postcard::to_allocvec(run).expect("encodes"));
        start += length;
    }
    assert_eq!(start, postings.len(), "the sections contain every posting");
    let sections: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
    let decoded = State::decode(&snapshot_of(&sections)).expect("decodes");
    assert_eq!(decoded.transaction_order, folded.state.transaction_order, "posting order");
    assert_eq!(decoded, folded.state, "whole state");
    assert_eq!(decoded.state_hash(), folded.state.state_hash(), "state hash");

    let before: Vec<Transaction> = folded.state.transaction_order.iter().cloned().collect();
    let mut decoded = Ledger { state: decoded, ..folded.clone() };
    let published = decoded.state.clone();
    let actor = Actor::Developer(folded.developer);
    for _ in 0..40 {
        let event = folded.next_posting();
        decoded.postings += 1;
        folded.fold(actor, event.clone());
        decoded.fold(actor, event);
    }
    assert_eq!(decoded.state, folded.state, "the same state after 40 more postings");
    assert_eq!(decoded.state.state_hash(), folded.state.state_hash(), "the same hash");
    assert_eq!(published.transaction_order.len(), 150, "the published copy keeps its length");
    let published_postings: Vec<Transaction> =
        published.transaction_order.iter().cloned().collect();
    assert!(published_postings == before, "the published copy keeps its postings");
}

#[test]
fn decode_rejects_huge_map_length() {
    let sip = postcard::to_stdvec(&Ledger::new().state.sip_accounts).expect("encode");
    let sip = [sip.clone(), sip.clone(), sip.clone(), sip.clone(), sip].concat();
    // The core section's last_seq, then a map of developers whose length
    // claims far more entries than the section has bytes.
    for length in [1u64 << 40, u64::MAX >> 1] {
        let mut core = postcard::to_stdvec(&1u64).expect("encode");
        core.extend_from_slice(&postcard::to_stdvec(&length).expect("encode"));
        let result = State::decode(&snapshot_of(&[&core, &sip]));
        assert!(result.is_err(), "a map of {length} entries decodes");
    }
}

/// A snapshot in memory that records every range read from it, and fails
/// the read of the range at `fail_at`.
struct RecordingSource {
    bytes: Vec<u8>,
    reads: std::sync::Mutex<Vec<(u64, usize)>>,
    fail_at: Option<u64>,
}

impl SnapshotSource for RecordingSource {
    fn length(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, offset: u64, length: usize) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
        if self.fail_at == Some(offset) {
            return Err(std::io::Error::other("the disk failed"));
        }
        self.reads.lock().unwrap().push((offset, length));
        self.bytes.as_slice().read(offset, length)
    }
}

fn recording(bytes: Vec<u8>, fail_at: Option<u64>) -> RecordingSource {
    RecordingSource { bytes, reads: std::sync::Mutex::new(Vec::new()), fail_at }
}

#[test]
fn decode_from_reads_every_byte_once() {
    let ledger = Ledger::with_postings(10);
    let source = recording(ledger.state.encode_sections(4), None);
    let decoded = State::decode_from(&source).expect("decodes");
    assert_eq!(decoded, ledger.state, "the state that was encoded");
    let mut reads = source.reads.into_inner().unwrap();
    reads.sort_unstable();
    // The prefix, 2 view sections and 3 of transactions, the table, the count.
    assert_eq!(reads.len(), 8, "one read per part: {reads:?}");
    let mut next = 0;
    for (offset, length) in reads {
        assert_eq!(offset, next, "read at {offset} follows the one before");
        next += length as u64;
    }
    assert_eq!(next, source.bytes.len() as u64, "the reads end at the snapshot's end");
}

#[test]
fn decode_from_reports_failed_reads() {
    let bytes = Ledger::with_postings(10).state.encode_sections(4);
    let offsets = recording(bytes.clone(), None);
    State::decode_from(&offsets).expect("decodes");
    // Each read in turn fails, the core section's too, which the
    // transaction jobs wait for: the decode returns the error and no job
    // waits for ever.
    for (offset, _) in offsets.reads.into_inner().unwrap() {
        let result = State::decode_from(&recording(bytes.clone(), Some(offset)));
        let failed = matches!(&result, Err(SnapshotError::Read(error)) if error.to_string() == "the disk failed");
        assert!(failed, "a failed read at {offset}: {result:?}");
    }
}

#[test]
fn transaction_found_only_by_its_own_kind() {
    let state = Ledger::with_postings(2).state;
    for decoded in [false, true] {
        let state =
            if decoded { State::decode(&state.encode()).expect("decodes") } else { state.clone() };
        let sid = state.transaction_order[1].sid();
        let found = state.transaction(sid).map(|transaction| transaction.sid());
        assert_eq!(found, Some(sid), "by its sid, decoded {decoded}");
        let same_bits = Sid::new(SidKind::Account, sid.value());
        assert!(state.transaction(same_bits).is_none(), "by an account id, decoded {decoded}");
    }
}

/// A snapshot whose sub-accounts map each sid to the other sub-account's
/// record. The posting indexes are built in the order of the records'
/// sids, so the decode must reject it rather than panic.
#[test]
fn decode_rejects_account_under_another_sid() {
    let mut state = Ledger::with_postings(4).state;
    let sids: Vec<Sid> = state.accounts.iter().map(|(sid, _)| *sid).collect();
    let [first, second] = sids[..] else {
        panic!("the ledger has {} sub-accounts, expected 2", sids.len());
    };
    let first_account = Arc::clone(&state.accounts[&first]);
    let second_account = Arc::clone(&state.accounts[&second]);
    state.accounts.insert(first, second_account);
    state.accounts.insert(second, first_account);
    let bytes = state.encode();
    let result = std::panic::catch_unwind(|| State::decode(&bytes));
    let result = result.expect("the decode returns instead of panicking");
    assert!(matches!(result, Err(SnapshotError::Inconsistent(_))), "swapped records: {result:?}");
}

#[test]
fn developers_round_trip() {
    // Three developers whose sub-accounts interleave in sid order, one of
    // them without postings, and references used by two developers.
    let mut ledger = Ledger::new();
    let developers: Vec<Sid> = (0..3).map(|_| Sid::generate(SidKind::Developer)).collect();
    for (index, developer) in developers.iter().enumerate() {
        let created = DeveloperCreated {
            sid: *developer,
            name: format!("Developer {index}"),
            api_key_sha256: "00".repeat(32),
        };
        ledger.fold(Actor::Platform, Event::DeveloperCreated(created));
    }
    let mut accounts = Vec::new();
    for index in 0..12 {
        let account = Sid::generate(SidKind::Account);
        let developer = developers[index % 3];
        let created = sub_account_created(account, developer, &format!("other{index}"));
        ledger.fold(Actor::Developer(developer), Event::SubAccountCreated(created));
        accounts.push((account, developer));
    }
    // Each reference is unique within a developer and used by both
    // developers with postings.
    for round in 0..5 {
        for (index, (account, developer)) in accounts.iter().enumerate() {
            if *developer == developers[2] {
                continue;
            }
            let balance = ledger.state.accounts[account].balance;
            let reference = format!("SHARED-{round}-{}", index / 3);
            let sid = Sid::generate(SidKind::Transaction);
            let after = balance + Decimal::ONE;
            let posting = top_up(sid, *account, *developer, Decimal::ONE, after, Some(&reference));
            ledger.fold(Actor::Developer(*developer), Event::BalanceToppedUp(posting));
        }
    }
    ledger.post();
    let state = ledger.state;
    assert_eq!(state.developer_transactions.len(), 3, "postings by three developers");

    let decoded = State::decode(&state.encode_sections(5)).expect("decodes");
    assert_eq!(decoded.developer_transactions, state.developer_transactions, "by developer");
    assert_eq!(decoded.references, state.references, "references");
    assert_eq!(decoded, state, "whole state");
    for developer in &developers[..2] {
        let found = decoded.find_reference(*developer, 4, "SHARED-4-3").map(|found| found.sid());
        let expected = state.find_reference(*developer, 4, "SHARED-4-3").map(|found| found.sid());
        assert!(found.is_some(), "each developer has its own SHARED-4-3");
        assert_eq!(found, expected, "the same posting for its developer");
    }
}
