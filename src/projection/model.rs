//! The read models that projections keep: one struct per resource, holding
//! exactly what the API shows and the rules need. Secrets (password hashes,
//! SIP digests) stay in the log and are not kept here. Times serialize as
//! microseconds since the epoch, which keeps snapshots compact and fast.
//!
//! Text that changes rarely is held as `Arc<str>`, so that copying a model
//! to change its balance or status copies pointers, not strings.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::events::AccountStatus;
use crate::domain::ids::Sid;
use crate::domain::money::Currency;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Developer {
    pub sid: Sid,
    pub name: String,
    pub api_key_sha256: [u8; 32],
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub sid: Sid,
    pub developer: Sid,
    pub login_id: Arc<str>,
    pub status: AccountStatus,
    pub first_name: Option<Arc<str>>,
    pub last_name: Option<Arc<str>>,
    pub email: Option<Arc<str>>,
    pub mobile_phone: Option<Arc<str>>,
    pub domain: Arc<str>,
    pub currency: Currency,
    pub balance: Decimal,
    /// When the balance last changed (the creation time before any posting).
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub balance_updated: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccount {
    pub sid: Sid,
    pub account: Sid,
    pub sip_id: String,
    pub domain: String,
    /// Alias sids in creation order.
    pub aliases: im::Vector<Sid>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAlias {
    pub sid: Sid,
    pub account: Sid,
    pub sip: Sid,
    pub alias: String,
    pub domain: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub updated: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PostingType {
    #[serde(rename = "TOPUP")]
    TopUp,
    #[serde(rename = "ADJUSTMENT")]
    Adjustment,
}

impl PostingType {
    pub fn as_str(self) -> &'static str {
        match self {
            PostingType::TopUp => "TOPUP",
            PostingType::Adjustment => "ADJUSTMENT",
        }
    }

    pub fn parse(text: &str) -> Option<PostingType> {
        match text {
            "TOPUP" => Some(PostingType::TopUp),
            "ADJUSTMENT" => Some(PostingType::Adjustment),
            _ => None,
        }
    }
}

/// A posting. Its developer is the sub-account's, which never changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub sid: Sid,
    pub account: Sid,
    pub kind: PostingType,
    pub amount: Decimal,
    pub currency: Currency,
    pub pay_method: u16,
    pub refer_trans_id: Option<Box<str>>,
    pub desc: Option<String>,
    pub balance_after: Decimal,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created: DateTime<Utc>,
    /// Sequence number of the event that recorded the posting.
    pub seq: u64,
}

/// What an `Idempotency-Key` was first used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRequest {
    pub fingerprint: String,
    pub resource: Sid,
}
