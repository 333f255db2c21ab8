//! The offline audit commands (`verify`, `replay`, `export`, `reconcile`)
//! on data directories built through the API, start-up from projection
//! snapshots, and `GET /v1/accounts/{sid}/events`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{Auth, Developer, Server};

/// Exit codes of the offline commands.
const EXIT_CHECK_FAILED: i32 = 1;
const EXIT_ERROR: i32 = 2;

/// How long a background projection snapshot may take to be written.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(20);

/// What an offline command printed and how it exited.
struct CliRun {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> CliRun {
    let output = Command::new(env!("CARGO_BIN_EXE_subledger"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run the subledger binary");
    CliRun {
        code: output.status.code().expect("the command exited, not killed by a signal"),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

fn cli_on(command: &str, data_dir: &Path, more: &[&str]) -> CliRun {
    let data_dir = data_dir.to_str().expect("temporary paths are UTF-8");
    let mut args = vec![command, "--data-dir", data_dir];
    args.extend_from_slice(more);
    cli(&args)
}

/// Finds the value of a padded summary line such as `state hash      abc…`.
fn summary_value(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no {name:?} line in:\n{stdout}"))
}

/// Finds the value of a `name=value` field in a log line.
fn log_field(line: &str, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    line.split_whitespace().find_map(|token| token.strip_prefix(&prefix).map(str::to_string))
}

async fn post_balance(server: &Server, developer: &Developer, account: &str, body: Value) -> Value {
    let path = format!("/v1/accounts/{account}/balances");
    let reply = server.post_json(&path, &developer.auth(), &body).await;
    reply.expect(201);
    reply.json.clone()
}

async fn topup(
    server: &Server,
    developer: &Developer,
    account: &str,
    amount: &str,
    pay_method: u16,
    reference: &str,
) -> Value {
    let body = json!({"amount": amount, "type": "TOPUP", "pay_method": pay_method,
                      "refer_trans_id": reference});
    post_balance(server, developer, account, body).await
}

fn rfc3339_now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Creates a developer with one sub-account and three postings: 1 developer
/// event, 3 account events, then one event per posting.
async fn ledger_with_postings(server: &Server) -> (Developer, String) {
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "audit01").await["sid"].as_str().unwrap().to_string();
    topup(server, &developer, &account, "10.50", 4, "pp-1").await;
    topup(server, &developer, &account, "0.0041", 4, "pp-2").await;
    let adjustment = json!({"amount": "-3.25", "type": "ADJUSTMENT", "pay_method": 7,
                            "desc": "goodwill correction"});
    post_balance(server, &developer, &account, adjustment).await;
    (developer, account)
}

/// Events `ledger_with_postings` writes.
const LEDGER_EVENTS: u64 = 7;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the directory") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Rewrites one stored event value in the `events` tree with sled itself.
fn edit_event(data_dir: &Path, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let db = sled::open(data_dir.join("log")).expect("open the stopped log with sled");
    let events = db.open_tree("events").expect("events tree");
    let mut value = events.get(seq.to_be_bytes()).expect("read").expect("event exists").to_vec();
    edit(&mut value);
    events.insert(seq.to_be_bytes(), value).expect("write the event back");
    db.flush().expect("flush");
}

#[tokio::test]
async fn verify_passes_intact_log() {
    let mut server = Server::start().await;
    let line = rebuilt_line(&server.logs());
    assert!(line.contains("no projection snapshot yet"), "a new log has none: {line}");
    let (developer, _) = ledger_with_postings(&server).await;
    server.account(&developer, "audit02").await;
    server.stop();

    let run = cli_on("verify", &server.data_dir, &[]);
    assert_eq!(run.code, 0, "verify exit code; stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(summary_value(&run.stdout, "result"), "OK", "verify result");
    let events = LEDGER_EVENTS + 3;
    assert_eq!(summary_value(&run.stdout, "events"), format!("{events} of {events}"), "events");
    assert_eq!(summary_value(&run.stdout, "accounts"), "2", "accounts");
    assert_eq!(summary_value(&run.stdout, "transactions"), "3", "transactions");
    assert_eq!(summary_value(&run.stdout, "snapshot"), "none yet", "no snapshot at this size");
    assert_eq!(summary_value(&run.stdout, "ledger sum"), "0.00 SGD", "ledger sum");
    let state_hash = summary_value(&run.stdout, "state hash");
    assert_eq!(state_hash.len(), 64, "state hash is SHA-256 hex: {state_hash}");

    // The chain head is an anchor for later runs; a wrong one fails there.
    let head = summary_value(&run.stdout, "chain head");
    assert!(head.starts_with(&format!("{events}:")), "chain head is SEQ:HASH: {head}");
    let run = cli_on("verify", &server.data_dir, &["--anchor", &head]);
    assert_eq!(run.code, 0, "verify with its own anchor; stdout:\n{}", run.stdout);
    assert_eq!(summary_value(&run.stdout, "anchors"), "1 hold", "anchor line");
    let wrong = format!("5:{}", "ab".repeat(32));
    let run = cli_on("verify", &server.data_dir, &["--anchor", &head, "--anchor", &wrong]);
    assert_eq!(run.code, EXIT_CHECK_FAILED, "verify with a wrong anchor; stdout:\n{}", run.stdout);
    let result = summary_value(&run.stdout, "result");
    assert!(result.starts_with("FAILED at event 5:"), "names the anchored event: {result}");
    let run = cli_on("verify", &server.data_dir, &["--anchor", "5:xyz"]);
    assert_eq!(run.code, EXIT_ERROR, "malformed anchor");

    // A start replays the same log to the same state.
    let server = server.restart_and_wait().await;
    assert_eq!(server.start_state_hash().await, state_hash, "start-up state hash");
}

#[tokio::test]
async fn verify_names_tampered_event() {
    let mut server = Server::start().await;
    let (_, account) = ledger_with_postings(&server).await;
    server.stop();
    let pristine = server.data_dir.with_file_name("pristine");
    copy_dir(&server.data_dir, &pristine);

    // Event 5 is the 10.50 top-up: turn its amount into 90.50.
    edit_event(&server.data_dir, 5, |value| {
        let at = find(value, b"\"amount\":\"10.50\"").expect("the amount is in the body");
        value[at + "\"amount\":\"".len()] = b'9';
    });
    let run = cli_on("verify", &server.data_dir, &[]);
    assert_eq!(run.code, EXIT_CHECK_FAILED, "verify exit code; stdout:\n{}", run.stdout);
    let result = summary_value(&run.stdout, "result");
    assert!(result.starts_with("FAILED at event 5:"), "names event 5: {result}");
    assert!(result.contains("SHA-256"), "says the hash does not match: {result}");

    let replay = cli_on("replay", &server.data_dir, &["--account", &account]);
    assert_eq!(replay.code, EXIT_CHECK_FAILED, "replay exit code; stderr:\n{}", replay.stderr);
    assert!(replay.stderr.contains("event 5"), "replay names event 5: {}", replay.stderr);

    let output = server.data_dir.with_file_name("tampered.csv");
    let output_text = output.to_str().unwrap();
    let export = cli_on("export", &server.data_dir, &["--format", "csv", "--output", output_text]);
    assert_eq!(export.code, EXIT_CHECK_FAILED, "export exit code; stderr:\n{}", export.stderr);
    assert!(export.stderr.contains("event 5"), "export names event 5: {}", export.stderr);
    assert!(!output.exists(), "export removes its partial output");

    // Removing an event is a gap at its sequence number.
    edit_sled(&pristine, |db| {
        db.open_tree("events").unwrap().remove(6u64.to_be_bytes()).unwrap();
    });
    assert_verify_names_gap(&pristine, "a gap");

    // The same gap when no saved stream index row covers it, as after a
    // crash: the open reads the events to build the index.
    edit_sled(&pristine, |db| {
        db.drop_tree("stream_index").unwrap();
    });
    assert_verify_names_gap(&pristine, "a gap after a crash");

    // The service exits at start on it, with the reason, and writes no
    // key file into the directory of a log that takes no writes.
    let stderr = serve_until_exit(&pristine);
    assert!(stderr.contains("takes no writes"), "names the missing writes: {stderr}");
    assert!(stderr.contains("subledger verify"), "names the command to run: {stderr}");
    assert!(!pristine.join("platform.key").exists(), "no platform key file");
    assert!(!pristine.join("aes.key").exists(), "no AES key file");
}

/// Opens the log of a stopped service's `data_dir` with sled itself, lets
/// `edit` change it, and flushes the change.
fn edit_sled(data_dir: &Path, edit: impl FnOnce(&sled::Db)) {
    let db = sled::open(data_dir.join("log")).expect("open the copy with sled");
    edit(&db);
    db.flush().unwrap();
}

/// Checks that `verify` fails at the missing event 6 of `data_dir`.
fn assert_verify_names_gap(data_dir: &Path, case: &str) {
    let run = cli_on("verify", data_dir, &[]);
    assert_eq!(run.code, EXIT_CHECK_FAILED, "verify exit code on {case}");
    let result = summary_value(&run.stdout, "result");
    assert!(result.starts_with("FAILED at event 6: missing"), "{case}: names the gap: {result}");
}

/// Runs `subledger serve` on `data_dir`, which must exit by itself with
/// an error within 30 s, and returns its stderr.
fn serve_until_exit(data_dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_subledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the subledger binary");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the server") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill the server");
            panic!("serve kept running on a log that takes no writes");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success(), "serve exits with an error");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    stderr
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[tokio::test]
async fn replay_and_export_match_api() {
    let mut server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "replay01").await["sid"].as_str().unwrap().to_string();
    let body = json!({"login_id": "replay02", "password": "secret123", "currency": "USD"});
    let other = server.post_json("/v1/accounts", &developer.auth(), &body).await.sid();
    topup(&server, &developer, &account, "10.50", 4, "r-1").await;
    topup(&server, &developer, &other, "5", 2, "r-2").await;
    let adjustment = json!({"amount": "-0.2541", "type": "ADJUSTMENT", "pay_method": 7,
                            "desc": "fee, \"quoted\""});
    post_balance(&server, &developer, &account, adjustment).await;
    let until = rfc3339_now();
    topup(&server, &developer, &account, "100.0041", 5, "r-3").await;

    // What the API returns, before the service stops.
    let auth = developer.auth();
    let at_path = format!("/v1/accounts/{account}/balances?at={}", until.replace('+', "%2B"));
    let balance_at = server.get(&at_path, &auth).await.expect(200).json["balance_amount"].clone();
    let now_path = format!("/v1/accounts/{account}/balances");
    let balance_now = server.get(&now_path, &auth).await.expect(200).json["balance_amount"].clone();
    let list_path = format!("/v1/accounts/{account}/balances/transactions");
    let api_list = server.get(&list_path, &auth).await.expect(200).json["transactions"].clone();
    let all = server.get("/v1/transactions", &auth).await.expect(200).json["transactions"].clone();
    let api_list = api_list.as_array().unwrap().clone();
    let all = all.as_array().unwrap().clone();
    server.stop();

    // Replay until the time and to the end.
    let run = cli_on("replay", &server.data_dir, &["--account", &account, "--format", "json"]);
    assert_eq!(run.code, 0, "replay exit code; stderr:\n{}", run.stderr);
    let replay: Value = serde_json::from_str(&run.stdout).expect("replay JSON");
    assert_eq!(replay["balance"], balance_now, "balance at the end");
    let postings = replay["postings"].as_array().unwrap();
    assert_eq!(postings.len(), api_list.len(), "posting count");
    for (posting, api) in postings.iter().zip(&api_list) {
        assert_eq!(posting["sid"], api["sid"], "posting order");
        assert_eq!(posting["amount"], api["amount"], "amount of {}", api["sid"]);
        assert_eq!(posting["balance_after"], api["balance_amount"], "balance of {}", api["sid"]);
        assert_eq!(posting["type"], api["type"], "type of {}", api["sid"]);
        assert_eq!(posting["pay_method"], api["pay_method"], "pay_method of {}", api["sid"]);
        assert_eq!(posting["refer_trans_id"], api["refer_trans_id"], "reference of {}", api["sid"]);
    }
    let args = ["--account", account.as_str(), "--until", until.as_str(), "--format", "json"];
    let run = cli_on("replay", &server.data_dir, &args);
    assert_eq!(run.code, 0, "replay --until exit code; stderr:\n{}", run.stderr);
    let replay: Value = serde_json::from_str(&run.stdout).expect("replay JSON");
    assert_eq!(replay["balance"], balance_at, "balance at --until equals the API's at");
    assert_eq!(replay["balance"], "10.2459", "balance at --until");
    assert_eq!(replay["postings"].as_array().unwrap().len(), 2, "postings until then");
    assert_eq!(replay["later_postings"], 1, "postings after --until");

    let run = cli_on("replay", &server.data_dir, &["--account", &account, "--until", &until]);
    assert_eq!(run.code, 0, "text replay exit code");
    assert_eq!(summary_value(&run.stdout, "balance"), "10.2459 SGD", "text balance");

    // The CSV export has every transaction of the API, field for field.
    let run = cli_on("export", &server.data_dir, &["--format", "csv"]);
    assert_eq!(run.code, 0, "export exit code; stderr:\n{}", run.stderr);
    let mut reader = csv::Reader::from_reader(run.stdout.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|row| row.expect("CSV row")).collect();
    let header = reader.headers().unwrap().clone();
    let column = |row: &csv::StringRecord, name: &str| {
        let index = header.iter().position(|field| field == name).expect("column exists");
        row[index].to_string()
    };
    assert_eq!(rows.len(), all.len(), "exported transactions");
    for (row, api) in rows.iter().zip(&all) {
        let sid = api["sid"].as_str().unwrap();
        assert_eq!(column(row, "sid"), sid, "export order");
        assert_eq!(column(row, "account_sid"), api["account_sid"].as_str().unwrap(), "{sid}");
        assert_eq!(column(row, "amount"), api["amount"].as_str().unwrap(), "amount of {sid}");
        assert_eq!(column(row, "currency"), api["currency"].as_str().unwrap(), "currency {sid}");
        let balance = api["balance_amount"].as_str().unwrap();
        assert_eq!(column(row, "balance_after"), balance, "balance_after of {sid}");
        assert_eq!(column(row, "type"), api["type"].as_str().unwrap(), "type of {sid}");
        assert_eq!(column(row, "pay_method"), api["pay_method"].to_string(), "pay_method {sid}");
        let reference = api["refer_trans_id"].as_str().unwrap_or("");
        assert_eq!(column(row, "refer_trans_id"), reference, "refer_trans_id of {sid}");
        assert_eq!(column(row, "desc"), api["desc"].as_str().unwrap_or(""), "desc of {sid}");
        assert_eq!(column(row, "hash").len(), 64, "hash of {sid}");
        let created = DateTime::parse_from_rfc3339(&column(row, "date_created"));
        assert!(created.is_ok(), "date_created of {sid} is RFC 3339");
    }

    // JSON lines, limited to the time window after `until`.
    let run = cli_on("export", &server.data_dir, &["--format", "jsonl", "--from", &until]);
    assert_eq!(run.code, 0, "export --from exit code; stderr:\n{}", run.stderr);
    let lines: Vec<Value> =
        run.stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 1, "transactions from --until on");
    assert_eq!(lines[0]["amount"], "100.0041", "the last top-up");
    assert_eq!(lines[0]["pay_method"], 5, "pay_method is a number");
    let run = cli_on("export", &server.data_dir, &["--format", "jsonl", "--to", &until]);
    assert_eq!(run.stdout.lines().count(), 3, "transactions before --until");

    // The raw event export lets anyone recompute the hash chain.
    check_event_export(&server.data_dir);
}

/// Recomputes `SHA-256(prev_hash ‖ body)` for every line of `--events`.
fn check_event_export(data_dir: &Path) {
    let run = cli_on("export", data_dir, &["--format", "jsonl", "--events"]);
    assert_eq!(run.code, 0, "event export exit code; stderr:\n{}", run.stderr);
    let mut prev_hash = "0".repeat(64);
    let mut count = 0u64;
    for line in run.stdout.lines() {
        count += 1;
        let event: Value = serde_json::from_str(line).expect("event line is JSON");
        assert_eq!(event["seq"], count, "sequence numbers from 1");
        assert_eq!(event["prev_hash"].as_str().unwrap(), prev_hash, "chain at {count}");
        let body_at = line.find("\"body\":").expect("body field") + "\"body\":".len();
        let body = &line[body_at..line.len() - 1];
        let mut hasher = Sha256::new();
        hasher.update(hex::decode(&prev_hash).unwrap());
        hasher.update(body.as_bytes());
        let hash = hex::encode(hasher.finalize());
        assert_eq!(event["hash"].as_str().unwrap(), hash, "hash of event {count}");
        assert_eq!(event["body"]["seq"], count, "body of event {count}");
        prev_hash = hash;
    }
    assert_eq!(count, 11, "every event exported");
    let csv = cli_on("export", data_dir, &["--format", "csv", "--events"]);
    assert_eq!(csv.code, EXIT_ERROR, "--events with CSV is rejected");
}

#[tokio::test]
async fn reconcile_classifies_statement() {
    let mut server = Server::start().await;
    let acme = server.developer("Acme").await;
    let globex = server.developer("Globex").await;
    let account = server.account(&acme, "recon01").await["sid"].as_str().unwrap().to_string();
    let theirs = server.account(&globex, "recon02").await["sid"].as_str().unwrap().to_string();
    topup(&server, &acme, &account, "10.00", 4, "R-match").await;
    topup(&server, &acme, &account, "20.00", 4, "R-mismatch").await;
    topup(&server, &acme, &account, "7.25", 4, "R-unlisted").await;
    topup(&server, &acme, &account, "3.00", 4, "R-dup").await;
    topup(&server, &acme, &account, "1.00", 4, "R-shared").await;
    topup(&server, &acme, &account, "9.99", 2, "R-other-method").await;
    topup(&server, &globex, &theirs, "1.00", 4, "R-shared").await;
    server.stop();

    let statement = server.data_dir.with_file_name("statement.csv");
    let rows = "refer_trans_id,amount,payer\n\
                R-match,10.00,alice\n\
                R-mismatch,21.00,bob\n\
                R-absent,5.00,carol\n\
                R-dup,3.00,dan\n\
                R-dup,3.00,dan\n\
                R-shared,1.00,erin\n\
                R-bad,12.3.4,frank\n";
    std::fs::write(&statement, rows).unwrap();
    let statement_text = statement.to_str().unwrap();
    let args = ["--statement", statement_text, "--pay-method", "4", "--format", "json"];
    let run = cli_on("reconcile", &server.data_dir, &args);
    assert_eq!(run.code, EXIT_CHECK_FAILED, "discrepancies exit 1; stderr:\n{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("report JSON");
    let summary = &report["summary"];
    for (category, count) in [
        ("matched", 1),
        ("amount_mismatches", 1),
        ("missing_in_ledger", 1),
        ("missing_in_statement", 1),
        ("duplicate_references", 1),
        ("ambiguous_references", 1),
        ("invalid_rows", 1),
    ] {
        assert_eq!(summary[category]["count"], count, "{category} count");
    }
    assert_eq!(report["matched"][0]["statement"]["refer_trans_id"], "R-match", "matched");
    assert_eq!(report["matched"][0]["statement"]["columns"]["payer"], "alice", "kept column");
    let mismatch = &report["amount_mismatches"][0];
    assert_eq!(mismatch["statement"]["amount"], "21.00", "statement amount");
    assert_eq!(mismatch["ledger"]["amount"], "20.00", "ledger amount");
    assert_eq!(summary["amount_mismatches"]["statement_totals"]["SGD"], "21.00", "mismatch total");
    assert_eq!(summary["amount_mismatches"]["ledger_totals"]["SGD"], "20.00", "ledger total");
    assert_eq!(report["missing_in_ledger"][0]["refer_trans_id"], "R-absent", "not in ledger");
    assert_eq!(report["missing_in_ledger"][0]["line"], 4, "line of the absent row");
    assert_eq!(report["missing_in_statement"][0]["refer_trans_id"], "R-unlisted", "unlisted");
    assert_eq!(summary["missing_in_statement"]["ledger_totals"]["SGD"], "7.25", "unlisted total");
    let duplicate = &report["duplicate_references"][0];
    assert_eq!(duplicate["refer_trans_id"], "R-dup", "duplicate reference");
    assert_eq!(duplicate["statement"].as_array().unwrap().len(), 2, "both duplicate rows");
    let ambiguous = &report["ambiguous_references"][0];
    assert_eq!(ambiguous["statement"]["refer_trans_id"], "R-shared", "ambiguous reference");
    assert_eq!(ambiguous["ledger"].as_array().unwrap().len(), 2, "one posting per developer");
    assert_eq!(report["invalid_rows"][0]["line"], 8, "line of the invalid row");
    let reason = report["invalid_rows"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("amount"), "invalid row reason names amount: {reason}");

    // One developer: the shared reference is that developer's and matches.
    let args = ["--statement", statement_text, "--pay-method", "4", "--developer", &acme.sid];
    let run =
        cli_on("reconcile", &server.data_dir, &[&args[..], &["--format", "json"][..]].concat());
    let report: Value = serde_json::from_str(&run.stdout).expect("report JSON");
    assert_eq!(report["summary"]["matched"]["count"], 2, "shared reference matches");
    assert_eq!(report["summary"]["ambiguous_references"]["count"], 0, "nothing ambiguous");

    // A statement that agrees with the ledger exits 0.
    let clean = server.data_dir.with_file_name("clean.csv");
    std::fs::write(&clean, "Amount,Refer_Trans_ID\n1.0,R-shared\n").unwrap();
    let args = ["--statement", clean.to_str().unwrap(), "--pay-method", "4"];
    let run = cli_on(
        "reconcile",
        &server.data_dir,
        &[&args[..], &["--developer", globex.sid.as_str()][..]].concat(),
    );
    assert_eq!(run.code, 0, "all matched exits 0; stdout:\n{}", run.stdout);
    assert_eq!(summary_value(&run.stdout, "result"), "all matched", "text result");

    // A header without the needed columns is an error, not a report.
    std::fs::write(&clean, "reference,value\nR-shared,1.00\n").unwrap();
    let run = cli_on("reconcile", &server.data_dir, &args);
    assert_eq!(run.code, EXIT_ERROR, "unusable header exit code");
    assert!(run.stderr.contains("refer_trans_id"), "names the missing column: {}", run.stderr);
}

/// Finds the `projections rebuilt` line of the newest start.
fn rebuilt_line(logs: &[String]) -> String {
    logs.iter()
        .rev()
        .find(|line| line.contains("projections rebuilt"))
        .cloned()
        .unwrap_or_else(|| panic!("no start-up line in {logs:?}"))
}

/// Waits until the server logged a snapshot at `seq`.
async fn wait_for_snapshot(server: &Server, seq: u64) {
    let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
    let wanted = seq.to_string();
    loop {
        let written = server.logs().iter().any(|line| {
            line.contains("projection snapshot written")
                && log_field(line, "seq").as_deref() == Some(wanted.as_str())
        });
        if written {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot at {seq}: {:?}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `verify` and returns the state hash of its full replay.
fn verified_state_hash(data_dir: &Path) -> String {
    let run = cli_on("verify", data_dir, &[]);
    assert_eq!(run.code, 0, "verify exit code; stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    summary_value(&run.stdout, "state hash")
}

impl Server {
    /// Restarts the server and returns it once `/readyz` returns 200.
    async fn restart_and_wait(self) -> Server {
        let server = self.restart();
        server.get("/readyz", &Auth::None).await.expect(200);
        server
    }
}

#[tokio::test]
async fn snapshot_start_matches_full_replay() {
    let server = Server::start_with(&["--snapshot-interval", "5"]).await;
    // Events 1 to 5: a developer, a sub-account (3 events), a top-up.
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "snap01").await["sid"].as_str().unwrap().to_string();
    topup(&server, &developer, &account, "1.00", 4, "s-1").await;
    wait_for_snapshot(&server, 5).await;

    // Exactly at the boundary: nothing to replay after the snapshot.
    let mut server = server.restart_and_wait().await;
    let line = rebuilt_line(&server.logs());
    assert_eq!(log_field(&line, "snapshot_seq").as_deref(), Some("5"), "start from snapshot 5");
    assert!(line.contains("from a projection snapshot"), "names the snapshot start: {line}");
    assert_eq!(log_field(&line, "replayed_events").as_deref(), Some("0"), "no tail: {line}");
    let from_snapshot = server.start_state_hash().await;
    server.stop();
    assert_eq!(verified_state_hash(&server.data_dir), from_snapshot, "hash at event 5");

    // Events 6 to 11: the second snapshot at 10, then a tail of one.
    let server = server.restart_and_wait().await;
    for index in 2..=7 {
        topup(&server, &developer, &account, "1.00", 4, &format!("s-{index}")).await;
    }
    wait_for_snapshot(&server, 10).await;
    let mut server = server.restart_and_wait().await;
    let line = rebuilt_line(&server.logs());
    assert_eq!(log_field(&line, "snapshot_seq").as_deref(), Some("10"), "start from 10");
    assert_eq!(log_field(&line, "replayed_events").as_deref(), Some("1"), "tail: {line}");
    let from_snapshot = server.start_state_hash().await;
    server.stop();
    let full_replay = verified_state_hash(&server.data_dir);
    assert_eq!(full_replay, from_snapshot, "hash at event 11");

    // A newest snapshot that does not decode: the start falls back to the
    // one before it and warns.
    {
        let store = subledger::store::SledStore::open(&server.data_dir.join("log")).unwrap();
        let mut garbage = |out: &mut dyn std::io::Write| out.write_all(b"not a snapshot");
        subledger::store::EventStore::save_snapshot(&store, 11, &mut garbage).unwrap();
    }
    let mut server = server.restart_and_wait().await;
    let logs = server.logs();
    assert!(
        logs.iter().any(|line| line.contains("WARN") && line.contains("does not decode")),
        "warning for the bad snapshot: {logs:?}"
    );
    let line = rebuilt_line(&logs);
    assert_eq!(log_field(&line, "snapshot_seq").as_deref(), Some("10"), "falls back to 10");
    assert_eq!(server.start_state_hash().await, full_replay, "hash after fallback");
    server.stop();

    // Every snapshot damaged: a full replay, with a warning, same hash.
    corrupt_snapshots(&server.data_dir);
    let server = server.restart_and_wait().await;
    let logs = server.logs();
    let warned = logs
        .iter()
        .any(|line| line.contains("WARN") && line.contains("unreadable projection snapshot"));
    assert!(warned, "warning for the damaged snapshots: {logs:?}");
    let line = rebuilt_line(&logs);
    assert_eq!(log_field(&line, "snapshot_seq"), None, "full replay: {line}");
    assert!(line.contains("by a full replay"), "names the full replay: {line}");
    assert!(line.contains("no projection snapshot was usable"), "names the cause: {line}");
    assert_eq!(log_field(&line, "replayed_events").as_deref(), Some("11"), "all events: {line}");
    assert_eq!(server.start_state_hash().await, full_replay, "hash after full replay");
}

#[tokio::test]
async fn older_snapshot_format_replayed() {
    let mut server = Server::start_with(&["--snapshot-interval", "5"]).await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "old01").await["sid"].as_str().unwrap().to_string();
    topup(&server, &developer, &account, "1.00", 4, "o-1").await;
    wait_for_snapshot(&server, 5).await;
    server.stop();

    // The previous build wrote format version 2: the prefix [0, 2] and the
    // state in postcard, the encoding that the state hash still covers.
    {
        use subledger::store::EventStore;
        let store = subledger::store::SledStore::open(&server.data_dir.join("log")).unwrap();
        let current = store.snapshots().unwrap().into_iter().find(|snapshot| snapshot.seq == 5);
        let bytes = current.expect("the snapshot at 5").bytes;
        let state = subledger::projection::State::decode(&bytes).expect("the snapshot decodes");
        let mut version_2 = Vec::new();
        state.encode_canonical_into(&mut version_2).unwrap();
        assert_eq!(version_2[..2], [0, 2], "the version 2 prefix");
        store.save_snapshot(5, &mut |out| out.write_all(&version_2)).unwrap();
    }
    let mut server = server.restart_and_wait().await;
    let logs = server.logs();
    let warned = logs.iter().any(|line| line.contains("WARN") && line.contains("does not decode"));
    assert!(warned, "warning for the older snapshot: {logs:?}");
    let line = rebuilt_line(&logs);
    assert_eq!(log_field(&line, "snapshot_seq"), None, "full replay: {line}");
    assert_eq!(log_field(&line, "replayed_events").as_deref(), Some("5"), "all events: {line}");
    let replayed = server.start_state_hash().await;
    server.stop();
    assert_eq!(verified_state_hash(&server.data_dir), replayed, "verify skips the snapshot");
}

/// Flips the last byte of every stored snapshot file, so that no snapshot
/// passes its SHA-256 check.
fn corrupt_snapshots(data_dir: &Path) {
    let dir = data_dir.join("log").join("projection-snapshots");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("read the snapshot directory") {
        let path = entry.expect("a directory entry").path();
        let mut bytes = std::fs::read(&path).expect("read a snapshot file");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).expect("write the snapshot file back");
        files += 1;
    }
    assert!(files >= 2, "both kept snapshots are files: {files}");
}

#[tokio::test]
async fn events_page_and_hide_secrets() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "events01").await["sid"].as_str().unwrap().to_string();
    let auth = developer.auth();
    topup(&server, &developer, &account, "2.50", 4, "e-1").await;
    let password = json!({"password": "changed123", "encrypt_type": 0});
    server.put_json(&format!("/v1/accounts/{account}"), &auth, &password).await.expect(200);
    let sip_body = json!({"password": "sipsecret1", "encrypt_type": 0, "sip_id": "events02"});
    let sip_path = format!("/v1/accounts/{account}/SIP");
    let sip = server.post_json(&sip_path, &auth, &sip_body).await.expect(201).sid();
    server.delete(&format!("{sip_path}/{sip}"), &auth).await.expect(204);

    // Every page of two, following next_page_uri.
    let mut path = format!("/v1/accounts/{account}/events?page_size=2");
    let mut events = Vec::new();
    let mut pages = 0;
    loop {
        let reply = server.get(&path, &auth).await;
        reply.expect(200);
        for secret in ["password_argon2", "digests", "ha1", "api_key_sha256"] {
            assert!(!reply.text.contains(secret), "page {pages} shows {secret}: {}", reply.text);
        }
        assert_eq!(reply.json["page"], pages, "page number");
        events.extend(reply.json["events"].as_array().unwrap().iter().cloned());
        pages += 1;
        match reply.json["next_page_uri"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    let kinds: Vec<&str> = events.iter().map(|event| event["type"].as_str().unwrap()).collect();
    let expected = [
        "SubAccountCreated",
        "SipAccountCreated",
        "SipAliasAdded",
        "BalanceToppedUp",
        "SubAccountUpdated",
    ];
    assert_eq!(&kinds[..expected.len()], expected, "the account's history in log order");
    assert!(kinds.contains(&"SipAccountDeleted"), "a deleted SIP account's events: {kinds:?}");
    assert_eq!(pages, events.len().div_ceil(2), "pages of two");
    let sequences: Vec<u64> = events.iter().map(|event| event["seq"].as_u64().unwrap()).collect();
    assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]), "oldest first: {sequences:?}");
    assert!(!sequences.contains(&1), "the developer's own event is not the account's");
    let posting = &events[3];
    assert_eq!(posting["data"]["amount"], "2.50", "posting data");
    assert_eq!(posting["actor"], developer.sid.as_str(), "actor");
    assert_eq!(posting["hash"].as_str().unwrap().len(), 64, "hash is hex SHA-256");
    let recorded_at = posting["recorded_at"].as_str().unwrap();
    assert!(DateTime::parse_from_rfc2822(recorded_at).is_ok(), "RFC 2822: {recorded_at}");

    let first = server.get(&format!("/v1/accounts/{account}/events?page_size=1"), &auth).await;
    crate::support::assert_json_snapshot("account_events", &first.json);

    // Tenancy: another developer gets 404, the platform gets 200.
    let stranger = server.developer("Globex").await;
    let path = format!("/v1/accounts/{account}/events");
    server.get(&path, &stranger.auth()).await.expect_error(404);
    server.get(&path, &Auth::Platform).await.expect(200);
    server.get(&format!("{path}?page_size=0"), &auth).await.expect_error(400);
}

#[tokio::test]
async fn damaged_data_dir_is_clear_error() {
    let mut server = Server::start().await;
    ledger_with_postings(&server).await;
    let temp = server.data_dir.parent().unwrap().to_path_buf();

    // The running service has the log locked.
    let run = cli_on("verify", &server.data_dir, &[]);
    assert_eq!(run.code, EXIT_ERROR, "locked log exit code");
    assert!(
        run.stderr.contains("stop `subledger serve`"),
        "says to stop the service: {}",
        run.stderr
    );
    server.stop();
    assert_eq!(verified_state_hash(&server.data_dir).len(), 64, "the intact copy verifies");

    let missing = temp.join("missing");
    let no_log = temp.join("no-log");
    std::fs::create_dir_all(&no_log).unwrap();
    let garbage = temp.join("garbage");
    std::fs::create_dir_all(garbage.join("log")).unwrap();
    let noise: Vec<u8> =
        (0..8192u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(garbage.join("log/db"), &noise).unwrap();
    std::fs::write(garbage.join("log/conf"), &noise[..64]).unwrap();
    // Cut the database file to 1 KiB, inside the records that sled's own
    // snapshot (written when `verify` opened the log) counts as stable.
    let truncated = temp.join("truncated");
    copy_dir(&server.data_dir, &truncated);
    let db_file = truncated.join("log/db");
    std::fs::OpenOptions::new().write(true).open(&db_file).unwrap().set_len(1024).unwrap();

    let cases: [(&str, &PathBuf, &str); 4] = [
        ("missing", &missing, "does not exist"),
        ("no log", &no_log, "not a subledger data directory"),
        ("garbage", &garbage, "damaged"),
        ("truncated", &truncated, "damaged"),
    ];
    for (case, data_dir, message) in cases {
        for command in [
            &["verify"][..],
            &["export", "--format", "csv"],
            &["replay", "--account", "AC00000000000000000000000000000000"],
        ] {
            let run = cli_on(command[0], data_dir, &command[1..]);
            assert_eq!(
                run.code, EXIT_ERROR,
                "{case} {}: exit code; stderr:\n{}",
                command[0], run.stderr
            );
            assert!(run.stderr.contains(message), "{case} {}: message: {}", command[0], run.stderr);
            assert!(
                !run.stderr.contains("panicked"),
                "{case} {}: no panic: {}",
                command[0],
                run.stderr
            );
            assert!(run.stdout.is_empty(), "{case} {}: no report: {}", command[0], run.stdout);
        }
    }
    assert!(!missing.exists(), "an offline command creates no directory");
}

#[tokio::test]
async fn export_output_inside_data_dir() {
    let mut server = Server::start().await;
    ledger_with_postings(&server).await;
    server.stop();
    let hash_before = verified_state_hash(&server.data_dir);
    let db_file = server.data_dir.join("log/db");
    let db_bytes = std::fs::metadata(&db_file).expect("the log's db file").len();

    // The log's own file, a key file name, a new file, a path that
    // reaches the log through `..`, and names outside the data directory
    // for files inside it: a symbolic link and hard links.
    let dotted = server.data_dir.join("log/../log/db");
    let link = server.data_dir.with_file_name("export-link.csv");
    std::os::unix::fs::symlink(&db_file, &link).expect("link to the db file");
    let hard_db = server.data_dir.with_file_name("export-hard.csv");
    std::fs::hard_link(&db_file, &hard_db).expect("hard link to the db file");
    let hard_journal = server.data_dir.with_file_name("export-journal.csv");
    let journal_file = server.data_dir.join("log/journal-0");
    std::fs::hard_link(&journal_file, &hard_journal).expect("hard link to a journal file");
    let journal_bytes = std::fs::read(&journal_file).expect("the journal file");
    let cases: [(&str, PathBuf); 7] = [
        ("db file", db_file.clone()),
        ("key file", server.data_dir.join("platform.key")),
        ("new file", server.data_dir.join("export.csv")),
        ("dotted path", dotted),
        ("link outside", link),
        ("hard link to db", hard_db),
        ("hard link to journal", hard_journal),
    ];
    for (case, output) in &cases {
        let args = ["--format", "csv", "--output", output.to_str().unwrap()];
        let run = cli_on("export", &server.data_dir, &args);
        assert_eq!(run.code, EXIT_ERROR, "{case}: exit code; stderr:\n{}", run.stderr);
        assert!(run.stderr.contains("inside the data directory"), "{case}: {}", run.stderr);
    }

    let db_after = std::fs::metadata(&db_file).expect("the db file is still there").len();
    assert_eq!(db_after, db_bytes, "the db file keeps its size");
    let journal_after = std::fs::read(&journal_file).expect("the journal file is still there");
    assert!(journal_after == journal_bytes, "the journal file keeps its bytes");
    assert!(!server.data_dir.join("export.csv").exists(), "no export inside the data directory");
    assert!(!server.data_dir.join("platform.key").exists(), "no key file created");
    assert_eq!(verified_state_hash(&server.data_dir), hash_before, "the log still verifies");

    // The same export outside the data directory works.
    let outside = server.data_dir.with_file_name("export.csv");
    let run = cli_on(
        "export",
        &server.data_dir,
        &["--format", "csv", "--output", outside.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "export outside: stderr:\n{}", run.stderr);
    let written = std::fs::read_to_string(&outside).expect("the export file");
    assert_eq!(written.lines().count(), 4, "a header and three transactions");
}

#[tokio::test]
async fn reconcile_line_numbers() {
    let mut server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "recon04").await["sid"].as_str().unwrap().to_string();
    topup(&server, &developer, &account, "10.00", 4, "R-1").await;
    server.stop();

    // File lines: the header (1), a match (2), a row missing in the ledger
    // (3), a blank line (4) and an invalid amount (5). Then a row whose
    // quoted note spans lines 6 and 7, and a row with too few fields (8).
    // The same rows are written with LF and with CRLF line ends.
    let lines = [
        "refer_trans_id,amount,note",
        "R-1,10.00,ok",
        "R-absent,5.00,ok",
        "",
        "R-bad,1.2.3,ok",
        "R-split,7.00,\"two",
        "lines\"",
        "R-short",
    ];
    let statement = server.data_dir.with_file_name("statement.csv");
    for terminator in ["\n", "\r\n"] {
        let case = format!("{terminator:?} line ends");
        let rows: String = lines.iter().map(|line| format!("{line}{terminator}")).collect();
        std::fs::write(&statement, rows).unwrap();
        let args =
            ["--statement", statement.to_str().unwrap(), "--pay-method", "4", "--format", "json"];
        let run = cli_on("reconcile", &server.data_dir, &args);
        assert_eq!(run.code, EXIT_CHECK_FAILED, "{case}: exit code; stderr:\n{}", run.stderr);
        let report: Value = serde_json::from_str(&run.stdout).expect("report JSON");

        let line_of = |row: &Value| row["line"].as_u64().expect("a row has a line");
        let missing: Vec<u64> =
            report["missing_in_ledger"].as_array().unwrap().iter().map(line_of).collect();
        assert_eq!(missing, [3, 6], "{case}: lines of the rows missing in the ledger");
        let invalid: Vec<u64> =
            report["invalid_rows"].as_array().unwrap().iter().map(line_of).collect();
        assert_eq!(invalid, [5, 8], "{case}: lines of the invalid rows");
        let matched = &report["matched"][0]["statement"];
        assert_eq!(matched["line"], 2, "{case}: line of the matched row: {matched}");
    }
}

#[tokio::test]
async fn reconcile_duplicate_header_column() {
    let mut server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "recon03").await["sid"].as_str().unwrap().to_string();
    topup(&server, &developer, &account, "10.00", 4, "R-1").await;
    topup(&server, &developer, &account, "20.00", 4, "R-2").await;
    server.stop();

    // Each statement could be read two ways; neither may be picked silently.
    let statement = server.data_dir.with_file_name("statement.csv");
    let cases = [
        (
            "amount twice",
            "refer_trans_id,amount,amount\nR-1,10.00,99.00\nR-2,20.00,99.00\n",
            "amount",
        ),
        (
            "reference in two cases",
            "refer_trans_id,amount,REFER_TRANS_ID\nR-1,10.00,R-2\n",
            "refer_trans_id",
        ),
        (
            "padded name",
            "refer_trans_id,amount,Currency, currency \nR-1,10.00,SGD,USD\n",
            "currency",
        ),
    ];
    for (case, rows, column) in cases {
        std::fs::write(&statement, rows).unwrap();
        let args = ["--statement", statement.to_str().unwrap(), "--pay-method", "4"];
        let run = cli_on("reconcile", &server.data_dir, &args);
        assert_eq!(run.code, EXIT_ERROR, "{case}: exit code; stdout:\n{}", run.stdout);
        assert!(run.stderr.contains("more than once"), "{case}: message: {}", run.stderr);
        assert!(run.stderr.contains(column), "{case}: names {column}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{case}: no report: {}", run.stdout);
    }
}
