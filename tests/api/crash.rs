//! Crash cycles. Concurrent clients post TOPUPs with unique references
//! while the server is killed with SIGKILL at a random moment and started
//! again on the same data, `SUBLEDGER_CRASH_CYCLES` times (30 by default).
//! Snapshots are taken every 50 events, so kills also land during snapshot
//! writes and starts also load snapshots. Every third restart first
//! removes the snapshots, so that the start replays the whole log.
//!
//! After every cycle, each posting acknowledged with 2xx is present with
//! its `balance_after`, and a posting whose request got no response is
//! retried with its reference. At the end, every reference still replays
//! its original posting, each sub-account's balance is the sum of its
//! postings, and `subledger verify` passes on the stopped data directory.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::future::join_all;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::support::{Developer, Server};

/// Crash cycles when `SUBLEDGER_CRASH_CYCLES` is not set. The test took
/// 13 s with 30 cycles on a 2-core machine.
const CYCLES_DEFAULT: usize = 30;
const CLIENTS: usize = 6;
const ACCOUNTS: usize = 3;
/// Postings one client sends in one cycle at most, which bounds the test.
const POSTINGS_PER_CLIENT_MAX: usize = 30;
/// The kill lands at a random moment this long after the clients start.
const KILL_AFTER_MILLIS: std::ops::Range<u64> = 20..400;
/// Amounts drawn for the TOPUPs, with up to four fraction digits.
const AMOUNTS: [&str; 4] = ["0.01", "1.25", "10.00", "3.3333"];
/// Requests in flight at once while re-posting every reference.
const REPLAY_CONCURRENCY: usize = 8;

/// A TOPUP as sent.
#[derive(Debug, Clone)]
struct Sent {
    account: String,
    reference: String,
    amount: String,
}

/// A TOPUP the server acknowledged, with what its response showed.
#[derive(Debug, Clone)]
struct Acknowledged {
    sent: Sent,
    sid: String,
    balance_after: String,
}

/// What one client saw in one cycle.
#[derive(Debug, Default)]
struct ClientLog {
    acknowledged: Vec<Acknowledged>,
    /// Sent, but the connection failed before a response arrived.
    in_doubt: Vec<Sent>,
    /// Responses other than 201, as status and body.
    unexpected: Vec<(u16, String)>,
}

/// How a client reaches the server: its own connection pool, so that it
/// can keep running while the test replaces the `Server`.
#[derive(Clone)]
struct Endpoint {
    client: reqwest::Client,
    base_url: String,
    authorization: String,
}

impl Endpoint {
    fn new(server: &Server, developer: &Developer) -> Endpoint {
        let credentials = format!("{}:{}", developer.sid, developer.key);
        let token = base64::engine::general_purpose::STANDARD.encode(credentials);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the HTTP client");
        Endpoint { client, base_url: server.url(""), authorization: format!("Basic {token}") }
    }

    /// Posts a TOPUP; `Err` when no response arrived.
    async fn post(&self, sent: &Sent) -> Result<(u16, Value, Option<String>), reqwest::Error> {
        let url = format!("{}/v1/accounts/{}/balances", self.base_url, sent.account);
        let form = [
            ("amount", sent.amount.as_str()),
            ("type", "TOPUP"),
            ("pay_method", "4"),
            ("refer_trans_id", sent.reference.as_str()),
        ];
        let response = self
            .client
            .post(url)
            .header("authorization", &self.authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::support::form(&form))
            .send()
            .await?;
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body: Value = response.json().await?;
        Ok((status, body, replayed))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base_url))
            .header("authorization", &self.authorization)
            .send()
            .await
            .expect("the restarted server responds");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }
}

fn acknowledged(sent: Sent, body: &Value) -> Acknowledged {
    let sid = body["sid"].as_str().expect("a posting has a sid").to_string();
    let balance_after = body["balance_amount"].as_str().expect("balance_amount").to_string();
    Acknowledged { sent, sid, balance_after }
}

/// Posts TOPUPs until a request gets no response, `stop` is set, or the
/// per-cycle maximum is reached.
async fn run_client(
    endpoint: Endpoint,
    accounts: Arc<Vec<String>>,
    cycle: usize,
    client: usize,
    stop: Arc<AtomicBool>,
) -> ClientLog {
    let mut log = ClientLog::default();
    for index in 0..POSTINGS_PER_CLIENT_MAX {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let sent = Sent {
            account: accounts[(client + index) % accounts.len()].clone(),
            reference: format!("crash-{cycle}-{client}-{index}"),
            amount: AMOUNTS[(cycle + client + index) % AMOUNTS.len()].to_string(),
        };
        match endpoint.post(&sent).await {
            Ok((201, body, _)) => log.acknowledged.push(acknowledged(sent, &body)),
            Ok((status, body, _)) => log.unexpected.push((status, body.to_string())),
            Err(_) => {
                log.in_doubt.push(sent);
                break;
            }
        }
    }
    log
}

/// Re-posts a TOPUP whose first request got no response: 201 if it had
/// not landed, 200 with the original if it had.
async fn settle(endpoint: &Endpoint, sent: Sent) -> Acknowledged {
    let (status, body, replayed) =
        endpoint.post(&sent).await.expect("the restarted server responds");
    assert!(
        status == 201 || (status == 200 && replayed.as_deref() == Some("true")),
        "retry of {} after a crash: status {status}, body {body}",
        sent.reference
    );
    acknowledged(sent, &body)
}

/// Checks that acknowledged postings are present with their balance after.
async fn check_present(endpoint: &Endpoint, postings: &[Acknowledged]) {
    for posting in postings {
        let path =
            format!("/v1/accounts/{}/balances/transactions/{}", posting.sent.account, posting.sid);
        let (status, body) = endpoint.get(&path).await;
        assert_eq!(status, 200, "acknowledged {} is present; body {body}", posting.sid);
        assert_eq!(
            body["balance_amount"], posting.balance_after,
            "balance after {} is the acknowledged one",
            posting.sid
        );
        let amount = body["amount"].as_str().expect("amount");
        assert_eq!(
            Decimal::from_str(amount).expect("amount parses"),
            Decimal::from_str(&posting.sent.amount).expect("sent amount parses"),
            "amount of {}",
            posting.sid
        );
    }
}

/// Re-posts every acknowledged reference: each must replay its posting.
async fn check_references_replay(endpoint: &Endpoint, postings: &[Acknowledged]) {
    for chunk in postings.chunks(REPLAY_CONCURRENCY) {
        let replies = join_all(chunk.iter().map(|posting| endpoint.post(&posting.sent))).await;
        for (posting, reply) in chunk.iter().zip(replies) {
            let (status, body, replayed) = reply.expect("the server responds");
            let reference = &posting.sent.reference;
            assert_eq!(status, 200, "re-post of {reference} replays; body {body}");
            assert_eq!(replayed.as_deref(), Some("true"), "re-post of {reference} is marked");
            assert_eq!(body["sid"], posting.sid, "re-post of {reference} returns its posting");
        }
    }
}

/// Lists every posting of a sub-account in order, through every page.
async fn list_postings(endpoint: &Endpoint, account: &str) -> Vec<Value> {
    let mut postings = Vec::new();
    let mut page = 0;
    loop {
        let path =
            format!("/v1/accounts/{account}/balances/transactions?page={page}&page_size=1000");
        let (status, body) = endpoint.get(&path).await;
        assert_eq!(status, 200, "transaction list; body {body}");
        postings.extend(body["transactions"].as_array().expect("transactions").iter().cloned());
        if body["next_page_uri"].is_null() {
            return postings;
        }
        page += 1;
    }
}

/// Checks one sub-account: its postings are the acknowledged ones, each
/// balance after is the running sum, and the balance is the total.
async fn check_account(endpoint: &Endpoint, account: &str, acknowledged: &[Acknowledged]) {
    let listed = list_postings(endpoint, account).await;
    let listed_sids: HashSet<&str> =
        listed.iter().map(|posting| posting["sid"].as_str().expect("sid")).collect();
    let expected: Vec<&Acknowledged> =
        acknowledged.iter().filter(|posting| posting.sent.account == account).collect();
    for posting in &expected {
        assert!(listed_sids.contains(posting.sid.as_str()), "{} is listed", posting.sid);
    }
    assert_eq!(listed.len(), expected.len(), "{account} has no posting nobody acknowledged");

    let mut running = Decimal::ZERO;
    for posting in &listed {
        running += Decimal::from_str(posting["amount"].as_str().expect("amount")).expect("amount");
        let after = posting["balance_amount"].as_str().expect("balance_amount");
        assert_eq!(Decimal::from_str(after).expect("balance"), running, "running balance");
    }
    let (status, balance) = endpoint.get(&format!("/v1/accounts/{account}/balances")).await;
    assert_eq!(status, 200, "balance; body {balance}");
    let total = Decimal::from_str(balance["balance_amount"].as_str().expect("balance_amount"))
        .expect("balance parses");
    assert_eq!(total, running, "balance of {account} is the sum of its postings");
}

fn crash_cycles() -> usize {
    match std::env::var("SUBLEDGER_CRASH_CYCLES") {
        Ok(text) => text.parse().expect("SUBLEDGER_CRASH_CYCLES is a whole number"),
        Err(_) => CYCLES_DEFAULT,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_postings_survive_kills() {
    let mut server = Server::start_with(&["--snapshot-interval", "50"]).await;
    let developer = server.developer("Crash cycles").await;
    let mut accounts = Vec::new();
    for index in 0..ACCOUNTS {
        let account = server.account(&developer, &format!("crash{index:02}")).await;
        accounts.push(account["sid"].as_str().expect("sid").to_string());
    }
    let accounts = Arc::new(accounts);

    let mut all: Vec<Acknowledged> = Vec::new();
    let mut settled_count = 0;
    for cycle in 0..crash_cycles() {
        // Clients post until the kill cuts them off.
        let endpoint = Endpoint::new(&server, &developer);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let run =
                    run_client(endpoint.clone(), accounts.clone(), cycle, client, stop.clone());
                tokio::spawn(run)
            })
            .collect();
        let delay = KILL_AFTER_MILLIS.start
            + rand::random::<u64>() % (KILL_AFTER_MILLIS.end - KILL_AFTER_MILLIS.start);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server = tokio::task::block_in_place(|| {
            if cycle % 3 == 2 {
                server.crash_and_restart_without_snapshots()
            } else {
                server.crash_and_restart()
            }
        });
        stop.store(true, Ordering::Release);

        let mut cycle_postings = Vec::new();
        let mut in_doubt = Vec::new();
        for client in join_all(clients).await {
            let log = client.expect("a client task does not panic");
            assert!(log.unexpected.is_empty(), "cycle {cycle}: unexpected {:?}", log.unexpected);
            cycle_postings.extend(log.acknowledged);
            in_doubt.extend(log.in_doubt);
        }

        // After the restart: retry what got no response, then check.
        let endpoint = Endpoint::new(&server, &developer);
        settled_count += in_doubt.len();
        for sent in in_doubt {
            cycle_postings.push(settle(&endpoint, sent).await);
        }
        check_present(&endpoint, &cycle_postings).await;
        all.extend(cycle_postings);
    }
    assert!(all.len() > crash_cycles(), "postings were acknowledged: {}", all.len());

    let endpoint = Endpoint::new(&server, &developer);
    let references: HashSet<&str> = all.iter().map(|p| p.sent.reference.as_str()).collect();
    assert_eq!(references.len(), all.len(), "each reference was acknowledged once");
    check_references_replay(&endpoint, &all).await;
    for account in accounts.iter() {
        check_account(&endpoint, account, &all).await;
    }
    let per_account: HashMap<&str, usize> =
        all.iter().fold(HashMap::new(), |mut counts, posting| {
            *counts.entry(posting.sent.account.as_str()).or_default() += 1;
            counts
        });
    assert_eq!(per_account.len(), ACCOUNTS, "every sub-account got postings");

    // The stopped data directory passes the offline audit.
    server.stop();
    let output = Command::new(env!("CARGO_BIN_EXE_subledger"))
        .arg("verify")
        .arg("--data-dir")
        .arg(server.data_path())
        .output()
        .expect("run subledger verify");
    assert!(
        output.status.success(),
        "verify after {} postings ({settled_count} retried after a crash): {}\n{}",
        all.len(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
