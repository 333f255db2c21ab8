//! Replay speed: decoding stored event bodies, folding recorded events into
//! the projections one at a time and in bulk (`BulkFold`, the indexes built
//! at the end), a full `recover` from a sled log (read, hash-chain check
//! and decode on one thread, bulk fold on another), and decoding a
//! projection snapshot. Throughput is in events per second.
//!
//! The log is built once, in-process through the ledger writer: 1,000
//! sub-accounts (three events each) and 20,000 TOPUP postings.

mod fixture;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use subledger::ledger::recovery::recover;
use subledger::projection::{BulkFold, State};
use subledger::store::{EventStore, RawEvent, RecordedEvent, SledStore};

const SHAPE: fixture::LogShape = fixture::LogShape { accounts: 1_000, postings: 20_000 };

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store: Arc<dyn EventStore> =
        Arc::new(SledStore::open(dir.path()).expect("open a fresh log"));
    let built = fixture::build_log(store.clone(), SHAPE, 0, |_| {});
    let events = built.last_seq;
    let raw_events: Vec<RawEvent> =
        store.read_raw_from(1).map(|raw| raw.expect("read an event")).collect();
    let recorded: Vec<RecordedEvent> =
        raw_events.iter().map(|raw| raw.decode().expect("decode an event")).collect();
    assert_eq!(recorded.len() as u64, events, "every event is read back");

    let mut group = c.benchmark_group("replay");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(events));

    group.bench_function("decode", |b| {
        b.iter(|| {
            for raw in &raw_events {
                std::hint::black_box(raw.decode().expect("decode an event"));
            }
        });
    });

    group.bench_function("fold", |b| {
        b.iter(|| {
            let mut state = State::default();
            for event in &recorded {
                state.apply_recorded(event).expect("a recorded event applies");
            }
            state
        });
    });

    group.bench_function("fold_bulk", |b| {
        b.iter(|| {
            let mut fold = BulkFold::new();
            for event in &recorded {
                fold.apply_recorded(event).expect("a recorded event applies");
            }
            fold.finish().expect("the indexes build")
        });
    });

    group.bench_function("recover", |b| {
        b.iter(|| recover(store.as_ref()).expect("recover the log"));
    });

    let state = recover(store.as_ref()).expect("recover the log").state;
    let snapshot = state.encode();
    group.bench_function("snapshot_decode", |b| {
        b.iter(|| State::decode(&snapshot).expect("decode the snapshot"));
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
