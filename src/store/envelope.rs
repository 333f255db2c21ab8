//! The stored form of an event and its place in the hash chain.
//!
//! A stored value is one format byte, the previous event's hash (32 bytes),
//! this event's hash (32 bytes), and the event body as JSON. The hash is
//! `SHA-256(prev_hash ‖ body)` over the body bytes exactly as stored, so that
//! verification never depends on re-serializing anything.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::domain::events::{Actor, Event, EventMeta, IdempotencyRecord, CURRENT_SCHEMA};
use crate::domain::ids::Sid;
use crate::store::StoreError;

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
#[derive(Debug, Clone)]
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
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct BodyOut<'a> {
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
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct BodyIn<'a> {
    seq: u64,
    stream: Sid,
    version: u64,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    schema: u16,
    recorded_at: DateTime<Utc>,
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
    request_id: String,
    #[serde(default)]
    idempotency: Option<IdempotencyRecord>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Computes `SHA-256(prev_hash ‖ body)`.
pub fn chain_hash(prev_hash: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(body);
    hasher.finalize().into()
}

/// Serializes the body of a pending event: the envelope fields and the data.
pub fn encode_body(pending: &PendingEvent) -> Vec<u8> {
    let data_json =
        String::from_utf8(pending.event.encode_data()).expect("serde_json writes UTF-8");
    let data = RawValue::from_string(data_json).expect("event data is valid JSON");
    let recorded_at = pending.meta.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let body = BodyOut {
        seq: pending.seq,
        stream: pending.stream,
        version: pending.version,
        kind: pending.event.kind(),
        schema: CURRENT_SCHEMA,
        recorded_at,
        actor: pending.meta.actor.to_text(),
        request_id: &pending.meta.request_id,
        idempotency: pending.meta.idempotency.as_ref(),
        data: &data,
    };
    serde_json::to_vec(&body).expect("event body serializes to JSON")
}

/// Seals a pending event after `prev_hash`: returns the stored value and the
/// event's hash.
pub fn seal(pending: &PendingEvent, prev_hash: &[u8; 32]) -> (Vec<u8>, [u8; 32]) {
    let body = encode_body(pending);
    let hash = chain_hash(prev_hash, &body);
    let mut value = Vec::with_capacity(HEADER_BYTES + body.len());
    value.push(FORMAT_V1);
    value.extend_from_slice(prev_hash);
    value.extend_from_slice(&hash);
    value.extend_from_slice(&body);
    (value, hash)
}

impl RawEvent {
    /// Splits a stored value read under key `seq`.
    pub fn from_stored(seq: u64, value: &[u8]) -> Result<RawEvent, StoreError> {
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
        let body = value[HEADER_BYTES..].to_vec();
        Ok(RawEvent { seq, prev_hash, hash, body })
    }

    /// Whether the stored hash matches `SHA-256(prev_hash ‖ body)`.
    pub fn hash_is_valid(&self) -> bool {
        chain_hash(&self.prev_hash, &self.body) == self.hash
    }

    /// Decodes the body. The sequence number inside the body must match the
    /// key it was stored under.
    pub fn decode(&self) -> Result<RecordedEvent, StoreError> {
        let body: BodyIn<'_> = serde_json::from_slice(&self.body).map_err(|error| {
            StoreError::corrupt(self.seq, format!("invalid event body: {error}"))
        })?;
        if body.seq != self.seq {
            let reason = format!("event body says sequence {}", body.seq);
            return Err(StoreError::corrupt(self.seq, reason));
        }
        let actor = Actor::parse(&body.actor).ok_or_else(|| {
            StoreError::corrupt(self.seq, format!("invalid actor {:?}", body.actor))
        })?;
        let event = Event::decode(&body.kind, body.schema, body.data.get())
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
