//! The `subledger` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use subledger::audit::export::{ExportArgs, ExportFormat};
use subledger::audit::reconcile::ReconcileArgs;
use subledger::audit::replay::ReplayArgs;
use subledger::audit::{ReportFormat, Verdict, EXIT_CHECK_FAILED, EXIT_ERROR};
use subledger::ledger::recovery::SNAPSHOT_INTERVAL_EVENTS_DEFAULT;
use subledger::server::{serve, ServeConfig};

/// jemalloc instead of glibc's malloc. In alternating load generator runs
/// it made durable TOPUPs 4% to 15% faster and cut the median start from a
/// 1,000,000-posting snapshot from 1.06-1.67 s to 0.89-0.94 s, at a peak
/// RSS from 5% lower to 14% higher (docs/benchmarks.md).
/// Its background threads (the `background_threads` feature) return pages
/// left unused for 10 s even while the server is idle, where glibc needed
/// a fixed `mmap` threshold and `malloc_trim`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, which it reads once as it starts (its `malloc_conf`,
/// here under the prefixed name that tikv-jemalloc-sys builds it with).
/// The variable `_RJEM_MALLOC_CONF` overrides them.
///
/// `oversize_threshold` is the size from which jemalloc serves allocations
/// from an arena whose freed pages go back to the system at once, 8 MiB by
/// default. Other freed pages stay for 10 s. At 1 MiB, the buffers of a
/// start (the snapshot's sections, each section's keys) go back as they
/// are freed. At 100,000 sub-accounts and 1,000,000 postings that lowered
/// the peak RSS of a start from a snapshot from 541 to 504 MiB, at the same
/// CPU time (docs/benchmarks.md).
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_OPTIONS: JemallocOptions = JemallocOptions(c"oversize_threshold:1048576".as_ptr());

/// A pointer to a NUL-terminated C string, the type of `malloc_conf`.
#[cfg(not(target_env = "msvc"))]
#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);

// SAFETY: the pointer is to a constant string, which nothing writes.
#[cfg(not(target_env = "msvc"))]
unsafe impl Sync for JemallocOptions {}

/// Returns the freed pages of every jemalloc arena to the system at once
/// (`arena.<all>.purge`), for `subledger::memory`. A full replay calls it
/// every 131,072 events of its fold and twice before it builds the posting
/// indexes. The two calls before the build alone lowered the peak RSS of a
/// cold start at 100,000 sub-accounts and 1,000,000 postings from 569-581
/// to 483-487 MiB, at 3 to 12 ms a call (docs/benchmarks.md).
/// Setting `dirty_decay_ms` to 0 instead returns pages on every free, and
/// took about 2 s more CPU per cold start.
#[cfg(not(target_env = "msvc"))]
fn purge_jemalloc_arenas() {
    let status = mallctl_purge_all_arenas();
    if status != 0 {
        tracing::warn!(
            status,
            "jemalloc arena purge failed; freed pages go back to the system after its 10 s decay instead"
        );
    }
}

/// Runs jemalloc's `arena.<all>.purge` and returns the status of
/// `mallctl`: 0, or an `errno` value.
#[cfg(not(target_env = "msvc"))]
fn mallctl_purge_all_arenas() -> std::ffi::c_int {
    // jemalloc's MALLCTL_ARENAS_ALL: the arena index that names them all.
    const NAME: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: the name is NUL-terminated, and `arena.<i>.purge` reads and
    // writes no value, so null pointers and a length of 0 are what it takes.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            NAME.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    }
}

#[derive(Parser)]
#[command(
    name = "subledger",
    version,
    about = "Sub-accounts, SIP accounts and prepaid balances on an event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

/// Parses `--workers`. clap's ranged parser would report a 0 as "not in
/// 1..18446744073709551615", so this one states the rule instead.
fn parse_workers(text: &str) -> Result<usize, String> {
    let workers: usize =
        text.parse().map_err(|_| "the number of workers must be a positive integer".to_string())?;
    if workers == 0 {
        return Err("the number of workers must be at least 1".to_string());
    }
    Ok(workers)
}

#[derive(Subcommand)]
enum Commands {
    /// Serve the REST API.
    Serve {
        /// Directory of the event log and the generated keys.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// IP address and port to listen on, such as 127.0.0.1:8080 or
        /// [::1]:8080. A host name is not resolved. Port 0 picks a free
        /// port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// SIP domain for requests that name none.
        #[arg(long, default_value = "sip.example.com")]
        default_domain: String,
        /// Events between projection snapshots; a start loads the newest
        /// snapshot and replays only the events after it. 0 writes no
        /// snapshots, but a start still loads the newest one in the log.
        #[arg(long, default_value_t = SNAPSHOT_INTERVAL_EVENTS_DEFAULT)]
        snapshot_interval: u64,
        /// HTTP worker threads, at least 1 (default: one per CPU core).
        #[arg(long, value_parser = parse_workers)]
        workers: Option<usize>,
    },
    /// Check a stopped service's data directory and print a summary.
    ///
    /// Checks the hash chain, gap-free sequences and stream versions, a full
    /// replay of the projections, double entry, and the stored projection
    /// snapshots. Exits 0 when every check holds, 1 at the first break
    /// (named by its sequence number), 2 when the directory cannot be read.
    Verify {
        /// Data directory of a stopped `subledger serve`.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// An event hash kept from an earlier run, as SEQ:HASH (the chain
        /// head line shows it); fails if event SEQ no longer has that hash.
        /// Repeatable.
        #[arg(long)]
        anchor: Vec<String>,
    },
    /// List one sub-account's postings with the balance after each.
    ///
    /// Reads the sub-account's events in log order, checks each one's hash
    /// and balance, and shows the balance as of --until. Exits 1 when a
    /// check fails, 2 when the directory cannot be read.
    Replay {
        /// Data directory of a stopped `subledger serve`.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// The sub-account's sid (AC…).
        #[arg(long)]
        account: String,
        /// List postings recorded at or before this time and show the
        /// balance then: RFC 3339 or RFC 2822, with an offset.
        #[arg(long)]
        until: Option<String>,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Export every balance transaction, or the raw event log.
    ///
    /// Checks the hash chain on the way and stops at a break (exit 1),
    /// removing a partly written --output file.
    Export {
        /// Data directory of a stopped `subledger serve`.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// File format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only events recorded at or after this time (RFC 3339 or RFC 2822).
        #[arg(long)]
        from: Option<String>,
        /// Only events recorded before this time (RFC 3339 or RFC 2822).
        #[arg(long)]
        to: Option<String>,
        /// Export every event (seq, prev_hash, hash, body) as JSON lines.
        #[arg(long)]
        events: bool,
        /// File to write; stdout when absent.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Compare a payment provider's statement with the ledger's postings.
    ///
    /// The statement is a CSV file whose header names at least
    /// refer_trans_id and amount. Exits 0 only when everything matches, 1 on
    /// any discrepancy, 2 when an input cannot be read.
    Reconcile {
        /// Data directory of a stopped `subledger serve`.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// The provider's statement, a CSV file with a header row.
        #[arg(long)]
        statement: PathBuf,
        /// The pay method code the statement covers, such as 4 for PayPal.
        #[arg(long)]
        pay_method: u16,
        /// Only this developer's postings (DV…); without it, a reference
        /// used by two developers is reported as ambiguous.
        #[arg(long)]
        developer: Option<String>,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Expect in the statement only postings recorded at or after this
        /// time (RFC 3339 or RFC 2822).
        #[arg(long)]
        from: Option<String>,
        /// Expect in the statement only postings recorded before this time.
        #[arg(long)]
        to: Option<String>,
    },
}

/// Log lines a server may queue for its log thread before request threads
/// wait for it. No line is ever dropped.
const LOG_QUEUE_LINES: usize = 65_536;

/// Log filter when `RUST_LOG` is unset. actix-http logs every request that
/// is not valid HTTP/1.1 at ERROR, which lets any client fill the log with
/// lines about its own mistakes. The response (400 or 431) stays the same.
/// `RUST_LOG=info,actix_http=debug` shows them.
const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off";

/// Sets up logging to standard error. A server logs a line per request, so
/// its lines go through a thread of their own that writes them in batches,
/// instead of a system call per line on a request thread. The returned
/// guard writes out what is queued when it is dropped. The other
/// commands log a few lines beside progress bars and write directly.
fn init_logging(background: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if !background {
        builder.with_writer(std::io::stderr).init();
        return None;
    }
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    builder.with_writer(writer).init();
    Some(guard)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(not(target_env = "msvc"))]
    subledger::memory::set_return_freed(purge_jemalloc_arenas);
    let _log_guard = init_logging(matches!(cli.command, Commands::Serve { .. }));
    let result = match cli.command {
        Commands::Serve { data_dir, listen, default_domain, snapshot_interval, workers } => {
            let default_domain = match subledger::domain::text::validate_domain(&default_domain) {
                Ok(domain) => domain,
                Err(error) => {
                    eprintln!("error: --default-domain: {}", error.reason);
                    return ExitCode::from(2);
                }
            };
            let workers = workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, |count| count.get())
            });
            serve(ServeConfig {
                data_dir,
                listen,
                default_domain,
                snapshot_interval_events: snapshot_interval,
                workers,
            })
        }
        offline => return run_offline(offline),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an offline command: exit 0 when its checks hold, 1 when they fail,
/// 2 when it cannot run. A panic (sled panics on some damaged files) is
/// reported as an error, never as a crash: the hook only logs its location
/// at debug level, and the payload becomes the error message.
fn run_offline(command: Commands) -> ExitCode {
    std::panic::set_hook(Box::new(|info| tracing::debug!(%info, "caught a panic")));
    let outcome = std::panic::catch_unwind(move || run_audit(command));
    let error = match outcome {
        Ok(Ok(Verdict::Passed)) => return ExitCode::SUCCESS,
        Ok(Ok(Verdict::Failed)) => return ExitCode::from(EXIT_CHECK_FAILED),
        Ok(Err(error)) => format!("{error:#}"),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            format!(
                "internal error while reading the data directory ({message}); \
                 it may be damaged. RUST_LOG=debug shows where it happened"
            )
        }
    };
    eprintln!("error: {error}");
    ExitCode::from(EXIT_ERROR)
}

fn run_audit(command: Commands) -> anyhow::Result<Verdict> {
    match command {
        Commands::Serve { .. } => unreachable!("main runs serve itself"),
        Commands::Verify { data_dir, anchor } => subledger::audit::verify::run(&data_dir, &anchor),
        Commands::Replay { data_dir, account, until, format } => {
            subledger::audit::replay::run(ReplayArgs {
                data_dir: &data_dir,
                account: &account,
                until: until.as_deref(),
                format,
            })
        }
        Commands::Export { data_dir, format, from, to, events, output } => {
            subledger::audit::export::run(ExportArgs {
                data_dir: &data_dir,
                format,
                from: from.as_deref(),
                to: to.as_deref(),
                events,
                output: output.as_deref(),
            })
        }
        Commands::Reconcile { data_dir, statement, pay_method, developer, format, from, to } => {
            subledger::audit::reconcile::run(ReconcileArgs {
                data_dir: &data_dir,
                statement: &statement,
                pay_method,
                developer: developer.as_deref(),
                format,
                from: from.as_deref(),
                to: to.as_deref(),
            })
        }
    }
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    use std::ffi::{c_void, CStr};

    use super::mallctl_purge_all_arenas;

    /// Reads the pages that jemalloc's arenas keep freed but not yet
    /// returned (`stats.arenas.<all>.pdirty`), after refreshing its
    /// statistics.
    fn dirty_pages() -> usize {
        let mut epoch: u64 = 1;
        let mut epoch_len = std::mem::size_of::<u64>();
        let epoch_pointer = (&raw mut epoch).cast::<c_void>();
        // SAFETY: `epoch` is read and written as the u64 that jemalloc
        // documents, with its size in `epoch_len`.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                c"epoch".as_ptr(),
                epoch_pointer,
                &mut epoch_len,
                epoch_pointer,
                std::mem::size_of::<u64>(),
            )
        };
        assert_eq!(status, 0, "mallctl epoch");
        read_size(c"stats.arenas.4096.pdirty")
    }

    fn read_size(name: &CStr) -> usize {
        let mut value: usize = 0;
        let mut len = std::mem::size_of::<usize>();
        // SAFETY: the statistic is a size_t, read into a usize of that size.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut value).cast::<c_void>(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(status, 0, "mallctl {name:?}");
        value
    }

    #[test]
    fn purge_returns_dirty_pages() {
        // About 64 MiB of small allocations, freed at once, leave dirty
        // pages that jemalloc 5.3 keeps for 10 s by default
        // (`dirty_decay_ms`) unless purged.
        let blocks: Vec<Box<[u8; 64]>> = (0..1 << 20).map(|_| Box::new([1; 64])).collect();
        drop(blocks);
        let before = dirty_pages();
        assert_eq!(mallctl_purge_all_arenas(), 0, "mallctl status");
        let after = dirty_pages();
        assert!(before >= 1024, "dirty pages before the purge: {before}");
        assert!(after < before / 2, "dirty pages from {before} to {after}");
    }
}

#[cfg(test)]
mod cli_tests {
    use clap::Parser;

    use super::{Cli, Commands};

    fn serve_workers(arguments: &[&str]) -> Result<Option<usize>, String> {
        let cli = Cli::try_parse_from(arguments).map_err(|error| error.to_string())?;
        match cli.command {
            Commands::Serve { workers, .. } => Ok(workers),
            _ => Err("not the serve command".to_string()),
        }
    }

    #[test]
    fn workers_zero_states_minimum() {
        let error =
            serve_workers(&["subledger", "serve", "--workers", "0"]).expect_err("0 workers");
        assert!(error.contains("at least 1"), "states the minimum: {error}");
        assert!(!error.contains("18446744073709551615"), "no integer limit: {error}");
    }

    #[test]
    fn workers_not_a_number_rejected() {
        let error = serve_workers(&["subledger", "serve", "--workers", "two"]).expect_err("text");
        assert!(error.contains("positive integer"), "names the expected form: {error}");
    }

    #[test]
    fn workers_accepted_or_defaulted() {
        assert_eq!(serve_workers(&["subledger", "serve", "--workers", "3"]), Ok(Some(3)));
        assert_eq!(serve_workers(&["subledger", "serve"]), Ok(None));
    }
}
