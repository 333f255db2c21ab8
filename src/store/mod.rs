//! The event log: an append-only, hash-chained sequence of events with
//! per-stream versions. `EventStore` is the seam between the service and its
//! storage engine; nothing outside this module depends on the engine being sled.

mod envelope;
mod journal;
mod sled_store;

pub use envelope::{
    chain_hash, encode_body, seal, PendingEvent, RawEvent, RecordedEvent, FORMAT_V1, GENESIS_HASH,
};
pub use sled_store::{IndexReading, OpenedSnapshot, SledStore, SnapshotFile};

use std::borrow::Cow;

use crate::domain::ids::Sid;

/// The newest event of the log: its sequence number (0 for an empty log) and
/// its hash (`GENESIS_HASH` for an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead { seq: 0, hash: GENESIS_HASH };
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The optimistic-concurrency check failed: a stream is not at the
    /// version the appended event expects.
    #[error("stream {stream} is at version {actual}, but the event expects {expected}")]
    VersionConflict { stream: Sid, expected: u64, actual: u64 },
    /// The appended events do not continue the log's sequence.
    #[error("the log ends at sequence {head}, but the batch starts at {first}")]
    SequenceGap { head: u64, first: u64 },
    #[error("event {seq} is corrupt: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("the data directory is damaged or not a subledger log: {0}")]
    Damaged(String),
    /// Another process, such as a running `subledger serve`, has the log
    /// open.
    #[error(
        "the event log in {} is in use by another process, such as a running \
         `subledger serve`. Stop that process or choose another data directory",
        .0.display()
    )]
    Locked(std::path::PathBuf),
    #[error("storage engine failed: {0}")]
    Engine(#[from] sled::Error),
    #[error("I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    pub fn corrupt(seq: u64, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt { seq, reason: reason.into() }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An iterator over raw stored events in sequence order.
pub type RawEventIter<'a> = Box<dyn Iterator<Item = StoreResult<RawEvent>> + Send + 'a>;

/// Projection snapshots in the order `EventStore::snapshots` gives them.
pub type SnapshotIter<'a> = Box<dyn Iterator<Item = StoredSnapshot> + 'a>;

/// Writes a snapshot's bytes to the writer it is given; see
/// `EventStore::save_snapshot`.
pub type SnapshotEncoder<'a> = dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()> + 'a;

/// The bytes of a stored snapshot, read by range, so that a decoder can
/// read each part of a snapshot on the thread that decodes it instead of
/// reading the whole snapshot into memory first.
pub trait SnapshotSource: Sync {
    /// Returns the snapshot's length in bytes.
    fn length(&self) -> u64;

    /// Returns the `length` bytes at `offset`. A range that does not lie
    /// within the snapshot is an error of kind `UnexpectedEof`.
    fn read(&self, offset: u64, length: usize) -> std::io::Result<Cow<'_, [u8]>>;
}

impl SnapshotSource for [u8] {
    fn length(&self) -> u64 {
        self.len() as u64
    }

    fn read(&self, offset: u64, length: usize) -> std::io::Result<Cow<'_, [u8]>> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(length)?))
            .map(Cow::Borrowed)
            .ok_or_else(|| outside_snapshot(offset, length, self.length()))
    }
}

/// Builds the error of a read outside a snapshot of `total` bytes.
pub(crate) fn outside_snapshot(offset: u64, length: usize, total: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("{length} bytes at offset {offset} lie outside the snapshot of {total} bytes"),
    )
}

/// A projection snapshot as stored: the sequence number it was taken at,
/// the hash of the event there and its bytes.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub seq: u64,
    /// The hash of event `seq` when the snapshot was saved, or
    /// `GENESIS_HASH` when the log had no such event.
    pub event_hash: [u8; 32],
    pub bytes: Vec<u8>,
}

/// An append-only, durable, hash-chained event log.
pub trait EventStore: Send + Sync + 'static {
    /// Writes a batch of events atomically, without waiting for it to be
    /// durable, and returns the head it leads to. The events must continue
    /// the events written so far (`seq` = written head + 1, …) and each
    /// event's `version` must be its stream's version + 1. Reads may see the
    /// batch before `sync` makes it durable; after a crash it is either
    /// wholly present or wholly absent.
    fn write(&self, events: &[PendingEvent]) -> StoreResult<ChainHead>;

    /// Makes every batch written before the call durable and returns the
    /// newest durable head. Writes may go on from other threads meanwhile;
    /// they become durable with a later call.
    fn sync(&self) -> StoreResult<ChainHead>;

    /// Writes a batch and makes it durable before returning.
    fn append(&self, events: &[PendingEvent]) -> StoreResult<ChainHead> {
        let head = self.write(events)?;
        let durable = self.sync()?;
        debug_assert!(durable.seq >= head.seq, "sync covers every earlier write");
        Ok(head)
    }

    /// The newest durable event's sequence number and hash.
    fn head(&self) -> ChainHead;

    /// Stored events from sequence `from` (inclusive) to the end.
    fn read_raw_from(&self, from: u64) -> RawEventIter<'_>;

    /// The sequence numbers of one stream's events, in version order.
    fn stream_sequences(&self, stream: Sid) -> StoreResult<Vec<u64>>;

    /// One stored event by sequence number.
    fn read_raw(&self, seq: u64) -> StoreResult<Option<RawEvent>>;

    /// Stores a projection snapshot taken after event `seq`, durably, and
    /// drops all but the newest few. `encode` writes the snapshot's bytes
    /// to the writer it is given, which stores them as they come, so the
    /// whole snapshot is never in memory at once. Returns the snapshot's
    /// length in bytes.
    fn save_snapshot(&self, seq: u64, encode: &mut SnapshotEncoder<'_>) -> StoreResult<u64>;

    /// Snapshots, newest first (at most the few that are kept). Each is
    /// read and checked only when the iterator reaches it, so a start that
    /// takes the newest reads no other. An unreadable one is logged and
    /// skipped.
    fn snapshots(&self) -> StoreResult<SnapshotIter<'_>>;

    /// The snapshots taken before event `seq`, as `snapshots` returns them.
    /// The default reads every snapshot and drops the newer ones, and a
    /// store that can skip them unread overrides it.
    fn snapshots_below(&self, seq: u64) -> StoreResult<SnapshotIter<'_>> {
        Ok(Box::new(self.snapshots()?.filter(move |snapshot| snapshot.seq < seq)))
    }

    /// Bytes of the log's files on disk, the write-ahead journal included.
    fn size_on_disk(&self) -> u64;
}
