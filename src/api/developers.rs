//! `/v1/developers`: the API consumers, created by the platform.

use actix_web::{web, HttpRequest};

use crate::api::auth::require_platform;
use crate::api::error::ApiError;
use crate::api::format::Reply;
use crate::api::params::Body;
use crate::api::views::developer_json;
use crate::api::{path_sid, AppState, Call};
use crate::crypto::{generate_api_key, hash_api_key};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::text::{normalize_text, NAME_CHARS_MAX};
use crate::ledger::{Command, Outcome};

/// `POST /v1/developers`: creates a developer and shows its API key once.
pub async fn create(
    request: HttpRequest,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    require_platform(call.caller)?;
    let name = call.params.required("name")?;
    call.finish_params()?;
    let name = normalize_text("name", &name, NAME_CHARS_MAX)?;

    let sid = Sid::generate(SidKind::Developer);
    let api_key = generate_api_key();
    let api_key_sha256 = hex::encode(hash_api_key(&api_key));
    let command = Command::CreateDeveloper { sid, name, api_key_sha256 };
    let outcome = app.ledger.submit(call.into_context(), command).await?;

    let state = app.ledger.state();
    match outcome {
        Outcome::Done(sid) => {
            let developer =
                state.developers.get(&sid).ok_or_else(|| ApiError::not_found("developer"))?;
            let mut body = developer_json(developer);
            body["api_key"] = serde_json::Value::String(api_key);
            Ok(Reply::created("Developer", body))
        }
        // A replayed create cannot show the key again: only its hash is kept.
        Outcome::Replayed(sid) => {
            let developer =
                state.developers.get(&sid).ok_or_else(|| ApiError::not_found("developer"))?;
            Ok(Reply::ok("Developer", developer_json(developer)).replayed())
        }
    }
}

/// `GET /v1/developers/{sid}`: the developer, without its key.
pub async fn fetch(
    request: HttpRequest,
    path: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    require_platform(call.caller)?;
    call.finish_params()?;
    let sid = path_sid(&path, SidKind::Developer, "developer")?;
    let developer =
        call.state.developers.get(&sid).ok_or_else(|| ApiError::not_found("developer"))?;
    Ok(Reply::ok("Developer", developer_json(developer)))
}
