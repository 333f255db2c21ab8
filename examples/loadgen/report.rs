//! The load generator's output: one table row per scenario, with the
//! server's CPU and memory beside the client-side figures.

use crate::drive::{ScenarioResult, WriterCounters};

/// CPU seconds the server and the load generator used during a scenario.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub server_seconds: f64,
    pub loadgen_seconds: f64,
}

pub fn print_header() {
    println!(
        "| scenario | clients | seconds | requests | req/s | p50 ms | p99 ms | p99.9 ms | max ms \
         | errors | server CPU | loadgen CPU | server peak RSS MiB | batch | commit ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

pub fn print_row(
    name: &str,
    clients: usize,
    result: &ScenarioResult,
    cpu: CpuUse,
    peak_rss_kib: u64,
    writer: WriterCounters,
) {
    let seconds = result.elapsed.as_secs_f64();
    let millis = |quantile: f64| result.latency.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "| {name} | {clients} | {seconds:.1} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} \
         | {:.0}% | {:.0}% | {:.0} | {} | {} |",
        result.requests,
        result.requests as f64 / seconds,
        millis(0.5),
        millis(0.99),
        millis(0.999),
        result.latency.max() as f64 / 1000.0,
        result.errors(),
        100.0 * cpu.server_seconds / seconds,
        100.0 * cpu.loadgen_seconds / seconds,
        peak_rss_kib as f64 / 1024.0,
        ratio(writer.commands, writer.batches, 1.0),
        ratio(writer.commit_seconds, writer.commits, 1000.0),
    );
}

/// `scale * numerator / denominator` with one decimal, or `-` for none.
fn ratio(numerator: f64, denominator: f64, scale: f64) -> String {
    if denominator > 0.0 {
        format!("{:.1}", scale * numerator / denominator)
    } else {
        "-".to_string()
    }
}

/// Formats the count of every status, and of requests without a response.
pub fn status_counts(result: &ScenarioResult) -> String {
    let mut parts: Vec<String> =
        result.statuses.iter().map(|(status, count)| format!("{status}: {count}")).collect();
    if result.transport_errors > 0 {
        parts.push(format!("no response: {}", result.transport_errors));
    }
    parts.join(", ")
}
