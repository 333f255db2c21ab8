//! `GET /v1/accounts/{sid}/events`: an auditor's view of a sub-account's
//! raw events, oldest first. They are the events of the sub-account's own
//! stream (profile, status, postings) and of every SIP account it ever had,
//! deleted ones included (SIP accounts and their aliases), each with its
//! place in the hash chain.
//!
//! Unlike other handlers this one reads the log itself, because the
//! projections keep no event bodies. The reads run on the blocking pool.
//! Event data is shown without the secrets the log keeps in hashed form.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use crate::api::accounts::{scope_filter, visible_account};
use crate::api::auth::scope;
use crate::api::error::ApiError;
use crate::api::format::Reply;
use crate::api::views::{list_json, rfc2822, PageRequest};
use crate::api::{AppState, Call};
use crate::domain::ids::Sid;
use crate::store::{EventStore, RawEvent, StoreError};

/// Event data fields that hold hashed secrets: login password hashes, SIP
/// digest hashes and API key hashes. A hash of a guessable secret gives it
/// back to an offline search, so it never leaves the log.
const SECRET_FIELDS: [&str; 3] = ["password_argon2", "digests", "api_key_sha256"];

/// `GET /v1/accounts/{account_sid}/events`.
pub async fn list(
    request: HttpRequest,
    path: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    let page = PageRequest::from_params(&mut call.params)?;
    call.finish_params()?;
    let account = visible_account(&call.state, scope, &path)?;

    let mut streams = vec![account.sid];
    if let Some(sip_accounts) = call.state.account_sip_history.get(&account.sid) {
        streams.extend(sip_accounts.iter().copied());
    }
    let store = app.ledger.store.clone();
    let visible_up_to = call.state.last_seq;
    let read = web::block(move || read_page(store.as_ref(), &streams, visible_up_to, page)).await;
    let (items, has_next) = match read {
        Ok(Ok(page)) => page,
        Ok(Err(error)) => {
            tracing::error!(account = %account.sid, %error, "reading the account's events failed");
            return Err(ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR));
        }
        Err(error) => {
            tracing::error!(account = %account.sid, %error, "the event reading task failed");
            return Err(ApiError::for_status(StatusCode::INTERNAL_SERVER_ERROR));
        }
    };
    let filters = scope_filter(call.caller, scope);
    let body = list_json(&request, "events", items, page, has_next, &filters);
    Ok(Reply::ok("EventList", body))
}

/// Reads one page of the streams' events up to sequence `visible_up_to`,
/// merged in log order, and whether a next page has events. Events after
/// the published state may not be durable yet, so they are not shown.
///
/// NOTE: each request lists every sequence number of the streams before
/// slicing the page, so its cost grows with the length of the account's
/// history, not only with the page size.
fn read_page(
    store: &dyn EventStore,
    streams: &[Sid],
    visible_up_to: u64,
    page: PageRequest,
) -> Result<(Vec<Value>, bool), StoreError> {
    let mut sequences = Vec::new();
    for stream in streams {
        let stream_sequences = store.stream_sequences(*stream)?;
        sequences.extend(stream_sequences.into_iter().filter(|seq| *seq <= visible_up_to));
    }
    sequences.sort_unstable();
    let (page_sequences, has_next) = page.slice(sequences.into_iter());

    let mut items = Vec::with_capacity(page_sequences.len());
    for seq in page_sequences {
        let raw = store
            .read_raw(seq)?
            .ok_or_else(|| StoreError::corrupt(seq, "the stream index lists a missing event"))?;
        items.push(event_json(&raw)?);
    }
    Ok((items, has_next))
}

/// One event as the API shows it.
fn event_json(raw: &RawEvent) -> Result<Value, StoreError> {
    let recorded = raw.decode()?;
    let mut body = raw.body_json()?;
    let mut data = body["data"].take();
    if let Value::Object(fields) = &mut data {
        for secret in SECRET_FIELDS {
            fields.shift_remove(secret);
        }
    }
    Ok(json!({
        "seq": raw.seq,
        "stream": recorded.stream.to_string(),
        "version": recorded.version,
        "type": recorded.event.kind(),
        "recorded_at": rfc2822(recorded.meta.recorded_at),
        "actor": recorded.meta.actor.to_text(),
        "request_id": recorded.meta.request_id,
        "data": data,
        "prev_hash": hex::encode(raw.prev_hash),
        "hash": hex::encode(raw.hash),
    }))
}
