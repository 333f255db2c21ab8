use serde_json::json;

use crate::support::{Auth, Server};

#[tokio::test]
async fn health_and_first_account() {
    let server = Server::start().await;
    server.get("/healthz", &Auth::None).await.expect(200);
    server.get("/readyz", &Auth::None).await.expect(200);

    let developer = server.developer("Acme").await;
    let body = json!({"login_id": "alice01", "password": "secret123"});
    let created = server.post_json("/v1/accounts", &developer.auth(), &body).await;
    created.expect(201);
    let sid = created.sid();
    let fetched = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
    fetched.expect(200);
    assert_eq!(fetched.json, created.json);
}

#[tokio::test]
async fn account_shape_snapshot() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "shape01").await;
    crate::support::assert_json_snapshot("account_created", &account);
}
