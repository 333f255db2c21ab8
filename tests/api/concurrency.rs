//! Postings sent at the same time: no lost update, the prepaid guard holds
//! exactly, and one reference or `Idempotency-Key` posts once, including
//! when identical requests meet in one writer batch. The service stays ready
//! while postings flow.

use futures_util::future::join_all;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::balances::{
    all_transactions, balance_amount, balances_path, developer_with_account, top_up,
    transactions_path,
};
use crate::support::{Auth, Reply, Server};

fn decimal(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|_| panic!("{text:?} is a decimal"))
}

fn count_status(replies: &[Reply], status: u16) -> usize {
    replies.iter().filter(|reply| reply.status == status).count()
}

/// Sends the same JSON body `copies` times at once.
async fn post_copies(
    server: &Server,
    auth: &Auth,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
    copies: usize,
) -> Vec<Reply> {
    let bytes = serde_json::to_vec(body).expect("JSON body");
    let requests = (0..copies).map(|_| {
        let bytes = Some(bytes.clone());
        server.send(Method::POST, path, auth, Some("application/json"), bytes, headers)
    });
    join_all(requests).await
}

#[tokio::test]
async fn parallel_postings_keep_every_update() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "parallel01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    const CLIENTS: usize = 16;
    const POSTINGS_PER_CLIENT: usize = 25;

    // Each client posts its own sequence; all clients run at once.
    let client = |number: usize| {
        let auth = auth.clone();
        let path = path.clone();
        let server = &server;
        async move {
            let mut replies = Vec::new();
            for index in 0..POSTINGS_PER_CLIENT {
                let amount = format!("{}.{:04}", number + 1, index * 13 + 1);
                let body = json!({"amount": amount, "type": "TOPUP", "pay_method": 4});
                replies.push((amount, server.post_json(&path, &auth, &body).await));
            }
            replies
        }
    };
    let results: Vec<(String, Reply)> =
        join_all((0..CLIENTS).map(client)).await.into_iter().flatten().collect();

    let mut acknowledged = Decimal::ZERO;
    for (amount, reply) in &results {
        reply.expect(201);
        acknowledged += decimal(amount);
    }
    assert_eq!(results.len(), CLIENTS * POSTINGS_PER_CLIENT, "every posting answered");
    let final_balance = decimal(&balance_amount(&server, &auth, &account).await);
    assert_eq!(final_balance, acknowledged, "final balance is the sum of acknowledged postings");

    // The history is one chain: each balance_after is the one before plus
    // the amount, whatever order the writer took the postings in.
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), results.len(), "one transaction per acknowledged posting");
    let mut running = Decimal::ZERO;
    for (index, item) in listed.iter().enumerate() {
        running += decimal(item["amount"].as_str().expect("amount"));
        let after = decimal(item["balance_amount"].as_str().expect("balance_amount"));
        assert_eq!(after, running, "balance_after chained at {index}");
    }
    let mut acknowledged_after: Vec<Decimal> = results
        .iter()
        .map(|(_, reply)| decimal(reply.json["balance_amount"].as_str().expect("balance")))
        .collect();
    acknowledged_after.sort();
    acknowledged_after.dedup();
    assert_eq!(acknowledged_after.len(), results.len(), "no two postings saw the same balance");
}

#[tokio::test]
async fn prepaid_guard_under_contention() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "contend01").await;
    let auth = developer.auth();
    top_up(&server, &auth, &account, "100").await;

    let charge = json!({"amount": "-5", "type": "ADJUSTMENT", "pay_method": 6});
    let replies = post_copies(&server, &auth, &balances_path(&account), &charge, &[], 40).await;
    for reply in &replies {
        assert!(
            reply.status == 201 || reply.status == 422,
            "status {} for a charge: {}",
            reply.status,
            reply.text
        );
    }
    assert_eq!(count_status(&replies, 201), 20, "charges accepted");
    assert_eq!(count_status(&replies, 422), 20, "charges rejected");
    assert_eq!(balance_amount(&server, &auth, &account).await, "0.00", "final balance");
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 21, "the TOPUP and the accepted charges");
}

#[tokio::test]
async fn same_reference_posts_once() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "sameref01").await;
    let auth = developer.auth();
    let body = json!({
        "amount": "12.5", "type": "TOPUP", "pay_method": 2, "refer_trans_id": "yeepay-42"
    });
    let replies = post_copies(&server, &auth, &balances_path(&account), &body, &[], 20).await;

    assert_eq!(count_status(&replies, 201), 1, "one posting created");
    assert_eq!(count_status(&replies, 200), 19, "the others replayed");
    let created = replies.iter().find(|reply| reply.status == 201).expect("a 201");
    for reply in replies.iter().filter(|reply| reply.status == 200) {
        assert_eq!(reply.json["sid"], created.json["sid"], "replay names the same sid");
        let header = reply.header("idempotent-replayed");
        assert_eq!(header.as_deref(), Some("true"), "replay header");
    }
    assert_eq!(balance_amount(&server, &auth, &account).await, "12.50", "posted once");

    // The reference is still taken after a restart.
    let server = server.restart();
    let again = server.post_json(&balances_path(&account), &auth, &body).await;
    again.expect(200);
    assert_eq!(again.json["sid"], created.json["sid"], "replay after restart");
    assert_eq!(balance_amount(&server, &auth, &account).await, "12.50", "still posted once");
}

#[tokio::test]
async fn same_idempotency_key_posts_once() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "samekey01").await;
    let auth = developer.auth();
    let body = json!({"amount": "3", "type": "TOPUP", "pay_method": 10});
    let headers = [("idempotency-key", "topup-batch-1")];
    let replies = post_copies(&server, &auth, &balances_path(&account), &body, &headers, 20).await;

    assert_eq!(count_status(&replies, 201), 1, "one posting created");
    assert_eq!(count_status(&replies, 200), 19, "the others replayed");
    let created = replies.iter().find(|reply| reply.status == 201).expect("a 201");
    for reply in replies.iter().filter(|reply| reply.status == 200) {
        assert_eq!(reply.json["sid"], created.json["sid"], "replay names the same sid");
    }
    assert_eq!(balance_amount(&server, &auth, &account).await, "3.00", "posted once");
}

#[tokio::test]
async fn mixed_references_across_accounts() {
    let server = Server::start().await;
    let (developer, first) = developer_with_account(&server, "mixed01").await;
    let auth = developer.auth();
    let second = server.account(&developer, "mixed02").await;
    let second = second["sid"].as_str().expect("sid").to_string();

    // Ten references, each sent three times to each sub-account at once:
    // the first posting of a reference wins, the other sub-account gets 409.
    let mut requests = Vec::new();
    for reference in 0..10 {
        for account in [&first, &second] {
            for _ in 0..3 {
                let body = json!({
                    "amount": "1", "type": "TOPUP", "pay_method": 8,
                    "refer_trans_id": format!("union-{reference}")
                });
                requests.push((balances_path(account), body));
            }
        }
    }
    let replies =
        join_all(requests.iter().map(|(path, body)| server.post_json(path, &auth, body))).await;

    assert_eq!(count_status(&replies, 201), 10, "one posting per reference");
    assert_eq!(count_status(&replies, 200), 20, "copies on the winning account replayed");
    assert_eq!(count_status(&replies, 409), 30, "requests on the other account conflict");
    for reply in replies.iter().filter(|reply| reply.status == 409) {
        assert_eq!(reply.error_fields(), ["account_sid"], "conflict names the account");
    }
    let first_balance = decimal(&balance_amount(&server, &auth, &first).await);
    let second_balance = decimal(&balance_amount(&server, &auth, &second).await);
    assert_eq!(first_balance + second_balance, Decimal::from(10), "ten postings in all");
}

#[tokio::test]
async fn ready_during_postings() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "ready01").await;
    let auth = developer.auth();
    const CLIENTS: usize = 8;
    const POSTINGS_PER_CLIENT: usize = 40;

    // Readiness is polled while the clients post, so that polls land
    // between a batch's sync and the publication of its state.
    let posting = async {
        let clients = (0..CLIENTS).map(|_| async {
            for _ in 0..POSTINGS_PER_CLIENT {
                top_up(&server, &auth, &account, "1.00").await;
            }
        });
        join_all(clients).await;
    };
    let polling = async {
        let mut statuses = Vec::new();
        for _ in 0..(CLIENTS * POSTINGS_PER_CLIENT) {
            statuses.push(server.get("/readyz", &Auth::None).await.status);
        }
        statuses
    };
    let ((), statuses) = tokio::join!(posting, polling);

    let not_ready = statuses.iter().filter(|status| **status != 200).count();
    assert_eq!(not_ready, 0, "readiness polls that were not 200 out of {}", statuses.len());
    let expected = format!("{}.00", CLIENTS * POSTINGS_PER_CLIENT);
    assert_eq!(balance_amount(&server, &auth, &account).await, expected, "every posting landed");
}
