//! The REST API: routes, request parsing, authentication, content
//! negotiation, error rendering, metrics and the OpenAPI document. Handlers
//! read the published projection state and send commands to the ledger
//! writer; they never touch storage.

pub mod accounts;
pub mod auth;
pub mod balances;
pub mod developers;
pub mod error;
pub mod events;
pub mod format;
pub mod metrics;
pub mod openapi;
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
        if matches!(*request.method(), Method::GET | Method::DELETE) && declares_body(request) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                error::codes::MALFORMED_BODY,
                format!(
                    "{} takes no request body; send its parameters in the query string",
                    request.method()
                ),
            ));
        }
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

    /// Ends the call, keeping what the writer needs. Releasing the state
    /// before the request waits makes the committer, not this HTTP worker,
    /// the usual last owner of each replaced state. The last owner frees the
    /// state's unshared tree nodes, which took about a tenth of the workers'
    /// time under load while waiting requests kept their states.
    pub fn into_context(self) -> CommandContext {
        CommandContext {
            actor: self.caller.actor(),
            request_id: self.request_id,
            idempotency: self.idempotency,
        }
    }

    /// Rejects parameters the operation did not read.
    pub fn finish_params(&mut self) -> Result<(), ApiError> {
        std::mem::take(&mut self.params).finish()
    }
}

/// Whether the request declares a body: a non-zero
/// `Content-Length` or any `Transfer-Encoding`.
fn declares_body(request: &HttpRequest) -> bool {
    let headers = request.headers();
    let length = headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    let has_length = length.is_some_and(|value| value != "0");
    has_length || headers.contains_key(actix_web::http::header::TRANSFER_ENCODING)
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

/// The 405 response, with the `Allow` header listing the path's methods.
fn method_not_allowed(allow: &str) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::for_status(StatusCode::METHOD_NOT_ALLOWED).error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::for_status(StatusCode::NOT_FOUND))
}

/// A method and the route that serves it.
type MethodRoute = (Method, actix_web::Route);

/// Binds `handler` to `method`, keeping the method for `registered_routes`.
fn on<F, Args>(method: Method, handler: F) -> MethodRoute
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    (method.clone(), web::method(method).to(handler))
}

/// Every route pattern with its methods; `configure` registers exactly
/// these, and the OpenAPI document describes exactly these.
///
/// actix-web tries the patterns in this order, and each pattern with a
/// `{…}` segment costs a regular-expression match. No path matches two of
/// them, so the order changes only the cost. The balance route comes
/// first because postings and balance reads both use it.
fn route_table() -> Vec<(&'static str, Vec<MethodRoute>)> {
    use Method as M;
    vec![
        (
            "/v1/accounts/{account_sid}/balances",
            vec![on(M::GET, balances::fetch), on(M::POST, balances::post)],
        ),
        ("/healthz", vec![on(M::GET, ops::healthz)]),
        ("/readyz", vec![on(M::GET, ops::readyz)]),
        ("/metrics", vec![on(M::GET, metrics::metrics)]),
        ("/openapi.json", vec![on(M::GET, openapi::serve)]),
        ("/v1/developers", vec![on(M::POST, developers::create)]),
        ("/v1/developers/{developer_sid}", vec![on(M::GET, developers::fetch)]),
        ("/v1/accounts", vec![on(M::GET, accounts::list), on(M::POST, accounts::create)]),
        (
            "/v1/accounts/{account_sid}",
            vec![on(M::GET, accounts::fetch), on(M::PUT, accounts::update)],
        ),
        ("/v1/accounts/{account_sid}/SIP", vec![on(M::GET, sip::list), on(M::POST, sip::create)]),
        (
            "/v1/accounts/{account_sid}/SIP/{sip_sid}",
            vec![on(M::GET, sip::fetch), on(M::PUT, sip::update), on(M::DELETE, sip::delete)],
        ),
        (
            "/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases",
            vec![on(M::GET, sip::list_aliases), on(M::POST, sip::create_alias)],
        ),
        (
            "/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases/{alias_sid}",
            vec![
                on(M::GET, sip::fetch_alias),
                on(M::PUT, sip::update_alias),
                on(M::DELETE, sip::delete_alias),
            ],
        ),
        (
            "/v1/accounts/{account_sid}/balances/transactions",
            vec![on(M::GET, balances::list_account)],
        ),
        (
            "/v1/accounts/{account_sid}/balances/transactions/{transaction_sid}",
            vec![on(M::GET, balances::fetch_transaction)],
        ),
        ("/v1/accounts/{account_sid}/events", vec![on(M::GET, events::list)]),
        ("/v1/transactions", vec![on(M::GET, balances::list_all)]),
    ]
}

/// The route patterns `configure` registers, each with its methods.
pub fn registered_routes() -> Vec<(&'static str, Vec<Method>)> {
    route_table()
        .into_iter()
        .map(|(path, routes)| (path, routes.into_iter().map(|(method, _)| method).collect()))
        .collect()
}

/// Registers every route. A known path with another method is 405, any
/// other path 404.
pub fn configure(config: &mut web::ServiceConfig) {
    for (path, routes) in route_table() {
        let methods: Vec<&str> = routes.iter().map(|(method, _)| method.as_str()).collect();
        let allow = methods.join(", ");
        let reject = move || {
            let response = method_not_allowed(&allow);
            async move { response }
        };
        let mut resource = web::resource(path).default_service(web::to(reject));
        for (_, route) in routes {
            resource = resource.route(route);
        }
        config.service(resource);
    }
    config.default_service(web::to(not_found));
}
