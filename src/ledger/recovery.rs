//! Rebuilding the projections at start: load the newest projection snapshot
//! that passes its checks, then fold in the log's tail, checking the hash
//! chain of every event read. A snapshot that fails its check is skipped
//! with a warning, down to a full replay from the first event. A replay
//! reads and checks on one thread while it folds on another. A full replay
//! leaves the posting indexes to the end and builds them in bulk
//! (`projection::BulkFold`). The rebuilt state's hash is computed and
//! logged in the background.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Instant;

use crate::audit::progress::Progress;
use crate::projection::{ApplyError, BulkFold, SnapshotError, State};
use crate::store::{
    EventStore, RawEvent, RawEventIter, RecordedEvent, SnapshotFile, SnapshotSource, StoreError,
    GENESIS_HASH,
};

/// Default number of events between projection snapshots. At about 500
/// bytes an event this is a snapshot per ~50 MB of log, and a start replays
/// at most this many events after loading one.
pub const SNAPSHOT_INTERVAL_EVENTS_DEFAULT: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event {seq} breaks the hash chain: {reason}")]
    Chain { seq: u64, reason: String },
    #[error(transparent)]
    Apply(#[from] crate::projection::ApplyError),
    #[error("the log ends at {head} but replay stopped at {replayed}")]
    Incomplete { head: u64, replayed: u64 },
}

/// What a recovery did, for the start-up log line.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub state: State,
    pub snapshot_seq: Option<u64>,
    pub replayed_events: u64,
    /// Whether a full replay found projection snapshots and could use none.
    /// A log without any, such as a new one, replays in full without this.
    /// NOTE: `recover` without a preload does not count files whose header
    /// is unreadable, since `EventStore::snapshots` skips them with a warning.
    pub snapshots_unusable: bool,
}

/// The newest projection snapshot that decodes, read before the log was
/// open by `preload_snapshot`.
#[derive(Debug, Default)]
pub struct Preloaded {
    /// The snapshot's sequence number, the hash of the event there and its
    /// decoded state.
    snapshot: Option<(u64, [u8; 32], State)>,
    /// The oldest snapshot that the preload read or tried to read.
    /// `recover_with` reads only older ones, should it need any.
    oldest_tried: Option<u64>,
}

/// Reads and decodes the newest snapshot of `files` that decodes. A start
/// runs this on a thread of its own while the log opens: decoding needs no
/// log, which comes in only when `recover_with` checks the snapshot
/// against it.
pub fn preload_snapshot(files: Vec<SnapshotFile>) -> Preloaded {
    let mut preloaded = Preloaded::default();
    for file in files {
        preloaded.oldest_tried = Some(file.seq);
        let started = Instant::now();
        let Some(snapshot) = file.open() else {
            continue;
        };
        // The decode's jobs read and checksum the sections, so the CRC-32
        // is known only after the decode. A snapshot that fails it is
        // dropped, whatever it decoded to.
        let state = match State::decode_from(&snapshot) {
            Ok(state) if snapshot.check_crc() => state,
            Ok(_) => continue,
            Err(error) => {
                // Damage usually stops the decode before every byte is
                // read. Reading the whole file checks its CRC-32, so the
                // warning names damage rather than an undecodable format.
                if file.read().is_some() {
                    decode_snapshot(snapshot.seq, Err(error));
                }
                continue;
            }
        };
        let Some(state) = decode_snapshot(snapshot.seq, Ok(state)) else {
            continue;
        };
        tracing::debug!(
            seq = file.seq,
            bytes = snapshot.length(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "projection snapshot preloaded"
        );
        preloaded.snapshot = Some((snapshot.seq, snapshot.event_hash, state));
        break;
    }
    preloaded
}

/// Rebuilds the state from the newest good snapshot and the log's tail.
pub fn recover(store: &dyn EventStore) -> Result<Recovered, RecoveryError> {
    recover_with(store, Preloaded::default())
}

/// Rebuilds the state as `recover` does, starting with the snapshot that
/// `preloaded` decoded. Snapshots the preload tried are not read again.
pub fn recover_with(
    store: &dyn EventStore,
    preloaded: Preloaded,
) -> Result<Recovered, RecoveryError> {
    if let Some((seq, event_hash, state)) = preloaded.snapshot {
        if let Some(recovered) = start_from_snapshot(store, seq, event_hash, state)? {
            return Ok(recovered);
        }
    }
    let mut snapshots_unusable = preloaded.oldest_tried.is_some();
    let snapshots = match preloaded.oldest_tried {
        Some(seq) => store.snapshots_below(seq)?,
        None => store.snapshots()?,
    };
    for snapshot in snapshots {
        snapshots_unusable = true;
        if snapshot.seq > store.head().seq {
            // Checked before decoding, because a large snapshot takes long
            // to decode.
            warn_newer_than_log(store, snapshot.seq);
            continue;
        }
        let Some(state) = decode_snapshot(snapshot.seq, State::decode(&snapshot.bytes)) else {
            continue;
        };
        if let Some(recovered) =
            start_from_snapshot(store, snapshot.seq, snapshot.event_hash, state)?
        {
            return Ok(recovered);
        }
    }
    let (state, replayed_events) = replay_all(store)?;
    Ok(Recovered { state, snapshot_seq: None, replayed_events, snapshots_unusable })
}

/// Folds the whole log into a new state. The fold builds the posting
/// indexes at the end (`BulkFold`). Should the replay fail in any way, the
/// log is folded again one event at a time, which stops at the first event
/// that breaks it. That event may be a posting that fails a check left for
/// the end, followed by an event that fails as it is folded, a break in the
/// hash chain or the log's early end. Only the second fold names the posting.
pub fn replay_all(store: &dyn EventStore) -> Result<(State, u64), RecoveryError> {
    match replay_all_in_bulk(store) {
        Ok(replayed) => Ok(replayed),
        Err(error) => {
            tracing::warn!(%error, "full replay failed, so the log is folded again one event at a time to find the first event that breaks it");
            replay_tail(store, State::default(), GENESIS_HASH)
        }
    }
}

/// Folds the whole log with `BulkFold`. An error may name a later event
/// than the first that breaks the log. The fold's state is freed when this
/// returns, before a second replay starts.
fn replay_all_in_bulk(store: &dyn EventStore) -> Result<(State, u64), RecoveryError> {
    let head = store.head();
    let started = Instant::now();
    let mut fold = BulkFold::new();
    let events = store.read_raw_from(1);
    let replayed = replay_events(
        events,
        &mut |recorded| fold.apply_recorded(recorded),
        GENESIS_HASH,
        head.seq,
    )?;
    if fold.last_seq() != head.seq {
        return Err(RecoveryError::Incomplete { head: head.seq, replayed: fold.last_seq() });
    }
    let folded_ms = started.elapsed().as_millis() as u64;
    let state = fold.finish()?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(
        replayed = replayed.events,
        batches_decoded_by_reader = replayed.decoded_by_reader,
        batches_decoded_by_fold = replayed.decoded_by_fold,
        folded_ms,
        elapsed_ms,
        "replay finished, indexes built"
    );
    Ok((state, replayed.events))
}

/// Returns the state a snapshot at `seq` decoded to, or logs why it did not
/// decode, or is not at `seq`, and returns `None`.
fn decode_snapshot(seq: u64, decoded: Result<State, SnapshotError>) -> Option<State> {
    match decoded {
        Ok(state) if state.last_seq == seq => Some(state),
        Ok(state) => {
            tracing::warn!(
                snapshot_seq = seq,
                state_seq = state.last_seq,
                "projection snapshot does not match its sequence; skipping it"
            );
            None
        }
        Err(error) => {
            tracing::warn!(snapshot_seq = seq, %error, "projection snapshot does not decode; skipping it");
            None
        }
    }
}

fn warn_newer_than_log(store: &dyn EventStore, snapshot_seq: u64) {
    tracing::warn!(
        snapshot_seq,
        head = store.head().seq,
        "projection snapshot is newer than the log; skipping it"
    );
}

/// Folds the log's tail into a snapshot's state. Returns `None`, after a
/// warning, when the snapshot does not fit the log, so that the caller
/// tries an older start. A snapshot fits when the log's event `seq` has
/// `event_hash`, the hash of the event it was taken after, and the tail
/// folds into it.
fn start_from_snapshot(
    store: &dyn EventStore,
    seq: u64,
    event_hash: [u8; 32],
    state: State,
) -> Result<Option<Recovered>, RecoveryError> {
    if seq > store.head().seq {
        warn_newer_than_log(store, seq);
        return Ok(None);
    }
    // The tail must continue the chain from the snapshot's last event.
    let prev_hash = match store.read_raw(seq)? {
        Some(raw) if raw.hash == event_hash => raw.hash,
        Some(_) => {
            tracing::warn!(
                snapshot_seq = seq,
                "projection snapshot was taken after another event than the log's; skipping it"
            );
            return Ok(None);
        }
        None => {
            tracing::warn!(
                snapshot_seq = seq,
                "event of projection snapshot is missing; skipping it"
            );
            return Ok(None);
        }
    };
    match replay_tail(store, state, prev_hash) {
        Ok((state, replayed_events)) => {
            let snapshots_unusable = false;
            Ok(Some(Recovered {
                state,
                snapshot_seq: Some(seq),
                replayed_events,
                snapshots_unusable,
            }))
        }
        Err(error) => {
            tracing::warn!(snapshot_seq = seq, %error, "replay after projection snapshot failed; trying an older start");
            Ok(None)
        }
    }
}

/// Events per batch handed from the reading thread to the folding one: one
/// channel message per event would cost more than folding a small event.
const REPLAY_BATCH_EVENTS: usize = 512;
/// Batches the reading thread may run ahead of the fold, which bounds the
/// decoded events held in memory at once.
const REPLAY_BATCHES_AHEAD: usize = 8;
/// Batches waiting for the fold at which the reading thread decodes the
/// next batch itself. With fewer waiting, the folding thread would soon be
/// idle, so it gets the batch undecoded and decodes it as it folds.
const DECODE_HERE_FROM_WAITING: usize = 2;

/// The events a replay folded, and the batches that each thread decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Replayed {
    events: u64,
    decoded_by_reader: u64,
    decoded_by_fold: u64,
}

/// Events whose place in the hash chain the reading thread checked, and
/// that it decoded or left for the folding thread to decode.
enum Batch {
    Decoded(Vec<RecordedEvent>),
    Checked(Vec<RawEvent>),
}

/// Folds every event after `state.last_seq` into `state`, checking that each
/// one's hash is `SHA-256(prev_hash ‖ body)` and links to the one before.
pub fn replay_tail(
    store: &dyn EventStore,
    mut state: State,
    prev_hash: [u8; 32],
) -> Result<(State, u64), RecoveryError> {
    let head = store.head();
    let started = Instant::now();
    let tail_events = head.seq.saturating_sub(state.last_seq);
    let events = store.read_raw_from(state.last_seq + 1);
    let replayed = replay_events(
        events,
        &mut |recorded| state.apply_recorded(recorded),
        prev_hash,
        tail_events,
    )?;
    if state.last_seq != head.seq {
        return Err(RecoveryError::Incomplete { head: head.seq, replayed: state.last_seq });
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(
        replayed = replayed.events,
        batches_decoded_by_reader = replayed.decoded_by_reader,
        batches_decoded_by_fold = replayed.decoded_by_fold,
        elapsed_ms,
        "replay finished"
    );
    Ok((state, replayed.events))
}

/// Checks and decodes `events` and passes each to `fold`; returns how many
/// were folded, and which thread decoded how many batches. `tail_events` is the expected count, for progress reports.
///
/// Two threads share the work: one reads the stored events and checks the
/// chain, the other folds them into the state, and whichever would
/// otherwise wait decodes them (`DECODE_HERE_FROM_WAITING`). Events before
/// a broken or undecodable one are folded first, so an error names the
/// same event as a fold on one thread would.
fn replay_events(
    events: RawEventIter<'_>,
    fold: &mut dyn FnMut(&RecordedEvent) -> Result<(), ApplyError>,
    prev_hash: [u8; 32],
    tail_events: u64,
) -> Result<Replayed, RecoveryError> {
    let (batches, received) = mpsc::sync_channel(REPLAY_BATCHES_AHEAD);
    let (returned, folded) = mpsc::channel();
    let waiting = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let reader = Reader { batches, folded, waiting: &waiting };
        std::thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || reader.read_checked(events, prev_hash))
            .map_err(StoreError::Io)?;
        // `fold_batches` owns the receiving end: when it returns early, the
        // reader's next send fails and the reader stops, so the scope's
        // join cannot wait on a full channel.
        fold_batches(fold, received, returned, &waiting, tail_events)
    })
}

/// Folds the batches the reader sends, in order, decoding those it left
/// undecoded, and hands each decoded batch back to the reader for reuse.
fn fold_batches(
    fold: &mut dyn FnMut(&RecordedEvent) -> Result<(), ApplyError>,
    received: Receiver<Result<Batch, RecoveryError>>,
    folded: Sender<Vec<RecordedEvent>>,
    waiting: &AtomicUsize,
    tail_events: u64,
) -> Result<Replayed, RecoveryError> {
    let mut progress = Progress::start("replaying the event log", tail_events);
    let mut replayed = Replayed::default();
    for batch in received {
        waiting.fetch_sub(1, Ordering::AcqRel);
        match batch? {
            Batch::Decoded(batch) => {
                replayed.decoded_by_reader += 1;
                for recorded in &batch {
                    fold(recorded)?;
                    progress.advance();
                }
                // The reader drops the folded events because it allocated
                // them. A block freed on the thread that allocated it goes
                // back to that thread's cache, where the reader's next
                // allocations find it. When the reader has finished
                // already, the batch is dropped here.
                let _ = folded.send(batch);
            }
            Batch::Checked(batch) => {
                replayed.decoded_by_fold += 1;
                for raw in &batch {
                    fold(&check_hash_and_decode(raw)?)?;
                    progress.advance();
                }
            }
        }
    }
    progress.finish();
    replayed.events = progress.done();
    Ok(replayed)
}

/// The reading side of a replay: sends checked batches, and takes back
/// the decoded ones that the fold is done with.
struct Reader<'w> {
    batches: SyncSender<Result<Batch, RecoveryError>>,
    folded: Receiver<Vec<RecordedEvent>>,
    /// Batches sent and not yet taken by the fold.
    waiting: &'w AtomicUsize,
}

impl Reader<'_> {
    /// Checks each event's place in the hash chain and sends the events in
    /// batches, decoded when the fold is behind. The first error is sent
    /// after the events before it, and ends the reading. Stops early when
    /// the folding side has stopped listening.
    fn read_checked(&self, events: RawEventIter<'_>, mut prev_hash: [u8; 32]) {
        let mut batch = Vec::with_capacity(REPLAY_BATCH_EVENTS);
        for raw in events {
            match raw.map_err(RecoveryError::from).and_then(|raw| check_link(raw, &prev_hash)) {
                Ok(raw) => {
                    prev_hash = raw.hash;
                    batch.push(raw);
                }
                Err(error) => {
                    if !batch.is_empty() && !self.send_batch(batch) {
                        return;
                    }
                    let _ = self.send(Err(error));
                    return;
                }
            }
            if batch.len() == REPLAY_BATCH_EVENTS {
                if !self.send_batch(batch) {
                    return;
                }
                batch = Vec::with_capacity(REPLAY_BATCH_EVENTS);
            }
        }
        if !batch.is_empty() {
            self.send_batch(batch);
        }
    }

    /// Sends a checked batch, decoding it first when the fold has
    /// `DECODE_HERE_FROM_WAITING` batches or more waiting. An event that
    /// does not decode ends the batch: the events before it go first, then
    /// the error. Returns whether the reading should go on.
    fn send_batch(&self, batch: Vec<RawEvent>) -> bool {
        if self.waiting.load(Ordering::Acquire) < DECODE_HERE_FROM_WAITING {
            return self.send(Ok(Batch::Checked(batch)));
        }
        let mut decoded = match self.folded.try_recv() {
            Ok(mut reused) => {
                reused.clear();
                reused
            }
            Err(_) => Vec::with_capacity(REPLAY_BATCH_EVENTS),
        };
        for raw in &batch {
            match check_hash_and_decode(raw) {
                Ok(recorded) => decoded.push(recorded),
                Err(error) => {
                    if !decoded.is_empty() && !self.send(Ok(Batch::Decoded(decoded))) {
                        return false;
                    }
                    self.send(Err(error));
                    return false;
                }
            }
        }
        self.send(Ok(Batch::Decoded(decoded)))
    }

    /// Sends to the fold; returns whether it still listens.
    fn send(&self, batch: Result<Batch, RecoveryError>) -> bool {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.batches.send(batch).is_ok()
    }
}

/// Checks that a stored event follows `prev_hash`: the stored hashes link.
/// Whether its hash covers its body is checked where it is decoded
/// (`check_hash_and_decode`), on either thread.
fn check_link(raw: RawEvent, prev_hash: &[u8; 32]) -> Result<RawEvent, RecoveryError> {
    if raw.prev_hash != *prev_hash {
        let reason = "its prev_hash is not the hash of the event before".to_string();
        return Err(RecoveryError::Chain { seq: raw.seq, reason });
    }
    Ok(raw)
}

/// Checks that a stored event's hash covers its body, then decodes it. The
/// reading thread checked the link (`check_link`). A batch is checked and
/// decoded in order, so a replay stops at the first event that fails
/// either check, as a check on one thread would.
///
/// The SHA-256 of each body runs here rather than on the reading thread,
/// so that it goes to whichever thread has time: with the bodies of
/// postings read directly, the reading thread had become the slower one.
fn check_hash_and_decode(raw: &RawEvent) -> Result<RecordedEvent, RecoveryError> {
    if !raw.hash_is_valid() {
        let reason = "its hash does not match its contents".to_string();
        return Err(RecoveryError::Chain { seq: raw.seq, reason });
    }
    Ok(raw.decode()?)
}

/// Encodes and stores a projection snapshot, logging the outcome. A failed
/// snapshot only costs a longer replay at the next start.
pub fn write_snapshot(store: &dyn EventStore, state: &State) {
    let started = Instant::now();
    match store.save_snapshot(state.last_seq, &mut |out| state.encode_into(out)) {
        Ok(bytes) => tracing::info!(
            seq = state.last_seq,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "projection snapshot written"
        ),
        Err(error) => tracing::error!(seq = state.last_seq, %error, "projection snapshot failed"),
    }
}

/// Computes the state hash of the rebuilt projections on a thread of its own
/// and logs it with the sequence number it is for. A start does not wait for
/// it, because with 1,000,000 postings it took about 0.8 s on a 2-core VM
/// (`loadgen scale`). An operator compares it with the hash that `subledger
/// verify` prints. The clone shares the state's maps, so it costs little
/// memory until the writer changes them.
pub fn log_state_hash(state: State) {
    let spawned = std::thread::Builder::new().name("state-hash".into()).spawn(move || {
        let started = Instant::now();
        let state_hash = state.state_hash();
        tracing::info!(
            seq = state.last_seq,
            %state_hash,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state hash of the rebuilt projections"
        );
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "failed to start the state hash thread; the hash is not logged");
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use std::path::Path;

    use super::*;
    use rust_decimal::Decimal;

    use crate::domain::events::fixtures::{self, sub_account_created};
    use crate::domain::events::{Actor, DeveloperCreated, Event, EventMeta};
    use crate::domain::ids::{Sid, SidKind};
    use crate::store::{seal, PendingEvent, StoreResult};

    /// Events in the test logs: more than two batches, and a partial one.
    const EVENTS: u64 = 2 * REPLAY_BATCH_EVENTS as u64 + 276;

    fn developer_created(seq: u64, sid_value: u128) -> PendingEvent {
        let sid = Sid::new(SidKind::Developer, sid_value);
        PendingEvent {
            seq,
            stream: sid,
            version: 1,
            meta: EventMeta {
                recorded_at: Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap(),
                actor: Actor::Platform,
                request_id: format!("req-{seq}"),
                idempotency: None,
            },
            event: Event::DeveloperCreated(DeveloperCreated {
                sid,
                name: format!("Developer {seq}"),
                api_key_sha256: "ab".repeat(32),
            }),
        }
    }

    /// Stored values of a chain of `EVENTS` developers, each its own stream.
    fn stored_log() -> Vec<Vec<u8>> {
        let mut prev_hash = GENESIS_HASH;
        (1..=EVENTS)
            .map(|seq| {
                let (value, hash) = seal(&developer_created(seq, u128::from(seq)), &prev_hash);
                prev_hash = hash;
                value
            })
            .collect()
    }

    fn raw_events(log: &[Vec<u8>]) -> Vec<StoreResult<RawEvent>> {
        log.iter().zip(1..).map(|(value, seq)| RawEvent::from_stored(seq, value)).collect()
    }

    fn replay(events: Vec<StoreResult<RawEvent>>) -> (State, Result<u64, RecoveryError>) {
        let (state, result) = replay_pausing(events, None);
        (state, result.map(|replayed| replayed.events))
    }

    /// Replays `events` into a new state.
    fn replay_pausing(
        events: Vec<StoreResult<RawEvent>>,
        pause: Option<std::time::Duration>,
    ) -> (State, Result<Replayed, RecoveryError>) {
        let mut state = State::default();
        let result = replay_into(events, pause, &mut |recorded| state.apply_recorded(recorded));
        (state, result)
    }

    /// Replays `events` into `fold`. With `pause`, the fold sleeps that
    /// long at the first event. The reader then runs ahead, and decodes
    /// the batches it sends once `DECODE_HERE_FROM_WAITING` are waiting.
    fn replay_into(
        events: Vec<StoreResult<RawEvent>>,
        pause: Option<std::time::Duration>,
        fold: &mut dyn FnMut(&RecordedEvent) -> Result<(), ApplyError>,
    ) -> Result<Replayed, RecoveryError> {
        let tail_events = events.len() as u64;
        let pausing_fold = &mut |recorded: &RecordedEvent| {
            if let (1, Some(pause)) = (recorded.seq, pause) {
                std::thread::sleep(pause);
            }
            fold(recorded)
        };
        replay_events(Box::new(events.into_iter()), pausing_fold, GENESIS_HASH, tail_events)
    }

    /// Stored values of a chain of `events` developers. Event `undecodable`
    /// has a body that is no event, sealed into the chain as if it had been
    /// written.
    fn developer_log(events: u64, undecodable: Option<u64>) -> Vec<Vec<u8>> {
        let mut prev_hash = GENESIS_HASH;
        (1..=events)
            .map(|seq| {
                let (mut value, mut hash) =
                    seal(&developer_created(seq, u128::from(seq)), &prev_hash);
                if Some(seq) == undecodable {
                    let body = format!("{{\"seq\":{seq},\"stream\":\"nothing\"}}");
                    hash = crate::store::chain_hash(&prev_hash, body.as_bytes());
                    value.truncate(1);
                    value.extend_from_slice(&prev_hash);
                    value.extend_from_slice(&hash);
                    value.extend_from_slice(body.as_bytes());
                }
                prev_hash = hash;
                value
            })
            .collect()
    }

    #[test]
    fn replay_folds_every_event() {
        let (state, result) = replay(raw_events(&stored_log()));
        assert_eq!(result.ok(), Some(EVENTS), "every event is folded");
        assert_eq!(state.last_seq, EVENTS, "the state ends at the last event");
        assert_eq!(state.developers.len() as u64, EVENTS, "one developer per event");
    }

    #[test]
    fn replay_of_nothing() {
        let (state, result) = replay(Vec::new());
        assert_eq!(result.ok(), Some(0), "no events folded");
        assert_eq!(state.last_seq, 0, "the state is untouched");
    }

    #[test]
    fn altered_body_is_named() {
        let mut log = stored_log();
        let last = log[899].len() - 3;
        log[899][last] ^= 1;
        let (state, result) = replay(raw_events(&log));
        match result {
            Err(RecoveryError::Chain { seq, reason }) => {
                assert_eq!(seq, 900, "the altered event is named");
                assert!(reason.contains("does not match its contents"), "reason: {reason}");
            }
            other => panic!("expected a chain error at 900, got {other:?}"),
        }
        assert_eq!(state.last_seq, 899, "the events before it are folded");
    }

    #[test]
    fn broken_link_is_named() {
        let mut log = stored_log();
        // Event 600 sealed after a wrong hash: its own hash is valid, its
        // link is not.
        let (resealed, _) = seal(&developer_created(600, 600), &[7; 32]);
        log[599] = resealed;
        let (state, result) = replay(raw_events(&log));
        match result {
            Err(RecoveryError::Chain { seq, reason }) => {
                assert_eq!(seq, 600, "the event after the break is named");
                assert!(reason.contains("prev_hash"), "reason: {reason}");
            }
            other => panic!("expected a chain error at 600, got {other:?}"),
        }
        assert_eq!(state.last_seq, 599, "the events before it are folded");
    }

    #[test]
    fn event_that_does_not_apply_is_named() {
        // Event 1000 creates the developer of event 1 again, with a valid
        // chain: the fold rejects it.
        let mut prev_hash = GENESIS_HASH;
        let log: Vec<Vec<u8>> = (1..=EVENTS)
            .map(|seq| {
                let sid_value = if seq == 1000 { 1 } else { u128::from(seq) };
                let (value, hash) = seal(&developer_created(seq, sid_value), &prev_hash);
                prev_hash = hash;
                value
            })
            .collect();
        let (state, result) = replay(raw_events(&log));
        match result {
            Err(RecoveryError::Apply(error)) => assert_eq!(error.seq, 1000, "{error}"),
            other => panic!("expected an apply error at 1000, got {other:?}"),
        }
        assert_eq!(state.last_seq, 999, "the events before it are folded");
    }

    #[test]
    fn both_threads_decode() {
        // Six full batches: with the fold paused at the first event, the
        // reader sends two batches undecoded and then finds them waiting.
        let events = 6 * REPLAY_BATCH_EVENTS as u64;
        let log = developer_log(events, None);
        let pause = std::time::Duration::from_millis(300);
        let (state, result) = replay_pausing(raw_events(&log), Some(pause));
        let replayed = result.expect("the log replays");
        assert_eq!(replayed.events, events, "every event is folded");
        assert_eq!(state.developers.len() as u64, events, "one developer per event");
        assert!(replayed.decoded_by_reader > 0, "the reader decoded batches: {replayed:?}");
        assert!(replayed.decoded_by_fold > 0, "the fold decoded batches: {replayed:?}");
        assert_eq!(replayed.decoded_by_reader + replayed.decoded_by_fold, 6, "{replayed:?}");
    }

    #[test]
    fn undecodable_event_is_named_whoever_decodes_it() {
        let events = 6 * REPLAY_BATCH_EVENTS as u64;
        // In the second batch, which the fold decodes, and in the sixth,
        // which the reader decodes while the fold is paused.
        for (undecodable, pause) in [(700, None), (2900, Some(300))] {
            let log = developer_log(events, Some(undecodable));
            let pause = pause.map(std::time::Duration::from_millis);
            let (state, result) = replay_pausing(raw_events(&log), pause);
            match result {
                Err(RecoveryError::Store(StoreError::Corrupt { seq, reason })) => {
                    assert_eq!(seq, undecodable, "the undecodable event is named: {reason}");
                }
                other => panic!("expected a corrupt event at {undecodable}, got {other:?}"),
            }
            assert_eq!(state.last_seq, undecodable - 1, "the events before it are folded");
        }
    }

    #[test]
    fn read_error_is_named() {
        let mut events = raw_events(&stored_log());
        events[699] = Err(StoreError::corrupt(700, "stored event is shorter than its header"));
        let (state, result) = replay(events);
        match result {
            Err(RecoveryError::Store(StoreError::Corrupt { seq, .. })) => {
                assert_eq!(seq, 700, "the unreadable event is named");
            }
            other => panic!("expected a corrupt event at 700, got {other:?}"),
        }
        assert_eq!(state.last_seq, 699, "the events before it are folded");
    }

    #[test]
    fn replay_tail_reads_a_store() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = crate::store::SledStore::open(dir.path()).expect("open a fresh log");
        let pending: Vec<PendingEvent> =
            (1..=EVENTS).map(|seq| developer_created(seq, u128::from(seq))).collect();
        store.append(&pending).expect("append the events");
        let (state, replayed) =
            replay_tail(&store, State::default(), GENESIS_HASH).expect("replay the log");
        assert_eq!(replayed, EVENTS, "every event is replayed");
        assert_eq!(state.last_seq, EVENTS, "the state ends at the head");
        let recovered = recover(&store).expect("recover the log");
        assert_eq!(recovered.state, state, "recover gives the same state");
        assert_eq!(recovered.snapshot_seq, None, "no snapshot exists");
        assert!(!recovered.snapshots_unusable, "no snapshot to skip");
    }

    /// The developer and the sub-account of `repeated_reference_log`.
    const DEVELOPER: u128 = 1;
    const ACCOUNT: u128 = 2;

    /// Returns a TOPUP of 1 with reference `PAY-1` on the sub-account `ACCOUNT`.
    fn top_up(seq: u64, version: u64, balance_after: i64) -> PendingEvent {
        let developer = Sid::new(SidKind::Developer, DEVELOPER);
        let account = Sid::new(SidKind::Account, ACCOUNT);
        let sid = Sid::new(SidKind::Transaction, u128::from(seq));
        let balance_after = Decimal::from(balance_after);
        let posting =
            fixtures::top_up(sid, account, developer, Decimal::ONE, balance_after, Some("PAY-1"));
        let event = Event::BalanceToppedUp(posting);
        let meta = EventMeta {
            recorded_at: Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap(),
            actor: Actor::Developer(developer),
            request_id: format!("req-{seq}"),
            idempotency: None,
        };
        PendingEvent { seq, stream: account, version, meta, event }
    }

    /// Events 1 to 4: a developer, a sub-account and two postings with one
    /// reference, so that event 4 breaks the log. The bulk fold finds that
    /// only when it builds the indexes.
    fn repeated_reference_log() -> Vec<PendingEvent> {
        let mut created = developer_created(2, ACCOUNT);
        created.stream = Sid::new(SidKind::Account, ACCOUNT);
        let developer = Sid::new(SidKind::Developer, DEVELOPER);
        created.event =
            Event::SubAccountCreated(sub_account_created(created.stream, developer, "user"));
        vec![developer_created(1, DEVELOPER), created, top_up(3, 2, 1), top_up(4, 3, 2)]
    }

    /// Stores `events` in a fresh log and expects recovery to fail at
    /// event 4, naming the reference.
    fn expect_repeated_reference_named(events: &[PendingEvent]) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = crate::store::SledStore::open(dir.path()).expect("open a fresh log");
        store.append(events).expect("append the events");
        match recover(&store) {
            Err(RecoveryError::Apply(error)) => {
                assert_eq!(error.seq, 4, "the second posting: {error}");
                assert!(error.reason.contains("PAY-1"), "names the reference: {error}");
            }
            other => panic!("expected the posting to fail, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn failed_bulk_check_names_the_event() {
        let mut events = repeated_reference_log();
        // An event after them, so that the last one is not the one named.
        events.push(developer_created(5, 5));
        expect_repeated_reference_named(&events);
    }

    #[test]
    fn failed_bulk_check_before_broken_event() {
        // Event 5 fails as it is folded, with a balance that does not
        // follow. The fold one event at a time stops at event 4 before it.
        let mut events = repeated_reference_log();
        events.push(top_up(5, 4, 7));
        expect_repeated_reference_named(&events);
    }

    /// Opens a store in `dir` with events 1 to `EVENTS` and a snapshot at
    /// each of `snapshot_seqs`, of the state folded up to it.
    fn store_with_snapshots(dir: &Path, snapshot_seqs: &[u64]) -> crate::store::SledStore {
        let store = crate::store::SledStore::open(dir).expect("open a fresh log");
        let mut state = State::default();
        let mut appended = 0;
        for seq in snapshot_seqs.iter().copied().chain([EVENTS]) {
            let pending: Vec<PendingEvent> =
                (appended + 1..=seq).map(|seq| developer_created(seq, u128::from(seq))).collect();
            store.append(&pending).expect("append the events");
            appended = seq;
            let prev_hash = match state.last_seq {
                0 => GENESIS_HASH,
                last => store.read_raw(last).expect("read").expect("the last event").hash,
            };
            state = replay_tail(&store, state, prev_hash).expect("fold the new events").0;
            if seq != EVENTS {
                store
                    .save_snapshot(seq, &mut |out| out.write_all(&state.encode()))
                    .expect("save a snapshot");
            }
        }
        store
    }

    #[test]
    fn preloaded_snapshot_starts_recovery() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[300, 700]);
        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        assert_eq!(preloaded.snapshot.as_ref().map(|(seq, _, _)| *seq), Some(700), "the newest");
        let recovered = recover_with(&store, preloaded).expect("recover");
        assert_eq!(recovered.snapshot_seq, Some(700), "starts from the preloaded snapshot");
        assert_eq!(recovered.replayed_events, EVENTS - 700, "replays the tail");
        let full = replay_tail(&store, State::default(), GENESIS_HASH).expect("replay").0;
        assert_eq!(recovered.state, full, "the state of a full replay");
    }

    #[test]
    fn preload_skips_undecodable_snapshot() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[300]);
        store.save_snapshot(700, &mut |out| out.write_all(b"not a snapshot")).expect("save");
        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        assert_eq!(preloaded.snapshot.as_ref().map(|(seq, _, _)| *seq), Some(300), "the older one");
        assert_eq!(preloaded.oldest_tried, Some(300), "tried down to 300");
        let recovered = recover_with(&store, preloaded).expect("recover");
        assert_eq!(recovered.snapshot_seq, Some(300), "starts from 300");
        assert_eq!(recovered.replayed_events, EVENTS - 300, "replays from 300");
    }

    #[test]
    fn only_unusable_snapshots_reported() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[]);
        store.save_snapshot(700, &mut |out| out.write_all(b"not a snapshot")).expect("save");
        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        assert!(preloaded.snapshot.is_none(), "nothing decodes");
        let recovered = recover_with(&store, preloaded).expect("recover");
        assert_eq!(recovered.snapshot_seq, None, "a full replay");
        assert!(recovered.snapshots_unusable, "with preloading");
        let recovered = recover(&store).expect("recover without preloading");
        assert!(recovered.snapshots_unusable, "without preloading");
    }

    #[test]
    fn preload_checks_crc_after_decoding() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[300, 700]);
        // Change one letter of a developer's name in the snapshot at 700:
        // it still decodes, to a state that differs from the log's, and
        // only the CRC-32 detects the change.
        let path = dir.path().join("projection-snapshots/00000000000000000700.snapshot");
        let mut bytes = std::fs::read(&path).expect("read the snapshot file");
        let at = bytes.windows(9).position(|name| name == b"Developer").expect("a name");
        bytes[at] = b'd';
        std::fs::write(&path, &bytes).expect("write the damaged file");
        let damaged = SnapshotFile::list(dir.path()).expect("list").remove(0).open().expect("open");
        let decoded = State::decode_from(&damaged).expect("the damaged snapshot decodes");
        assert_eq!(decoded.last_seq, 700, "decoded to the snapshot's sequence");
        assert!(!damaged.check_crc(), "the CRC-32 finds the change");

        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        assert_eq!(preloaded.snapshot.as_ref().map(|(seq, _, _)| *seq), Some(300), "the older one");
        let recovered = recover_with(&store, preloaded).expect("recover");
        let full = replay_tail(&store, State::default(), GENESIS_HASH).expect("replay").0;
        assert_eq!(recovered.state, full, "the state of a full replay");
    }

    #[test]
    fn preloaded_snapshot_past_log_skipped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[300]);
        // A snapshot of a state past the log's head, as after a lost tail.
        let mut ahead = replay_tail(&store, State::default(), GENESIS_HASH).expect("replay").0;
        let extra = developer_created(EVENTS + 1, u128::from(EVENTS + 1));
        ahead.apply(extra.seq, &extra.meta, &extra.event).expect("apply one more event");
        store.save_snapshot(EVENTS + 1, &mut |out| out.write_all(&ahead.encode())).expect("save");

        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        let preloaded_seq = preloaded.snapshot.as_ref().map(|(seq, _, _)| *seq);
        assert_eq!(preloaded_seq, Some(EVENTS + 1), "the preload takes the newest");
        let recovered = recover_with(&store, preloaded).expect("recover");
        assert_eq!(recovered.snapshot_seq, Some(300), "falls back to the older snapshot");
        assert_eq!(recovered.state.last_seq, EVENTS, "ends at the log's head");
    }

    #[test]
    fn snapshot_of_another_log_skipped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[300]);
        // Another log whose developers have other sids, so that this log's
        // tail still folds into its snapshot at 700.
        let other_dir = tempfile::tempdir().expect("a temporary directory");
        let other = crate::store::SledStore::open(other_dir.path()).expect("open another log");
        let pending: Vec<PendingEvent> =
            (1..=700).map(|seq| developer_created(seq, u128::from(seq) + 1_000_000)).collect();
        other.append(&pending).expect("append the other log's events");
        let other_state = replay_tail(&other, State::default(), GENESIS_HASH).expect("replay").0;
        other.save_snapshot(700, &mut |out| out.write_all(&other_state.encode())).expect("save");
        let name = "projection-snapshots/00000000000000000700.snapshot";
        std::fs::copy(other_dir.path().join(name), dir.path().join(name)).expect("copy");

        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        let preloaded_seq = preloaded.snapshot.as_ref().map(|(seq, _, _)| *seq);
        assert_eq!(preloaded_seq, Some(700), "the copied snapshot decodes");
        let recovered = recover_with(&store, preloaded).expect("recover");
        assert_eq!(recovered.snapshot_seq, Some(300), "skips the other log's snapshot");
        let full = replay_tail(&store, State::default(), GENESIS_HASH).expect("replay").0;
        assert_eq!(recovered.state, full, "the state of a full replay");
        let recovered = recover(&store).expect("recover without a preload");
        assert_eq!(recovered.snapshot_seq, Some(300), "skipped without a preload too");
    }

    /// Events in `posting_log_events`, four full batches and three more.
    const POSTING_LOG_EVENTS: u64 = 4 * REPLAY_BATCH_EVENTS as u64 + 3;
    /// Sub-accounts of `posting_log_events`, created after its developer.
    const POSTING_ACCOUNTS: u64 = 3;

    /// A kind of damage that `damaged_posting_log` gives one event.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum LogDamage {
        /// A body that is no event, sealed into the chain.
        Undecodable,
        /// Sealed after a wrong hash.
        BrokenLink,
        /// A byte of the body changed after sealing.
        AlteredBody,
        /// A posting whose balance after does not follow, sealed.
        WrongBalance,
        /// The store fails to read it.
        Unreadable,
    }

    /// Builds event `seq` of a log that starts with a developer and the
    /// sub-accounts. TOPUPs of 1 on each sub-account in turn follow, with an
    /// update of a sub-account every 97 events. Balances after are zero.
    /// Any event may be a batch boundary in a replay of it.
    fn posting_log_event(seq: u64) -> PendingEvent {
        let developer = Sid::new(SidKind::Developer, DEVELOPER);
        let accounts = 1 + POSTING_ACCOUNTS;
        if seq == 1 {
            return developer_created(1, DEVELOPER);
        }
        let account = Sid::new(SidKind::Account, 100 + u128::from(seq % POSTING_ACCOUNTS));
        let meta = EventMeta {
            recorded_at: Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap(),
            actor: Actor::Developer(developer),
            request_id: format!("req-{seq}"),
            idempotency: None,
        };
        if seq <= accounts {
            let created = sub_account_created(account, developer, &format!("user{seq}"));
            let event = Event::SubAccountCreated(created);
            return PendingEvent { seq, stream: account, version: 1, meta, event };
        }
        // The creation is version 1, and after the creations every
        // `POSTING_ACCOUNTS`-th event is on the same sub-account.
        let version = 1 + (seq - accounts - 1) / POSTING_ACCOUNTS + 1;
        let event = if seq.is_multiple_of(97) {
            Event::SubAccountUpdated(crate::domain::events::SubAccountUpdated {
                sid: account,
                password_argon2: None,
                first_name: Some(format!("First {seq}")),
                last_name: None,
                email: None,
                mobile_phone: None,
                domain: None,
            })
        } else {
            let sid = Sid::new(SidKind::Transaction, u128::from(seq));
            Event::BalanceToppedUp(fixtures::top_up(
                sid,
                account,
                developer,
                Decimal::ONE,
                Decimal::ZERO,
                None,
            ))
        };
        PendingEvent { seq, stream: account, version, meta, event }
    }

    /// Builds the events of `posting_log_event` with balances that follow.
    fn posting_log_events() -> Vec<PendingEvent> {
        let mut balances: std::collections::HashMap<Sid, i64> = Default::default();
        (1..=POSTING_LOG_EVENTS)
            .map(|seq| {
                let mut pending = posting_log_event(seq);
                if let Event::BalanceToppedUp(posting) = &mut pending.event {
                    let balance = balances.entry(posting.account_sid).or_default();
                    *balance += 1;
                    posting.balance_after = Decimal::from(*balance);
                }
                pending
            })
            .collect()
    }

    /// Seals `posting_log_events` into a chain and returns the stored values.
    fn sealed_posting_log() -> Vec<Vec<u8>> {
        let mut prev_hash = GENESIS_HASH;
        posting_log_events()
            .iter()
            .map(|pending| {
                let (value, hash) = seal(pending, &prev_hash);
                prev_hash = hash;
                value
            })
            .collect()
    }

    /// Returns the events of `log`, a `sealed_posting_log`, with event `at`
    /// damaged. The events after it are left as they are.
    fn damaged_posting_log(
        log: &[Vec<u8>],
        damage: LogDamage,
        at: u64,
    ) -> Vec<StoreResult<RawEvent>> {
        let index = at as usize - 1;
        let prev_hash = match index {
            0 => GENESIS_HASH,
            _ => RawEvent::from_stored(at - 1, &log[index - 1]).expect("a sealed event").hash,
        };
        let mut pending = posting_log_events().swap_remove(index);
        let value = match damage {
            LogDamage::Undecodable => {
                let body = format!("{{\"seq\":{at},\"stream\":\"nothing\"}}");
                let hash = crate::store::chain_hash(&prev_hash, body.as_bytes());
                let mut value = log[index][..1].to_vec();
                value.extend_from_slice(&prev_hash);
                value.extend_from_slice(&hash);
                value.extend_from_slice(body.as_bytes());
                value
            }
            LogDamage::BrokenLink => seal(&pending, &[7; 32]).0,
            LogDamage::AlteredBody => {
                let mut value = log[index].clone();
                let last = value.len() - 3;
                value[last] ^= 1;
                value
            }
            LogDamage::WrongBalance => {
                match &mut pending.event {
                    Event::BalanceToppedUp(posting) => posting.balance_after += Decimal::TEN,
                    _ => pending.version += 1,
                }
                seal(&pending, &prev_hash).0
            }
            LogDamage::Unreadable => Vec::new(),
        };
        log.iter()
            .zip(1..)
            .map(|(stored, seq)| match seq == at {
                true if damage == LogDamage::Unreadable => {
                    Err(StoreError::corrupt(seq, "stored event is shorter than its header"))
                }
                true => RawEvent::from_stored(seq, &value),
                false => RawEvent::from_stored(seq, stored),
            })
            .collect()
    }

    /// Checks, decodes and folds `events` in order on this thread, as a
    /// replay must appear to. Returns the sequence number of the last event
    /// folded, and the error of the first event that fails.
    fn replay_on_one_thread(events: Vec<StoreResult<RawEvent>>) -> (u64, Option<String>) {
        let mut state = State::default();
        let mut prev_hash = GENESIS_HASH;
        for raw in events {
            let step = raw.map_err(RecoveryError::from).and_then(|raw| {
                let raw = check_link(raw, &prev_hash)?;
                prev_hash = raw.hash;
                let recorded = check_hash_and_decode(&raw)?;
                state.apply_recorded(&recorded)?;
                Ok(())
            });
            if let Err(error) = step {
                return (state.last_seq, Some(error.to_string()));
            }
        }
        (state.last_seq, None)
    }

    /// Replays `events` through `BulkFold`, the fold pausing at its first
    /// event when `pause` is given, so that the reader decodes batches too.
    fn replay_in_bulk(
        events: Vec<StoreResult<RawEvent>>,
        pause: Option<std::time::Duration>,
    ) -> (BulkFold, Result<Replayed, RecoveryError>) {
        let mut fold = BulkFold::new();
        let result = replay_into(events, pause, &mut |recorded| fold.apply_recorded(recorded));
        (fold, result)
    }

    #[test]
    fn bulk_replay_matches_one_at_a_time() {
        let expected = {
            let mut state = State::default();
            for (seq, pending) in posting_log_events().into_iter().enumerate() {
                let recorded = RecordedEvent {
                    seq: seq as u64 + 1,
                    stream: pending.stream,
                    version: pending.version,
                    meta: pending.meta,
                    event: pending.event,
                    prev_hash: [0; 32],
                    hash: [0; 32],
                };
                state.apply_recorded(&recorded).expect("the log folds");
            }
            state
        };
        for pause in [None, Some(std::time::Duration::from_millis(40))] {
            let events = raw_events(&sealed_posting_log());
            let (fold, result) = replay_in_bulk(events, pause);
            let replayed = result.expect("the log replays");
            assert_eq!(replayed.events, POSTING_LOG_EVENTS, "every event, pause {pause:?}");
            let state = fold.finish().expect("the indexes build");
            assert_eq!(state.state_hash(), expected.state_hash(), "pause {pause:?}");
            assert!(state == expected, "the same views, pause {pause:?}");
        }
    }

    #[test]
    fn boundary_damage_named_as_on_one_thread() {
        let batch = REPLAY_BATCH_EVENTS as u64;
        // The first event, both sides of the first boundary, and, in
        // batches that the reader decodes when the fold is paused, the
        // first event of a batch and the last event.
        let positions = [1, batch, batch + 1, 3 * batch + 1, POSTING_LOG_EVENTS];
        let log = sealed_posting_log();
        let damages = [
            LogDamage::Undecodable,
            LogDamage::BrokenLink,
            LogDamage::AlteredBody,
            LogDamage::WrongBalance,
            LogDamage::Unreadable,
        ];
        for damage in damages {
            for at in positions {
                let (folded, error) = replay_on_one_thread(damaged_posting_log(&log, damage, at));
                let error = error.unwrap_or_else(|| panic!("{damage:?} at {at} breaks the log"));
                for pause in [None, Some(std::time::Duration::from_millis(2))] {
                    let (fold, result) =
                        replay_in_bulk(damaged_posting_log(&log, damage, at), pause);
                    let got = result.map(|replayed| replayed.events).map_err(|e| e.to_string());
                    assert_eq!(got, Err(error.clone()), "{damage:?} at {at}, pause {pause:?}");
                    assert_eq!(fold.last_seq(), folded, "{damage:?} at {at}, pause {pause:?}");
                }
            }
        }
    }

    /// Returns `log`, a `sealed_posting_log`, with the last digit of the
    /// request id of event `at` changed: its body still decodes, but its
    /// hash no longer covers it.
    fn with_request_id_altered(log: &[Vec<u8>], at: u64) -> Vec<Vec<u8>> {
        let mut log = log.to_vec();
        let value = &mut log[at as usize - 1];
        let member = format!("\"request_id\":\"req-{at}\"");
        let start = value
            .windows(member.len())
            .position(|window| window == member.as_bytes())
            .expect("the body contains its request id");
        let digit = start + member.len() - 2;
        value[digit] = if value[digit] == b'0' { b'1' } else { b'0' };
        log
    }

    #[test]
    fn decodable_altered_body_named_on_both_threads() {
        let batch = REPLAY_BATCH_EVENTS as u64;
        let log = sealed_posting_log();
        let events = posting_log_events();
        for at in [1, batch, batch + 1, 3 * batch + 1, POSTING_LOG_EVENTS] {
            let altered = with_request_id_altered(&log, at);
            let raw = RawEvent::from_stored(at, &altered[at as usize - 1]).expect("a stored event");
            assert!(raw.decode().is_ok(), "the altered body of event {at} decodes");
            assert!(!raw.hash_is_valid(), "the altered body of event {at} fails its hash");

            // The same log with the event after it also sealed after a
            // wrong hash: the altered body comes first and is named.
            let mut then_broken_link = altered.clone();
            if let Some(next) = events.get(at as usize) {
                then_broken_link[at as usize] = seal(next, &[7; 32]).0;
            }
            for (name, log) in [("altered", altered), ("then a broken link", then_broken_link)] {
                for pause in [None, Some(std::time::Duration::from_millis(2))] {
                    let case = format!("{name} at {at}, pause {pause:?}");
                    let (fold, result) = replay_in_bulk(raw_events(&log), pause);
                    match result {
                        Err(RecoveryError::Chain { seq, reason }) => {
                            assert_eq!(seq, at, "the altered event is named, {case}");
                            let hash_reason = "its hash does not match its contents";
                            assert_eq!(reason, hash_reason, "{case}");
                        }
                        other => panic!("expected a chain error, {case}: {other:?}"),
                    }
                    assert_eq!(fold.last_seq(), at - 1, "the events before it fold, {case}");
                }
            }
        }
    }

    #[test]
    fn nothing_preloaded_replays() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = store_with_snapshots(dir.path(), &[]);
        let preloaded = preload_snapshot(SnapshotFile::list(dir.path()).expect("list"));
        assert!(preloaded.snapshot.is_none(), "no snapshot to preload");
        let recovered = recover_with(&store, preloaded).expect("recover");
        assert_eq!(recovered.snapshot_seq, None, "a full replay");
        assert!(!recovered.snapshots_unusable, "no snapshot to skip");
        assert_eq!(recovered.replayed_events, EVENTS, "every event");
    }
}
