//! Unit tests of the sled log's journal: redo at open, removal of an
//! unfinished write, torn and stale records, chain checks, and switching
//! between the journal files. Also the store's snapshot methods over the
//! snapshot files, and `open_events_tree` on logs and on other directories.
//!
//! sled flushes everything when a store is dropped, so a batch that sled
//! lost in a crash is simulated by a record written to the journal alone.

use std::os::unix::fs::FileExt;
use std::path::Path;

use chrono::Utc;

use super::*;
use crate::domain::events::{Actor, DeveloperCreated, Event, EventMeta};
use crate::domain::ids::SidKind;
use crate::store::journal::Appended;

/// Journal file size for tests that switch files: a few small batches fill
/// one, so a test switches several times in milliseconds.
const SMALL_JOURNAL_BYTES: u64 = 8 * 1024;

/// Hands out events on one stream that continue the log.
struct Source {
    stream: Sid,
    next_seq: u64,
    next_version: u64,
}

impl Source {
    fn new() -> Source {
        Source { stream: Sid::generate(SidKind::Developer), next_seq: 1, next_version: 1 }
    }

    fn batch(&mut self, size: usize) -> Vec<PendingEvent> {
        (0..size).map(|_| self.next()).collect()
    }

    fn next(&mut self) -> PendingEvent {
        let seq = self.next_seq;
        let version = self.next_version;
        self.next_seq += 1;
        self.next_version += 1;
        let created = DeveloperCreated {
            sid: self.stream,
            name: format!("developer {seq}"),
            api_key_sha256: "ab".repeat(32),
        };
        let meta = EventMeta {
            recorded_at: Utc::now(),
            actor: Actor::Platform,
            request_id: format!("{seq:032x}"),
            idempotency: None,
        };
        PendingEvent {
            seq,
            stream: self.stream,
            version,
            meta,
            event: Event::DeveloperCreated(created),
        }
    }
}

/// Seals `events` after `prev_hash` and writes their record to the
/// journal alone, synced, as if sled had lost the batch. Returns the head
/// the batch leads to.
fn journal_only(store: &SledStore, events: &[PendingEvent], prev_hash: [u8; 32]) -> ChainHead {
    let mut hash = prev_hash;
    let mut values = Vec::new();
    for pending in events {
        let (value, next) = seal(pending, &hash);
        values.push(value);
        hash = next;
    }
    let mut state = store.state();
    let entries = events
        .iter()
        .zip(&values)
        .map(|(pending, value)| (pending.seq, pending.stream, pending.version, &value[..]));
    let appended = state.journal.append(entries).expect("write the journal record");
    assert_eq!(appended, Appended::Written, "the record fits the journal");
    state.journal.active_file().sync_data().expect("sync the journal");
    let last = events.last().expect("a batch has events");
    ChainHead { seq: last.seq, hash }
}

fn reopen(store: SledStore, path: &Path) -> StoreResult<SledStore> {
    drop(store);
    open_unlocked(path)
}

/// Opens the log once the previous `SledStore` in this process has let go
/// of it. sled's background threads can keep its database file, and so
/// its lock, open for a moment after the store is dropped.
fn open_unlocked(path: &Path) -> StoreResult<SledStore> {
    open_unlocked_reading(path, IndexReading::AtOpen)
}

/// Opens the log like `open_unlocked`, reading the stream index when
/// `reading` selects.
fn open_unlocked_reading(path: &Path, reading: IndexReading) -> StoreResult<SledStore> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledStore::open_reading_index(path, reading) {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

fn damage_message(result: StoreResult<SledStore>) -> String {
    match result {
        Err(StoreError::Damaged(message)) => message,
        Err(other) => panic!("expected Damaged, got {other}"),
        Ok(_) => panic!("expected Damaged, the log opened"),
    }
}

/// Checks that events 1..=head are all present and chained.
fn assert_chained(store: &SledStore, head: ChainHead) {
    let mut prev = ChainHead::EMPTY;
    for raw in store.read_raw_from(1) {
        let raw = raw.expect("read an event");
        assert_eq!(raw.seq, prev.seq + 1, "event {} follows {}", raw.seq, prev.seq);
        assert_eq!(raw.prev_hash, prev.hash, "event {} chains", raw.seq);
        assert!(raw.hash_is_valid(), "event {} hash", raw.seq);
        prev = ChainHead { seq: raw.seq, hash: raw.hash };
    }
    assert_eq!(prev, head, "the log ends at the head");
}

#[test]
fn redo_lost_batch() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let kept_head = store.append(&source.batch(2)).expect("append");
    let lost = source.batch(3);
    let lost_head = journal_only(&store, &lost, kept_head.hash);
    assert!(store.read_raw(3).expect("read").is_none(), "sled lacks the lost batch");

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), lost_head, "head after redo");
    assert_chained(&store, lost_head);
    let sequences = store.stream_sequences(source.stream).expect("stream");
    assert_eq!(sequences, vec![1, 2, 3, 4, 5], "the stream index has the redone events");
    let (value, _) = seal(&lost[0], &kept_head.hash);
    let journaled = RawEvent::from_stored(3, &value).expect("split the sealed value");
    let stored = store.read_raw(3).expect("read").expect("event 3");
    assert_eq!(stored.body, journaled.body, "the redone body is the journaled one");
    assert_eq!(stored.hash, journaled.hash, "the redone hash is the journaled one");

    // Writing continues after the redone events, and they stay after
    // another open.
    let next = store.append(&source.batch(1)).expect("append after redo");
    assert_eq!(next.seq, 6, "next sequence");
    let store = reopen(store, dir.path()).expect("reopen again");
    assert_eq!(store.head(), next, "head after the second open");
    assert_chained(&store, next);
}

#[test]
fn torn_record_ignored() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let kept_head = store.append(&source.batch(2)).expect("append");
    journal_only(&store, &source.batch(2), kept_head.hash);

    // Flip the record's last byte, as a write cut short by a crash leaves it.
    let (file, end) = {
        let state = store.state();
        (state.journal.active_file(), state.journal.next_offset())
    };
    let mut byte = [0];
    file.read_exact_at(&mut byte, end - 1).expect("read the last byte");
    file.write_all_at(&[byte[0] ^ 0xff], end - 1).expect("write the last byte");

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), kept_head, "head without the torn batch");
    assert!(store.read_raw(3).expect("read").is_none(), "the torn batch is not redone");
    let mut retry = Source { stream: source.stream, next_seq: 3, next_version: 3 };
    let next = store.append(&retry.batch(1)).expect("append after the torn record");
    assert_eq!(next.seq, 3, "writing goes on from the kept_head head");
}

#[test]
fn earlier_generation_not_redone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let kept_head = store.append(&source.batch(2)).expect("append");
    journal_only(&store, &source.batch(2), kept_head.hash);

    // Two switches bring the journal back to the same file with a newer
    // generation and no records yet, so the old record follows its header.
    let generation = {
        let mut state = store.state();
        state.journal.start_generation().expect("switch to the other file");
        state.journal.start_generation().expect("switch back");
        state.journal.generation()
    };
    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), kept_head, "head without the old record");
    assert!(store.read_raw(3).expect("read").is_none(), "the old record is not redone");
    assert_eq!(store.state().journal.generation(), generation + 1, "open starts a newer one");
}

#[test]
fn unchained_record_damaged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    store.append(&source.batch(2)).expect("append");
    journal_only(&store, &source.batch(2), [7; 32]);

    let message = damage_message(reopen(store, dir.path()));
    assert!(message.contains("contains event 3"), "names the event: {message}");
    assert!(message.contains("does not chain"), "says why: {message}");
    assert!(message.contains("Restore the data directory"), "says what to do: {message}");
}

#[test]
fn gap_record_damaged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let kept_head = store.append(&source.batch(2)).expect("append");
    source.next_seq = 5;
    journal_only(&store, &source.batch(1), kept_head.hash);

    let message = damage_message(reopen(store, dir.path()));
    assert!(message.contains("contains event 5"), "names the event: {message}");
    assert!(message.contains("events 3 to 4"), "names the missing events: {message}");
}

#[test]
fn sync_makes_writes_durable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let first = store.write(&source.batch(2)).expect("write");
    assert_eq!(first.seq, 2, "written head");
    let second = store.write(&source.batch(1)).expect("write");
    assert_eq!(store.head(), ChainHead::EMPTY, "no durable head before a sync");
    assert_eq!(store.sync().expect("sync"), second, "sync covers both writes");
    assert_eq!(store.head(), second, "durable head after the sync");
    assert_eq!(store.sync().expect("sync again"), second, "a sync with nothing new");
}

#[test]
fn switching_files_keeps_batches() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open_with_journal(dir.path(), SMALL_JOURNAL_BYTES, IndexReading::AtOpen)
        .expect("open");
    let first_generation = store.state().journal.generation();
    let mut source = Source::new();
    let mut head = ChainHead::EMPTY;
    for _ in 0..20 {
        head = store.append(&source.batch(3)).expect("append");
    }
    let generation = store.state().journal.generation();
    assert!(generation >= first_generation + 3, "switched files: {generation}");
    let lost_head = journal_only(&store, &source.batch(2), head.hash);

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), lost_head, "head after redo");
    assert_chained(&store, lost_head);
    let length = std::fs::metadata(dir.path().join("journal-0")).expect("journal file").len();
    assert_eq!(length, SMALL_JOURNAL_BYTES, "a journal file keeps its size");
}

#[test]
fn oversized_batch_durable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open_with_journal(dir.path(), SMALL_JOURNAL_BYTES, IndexReading::AtOpen)
        .expect("open");
    let generation = store.state().journal.generation();
    let mut source = Source::new();
    let batch = source.batch(40);
    let head = store.write(&batch).expect("write a batch larger than a journal file");
    assert_eq!(store.head(), head, "sled's flush made it durable at once");
    assert_eq!(store.state().journal.generation(), generation, "no switch for it");
    let next = store.append(&source.batch(1)).expect("append after it");

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), next, "head after reopening");
    assert_chained(&store, next);
}

#[test]
fn missing_journal_file_damaged() {
    for name in ["journal-0", "journal-1"] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open");
        store.append(&Source::new().batch(1)).expect("append");
        drop(store);
        std::fs::remove_file(dir.path().join(name)).expect("remove a journal file");

        let message = damage_message(open_unlocked(dir.path()));
        assert!(message.contains(&format!("{name} is missing")), "names {name}: {message}");
    }
}

#[test]
fn interrupted_creation_completed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(Journal::open(dir.path(), SMALL_JOURNAL_BYTES).expect("create the journal files"));
    std::fs::remove_file(dir.path().join("journal-0")).expect("remove the second file created");

    let store = SledStore::open(dir.path()).expect("open after an interrupted creation");
    assert!(dir.path().join("journal-0").exists(), "journal-0 is created");
    let head = store.append(&Source::new().batch(1)).expect("append");
    assert_eq!(head.seq, 1, "the log works");
}

#[test]
fn log_without_journal_opens() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let head = store.append(&Source::new().batch(2)).expect("append");
    drop(store);
    for name in ["journal-0", "journal-1"] {
        std::fs::remove_file(dir.path().join(name)).expect("remove a journal file");
    }

    let store = open_unlocked(dir.path()).expect("open a log whose journal files are gone");
    assert_eq!(store.head(), head, "head from sled");
    assert!(dir.path().join("journal-0").exists(), "journal-0 is created again");
    assert!(dir.path().join("journal-1").exists(), "journal-1 is created again");
}

/// Inserts a batch's rows into sled without the chain head in `meta`, as a
/// write that a crash cut short leaves them.
fn sled_rows_only(store: &SledStore, events: &[PendingEvent], prev_hash: [u8; 32]) {
    let mut hash = prev_hash;
    for pending in events {
        let (value, next) = seal(pending, &hash);
        store.events.insert(seq_key(pending.seq), value).expect("insert the event");
        hash = next;
    }
}

#[test]
fn unfinished_write_removed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let kept_head = store.append(&source.batch(2)).expect("append");
    sled_rows_only(&store, &source.batch(3), kept_head.hash);

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), kept_head, "head without the unfinished batch");
    assert_chained(&store, kept_head);
    let sequences = store.stream_sequences(source.stream).expect("stream");
    assert_eq!(sequences, vec![1, 2], "the stream index lost the unfinished rows");

    // The removed sequence numbers and stream versions are free again.
    let mut again = Source { stream: source.stream, next_seq: 3, next_version: 3 };
    let next = store.append(&again.batch(1)).expect("append after the removal");
    assert_eq!(next.seq, 3, "next sequence");
}

/// Appends two events, then journals a batch of three whose first
/// `in_sled` events reach sled without the chain head, as a crash during
/// the write leaves them. Returns the head the journaled batch leads to.
fn journaled_past_head(store: &SledStore, source: &mut Source, in_sled: usize) -> ChainHead {
    let kept_head = store.append(&source.batch(2)).expect("append");
    let batch = source.batch(3);
    sled_rows_only(store, &batch[..in_sled], kept_head.hash);
    journal_only(store, &batch, kept_head.hash)
}

#[test]
fn unfinished_journaled_write_redone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let journaled_head = journaled_past_head(&store, &mut source, 1);

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), journaled_head, "head with the journaled batch");
    assert_chained(&store, journaled_head);
    let sequences = store.stream_sequences(source.stream).expect("stream");
    assert_eq!(sequences, vec![1, 2, 3, 4, 5], "the stream index has the whole batch");
}

#[test]
fn unchained_leftover_damaged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    store.append(&source.batch(2)).expect("append");
    sled_rows_only(&store, &source.batch(1), [7; 32]);

    let message = damage_message(reopen(store, dir.path()));
    assert!(message.contains("event 3"), "the message names the event: {message}");
}

/// Opens a log in `dir` with two events in sled and two more in the
/// journal alone, and returns it with its active journal file.
fn store_with_journaled_batch(dir: &Path) -> (SledStore, std::sync::Arc<File>) {
    let store = SledStore::open(dir).expect("open");
    let mut source = Source::new();
    let kept_head = store.append(&source.batch(2)).expect("append");
    journal_only(&store, &source.batch(2), kept_head.hash);
    let active = store.state().journal.active_file();
    (store, active)
}

#[test]
fn truncated_journal_damaged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, active) = store_with_journaled_batch(dir.path());
    active.set_len(JOURNAL_BYTES / 2).expect("cut the active journal file");
    drop(active);

    let message = damage_message(reopen(store, dir.path()));
    assert!(message.contains("differ in size"), "the message gives the reason: {message}");
}

#[test]
fn altered_journal_header_damaged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, active) = store_with_journaled_batch(dir.path());
    active.write_all_at(b"x", 0).expect("alter the header's magic");
    drop(active);

    let message = damage_message(reopen(store, dir.path()));
    assert!(message.contains("invalid header"), "the message gives the reason: {message}");
}

/// The key of an event's row in the `streams` tree of format 2: the
/// stream id in text form, then the version (u64 BE).
fn legacy_stream_key(stream: Sid, version: u64) -> Vec<u8> {
    let mut key = stream.to_string().into_bytes();
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Turns a log of the current format into one of `format`, which keeps
/// one `streams` row per event instead of the stream index rows.
fn make_legacy(store: &SledStore, format: &[u8]) {
    let legacy = store.db.open_tree(LEGACY_STREAMS_TREE).expect("open the streams tree");
    for raw in store.read_raw_from(1) {
        let raw = raw.expect("read an event");
        let recorded = raw.decode().expect("decode an event");
        let key = legacy_stream_key(recorded.stream, recorded.version);
        legacy.insert(key, &seq_key(raw.seq)[..]).expect("insert a streams row");
    }
    store.index_rows.clear().expect("clear the stream index rows");
    store.index_mut().mark_saved();
    store.meta.insert(META_FORMAT, format).expect("mark the format");
}

/// Appends events on two interleaved streams, in batches of three, and
/// returns the two streams and the new head.
fn append_two_streams(store: &SledStore, batches: usize) -> (Source, Source, ChainHead) {
    let mut first = Source::new();
    let mut second = Source::new();
    let mut head = store.head();
    for _ in 0..batches {
        let mut batch = Vec::new();
        for use_first in [true, false, true] {
            let source = if use_first { &mut first } else { &mut second };
            source.next_seq = head.seq + batch.len() as u64 + 1;
            batch.push(source.next());
        }
        head = store.append(&batch).expect("append");
    }
    (first, second, head)
}

#[test]
fn earlier_formats_converted() {
    for format in [FORMAT_NAME_V1, FORMAT_NAME_V2] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open");
        let (first, second, head) = append_two_streams(&store, 4);
        let first_sequences = store.stream_sequences(first.stream).expect("stream");
        assert_eq!(first_sequences, vec![1, 3, 4, 6, 7, 9, 10, 12]);
        make_legacy(&store, format);

        let store = reopen(store, dir.path()).expect("reopen a log of an earlier format");
        assert_eq!(store.head(), head, "head kept");
        let format = store.meta.get(META_FORMAT).expect("read the format").expect("a format");
        assert_eq!(format.as_ref(), FORMAT_NAME, "the format is version 3");
        let names = store.db.tree_names();
        assert!(!names.iter().any(|name| name == LEGACY_STREAMS_TREE), "streams tree dropped");
        assert_eq!(store.index_rows.len(), 1, "the converted index is saved");
        assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);
        assert_eq!(store.stream_sequences(second.stream).expect("stream"), vec![2, 5, 8, 11]);

        let store = reopen(store, dir.path()).expect("reopen the converted log");
        assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);
    }
}

#[test]
fn leftover_streams_tree_dropped() {
    // A crash after format 3 was durable but before the tree was dropped.
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    append_two_streams(&store, 1);
    make_legacy(&store, FORMAT_NAME);
    let store = reopen(store, dir.path()).expect("reopen");
    assert!(!store.db.tree_names().iter().any(|name| name == LEGACY_STREAMS_TREE));
}

#[test]
fn interrupted_removal_completed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let journaled_head = journaled_past_head(&store, &mut source, 3);
    // An oldest-first removal, cut short by a crash after its first step,
    // left events 4 and 5 without event 3.
    store.events.remove(seq_key(3)).expect("remove event 3");

    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.head(), journaled_head, "the journaled batch is redone");
    assert_chained(&store, journaled_head);
    assert_eq!(store.stream_sequences(source.stream).expect("stream"), vec![1, 2, 3, 4, 5]);
}

#[test]
fn damaged_head_named() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let head = store.append(&Source::new().batch(2)).expect("append");
    let far = ChainHead { seq: 1 << 40, hash: head.hash };
    store.meta.insert(META_HEAD, encode_head(far)).expect("damage the head");
    store.meta.insert(META_FORMAT, FORMAT_NAME_V2).expect("mark the log as version 2");

    let message = damage_message(reopen(store, dir.path()));
    assert!(
        message.contains("events tree ends at event 2"),
        "the message gives the reason: {message}"
    );
}

#[test]
fn stream_index_rebuilt_from_events() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open_with_journal(dir.path(), SMALL_JOURNAL_BYTES, IndexReading::AtOpen)
        .expect("open");
    let (first, second, head) = append_two_streams(&store, 20);
    assert!(store.index_rows.len() > 1, "switching journal files saved rows");
    let first_sequences = store.stream_sequences(first.stream).expect("stream");
    let second_sequences = store.stream_sequences(second.stream).expect("stream");
    assert_eq!(first_sequences.len() + second_sequences.len(), 60);

    // Rows saved while the store ran and at its close.
    let store = reopen(store, dir.path()).expect("reopen");
    assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);

    // Without the newest row, open reads those events instead.
    let (last_key, _) = store.index_rows.last().expect("read").expect("a row");
    store.index_rows.remove(last_key).expect("remove the newest row");
    let store = reopen(store, dir.path()).expect("reopen without the newest row");
    assert_eq!(store.head(), head);
    assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);
    assert_eq!(store.stream_sequences(second.stream).expect("stream"), second_sequences);
    let mut next = Source { stream: second.stream, next_seq: head.seq + 1, next_version: 21 };
    store.append(&next.batch(1)).expect("the next version of the stream");
}

/// Builds a log with two streams and lets `damage` alter its stream index
/// rows. Then checks that the next open rebuilds the index from the events
/// and saves it again.
fn assert_index_rebuilt(damage: impl FnOnce(&SledStore, ChainHead)) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let (first, second, head) = append_two_streams(&store, 30);
    let first_sequences = store.stream_sequences(first.stream).expect("stream");
    let store = reopen(store, dir.path()).expect("reopen");
    assert!(store.index_rows.len() > 1, "90 events take two rows");
    damage(&store, head);
    store.index_mut().mark_saved();

    let store = reopen(store, dir.path()).expect("reopen with a damaged stream index");
    assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);
    assert_eq!(store.stream_sequences(second.stream).expect("stream").len(), 30);
    let store = reopen(store, dir.path()).expect("reopen after the rebuild");
    let mut rebuilt = StreamIndex::default();
    for entry in store.index_rows.iter() {
        let (key, value) = entry.expect("read a row");
        rebuilt.load_row(&key, &value).expect("the saved rows are sound again");
    }
    assert_eq!(rebuilt.last_seq(), head.seq, "the rows cover every event");
}

/// Builds six events on two streams. After a clean close, saved rows
/// cover them all. After a crash, none does. Returns the open store.
fn two_streams_closed(dir: &Path, crashed: bool) -> SledStore {
    let store = SledStore::open(dir).expect("open");
    append_two_streams(&store, 2);
    if crashed {
        store.index_rows.clear().expect("clear the rows");
        store.index_mut().mark_saved();
        return store;
    }
    reopen(store, dir).expect("reopen after a clean close")
}

#[test]
fn broken_event_leaves_log_readable() {
    type Damage = fn(&SledStore);
    let removed: Damage = |store| {
        store.events.remove(seq_key(3)).expect("remove event 3");
    };
    let cut: Damage = |store| {
        let value = store.events.get(seq_key(3)).expect("read").expect("event 3");
        let mut value = value.to_vec();
        *value.last_mut().expect("a body") = b' ';
        store.events.insert(seq_key(3), value).expect("alter event 3");
    };
    // A log of format 2 that opens for reading only is not converted.
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = two_streams_closed(dir.path(), true);
    make_legacy(&store, FORMAT_NAME_V2);
    removed(&store);
    let store = reopen(store, dir.path()).expect("reopen a format-2 log with a gap");
    let format = store.meta.get(META_FORMAT).expect("read the format").expect("a format");
    assert_eq!(format.as_ref(), FORMAT_NAME_V2, "the format is kept");
    assert!(store.db.tree_names().iter().any(|name| name == LEGACY_STREAMS_TREE));
    drop(store);

    for (what, damage) in [("removed", removed), ("cut", cut)] {
        for crashed in [false, true] {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = two_streams_closed(dir.path(), crashed);
            damage(&store);
            let store = match reopen(store, dir.path()) {
                Ok(store) => store,
                Err(error) => panic!("event 3 {what}, crashed {crashed}: the open failed: {error}"),
            };
            // Reading the events goes on, so a check of the log can name the break.
            assert!(store.read_raw(2).expect("read event 2").is_some());
            if !crashed {
                continue;
            }
            assert_closed_past_break(&store);
        }
    }
}

/// Checks that a log of `two_streams_closed` whose stream index stops at
/// a break after event 2 rejects stream reads and writes.
fn assert_closed_past_break(store: &SledStore) {
    let rejected = store.stream_sequences(Sid::generate(SidKind::Account));
    let message = rejected.expect_err("no stream reads past a break").to_string();
    assert!(message.contains("past event 2"), "names the break: {message}");
    assert!(message.contains("subledger verify"), "names the command to run: {message}");
    let mut next = Source::new();
    next.next_seq = 7;
    let rejected = store.write(&next.batch(1)).expect_err("no writes past a break");
    assert!(rejected.to_string().contains("no more writes"), "{rejected}");
}

#[test]
fn damaged_stream_index_rebuilt() {
    assert_index_rebuilt(|store, _| {
        let (key, value) = store.index_rows.last().expect("read").expect("a row");
        let mut flipped = value.to_vec();
        flipped[6] ^= 0x40;
        store.index_rows.insert(key, flipped).expect("damage the row");
    });
    assert_index_rebuilt(|store, _| {
        let (key, _) = store.index_rows.first().expect("read").expect("a row");
        store.index_rows.remove(key).expect("remove the first row");
    });
}

#[test]
fn stream_index_past_head_rebuilt() {
    assert_index_rebuilt(|store, head| {
        let stray = Source::new();
        let mut index = StreamIndex::default();
        for seq in 1..=head.seq + 1 {
            index.push(seq, stray.stream, seq).expect("push");
        }
        store.index_rows.clear().expect("clear the rows");
        for (key, value) in index.unsaved_rows() {
            store.index_rows.insert(key, value).expect("insert a row");
        }
    });
}

#[test]
fn unknown_format_damaged() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    store.append(&Source::new().batch(1)).expect("append");
    store.meta.insert(META_FORMAT, &b"subledger-log-v9"[..]).expect("mark an unknown format");

    let message = damage_message(reopen(store, dir.path()));
    assert!(message.contains("unknown log format"), "the message gives the reason: {message}");
}

#[test]
fn foreign_db_file_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("db"), b"hello").expect("write a foreign db file");
    let message = damage_message(SledStore::open(dir.path()));
    assert!(message.contains("no conf file"), "names the missing conf file: {message}");
    let db_bytes = std::fs::read(dir.path().join("db")).expect("read the db file");
    assert_eq!(db_bytes, b"hello", "the foreign file is left as it was");
}

#[test]
fn legacy_snapshots_dropped() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(dir.path()).expect("open a fresh log");
    let legacy = store.db.open_tree(LEGACY_SNAPSHOT_TREE).expect("open the earlier tree");
    legacy.insert([0u8; 12], b"an earlier chunk".as_slice()).expect("insert a chunk");
    save_bytes(&store, 1, b"a snapshot").expect("save a snapshot");
    let names = store.db.tree_names();
    let legacy_present = names.iter().any(|name| name == LEGACY_SNAPSHOT_TREE);
    assert!(!legacy_present, "the earlier snapshot tree is dropped");
    let seqs: Vec<u64> = store.snapshots().expect("list").map(|snapshot| snapshot.seq).collect();
    assert_eq!(seqs, vec![1], "the snapshot file");
}

#[test]
fn snapshots_below_skip_newer() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(dir.path()).expect("open a fresh log");
    save_bytes(&store, 5, b"at 5").expect("save");
    save_bytes(&store, 9, b"at 9").expect("save");
    let all: Vec<u64> = store.snapshots().expect("list").map(|snapshot| snapshot.seq).collect();
    assert_eq!(all, vec![9, 5], "newest first");
    let below: Vec<u64> =
        store.snapshots_below(9).expect("list").map(|snapshot| snapshot.seq).collect();
    assert_eq!(below, vec![5], "below 9");
    assert_eq!(store.snapshots_below(5).expect("list").count(), 0, "nothing below 5");
}

/// Saves `bytes` as snapshot `seq`.
fn save_bytes(store: &SledStore, seq: u64, bytes: &[u8]) -> StoreResult<u64> {
    store.save_snapshot(seq, &mut |out| out.write_all(bytes))
}

/// Reopens the log with the stream index read in the background, and
/// checks that the open took that way.
fn reopen_in_background(store: SledStore, path: &Path) -> SledStore {
    drop(store);
    let store = open_unlocked_reading(path, IndexReading::Background).expect("reopen");
    assert!(store.index_reading.load(Ordering::Acquire), "the index is read in the background");
    store
}

/// The streams of every saved stream index row, which must cover events
/// 1 to `head` in order.
fn saved_rows_cover(store: &SledStore, head: ChainHead) {
    let mut saved = StreamIndex::default();
    for entry in store.index_rows.iter() {
        let (key, value) = entry.expect("read a row");
        saved.load_row(&key, &value).expect("the saved rows are sound");
    }
    assert_eq!(saved.last_seq(), head.seq, "the rows cover every event");
}

#[test]
fn index_read_in_background_matches() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open_with_journal(dir.path(), SMALL_JOURNAL_BYTES, IndexReading::AtOpen)
        .expect("open");
    let (first, second, head) = append_two_streams(&store, 20);
    let first_sequences = store.stream_sequences(first.stream).expect("stream");
    let second_sequences = store.stream_sequences(second.stream).expect("stream");

    // Without the newest row, as after a crash, the read in the background
    // reads those events and the join saves their row.
    let (last_key, _) = store.index_rows.last().expect("read").expect("a row");
    store.index_rows.remove(last_key).expect("remove the newest row");
    store.index_mut().mark_saved();
    let store = reopen_in_background(store, dir.path());
    assert_eq!(store.head(), head, "the head is known before the index");
    assert_eq!(store.read_raw(1).expect("read").map(|raw| raw.seq), Some(1));
    store.join_index_read().expect("the read succeeds");
    assert!(!store.index_reading.load(Ordering::Acquire), "the read is joined");
    store.join_index_read().expect("a second join returns at once");
    assert_eq!(store.read_only_reason(), None);
    assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);
    assert_eq!(store.stream_sequences(second.stream).expect("stream"), second_sequences);
    saved_rows_cover(&store, head);

    // A stream read without a join waits for the read.
    let store = reopen_in_background(store, dir.path());
    assert_eq!(store.stream_sequences(second.stream).expect("stream"), second_sequences);
    assert!(!store.index_reading.load(Ordering::Acquire), "the stream read joined it");
}

#[test]
fn write_waits_for_background_read() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let (_, second, head) = append_two_streams(&store, 10);

    let store = reopen_in_background(store, dir.path());
    // An empty index would take version 1 of the stream.
    let mut stale = Source { stream: second.stream, next_seq: head.seq + 1, next_version: 1 };
    let conflict = store.write(&stale.batch(1)).expect_err("version 1 exists");
    assert!(matches!(conflict, StoreError::VersionConflict { .. }), "{conflict}");

    let store = reopen_in_background(store, dir.path());
    let mut next = Source { stream: second.stream, next_seq: head.seq + 1, next_version: 11 };
    let head = store.append(&next.batch(1)).expect("the next version of the stream");
    assert_eq!(store.stream_sequences(second.stream).expect("stream").len(), 11);

    // A store dropped without any use of its index still saves its rows.
    store.index_rows.clear().expect("clear the rows");
    store.index_mut().mark_saved();
    let store = reopen_in_background(store, dir.path());
    drop(store);
    let store = open_unlocked(dir.path()).expect("reopen");
    saved_rows_cover(&store, head);
}

#[test]
fn broken_event_found_in_background() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = two_streams_closed(dir.path(), true);
    store.events.remove(seq_key(3)).expect("remove event 3");
    let store = reopen_in_background(store, dir.path());
    let reason = store.read_only_reason().expect("the reason waits for the read");
    assert!(reason.contains("past event 2"), "names the break: {reason}");
    assert!(!store.index_reading.load(Ordering::Acquire), "the reason joined the read");
    store.join_index_read().expect("a break is no failed read");
    let reason = store.read_only_reason().expect("the log takes no writes");
    assert!(reason.contains("past event 2"), "names the break after the join: {reason}");
    assert_closed_past_break(&store);
}

#[test]
fn redo_reads_index_at_open() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    let journaled_head = journaled_past_head(&store, &mut source, 1);
    drop(store);
    let store = open_unlocked_reading(dir.path(), IndexReading::Background).expect("reopen");
    assert!(!store.index_reading.load(Ordering::Acquire), "a redo reads the index at open");
    assert_eq!(store.head(), journaled_head, "head with the journaled batch");
    let sequences = store.stream_sequences(source.stream).expect("stream");
    assert_eq!(sequences, vec![1, 2, 3, 4, 5], "the stream index has the whole batch");
}

#[test]
fn writes_during_join_keep_rows() {
    // The writes race the join, and a round may miss the window in which
    // the join saves rows, so the test runs three rounds.
    for _ in 0..3 {
        write_during_join();
    }
}

/// Writes on another thread while the join of a read in the background
/// saves rows, and checks that every event still gets its row.
fn write_during_join() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    let mut source = Source::new();
    for _ in 0..20 {
        store.append(&source.batch(500)).expect("append");
    }
    // Without rows, as after a crash, the join saves 157 rows for the
    // 10,000 events, which gives writes on another thread time to run
    // meanwhile.
    store.index_rows.clear().expect("clear the rows");
    store.index_mut().mark_saved();
    let store = reopen_in_background(store, dir.path());

    let stream = Sid::generate(SidKind::Account);
    let mut writer = Source { stream, next_seq: source.next_seq, next_version: 1 };
    let head = std::thread::scope(|scope| {
        let writes = scope.spawn(|| {
            // Spins until the join below has taken the read, so that the
            // first write waits for it and then runs while the join saves
            // rows.
            while store.index_reading.load(Ordering::Acquire) && store.index_read.try_lock().is_ok()
            {
                std::hint::spin_loop();
            }
            let mut head = ChainHead::EMPTY;
            for _ in 0..200 {
                head = store.write(&writer.batch(1)).expect("write");
            }
            head
        });
        store.join_index_read().expect("the read succeeds");
        writes.join().expect("the writes do not panic")
    });
    assert_eq!(store.stream_sequences(stream).expect("stream").len(), 200);
    store.save_index().expect("save the rows");
    saved_rows_cover(&store, head);
}

#[test]
fn older_format_read_at_open() {
    for format in [FORMAT_NAME_V2, FORMAT_NAME] {
        // FORMAT_NAME with a `streams` tree is a conversion that a crash
        // cut short before the tree was dropped.
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SledStore::open(dir.path()).expect("open");
        let (first, _, head) = append_two_streams(&store, 4);
        let first_sequences = store.stream_sequences(first.stream).expect("stream");
        make_legacy(&store, format);
        drop(store);

        let store = open_unlocked_reading(dir.path(), IndexReading::Background).expect("reopen");
        assert!(!store.index_reading.load(Ordering::Acquire), "a conversion reads at open");
        assert_eq!(store.head(), head, "head kept");
        let format = store.meta.get(META_FORMAT).expect("read the format").expect("a format");
        assert_eq!(format.as_ref(), FORMAT_NAME, "the format is version 3");
        let names = store.db.tree_names();
        assert!(!names.iter().any(|name| name == LEGACY_STREAMS_TREE), "streams tree dropped");
        assert_eq!(store.index_rows.len(), 1, "the index is saved at open");
        assert_eq!(store.stream_sequences(first.stream).expect("stream"), first_sequences);
    }
}

/// Opens the `events` tree once the previous `SledStore` in this process
/// has let go of the log, as `open_unlocked` does.
fn open_events_tree_unlocked(path: &Path) -> StoreResult<sled::Tree> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledStore::open_events_tree(path) {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

fn tree_damage_message(result: StoreResult<sled::Tree>) -> String {
    match result {
        Err(StoreError::Damaged(message)) => message,
        Err(other) => panic!("expected Damaged, got {other}"),
        Ok(_) => panic!("expected Damaged, the events tree opened"),
    }
}

#[test]
fn events_tree_of_stopped_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SledStore::open(dir.path()).expect("open");
    store.append(&Source::new().batch(3)).expect("append");
    drop(store);

    let events = open_events_tree_unlocked(dir.path()).expect("the events tree opens");
    assert_eq!(events.len(), 3, "every event is in the tree");
}

#[test]
fn events_tree_of_open_log_locked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let _store = SledStore::open(dir.path()).expect("open");
    match SledStore::open_events_tree(dir.path()) {
        Err(StoreError::Locked(path)) => assert_eq!(path, dir.path(), "names the log"),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, the events tree opened"),
    }
}

#[test]
fn events_tree_of_missing_directory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("data").join("log");
    let message = tree_damage_message(SledStore::open_events_tree(&missing));
    assert!(message.contains("db file is missing"), "names the missing db file: {message}");
    assert!(!dir.path().join("data").exists(), "no directory is created");
}

#[test]
fn events_tree_of_foreign_db_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("db"), b"hello").expect("write a foreign db file");
    let message = tree_damage_message(SledStore::open_events_tree(dir.path()));
    assert!(message.contains("conf file is missing"), "names the missing conf file: {message}");
    let db_bytes = std::fs::read(dir.path().join("db")).expect("read the db file");
    assert_eq!(db_bytes, b"hello", "the foreign file is left as it was");
    assert!(!dir.path().join("conf").exists(), "no conf file is created");
}

#[test]
fn events_tree_of_other_sled_database() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = sled::open(dir.path()).expect("a sled database");
    db.open_tree("other").expect("a tree").insert("key", "value").expect("insert");
    db.flush().expect("flush");
    drop(db);

    let message = tree_damage_message(open_events_tree_unlocked(dir.path()));
    assert!(message.contains("events tree is missing"), "names the missing tree: {message}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::open(dir.path()) {
            Ok(db) => break db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(error) => panic!("the sled database does not open again: {error}"),
        }
    };
    let created = db.tree_names().iter().any(|name| name == b"events");
    assert!(!created, "no events tree is created");
}
