//! The ledger writer after a projection snapshot panicked: the store's
//! `save_snapshot` panics on its first call, as sled may on a corrupt page,
//! and the writer must still write the snapshots of later intervals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use subledger::crypto::hash_api_key;
use subledger::domain::events::Actor;
use subledger::domain::ids::{Sid, SidKind};
use subledger::ledger::{Command, CommandContext, Ledger, WriterConfig};
use subledger::projection::State;
use subledger::store::{
    ChainHead, EventStore, PendingEvent, RawEvent, RawEventIter, SledStore, SnapshotEncoder,
    SnapshotIter, StoreResult,
};

/// How long the test waits for a snapshot after the one that panicked.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// Delegates to a `SledStore`, except that the first `save_snapshot` panics.
struct PanickingSnapshot {
    inner: SledStore,
    saves: AtomicU64,
}

impl EventStore for PanickingSnapshot {
    fn write(&self, events: &[PendingEvent]) -> StoreResult<ChainHead> {
        self.inner.write(events)
    }

    fn sync(&self) -> StoreResult<ChainHead> {
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
        if self.saves.fetch_add(1, Ordering::SeqCst) == 0 {
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

fn create_developer(index: u64) -> (CommandContext, Command) {
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
    let inner = SledStore::open(directory.path()).expect("open a new store");
    let store = Arc::new(PanickingSnapshot { inner, saves: AtomicU64::new(0) });
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
        let (context, command) = create_developer(commands);
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
