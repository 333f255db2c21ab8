//! `GET /metrics`: the Prometheus text format, request counts by route
//! pattern, and the writer's, log's and projections' figures.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::{Auth, Server};

/// One sample line: `name{labels} value`.
struct Sample {
    name: String,
    labels: String,
    value: String,
}

/// Parses the text format, asserting that every sample belongs to a family
/// announced by `# HELP` and `# TYPE` lines before it.
fn parse(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a name and a type");
            let known = ["counter", "gauge", "histogram"].contains(&kind);
            assert!(known, "metric type of {name}: {kind}");
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.trim().is_empty(), "blank line in the metrics");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels end with }");
                (name.to_string(), labels.to_string())
            }
            None => (series.to_string(), String::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| families.contains_key(*f)))
            .unwrap_or(&name);
        assert!(families.contains_key(family), "sample {name} has no TYPE line before it");
        let is_number = value == "+Inf" || value.parse::<u64>().is_ok() || is_decimal(value);
        assert!(is_number, "value of {name}: {value}");
        samples.push(Sample { name, labels, value: value.to_string() });
    }
    samples
}

fn is_decimal(text: &str) -> bool {
    match text.split_once('.') {
        Some((whole, fraction)) => {
            whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Finds the value of the sample with this name and exactly these labels.
fn value_of<'a>(samples: &'a [Sample], name: &str, labels: &str) -> Option<&'a str> {
    samples.iter().find(|s| s.name == name && s.labels == labels).map(|s| s.value.as_str())
}

async fn scrape(server: &Server) -> (String, Vec<Sample>) {
    let reply = server.get("/metrics", &Auth::None).await;
    assert_eq!(reply.status, 200, "metrics status: {}", reply.text);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8", "content type");
    let samples = parse(&reply.text);
    (reply.text.clone(), samples)
}

#[tokio::test]
async fn requests_counted_by_route() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "metrics01").await;
    let sid = account["sid"].as_str().expect("sid");
    server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await.expect(200);
    server.get(&format!("/v1/accounts/{sid}.xml"), &developer.auth()).await.expect(200);
    server.get(&format!("/v1/accounts/{sid}"), &Auth::None).await.expect(401);
    server.get("/no/such/page-1234", &Auth::None).await.expect(404);

    let (text, samples) = scrape(&server).await;
    let requests = "subledger_http_requests_total";
    let fetched = "route=\"/v1/accounts/{account_sid}\",method=\"GET\",status=\"200\"";
    assert_eq!(value_of(&samples, requests, fetched), Some("2"), "fetches, .xml included");
    let refused = "route=\"/v1/accounts/{account_sid}\",method=\"GET\",status=\"401\"";
    assert_eq!(value_of(&samples, requests, refused), Some("1"), "401 counted apart");
    let unmatched = "route=\"unmatched\",method=\"GET\",status=\"404\"";
    assert_eq!(value_of(&samples, requests, unmatched), Some("1"), "unknown path");
    assert!(!text.contains(sid), "no raw path in the labels");
    assert!(!text.contains("page-1234"), "no unknown path in the labels");

    let histogram = "subledger_http_request_duration_seconds";
    let labels = "route=\"/v1/accounts/{account_sid}\",method=\"GET\"";
    let count = value_of(&samples, &format!("{histogram}_count"), labels);
    assert_eq!(count, Some("3"), "latency histogram over every status");
    let inf = format!("{labels},le=\"+Inf\"");
    let inf = value_of(&samples, &format!("{histogram}_bucket"), &inf);
    assert_eq!(inf, Some("3"), "+Inf bucket equals the count");
}

#[tokio::test]
async fn ledger_figures() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "metrics02").await;
    let sid = account["sid"].as_str().expect("sid");
    let posting = json!({"amount": "5", "type": "TOPUP", "pay_method": 4});
    let path = format!("/v1/accounts/{sid}/balances");
    server.post_json(&path, &developer.auth(), &posting).await.expect(201);
    let ready = server.get("/readyz", &Auth::None).await;
    let head = ready.json["log_head"].as_u64().expect("log_head");
    assert!(head >= 3, "developer, account and posting events: {head}");

    let (_, samples) = scrape(&server).await;
    let number = |name: &str| -> u64 {
        let value = value_of(&samples, name, "").unwrap_or_else(|| panic!("{name} missing"));
        value.parse().unwrap_or_else(|_| panic!("{name} is {value}"))
    };
    assert_eq!(number("subledger_log_head_seq"), head, "log head");
    assert_eq!(number("subledger_projection_seq"), head, "published state");
    assert_eq!(number("subledger_projection_lag_events"), 0, "no lag at rest");
    assert_eq!(number("subledger_events_appended_total"), head, "events since start");
    // The log directory contains sled's files and the two preallocated
    // journal files, and the size counts all of them.
    let log_dir = server.data_path().join("log");
    let journal_bytes: u64 = ["journal-0", "journal-1"]
        .iter()
        .map(|name| std::fs::metadata(log_dir.join(name)).expect("a journal file").len())
        .sum();
    let log_size = number("subledger_log_size_bytes");
    assert!(log_size > journal_bytes, "log size {log_size} counts the journals {journal_bytes}");
    assert_eq!(number("subledger_writer_up"), 1, "writer accepts writes");
    let batches = number("subledger_writer_batches_total");
    assert!(batches >= 3, "one batch per write at least: {batches}");
    assert_eq!(number("subledger_writer_commands_total"), 3, "three commands");

    let batch_count = number("subledger_writer_batch_size_commands_count");
    assert_eq!(batch_count, batches, "batch histogram counts every batch");
    let batch_sum = number("subledger_writer_batch_size_commands_sum");
    assert_eq!(batch_sum, 3, "batch sizes add up to the commands");
    let commits = number("subledger_commit_duration_seconds_count");
    assert_eq!(commits, 3, "every batch with events was committed once");
    let inf = value_of(&samples, "subledger_commit_duration_seconds_bucket", "le=\"+Inf\"");
    assert_eq!(inf, Some("3"), "commit +Inf bucket");
}

#[tokio::test]
async fn counts_survive_restart_as_gauges() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    server.account(&developer, "metrics03").await;
    let server = server.restart();

    let (_, samples) = scrape(&server).await;
    let value = |name: &str| value_of(&samples, name, "").map(str::to_string);
    let head: u64 = value("subledger_log_head_seq").expect("head").parse().expect("number");
    assert!(head >= 2, "the log head is read from the log: {head}");
    assert_eq!(value("subledger_projection_seq"), Some(head.to_string()), "recovered state");
    let appended = value("subledger_events_appended_total");
    assert_eq!(appended.as_deref(), Some("0"), "the counter starts again at zero");
}
