//! The speed at which sled alone reads a log. Opens a stopped server's
//! `log` directory with the store's sled settings and iterates the
//! `events` tree once, touching nothing else. A full replay reads every event this
//! way before it checks, decodes and folds them, so this time on one core
//! is a floor under a cold start's reading thread.
//!
//! ```text
//! cargo run --release --example log_read -- DATA_DIR/log
//! ```
//!
//! Run it on a stopped server's directory (sled locks the log), or on a
//! copy: opening a log with sled may rewrite sled's own metadata files.

use std::time::Instant;

use anyhow::Context;
use subledger::store::SLED_CACHE_BYTES;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("missing argument: the log directory (usage: log_read DATA_DIR/log)")?;
    // sled creates a new database wherever it is pointed.
    if !std::path::Path::new(&path).join("db").is_file() {
        anyhow::bail!("{path} is not a sled log: its db file is missing");
    }
    let started = Instant::now();
    let db = sled::Config::new()
        .path(&path)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .with_context(|| format!("failed to open the sled log in {path}"))?;
    let events = db.open_tree("events")?;
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
