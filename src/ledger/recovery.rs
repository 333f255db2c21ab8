//! Rebuilding the projections at start: load the newest projection snapshot
//! that passes its checks, then fold in the log's tail, checking the hash
//! chain of every event read. A snapshot that fails its check is skipped
//! with a warning, down to a full replay from the first event.

use std::time::Instant;

use crate::audit::progress::Progress;
use crate::projection::State;
use crate::store::{EventStore, StoreError, GENESIS_HASH};

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
}

/// Rebuilds the state from the newest good snapshot and the log's tail.
pub fn recover(store: &dyn EventStore) -> Result<Recovered, RecoveryError> {
    let head = store.head();
    for snapshot in store.snapshots()? {
        if snapshot.seq > head.seq {
            tracing::warn!(
                snapshot_seq = snapshot.seq,
                head = head.seq,
                "projection snapshot is newer than the log; skipping it"
            );
            continue;
        }
        let state = match State::decode(&snapshot.bytes) {
            Ok(state) if state.last_seq == snapshot.seq => state,
            Ok(state) => {
                tracing::warn!(
                    snapshot_seq = snapshot.seq,
                    state_seq = state.last_seq,
                    "projection snapshot does not match its sequence; skipping it"
                );
                continue;
            }
            Err(error) => {
                tracing::warn!(snapshot_seq = snapshot.seq, %error, "projection snapshot does not decode; skipping it");
                continue;
            }
        };
        // The tail must continue the chain from the snapshot's last event.
        let prev_hash = match store.read_raw(snapshot.seq)? {
            Some(raw) => raw.hash,
            None => {
                tracing::warn!(
                    snapshot_seq = snapshot.seq,
                    "event of projection snapshot is missing; skipping it"
                );
                continue;
            }
        };
        match replay_tail(store, state, prev_hash) {
            Ok((state, replayed_events)) => {
                return Ok(Recovered { state, snapshot_seq: Some(snapshot.seq), replayed_events });
            }
            Err(error) => {
                tracing::warn!(snapshot_seq = snapshot.seq, %error, "replay after projection snapshot failed; trying an older start");
            }
        }
    }
    let (state, replayed_events) = replay_tail(store, State::default(), GENESIS_HASH)?;
    Ok(Recovered { state, snapshot_seq: None, replayed_events })
}

/// Folds every event after `state.last_seq` into `state`, checking that each
/// one's hash is `SHA-256(prev_hash ‖ body)` and links to the one before.
pub fn replay_tail(
    store: &dyn EventStore,
    mut state: State,
    mut prev_hash: [u8; 32],
) -> Result<(State, u64), RecoveryError> {
    let head = store.head();
    let started = Instant::now();
    let mut replayed = 0u64;
    let tail_events = head.seq.saturating_sub(state.last_seq);
    let mut progress = Progress::start("replaying the event log", tail_events);
    for raw in store.read_raw_from(state.last_seq + 1) {
        let raw = raw?;
        if raw.prev_hash != prev_hash {
            let reason = "its prev_hash is not the hash of the event before".to_string();
            return Err(RecoveryError::Chain { seq: raw.seq, reason });
        }
        if !raw.hash_is_valid() {
            let reason = "its hash does not match its contents".to_string();
            return Err(RecoveryError::Chain { seq: raw.seq, reason });
        }
        let recorded = raw.decode()?;
        state.apply_recorded(&recorded)?;
        prev_hash = raw.hash;
        replayed += 1;
        progress.advance();
    }
    progress.finish();
    if state.last_seq != head.seq {
        return Err(RecoveryError::Incomplete { head: head.seq, replayed: state.last_seq });
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(replayed, elapsed_ms, "replay finished");
    Ok((state, replayed))
}

/// Encodes and stores a projection snapshot, logging the outcome. A failed
/// snapshot only costs a longer replay at the next start.
pub fn write_snapshot(store: &dyn EventStore, state: &State) {
    let started = Instant::now();
    let bytes = state.encode();
    match store.save_snapshot(state.last_seq, &bytes) {
        Ok(()) => tracing::info!(
            seq = state.last_seq,
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "projection snapshot written"
        ),
        Err(error) => tracing::error!(seq = state.last_seq, %error, "projection snapshot failed"),
    }
}
