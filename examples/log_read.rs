//! The speed at which sled alone reads a log. Opens a stopped server's
//! `log` directory with the store's sled settings and iterates the
//! `events` tree once, touching nothing else. A full replay reads every
//! event this way before it checks, decodes and folds them, so this time
//! on one core is a floor under a cold start's reading thread.
//!
//! ```text
//! cargo run --release --example log_read -- DATA_DIR/log
//! ```
//!
//! Run it on a stopped server's directory (sled locks the log), or on a
//! copy: opening a log with sled may rewrite sled's own metadata files. It
//! creates no log, and a directory that is not one is an error. It reads
//! the events in sled and not the journal, so after a crash (SIGKILL, power
//! loss) it may count fewer events than the log has. A start of the server
//! or `subledger verify` redoes the missing batches from the journal first.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use subledger::store::SledStore;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("missing argument: the log directory (usage: log_read DATA_DIR/log)")?;
    let path = Path::new(&path);
    if !path.is_dir() {
        anyhow::bail!("{} is not a directory (usage: log_read DATA_DIR/log)", path.display());
    }
    if path.join("log").join("db").is_file() {
        anyhow::bail!(
            "{} is a data directory. Pass its log directory, {}, instead",
            path.display(),
            path.join("log").display()
        );
    }
    let started = Instant::now();
    let events = SledStore::open_events_tree(path)
        .with_context(|| format!("failed to open the sled log in {}", path.display()))?;
    let opened = started.elapsed();

    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    for entry in events.iter() {
        let (key, value) = entry?;
        count += 1;
        bytes += (key.len() + value.len()) as u64;
    }
    let read = started.elapsed();
    println!(
        "opened in {:.3} s; read {count} events, {bytes} bytes of keys and values, in {:.3} s \
         ({:.0} events/s on one thread)",
        opened.as_secs_f64(),
        read.as_secs_f64(),
        count as f64 / read.as_secs_f64()
    );
    Ok(())
}
