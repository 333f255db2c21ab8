//! The one error type of the service's rules. Each variant names its HTTP
//! status in `crate::api::error`, the only place that maps errors to HTTP.

use crate::domain::text::FieldError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Invalid input: one or more fields are at fault (400).
    #[error("{message}")]
    Invalid { message: String, fields: Vec<FieldError> },
    /// The resource does not exist or belongs to another tenant (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A name is already taken (409).
    #[error("{0}")]
    NameTaken(String),
    /// The sub-account is closed and no longer changes (409).
    #[error("{0}")]
    Closed(String),
    /// The same reference or `Idempotency-Key` was used for a different
    /// request (409); `fields` names what differs.
    #[error("{message}")]
    IdempotencyMismatch { message: String, fields: Vec<FieldError> },
    /// A posting would take the prepaid balance below zero (422).
    #[error("{0}")]
    InsufficientBalance(String),
    /// A limit is reached, such as the aliases of one SIP account (422).
    #[error("{0}")]
    LimitReached(String),
    /// The event log rejected an append because a stream moved on (409).
    #[error("{0}")]
    ConcurrencyConflict(String),
    /// The writer cannot make writes durable; the outcome of the request is
    /// unknown until the service restarts (503).
    #[error("{0}")]
    Unavailable(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> DomainError {
        let field = FieldError::new(field, reason);
        DomainError::Invalid {
            message: format!("invalid {}: {}", field.field, field.reason),
            fields: vec![field],
        }
    }
}

impl From<FieldError> for DomainError {
    fn from(field: FieldError) -> DomainError {
        DomainError::Invalid {
            message: format!("invalid {}: {}", field.field, field.reason),
            fields: vec![field],
        }
    }
}
