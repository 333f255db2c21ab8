//! The `scale` mode: a log of many sub-accounts and postings, built
//! in-process through the ledger writer (faster than HTTP, and without an
//! Argon2id hash per sub-account), then the server's cold start (a full
//! replay), a projection snapshot, its start from that snapshot, and the
//! scenarios against the large state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rust_decimal::Decimal;
use subledger::store::EventStore;

use crate::drive::Target;
use crate::fixture::{self, LogShape};
use crate::server::{ServerOptions, ServerProcess};
use crate::{LoadArgs, ServerArgs};

/// How long a started server may take to answer `/readyz` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Maximum time to wait for the log's lock after writing the snapshot.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Args)]
pub struct ScaleArgs {
    /// Sub-accounts in the log (three events each).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    accounts: u64,
    /// TOPUP postings in the log, spread round-robin over the sub-accounts.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    postings: u64,
    /// Data directory to build in; it must not exist yet, and it is kept.
    /// Default: a temporary directory, removed at exit.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// Settings of `starts`.
#[derive(Args)]
pub struct StartsArgs {
    /// Data directory to start on, such as one `scale --data-dir` kept.
    #[arg(long)]
    data_dir: PathBuf,
    /// Starts to time, one after another.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn scale(runtime: &tokio::runtime::Runtime, args: &ScaleArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("failed to create a temporary directory")?;
    let data_dir = match &args.data_dir {
        Some(dir) if dir.exists() => bail!("--data-dir {} exists already", dir.display()),
        Some(dir) => dir.clone(),
        None => temp.path().join("data"),
    };
    let shape = LogShape { accounts: args.accounts as usize, postings: args.postings as usize };
    let built = build(&data_dir, shape)?;
    let mut options = args.server.options(data_dir.clone());
    options.snapshot_interval = None;

    // Cold start: no snapshot, so the server replays the whole log.
    let (server, ready_after) = start_ready(runtime, &options)?;
    print_start("cold start", &server, ready_after)?;
    server.stop()?;

    write_snapshot(&data_dir, &built)?;
    let (server, ready_after) = start_ready(runtime, &options)?;
    print_start("snapshot start", &server, ready_after)?;

    let target = Target {
        addr: server.addr,
        base_url: format!("http://{}", server.addr),
        authorization: crate::drive::basic_authorization(
            &built.developer.to_string(),
            &built.api_key,
        ),
        accounts: Arc::new(built.accounts.iter().map(|sid| sid.to_string()).collect()),
    };
    let before = fixture::posting_amount() * Decimal::from(shape.postings as u64);
    runtime.block_on(async {
        let results = crate::run_scenarios(&server, &target, &args.load).await?;
        crate::print_results(&args.load, &results);
        crate::check_balances(&target, &results, before).await
    })?;
    server.stop()?;
    Ok(())
}

/// Starts the server `args.runs` times on the data directory, stopping it
/// after each start, and prints each start and the median time to ready.
pub fn starts(runtime: &tokio::runtime::Runtime, args: &StartsArgs) -> anyhow::Result<()> {
    if !args.data_dir.exists() {
        bail!(
            "--data-dir {} does not exist; build one with scale --data-dir",
            args.data_dir.display()
        );
    }
    let options = args.server.options(args.data_dir.clone());
    let mut ready_times = Vec::new();
    for run in 1..=args.runs {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("unknown").to_string();
        let (server, ready_after) = start_ready(runtime, &options)?;
        println!("start {run}: load average {load}, server CPU {:.2} s", server.cpu_seconds()?);
        print_start(&format!("start {run}"), &server, ready_after)?;
        server.stop()?;
        ready_times.push(ready_after);
    }
    ready_times.sort();
    let median = ready_times[ready_times.len() / 2];
    println!("median of {} starts: ready after {:.2} s", args.runs, median.as_secs_f64());
    Ok(())
}

/// Builds the log through the ledger writer, without snapshots.
fn build(data_dir: &std::path::Path, shape: LogShape) -> anyhow::Result<fixture::BuiltLog> {
    let store = subledger::server::open_store(data_dir)?;
    let progress = |line: &str| eprintln!("building: {line}");
    let built = fixture::build_log(store.clone(), shape, 0, progress);
    let seconds = built.elapsed.as_secs_f64();
    println!(
        "log: {} events ({} sub-accounts, {} postings), built in-process in {seconds:.1} s \
         ({:.0} events/s), {:.0} MiB on disk",
        built.last_seq,
        shape.accounts,
        shape.postings,
        built.last_seq as f64 / seconds,
        store.size_on_disk() as f64 / MIB,
    );
    Ok(built)
}

/// Writes a projection snapshot of the built state at the log's head.
fn write_snapshot(data_dir: &std::path::Path, built: &fixture::BuiltLog) -> anyhow::Result<()> {
    let store = subledger::server::open_store(data_dir)?;
    if store.head().seq != built.state.last_seq {
        bail!("the log moved past the built state: head {}", store.head().seq);
    }
    let started = Instant::now();
    let state = &built.state;
    let length = store.save_snapshot(state.last_seq, &mut |out| state.encode_into(out))?;
    let stored = started.elapsed();
    drop(store);
    wait_for_unlock(data_dir)?;
    println!(
        "snapshot: {:.1} MiB at seq {}, encoded and stored in {:.2} s",
        length as f64 / MIB,
        state.last_seq,
        stored.as_secs_f64(),
    );
    Ok(())
}

/// Waits until no handle of this process holds the log's lock any more.
/// sled 0.34.7 keeps its `flock` on the `db` file until its background
/// threads let go of the closed database, which can be after the last
/// handle is dropped. A server started before then refuses the log.
fn wait_for_unlock(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let db_file = subledger::server::log_dir(data_dir).join("db");
    let deadline = Instant::now() + UNLOCK_TIMEOUT;
    loop {
        let file = std::fs::File::open(&db_file)?;
        if file.try_lock().is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} stayed locked for {UNLOCK_TIMEOUT:?}", db_file.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a server and waits for `/readyz` to answer 200; returns the time
/// from the spawn to that answer.
fn start_ready(
    runtime: &tokio::runtime::Runtime,
    options: &ServerOptions,
) -> anyhow::Result<(ServerProcess, Duration)> {
    let server = ServerProcess::start(options)?;
    let url = format!("http://{}/readyz", server.addr);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    runtime.block_on(async {
        loop {
            let response = client.get(&url).send().await;
            if response.is_ok_and(|response| response.status().as_u16() == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("/readyz did not answer 200 within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })?;
    let ready_after = server.spawned_at.elapsed();
    Ok((server, ready_after))
}

fn print_start(name: &str, server: &ServerProcess, ready_after: Duration) -> anyhow::Result<()> {
    let recovery = &server.recovery;
    let replayed = recovery.replayed_events.unwrap_or(0);
    let rebuild_ms = recovery.elapsed_ms.unwrap_or(0);
    let rate = replayed as f64 / (rebuild_ms.max(1) as f64 / 1000.0);
    let snapshot = recovery.snapshot_seq.map_or("none".to_string(), |seq| seq.to_string());
    println!(
        "{name}: snapshot {snapshot}, replayed {replayed} events, projections rebuilt in \
         {rebuild_ms} ms ({rate:.0} events/s); listening after {:.2} s, ready after {:.2} s; \
         server peak RSS {:.0} MiB, RSS {:.0} MiB",
        server.listening_after.as_secs_f64(),
        ready_after.as_secs_f64(),
        server.peak_rss_kib()? as f64 / 1024.0,
        server.rss_kib()? as f64 / 1024.0,
    );
    Ok(())
}
