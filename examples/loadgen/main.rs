//! Load generator for `subledger serve`.
//!
//! `run` starts the release binary on 127.0.0.1 port 0 with a fresh
//! temporary data directory and creates a developer and its sub-accounts
//! over HTTP. It then drives keep-alive clients through the chosen
//! scenarios for a fixed time each and checks that the balances add up to
//! the acknowledged TOPUPs. It prints a table of throughput, latency
//! percentiles, errors, the server's CPU and its peak RSS. `scale` builds a large log in-process,
//! times the server's cold start and its start from a snapshot, then runs
//! the scenarios against it. Both stop by themselves and kill the server
//! when they exit. `starts` times repeated starts on a data directory that
//! `scale --data-dir` kept.
//!
//! ```text
//! cargo build --release --bin subledger --example loadgen
//! target/release/examples/loadgen run --accounts 10000 --clients 16 --seconds 10
//! target/release/examples/loadgen scale --accounts 100000 --postings 1000000
//! target/release/examples/loadgen starts --data-dir /tmp/snapdata --runs 3
//! ```

mod drive;
#[path = "../../benches/fixture/mod.rs"]
mod fixture;
mod report;
mod scale;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use subledger::crypto::{generate_api_key, AesKey};

use crate::drive::{Scenario, ScenarioResult, Target, WriterCounters};
use crate::report::CpuUse;
use crate::server::{ServerOptions, ServerProcess};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for subledger serve, on loopback only")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Create sub-accounts over HTTP, then run the scenarios.
    Run {
        /// Sub-accounts to create before the scenarios (each hashes an
        /// Argon2id password on the server, tens of milliseconds of CPU).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        accounts: u64,
        /// Sub-account creations in flight at once during setup.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
        setup_concurrency: u64,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Build a large log in-process, time cold and snapshot starts, then
    /// run the scenarios against it.
    Scale(scale::ScaleArgs),
    /// Start the server on an existing data directory several times and
    /// time each start until `/readyz` returns 200.
    Starts(scale::StartsArgs),
}

/// Scenario settings shared by `run` and `scale`.
#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Duration of each scenario, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// Scenarios to run, in order, separated by commas.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "spread,hot,read,mix")]
    scenarios: Vec<Scenario>,
    /// Share of reads in the `mix` scenario, in percent; the rest are TOPUPs.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u64).range(0..=100))]
    mix_read_percent: u64,
}

/// Server settings shared by `run`, `scale` and `starts`.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The `subledger` binary; default: `subledger` in the parent of this
    /// program's directory (`target/release/subledger` for
    /// `target/release/examples/loadgen`).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// HTTP worker threads of the server; default: the server's own (one
    /// per CPU core).
    #[arg(long)]
    server_workers: Option<usize>,
    /// `RUST_LOG` of the server: a filter such as `info` or `warn`, not a
    /// file. At `info` it logs one line per request. The start lines that
    /// the load generator reads stay on whatever the filter.
    #[arg(long, default_value = "info")]
    server_log: String,
}

impl ServerArgs {
    fn options(&self, data_dir: PathBuf) -> ServerOptions {
        ServerOptions {
            binary: self.server_bin.clone().unwrap_or_else(server::default_binary),
            data_dir,
            workers: self.server_workers,
            log_filter: self.server_log.clone(),
            platform_key: generate_api_key(),
            aes_key: AesKey::generate().to_base64(),
            snapshot_interval: None,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    match cli.command {
        Mode::Run { accounts, setup_concurrency, load, server } => {
            runtime.block_on(run(accounts as usize, setup_concurrency as usize, &load, &server))
        }
        Mode::Scale(args) => scale::scale(&runtime, &args),
        Mode::Starts(args) => scale::starts(&runtime, &args),
    }
}

/// Runs the `run` mode, described in the module documentation.
async fn run(
    accounts: usize,
    setup_concurrency: usize,
    load: &LoadArgs,
    server_args: &ServerArgs,
) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("failed to create a temporary directory")?;
    let options = server_args.options(temp.path().join("data"));
    let server = ServerProcess::start(&options)?;
    let base_url = format!("http://{}", server.addr);
    let after = server.listening_after.as_secs_f64();
    eprintln!("server pid {} listening on {} after {after:.2} s", server.pid(), server.addr);

    // Setup: the developer and its sub-accounts.
    let (developer, key) = drive::create_developer(&base_url, &options.platform_key).await?;
    let authorization = drive::basic_authorization(&developer, &key);
    let started = Instant::now();
    let sids = drive::create_accounts(&base_url, &authorization, accounts, setup_concurrency)
        .await
        .context("setup failed")?;
    let setup = started.elapsed();
    eprintln!(
        "setup: {accounts} sub-accounts in {:.1} s ({:.0}/s, {setup_concurrency} at a time); \
         server peak RSS {:.0} MiB, RSS {:.0} MiB",
        setup.as_secs_f64(),
        accounts as f64 / setup.as_secs_f64(),
        server.peak_rss_kib()? as f64 / 1024.0,
        server.rss_kib()? as f64 / 1024.0,
    );

    let addr = server.addr;
    let target = Target { addr, base_url, authorization, accounts: Arc::new(sids) };
    let results = run_scenarios(&server, &target, load).await?;
    print_results(load, &results);
    check_balances(&target, &results, Decimal::ZERO).await?;
    server.stop()?;
    Ok(())
}

/// One scenario's figures, kept for the table.
pub struct Measured {
    pub scenario: Scenario,
    pub result: ScenarioResult,
    pub cpu: CpuUse,
    pub peak_rss_kib: u64,
    /// The writer's work during the scenario.
    pub writer: WriterCounters,
}

/// Runs every scenario of `load` in order against `server`.
pub async fn run_scenarios(
    server: &ServerProcess,
    target: &Target,
    load: &LoadArgs,
) -> anyhow::Result<Vec<Measured>> {
    let mut measured = Vec::new();
    for (position, scenario) in load.scenarios.iter().copied().enumerate() {
        let writer_before = drive::writer_counters(&target.base_url).await?;
        let server_cpu = server.cpu_seconds()?;
        let own_cpu = server::own_cpu_seconds()?;
        let duration = Duration::from_secs(load.seconds);
        let tag = format!("{}{position}", scenario.name());
        let clients = load.clients as usize;
        let mix = load.mix_read_percent;
        let result = tokio::task::block_in_place(|| {
            drive::run_scenario(target, scenario, clients, duration, mix, &tag)
        });
        let cpu = CpuUse {
            server_seconds: server.cpu_seconds()? - server_cpu,
            loadgen_seconds: server::own_cpu_seconds()? - own_cpu,
        };
        let peak_rss_kib = server.peak_rss_kib()?;
        let writer = drive::writer_counters(&target.base_url).await?.since(writer_before);
        eprintln!(
            "{}: {} requests, {:.0}/s",
            scenario.name(),
            result.requests,
            result.requests as f64 / result.elapsed.as_secs_f64()
        );
        measured.push(Measured { scenario, result, cpu, peak_rss_kib, writer });
    }
    Ok(measured)
}

pub fn print_results(load: &LoadArgs, results: &[Measured]) {
    println!();
    report::print_header();
    for measured in results {
        let name = measured.scenario.name();
        let clients = load.clients as usize;
        let (result, cpu, rss) = (&measured.result, measured.cpu, measured.peak_rss_kib);
        report::print_row(name, clients, result, cpu, rss, measured.writer);
    }
    println!();
    for measured in results {
        println!(
            "{} statuses: {}",
            measured.scenario.name(),
            report::status_counts(&measured.result)
        );
    }
}

/// Checks that the sub-accounts' balances sum to `before` plus the TOPUPs
/// acknowledged with 201. A TOPUP that got no response may have landed, so
/// the sum may exceed that by at most their count.
pub async fn check_balances(
    target: &Target,
    results: &[Measured],
    before: Decimal,
) -> anyhow::Result<()> {
    let amount: Decimal = drive::TOPUP_AMOUNT.parse().expect("the TOPUP amount parses");
    let created: u64 = results.iter().map(|m| m.result.statuses.get(&201).unwrap_or(&0)).sum();
    let in_doubt: u64 = results
        .iter()
        .filter(|m| m.scenario != Scenario::Read)
        .map(|m| m.result.transport_errors)
        .sum();
    let expected = before + amount * Decimal::from(created);
    let actual = drive::sum_balances(target).await?;
    let excess = actual - expected;
    if excess < Decimal::ZERO || excess > amount * Decimal::from(in_doubt) {
        bail!(
            "balances sum to {actual}, but the acknowledged TOPUPs give {expected} \
             ({in_doubt} without a response)"
        );
    }
    println!("check: balances sum to {actual}: {created} acknowledged TOPUPs of {amount}");
    Ok(())
}
