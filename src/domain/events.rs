//! The events of every aggregate. An event is a fact in the past tense and
//! carries every value a projection needs (the balance after a posting, the
//! aliases a deleted SIP account took with it), so that projections only fold
//! and never decide.
//!
//! Each event type has a schema version. A new shape of an event gets a new
//! version, and `Event::decode` upcasts every older version it recognizes when the
//! log is read; stored events are never rewritten.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::crypto::SipDigests;
use crate::domain::ids::Sid;
use crate::domain::money::Currency;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeveloperCreated {
    pub sid: Sid,
    pub name: String,
    /// SHA-256 of the API key, lower-case hex. The key itself is never stored.
    pub api_key_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Active,
    Suspended,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<AccountStatus> {
        match text {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "closed" => Some(AccountStatus::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubAccountCreated {
    pub sid: Sid,
    pub developer_sid: Sid,
    pub login_id: String,
    /// Argon2id PHC string of the login password.
    pub password_argon2: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub mobile_phone: Option<String>,
    pub domain: String,
    pub currency: Currency,
}

/// Changed profile fields of a sub-account; `None` leaves a field as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubAccountUpdated {
    pub sid: Sid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_argon2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl SubAccountUpdated {
    /// Whether the event changes anything.
    pub fn changes_anything(&self) -> bool {
        self.password_argon2.is_some()
            || self.first_name.is_some()
            || self.last_name.is_some()
            || self.email.is_some()
            || self.mobile_phone.is_some()
            || self.domain.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubAccountStatusChanged {
    pub sid: Sid,
    pub from: AccountStatus,
    pub to: AccountStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccountCreated {
    pub sid: Sid,
    pub account_sid: Sid,
    pub sip_id: String,
    pub domain: String,
    pub digests: SipDigests,
}

/// A SIP account's new password digests, and its new domain when it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccountUpdated {
    pub sid: Sid,
    pub account_sid: Sid,
    pub domain: String,
    pub digests: SipDigests,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAccountDeleted {
    pub sid: Sid,
    pub account_sid: Sid,
    /// The aliases deleted with the SIP account, freeing their names.
    pub alias_sids: Vec<Sid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAliasAdded {
    pub sid: Sid,
    pub account_sid: Sid,
    pub sip_sid: Sid,
    pub alias: String,
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAliasChanged {
    pub sid: Sid,
    pub sip_sid: Sid,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipAliasRemoved {
    pub sid: Sid,
    pub sip_sid: Sid,
}

/// One leg of a double-entry transaction: an amount on a named account.
/// Positive legs increase the account's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub account: String,
    pub amount: Decimal,
}

/// A balance transaction. The two legs sum to zero: the sub-account's leg
/// (`subaccount:AC…`) and the contra account named by the type and pay
/// method, such as `funding:paypal` or `adjustments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancePosted {
    pub sid: Sid,
    pub account_sid: Sid,
    pub developer_sid: Sid,
    pub amount: Decimal,
    pub currency: Currency,
    pub pay_method: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refer_trans_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    pub legs: [Leg; 2],
    /// The sub-account's balance after this posting.
    pub balance_after: Decimal,
}

/// An `Idempotency-Key` bound to an earlier result: a request that carried
/// the key repeated an earlier posting by its `refer_trans_id`, so it wrote
/// nothing else. The binding itself is the event's `idempotency` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKeyRecorded {
    /// The stream of the resource: the sub-account of a transaction.
    pub stream: Sid,
    pub resource: Sid,
}

/// Every event of every aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    DeveloperCreated(DeveloperCreated),
    SubAccountCreated(SubAccountCreated),
    SubAccountUpdated(SubAccountUpdated),
    SubAccountStatusChanged(SubAccountStatusChanged),
    SipAccountCreated(SipAccountCreated),
    SipAccountUpdated(SipAccountUpdated),
    SipAccountDeleted(SipAccountDeleted),
    SipAliasAdded(SipAliasAdded),
    SipAliasChanged(SipAliasChanged),
    SipAliasRemoved(SipAliasRemoved),
    BalanceToppedUp(BalancePosted),
    BalanceAdjusted(BalancePosted),
    IdempotencyKeyRecorded(IdempotencyKeyRecorded),
}

/// Schema version written for every event type today.
pub const CURRENT_SCHEMA: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event type {kind} has unknown schema version {schema}")]
    UnknownSchema { kind: String, schema: u16 },
    #[error("invalid data for event type {kind}: {source}")]
    Data {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

macro_rules! event_kinds {
    ($($variant:ident),* $(,)?) => {
        impl Event {
            /// The event type name stored in the envelope.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => stringify!($variant),)*
                }
            }

            /// Returns the event's data without its type, to serialize as
            /// the `data` member of a stored body.
            pub fn data(&self) -> EventDataOut<'_> {
                EventDataOut(self)
            }

            /// Decodes event data of type `kind`, upcasting older schemas.
            pub fn decode(kind: &str, schema: u16, data: &str) -> Result<Event, DecodeError> {
                let seed = EventData::new(kind, schema)?;
                let mut deserializer = serde_json::Deserializer::from_str(data);
                serde::de::DeserializeSeed::deserialize(seed, &mut deserializer)
                    .and_then(|event| deserializer.end().map(|()| event))
                    .map_err(|source| DecodeError::Data { kind: kind.to_string(), source })
            }
        }

        impl Serialize for EventDataOut<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    $(Event::$variant(data) => data.serialize(serializer),)*
                }
            }
        }

        impl<'k> EventData<'k> {
            /// Returns the reader of data of type `kind` at `schema`, or an error
            /// when either is unknown.
            pub fn new(kind: &'k str, schema: u16) -> Result<EventData<'k>, DecodeError> {
                if !matches!(kind, $(stringify!($variant))|*) {
                    return Err(DecodeError::UnknownType(kind.to_string()));
                }
                if schema != CURRENT_SCHEMA {
                    return Err(DecodeError::UnknownSchema { kind: kind.to_string(), schema });
                }
                Ok(EventData { kind })
            }
        }

        impl<'de> serde::de::DeserializeSeed<'de> for EventData<'_> {
            type Value = Event;

            fn deserialize<D: serde::Deserializer<'de>>(self, data: D) -> Result<Event, D::Error> {
                match self.kind {
                    $(stringify!($variant) => Deserialize::deserialize(data).map(Event::$variant),)*
                    // `EventData::new` admits only the kinds above.
                    other => Err(serde::de::Error::custom(DecodeError::UnknownType(other.into()))),
                }
            }
        }
    };
}

/// An event's data without its type, as `Event::data` returns it.
#[derive(Debug, Clone, Copy)]
pub struct EventDataOut<'a>(&'a Event);

/// A reader of the data of one event type from any deserializer, so that a
/// stored body is parsed in one pass, data included.
#[derive(Debug, Clone, Copy)]
pub struct EventData<'k> {
    kind: &'k str,
}

event_kinds!(
    DeveloperCreated,
    SubAccountCreated,
    SubAccountUpdated,
    SubAccountStatusChanged,
    SipAccountCreated,
    SipAccountUpdated,
    SipAccountDeleted,
    SipAliasAdded,
    SipAliasChanged,
    SipAliasRemoved,
    BalanceToppedUp,
    BalanceAdjusted,
    IdempotencyKeyRecorded,
);

impl Event {
    /// The stream (aggregate) the event belongs to: the developer, the
    /// sub-account for its profile and postings, the SIP account for itself
    /// and its aliases.
    pub fn stream(&self) -> Sid {
        match self {
            Event::DeveloperCreated(e) => e.sid,
            Event::SubAccountCreated(e) => e.sid,
            Event::SubAccountUpdated(e) => e.sid,
            Event::SubAccountStatusChanged(e) => e.sid,
            Event::SipAccountCreated(e) => e.sid,
            Event::SipAccountUpdated(e) => e.sid,
            Event::SipAccountDeleted(e) => e.sid,
            Event::SipAliasAdded(e) => e.sip_sid,
            Event::SipAliasChanged(e) => e.sip_sid,
            Event::SipAliasRemoved(e) => e.sip_sid,
            Event::BalanceToppedUp(e) | Event::BalanceAdjusted(e) => e.account_sid,
            Event::IdempotencyKeyRecorded(e) => e.stream,
        }
    }
}

/// Who caused an event: the platform, or a developer by its sid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    Platform,
    Developer(Sid),
}

impl Actor {
    pub fn to_text(self) -> String {
        match self {
            Actor::Platform => "platform".to_string(),
            Actor::Developer(sid) => sid.to_string(),
        }
    }

    pub fn parse(text: &str) -> Option<Actor> {
        if text == "platform" {
            return Some(Actor::Platform);
        }
        Sid::parse_kind(text, crate::domain::ids::SidKind::Developer).map(Actor::Developer)
    }
}

/// The `Idempotency-Key` of the request that caused an event, with a digest
/// of the request so that a repeat can be distinguished from a different request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 over the method, route and parameters (secrets left out),
    /// lower-case hex.
    pub fingerprint: String,
    /// The resource the request created.
    pub resource: Sid,
}

/// An event with everything the log stores about it except the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub request_id: String,
    /// Present on the first event of a request that carried an
    /// `Idempotency-Key` header.
    pub idempotency: Option<IdempotencyRecord>,
}

/// Events with only their required fields, for tests that build logs.
#[cfg(test)]
pub mod fixtures {
    use rust_decimal::Decimal;

    use super::{BalancePosted, Leg, SubAccountCreated};
    use crate::domain::ids::Sid;
    use crate::domain::money::Currency;

    /// Returns the creation of a sub-account in domain `sip.example.com`
    /// and the default currency, with no profile fields.
    pub fn sub_account_created(sid: Sid, developer: Sid, login_id: &str) -> SubAccountCreated {
        SubAccountCreated {
            sid,
            developer_sid: developer,
            login_id: login_id.to_string(),
            password_argon2: String::new(),
            first_name: None,
            last_name: None,
            email: None,
            mobile_phone: None,
            domain: "sip.example.com".to_string(),
            currency: Currency::DEFAULT,
        }
    }

    /// Returns a TOPUP of `amount` by PayPal (pay method 4) that leaves the
    /// sub-account at `balance_after`.
    pub fn top_up(
        sid: Sid,
        account: Sid,
        developer: Sid,
        amount: Decimal,
        balance_after: Decimal,
        reference: Option<&str>,
    ) -> BalancePosted {
        BalancePosted {
            sid,
            account_sid: account,
            developer_sid: developer,
            amount,
            currency: Currency::DEFAULT,
            pay_method: 4,
            refer_trans_id: reference.map(str::to_string),
            desc: None,
            legs: [
                Leg { account: format!("subaccount:{account}"), amount },
                Leg { account: "funding:paypal".to_string(), amount: -amount },
            ],
            balance_after,
        }
    }
}
