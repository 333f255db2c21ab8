//! Append-and-commit cost of the sled event log by batch size: one
//! `SledStore::append` of 1, 16, 128 or 1024 TOPUP events, each a durable
//! write (sled inserts and a journal record, then one `fdatasync` of the
//! journal file), as the writer's group commit does it. Throughput
//! is in events per second.
//!
//! Then the open of a cleanly closed log of `OPEN_EVENTS` postings on
//! `OPEN_STREAMS` sub-accounts: sled's own open, the journal, and the
//! stream index read back from its saved rows.

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rust_decimal::Decimal;
use subledger::domain::events::{Actor, BalancePosted, Event, EventMeta, Leg};
use subledger::domain::ids::{Sid, SidKind};
use subledger::domain::money::Currency;
use subledger::projection::subaccount_ledger_name;
use subledger::store::{EventStore, PendingEvent, SledStore};

/// Batch sizes measured: a lone write, then the sizes group commit reaches
/// as more clients wait, up to the writer's limit of 1024 commands.
const BATCH_SIZES: [usize; 4] = [1, 16, 128, 1024];
/// Sub-accounts the appended postings are spread over.
const STREAMS: usize = 1000;
/// The log that `open_with_index` opens: ten postings per sub-account.
const OPEN_EVENTS: usize = 300_000;
const OPEN_STREAMS: usize = 30_000;

/// Hands out postings that continue the log: the next sequence number and
/// each stream's next version.
struct PostingSource {
    developer: Sid,
    streams: Vec<(Sid, u64, Decimal)>,
    next_seq: u64,
    next_stream: usize,
}

impl PostingSource {
    fn new(head_seq: u64, streams: usize) -> PostingSource {
        let streams =
            (0..streams).map(|_| (Sid::generate(SidKind::Account), 0, Decimal::ZERO)).collect();
        PostingSource {
            developer: Sid::generate(SidKind::Developer),
            streams,
            next_seq: head_seq + 1,
            next_stream: 0,
        }
    }

    fn batch(&mut self, size: usize) -> Vec<PendingEvent> {
        (0..size).map(|_| self.next()).collect()
    }

    fn next(&mut self) -> PendingEvent {
        let developer = self.developer;
        let streams = self.streams.len();
        let (account, version, balance) = &mut self.streams[self.next_stream];
        self.next_stream = (self.next_stream + 1) % streams;
        let amount = Decimal::new(1250, 2);
        *version += 1;
        *balance += amount;
        let seq = self.next_seq;
        self.next_seq += 1;
        let posted = BalancePosted {
            sid: Sid::generate(SidKind::Transaction),
            account_sid: *account,
            developer_sid: developer,
            amount,
            currency: Currency::DEFAULT,
            pay_method: 4,
            refer_trans_id: Some(format!("bench-{seq:010}")),
            desc: None,
            legs: [
                Leg { account: subaccount_ledger_name(*account).to_string(), amount },
                Leg { account: "funding:paypal".to_string(), amount: -amount },
            ],
            balance_after: *balance,
        };
        let meta = EventMeta {
            recorded_at: Utc::now(),
            actor: Actor::Developer(developer),
            request_id: format!("{seq:032x}"),
            idempotency: None,
        };
        PendingEvent {
            seq,
            stream: *account,
            version: *version,
            meta,
            event: Event::BalanceToppedUp(posted),
        }
    }
}

fn append_and_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SledStore::open(dir.path()).expect("open a fresh log");
    let mut source = PostingSource::new(store.head().seq, STREAMS);

    let mut group = c.benchmark_group("append_and_commit");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    for size in BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            // Building the events is not part of the append.
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let batch = source.batch(size);
                    let started = Instant::now();
                    store.append(&batch).expect("append a batch");
                    elapsed += started.elapsed();
                }
                elapsed
            });
        });
    }
    group.finish();
}

fn open_with_index(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    {
        let store = SledStore::open(dir.path()).expect("open a fresh log");
        let mut source = PostingSource::new(store.head().seq, OPEN_STREAMS);
        for _ in 0..OPEN_EVENTS / 1000 {
            store.append(&source.batch(1000)).expect("append a batch");
        }
    }

    let mut group = c.benchmark_group("open_with_index");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(OPEN_EVENTS as u64));
    group.bench_function(BenchmarkId::from_parameter(OPEN_EVENTS), |b| {
        // Each open must close before the next, and the close is not timed.
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let store = SledStore::open(dir.path()).expect("reopen the log");
                elapsed += started.elapsed();
                assert_eq!(store.head().seq, OPEN_EVENTS as u64);
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, append_and_commit, open_with_index);
criterion_main!(benches);
