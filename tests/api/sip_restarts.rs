//! SIP accounts and aliases deleted and created again across snapshot
//! starts and full replays, which keep the SIP views as sorted runs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Auth, Developer, Server};

const PASSWORD: &str = "Voice2Pass";

async fn create_sip(
    server: &Server,
    developer: &Developer,
    account: &str,
    sip_id: &str,
) -> (u16, Value) {
    let body = json!({"sip_id": sip_id, "password": server.encrypt(PASSWORD)});
    let reply =
        server.post_json(&format!("/v1/accounts/{account}/SIP"), &developer.auth(), &body).await;
    (reply.status, reply.json.clone())
}

async fn add_alias(
    server: &Server,
    developer: &Developer,
    account: &str,
    sip: &str,
    alias: &str,
) -> (u16, Value) {
    let path = format!("/v1/accounts/{account}/SIP/{sip}/aliases");
    let reply = server.post_json(&path, &developer.auth(), &json!({"alias": alias})).await;
    (reply.status, reply.json.clone())
}

async fn delete_sip(server: &Server, developer: &Developer, account: &str, sip: &str) -> u16 {
    server.delete(&format!("/v1/accounts/{account}/SIP/{sip}"), &developer.auth()).await.status
}

/// Lists the SIP ids and alias names of a sub-account, in list order.
async fn names(server: &Server, developer: &Developer, account: &str) -> Vec<String> {
    let list =
        server.get(&format!("/v1/accounts/{account}/SIP?page_size=100"), &developer.auth()).await;
    list.expect(200);
    let mut names = Vec::new();
    for sip in list.json["sip_accounts"].as_array().expect("list") {
        let sid = sip["sid"].as_str().unwrap();
        names.push(format!("{}={}", sip["sip_id"].as_str().unwrap(), sid));
        let path = format!("/v1/accounts/{account}/SIP/{sid}/aliases?page_size=100");
        let aliases = server.get(&path, &developer.auth()).await;
        aliases.expect(200);
        for alias in aliases.json["sip_aliases"].as_array().expect("aliases") {
            names.push(format!("  {}", alias["sip_alias"].as_str().unwrap()));
        }
    }
    names
}

/// Deletes the SIP account `phone01` if it exists, after checking that
/// its id and alias are taken for another sub-account, and creates it
/// again with the alias `ph-one`. Returns the new SIP account's sid.
async fn recreate_phone(
    server: &Server,
    developer: &Developer,
    account: &str,
    other: &str,
    round: usize,
) -> String {
    let list =
        server.get(&format!("/v1/accounts/{account}/SIP?page_size=100"), &developer.auth()).await;
    let current = list.json["sip_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|sip| sip["sip_id"] == "phone01")
        .map(|sip| sip["sid"].as_str().unwrap().to_string());
    if let Some(sid) = current {
        // While it exists, its id and alias are taken for another sub-account.
        assert_eq!(
            create_sip(server, developer, other, "phone01").await.0,
            409,
            "round {round}: taken id"
        );
        assert_eq!(
            create_sip(server, developer, other, "ph-one").await.0,
            409,
            "round {round}: taken alias"
        );
        assert_eq!(
            delete_sip(server, developer, account, &sid).await,
            204,
            "round {round}: delete"
        );
        let path = format!("/v1/accounts/{account}/SIP/{sid}");
        assert_eq!(server.get(&path, &developer.auth()).await.status, 404, "round {round}: gone");
    }
    let (status, created) = create_sip(server, developer, account, "phone01").await;
    assert_eq!(status, 201, "round {round}: recreate {created}");
    let sid = created["sid"].as_str().unwrap().to_string();
    let (status, alias) = add_alias(server, developer, account, &sid, "ph-one").await;
    assert_eq!(status, 201, "round {round}: alias again {alias}");
    sid
}

#[tokio::test]
async fn recreated_sip_across_starts() {
    let server = Server::start_with(&["--snapshot-interval", "1"]).await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "phones01").await["sid"].as_str().unwrap().to_string();
    let other = server.account(&developer, "phones02").await["sid"].as_str().unwrap().to_string();
    recreate_phone(&server, &developer, &account, &other, 0).await;
    recreate_phone(&server, &developer, &account, &other, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected_other = names(&server, &developer, &other).await;

    // A start from a snapshot: the SIP views are runs now.
    let server = server.restart();
    server.get("/readyz", &Auth::None).await.expect(200);
    let from_snapshot = names(&server, &developer, &account).await;
    for round in 2..5 {
        recreate_phone(&server, &developer, &account, &other, round).await;
    }
    let recreated = names(&server, &developer, &account).await;
    assert_eq!(recreated.len(), from_snapshot.len(), "{from_snapshot:?} vs {recreated:?}");
    assert_eq!(names(&server, &developer, &other).await, expected_other, "the other account");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = server.restart();
    restarted.get("/readyz", &Auth::None).await.expect(200);
    let snapshot_hash = restarted.start_state_hash().await;
    assert_eq!(names(&restarted, &developer, &account).await, recreated, "after a snapshot start");

    // A full replay: the bulk fold builds the views as runs at its end.
    let server = restarted.crash_and_restart_without_snapshots();
    server.get("/readyz", &Auth::None).await.expect(200);
    assert_eq!(server.start_state_hash().await, snapshot_hash, "snapshot start and full replay");
    assert_eq!(names(&server, &developer, &account).await, recreated, "after a full replay");
    for round in 5..8 {
        recreate_phone(&server, &developer, &account, &other, round).await;
    }
    assert_eq!(
        names(&server, &developer, &account).await.len(),
        recreated.len(),
        "after recreating on runs"
    );
    let replayed = server.crash_and_restart_without_snapshots();
    replayed.get("/readyz", &Auth::None).await.expect(200);
    let full = replayed.start_state_hash().await;
    let again = replayed.restart();
    again.get("/readyz", &Auth::None).await.expect(200);
    assert_eq!(again.start_state_hash().await, full, "restart after recreating on runs");
}
