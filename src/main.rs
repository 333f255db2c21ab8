//! The `subledger` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use subledger::ledger::recovery::SNAPSHOT_INTERVAL_EVENTS_DEFAULT;
use subledger::server::{serve, ServeConfig};

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

#[derive(Subcommand)]
enum Commands {
    /// Serve the REST API.
    Serve {
        /// Directory of the event log and the generated keys.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Address and port to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// SIP domain for requests that name none.
        #[arg(long, default_value = "sip.example.com")]
        default_domain: String,
        /// Events between projection snapshots; 0 disables them.
        #[arg(long, default_value_t = SNAPSHOT_INTERVAL_EVENTS_DEFAULT)]
        snapshot_interval: u64,
        /// HTTP worker threads (default: one per CPU core).
        #[arg(long)]
        workers: Option<usize>,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
