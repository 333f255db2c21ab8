//! The API's error responses: the one place where errors become HTTP.
//!
//! Every error, the framework's own included, gets a response with the status
//! and a body `{code, message, status, more_info, errors?}`, as JSON or as
//! `<RestException>` XML. `ApiError::error_response` renders JSON and keeps
//! a copy of itself in the response so that the outer middleware can render
//! it as XML when the client asked for XML.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::domain::error::DomainError;
use crate::domain::text::FieldError;

/// Where the error codes are explained.
pub const ERROR_DOCS: &str = "docs/api.md#errors";

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.message)
    }
}

/// Error codes; the hundreds follow the HTTP status.
pub mod codes {
    pub const INVALID_PARAMETER: u32 = 20001;
    pub const MISSING_PARAMETER: u32 = 20002;
    pub const UNKNOWN_PARAMETER: u32 = 20003;
    pub const DUPLICATE_PARAMETER: u32 = 20004;
    pub const MALFORMED_BODY: u32 = 20005;
    pub const UNAUTHORIZED: u32 = 20101;
    pub const FORBIDDEN: u32 = 20301;
    pub const NOT_FOUND: u32 = 20404;
    pub const METHOD_NOT_ALLOWED: u32 = 20405;
    pub const NOT_ACCEPTABLE: u32 = 20406;
    pub const REQUEST_TIMEOUT: u32 = 20408;
    pub const NAME_TAKEN: u32 = 20409;
    pub const CLOSED: u32 = 20410;
    pub const IDEMPOTENCY_MISMATCH: u32 = 20411;
    pub const CONCURRENCY_CONFLICT: u32 = 20412;
    pub const BODY_TOO_LARGE: u32 = 20413;
    pub const UNSUPPORTED_MEDIA_TYPE: u32 = 20415;
    pub const INSUFFICIENT_BALANCE: u32 = 20422;
    pub const LIMIT_REACHED: u32 = 20423;
    pub const INTERNAL: u32 = 20500;
    pub const UNAVAILABLE: u32 = 20503;
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), fields: Vec::new() }
    }

    pub fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::from(DomainError::invalid(field, reason))
    }

    pub fn missing(field: &'static str) -> ApiError {
        let reason = format!("{field} is required");
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: codes::MISSING_PARAMETER,
            message: format!("missing required parameter {field}"),
            fields: vec![FieldError::new(field, reason)],
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("{what} not found"))
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or invalid credentials: send HTTP Basic with a developer sid and its API key, or \
             the user platform and the platform key",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// The error for a status the framework produced on its own.
    pub fn for_status(status: StatusCode) -> ApiError {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => (codes::NOT_FOUND, "no resource at this path".to_string()),
            StatusCode::METHOD_NOT_ALLOWED => {
                (codes::METHOD_NOT_ALLOWED, "method not allowed on this resource".to_string())
            }
            StatusCode::PAYLOAD_TOO_LARGE => (
                codes::BODY_TOO_LARGE,
                format!("request body is larger than {} bytes", crate::api::params::BODY_BYTES_MAX),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                codes::UNSUPPORTED_MEDIA_TYPE,
                "request body must be application/json or application/x-www-form-urlencoded"
                    .to_string(),
            ),
            StatusCode::REQUEST_TIMEOUT => (
                codes::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} seconds",
                    crate::api::params::BODY_READ_TIMEOUT.as_secs()
                ),
            ),
            StatusCode::UNAUTHORIZED => return ApiError::unauthorized(),
            status if status.is_client_error() => {
                (codes::MALFORMED_BODY, "the request is malformed".to_string())
            }
            _ => (
                codes::INTERNAL,
                "internal error; the request id identifies it in the logs".to_string(),
            ),
        };
        ApiError::new(status, code, message)
    }

    /// The error body as a JSON value.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "code": self.code,
            "message": self.message,
            "status": self.status.as_u16(),
            "more_info": ERROR_DOCS,
        });
        if !self.fields.is_empty() {
            let errors: Vec<Value> = self
                .fields
                .iter()
                .map(|field| json!({"field": field.field, "reason": field.reason}))
                .collect();
            body["errors"] = Value::Array(errors);
        }
        body
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> ApiError {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code, fields) = match error {
            DomainError::Invalid { fields, .. } => {
                (S::BAD_REQUEST, codes::INVALID_PARAMETER, fields)
            }
            DomainError::NotFound(_) => (S::NOT_FOUND, codes::NOT_FOUND, Vec::new()),
            DomainError::NameTaken(_) => (S::CONFLICT, codes::NAME_TAKEN, Vec::new()),
            DomainError::Closed(_) => (S::CONFLICT, codes::CLOSED, Vec::new()),
            DomainError::IdempotencyMismatch { fields, .. } => {
                (S::CONFLICT, codes::IDEMPOTENCY_MISMATCH, fields)
            }
            DomainError::ConcurrencyConflict(_) => {
                (S::CONFLICT, codes::CONCURRENCY_CONFLICT, Vec::new())
            }
            DomainError::InsufficientBalance(_) => {
                (S::UNPROCESSABLE_ENTITY, codes::INSUFFICIENT_BALANCE, Vec::new())
            }
            DomainError::LimitReached(_) => {
                (S::UNPROCESSABLE_ENTITY, codes::LIMIT_REACHED, Vec::new())
            }
            DomainError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, Vec::new()),
        };
        ApiError { status, code, message, fields }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> ApiError {
        ApiError::from(DomainError::from(error))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"subledger\""));
        }
        let mut response = response.content_type("application/json").body(self.body().to_string());
        response.extensions_mut().insert(self.clone());
        response
    }
}
