//! The sled implementation of the event log.
//!
//! | tree           | key                              | value                        |
//! |----------------|----------------------------------|------------------------------|
//! | `events`       | sequence, u64 big-endian, from 1 | stored event                 |
//! | `stream_index` | first sequence, u64 BE           | the streams of a run of events |
//! | `meta`         | name                             | format, chain head           |
//!
//! Projection snapshots are files beside the database (`snapshots.rs`).
//! Earlier builds kept them in a `snapshots` tree, which the first snapshot
//! saved as a file removes. The stream index is kept in memory and saved
//! in runs (`stream_index.rs`). Logs of format 2 and before kept it in a
//! `streams` tree, one row per event. `open` builds the index of such a
//! log from its events instead, and removes the tree.
//!
//! Big-endian keys make sled's byte order the numeric order. A write
//! inserts each event's `events` row and then the new chain head in
//! `meta`, as plain sled inserts. It does not use a sled
//! transaction: in sled 0.34.7 every transaction writes out sled's IO
//! buffer twice and waits for the disk each time, which took two thirds of
//! a write. The journal gives the atomicity instead. sled's recovery
//! reads its log in order and stops at the first torn or missing segment
//! (`pagecache/iterator.rs` in sled 0.34.7), so it recovers a prefix of the
//! inserts of the one writing thread. After a crash it may therefore hold
//! part of a batch past the chain head in `meta`. `open` removes such
//! events, then redoes from the journal every batch that was made durable.
//!
//! Durability: `write` commits a batch to sled and writes one record for
//! it to the write-ahead journal (`journal.rs`) without syncing, and `sync`
//! makes the journal durable with one `fdatasync`. So a batch is durable
//! once a `sync` called after its `write` has returned. After a crash, sled
//! contains what its background flusher (every 500 ms by default) and the
//! last `sync_files` wrote, and `open` repairs the rest as described above.
//!
//! sled itself is made durable by `sync_files`: sled's `flush`, then
//! `sync_all` on its `db` file and on each blob file not yet synced. The
//! `sync_all` calls are needed because sled 0.34.7's `flush` uses
//! `sync_file_range`, which does not make file metadata durable and skips
//! the blob files that contain oversized nodes. `sync_files` runs at open,
//! after the sled snapshots of earlier builds are removed, and in a `write`
//! whose record does not fit the active journal file (before the other file
//! takes over) or is larger than a whole file. Such a `write` returns with
//! its batch and every earlier one already durable.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::domain::ids::Sid;
use crate::store::envelope::{seal, PendingEvent, RawEvent};
use crate::store::journal::{Appended, Journal, JOURNAL_BYTES};
use crate::store::{
    ChainHead, EventStore, RawEventIter, SnapshotEncoder, SnapshotIter, StoreError, StoreResult,
    GENESIS_HASH,
};

mod redo;
mod snapshots;
mod stream_index;
#[cfg(test)]
mod tests;

use stream_index::StreamIndex;

pub use snapshots::{OpenedSnapshot, SnapshotFile};

/// Written under `meta/format` when a log is created or converted. Version
/// 3 keeps the stream index in `stream_index` rows instead of the
/// `streams` tree, so builds that read the `streams` tree must not open
/// it, and reject the name.
const FORMAT_NAME: &[u8] = b"subledger-log-v3";
/// Version 2 kept acknowledged batches in the journal until sled flushed
/// them, and one `streams` row per event.
const FORMAT_NAME_V2: &[u8] = b"subledger-log-v2";
/// The format of logs written before the journal: every batch was in sled
/// once acknowledged, so such a log converts as version 2 does.
const FORMAT_NAME_V1: &[u8] = b"subledger-log-v1";
const META_FORMAT: &str = "format";
/// `meta/head`: the newest sequence number (u64 BE) and its hash.
const META_HEAD: &str = "head";

/// The sled tree where earlier builds kept projection snapshots.
const LEGACY_SNAPSHOT_TREE: &[u8] = b"snapshots";
/// The sled tree where logs of format 2 and before kept the stream index.
const LEGACY_STREAMS_TREE: &[u8] = b"streams";
const STREAM_INDEX_TREE: &[u8] = b"stream_index";
/// Size of sled's page cache, whose default is 1 GiB. The log is read
/// once at start and then only appended to, so a small cache is enough.
/// With 100,000 sub-accounts and 1,000,000 postings, 64 MiB lowered the
/// server's RSS after a start from a snapshot from 1.48 GiB to 1.29 GiB,
/// at the same start time. 8 MiB then lowered the peak RSS of a cold
/// start, which reads every event through the cache, by 60 to 90 MiB, and
/// took no more time.
const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

struct WriteState {
    /// The newest event written, durable or not.
    written: ChainHead,
    /// The newest event made durable by a sync.
    durable: ChainHead,
    journal: Journal,
    /// The reason the store takes no more writes, and the remedy. A sled
    /// insert, journal write or sync failed during a write, so sled and
    /// the journal may disagree. Or the stream index could not be built at
    /// open.
    failure: Option<String>,
}

/// The remedy for a write that failed halfway.
const REOPEN: &str = "open the log again to recover";

impl WriteState {
    fn check_usable(&self) -> StoreResult<()> {
        match &self.failure {
            None => Ok(()),
            Some(reason) => Err(StoreError::Io(std::io::Error::other(format!(
                "the log takes no more writes: {reason}"
            )))),
        }
    }
}

/// The `events` row of one event: its key and stored value.
type EventRow = ([u8; 8], Vec<u8>);

/// A read of the stream index on a thread of its own, which returns the
/// index and how long the read took.
struct IndexRead {
    handle: JoinHandle<(StoreResult<StreamIndex>, Duration)>,
}

/// The time at which `open` reads the stream index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexReading {
    /// Before `open` returns.
    AtOpen,
    /// On a thread of its own, when the open has nothing to redo and no
    /// older format to convert; see `SledStore::join_index_read`.
    Background,
}

pub struct SledStore {
    db: sled::Db,
    events: sled::Tree,
    index_rows: sled::Tree,
    meta: sled::Tree,
    /// Every event in `events` up to `WriteState::written`. Only the
    /// holder of the `write` lock changes it. Use it through `index` and
    /// `index_mut`, which wait for a read begun at open.
    index: RwLock<StreamIndex>,
    /// The read of the stream index under way on a thread of its own, if
    /// any (`start_index_read`).
    index_read: Mutex<Option<IndexRead>>,
    /// Whether `index_read` holds a read, so that a use of the index
    /// takes no lock to find out.
    index_reading: AtomicBool,
    path: PathBuf,
    db_file: File,
    write: Mutex<WriteState>,
    /// Blob files already synced by `sync_new_blobs`.
    synced_blobs: Mutex<HashSet<std::ffi::OsString>>,
    /// Whether `open` finished. A store whose open failed saves nothing.
    opened: bool,
}

/// Returns whether another process holds the lock on sled's database
/// file. sled 0.34.7 takes an exclusive `flock` on it and reports a failure
/// to take it only as an I/O error of kind `Other`, so the lock is tested
/// again here with the same kind of lock.
fn is_locked(db_file: &Path) -> bool {
    let Ok(file) = File::open(db_file) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Opens sled's database in `path` with the store's settings. A locked
/// database is `Locked`, and one that sled fails or panics on is `Damaged`.
fn open_sled(path: &Path) -> StoreResult<sled::Db> {
    let config = sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(SLED_CACHE_BYTES);
    let opened = catch_unwind(AssertUnwindSafe(|| config.open()));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) if is_locked(&path.join("db")) => {
            tracing::debug!(%error, "sled could not open a locked log");
            Err(StoreError::Locked(path.to_path_buf()))
        }
        Ok(Err(error)) => Err(StoreError::Damaged(error.to_string())),
        Err(_) => Err(StoreError::Damaged("sled panicked while opening".into())),
    }
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn encode_head(head: ChainHead) -> Vec<u8> {
    let mut value = head.seq.to_be_bytes().to_vec();
    value.extend_from_slice(&head.hash);
    value
}

fn decode_head(value: &[u8]) -> Option<ChainHead> {
    if value.len() != 40 {
        return None;
    }
    let seq = read_u64(value)?;
    let hash = value[8..].try_into().ok()?;
    Some(ChainHead { seq, hash })
}

impl SledStore {
    /// Opens the log in `path`, creating it when the directory is new.
    ///
    /// A damaged or foreign directory is an error, never a panic: sled may
    /// panic on some corrupt files, so opening runs under `catch_unwind`.
    /// Journaled batches that sled lost in a crash are redone, then sled is
    /// made durable and the journal starts a new generation.
    pub fn open(path: &Path) -> StoreResult<SledStore> {
        Self::open_with_journal(path, JOURNAL_BYTES, IndexReading::AtOpen)
    }

    /// Opens the `events` tree of an existing log with the store's sled
    /// settings, for a read of sled alone (`examples/log_read.rs`). Unlike
    /// `open`, it creates no log and repairs nothing. A directory without
    /// sled's `db` and `conf` files, or a database without an `events`
    /// tree, is an error. sled itself may still write to its `db` and
    /// `snap.*` files, as any open of sled does. The tree contains only
    /// the events in sled. After a crash, the last acknowledged batches may
    /// be in the journal alone until the next `open` redoes them.
    pub fn open_events_tree(path: &Path) -> StoreResult<sled::Tree> {
        for file in ["db", "conf"] {
            if !path.join(file).is_file() {
                return Err(StoreError::Damaged(format!(
                    "the {file} file is missing from {}, so it is not a sled database",
                    path.display()
                )));
            }
        }
        let db = open_sled(path)?;
        // `open_tree` creates a tree that is missing, so the name is
        // looked up first.
        if !db.tree_names().iter().any(|name| name == b"events") {
            return Err(StoreError::Damaged(format!(
                "the events tree is missing from the sled database in {}, so it is not a subledger log",
                path.display()
            )));
        }
        guard_read("the events tree", || Ok(db.open_tree("events")?))
    }

    /// Opens the log like `open`, reading the stream index when `reading`
    /// selects.
    pub fn open_reading_index(path: &Path, reading: IndexReading) -> StoreResult<SledStore> {
        Self::open_with_journal(path, JOURNAL_BYTES, reading)
    }

    /// Opens the log like `open`, creating journal files of
    /// `journal_bytes` each when the directory has none.
    fn open_with_journal(
        path: &Path,
        journal_bytes: u64,
        reading: IndexReading,
    ) -> StoreResult<SledStore> {
        std::fs::create_dir_all(path)?;
        // sled writes `conf` before it creates `db`, so a `db` without a
        // `conf` is no log of this store's, and sled would overwrite it.
        if path.join("db").exists() && !path.join("conf").exists() {
            return Err(StoreError::Damaged(
                "it has a db file but no conf file, so it is no sled database; \
                 the db file was left as it is"
                    .into(),
            ));
        }
        let db = open_sled(path)?;
        let opened = guard_read("the log's metadata", || {
            let events = db.open_tree("events")?;
            let index_rows = db.open_tree(STREAM_INDEX_TREE)?;
            let meta = db.open_tree("meta")?;
            let legacy = match meta.get(META_FORMAT)? {
                Some(format) if format.as_ref() == FORMAT_NAME => false,
                Some(format)
                    if format.as_ref() == FORMAT_NAME_V2 || format.as_ref() == FORMAT_NAME_V1 =>
                {
                    true
                }
                Some(_) => {
                    return Err(StoreError::Damaged("unknown log format in meta".into()));
                }
                None if events.is_empty() => {
                    meta.insert(META_FORMAT, FORMAT_NAME)?;
                    false
                }
                None => {
                    return Err(StoreError::Damaged("events present without a format".into()));
                }
            };
            let head = match meta.get(META_HEAD)? {
                None => ChainHead::EMPTY,
                Some(value) => decode_head(&value).ok_or_else(|| {
                    StoreError::Damaged("the chain head in meta is not 40 bytes".into())
                })?,
            };
            Ok((events, index_rows, meta, legacy, head))
        })?;
        let (events, index_rows, meta, legacy, head) = opened;
        let db_file = File::open(path.join("db"))?;
        let (journal, recovered) = Journal::open(path, journal_bytes)?;
        let mut store = SledStore {
            db,
            events,
            index_rows,
            meta,
            index: RwLock::new(StreamIndex::default()),
            index_read: Mutex::new(None),
            index_reading: AtomicBool::new(false),
            path: path.to_path_buf(),
            db_file,
            write: Mutex::new(WriteState { written: head, durable: head, journal, failure: None }),
            synced_blobs: Mutex::new(HashSet::new()),
            opened: false,
        };
        guard_read("the events beyond the chain head", || store.remove_unfinished())?;
        // Redoing journaled events and converting an older format both
        // need the index, so only an open with neither reads it in the
        // background.
        let sled_head = store.state().written;
        let redo = recovered.records.iter().flatten().any(|event| event.seq > sled_head.seq);
        let legacy_tree = store.db.tree_names().iter().any(|tree| tree == LEGACY_STREAMS_TREE);
        if reading == IndexReading::Background && !redo && !legacy && !legacy_tree {
            store.start_index_read()?;
        } else {
            guard_read("the stream index", || store.load_index())?;
        }
        store.redo(recovered)?;
        let head = guard_read("the log's head", || Self::read_head(&store.events, &store.meta))?;
        debug_assert_eq!(head, store.state().written, "redo leaves the chain head in meta");
        // A read in the background saves the rows when it is joined.
        if !store.index_reading.load(Ordering::Acquire) {
            store.save_index()?;
        }
        // A log that opens for reading only keeps its format. A read in the
        // background may find a break later, but it runs only on a log of
        // format 3 without a `streams` tree, which needs no change here.
        let writable = store.state().failure.is_none();
        if legacy && writable {
            store.meta.insert(META_FORMAT, FORMAT_NAME)?;
        }
        store.sync_files()?;
        if legacy && writable {
            tracing::info!(events = head.seq, "converted the log from format 1 or 2 to format 3");
        }
        if writable {
            store.drop_legacy_streams()?;
        }
        store.state().journal.start_generation()?;
        store.opened = true;
        Ok(store)
    }

    /// Builds the stream index at open, after `remove_unfinished`, from
    /// the saved rows and the events after the last row (`read_index`).
    fn load_index(&self) -> StoreResult<()> {
        let head = self.state().written;
        self.check_events_end(head)?;
        let index = read_index(&self.events, &self.index_rows, head)?;
        self.install_index(index);
        Ok(())
    }

    /// Checks that the `events` tree ends at the chain head in `meta`.
    /// Checked before the stream index is read, so that a damaged head in
    /// `meta` is reported as such rather than as events missing from the
    /// index.
    fn check_events_end(&self, head: ChainHead) -> StoreResult<()> {
        let damaged = |reason: String| StoreError::Damaged(reason);
        let last_event = match self.events.last()? {
            None => 0,
            Some((key, _)) => read_u64(&key)
                .ok_or_else(|| StoreError::Damaged("event key is not 8 bytes".into()))?,
        };
        if last_event != head.seq {
            return Err(damaged(format!(
                "the chain head in meta names event {}, but the events tree ends at event \
                 {last_event}. The data directory was altered; restore it from a backup",
                head.seq
            )));
        }

        Ok(())
    }

    /// Starts reading the stream index on a thread of its own, which runs
    /// while the projections are rebuilt. Reading it on the opening thread
    /// took about 0.25 s of a cold start with 1,300,001 events, during
    /// which the second core had nothing to do. `join_index_read` installs
    /// it; every use of the index waits for that. Reads it here when the
    /// thread does not start.
    fn start_index_read(&self) -> StoreResult<()> {
        let head = self.state().written;
        self.check_events_end(head)?;
        let (events, index_rows) = (self.events.clone(), self.index_rows.clone());
        let spawned = std::thread::Builder::new().name("stream-index".into()).spawn(move || {
            let started = Instant::now();
            let index = guard_read("the stream index", || read_index(&events, &index_rows, head));
            (index, started.elapsed())
        });
        match spawned {
            Ok(handle) => {
                let read = IndexRead { handle };
                *self.index_read.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(read);
                self.index_reading.store(true, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "failed to start the thread that reads the stream index; read it now");
                let index = guard_read("the stream index", || {
                    read_index(&self.events, &self.index_rows, head)
                })?;
                self.install_index(index);
                Ok(())
            }
        }
    }

    /// Waits for the stream index that `start_index_read` began to read,
    /// installs it, and saves the rows of the events after the last saved
    /// row. Returns at once when no read is under way. When the read
    /// failed, the index is left empty and broken, so that the store
    /// rejects writes and stream reads, and the error is returned.
    pub fn join_index_read(&self) -> StoreResult<()> {
        let mut pending = self.index_read.lock().unwrap_or_else(|poison| poison.into_inner());
        let Some(IndexRead { handle }) = pending.take() else {
            return Ok(());
        };
        let waited = Instant::now();
        let (read, took) = handle.join().unwrap_or_else(|_| {
            let panicked = "the thread reading the stream index panicked".to_string();
            (Err(StoreError::Damaged(panicked)), Duration::ZERO)
        });
        let waited = waited.elapsed();
        let result = match read {
            Ok(index) => {
                self.install_index(index);
                Ok(())
            }
            Err(error) => {
                let reason = format!(
                    "the stream index could not be read ({error}). Run `subledger verify` to \
                     check the log"
                );
                let mut index = StreamIndex::default();
                index.set_broken(reason);
                self.install_index(index);
                Err(error)
            }
        };
        self.index_reading.store(false, Ordering::Release);
        drop(pending);
        tracing::debug!(
            elapsed_ms = took.as_millis() as u64,
            waited_ms = waited.as_millis() as u64,
            "read the stream index on a thread of its own"
        );
        result?;
        // Writes may start once the read is installed. `save_index` marks
        // every event in the index saved, so it runs under the write lock,
        // or the events of a concurrent write would get no row.
        let _writes = self.state();
        guard_read("the stream index", || self.save_index())
    }

    /// Waits for a stream index read that `start_index_read` began. A
    /// failed read leaves the index broken (`join_index_read`); it is
    /// logged here, and the store's writes and stream reads report it.
    fn wait_for_index(&self) {
        if !self.index_reading.load(Ordering::Acquire) {
            return;
        }
        if let Err(error) = self.join_index_read() {
            tracing::error!(%error, "the stream index could not be read; the log takes no writes");
        }
    }

    /// Makes `index` the store's stream index. An index that stops before
    /// the chain head makes the store take no writes.
    fn install_index(&self, index: StreamIndex) {
        if let Some(reason) = index.broken() {
            self.state().failure = Some(reason.to_string());
        }
        *self.index.write().unwrap_or_else(|poison| poison.into_inner()) = index;
    }

    /// The stream index, once a read that `start_index_read` began has
    /// finished.
    fn index(&self) -> RwLockReadGuard<'_, StreamIndex> {
        self.wait_for_index();
        self.index.read().unwrap_or_else(|poison| poison.into_inner())
    }

    fn index_mut(&self) -> RwLockWriteGuard<'_, StreamIndex> {
        self.wait_for_index();
        self.index.write().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Inserts the stream index rows of the events not yet in one. They
    /// follow their events in sled's order, so sled's recovery of a prefix
    /// never keeps a row without its events. The caller holds the write
    /// lock or has the store to itself: events added between the encoding
    /// of the rows and `mark_saved` would get no row.
    fn save_index(&self) -> StoreResult<()> {
        let rows = self.index().unsaved_rows();
        if rows.is_empty() {
            return Ok(());
        }
        for (key, value) in rows {
            self.index_rows.insert(key, value)?;
        }
        self.index_mut().mark_saved();
        Ok(())
    }

    /// Removes the `streams` tree of format 2 once format 3 is durable.
    /// A crash before that leaves the tree, and the next open removes it.
    fn drop_legacy_streams(&self) -> StoreResult<()> {
        self.drop_legacy_tree(LEGACY_STREAMS_TREE, "the streams tree of format 2")
    }

    /// Drops the sled tree `name` if it exists and makes the drop durable.
    /// `what` names the tree in the log line.
    fn drop_legacy_tree(&self, name: &[u8], what: &str) -> StoreResult<()> {
        if !self.db.tree_names().iter().any(|tree| tree == name) {
            return Ok(());
        }
        self.db.drop_tree(name)?;
        self.sync_files()?;
        tracing::info!("removed {what}");
        Ok(())
    }

    /// Returns why the store takes no writes, if it takes none: after an
    /// open, because the stream index stops at a break in the events. Waits
    /// for a read of the index in the background, which may find one.
    pub fn read_only_reason(&self) -> Option<String> {
        self.wait_for_index();
        self.state().failure.clone()
    }

    fn state(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Reads the chain head from the newest event and checks that `meta`
    /// agrees, which it does unless the directory was altered.
    fn read_head(events: &sled::Tree, meta: &sled::Tree) -> StoreResult<ChainHead> {
        let last = match events.last()? {
            None => return Ok(ChainHead::EMPTY),
            Some(entry) => entry,
        };
        let seq = read_u64(&last.0)
            .ok_or_else(|| StoreError::Damaged("event key is not 8 bytes".into()))?;
        let raw = RawEvent::from_sled(seq, &last.1)?;
        let head = ChainHead { seq, hash: raw.hash };
        let recorded = meta.get(META_HEAD)?.and_then(|value| decode_head(&value));
        if recorded != Some(head) {
            let reason = format!("the chain head in meta does not match event {seq}");
            return Err(StoreError::Damaged(reason));
        }
        Ok(head)
    }

    /// Makes everything written so far durable: sled's flush, then fsync of
    /// the files it wrote.
    fn sync_files(&self) -> StoreResult<()> {
        self.db.flush()?;
        self.db_file.sync_all()?;
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&self) -> StoreResult<()> {
        let blob_dir = self.path.join("blobs");
        let entries = match std::fs::read_dir(&blob_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let mut synced_blobs =
            self.synced_blobs.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut synced_any = false;
        for entry in entries {
            let entry = entry?;
            if synced_blobs.contains(&entry.file_name()) {
                continue;
            }
            // sled removes blobs it no longer needs at any time, so a blob
            // listed above may be gone, and a removed blob needs no sync.
            let blob = match File::open(entry.path()) {
                Ok(blob) => blob,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            };
            blob.sync_all()?;
            synced_blobs.insert(entry.file_name());
            synced_any = true;
        }
        if synced_any {
            File::open(&blob_dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes the snapshots that earlier builds kept in sled, once a
    /// snapshot file has replaced them. Their format is one this build
    /// cannot read.
    fn drop_legacy_snapshots(&self) -> StoreResult<()> {
        let what = "the projection snapshots that earlier builds kept in sled";
        self.drop_legacy_tree(LEGACY_SNAPSHOT_TREE, what)
    }

    /// Inserts a batch's `events` rows, then the new chain head, and adds
    /// the events to the stream index.
    /// `streams` gives each event's sequence number, stream and version,
    /// which the caller has checked against the index.
    fn commit_rows(
        &self,
        streams: impl IntoIterator<Item = (u64, Sid, u64)>,
        rows: &[EventRow],
        head: ChainHead,
    ) -> StoreResult<()> {
        for (key, value) in rows {
            self.events.insert(&key[..], value.as_slice())?;
        }
        self.meta.insert(META_HEAD, encode_head(head))?;
        let mut index = self.index_mut();
        for (seq, stream, version) in streams {
            let added = index.push(seq, stream, version);
            debug_assert!(added.is_ok(), "the batch was checked against the index: {added:?}");
        }
        Ok(())
    }

    /// Writes the journal record of a batch that sled has just committed.
    /// When the active journal file is full, or the record is larger than
    /// a whole file, sled's flush makes this batch and all before it durable
    /// instead, and a full file hands over to the other one.
    fn journal_batch(
        &self,
        state: &mut WriteState,
        events: &[PendingEvent],
        rows: &[EventRow],
    ) -> StoreResult<()> {
        let entries = events.iter().zip(rows).map(|(pending, (_, value))| {
            (pending.seq, pending.stream, pending.version, &value[..])
        });
        let appended = state.journal.append(entries)?;
        if appended == Appended::Written {
            return Ok(());
        }
        self.save_index()?;
        self.sync_files()?;
        state.durable = state.written;
        if appended == Appended::Full {
            state.journal.start_generation()?;
            tracing::debug!(generation = state.journal.generation(), "switched journal files");
        }
        Ok(())
    }
}

impl EventStore for SledStore {
    fn write(&self, events: &[PendingEvent]) -> StoreResult<ChainHead> {
        // Before the write lock: a failed read of the index takes that
        // lock to stop writes.
        self.wait_for_index();
        let mut state = self.state();
        state.check_usable()?;
        let Some(first) = events.first() else {
            return Ok(state.written);
        };

        // Check sequence continuity and stream versions before writing.
        if first.seq != state.written.seq + 1 {
            return Err(StoreError::SequenceGap { head: state.written.seq, first: first.seq });
        }
        // Hashed with foldhash, seeded at random per process: SipHash, the
        // standard hasher, took 0.5% of the writer's samples here.
        let mut batch_versions: HashMap<Sid, u64, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(events.len(), Default::default());
        let mut rows = Vec::with_capacity(events.len());
        let mut head = state.written;
        {
            let index = self.index();
            for pending in events {
                if pending.seq != head.seq + 1 {
                    return Err(StoreError::SequenceGap { head: head.seq, first: pending.seq });
                }
                let current = match batch_versions.get(&pending.stream) {
                    Some(version) => *version,
                    None => index.version(pending.stream),
                };
                if pending.version != current + 1 {
                    return Err(StoreError::VersionConflict {
                        stream: pending.stream,
                        expected: pending.version - 1,
                        actual: current,
                    });
                }
                batch_versions.insert(pending.stream, pending.version);
                let (value, hash) = seal(pending, &head.hash);
                rows.push((seq_key(pending.seq), value));
                head = ChainHead { seq: pending.seq, hash };
            }
        }

        let streams = events.iter().map(|pending| (pending.seq, pending.stream, pending.version));
        // A failed insert may leave part of the batch in sled, past the
        // chain head. The next open removes it.
        if let Err(error) = self.commit_rows(streams, &rows, head) {
            state.failure = Some(format!("a sled insert failed ({error}); {REOPEN}"));
            return Err(error);
        }
        state.written = head;

        // sled now contains the batch. If the journal misses it, a later
        // journaled batch would not chain after a crash, so a failure here
        // stops all further writes.
        let journaled = self.journal_batch(&mut state, events, &rows);
        if let Err(error) = &journaled {
            state.failure = Some(format!("a journal write or sync failed ({error}); {REOPEN}"));
        }
        journaled?;
        Ok(head)
    }

    fn sync(&self) -> StoreResult<ChainHead> {
        let (written, journal_file) = {
            let state = self.state();
            state.check_usable()?;
            if state.written == state.durable {
                return Ok(state.durable);
            }
            (state.written, state.journal.active_file())
        };

        // Records written before a switch to the other file need no sync
        // here: the switch made sled durable first.
        if let Err(error) = journal_file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty
            // pages, so a second fsync could succeed without them.
            self.state().failure = Some(format!("a journal sync failed ({error}); {REOPEN}"));
            return Err(error.into());
        }
        let mut state = self.state();
        if written.seq > state.durable.seq {
            state.durable = written;
        }
        Ok(state.durable)
    }

    fn head(&self) -> ChainHead {
        self.state().durable
    }

    fn read_raw_from(&self, from: u64) -> RawEventIter<'_> {
        let mut entries = self.events.range(seq_key(from.max(1))..);
        let mut failed = false;
        // Each step runs under `guard_read`; after a failure the iterator
        // ends, because sled's iterator may be left inconsistent.
        let iter = std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let item = guard_read("the events tree", || {
                let Some(entry) = entries.next() else {
                    return Ok(None);
                };
                let (key, value) = entry?;
                let seq = read_u64(&key)
                    .ok_or_else(|| StoreError::Damaged("event key is not 8 bytes".into()))?;
                RawEvent::from_sled(seq, &value).map(Some)
            })
            .transpose()?;
            failed = matches!(item, Err(StoreError::Damaged(_) | StoreError::Engine(_)));
            Some(item)
        });
        Box::new(iter)
    }

    fn stream_sequences(&self, stream: Sid) -> StoreResult<Vec<u64>> {
        let index = self.index();
        match index.broken() {
            Some(reason) => Err(StoreError::Damaged(reason.to_string())),
            None => Ok(index.sequences(stream)),
        }
    }

    fn read_raw(&self, seq: u64) -> StoreResult<Option<RawEvent>> {
        guard_read("the events tree", || match self.events.get(seq_key(seq))? {
            None => Ok(None),
            Some(value) => RawEvent::from_sled(seq, &value).map(Some),
        })
    }

    fn save_snapshot(&self, seq: u64, encode: &mut SnapshotEncoder<'_>) -> StoreResult<u64> {
        // The event's hash ties the snapshot to this log. A log without
        // event `seq` gets no start from it, whatever hash it stores.
        let event_hash = self.read_raw(seq)?.map_or(GENESIS_HASH, |raw| raw.hash);
        let length = snapshots::save(&self.path, seq, &event_hash, encode)?;
        self.drop_legacy_snapshots()?;
        Ok(length)
    }

    fn snapshots(&self) -> StoreResult<SnapshotIter<'_>> {
        let files = SnapshotFile::list(&self.path)?;
        Ok(Box::new(files.into_iter().filter_map(|file| file.read())))
    }

    fn snapshots_below(&self, seq: u64) -> StoreResult<SnapshotIter<'_>> {
        let files = SnapshotFile::list(&self.path)?;
        let older = files.into_iter().filter(move |file| file.seq < seq);
        Ok(Box::new(older.filter_map(|file| file.read())))
    }

    /// Sums the sizes of the files in the log directory: sled's database,
    /// snap and blob files, the two preallocated journal files and the
    /// projection snapshots.
    /// sled's own `size_on_disk` counts only its `db` file and blobs.
    fn size_on_disk(&self) -> u64 {
        directory_bytes(&self.path)
    }
}

/// Saves the stream index rows of the events written since the last
/// ones, so that the next open need not read those events. sled flushes
/// them when its last handle is dropped, after this. A store that stopped
/// taking writes saves nothing: its next open rebuilds what is missing.
impl Drop for SledStore {
    fn drop(&mut self) {
        if !self.opened {
            // A read of the index begun by a failed open holds sled's
            // lock until it ends.
            let read = self.index_read.get_mut().unwrap_or_else(|poison| poison.into_inner());
            if let Some(read) = read.take() {
                let _ = read.handle.join();
            }
            return;
        }
        self.wait_for_index();
        if self.state().failure.is_some() {
            return;
        }
        if let Err(error) = guard_read("the stream index", || self.save_index()) {
            tracing::warn!(%error, "failed to save the stream index at close, so the next start reads the events instead");
        }
    }
}

/// Sums the sizes of the regular files under `directory`, subdirectories
/// included. A file removed while it is listed counts as zero bytes.
fn directory_bytes(directory: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            total += directory_bytes(&entry.path());
        } else if metadata.is_file() {
            total += metadata.len();
        }
    }
    total
}

/// Reads the stream index from the saved rows and the events after the
/// last row, up to `head`. The rows only save reading events: rows that
/// fail their checks are dropped with a warning, and every event is read
/// instead. A log of format 2 has no rows yet, so its first open with this
/// build reads every event. An event after the rows that cannot be added
/// leaves the index broken before it (`StreamIndex::broken`).
fn read_index(
    events: &sled::Tree,
    index_rows: &sled::Tree,
    head: ChainHead,
) -> StoreResult<StreamIndex> {
    let mut index = StreamIndex::default();
    let mut unusable = None;
    for entry in index_rows.iter() {
        let (key, value) = entry?;
        if let Err(reason) = index.load_row(&key, &value) {
            unusable = Some(reason);
            break;
        }
    }
    if unusable.is_none() && index.last_seq() > head.seq {
        unusable = Some(format!(
            "the stream index names events up to {}, past the chain head {}",
            index.last_seq(),
            head.seq
        ));
    }
    if let Some(reason) = unusable {
        tracing::warn!(
            %reason,
            "dropped the saved stream index; it is rebuilt from the events, which takes \
             longer than a start from the saved rows"
        );
        index_rows.clear()?;
        index = StreamIndex::default();
    }

    let from_rows = index.last_seq();
    let started = std::time::Instant::now();
    for entry in events.range(seq_key(from_rows + 1)..=seq_key(head.seq)) {
        let (key, value) = entry?;
        let seq =
            read_u64(&key).ok_or_else(|| StoreError::Damaged("event key is not 8 bytes".into()))?;
        // A break here must not stop the open, so that `verify` and
        // `replay` can name it in their own checks. The index stops
        // before it, and the store rejects writes and stream reads.
        let indexed = if seq != index.last_seq() + 1 {
            Err(format!("event {} is missing", index.last_seq() + 1))
        } else {
            RawEvent::from_sled(seq, &value)
                .and_then(|raw| raw.decode())
                .map_err(|error| error.to_string())
                .and_then(|recorded| index.push(seq, recorded.stream, recorded.version))
        };
        if let Err(reason) = indexed {
            let reason = format!(
                "the stream index cannot be built past event {}: {reason}. Run `subledger \
                     verify` to find the break, and restore the data directory from a backup",
                index.last_seq()
            );
            tracing::error!(%reason, "the log opens for reading only");
            index.set_broken(reason);
            break;
        }
    }
    if head.seq > from_rows && index.broken().is_none() {
        tracing::info!(
            from = from_rows + 1,
            to = head.seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read the events that the saved stream index does not cover"
        );
    }
    index.shrink_to_fit();
    Ok(index)
}

/// Runs a read of sled, turning a panic inside sled into `Damaged` as
/// `open` does: sled 0.34 panics on some corrupt pages when it first reads
/// them, which is after the open.
fn guard_read<T>(what: &str, read: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    catch_unwind(AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err(StoreError::Damaged(format!("sled panicked while reading {what}"))))
}
