//! `/v1/accounts`: sub-accounts. Creating one also creates its default SIP
//! account (`sip_id` = `login_id`, the same password) and a default alias,
//! in the same atomic append.

use std::sync::LazyLock;

use actix_web::{web, HttpRequest};
use tokio::sync::Semaphore;

use crate::api::auth::{scope, Caller, Scope};
use crate::api::error::ApiError;
use crate::api::format::Reply;
use crate::api::params::{Body, Params};
use crate::api::views::{account_json, list_json, PageRequest};
use crate::api::{open_password, path_sid, take_encrypt_type, AppState, Call};
use crate::crypto::hash_login_password;
use crate::domain::events::AccountStatus;
use crate::domain::ids::{Sid, SidKind};
use crate::domain::money::Currency;
use crate::domain::text::{
    fold_name, validate_domain, validate_email, validate_login_id, validate_mobile_phone,
    validate_person_name,
};
use crate::ledger::command::{NewSubAccount, SubAccountChanges};
use crate::ledger::{Command, Outcome, Secret};
use crate::projection::model::Account;
use crate::projection::State;

/// The `developer_id` filter the platform passed, to keep in page links.
pub fn scope_filter(caller: Caller, scope: Scope) -> Vec<(&'static str, String)> {
    match (caller, scope) {
        (Caller::Platform, Scope::Developer(sid)) => vec![("developer_id", sid.to_string())],
        _ => Vec::new(),
    }
}

/// Finds a sub-account the scope may see; anything else is 404.
pub fn visible_account<'a>(
    state: &'a State,
    scope: Scope,
    text: &str,
) -> Result<&'a Account, ApiError> {
    let sid = path_sid(text, SidKind::Account, "account")?;
    match state.accounts.get(&sid) {
        Some(account) if scope.allows(account.developer) => Ok(account),
        _ => Err(ApiError::not_found("account")),
    }
}

/// Argon2id hashes allowed to run at once: one per CPU core. Each uses
/// 19 MiB (argon2 0.5's default m=19456 KiB) and keeps one core busy, so
/// more at once only raise memory, never throughput. Without this bound,
/// peak memory grows by 19 MiB per concurrent creation.
static HASHING_PERMITS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, |count| count.get()))
});

/// Hashes a login password with Argon2id on the blocking pool: it takes
/// tens of milliseconds of CPU and must not stall the async workers.
async fn hash_password(password: &Secret) -> Result<String, ApiError> {
    let plain = password.0.clone();
    let _permit = HASHING_PERMITS.acquire().await.expect("the hashing semaphore is never closed");
    web::block(move || hash_login_password(&plain)).await.map_err(|error| {
        tracing::error!(%error, "password hashing task failed");
        ApiError::for_status(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
    })
}

/// Optional profile fields shared by create and update, validated.
struct Profile {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    mobile_phone: Option<String>,
    domain: Option<String>,
}

impl Profile {
    fn take(params: &mut Params) -> ProfileText {
        ProfileText {
            first_name: params.take("first_name"),
            last_name: params.take("last_name"),
            email: params.take("email"),
            mobile_phone: params.take("mobile_phone"),
            domain: params.take("domain"),
        }
    }
}

struct ProfileText {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    mobile_phone: Option<String>,
    domain: Option<String>,
}

impl ProfileText {
    fn validate(self) -> Result<Profile, ApiError> {
        let first_name =
            self.first_name.map(|v| validate_person_name("first_name", &v)).transpose()?;
        let last_name =
            self.last_name.map(|v| validate_person_name("last_name", &v)).transpose()?;
        let email = self.email.map(|v| validate_email(&v)).transpose()?;
        let mobile_phone = self.mobile_phone.map(|v| validate_mobile_phone(&v)).transpose()?;
        let domain = self.domain.map(|v| validate_domain(&v)).transpose()?;
        Ok(Profile { first_name, last_name, email, mobile_phone, domain })
    }
}

/// Renders the outcome of a write on a sub-account.
fn account_reply(app: &AppState, outcome: Outcome, created: bool) -> Result<Reply, ApiError> {
    let state = app.ledger.state();
    let sid = match outcome {
        Outcome::Done(sid) | Outcome::Replayed(sid) => sid,
    };
    let account = state.accounts.get(&sid).ok_or_else(|| ApiError::not_found("account"))?;
    let body = account_json(account);
    Ok(match outcome {
        Outcome::Replayed(_) => Reply::ok("Account", body).replayed(),
        Outcome::Done(_) if created => Reply::created("Account", body),
        Outcome::Done(_) => Reply::ok("Account", body),
    })
}

/// `POST /v1/accounts`.
pub async fn create(
    request: HttpRequest,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let login_id = call.params.required("login_id")?;
    let password = call.params.required("password")?;
    let encrypt_type = take_encrypt_type(&mut call.params, 0)?;
    let profile = Profile::take(&mut call.params);
    let currency = call.params.take("currency");
    call.finish_params()?;

    let developer = match (call.caller, scope) {
        (_, Scope::Developer(sid)) => sid,
        (Caller::Platform, Scope::All) => {
            return Err(ApiError::missing("developer_id"));
        }
        (Caller::Developer(sid), Scope::All) => sid,
    };
    if !call.state.developers.contains_key(&developer) {
        return Err(ApiError::invalid("developer_id", "no developer has this developer_id"));
    }
    let login_id = validate_login_id("login_id", &login_id)?;
    let password = open_password(&app, &password, encrypt_type)?;
    let profile = profile.validate()?;
    let currency = match currency {
        None => Currency::DEFAULT,
        Some(code) => Currency::parse(&code)
            .map_err(|error| ApiError::invalid("currency", error.to_string()))?,
    };
    // Rejecting a taken login_id here saves the password hash. A request with
    // an Idempotency-Key may repeat the request that took the name, so it
    // goes on to the writer, which checks the key before the name.
    let may_repeat = request.headers().contains_key("idempotency-key");
    if !may_repeat && call.state.logins.contains_key(fold_name(&login_id).as_str()) {
        let message = format!("login_id {login_id:?} is already taken");
        return Err(crate::domain::error::DomainError::NameTaken(message).into());
    }

    let password_argon2 = hash_password(&password).await?;
    let new = NewSubAccount {
        sid: Sid::generate(SidKind::Account),
        developer,
        login_id,
        password,
        password_argon2,
        first_name: profile.first_name,
        last_name: profile.last_name,
        email: profile.email,
        mobile_phone: profile.mobile_phone,
        domain: profile.domain.unwrap_or_else(|| app.default_domain.clone()),
        currency,
        sip_sid: Sid::generate(SidKind::SipAccount),
        alias_sid: Sid::generate(SidKind::SipAlias),
    };
    let outcome =
        app.ledger.submit(call.into_context(), Command::CreateSubAccount(Box::new(new))).await?;
    account_reply(&app, outcome, true)
}

/// `GET /v1/accounts/{sid}`.
pub async fn fetch(
    request: HttpRequest,
    path: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    call.finish_params()?;
    let account = visible_account(&call.state, scope, &path)?;
    Ok(Reply::ok("Account", account_json(account)))
}

/// `PUT /v1/accounts/{sid}`.
pub async fn update(
    request: HttpRequest,
    path: web::Path<String>,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let password = call.params.take("password");
    let encrypt_type = take_encrypt_type(&mut call.params, 1)?;
    let profile = Profile::take(&mut call.params);
    let status = call.params.take("status");
    call.finish_params()?;

    let account = visible_account(&call.state, scope, &path)?;
    let profile = profile.validate()?;
    let status = status
        .map(|text| {
            AccountStatus::parse(&text).ok_or_else(|| {
                ApiError::invalid("status", "status must be active, suspended or closed")
            })
        })
        .transpose()?;
    let password_argon2 = match password {
        None => None,
        Some(text) => {
            let password = open_password(&app, &text, encrypt_type)?;
            Some(hash_password(&password).await?)
        }
    };
    let changes = SubAccountChanges {
        password_argon2,
        first_name: profile.first_name,
        last_name: profile.last_name,
        email: profile.email,
        mobile_phone: profile.mobile_phone,
        domain: profile.domain,
        status,
    };
    let command = Command::UpdateSubAccount { sid: account.sid, changes: Box::new(changes) };
    let outcome = app.ledger.submit(call.into_context(), command).await?;
    account_reply(&app, outcome, false)
}

/// `GET /v1/accounts`: oldest first; closed sub-accounts only when
/// `status=closed` is asked for.
pub async fn list(request: HttpRequest, app: web::Data<AppState>) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    let page = PageRequest::from_params(&mut call.params)?;
    let status_text = call.params.take("status");
    let login_id = call.params.take("login_id");
    call.finish_params()?;

    let status = status_text
        .as_deref()
        .map(|text| {
            AccountStatus::parse(text).ok_or_else(|| {
                ApiError::invalid("status", "status must be active, suspended or closed")
            })
        })
        .transpose()?;
    let login_key = login_id.as_deref().map(fold_name);
    let state = &call.state;
    let order = match scope {
        Scope::All => state.account_order.clone(),
        Scope::Developer(sid) => state.developer_accounts.get(&sid).cloned().unwrap_or_default(),
    };
    let matching = order.into_iter().filter_map(|sid| state.accounts.get(&sid)).filter(|account| {
        let status_matches = match status {
            Some(wanted) => account.status == wanted,
            None => account.status != AccountStatus::Closed,
        };
        let login_matches =
            login_key.as_ref().is_none_or(|key| &fold_name(&account.login_id) == key);
        status_matches && login_matches
    });
    let (items, has_next) = page.slice(matching);
    let items = items.into_iter().map(|account| account_json(account)).collect();

    let mut filters = scope_filter(call.caller, scope);
    if let Some(text) = status_text {
        filters.push(("status", text));
    }
    if let Some(text) = login_id {
        filters.push(("login_id", text));
    }
    let body = list_json(&request, "accounts", items, page, has_next, &filters);
    Ok(Reply::ok("AccountList", body))
}
