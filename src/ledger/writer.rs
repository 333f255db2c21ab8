//! The single writer: the only code that appends to the event log.
//!
//! Handlers send commands over a bounded channel. The writer thread takes
//! every command waiting (up to `WRITER_BATCH_COMMANDS_MAX`), decides each
//! against its working copy of the state and folds the accepted events in
//! at once, so later commands of a batch see earlier ones. It writes the
//! whole batch to the log in one atomic write and hands it to the committer
//! thread.
//!
//! The committer makes batches durable. It takes every batch handed over
//! since its last sync and syncs the log once for all of them (group
//! commit). Then it publishes the newest of their states to readers and
//! replies to their commands, in order. While it waits for the disk, the writer
//! decides and writes the next batch, so deciding and syncing overlap. No
//! reply is sent, and no state published, before every batch up to it is
//! durable, so readers and clients never see an outcome that a crash could
//! take back. A batch that wrote nothing waits its turn all the same: a
//! rejection or a replayed result may rest on the batches before it.
//!
//! If the log cannot write or sync a batch, writing stops: that batch and
//! every later command get `Unavailable` and the service reports itself not
//! ready. Whether a failed batch reached the disk is decided by the log at
//! the next start; clients retry postings with the same `refer_trans_id`
//! and get the original back if it landed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::domain::error::DomainError;
use crate::domain::events::{Event, EventMeta, IdempotencyKeyRecorded, IdempotencyRecord};
use crate::ledger::command::{Command, CommandContext, Outcome};
use crate::ledger::decide::decide;
use crate::projection::State;
use crate::store::{EventStore, PendingEvent};

/// Commands decided and committed together at most. A batch of this many
/// sub-account creations is about 3,000 events, well within one sled
/// transaction.
pub const WRITER_BATCH_COMMANDS_MAX: usize = 1024;
/// Commands that may wait for the writer before senders wait in turn.
pub const COMMAND_QUEUE_CAPACITY: usize = 8192;
/// Written batches that may wait for the committer before the writer waits
/// in turn. Two keep the writer busy during a sync; more would only add
/// latency, since the committer syncs all waiting batches at once.
pub const COMMIT_QUEUE_BATCHES: usize = 2;

type Reply = oneshot::Sender<Result<Outcome, DomainError>>;

struct Request {
    context: CommandContext,
    command: Command,
    reply: Reply,
}

enum Message {
    Command(Box<Request>),
    /// Finish the commands queued before this one, then exit.
    Stop,
}

/// Counters the writer keeps for metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub commands: AtomicU64,
    pub events: AtomicU64,
    /// Sum of the sync latencies, in microseconds.
    pub commit_micros: AtomicU64,
    /// Commands per sync by power-of-two bucket: 1, 2, 4, … 1024 and more.
    pub batch_size_buckets: [AtomicU64; 11],
    /// Sync latency by bucket, see `COMMIT_LATENCY_BUCKETS_MICROS`.
    pub commit_latency_buckets: [AtomicU64; 12],
}

/// Upper bounds of the commit latency buckets, in microseconds.
pub const COMMIT_LATENCY_BUCKETS_MICROS: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

impl WriterStats {
    fn record_batch(&self, commands: usize, events: usize, commit_micros: Option<u64>) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        let bucket = (usize::BITS - commands.max(1).leading_zeros() - 1) as usize;
        self.batch_size_buckets[bucket.min(10)].fetch_add(1, Ordering::Relaxed);
        if let Some(micros) = commit_micros {
            self.commit_micros.fetch_add(micros, Ordering::Relaxed);
            let bucket = COMMIT_LATENCY_BUCKETS_MICROS
                .iter()
                .position(|bound| micros <= *bound)
                .unwrap_or(COMMIT_LATENCY_BUCKETS_MICROS.len() - 1);
            self.commit_latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Write a projection snapshot each time the log passes a multiple of
    /// this many events; 0 disables snapshots.
    pub snapshot_interval_events: u64,
}

/// The handle the API holds: sends commands and reads the published state.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Message>,
    published: Arc<ArcSwap<State>>,
    failed: Arc<AtomicBool>,
    pub stats: Arc<WriterStats>,
    pub store: Arc<dyn EventStore>,
}

impl Ledger {
    /// Starts the writer thread on a recovered state.
    pub fn start(
        store: Arc<dyn EventStore>,
        state: State,
        config: WriterConfig,
    ) -> (Ledger, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
        let published = Arc::new(ArcSwap::from_pointee(state));
        let failed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let writer = Writer {
            receiver,
            store: store.clone(),
            published: published.clone(),
            failed: failed.clone(),
            stats: stats.clone(),
            config,
            last_recorded_at: newest_recorded_at(store.as_ref()),
        };
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run())
            .expect("the operating system starts the writer thread");
        (Ledger { sender, published, failed, stats, store }, handle)
    }

    /// Sends a command and waits until it is decided and, if it changed
    /// anything, durable and visible to readers.
    pub async fn submit(
        &self,
        context: CommandContext,
        command: Command,
    ) -> Result<Outcome, DomainError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { context, command, reply };
        if self.sender.send(Message::Command(Box::new(request))).await.is_err() {
            return Err(DomainError::Unavailable("the ledger writer has stopped".into()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(DomainError::Unavailable("the ledger writer has stopped".into()))
        })
    }

    /// Asks the writer to exit after the commands already queued. Commands
    /// sent later get `Unavailable`.
    pub fn stop(&self) {
        if self.sender.try_send(Message::Stop).is_err() {
            // The queue is full or closed; a blocking send from this
            // synchronous context still delivers the stop in order.
            let _ = self.sender.blocking_send(Message::Stop);
        }
    }

    /// The newest published state.
    pub fn state(&self) -> Arc<State> {
        self.published.load_full()
    }

    /// Whether the writer still accepts writes.
    pub fn is_healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }
}

/// Reads the recording time of the log's newest event, so that the first
/// batch after a start is not recorded before it even if the clock was set
/// back. Returns `None` for an empty log, and for an unreadable newest event
/// after logging it.
fn newest_recorded_at(store: &dyn EventStore) -> Option<DateTime<Utc>> {
    let head = store.head();
    if head.seq == 0 {
        return None;
    }
    let decoded = store.read_raw(head.seq).map(|raw| raw.map(|raw| raw.decode()));
    match decoded {
        Ok(Some(Ok(recorded))) => Some(recorded.meta.recorded_at),
        Ok(None) => {
            tracing::warn!(
                seq = head.seq,
                "the newest event is missing, so recorded times may go back"
            );
            None
        }
        Ok(Some(Err(error))) | Err(error) => {
            tracing::warn!(
                seq = head.seq,
                %error,
                "the newest event is unreadable, so recorded times may go back"
            );
            None
        }
    }
}

struct Writer {
    receiver: mpsc::Receiver<Message>,
    store: Arc<dyn EventStore>,
    published: Arc<ArcSwap<State>>,
    failed: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
    config: WriterConfig,
    /// Recorded times never go backwards, even if the clock does.
    last_recorded_at: Option<DateTime<Utc>>,
}

/// A batch the writer has written, on its way to the committer.
struct Written {
    /// The state with the batch folded in.
    state: Arc<State>,
    decided: Vec<Decided>,
    /// First and last sequence numbers written, if the batch wrote events.
    seqs: Option<(u64, u64)>,
    /// Set when the write failed: every command of the batch gets this.
    write_error: Option<String>,
}

/// The thread that syncs written batches, publishes and replies.
struct Committer {
    receiver: std_mpsc::Receiver<Written>,
    store: Arc<dyn EventStore>,
    published: Arc<ArcSwap<State>>,
    failed: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
    config: WriterConfig,
    snapshot_running: Arc<AtomicBool>,
    /// Set at the first group whose write or sync failed. The states of
    /// later groups may contain the failed batches, so none is published.
    stopped: bool,
}

/// A decided command waiting for the batch's commit.
struct Decided {
    reply: Reply,
    result: Result<Outcome, DomainError>,
    wrote_events: bool,
}

impl Writer {
    fn run(mut self) {
        tracing::info!("ledger writer started");
        let (commits, receiver) = std_mpsc::sync_channel(COMMIT_QUEUE_BATCHES);
        let committer = Committer {
            receiver,
            store: self.store.clone(),
            published: self.published.clone(),
            failed: self.failed.clone(),
            stats: self.stats.clone(),
            config: self.config.clone(),
            snapshot_running: Arc::new(AtomicBool::new(false)),
            stopped: false,
        };
        let committer = std::thread::Builder::new()
            .name("ledger-commit".into())
            .spawn(move || committer.run())
            .expect("the operating system starts the committer thread");

        let mut working = State::clone(&self.published.load_full());
        let mut batch = Vec::with_capacity(WRITER_BATCH_COMMANDS_MAX);
        let mut stopping = false;
        while !stopping {
            match self.receiver.blocking_recv() {
                Some(Message::Command(request)) => batch.push(*request),
                Some(Message::Stop) | None => break,
            }
            while batch.len() < WRITER_BATCH_COMMANDS_MAX {
                match self.receiver.try_recv() {
                    Ok(Message::Command(request)) => batch.push(*request),
                    Ok(Message::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let written = self.process(&mut working, &mut batch);
            if commits.send(written).is_err() {
                tracing::error!("the committer thread has stopped; the writer stops");
                break;
            }
        }
        // The committer replies to every batch handed over before it exits.
        drop(commits);
        if committer.join().is_err() {
            tracing::error!("the committer thread panicked");
            self.failed.store(true, Ordering::Release);
        }
        self.receiver.close();
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Command(request) = message {
                let error = DomainError::Unavailable("the service is shutting down".into());
                let _ = request.reply.send(Err(error));
            }
        }
        tracing::info!("ledger writer stopped");
    }

    /// Returns the recording time of the next batch in whole microseconds.
    /// The log stores `recorded_at` to the microsecond, so a finer live time
    /// would differ from the same event replayed after a restart.
    fn next_recorded_at(&mut self) -> DateTime<Utc> {
        let now = Utc::now().trunc_subsecs(6);
        let at = match self.last_recorded_at {
            Some(last) if last > now => last,
            _ => now,
        };
        self.last_recorded_at = Some(at);
        at
    }

    /// Decides a batch against `working`, folds its events in and writes
    /// them to the log (not yet durably).
    fn process(&mut self, working: &mut State, batch: &mut Vec<Request>) -> Written {
        if self.failed.load(Ordering::Acquire) {
            let decided = batch
                .drain(..)
                .map(|request| Decided {
                    reply: request.reply,
                    result: Err(stopped_error()),
                    wrote_events: false,
                })
                .collect();
            let state = Arc::new(working.clone());
            return Written { state, decided, seqs: None, write_error: None };
        }

        // At most one run rebuilt per batch, so that the runs that each
        // posting changes do not all stop the writer in the same batch.
        working.rebuild_a_changed_run();
        // Decide every command against the working state, folding accepted
        // events in as we go. `base` is the state before the batch, to
        // rebuild from if a decided event does not apply.
        let base = working.clone();
        let recorded_at = self.next_recorded_at();
        let mut pending = Vec::new();
        let mut decided = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            let before = pending.len();
            let result = decide_one(working, &base, &request, recorded_at, &mut pending);
            let wrote_events = pending.len() > before;
            decided.push(Decided { reply: request.reply, result, wrote_events });
        }

        let Some(last) = pending.last() else {
            return Written { state: Arc::new(base), decided, seqs: None, write_error: None };
        };
        let seqs = Some((pending[0].seq, last.seq));
        if let Err(error) = self.store.write(&pending) {
            tracing::error!(
                %error,
                first_seq = pending[0].seq,
                events = pending.len(),
                "writing a batch to the log failed; the writer stops taking writes"
            );
            self.failed.store(true, Ordering::Release);
            *working = base;
            let write_error = Some(error.to_string());
            return Written { state: Arc::new(working.clone()), decided, seqs, write_error };
        }
        Written { state: Arc::new(working.clone()), decided, seqs, write_error: None }
    }
}

fn stopped_error() -> DomainError {
    DomainError::Unavailable(
        "writes are stopped after a storage failure; restart the service".into(),
    )
}

fn unknown_outcome_error(error: &str) -> DomainError {
    DomainError::Unavailable(format!(
        "the write could not be made durable ({error}); its outcome is known after a restart"
    ))
}

impl Committer {
    fn run(mut self) {
        while let Ok(first) = self.receiver.recv() {
            let mut group = vec![first];
            while let Ok(next) = self.receiver.try_recv() {
                group.push(next);
            }
            self.commit(group);
        }
    }

    /// Syncs the log once for a group of written batches, then publishes
    /// the newest state and replies to every command in order.
    fn commit(&mut self, group: Vec<Written>) {
        let commands: usize = group.iter().map(|written| written.decided.len()).sum();
        let seqs = group.iter().filter_map(|written| written.seqs);
        let first_seq = seqs.clone().map(|(first, _)| first).min();
        let last_seq = seqs.map(|(_, last)| last).max();

        let mut sync_error = None;
        // After a failure nothing is synced: every reply is an error.
        if let (false, Some(first_seq), Some(last_seq)) = (self.stopped, first_seq, last_seq) {
            let started = Instant::now();
            let synced = self.store.sync();
            let commit_micros = Some(started.elapsed().as_micros() as u64);
            match synced {
                Ok(head) if head.seq >= last_seq => {}
                Ok(head) => {
                    sync_error = Some(format!(
                        "the log synced up to event {} instead of {last_seq}",
                        head.seq
                    ));
                }
                Err(error) => sync_error = Some(error.to_string()),
            }
            if let Some(error) = &sync_error {
                tracing::error!(
                    %error,
                    first_seq,
                    last_seq,
                    "making batches durable failed; the writer stops taking writes"
                );
                self.failed.store(true, Ordering::Release);
            }
            let events = (last_seq + 1 - first_seq) as usize;
            self.stats.record_batch(commands, events, commit_micros);
        } else {
            self.stats.record_batch(commands, 0, None);
        }

        // Publish the newest state whose batches all became durable. After
        // any failure nothing more is published.
        let healthy =
            !self.stopped && sync_error.is_none() && group.iter().all(|w| w.write_error.is_none());
        let earlier_failure = self.stopped.then(|| "an earlier batch failed".to_string());
        self.stopped = !healthy;
        // The states replaced here are dropped after the replies. The last
        // reference to a state frees the tree nodes that no newer state
        // shares, several per posting, and that work need not delay a reply.
        let mut replaced = Vec::with_capacity(group.len() + 1);
        if healthy {
            if let Some(newest) = group.last() {
                replaced.push(self.published.swap(newest.state.clone()));
            }
        }
        for written in group {
            replaced.push(written.state);
            let failure = written
                .write_error
                .as_deref()
                .or(sync_error.as_deref())
                .or(earlier_failure.as_deref());
            for entry in written.decided {
                let result = match failure {
                    Some(error) if entry.wrote_events => Err(unknown_outcome_error(error)),
                    Some(_) => Err(stopped_error()),
                    None => entry.result,
                };
                let _ = entry.reply.send(result);
            }
        }
        drop(replaced);
        if let (true, Some(first_seq), Some(last_seq)) = (healthy, first_seq, last_seq) {
            self.maybe_snapshot(first_seq, last_seq);
        }
    }

    /// Starts a snapshot in the background when the synced batches crossed
    /// a multiple of the snapshot interval and none is running.
    fn maybe_snapshot(&self, first_seq: u64, last_seq: u64) {
        let interval = self.config.snapshot_interval_events;
        if interval == 0 || (first_seq - 1) / interval == last_seq / interval {
            return;
        }
        if self.snapshot_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.published.load_full();
        let store = self.store.clone();
        let running = self.snapshot_running.clone();
        std::thread::spawn(move || {
            // A panic must still clear `running`, or no snapshot would start
            // again until a restart. sled may panic on a corrupt page.
            let written = catch_unwind(AssertUnwindSafe(|| {
                crate::ledger::recovery::write_snapshot(store.as_ref(), &state)
            }));
            if written.is_err() {
                tracing::error!(
                    seq = state.last_seq,
                    "projection snapshot panicked; the next interval tries again"
                );
            }
            running.store(false, Ordering::Release);
        });
    }
}

/// Decides one command, folds its events into `working` and adds them to
/// `pending`. A rejected command leaves both as they were: `working` is
/// `base` with the events in `pending` folded in.
fn decide_one(
    working: &mut State,
    base: &State,
    request: &Request,
    recorded_at: DateTime<Utc>,
    pending: &mut Vec<PendingEvent>,
) -> Result<Outcome, DomainError> {
    let context = &request.context;

    // A repeated Idempotency-Key returns the first result, or a conflict if
    // the request differs.
    if let Some((key, fingerprint)) = &context.idempotency {
        let lookup = (context.actor.to_text(), key.clone());
        if let Some(earlier) = working.idempotency.get(&lookup) {
            if &earlier.fingerprint == fingerprint {
                return Ok(Outcome::Replayed(earlier.resource));
            }
            let message =
                format!("Idempotency-Key {key:?} was already used for a different request");
            return Err(DomainError::IdempotencyMismatch { message, fields: Vec::new() });
        }
    }

    let decision = decide(working, &request.command)?;
    let resource = match decision.outcome {
        Outcome::Done(sid) | Outcome::Replayed(sid) => sid,
    };
    let mut events = decision.events;

    // A key on a request that repeats an earlier posting is bound to that
    // posting too, so that the key answers the same way from now on.
    if let (Outcome::Replayed(resource), Some(_)) = (decision.outcome, &context.idempotency) {
        if let Some(transaction) = working.transaction(resource) {
            let stream = transaction.account();
            events.push(Event::IdempotencyKeyRecorded(IdempotencyKeyRecorded { stream, resource }));
        }
    }

    // Fold the events into `working` itself. A scratch copy per command
    // would make every map it touches copy its path of nodes again, even
    // nodes this batch already owns; that copying took more writer time
    // than the sled append. An event the state rejects (a bug in `decide`)
    // may leave `working` half-changed, so that rare path rebuilds it.
    let mut new_events = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        let idempotency = match (&context.idempotency, index) {
            (Some((key, fingerprint)), 0) => Some(IdempotencyRecord {
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                resource,
            }),
            _ => None,
        };
        let meta = EventMeta {
            recorded_at,
            actor: context.actor,
            request_id: context.request_id.clone(),
            idempotency,
        };
        let stream = event.stream();
        let seq = working.last_seq + 1;
        let version = match working.apply(seq, &meta, &event) {
            Ok(version) => version,
            Err(error) => {
                tracing::error!(%error, request_id = %context.request_id, "decided event does not apply");
                *working = rebuild(base, pending);
                return Err(DomainError::ConcurrencyConflict(format!(
                    "the request conflicts with the current state: {error}"
                )));
            }
        };
        new_events.push(PendingEvent { seq, stream, version, meta, event });
    }
    pending.extend(new_events);
    Ok(decision.outcome)
}

/// `base` with the batch's accepted events folded in again.
fn rebuild(base: &State, pending: &[PendingEvent]) -> State {
    let mut state = base.clone();
    for event in pending {
        state
            .apply(event.seq, &event.meta, &event.event)
            .expect("events that applied to this state once apply again");
    }
    state
}
