//! The `subledger serve` process under test. It starts on 127.0.0.1 port 0
//! with its keys in the environment, and its listening address is read
//! from its log. Its log is drained so that it never blocks on a full pipe,
//! and its memory and CPU are read from `/proc`. Dropping it kills the
//! process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Maximum time the server may take to start listening, replay included.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Log lines kept to show when the server exits before listening.
const START_LOG_LINES_KEPT: usize = 5;
/// Maximum time the server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`), which Linux
/// fixes at 100 on x86 and arm64.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Returns the server's `RUST_LOG`: `filter`, then the directive that keeps
/// the `listening` and `projections rebuilt` lines of `subledger::server`.
/// Without them a filter such as `warn` left the start waiting for
/// `START_TIMEOUT` without a message.
fn start_filter(filter: &str) -> String {
    if filter.trim().is_empty() {
        return START_LINES_DIRECTIVE.to_string();
    }
    format!("{filter},{START_LINES_DIRECTIVE}")
}

/// The `RUST_LOG` directive of the server's start lines.
const START_LINES_DIRECTIVE: &str = "subledger::server=info";

/// Settings of a server start.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    /// `--workers`; `None` leaves the server's default (one per core).
    pub workers: Option<usize>,
    /// `RUST_LOG` of the server.
    pub log_filter: String,
    pub platform_key: String,
    pub aes_key: String,
    /// `--snapshot-interval`; `None` leaves the server's default.
    pub snapshot_interval: Option<u64>,
}

/// The server's `projections rebuilt` log line, as numbers.
#[derive(Debug, Clone, Default)]
pub struct RecoveryLine {
    pub replayed_events: Option<u64>,
    pub snapshot_seq: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub last_seq: Option<u64>,
}

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub spawned_at: Instant,
    /// From the spawn to the `listening` log line.
    pub listening_after: Duration,
    pub recovery: RecoveryLine,
}

impl ServerProcess {
    /// Starts the server and waits for its `listening addr=` line.
    pub fn start(options: &ServerOptions) -> anyhow::Result<ServerProcess> {
        if !options.binary.exists() {
            bail!(
                "server binary {} not found; build it with `cargo build --release --bin subledger` \
                 or pass --server-bin",
                options.binary.display()
            );
        }
        let started = Instant::now();
        let mut command = Command::new(&options.binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&options.data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("SUBLEDGER_PLATFORM_KEY", &options.platform_key)
            .env("SUBLEDGER_AES_KEY", &options.aes_key)
            .env("RUST_LOG", start_filter(&options.log_filter))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(workers) = options.workers {
            command.arg("--workers").arg(workers.to_string());
        }
        if let Some(interval) = options.snapshot_interval {
            command.arg("--snapshot-interval").arg(interval.to_string());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("failed to start {}", options.binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");

        // Read the log on its own thread for as long as the server runs.
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    // Nobody reads any more: keep draining the pipe.
                    continue;
                }
            }
        });

        let mut recovery = RecoveryLine::default();
        let mut last_lines = Vec::new();
        let deadline = started + START_TIMEOUT;
        let addr = loop {
            let line = match received.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    bail!("the server did not start listening within {START_TIMEOUT:?}");
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The log closed: the server exited before listening.
                    let status = child.wait()?;
                    bail!("the server exited with {status} before listening: {last_lines:?}");
                }
            };
            if last_lines.len() == START_LOG_LINES_KEPT {
                last_lines.remove(0);
            }
            last_lines.push(line.clone());
            if line.contains("projections rebuilt") {
                recovery = parse_recovery(&line);
            }
            if line.contains("listening") {
                if let Some(addr) = field(&line, "addr") {
                    break addr.parse().with_context(|| format!("invalid address in {line:?}"))?;
                }
            }
        };
        let listening_after = started.elapsed();
        drop(received);
        Ok(ServerProcess { child, addr, spawned_at: started, listening_after, recovery })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmHWM:")
    }

    /// Resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmRSS:")
    }

    /// User plus system CPU time used so far, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        process_cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(exit) = self.child.try_wait()? {
                if !exit.success() {
                    bail!("the server exited with {exit} after SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// CPU time of this process, in seconds.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    process_cpu_seconds("/proc/self/stat")
}

fn process_cpu_seconds(stat_path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(stat_path)?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces: utime and stime are fields 14 and 15 of the line.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        let text = fields.get(index).context("short /proc stat line")?;
        Ok(text.parse::<f64>()?)
    };
    // After the name, field 3 (state) is index 0, so field 14 is index 11.
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SECOND)
}

fn status_field(pid: u32, name: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(name))
        .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
    let kib = line.split_whitespace().nth(1).context("empty status field")?;
    Ok(kib.parse()?)
}

/// The value of `name=value` in a log line. The server writes no colour
/// codes when its log is a pipe.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

fn parse_recovery(line: &str) -> RecoveryLine {
    let number = |name: &str| field(line, name).and_then(|value| value.parse().ok());
    RecoveryLine {
        replayed_events: number("replayed_events"),
        snapshot_seq: number("snapshot_seq"),
        elapsed_ms: number("elapsed_ms"),
        last_seq: number("last_seq"),
    }
}

/// Returns the path of `subledger` in the parent of this example's
/// directory, which is `target/release/` for `target/release/examples/loadgen`.
pub fn default_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    profile_dir.join("subledger")
}
