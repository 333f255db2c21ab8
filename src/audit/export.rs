//! `subledger export`: every balance transaction, or the raw event log, as
//! CSV or JSON lines, to stdout or a file.
//!
//! The export reads the log in order and checks the hash chain as it goes,
//! so that it never hands on a log that was altered: at a break it stops,
//! removes a partly written output file and exits non-zero. Amounts are the
//! exact decimal strings of the API (`"10.50"`), times RFC 3339 in UTC with
//! the microseconds the log stores.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::audit::chain::{Break, ChainReader, ScanError};
use crate::audit::progress::Progress;
use crate::audit::{open_data_dir, parse_time_arg, rfc3339, Output, Verdict};
use crate::domain::events::Event;
use crate::domain::money::format_amount;
use crate::projection::PostingType;
use crate::store::{EventStore, RawEvent, RecordedEvent};

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Arguments of `subledger export`.
pub struct ExportArgs<'a> {
    pub data_dir: &'a Path,
    pub format: ExportFormat,
    /// Only events recorded at or after this time.
    pub from: Option<&'a str>,
    /// Only events recorded before this time.
    pub to: Option<&'a str>,
    /// Export the raw event log in place of the transactions.
    pub events: bool,
    pub output: Option<&'a Path>,
}

/// One balance transaction as exported; the field order is the CSV column
/// order.
#[derive(Serialize)]
struct TransactionRecord {
    sid: String,
    account_sid: String,
    developer_sid: String,
    #[serde(rename = "type")]
    kind: &'static str,
    amount: String,
    currency: &'static str,
    pay_method: u16,
    refer_trans_id: Option<String>,
    desc: Option<String>,
    balance_after: String,
    date_created: String,
    seq: u64,
    hash: String,
}

/// One raw event as exported: `body` is the stored body byte for byte, so
/// that `SHA-256(prev_hash ‖ body)` can be recomputed from the export.
#[derive(Serialize)]
struct EventRecord<'a> {
    seq: u64,
    prev_hash: String,
    hash: String,
    body: &'a RawValue,
}

/// The time window of `--from` (inclusive) and `--to` (exclusive).
struct Window {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

impl Window {
    fn contains(&self, time: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| time >= from) && self.to.is_none_or(|to| time < to)
    }
}

/// Writes the export and reports how many records it wrote.
pub fn run(args: ExportArgs<'_>) -> anyhow::Result<Verdict> {
    if args.events && args.format == ExportFormat::Csv {
        anyhow::bail!("--events exports JSON lines only: use --format jsonl");
    }
    let window = Window {
        from: args.from.map(|text| parse_time_arg("--from", text)).transpose()?,
        to: args.to.map(|text| parse_time_arg("--to", text)).transpose()?,
    };
    if let Some(output) = args.output {
        check_output_outside(args.data_dir, output)?;
    }
    let store = open_data_dir(args.data_dir)?;
    let mut out = Output::open(args.output)?;

    let written = match write_records(store.as_ref(), &args, &window, &mut out) {
        Ok(written) => written,
        Err(ExportError::Scan(ScanError::Break(found))) => {
            out.discard();
            tracing::error!("export stopped at event {}: {}", found.seq, found.reason);
            return Ok(Verdict::Failed);
        }
        Err(ExportError::Scan(ScanError::Store(error))) => {
            out.discard();
            return Err(error.into());
        }
        // A reader that stops early (`export … | head`) closes the pipe;
        // that ends the export, as it does for other Unix filters.
        Err(ExportError::Write(error)) if args.output.is_none() && is_broken_pipe(&error) => {
            return Ok(Verdict::Passed);
        }
        Err(ExportError::Write(error)) => {
            out.discard();
            return Err(error);
        }
    };
    match out.finish() {
        Err(error) if args.output.is_none() && is_broken_pipe(&error) => {
            return Ok(Verdict::Passed);
        }
        result => result?,
    }
    let record_kind = if args.events { "events" } else { "transactions" };
    tracing::info!(records = written, "exported {record_kind}");
    Ok(Verdict::Passed)
}

/// Whether a write failed because the reader of standard output went away.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        let csv_io = cause.downcast_ref::<csv::Error>().and_then(|error| match error.kind() {
            csv::ErrorKind::Io(io) => Some(io.kind()),
            _ => None,
        });
        io == Some(std::io::ErrorKind::BrokenPipe) || csv_io == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Rejects an output file inside the data directory, symbolic links
/// resolved, and an existing output file that is a hard link to a file in
/// it. Creating the output truncates any file of that name, and a failed
/// export removes it, so `--output data/log/db` would destroy the log.
fn check_output_outside(data_dir: &Path, output: &Path) -> anyhow::Result<()> {
    // A data directory that does not exist is reported by `open_data_dir`.
    let Ok(data_dir) = data_dir.canonicalize() else {
        return Ok(());
    };
    let resolved = match output.canonicalize() {
        Ok(path) => path,
        Err(_) => {
            // A new file: resolve the directory it will be created in. When
            // that directory is missing, creating the file fails anyway.
            let parent = match output.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let (Ok(parent), Some(name)) = (parent.canonicalize(), output.file_name()) else {
                return Ok(());
            };
            parent.join(name)
        }
    };
    if resolved.starts_with(&data_dir) {
        anyhow::bail!(
            "--output {} is inside the data directory {}, which contains the event log and \
             the keys. Write the export to a file outside it",
            output.display(),
            data_dir.display()
        );
    }
    if let Ok(target) = std::fs::metadata(&resolved) {
        if let Some(same) = find_same_file(&data_dir, &target)? {
            anyhow::bail!(
                "--output {} is a hard link to {} inside the data directory {}, which contains \
                 the event log and the keys. Write the export to a file outside it",
                output.display(),
                same.display(),
                data_dir.display()
            );
        }
    }
    Ok(())
}

/// Finds a file under `directory` that is the file `target` describes (the
/// same device and inode), without following symbolic links.
fn find_same_file(
    directory: &Path,
    target: &std::fs::Metadata,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    use std::os::unix::fs::MetadataExt;

    let entries = std::fs::read_dir(directory)
        .with_context(|| format!("failed to list {}", directory.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {}", directory.display()))?;
        let path = entry.path();
        let metadata = std::fs::symlink_metadata(&path)
            .with_context(|| format!("failed to read the metadata of {}", path.display()))?;
        if metadata.is_dir() {
            if let Some(found) = find_same_file(&path, target)? {
                return Ok(Some(found));
            }
        } else if metadata.dev() == target.dev() && metadata.ino() == target.ino() {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

enum ExportError {
    Scan(ScanError),
    Write(anyhow::Error),
}

impl From<ScanError> for ExportError {
    fn from(error: ScanError) -> ExportError {
        ExportError::Scan(error)
    }
}

impl From<Break> for ExportError {
    fn from(error: Break) -> ExportError {
        ExportError::Scan(error.into())
    }
}

impl From<csv::Error> for ExportError {
    fn from(error: csv::Error) -> ExportError {
        ExportError::Write(anyhow::Error::new(error).context("failed to write the output"))
    }
}

impl From<std::io::Error> for ExportError {
    fn from(error: std::io::Error) -> ExportError {
        ExportError::Write(anyhow::Error::new(error).context("failed to write the output"))
    }
}

/// Destination of records: a CSV writer with its header row written, or
/// JSON lines.
enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut Output>>),
    Lines(&'a mut Output),
}

impl<'a> Sink<'a> {
    fn open(format: ExportFormat, out: &'a mut Output) -> Result<Sink<'a>, ExportError> {
        match format {
            ExportFormat::Csv => {
                // The header is written here so that an empty export has one.
                let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(out);
                writer.write_record(TRANSACTION_COLUMNS)?;
                Ok(Sink::Csv(Box::new(writer)))
            }
            ExportFormat::Jsonl => Ok(Sink::Lines(out)),
        }
    }

    fn write<T: Serialize>(&mut self, record: &T) -> Result<(), ExportError> {
        match self {
            Sink::Csv(writer) => writer.serialize(record)?,
            Sink::Lines(out) => {
                serde_json::to_writer(&mut **out, record).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), ExportError> {
        match self {
            Sink::Csv(mut writer) => writer.flush()?,
            Sink::Lines(out) => out.flush()?,
        }
        Ok(())
    }
}

/// Scans the whole log and writes the records in the window; returns how
/// many it wrote.
fn write_records(
    store: &dyn EventStore,
    args: &ExportArgs<'_>,
    window: &Window,
    out: &mut Output,
) -> Result<u64, ExportError> {
    let head = store.head();
    let mut progress = Progress::start("exporting the event log", head.seq);
    let mut reader = ChainReader::from_start(store.read_raw_from(1));
    let mut sink = Sink::open(args.format, out)?;
    let mut written = 0u64;
    for raw in reader.by_ref() {
        let raw = raw?;
        progress.advance();
        let recorded = raw.decode().map_err(ScanError::from)?;
        if !window.contains(recorded.meta.recorded_at) {
            continue;
        }
        if args.events {
            sink.write(&event_record(&raw)?)?;
        } else if let Some(record) = transaction_record(&raw, &recorded) {
            sink.write(&record)?;
        } else {
            continue;
        }
        written += 1;
    }
    progress.finish();
    reader.check_end(head)?;
    sink.finish()?;
    Ok(written)
}

/// The CSV header, in the field order of [`TransactionRecord`].
const TRANSACTION_COLUMNS: [&str; 13] = [
    "sid",
    "account_sid",
    "developer_sid",
    "type",
    "amount",
    "currency",
    "pay_method",
    "refer_trans_id",
    "desc",
    "balance_after",
    "date_created",
    "seq",
    "hash",
];

/// Builds the export record of any event, borrowing its body.
fn event_record(raw: &RawEvent) -> Result<EventRecord<'_>, Break> {
    // `decode` has parsed the body, so it is UTF-8 JSON; a failure here is
    // still reported as a break.
    let text = std::str::from_utf8(&raw.body)
        .map_err(|_| Break::new(raw.seq, "the event body is not UTF-8"))?;
    let body: &RawValue = serde_json::from_str(text)
        .map_err(|error| Break::new(raw.seq, format!("the event body is not JSON: {error}")))?;
    Ok(EventRecord {
        seq: raw.seq,
        prev_hash: hex::encode(raw.prev_hash),
        hash: hex::encode(raw.hash),
        body,
    })
}

/// The export record of a posting event; `None` for other events.
fn transaction_record(raw: &RawEvent, recorded: &RecordedEvent) -> Option<TransactionRecord> {
    let (kind, posting) = match &recorded.event {
        Event::BalanceToppedUp(posting) => (PostingType::TopUp, posting),
        Event::BalanceAdjusted(posting) => (PostingType::Adjustment, posting),
        _ => return None,
    };
    Some(TransactionRecord {
        sid: posting.sid.to_string(),
        account_sid: posting.account_sid.to_string(),
        developer_sid: posting.developer_sid.to_string(),
        kind: kind.as_str(),
        amount: format_amount(posting.amount),
        currency: posting.currency.code(),
        pay_method: posting.pay_method,
        refer_trans_id: posting.refer_trans_id.clone(),
        desc: posting.desc.clone(),
        balance_after: format_amount(posting.balance_after),
        date_created: rfc3339(recorded.meta.recorded_at),
        seq: raw.seq,
        hash: hex::encode(raw.hash),
    })
}
