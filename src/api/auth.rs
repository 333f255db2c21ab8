//! Authentication and tenancy.
//!
//! Every `/v1` route takes HTTP Basic credentials: a developer's sid and API
//! key, or the user `platform` and the platform key. Keys are compared as
//! SHA-256 hashes in constant time. A developer can reach only its own
//! resources; the platform reaches all and acts for a developer by passing
//! `developer_id`.

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine;

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::AppState;
use crate::crypto::{api_key_matches, constant_time_eq};
use crate::domain::events::Actor;
use crate::domain::ids::{Sid, SidKind};
use crate::projection::State;

/// The user name the platform signs in with.
pub const PLATFORM_USER: &str = "platform";

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Platform,
    Developer(Sid),
}

impl Caller {
    pub fn actor(self) -> Actor {
        match self {
            Caller::Platform => Actor::Platform,
            Caller::Developer(sid) => Actor::Developer(sid),
        }
    }
}

/// Which developers' resources a request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Developer(Sid),
}

impl Scope {
    pub fn allows(self, owner: Sid) -> bool {
        match self {
            Scope::All => true,
            Scope::Developer(sid) => sid == owner,
        }
    }
}

/// Checks the request's Basic credentials against the platform key and the
/// developers in `state`.
pub fn authenticate(
    request: &HttpRequest,
    app: &AppState,
    state: &State,
) -> Result<Caller, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let (scheme, encoded) = header.split_once(' ').ok_or_else(ApiError::unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::unauthorized())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::unauthorized())?;
    let (user, key) = decoded.split_once(':').ok_or_else(ApiError::unauthorized)?;

    if user == PLATFORM_USER {
        let presented = crate::crypto::hash_api_key(key);
        if constant_time_eq(&presented, &app.platform_key_sha256) {
            return Ok(Caller::Platform);
        }
        return Err(ApiError::unauthorized());
    }
    let sid = Sid::parse_kind(user, SidKind::Developer).ok_or_else(ApiError::unauthorized)?;
    let developer = state.developers.get(&sid).ok_or_else(ApiError::unauthorized)?;
    if api_key_matches(key, &developer.api_key_sha256) {
        Ok(Caller::Developer(sid))
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Rejects developers on platform-only routes.
pub fn require_platform(caller: Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Platform => Ok(()),
        Caller::Developer(_) => Err(ApiError::forbidden("this operation is for the platform only")),
    }
}

/// Reads `developer_id` and returns the scope of the request. Only the
/// platform may pass it; a developer that does gets 400.
pub fn scope(caller: Caller, params: &mut Params) -> Result<Scope, ApiError> {
    let developer_id = params.take("developer_id");
    match (caller, developer_id) {
        (Caller::Developer(sid), None) => Ok(Scope::Developer(sid)),
        (Caller::Developer(_), Some(_)) => Err(ApiError::invalid(
            "developer_id",
            "developer_id is for the platform only; a developer acts for itself",
        )),
        (Caller::Platform, None) => Ok(Scope::All),
        (Caller::Platform, Some(text)) => {
            let sid = Sid::parse_kind(&text, SidKind::Developer).ok_or_else(|| {
                ApiError::invalid(
                    "developer_id",
                    "developer_id must be a developer sid (DV followed by 32 hex digits)",
                )
            })?;
            Ok(Scope::Developer(sid))
        }
    }
}
