//! Restart and crash: a graceful restart (SIGTERM, exit 0) rebuilds exactly
//! the same state, every sub-account acknowledged with 201 survives a
//! SIGKILL, and no log line ever shows a key or a password.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::{Auth, Developer, Server};

const PASSWORD: &str = "secret123";

/// Finds the newest "projections rebuilt" log line.
fn rebuilt_line(server: &Server) -> String {
    let logs = server.logs();
    let line = logs.iter().rev().find(|line| line.contains("projections rebuilt"));
    line.unwrap_or_else(|| panic!("no \"projections rebuilt\" line in {logs:?}")).clone()
}

/// Collects every response a client could read about the developer's
/// sub-accounts, keyed by request path.
async fn observe(server: &Server, developer: &Developer) -> BTreeMap<String, Value> {
    let auth = developer.auth();
    let mut seen = BTreeMap::new();
    let lists = ["/v1/accounts", "/v1/accounts?status=closed", "/v1/accounts?page_size=1&page=1"];
    for path in lists {
        let reply = server.get(path, &auth).await;
        reply.expect(200);
        seen.insert(path.to_string(), reply.json);
    }
    let all = server.get("/v1/accounts?status=closed", &auth).await.json["accounts"].clone();
    let open = seen["/v1/accounts"]["accounts"].clone();
    let accounts = all.as_array().into_iter().chain(open.as_array()).flatten();
    let sids: Vec<String> =
        accounts.map(|account| account["sid"].as_str().expect("sid").to_string()).collect();
    for sid in sids {
        for path in [
            format!("/v1/accounts/{sid}"),
            format!("/v1/accounts/{sid}/SIP"),
            format!("/v1/accounts/{sid}/balances"),
        ] {
            let reply = server.get(&path, &auth).await;
            reply.expect(200);
            seen.insert(path, reply.json);
        }
    }
    let developer_path = format!("/v1/developers/{}", developer.sid);
    seen.insert(developer_path.clone(), server.get(&developer_path, &Auth::Platform).await.json);
    let ready = server.get("/readyz", &Auth::None).await;
    seen.insert("/readyz last_seq".to_string(), ready.json["last_seq"].clone());
    seen
}

#[tokio::test]
async fn restart_keeps_everything() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let auth = developer.auth();
    let kept = server.account(&developer, "kept01").await;
    let kept_sid = kept["sid"].as_str().expect("sid").to_string();
    let closed = server.account(&developer, "closed01").await;
    let closed_sid = closed["sid"].as_str().expect("sid").to_string();
    server.account(&developer, "plain01").await;
    let profile = json!({"first_name": "Zoë", "email": "zoe@example.com", "status": "suspended"});
    server.put_json(&format!("/v1/accounts/{kept_sid}"), &auth, &profile).await.expect(200);
    let close = json!({"status": "closed"});
    server.put_json(&format!("/v1/accounts/{closed_sid}"), &auth, &close).await.expect(200);
    let before = observe(&server, &developer).await;

    // `restart` stops with SIGTERM and asserts exit status 0.
    let server = server.restart();
    let first_hash = server.start_state_hash().await;
    let after_first = observe(&server, &developer).await;
    let server = server.restart();
    let second_hash = server.start_state_hash().await;
    let after_second = observe(&server, &developer).await;

    assert_eq!(after_first, before, "responses after a restart");
    assert_eq!(after_second, before, "responses after a second restart");
    assert_eq!(first_hash, second_hash, "state hash at each start");
    let events = 1 + 3 * 3 + 2 + 1;
    assert_eq!(before["/readyz last_seq"], json!(events), "developer, 3 creates, 2 PUTs");
    let relogin = server.get("/v1/accounts", &auth).await;
    relogin.expect(200);
    let reused = server
        .post_json("/v1/accounts", &auth, &json!({"login_id": "KEPT01", "password": PASSWORD}))
        .await;
    reused.expect_error(409);
    assert_no_secrets_logged(&server, &[&developer.key], &[PASSWORD]);
}

#[tokio::test]
async fn restart_from_snapshot() {
    let server = Server::start_with(&["--snapshot-interval", "4"]).await;
    let developer = server.developer("Acme").await;
    for login_id in ["snap01", "snap02", "snap03"] {
        server.account(&developer, login_id).await;
    }
    let before = observe(&server, &developer).await;
    // Snapshots are written by a background thread after the batch.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = server.restart();
    let hash = server.start_state_hash().await;
    let after = observe(&server, &developer).await;
    let server = server.restart();

    assert_eq!(after, before, "responses after a start from a snapshot");
    assert_eq!(server.start_state_hash().await, hash, "state hash at each start");
    let line = rebuilt_line(&server);
    assert!(line.contains("snapshot_seq="), "the start used a snapshot: {line}");
}

/// Creates `login_id` without borrowing the server, so that the test can
/// kill the server meanwhile. Returns the created body on 201, and `None`
/// on any other status or a failed connection.
async fn create_detached(
    client: reqwest::Client,
    url: String,
    token: String,
    login_id: String,
) -> Option<Value> {
    let body = json!({"login_id": login_id, "password": PASSWORD});
    let response = client.post(url).header("authorization", token).json(&body).send().await.ok()?;
    if response.status().as_u16() != 201 {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test]
async fn crash_keeps_acknowledged() {
    const CREATES: usize = 24;
    const ACKNOWLEDGED_BEFORE_KILL: usize = 8;
    let mut server = Server::start().await;
    let developer = server.developer("Acme").await;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", developer.sid, developer.key));
    let (sender, mut receiver) = mpsc::unbounded_channel();
    for index in 0..CREATES {
        let client = server.client.clone();
        let url = server.url("/v1/accounts");
        let token = format!("Basic {token}");
        let sender = sender.clone();
        tokio::spawn(async move {
            let created = create_detached(client, url, token, format!("crash{index:02}")).await;
            let _ = sender.send(created);
        });
    }
    drop(sender);

    // Kill as soon as some creates are acknowledged, with others in flight.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < ACKNOWLEDGED_BEFORE_KILL {
        match receiver.recv().await {
            Some(Some(created)) => acknowledged.push(created),
            Some(None) => {}
            None => break,
        }
    }
    server.kill();
    while let Ok(outcome) = receiver.try_recv() {
        acknowledged.extend(outcome);
    }
    assert!(acknowledged.len() >= ACKNOWLEDGED_BEFORE_KILL, "creates were acknowledged");

    let server = server.crash_and_restart();
    for created in &acknowledged {
        let sid = created["sid"].as_str().expect("sid");
        let fetched = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
        assert_eq!(fetched.status, 200, "acknowledged {sid} survives; body {}", fetched.text);
        assert_eq!(&fetched.json, created, "acknowledged {sid} is unchanged");
    }
    // Every sub-account that landed, acknowledged or not, landed whole:
    // with its default SIP account and alias.
    let listed = server.get("/v1/accounts?page_size=100", &developer.auth()).await;
    let accounts = listed.json["accounts"].as_array().expect("accounts").clone();
    assert!(accounts.len() >= acknowledged.len(), "at least the acknowledged ones are listed");
    for account in &accounts {
        let sid = account["sid"].as_str().expect("sid");
        let sip = server.get(&format!("/v1/accounts/{sid}/SIP"), &developer.auth()).await;
        let sip_accounts = sip.json["sip_accounts"].as_array().expect("sip_accounts");
        assert_eq!(sip_accounts.len(), 1, "{sid}: default SIP account");
        assert_eq!(sip_accounts[0]["sip_id"], account["login_id"], "{sid}: sip_id");
        let aliases = sip_accounts[0]["sip_aliases"].as_array().map(Vec::len);
        assert_eq!(aliases, Some(1), "{sid}: default alias");
    }
    let ready = server.get("/readyz", &Auth::None).await;
    ready.expect(200);
    let again = server
        .post_json(
            "/v1/accounts",
            &developer.auth(),
            &json!({"login_id": "after01", "password": PASSWORD}),
        )
        .await;
    again.expect(201);
    assert_no_secrets_logged(&server, &[&developer.key], &[PASSWORD]);
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let mut server = Server::start().await;
    let developer = server.developer("Acme").await;
    server.account(&developer, "term01").await;

    // `stop` sends SIGTERM and asserts exit status 0.
    server.stop();

    let logs = server.logs().join("\n");
    assert!(logs.contains("ledger writer stopped"), "the writer stopped in order: {logs}");
    assert!(logs.contains("subledger::server: stopped"), "the server logged its stop: {logs}");
}

/// Asserts that the server's logs show neither the platform key, nor any of
/// `keys`, nor any of `passwords`.
#[track_caller]
fn assert_no_secrets_logged(server: &Server, keys: &[&str], passwords: &[&str]) {
    let logs = server.logs().join("\n");
    assert!(!logs.contains(&server.platform_key), "the platform key is logged");
    assert!(!logs.contains(&server.aes_key.to_base64()), "the AES key is logged");
    for key in keys {
        assert!(!logs.contains(key), "an API key is logged");
    }
    for password in passwords {
        assert!(!logs.contains(password), "a password is logged");
    }
    assert!(!logs.contains("argon2"), "a password hash is logged");
}

#[tokio::test]
async fn second_server_same_data_dir() {
    let server = Server::start().await;
    server.developer("Acme").await;

    // Without key variables, a server that started would generate key
    // files into the data directory.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_subledger"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("SUBLEDGER_PLATFORM_KEY")
        .env_remove("SUBLEDGER_AES_KEY")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a second server");
    let exit = wait_for_exit(second, Duration::from_secs(30));

    assert!(!exit.status.success(), "the second server fails: {}", exit.stderr);
    assert!(
        exit.stderr.contains("in use by another process"),
        "says the log is in use: {}",
        exit.stderr
    );
    assert!(!exit.stderr.contains("damaged"), "does not call the log damaged: {}", exit.stderr);
    assert!(!server.data_dir.join("platform.key").exists(), "no platform key file written");
    assert!(!server.data_dir.join("aes.key").exists(), "no AES key file written");
    server.get("/readyz", &Auth::None).await.expect(200);
}

#[tokio::test]
async fn blank_platform_key_rejected() {
    let directory = tempfile::tempdir().expect("create a temporary directory");
    let exit = failed_start(&directory.path().join("data"), "127.0.0.1:0", &" ".repeat(20));

    assert!(!exit.status.success(), "a blank platform key stops the start: {}", exit.stderr);
    assert!(exit.stderr.contains("must be at least 16 characters"), "says why: {}", exit.stderr);
    assert!(exit.stderr.contains("SUBLEDGER_PLATFORM_KEY"), "names the variable: {}", exit.stderr);
    assert!(!directory.path().join("data").exists(), "nothing is written to the data directory");
}

#[tokio::test]
async fn port_in_use_fails_first() {
    let occupant = std::net::TcpListener::bind("127.0.0.1:0").expect("take a port");
    let address = occupant.local_addr().expect("the taken address").to_string();
    let directory = tempfile::tempdir().expect("create a temporary directory");
    let valid_key = "a-platform-key-of-valid-length";
    let exit = failed_start(&directory.path().join("data"), &address, valid_key);

    assert!(!exit.status.success(), "a port in use stops the start: {}", exit.stderr);
    assert!(exit.stderr.contains(&address), "names the address: {}", exit.stderr);
    assert!(exit.stderr.contains("--listen"), "names the option: {}", exit.stderr);
    assert!(!directory.path().join("data").exists(), "no data directory is made");
}

/// Runs `subledger serve` on `data_dir` and `listen` with `platform_key`
/// and no AES key in its environment, for a start that is expected to
/// fail, and returns how it exited.
fn failed_start(data_dir: &std::path::Path, listen: &str, platform_key: &str) -> Exited {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_subledger"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen])
        .env("SUBLEDGER_PLATFORM_KEY", platform_key)
        .env_remove("SUBLEDGER_AES_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a server");
    wait_for_exit(child, Duration::from_secs(30))
}

/// A finished process's status and standard error.
struct Exited {
    status: std::process::ExitStatus,
    stderr: String,
}

/// Waits for `child` to exit, killing it and failing after `timeout`.
fn wait_for_exit(mut child: std::process::Child, timeout: Duration) -> Exited {
    let deadline = std::time::Instant::now() + timeout;
    while child.try_wait().expect("poll the child").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect the child's output");
            let stderr = String::from_utf8_lossy(&output.stderr);
            panic!("the process still runs after {timeout:?}: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("collect the child's output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Exited { status: output.status, stderr }
}

#[tokio::test]
async fn recorded_time_never_goes_back() {
    use subledger::domain::events::{Actor, DeveloperCreated, Event, EventMeta};
    use subledger::domain::ids::{Sid, SidKind};
    use subledger::store::{EventStore, PendingEvent};

    let mut server = Server::start().await;
    server.developer("Acme").await;
    server.stop();

    // An event recorded while the clock was two days ahead, as if it was
    // set back before this start.
    let ahead = chrono::Utc::now() + chrono::Duration::days(2);
    let store = subledger::server::open_store(&server.data_dir).expect("open the stopped log");
    let sid = Sid::generate(SidKind::Developer);
    let event = Event::DeveloperCreated(DeveloperCreated {
        sid,
        name: "Ahead".into(),
        api_key_sha256: "00".repeat(32),
    });
    let meta = EventMeta {
        recorded_at: ahead,
        actor: Actor::Platform,
        request_id: "clock-ahead".into(),
        idempotency: None,
    };
    let seq = store.head().seq + 1;
    let pending = PendingEvent { seq, stream: sid, version: 1, meta, event };
    store.append(&[pending]).expect("append the event");
    drop(store);

    let server = server.restart();
    let later = server.developer("Later").await;
    let path = format!("/v1/developers/{}", later.sid);
    let reply = server.get(&path, &Auth::Platform).await;
    reply.expect(200);
    let created = reply.json["date_created"].as_str().expect("date_created");
    let created = chrono::DateTime::parse_from_rfc2822(created).expect("RFC 2822 date_created");
    let ahead_seconds = ahead.timestamp();
    assert!(
        created.timestamp() >= ahead_seconds,
        "recorded at {created}, before the newest event at {ahead}"
    );
}
