//! The REST API: routes, request parsing, authentication, content
//! negotiation and error rendering. Handlers read the published projection
//! state and send commands to the ledger writer; they never touch storage.

pub mod accounts;
pub mod auth;
pub mod balances;
pub mod developers;
pub mod error;
pub mod format;
pub mod ops;
pub mod params;
pub mod sip;
pub mod views;

use std::sync::Arc;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest};
use sha2::{Digest, Sha256};

use crate::api::auth::{authenticate, Caller};
use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::crypto::{decrypt_password, AesKey};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::text::validate_password;
use crate::ledger::{CommandContext, Ledger, Secret};
use crate::projection::State;

/// Everything handlers share.
pub struct AppState {
    pub ledger: Ledger,
    /// SHA-256 of the platform key; the key itself is not kept.
    pub platform_key_sha256: [u8; 32],
    pub aes_key: AesKey,
    /// The SIP domain used when a request names none.
    pub default_domain: String,
}

/// Longest `Idempotency-Key` accepted.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;

/// One authenticated API call: the state it reads, who calls, and the
/// request's parameters.
pub struct Call {
    pub state: Arc<State>,
    pub caller: Caller,
    pub params: Params,
    request_id: String,
    idempotency: Option<(String, String)>,
}

impl Call {
    /// Authenticates the request and reads its parameters. For a POST, also
    /// reads the `Idempotency-Key` header and fingerprints the request.
    pub fn begin(request: &HttpRequest, app: &AppState, body: &[u8]) -> Result<Call, ApiError> {
        let state = app.ledger.state();
        let caller = authenticate(request, app, &state)?;
        let params = Params::from_request(request, body)?;
        let idempotency = if request.method() == Method::POST {
            idempotency_key(request)?
                .map(|key| (key, fingerprint(request, body, &app.platform_key_sha256)))
        } else {
            None
        };
        let request_id = format::request_id_of(request);
        Ok(Call { state, caller, params, request_id, idempotency })
    }

    pub fn context(&self) -> CommandContext {
        CommandContext {
            actor: self.caller.actor(),
            request_id: self.request_id.clone(),
            idempotency: self.idempotency.clone(),
        }
    }

    /// Rejects parameters the operation did not read.
    pub fn finish_params(&mut self) -> Result<(), ApiError> {
        std::mem::take(&mut self.params).finish()
    }
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("");
    let valid = !key.is_empty()
        && key.len() <= IDEMPOTENCY_KEY_CHARS_MAX
        && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            error::codes::INVALID_PARAMETER,
            format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} printable ASCII characters without spaces"
            ),
        ));
    }
    Ok(Some(key.to_string()))
}

/// SHA-256 over a server secret, the method, path, query and body of a
/// request. The secret keeps a plain-text password in the body from being
/// guessed from the fingerprint in the log. A retry must resend the same
/// bytes to match, including the same AES-encrypted password.
fn fingerprint(request: &HttpRequest, body: &[u8], secret: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(secret);
    hasher.update(request.method().as_str());
    hasher.update([0]);
    hasher.update(request.path());
    hasher.update([0]);
    hasher.update(request.query_string());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// Parses a path id of the expected kind; anything else is 404.
pub fn path_sid(text: &str, kind: SidKind, what: &str) -> Result<Sid, ApiError> {
    Sid::parse_kind(text, kind).ok_or_else(|| ApiError::not_found(what))
}

/// Reads an `encrypt_type` parameter: 0 plain or 1 AES.
pub fn take_encrypt_type(params: &mut Params, default: u32) -> Result<u32, ApiError> {
    let value = params.take_integer("encrypt_type")?.unwrap_or(default);
    if value > 1 {
        return Err(ApiError::invalid("encrypt_type", "encrypt_type must be 0 (plain) or 1 (AES)"));
    }
    Ok(value)
}

/// Turns a received password into plain text (decrypting `encrypt_type` 1)
/// and checks the password rules.
pub fn open_password(app: &AppState, text: &str, encrypt_type: u32) -> Result<Secret, ApiError> {
    let plain = if encrypt_type == 1 {
        decrypt_password(&app.aes_key, text)
            .map_err(|error| ApiError::invalid("password", error.to_string()))?
    } else {
        text.to_string()
    };
    validate_password("password", &plain)?;
    Ok(Secret(plain))
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED))
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::for_status(StatusCode::NOT_FOUND))
}

/// Registers every route.
pub fn configure(config: &mut web::ServiceConfig) {
    let resource =
        |path: &str| web::resource(path.to_string()).default_service(web::to(method_not_allowed));
    config
        .service(resource("/healthz").route(web::get().to(ops::healthz)))
        .service(resource("/readyz").route(web::get().to(ops::readyz)))
        .service(resource("/v1/developers").route(web::post().to(developers::create)))
        .service(resource("/v1/developers/{developer_sid}").route(web::get().to(developers::fetch)))
        .service(
            resource("/v1/accounts")
                .route(web::get().to(accounts::list))
                .route(web::post().to(accounts::create)),
        )
        .service(
            resource("/v1/accounts/{account_sid}")
                .route(web::get().to(accounts::fetch))
                .route(web::put().to(accounts::update)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/SIP")
                .route(web::get().to(sip::list))
                .route(web::post().to(sip::create)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/SIP/{sip_sid}")
                .route(web::get().to(sip::fetch))
                .route(web::put().to(sip::update))
                .route(web::delete().to(sip::delete)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases")
                .route(web::get().to(sip::list_aliases))
                .route(web::post().to(sip::create_alias)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases/{alias_sid}")
                .route(web::get().to(sip::fetch_alias))
                .route(web::put().to(sip::update_alias))
                .route(web::delete().to(sip::delete_alias)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/balances")
                .route(web::get().to(balances::fetch))
                .route(web::post().to(balances::post)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/balances/transactions")
                .route(web::get().to(balances::list_account)),
        )
        .service(
            resource("/v1/accounts/{account_sid}/balances/transactions/{transaction_sid}")
                .route(web::get().to(balances::fetch_transaction)),
        )
        .service(resource("/v1/transactions").route(web::get().to(balances::list_all)))
        .default_service(web::to(not_found));
}
