//! `/v1/accounts/{sid}/SIP` and its aliases. SIP ids and aliases share one
//! namespace per domain, compared case-insensitively after NFC. Passwords
//! arrive AES-encrypted by default and are kept only as digest hashes.

use actix_web::{web, HttpRequest};

use crate::api::accounts::{scope_filter, visible_account};
use crate::api::auth::{scope, Scope};
use crate::api::error::ApiError;
use crate::api::format::Reply;
use crate::api::params::Body;
use crate::api::views::{list_json, sip_account_json, sip_alias_json, PageRequest};
use crate::api::{open_password, path_sid, take_encrypt_type, AppState, Call};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::text::{validate_alias, validate_domain, validate_login_id};
use crate::ledger::{Command, Outcome};
use crate::projection::model::{SipAccount, SipAlias};
use crate::projection::State;

/// Finds a SIP account under a sub-account the scope may see.
fn visible_sip<'a>(
    state: &'a State,
    scope: Scope,
    account_text: &str,
    sip_text: &str,
) -> Result<&'a SipAccount, ApiError> {
    let account = visible_account(state, scope, account_text)?;
    let sid = path_sid(sip_text, SidKind::SipAccount, "SIP account")?;
    match state.sip_accounts.get(&sid) {
        Some(sip) if sip.account == account.sid => Ok(sip),
        _ => Err(ApiError::not_found("SIP account")),
    }
}

/// Finds an alias under a SIP account the scope may see.
fn visible_alias<'a>(
    state: &'a State,
    scope: Scope,
    (account_text, sip_text, alias_text): (&str, &str, &str),
) -> Result<&'a SipAlias, ApiError> {
    let sip = visible_sip(state, scope, account_text, sip_text)?;
    let sid = path_sid(alias_text, SidKind::SipAlias, "SIP alias")?;
    match state.sip_aliases.get(&sid) {
        Some(alias) if alias.sip == sip.sid => Ok(alias),
        _ => Err(ApiError::not_found("SIP alias")),
    }
}

fn sip_reply(app: &AppState, outcome: Outcome, created: bool) -> Result<Reply, ApiError> {
    let state = app.ledger.state();
    let (Outcome::Done(sid) | Outcome::Replayed(sid)) = outcome;
    let body = if sid.kind() == SidKind::SipAlias {
        let alias = state.sip_aliases.get(&sid).ok_or_else(|| ApiError::not_found("SIP alias"))?;
        (sip_alias_json(&state, alias), "SipAlias")
    } else {
        let sip = state.sip_accounts.get(&sid).ok_or_else(|| ApiError::not_found("SIP account"))?;
        (sip_account_json(&state, sip), "SipAccount")
    };
    let (body, root) = body;
    Ok(match outcome {
        Outcome::Replayed(_) => Reply::ok(root, body).replayed(),
        Outcome::Done(_) if created => Reply::created(root, body),
        Outcome::Done(_) => Reply::ok(root, body),
    })
}

/// `POST …/SIP`.
pub async fn create(
    request: HttpRequest,
    path: web::Path<String>,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let password = call.params.required("password")?;
    let encrypt_type = take_encrypt_type(&mut call.params, 1)?;
    let domain = call.params.take("domain");
    let sip_id = call.params.take("sip_id");
    call.finish_params()?;

    let account = visible_account(&call.state, scope, &path)?;
    let sip_id = sip_id.map(|text| validate_login_id("sip_id", &text)).transpose()?;
    let domain = domain.map(|text| validate_domain(&text)).transpose()?;
    let password = open_password(&app, &password, encrypt_type)?;
    let command = Command::CreateSipAccount {
        sid: Sid::generate(SidKind::SipAccount),
        account: account.sid,
        sip_id,
        domain,
        password,
    };
    let outcome = app.ledger.submit(call.into_context(), command).await?;
    sip_reply(&app, outcome, true)
}

/// `GET …/SIP/{sip_sid}`.
pub async fn fetch(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    call.finish_params()?;
    let sip = visible_sip(&call.state, scope, &path.0, &path.1)?;
    Ok(Reply::ok("SipAccount", sip_account_json(&call.state, sip)))
}

/// `PUT …/SIP/{sip_sid}`: a new password, and the domain, both required
/// because the digests depend on the domain (the realm).
pub async fn update(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let password = call.params.required("password")?;
    let encrypt_type = take_encrypt_type(&mut call.params, 1)?;
    let domain = call.params.required("domain")?;
    call.finish_params()?;

    let sip = visible_sip(&call.state, scope, &path.0, &path.1)?;
    let domain = validate_domain(&domain)?;
    let password = open_password(&app, &password, encrypt_type)?;
    let command = Command::UpdateSipAccount { sid: sip.sid, domain, password };
    let outcome = app.ledger.submit(call.into_context(), command).await?;
    sip_reply(&app, outcome, false)
}

/// `DELETE …/SIP/{sip_sid}`: deletes its aliases too.
pub async fn delete(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    call.finish_params()?;
    let sip = visible_sip(&call.state, scope, &path.0, &path.1)?;
    let command = Command::DeleteSipAccount { sid: sip.sid };
    app.ledger.submit(call.into_context(), command).await?;
    Ok(Reply::no_content())
}

/// `GET …/SIP`: the sub-account's SIP accounts, oldest first.
pub async fn list(
    request: HttpRequest,
    path: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    let page = PageRequest::from_params(&mut call.params)?;
    call.finish_params()?;
    let state = &call.state;
    let account = visible_account(state, scope, &path)?;
    let order = state.account_sip_accounts.get(&account.sid).cloned().unwrap_or_default();
    let (items, has_next) = page.slice(order.iter().filter_map(|sid| state.sip_accounts.get(sid)));
    let items = items.into_iter().map(|sip| sip_account_json(state, sip)).collect();
    let filters = scope_filter(call.caller, scope);
    let body = list_json(&request, "sip_accounts", items, page, has_next, &filters);
    Ok(Reply::ok("SipAccountList", body))
}

/// `POST …/aliases`.
pub async fn create_alias(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let alias = call.params.required("alias")?;
    call.finish_params()?;
    let sip = visible_sip(&call.state, scope, &path.0, &path.1)?;
    let alias = validate_alias(&alias)?;
    let command = Command::AddAlias { sid: Sid::generate(SidKind::SipAlias), sip: sip.sid, alias };
    let outcome = app.ledger.submit(call.into_context(), command).await?;
    sip_reply(&app, outcome, true)
}

/// `GET …/aliases/{alias_sid}`.
pub async fn fetch_alias(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    call.finish_params()?;
    let alias = visible_alias(&call.state, scope, (&path.0, &path.1, &path.2))?;
    Ok(Reply::ok("SipAlias", sip_alias_json(&call.state, alias)))
}

/// `PUT …/aliases/{alias_sid}`.
pub async fn update_alias(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let alias_text = call.params.required("alias")?;
    call.finish_params()?;
    let alias = visible_alias(&call.state, scope, (&path.0, &path.1, &path.2))?;
    let new_alias = validate_alias(&alias_text)?;
    let command = Command::ChangeAlias { sid: alias.sid, alias: new_alias };
    let outcome = app.ledger.submit(call.into_context(), command).await?;
    sip_reply(&app, outcome, false)
}

/// `DELETE …/aliases/{alias_sid}`.
pub async fn delete_alias(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    call.finish_params()?;
    let alias = visible_alias(&call.state, scope, (&path.0, &path.1, &path.2))?;
    let command = Command::RemoveAlias { sid: alias.sid };
    app.ledger.submit(call.into_context(), command).await?;
    Ok(Reply::no_content())
}

/// `GET …/aliases`: the SIP account's aliases, oldest first.
pub async fn list_aliases(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    let page = PageRequest::from_params(&mut call.params)?;
    call.finish_params()?;
    let state = &call.state;
    let sip = visible_sip(state, scope, &path.0, &path.1)?;
    let (items, has_next) =
        page.slice(sip.aliases.iter().filter_map(|sid| state.sip_aliases.get(sid)));
    let items = items.into_iter().map(|alias| sip_alias_json(state, alias)).collect();
    let filters = scope_filter(call.caller, scope);
    let body = list_json(&request, "sip_aliases", items, page, has_next, &filters);
    Ok(Reply::ok("SipAliasList", body))
}
