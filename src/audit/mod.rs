//! Offline audit commands over a data directory while the service is
//! stopped: `verify` (hash chain, sequences, projections, double entry,
//! snapshots), `replay` (one sub-account's postings and balances), `export`
//! (postings or raw events as CSV or JSON lines) and `reconcile` (postings
//! against a payment provider's statement).
//!
//! Every command opens the log through [`open_data_dir`], which refuses a
//! missing or foreign directory before sled can create a new database in
//! it, and turns sled's panics on damaged files into errors. Commands
//! report through [`Verdict`] and errors, which `main` turns into the exit
//! codes [`EXIT_CHECK_FAILED`] and [`EXIT_ERROR`].

pub mod chain;
pub mod export;
pub mod progress;
pub mod reconcile;
mod reconcile_report;
pub mod replay;
pub mod statement;
pub mod verify;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::server::{log_dir, open_store};
use crate::store::SledStore;

/// Exit code when the data fails a check: a broken chain, a projection
/// that does not fold, a statement that does not reconcile.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when a command cannot run: a bad argument, or a data
/// directory that is missing, locked, damaged or not a subledger log.
pub const EXIT_ERROR: u8 = 2;

/// Whether the checks of a command held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
}

/// The form of a command's report on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned text for reading.
    Text,
    /// One JSON document for scripts.
    Json,
}

/// Files a sled 0.34 database directory always has once it was opened.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// Opens the event log of a data directory for an offline command.
///
/// `SledStore::open` creates a database wherever it is pointed, so this
/// first checks that the directory contains a sled database under `log/`
/// and that no running service has it locked.
pub fn open_data_dir(data_dir: &Path) -> anyhow::Result<Arc<SledStore>> {
    if !data_dir.is_dir() {
        anyhow::bail!("data directory {} does not exist", data_dir.display());
    }
    let log = log_dir(data_dir);
    if !log.is_dir() {
        anyhow::bail!(
            "{} is not a subledger data directory: it has no log/ directory",
            data_dir.display()
        );
    }
    for name in SLED_FILES {
        if !log.join(name).is_file() {
            anyhow::bail!(
                "{} is not a subledger event log: its {name} file is missing",
                log.display()
            );
        }
    }
    check_unlocked(&log.join("db"))?;
    open_store(data_dir)
}

/// Fails when another process, such as `subledger serve`, holds sled's
/// lock on the database file. sled takes an exclusive `flock` on it, and
/// std's `try_lock` takes the same kind of lock, released when the file
/// handle drops.
fn check_unlocked(db_file: &Path) -> anyhow::Result<()> {
    let file =
        File::open(db_file).with_context(|| format!("failed to open {}", db_file.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the event log {} is in use by another process: stop `subledger serve` on this \
             data directory first",
            db_file.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("failed to lock {}", db_file.display()))
        }
    }
}

/// Parses a time argument by the API's rule for `at` and date filters:
/// RFC 3339 or RFC 2822, with the offset required.
pub fn parse_time_arg(flag: &'static str, text: &str) -> anyhow::Result<DateTime<Utc>> {
    crate::api::views::parse_time(flag, text).map_err(|error| {
        // The API's message would name the flag twice ("invalid --until:
        // --until must be …"), so print the field's reason and the value.
        let reason = error.fields.first().map_or(error.message.as_str(), |field| &field.reason);
        anyhow::anyhow!("{reason}, not {text:?}")
    })
}

/// Formats a recorded time as RFC 3339 in UTC with microseconds, the
/// precision the log stores.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Destination of a command's report or export: a file, or stdout.
pub struct Output {
    writer: Box<dyn Write>,
    path: Option<PathBuf>,
}

impl Output {
    /// Opens `path` for writing (truncating it), or stdout when `None`.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Output> {
        let writer: Box<dyn Write> = match path {
            Some(path) => {
                let file = File::create(path)
                    .with_context(|| format!("failed to create {}", path.display()))?;
                Box::new(BufWriter::new(file))
            }
            None => Box::new(BufWriter::new(std::io::stdout().lock())),
        };
        Ok(Output { writer, path: path.map(Path::to_path_buf) })
    }

    /// Flushes everything written.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.writer.flush().context("failed to write the output")
    }

    /// Removes a partly written output file, after a check failed half way.
    pub fn discard(self) {
        let Output { writer, path } = self;
        drop(writer);
        if let Some(path) = path {
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "failed to remove the partial output");
            }
        }
    }
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.writer.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time_arg;

    #[test]
    fn time_arg_accepts_rfc3339() {
        let time = parse_time_arg("--until", "2026-12-04T16:59:43Z").expect("valid time");
        assert_eq!(time.to_rfc3339(), "2026-12-04T16:59:43+00:00");
    }

    #[test]
    fn time_arg_error_names_flag_once() {
        let message = parse_time_arg("--until", "yesterday").expect_err("invalid time").to_string();
        assert_eq!(
            message,
            "--until must be an RFC 3339 or RFC 2822 time with an offset, such as \
             2026-01-31T12:00:00Z, not \"yesterday\""
        );
    }
}
