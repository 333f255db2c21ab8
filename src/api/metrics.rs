//! Prometheus metrics, served at `GET /metrics` in the text exposition
//! format 0.0.4 without authentication.
//!
//! `HttpMetrics` counts requests in the edge middleware by route pattern
//! (`/v1/accounts/{account_sid}`, never the raw path, so the label values
//! stay a fixed set), method and status, with a latency histogram. The
//! writer's counters (`WriterStats`), the log head, the published state's
//! sequence number and the log size are read when the endpoint is scraped.
//! Counters are atomics; the encoder is written here because the writer
//! keeps its histograms as pre-bucketed counters, which the `prometheus`
//! crate's observe-based histograms cannot take.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use actix_web::http::{header, Method};
use actix_web::{web, HttpResponse};

use crate::api::AppState;
use crate::ledger::writer::COMMIT_LATENCY_BUCKETS_MICROS;

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Upper bounds of the request latency buckets, in microseconds (0.5 ms to
/// 10 s); slower requests count only in `+Inf`.
const REQUEST_LATENCY_BUCKETS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// The labels of one request series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    route: String,
    method: &'static str,
    status: u16,
}

/// Counters of one request series. `buckets[i]` counts requests in
/// `(bound[i-1], bound[i]]`; the last slot counts those above every bound.
#[derive(Debug, Default)]
struct RequestSeries {
    buckets: [AtomicU64; REQUEST_LATENCY_BUCKETS_MICROS.len() + 1],
    latency_micros_sum: AtomicU64,
}

/// Request counters by route pattern, method and status.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    series: RwLock<HashMap<SeriesKey, Arc<RequestSeries>>>,
}

/// A method label from the fixed set; any other method is `other`, so a
/// client cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
    KNOWN.into_iter().find(|known| *known == method.as_str()).unwrap_or("other")
}

impl HttpMetrics {
    /// Counts one finished request. `route` is the matched route pattern,
    /// or `None` when no route matched.
    pub fn record(&self, route: Option<&str>, method: &Method, status: u16, latency_micros: u64) {
        let key = SeriesKey {
            route: route.unwrap_or(UNMATCHED_ROUTE).to_string(),
            method: method_label(method),
            status,
        };
        let series = self.series_for(key);
        let bucket = REQUEST_LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| latency_micros <= *bound)
            .unwrap_or(REQUEST_LATENCY_BUCKETS_MICROS.len());
        series.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        series.latency_micros_sum.fetch_add(latency_micros, Ordering::Relaxed);
    }

    /// Returns the series of `key`, creating it on its first request.
    fn series_for(&self, key: SeriesKey) -> Arc<RequestSeries> {
        // A poisoned lock only means another request panicked while holding
        // it; the map itself is still whole, so keep counting.
        let existing = self.series.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        if let Some(series) = existing {
            return series;
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    }

    /// Copies out every series, sorted by its labels.
    fn snapshot(&self) -> Vec<(SeriesKey, Arc<RequestSeries>)> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut series: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    }

    /// Writes the request metrics in the text format.
    fn encode(&self, out: &mut String) {
        let series = self.snapshot();

        header_lines(
            out,
            "subledger_http_requests_total",
            "counter",
            "HTTP requests by route pattern, method and status.",
        );
        for (key, counts) in &series {
            let total: u64 = counts.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{}\"",
                escape_label(&key.route),
                key.method,
                key.status
            );
            let _ = writeln!(out, "subledger_http_requests_total{{{labels}}} {total}");
        }

        // The latency histogram leaves the status out: one histogram per
        // route and method, summed over statuses.
        let mut by_route: Vec<((String, &'static str), Vec<u64>, u64)> = Vec::new();
        for (key, counts) in &series {
            let buckets: Vec<u64> =
                counts.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
            let sum = counts.latency_micros_sum.load(Ordering::Relaxed);
            let route_key = (key.route.clone(), key.method);
            match by_route.iter_mut().find(|(existing, _, _)| *existing == route_key) {
                Some((_, total, total_sum)) => {
                    total.iter_mut().zip(&buckets).for_each(|(t, b)| *t += b);
                    *total_sum += sum;
                }
                None => by_route.push((route_key, buckets, sum)),
            }
        }
        header_lines(
            out,
            "subledger_http_request_duration_seconds",
            "histogram",
            "Time from receiving a request to its response, by route pattern and method.",
        );
        for ((route, method), buckets, sum) in &by_route {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape_label(route));
            let histogram = Histogram {
                bounds: REQUEST_LATENCY_BUCKETS_MICROS.iter().map(|m| seconds(*m)).collect(),
                buckets,
                sum: seconds(*sum),
            };
            histogram.encode(out, "subledger_http_request_duration_seconds", &labels);
        }
    }
}

/// A histogram from non-cumulative bucket counts: `buckets` has one count
/// per bound plus a last one for values above every bound.
struct Histogram<'a> {
    bounds: Vec<String>,
    buckets: &'a [u64],
    sum: String,
}

impl Histogram<'_> {
    fn encode(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(self.buckets) {
            cumulative += count;
            let _ =
                writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
        }
        let total: u64 = self.buckets.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

fn header_lines(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header_lines(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header_lines(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// Formats microseconds as decimal seconds without a float: 2500 → `0.0025`.
fn seconds(micros: u64) -> String {
    let text = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Escapes a label value as the text format requires.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Writes the writer's, the log's and the projections' metrics.
fn encode_ledger(out: &mut String, app: &AppState) {
    let ledger = &app.ledger;
    let stats = &ledger.stats;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);

    counter(
        out,
        "subledger_writer_batches_total",
        "Group commits: the written batches made durable by one sync, or answered together when none wrote events.",
        load(&stats.batches),
    );
    counter(
        out,
        "subledger_writer_commands_total",
        "Commands the writer decided, accepted or rejected.",
        load(&stats.commands),
    );
    counter(
        out,
        "subledger_events_appended_total",
        "Events appended to the log since the process started.",
        load(&stats.events),
    );

    // Batch `i` of the writer counts sizes from 2^i to 2^(i+1) - 1; the
    // last one also counts every larger batch, so it is left to `+Inf`.
    let batch_buckets: Vec<u64> = stats.batch_size_buckets.iter().map(load).collect();
    let batch_bounds = (0..batch_buckets.len() - 1).map(|i| ((2u64 << i) - 1).to_string());
    header_lines(
        out,
        "subledger_writer_batch_size_commands",
        "histogram",
        "Commands per group commit.",
    );
    let histogram = Histogram {
        bounds: batch_bounds.collect(),
        buckets: &batch_buckets,
        sum: load(&stats.commands).to_string(),
    };
    histogram.encode(out, "subledger_writer_batch_size_commands", "");

    // The writer's last commit bucket also counts every slower commit, so
    // its bound is left out and those commits count only in `+Inf`.
    let commit_buckets: Vec<u64> = stats.commit_latency_buckets.iter().map(load).collect();
    let commit_bounds = &COMMIT_LATENCY_BUCKETS_MICROS[..COMMIT_LATENCY_BUCKETS_MICROS.len() - 1];
    header_lines(
        out,
        "subledger_commit_duration_seconds",
        "histogram",
        "Time of the one sync that makes a group commit durable.",
    );
    let histogram = Histogram {
        bounds: commit_bounds.iter().map(|m| seconds(*m)).collect(),
        buckets: &commit_buckets,
        sum: seconds(load(&stats.commit_micros)),
    };
    histogram.encode(out, "subledger_commit_duration_seconds", "");

    let head = ledger.store.head().seq;
    let published = ledger.state().last_seq;
    gauge(out, "subledger_log_head_seq", "Sequence number of the newest event in the log.", head);
    gauge(
        out,
        "subledger_projection_seq",
        "Sequence number of the newest event in the state that readers see.",
        published,
    );
    gauge(
        out,
        "subledger_projection_lag_events",
        "Events in the log that readers do not see yet (log head minus projection sequence).",
        head.saturating_sub(published),
    );
    gauge(
        out,
        "subledger_log_size_bytes",
        "Bytes of the files in the log directory, the write-ahead journal included.",
        ledger.store.size_on_disk(),
    );
    gauge(
        out,
        "subledger_writer_up",
        "1 while the writer accepts writes, 0 after a storage failure stopped it.",
        u64::from(ledger.is_healthy()),
    );
}

/// Renders every metric in the text format.
pub fn render(app: &AppState, http: &HttpMetrics) -> String {
    let mut out = String::new();
    http.encode(&mut out);
    encode_ledger(&mut out, app);
    out
}

/// `GET /metrics`.
pub async fn metrics(app: web::Data<AppState>, http: web::Data<HttpMetrics>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(render(&app, &http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_formats_exactly() {
        assert_eq!(seconds(0), "0", "zero");
        assert_eq!(seconds(100), "0.0001", "100 µs");
        assert_eq!(seconds(2_500), "0.0025", "2.5 ms");
        assert_eq!(seconds(1_000_000), "1", "one second");
        assert_eq!(seconds(12_345_678), "12.345678", "fraction kept");
    }

    #[test]
    fn label_escaping() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn unknown_method_is_other() {
        let method = Method::from_bytes(b"BREW").expect("a valid method token");
        assert_eq!(method_label(&method), "other", "extension method");
        assert_eq!(method_label(&Method::GET), "GET", "standard method");
    }

    #[test]
    fn request_histogram_is_cumulative() {
        let metrics = HttpMetrics::default();
        metrics.record(Some("/v1/accounts"), &Method::GET, 200, 400);
        metrics.record(Some("/v1/accounts"), &Method::GET, 404, 3_000);
        metrics.record(None, &Method::GET, 404, 20_000_000);
        let mut out = String::new();
        metrics.encode(&mut out);

        let ok =
            "subledger_http_requests_total{route=\"/v1/accounts\",method=\"GET\",status=\"200\"} 1";
        assert!(out.contains(ok), "counter of 200: {out}");
        let unmatched =
            "subledger_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1";
        assert!(out.contains(unmatched), "counter of unmatched: {out}");
        let name = "subledger_http_request_duration_seconds";
        let first =
            format!("{name}_bucket{{route=\"/v1/accounts\",method=\"GET\",le=\"0.0005\"}} 1");
        assert!(out.contains(&first), "first bucket: {out}");
        let later =
            format!("{name}_bucket{{route=\"/v1/accounts\",method=\"GET\",le=\"0.005\"}} 2");
        assert!(out.contains(&later), "cumulative bucket: {out}");
        let sum = format!("{name}_sum{{route=\"/v1/accounts\",method=\"GET\"}} 0.0034");
        assert!(out.contains(&sum), "sum: {out}");
        let slow = format!("{name}_bucket{{route=\"unmatched\",method=\"GET\",le=\"10\"}} 0");
        assert!(out.contains(&slow), "slow request above the last bound: {out}");
        let inf = format!("{name}_bucket{{route=\"unmatched\",method=\"GET\",le=\"+Inf\"}} 1");
        assert!(out.contains(&inf), "slow request in +Inf: {out}");
    }
}
