//! Recorded events for the tests that fold logs without a store.

use chrono::{TimeZone, Utc};

use crate::domain::events::{Actor, Event, EventMeta, IdempotencyRecord};
use crate::domain::ids::Sid;
use crate::store::RecordedEvent;

/// Builds the event a store would return at `seq` as `version` of
/// `stream`, recorded at a time that grows with `seq`, outside any hash
/// chain.
pub(super) fn recorded(
    seq: u64,
    stream: Sid,
    version: u64,
    actor: Actor,
    event: Event,
    idempotency: Option<IdempotencyRecord>,
) -> RecordedEvent {
    let meta = EventMeta {
        recorded_at: Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap(),
        actor,
        request_id: format!("request-{seq}"),
        idempotency,
    };
    RecordedEvent { seq, stream, version, meta, event, prev_hash: [0; 32], hash: [0; 32] }
}
