//! The stored form of an event and its place in the hash chain.
//!
//! A stored value is one format byte, the previous event's hash (32 bytes),
//! this event's hash (32 bytes), and the event body as JSON. The hash is
//! `SHA-256(prev_hash ‖ body)` over the body bytes exactly as stored, so that
//! verification never depends on re-serializing anything.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::domain::events::{
    Actor, DecodeError, Event, EventData, EventMeta, IdempotencyRecord, CURRENT_SCHEMA,
};
use crate::domain::ids::Sid;
use crate::store::StoreError;

mod posting_body;

/// The first byte of every stored event value.
pub const FORMAT_V1: u8 = 1;
const HASH_BYTES: usize = 32;
const HEADER_BYTES: usize = 1 + 2 * HASH_BYTES;

/// The hash before the first event of a log.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// An event that the writer decided on, with its place in the log, before it
/// is sealed into the hash chain.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: u64,
    pub stream: Sid,
    pub version: u64,
    pub meta: EventMeta,
    pub event: Event,
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub seq: u64,
    pub stream: Sid,
    pub version: u64,
    pub meta: EventMeta,
    pub event: Event,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// A stored event value split into its parts, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    /// The body's bytes. Read from sled, a slice of the buffer that sled
    /// read the value into, so that reading an event copies no body.
    pub body: sled::IVec,
}

#[derive(Serialize)]
struct BodyOut<'a, D> {
    seq: u64,
    stream: Sid,
    version: u64,
    #[serde(rename = "type")]
    kind: &'a str,
    schema: u16,
    recorded_at: String,
    actor: String,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency: Option<&'a IdempotencyRecord>,
    data: D,
}

/// A stored body as read, borrowing its strings from the stored bytes where
/// JSON allows.
struct BodyIn<'a> {
    seq: u64,
    stream: Sid,
    version: u64,
    kind: Cow<'a, str>,
    schema: u16,
    recorded_at: DateTime<Utc>,
    actor: Cow<'a, str>,
    request_id: String,
    idempotency: Option<IdempotencyRecord>,
    data: DataIn<'a>,
}

/// The `data` member of a body: decoded in the same pass when `type` and
/// `schema` come before it, as they do in every body `encode_body` writes,
/// and otherwise kept as raw JSON to decode once they are known.
// A `DataIn` lives on the stack for one decode, and boxing the event would
// cost an allocation per event read.
#[allow(clippy::large_enum_variant)]
enum DataIn<'a> {
    Decoded(Result<Event, DecodeError>),
    Raw(&'a RawValue),
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Seq,
    Stream,
    Version,
    #[serde(rename = "type")]
    Kind,
    Schema,
    RecordedAt,
    Actor,
    RequestId,
    Idempotency,
    Data,
    #[serde(other)]
    Unknown,
}

/// Reads a body in one pass. When the data of a known type fails to
/// decode, `failed_kind` is set to that type, so that the error names the
/// event type whose data is invalid.
struct BodyVisitor<'f> {
    failed_kind: &'f Cell<Option<String>>,
}

/// Stores `value` in `slot`, failing on a member that appears twice.
fn set_once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = BodyIn<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an event body object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyIn<'de>, A::Error> {
        let mut seq = None;
        let mut stream = None;
        let mut version = None;
        let mut kind: Option<Cow<'de, str>> = None;
        let mut schema = None;
        let mut recorded_at = None;
        let mut actor = None;
        let mut request_id = None;
        let mut idempotency = None;
        let mut data = None;

        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Seq => set_once(&mut seq, "seq", map.next_value()?)?,
                Field::Stream => set_once(&mut stream, "stream", map.next_value()?)?,
                Field::Version => set_once(&mut version, "version", map.next_value()?)?,
                Field::Kind => {
                    let value = map.next_value::<CowStr<'de>>()?.0;
                    set_once(&mut kind, "type", value)?;
                }
                Field::Schema => set_once(&mut schema, "schema", map.next_value()?)?,
                Field::RecordedAt => {
                    let value = map.next_value::<CowStr<'de>>()?.0;
                    let parsed = parse_recorded_at(&value).ok_or_else(|| {
                        de::Error::invalid_value(de::Unexpected::Str(&value), &"an RFC 3339 time")
                    })?;
                    set_once(&mut recorded_at, "recorded_at", parsed)?;
                }
                Field::Actor => set_once(&mut actor, "actor", map.next_value::<CowStr<'de>>()?.0)?,
                Field::RequestId => set_once(&mut request_id, "request_id", map.next_value()?)?,
                Field::Idempotency => {
                    set_once(&mut idempotency, "idempotency", map.next_value()?)?;
                }
                Field::Data => {
                    let value = match (&kind, schema) {
                        (Some(kind), Some(schema)) => match EventData::new(kind, schema) {
                            Ok(seed) => {
                                self.failed_kind.set(Some(kind.to_string()));
                                let event = map.next_value_seed(seed)?;
                                self.failed_kind.set(None);
                                DataIn::Decoded(Ok(event))
                            }
                            Err(error) => {
                                map.next_value::<de::IgnoredAny>()?;
                                DataIn::Decoded(Err(error))
                            }
                        },
                        _ => DataIn::Raw(map.next_value()?),
                    };
                    set_once(&mut data, "data", value)?;
                }
                Field::Unknown => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }

        Ok(BodyIn {
            seq: seq.ok_or_else(|| de::Error::missing_field("seq"))?,
            stream: stream.ok_or_else(|| de::Error::missing_field("stream"))?,
            version: version.ok_or_else(|| de::Error::missing_field("version"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("type"))?,
            schema: schema.ok_or_else(|| de::Error::missing_field("schema"))?,
            recorded_at: recorded_at.ok_or_else(|| de::Error::missing_field("recorded_at"))?,
            actor: actor.ok_or_else(|| de::Error::missing_field("actor"))?,
            request_id: request_id.ok_or_else(|| de::Error::missing_field("request_id"))?,
            idempotency: idempotency.flatten(),
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        })
    }
}

/// A string borrowed from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CowStr<'de>, D::Error> {
        struct CowStrVisitor;
        impl<'de> Visitor<'de> for CowStrVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(value.to_string())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(CowStrVisitor)
    }
}

/// Parses `recorded_at`. `encode_body` writes UTC with microseconds
/// (`2024-05-01T12:34:56.123456Z`), and that form is read here directly.
/// Any other RFC 3339 form goes through chrono's parser, as a derived
/// `DateTime` field would.
fn parse_recorded_at(text: &str) -> Option<DateTime<Utc>> {
    parse_utc_micros(text).or_else(|| {
        let parsed: DateTime<chrono::FixedOffset> = text.parse().ok()?;
        Some(parsed.with_timezone(&Utc))
    })
}

/// Reads exactly `YYYY-MM-DDTHH:MM:SS.ffffffZ`, or returns `None`.
fn parse_utc_micros(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    if bytes.len() != 27 {
        return None;
    }
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')];
    if punctuation.iter().any(|&(at, byte)| bytes[at] != byte) || bytes[26] != b'Z' {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        bytes[from..to].iter().try_fold(0u32, |value, &byte| {
            byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?;
    let time =
        date.and_hms_micro_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?, number(20, 26)?)?;
    Some(time.and_utc())
}

/// Computes `SHA-256(prev_hash ‖ body)`.
pub fn chain_hash(prev_hash: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(body);
    hasher.finalize().into()
}

/// Bytes reserved for a stored value before its body is written. The
/// stored value of a TOPUP from `loadgen` takes 707 bytes, so most values
/// are written with one allocation and no copy.
const VALUE_CAPACITY: usize = 1024;

/// Serializes the body of a pending event: the envelope fields and the data.
pub fn encode_body(pending: &PendingEvent) -> Vec<u8> {
    let mut body = Vec::with_capacity(VALUE_CAPACITY - HEADER_BYTES);
    write_body(pending, &mut body);
    body
}

/// Appends the body of a pending event to `out`. The data is serialized in
/// place, in the same compact form as on its own, so no part of the body is
/// written twice or parsed again.
fn write_body(pending: &PendingEvent, out: &mut Vec<u8>) {
    let body = body_out(pending, pending.event.data());
    // serde_json fails only on a map key that is not a string, or on an
    // error that a type's own `Serialize` returns, and the body has neither.
    serde_json::to_writer(out, &body).expect("event body serializes to JSON");
}

/// Builds the members of a pending event's body, with `data` as its data.
fn body_out<D: Serialize>(pending: &PendingEvent, data: D) -> BodyOut<'_, D> {
    let recorded_at = pending.meta.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    BodyOut {
        seq: pending.seq,
        stream: pending.stream,
        version: pending.version,
        kind: pending.event.kind(),
        schema: CURRENT_SCHEMA,
        recorded_at,
        actor: pending.meta.actor.to_text(),
        request_id: &pending.meta.request_id,
        idempotency: pending.meta.idempotency.as_ref(),
        data,
    }
}

/// Seals a pending event after `prev_hash`: returns the stored value and the
/// event's hash. The body is written after a header whose hash is filled in
/// last.
pub fn seal(pending: &PendingEvent, prev_hash: &[u8; 32]) -> (Vec<u8>, [u8; 32]) {
    let mut value = Vec::with_capacity(VALUE_CAPACITY);
    value.push(FORMAT_V1);
    value.extend_from_slice(prev_hash);
    value.extend_from_slice(&[0; HASH_BYTES]);
    write_body(pending, &mut value);
    let hash = chain_hash(prev_hash, &value[HEADER_BYTES..]);
    value[1 + HASH_BYTES..HEADER_BYTES].copy_from_slice(&hash);
    (value, hash)
}

/// Checks a stored value's header and returns its `prev_hash` and hash.
fn split_header(seq: u64, value: &[u8]) -> Result<([u8; 32], [u8; 32]), StoreError> {
    if value.len() < HEADER_BYTES {
        return Err(StoreError::corrupt(seq, "stored event is shorter than its header"));
    }
    if value[0] != FORMAT_V1 {
        let reason = format!("unknown event format byte {}", value[0]);
        return Err(StoreError::corrupt(seq, reason));
    }
    let mut prev_hash = [0; 32];
    prev_hash.copy_from_slice(&value[1..1 + HASH_BYTES]);
    let mut hash = [0; 32];
    hash.copy_from_slice(&value[1 + HASH_BYTES..HEADER_BYTES]);
    Ok((prev_hash, hash))
}

impl RawEvent {
    /// Splits a stored value read under key `seq`, copying its body.
    pub fn from_stored(seq: u64, value: &[u8]) -> Result<RawEvent, StoreError> {
        let (prev_hash, hash) = split_header(seq, value)?;
        let body = sled::IVec::from(&value[HEADER_BYTES..]);
        Ok(RawEvent { seq, prev_hash, hash, body })
    }

    /// Splits a value that sled read under key `seq`. The body shares the
    /// value's buffer: a full replay reads about 800 MB of bodies for
    /// 1,300,001 events, and copying each took an allocation and a copy on
    /// the reading thread.
    pub fn from_sled(seq: u64, value: &sled::IVec) -> Result<RawEvent, StoreError> {
        let (prev_hash, hash) = split_header(seq, value)?;
        let body = value.subslice(HEADER_BYTES, value.len() - HEADER_BYTES);
        Ok(RawEvent { seq, prev_hash, hash, body })
    }

    /// Whether the stored hash matches `SHA-256(prev_hash ‖ body)`.
    pub fn hash_is_valid(&self) -> bool {
        chain_hash(&self.prev_hash, &self.body) == self.hash
    }

    /// Decodes the body. The sequence number inside the body must match the
    /// key it was stored under.
    pub fn decode(&self) -> Result<RecordedEvent, StoreError> {
        match posting_body::decode(self) {
            Some(recorded) => Ok(recorded),
            None => self.decode_with_serde(),
        }
    }

    /// Decodes the body through the direct reader of posting bodies alone,
    /// returning `None` where that reader declines the body. Public only
    /// for the differential fuzz target, which compares it with
    /// `decode_through_serde`.
    #[doc(hidden)]
    pub fn decode_posting_directly(&self) -> Option<RecordedEvent> {
        posting_body::decode(self)
    }

    /// Decodes the body through the serde reader alone. Public only for
    /// the differential fuzz target.
    #[doc(hidden)]
    pub fn decode_through_serde(&self) -> Result<RecordedEvent, StoreError> {
        self.decode_with_serde()
    }

    /// Decodes any body through serde, naming what is wrong with an
    /// invalid one.
    fn decode_with_serde(&self) -> Result<RecordedEvent, StoreError> {
        let failed_kind = Cell::new(None);
        let mut deserializer = serde_json::Deserializer::from_slice(&self.body);
        let visitor = BodyVisitor { failed_kind: &failed_kind };
        let body = deserializer
            .deserialize_map(visitor)
            .and_then(|body| deserializer.end().map(|()| body))
            .map_err(|source| {
                let reason = match failed_kind.take() {
                    Some(kind) => DecodeError::Data { kind, source }.to_string(),
                    None => format!("invalid event body: {source}"),
                };
                StoreError::corrupt(self.seq, reason)
            })?;
        if body.seq != self.seq {
            let reason = format!("event body says sequence {}", body.seq);
            return Err(StoreError::corrupt(self.seq, reason));
        }
        let actor = Actor::parse(&body.actor).ok_or_else(|| {
            StoreError::corrupt(self.seq, format!("invalid actor {:?}", body.actor))
        })?;
        let event = match body.data {
            DataIn::Decoded(event) => event,
            DataIn::Raw(data) => Event::decode(&body.kind, body.schema, data.get()),
        }
        .map_err(|error| StoreError::corrupt(self.seq, error.to_string()))?;
        Ok(RecordedEvent {
            seq: body.seq,
            stream: body.stream,
            version: body.version,
            meta: EventMeta {
                recorded_at: body.recorded_at,
                actor,
                request_id: body.request_id,
                idempotency: body.idempotency,
            },
            event,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }

    /// The body as a JSON value, for raw exports.
    pub fn body_json(&self) -> Result<serde_json::Value, StoreError> {
        serde_json::from_slice(&self.body)
            .map_err(|error| StoreError::corrupt(self.seq, format!("invalid event body: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rust_decimal::Decimal;

    use super::*;
    use crate::crypto::SipDigests;
    use crate::domain::events::{
        AccountStatus, BalancePosted, DeveloperCreated, IdempotencyKeyRecorded, Leg,
        SipAccountCreated, SipAccountDeleted, SipAccountUpdated, SipAliasAdded, SipAliasChanged,
        SipAliasRemoved, SubAccountCreated, SubAccountStatusChanged, SubAccountUpdated,
    };
    use crate::domain::ids::SidKind;
    use crate::domain::money::Currency;

    fn posting() -> PendingEvent {
        let account = Sid::new(SidKind::Account, 0xa1);
        let developer = Sid::new(SidKind::Developer, 0xd1);
        let amount = Decimal::new(1250, 2);
        PendingEvent {
            seq: 7,
            stream: account,
            version: 3,
            meta: EventMeta {
                recorded_at: Utc.timestamp_opt(1_714_566_896, 123_456_000).unwrap(),
                actor: Actor::Developer(developer),
                request_id: "req-\"quoted\"".into(),
                idempotency: Some(IdempotencyRecord {
                    key: "key-1".into(),
                    fingerprint: "00".repeat(32),
                    resource: Sid::new(SidKind::Transaction, 0xb1),
                }),
            },
            event: Event::BalanceToppedUp(BalancePosted {
                sid: Sid::new(SidKind::Transaction, 0xb1),
                account_sid: account,
                developer_sid: developer,
                amount,
                currency: Currency::parse("SGD").unwrap(),
                pay_method: 4,
                refer_trans_id: Some("ref-1".into()),
                desc: Some("a line\nwith escapes é".into()),
                legs: [
                    Leg { account: format!("subaccount:{account}"), amount },
                    Leg { account: "funding:paypal".into(), amount: -amount },
                ],
                balance_after: amount,
            }),
        }
    }

    /// Returns `posting()` with each kind of event in turn, with strings
    /// that JSON escapes and fields both present and absent.
    fn every_kind() -> Vec<PendingEvent> {
        let sid = |kind, value| Sid::new(kind, value);
        let (developer, account) = (sid(SidKind::Developer, 0xd1), sid(SidKind::Account, 0xa1));
        let (sip, alias) = (sid(SidKind::SipAccount, 0x51), sid(SidKind::SipAlias, 0x5a));
        let digests = SipDigests { ha1_md5: "0a".repeat(16), ha1_sha256: "b\\\"c\u{7f}".into() };
        let posted = match posting().event {
            Event::BalanceToppedUp(posted) => posted,
            other => panic!("posting() is a TOPUP, not {other:?}"),
        };
        let events = [
            Event::DeveloperCreated(DeveloperCreated {
                sid: developer,
                name: "Dév \"one\"\t".into(),
                api_key_sha256: "ab".repeat(32),
            }),
            Event::SubAccountCreated(SubAccountCreated {
                sid: account,
                developer_sid: developer,
                login_id: "login</&>".into(),
                password_argon2: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                first_name: Some("Zoë".into()),
                last_name: None,
                email: Some("a@example.com".into()),
                mobile_phone: None,
                domain: "sip.example.com".into(),
                currency: Currency::parse("JPY").unwrap(),
            }),
            Event::SubAccountUpdated(SubAccountUpdated {
                sid: account,
                password_argon2: None,
                first_name: None,
                last_name: Some("\u{1F600}\n".into()),
                email: None,
                mobile_phone: Some("+6591234567".into()),
                domain: None,
            }),
            Event::SubAccountStatusChanged(SubAccountStatusChanged {
                sid: account,
                from: AccountStatus::Active,
                to: AccountStatus::Suspended,
            }),
            Event::SipAccountCreated(SipAccountCreated {
                sid: sip,
                account_sid: account,
                sip_id: "sip-1".into(),
                domain: "sip.example.com".into(),
                digests: digests.clone(),
            }),
            Event::SipAccountUpdated(SipAccountUpdated {
                sid: sip,
                account_sid: account,
                domain: "other.example.com".into(),
                digests,
            }),
            Event::SipAccountDeleted(SipAccountDeleted {
                sid: sip,
                account_sid: account,
                alias_sids: vec![alias, sid(SidKind::SipAlias, u128::MAX)],
            }),
            Event::SipAliasAdded(SipAliasAdded {
                sid: alias,
                account_sid: account,
                sip_sid: sip,
                alias: "front-desk".into(),
                domain: "sip.example.com".into(),
            }),
            Event::SipAliasChanged(SipAliasChanged { sid: alias, sip_sid: sip, alias: "".into() }),
            Event::SipAliasRemoved(SipAliasRemoved { sid: alias, sip_sid: sip }),
            Event::BalanceToppedUp(posted.clone()),
            Event::BalanceAdjusted(BalancePosted {
                amount: Decimal::new(-1, 28),
                refer_trans_id: None,
                desc: None,
                ..posted
            }),
            Event::IdempotencyKeyRecorded(IdempotencyKeyRecorded {
                stream: account,
                resource: sid(SidKind::Transaction, 0xb1),
            }),
        ];
        events.into_iter().map(|event| PendingEvent { event, ..posting() }).collect()
    }

    #[test]
    fn data_in_place_matches_data_alone() {
        for pending in every_kind() {
            // The data serialized on its own, then put in the body as it is.
            let alone = serde_json::to_string(&pending.event.data()).unwrap();
            let alone = RawValue::from_string(alone).unwrap();
            let expected = serde_json::to_vec(&body_out(&pending, &*alone)).unwrap();
            let kind = pending.event.kind();
            assert_eq!(encode_body(&pending), expected, "{kind}");
            let (value, hash) = seal(&pending, &[9; 32]);
            assert_eq!(&value[HEADER_BYTES..], &expected[..], "{kind} sealed");
            assert_eq!(hash, chain_hash(&[9; 32], &expected), "{kind} hash");
            let raw = RawEvent::from_stored(7, &value).unwrap();
            assert_eq!(raw.prev_hash, [9; 32], "{kind} prev_hash");
            assert_eq!(raw.hash, hash, "{kind} stored hash");
            assert_eq!(raw.decode().unwrap().event, pending.event, "{kind} decodes");
        }
    }

    /// Every stored event's hash covers these bytes, and the posting
    /// reader expects their layout (`posting_body`).
    #[test]
    fn posting_body_is_unchanged() {
        let text = String::from_utf8(encode_body(&posting())).unwrap();
        let expected = concat!(
            r#"{"seq":7,"stream":"AC000000000000000000000000000000a1","version":3,"#,
            r#""type":"BalanceToppedUp","schema":1,"#,
            r#""recorded_at":"2024-05-01T12:34:56.123456Z","#,
            r#""actor":"DV000000000000000000000000000000d1","request_id":"req-\"quoted\"","#,
            r#""idempotency":{"key":"key-1","#,
            r#""fingerprint":"0000000000000000000000000000000000000000000000000000000000000000","#,
            r#""resource":"BA000000000000000000000000000000b1"},"#,
            r#""data":{"sid":"BA000000000000000000000000000000b1","#,
            r#""account_sid":"AC000000000000000000000000000000a1","#,
            r#""developer_sid":"DV000000000000000000000000000000d1","amount":"12.50","#,
            r#""currency":"SGD","pay_method":4,"refer_trans_id":"ref-1","#,
            r#""desc":"a line\nwith escapes é","#,
            r#""legs":[{"account":"subaccount:AC000000000000000000000000000000a1","#,
            r#""amount":"12.50"},{"account":"funding:paypal","amount":"-12.50"}],"#,
            r#""balance_after":"12.50"}}"#,
        );
        assert_eq!(text, expected);
    }

    /// Returns the body of `posting()` with its members in the given order.
    fn body_in_order(order: &[&str]) -> Vec<u8> {
        let body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&encode_body(&posting())).unwrap();
        let mut reordered = serde_json::Map::new();
        for name in order {
            reordered.insert(name.to_string(), body[*name].clone());
        }
        serde_json::to_vec(&reordered).unwrap()
    }

    fn raw_with_body(body: Vec<u8>) -> RawEvent {
        RawEvent {
            seq: 7,
            prev_hash: GENESIS_HASH,
            hash: chain_hash(&GENESIS_HASH, &body),
            body: body.into(),
        }
    }

    #[test]
    fn sealed_event_decodes() {
        let pending = posting();
        let (value, hash) = seal(&pending, &GENESIS_HASH);
        let raw = RawEvent::from_stored(7, &value).unwrap();
        assert!(raw.hash_is_valid(), "the sealed hash checks");
        let recorded = raw.decode().unwrap();
        assert_eq!(recorded.event, pending.event, "event");
        assert_eq!(recorded.meta, pending.meta, "meta");
        assert_eq!(recorded.stream, pending.stream, "stream");
        assert_eq!(recorded.version, pending.version, "version");
        assert_eq!(recorded.hash, hash, "hash");
    }

    #[test]
    fn sled_value_splits_in_place() {
        let (value, _) = seal(&posting(), &GENESIS_HASH);
        let stored = RawEvent::from_stored(7, &value).unwrap();
        let value = sled::IVec::from(value);
        let shared = RawEvent::from_sled(7, &value).unwrap();
        assert_eq!(shared.body, stored.body, "body");
        assert_eq!(shared.prev_hash, stored.prev_hash, "prev_hash");
        assert_eq!(shared.hash, stored.hash, "hash");
        let body_start = value.as_ptr().wrapping_add(HEADER_BYTES);
        assert_eq!(shared.body.as_ptr(), body_start, "the body is not copied");

        let short = sled::IVec::from(&value[..HEADER_BYTES - 1]);
        let error = RawEvent::from_sled(7, &short).unwrap_err().to_string();
        assert!(error.contains("shorter than its header"), "{error}");
        let mut other_format = value.to_vec();
        other_format[0] = FORMAT_V1 + 1;
        let error = RawEvent::from_sled(7, &other_format.into()).unwrap_err().to_string();
        assert!(error.contains("unknown event format byte"), "{error}");
    }

    #[test]
    fn data_before_type_decodes() {
        let order = [
            "data",
            "seq",
            "stream",
            "version",
            "type",
            "schema",
            "recorded_at",
            "actor",
            "request_id",
            "idempotency",
        ];
        let recorded = raw_with_body(body_in_order(&order)).decode().unwrap();
        assert_eq!(recorded.event, posting().event, "data read after its type is known");
        assert_eq!(recorded.meta, posting().meta, "meta");
    }

    #[test]
    fn missing_idempotency_is_none() {
        let order = [
            "seq",
            "stream",
            "version",
            "type",
            "schema",
            "recorded_at",
            "actor",
            "request_id",
            "data",
        ];
        let recorded = raw_with_body(body_in_order(&order)).decode().unwrap();
        assert_eq!(recorded.meta.idempotency, None, "idempotency absent");
    }

    #[test]
    fn missing_member_is_named() {
        let order = ["seq", "stream", "version", "type", "schema", "recorded_at", "actor", "data"];
        let error = raw_with_body(body_in_order(&order)).decode().unwrap_err().to_string();
        assert!(error.contains("event 7"), "names the event: {error}");
        assert!(error.contains("request_id"), "names the member: {error}");
    }

    #[test]
    fn duplicate_member_fails() {
        let body = encode_body(&posting());
        let text =
            String::from_utf8(body).unwrap().replacen("\"seq\":7,", "\"seq\":7,\"seq\":7,", 1);
        let error = raw_with_body(text.into_bytes()).decode().unwrap_err().to_string();
        assert!(error.contains("duplicate field"), "duplicate seq: {error}");
    }

    #[test]
    fn bad_data_names_type() {
        let text = String::from_utf8(encode_body(&posting())).unwrap();
        let text = text.replacen("\"pay_method\":4", "\"pay_method\":\"four\"", 1);
        let error = raw_with_body(text.into_bytes()).decode().unwrap_err().to_string();
        assert!(error.contains("event 7"), "names the event: {error}");
        assert!(
            error.contains("invalid data for event type BalanceToppedUp"),
            "names the type: {error}"
        );
    }

    #[test]
    fn unknown_type_and_schema_fail() {
        let text = String::from_utf8(encode_body(&posting())).unwrap();
        let unknown = text.replacen("\"BalanceToppedUp\"", "\"BalanceStolen\"", 1);
        let error = raw_with_body(unknown.into_bytes()).decode().unwrap_err().to_string();
        assert!(error.contains("unknown event type \"BalanceStolen\""), "type: {error}");
        let future = text.replacen("\"schema\":1", "\"schema\":9", 1);
        let error = raw_with_body(future.into_bytes()).decode().unwrap_err().to_string();
        assert!(error.contains("unknown schema version 9"), "schema: {error}");
    }

    #[test]
    fn recorded_at_matches_chrono() {
        let cases = [
            "2024-05-01T12:34:56.123456Z",
            "2024-02-29T00:00:00.000000Z",
            "1999-12-31T23:59:59.999999Z",
            "2024-05-01T12:34:56Z",
            "2024-05-01T14:34:56.5+02:00",
            "2024-05-01T12:34:56.123456789Z",
        ];
        for case in cases {
            let chrono: DateTime<Utc> =
                case.parse::<DateTime<chrono::FixedOffset>>().unwrap().into();
            assert_eq!(parse_recorded_at(case), Some(chrono), "{case}");
        }
        for case in ["2023-02-29T00:00:00.000000Z", "2024-05-01T24:00:00.000000Z", "2024-05-01"] {
            assert_eq!(parse_recorded_at(case), None, "{case} is not a time");
        }
    }
}
