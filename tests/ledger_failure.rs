//! The ledger writer when its store fails, through a store that injects the
//! failures.
//!
//! After a failed sync, a command decided on a batch whose sync failed is
//! not acknowledged, and readers never see that batch. The store's `sync`
//! waits 300 ms and then fails. While the committer
//! waits in it, the same `CreateDeveloper` is sent again with the same
//! Idempotency-Key: the writer decides it against its working state, which
//! contains the first batch, as a replay that writes no events. The first
//! batch's sync fails, so the first command gets an error. The replay
//! must not return success, and the developer must not become visible to
//! readers, because its only batch was never made durable.
//!
//! After a projection snapshot panicked (the store's `save_snapshot`
//! panics on its first call, as sled may on a corrupt page), the writer
//! must still write the snapshots of later intervals.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use subledger::crypto::hash_api_key;
use subledger::domain::events::Actor;
use subledger::domain::ids::{Sid, SidKind};
use subledger::ledger::{Command, CommandContext, Ledger, WriterConfig};
use subledger::projection::State;
use subledger::store::{
    ChainHead, EventStore, PendingEvent, RawEvent, RawEventIter, SledStore, SnapshotEncoder,
    SnapshotIter, StoreError, StoreResult,
};

/// How long the snapshot test waits for a snapshot after the one that
/// panicked.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// Delegates to a `SledStore`, except that `sync` fails once `failing` is
/// set, and the first `save_snapshot` panics when `panic_first_save` is.
struct FaultyStore {
    inner: SledStore,
    failing: AtomicBool,
    panic_first_save: bool,
    saves: AtomicU64,
}

impl FaultyStore {
    fn open(directory: &std::path::Path, panic_first_save: bool) -> FaultyStore {
        FaultyStore {
            inner: SledStore::open(directory).expect("open a new store"),
            failing: AtomicBool::new(false),
            panic_first_save,
            saves: AtomicU64::new(0),
        }
    }
}

impl EventStore for FaultyStore {
    fn write(&self, events: &[PendingEvent]) -> StoreResult<ChainHead> {
        self.inner.write(events)
    }

    fn sync(&self) -> StoreResult<ChainHead> {
        if self.failing.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(300));
            return Err(StoreError::Io(std::io::Error::other("injected fdatasync failure")));
        }
        self.inner.sync()
    }

    fn head(&self) -> ChainHead {
        self.inner.head()
    }

    fn read_raw_from(&self, from: u64) -> RawEventIter<'_> {
        self.inner.read_raw_from(from)
    }

    fn stream_sequences(&self, stream: Sid) -> StoreResult<Vec<u64>> {
        self.inner.stream_sequences(stream)
    }

    fn read_raw(&self, seq: u64) -> StoreResult<Option<RawEvent>> {
        self.inner.read_raw(seq)
    }

    fn save_snapshot(&self, seq: u64, encode: &mut SnapshotEncoder<'_>) -> StoreResult<u64> {
        if self.saves.fetch_add(1, Ordering::SeqCst) == 0 && self.panic_first_save {
            panic!("injected panic in the first snapshot save");
        }
        self.inner.save_snapshot(seq, encode)
    }

    fn snapshots(&self) -> StoreResult<SnapshotIter<'_>> {
        self.inner.snapshots()
    }

    fn size_on_disk(&self) -> u64 {
        self.inner.size_on_disk()
    }
}

fn create_developer(sid: Sid) -> Command {
    Command::CreateDeveloper {
        sid,
        name: "replayed".into(),
        api_key_sha256: hex::encode(hash_api_key("key")),
    }
}

#[test]
fn failed_sync_stops_acknowledging() {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    let store = Arc::new(FaultyStore::open(directory.path(), false));
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let config = WriterConfig { snapshot_interval_events: 0 };
    let (ledger, _writer) = Ledger::start(dyn_store, State::default(), config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a runtime");

    let sid = Sid::generate(SidKind::Developer);
    let context = CommandContext {
        actor: Actor::Platform,
        request_id: "request-1".into(),
        idempotency: Some(("key-1".into(), "fingerprint-1".into())),
    };
    store.failing.store(true, Ordering::SeqCst);
    let (first, replay) = runtime.block_on(async {
        let first = {
            let ledger: Ledger = ledger.clone();
            let context = context.clone();
            tokio::spawn(async move { ledger.submit(context, create_developer(sid)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let replay = ledger.submit(context.clone(), create_developer(sid)).await;
        (first.await.expect("join the first submit"), replay)
    });
    assert!(first.is_err(), "the first command's sync failed: {first:?}");
    assert!(replay.is_err(), "a replay of a batch whose sync failed was acknowledged: {replay:?}");
    let state = ledger.state();
    assert!(!state.developers.contains_key(&sid), "the unsynced developer is not visible");
    assert_eq!(state.last_seq, 0, "nothing past the durable head is published");

    // Later commands are refused too, and still publish nothing.
    let later = runtime.block_on(ledger.submit(context, create_developer(sid)));
    assert!(later.is_err(), "a command after the failure is refused: {later:?}");
    assert_eq!(ledger.state().last_seq, 0, "still nothing published");
}

/// A `CreateDeveloper` with a fresh sid, named by `index`.
fn numbered_developer(index: u64) -> (CommandContext, Command) {
    let context = CommandContext {
        actor: Actor::Platform,
        request_id: format!("request-{index}"),
        idempotency: None,
    };
    let command = Command::CreateDeveloper {
        sid: Sid::generate(SidKind::Developer),
        name: format!("developer {index}"),
        api_key_sha256: hex::encode(hash_api_key("key")),
    };
    (context, command)
}

#[test]
fn snapshots_resume_after_panic() {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    let store = Arc::new(FaultyStore::open(directory.path(), true));
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let config = WriterConfig { snapshot_interval_events: 1 };
    let (ledger, _writer) = Ledger::start(dyn_store, State::default(), config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a runtime");

    // Every event crosses an interval, so each command may start a
    // snapshot, but one starts only when no other is running.
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    let mut commands = 0;
    let mut saved = None;
    while saved.is_none() && Instant::now() < deadline {
        commands += 1;
        let (context, command) = numbered_developer(commands);
        let result = runtime.block_on(ledger.submit(context, command));
        assert!(result.is_ok(), "command {commands} succeeds: {result:?}");
        std::thread::sleep(Duration::from_millis(20));
        let mut snapshots = store.inner.snapshots().expect("list the snapshots");
        saved = snapshots.next().map(|snapshot| snapshot.seq);
    }

    let saves = store.saves.load(Ordering::SeqCst);
    assert!(saves >= 2, "a save follows the one that panicked, after {commands} commands");
    assert!(saved.is_some(), "a snapshot is stored within {SNAPSHOT_WAIT:?}");
}
