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

/// Reports ready while the writer accepts writes: the server listens only
/// after recovery, so the projections have caught up whenever it responds.
/// The durable head runs ahead of the published state between a sync and
/// its publication, so the two are shown but not compared.
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
