//! Liveness and readiness, in JSON or XML like every other response.

use actix_web::http::StatusCode;
use actix_web::web;
use serde_json::json;

use crate::api::format::Reply;
use crate::api::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Reply {
    Reply::ok("Health", json!({"status": "ok"}))
}

/// The log is open, the projections are caught up, and the writer accepts
/// writes. The server only starts listening after recovery, so the first
/// two hold whenever it responds, and readiness is the writer's health.
/// `last_seq` and `log_head` are shown for operators. Under write load the
/// durable head runs ahead of the published state for the moment between
/// a sync and the publication that follows it, so the two are not compared.
pub async fn readyz(app: web::Data<AppState>) -> Reply {
    let state = app.ledger.state();
    let head = app.ledger.store.head();
    let ready = app.ledger.is_healthy();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "last_seq": state.last_seq,
        "log_head": head.seq,
        "writer": if app.ledger.is_healthy() { "ok" } else { "stopped after a storage failure" },
    });
    let mut reply = Reply::ok("Readiness", body);
    if !ready {
        reply.status = StatusCode::SERVICE_UNAVAILABLE;
    }
    reply
}
