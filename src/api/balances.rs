//! `/v1/accounts/{sid}/balances` and `/v1/transactions`: the prepaid
//! balance, postings and their history.

use actix_web::{web, HttpRequest};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::api::accounts::{scope_filter, visible_account};
use crate::api::auth::{scope, Scope};
use crate::api::error::ApiError;
use crate::api::format::Reply;
use crate::api::params::{Body, Params};
use crate::api::views::{
    list_json, parse_time, rfc2822, transaction_json, PageRequest, TransactionView,
};
use crate::api::{path_sid, AppState, Call};
use crate::domain::ids::{Sid, SidKind};
use crate::domain::money::{format_amount, format_balance, parse_amount};
use crate::domain::posting::{check_amount_sign, parse_pay_method};
use crate::domain::text::{check_new_refer_trans_id, validate_desc, validate_refer_trans_id};
use crate::ledger::command::NewPosting;
use crate::ledger::{Command, Outcome};
use crate::projection::model::Transaction;
use crate::projection::{PostingType, State};

/// `GET …/balances[?at=TIME]`: the balance now, or after every posting at
/// or before `at` (zero before the first).
pub async fn fetch(
    request: HttpRequest,
    path: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    let at = call.params.take("at");
    call.finish_params()?;
    let state = &call.state;
    let account = visible_account(state, scope, &path)?;

    let (balance, updated) = match at {
        None => (account.balance, account.balance_updated),
        Some(text) => {
            let at = parse_time("at", &text)?;
            match last_posting_at_or_before(state, account.sid, at) {
                Some(posting) => (posting.balance_after, posting.created()),
                None => (Decimal::ZERO, account.created.min(at)),
            }
        }
    };
    let body = json!({
        "account_sid": account.sid.to_string(),
        "balance": format_balance(balance, account.currency),
        "balance_amount": format_amount(balance),
        "currency": account.currency.code(),
        "date_updated": rfc2822(updated),
        "uri": format!("/v1/accounts/{}/balances", account.sid),
    });
    Ok(Reply::ok("Balance", body))
}

/// The sub-account's newest posting recorded at or before `at`. Postings
/// are in log order and recorded times never decrease, so a binary search
/// finds it.
fn last_posting_at_or_before(
    state: &State,
    account: Sid,
    at: DateTime<Utc>,
) -> Option<&Transaction> {
    let postings = state.account_transactions.get(&account)?;
    let count = postings.len();
    let mut low = 0;
    let mut high = count;
    while low < high {
        let middle = (low + high) / 2;
        if state.posting(postings.get(middle)?)?.created() <= at {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let newest = postings.get(low.checked_sub(1)?)?;
    state.posting(newest)
}

/// `POST …/balances`: a TOPUP or ADJUSTMENT.
pub async fn post(
    request: HttpRequest,
    path: web::Path<String>,
    body: Body,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &body)?;
    let scope = scope(call.caller, &mut call.params)?;
    let amount = call.params.required("amount")?;
    let kind = call.params.required("type")?;
    let pay_method = call.params.required("pay_method")?;
    let refer_trans_id = call.params.take("refer_trans_id");
    let desc = call.params.take("desc");
    call.finish_params()?;

    let account = visible_account(&call.state, scope, &path)?;
    let amount =
        parse_amount(&amount).map_err(|error| ApiError::invalid("amount", error.to_string()))?;
    let kind = PostingType::parse(&kind)
        .ok_or_else(|| ApiError::invalid("type", "type must be TOPUP or ADJUSTMENT"))?;
    let pay_method = parse_pay_method(&pay_method)?;
    check_amount_sign(kind, amount)?;
    let refer_trans_id = refer_trans_id.map(|text| validate_refer_trans_id(&text)).transpose()?;
    if let Some(reference) = &refer_trans_id {
        // A reference already in the log keeps replaying, whatever it
        // contains, so only a reference that fails the check is looked up.
        if let Err(error) = check_new_refer_trans_id(reference) {
            if call.state.find_reference(account.developer, pay_method, reference).is_none() {
                return Err(error.into());
            }
        }
    }
    let desc = desc.map(|text| validate_desc(&text)).transpose()?;

    let posting = NewPosting {
        sid: Sid::generate_in_time_order(SidKind::Transaction),
        account: account.sid,
        kind,
        amount,
        pay_method,
        refer_trans_id,
        desc,
    };
    let outcome = app.ledger.submit(call.into_context(), Command::Post(Box::new(posting))).await?;

    let state = app.ledger.state();
    let (Outcome::Done(sid) | Outcome::Replayed(sid)) = outcome;
    let transaction = state.transaction(sid).ok_or_else(|| ApiError::not_found("transaction"))?;
    let body = TransactionView::new(transaction);
    Ok(match outcome {
        Outcome::Done(_) => Reply::created("Transaction", body),
        Outcome::Replayed(_) => Reply::ok("Transaction", body).replayed(),
    })
}

/// `GET …/balances/transactions/{BA sid}`.
pub async fn fetch_transaction(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    call.finish_params()?;
    let account = visible_account(&call.state, scope, &path.0)?;
    let sid = path_sid(&path.1, SidKind::Transaction, "transaction")?;
    match call.state.transaction(sid) {
        Some(transaction) if transaction.account() == account.sid => {
            Ok(Reply::ok("Transaction", TransactionView::new(transaction)))
        }
        _ => Err(ApiError::not_found("transaction")),
    }
}

/// The history filters: `type`, `pay_method`, `refer_trans_id`,
/// `start_date` (inclusive) and `end_date` (exclusive).
struct TransactionFilter {
    kind: Option<PostingType>,
    pay_method: Option<u16>,
    refer_trans_id: Option<String>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    /// The filters as given, for page links.
    given: Vec<(&'static str, String)>,
}

impl TransactionFilter {
    fn take(params: &mut Params) -> Result<TransactionFilter, ApiError> {
        let mut given = Vec::new();
        let mut take = |name: &'static str| {
            let value = params.take(name);
            if let Some(text) = &value {
                given.push((name, text.clone()));
            }
            value
        };
        let kind = take("type");
        let pay_method = take("pay_method");
        let refer_trans_id = take("refer_trans_id");
        let start = take("start_date");
        let end = take("end_date");
        let kind = kind
            .map(|text| {
                PostingType::parse(&text)
                    .ok_or_else(|| ApiError::invalid("type", "type must be TOPUP or ADJUSTMENT"))
            })
            .transpose()?;
        let pay_method = pay_method.map(|text| parse_pay_method(&text)).transpose()?;
        let refer_trans_id =
            refer_trans_id.map(|text| validate_refer_trans_id(&text)).transpose()?;
        let start = start.map(|text| parse_time("start_date", &text)).transpose()?;
        let end = end.map(|text| parse_time("end_date", &text)).transpose()?;
        Ok(TransactionFilter { kind, pay_method, refer_trans_id, start, end, given })
    }

    fn matches(&self, transaction: &Transaction) -> bool {
        self.kind.is_none_or(|kind| transaction.kind == kind)
            && self.pay_method.is_none_or(|code| transaction.pay_method == code)
            && self
                .refer_trans_id
                .as_ref()
                .is_none_or(|reference| transaction.refer_trans_id() == Some(reference))
            && self.start.is_none_or(|start| transaction.created() >= start)
            && self.end.is_none_or(|end| transaction.created() < end)
    }
}

fn list_transactions(
    request: &HttpRequest,
    mut call: Call,
    scope: Scope,
    account: Option<Sid>,
) -> Result<Reply, ApiError> {
    let page = PageRequest::from_params(&mut call.params)?;
    let filter = TransactionFilter::take(&mut call.params)?;
    call.finish_params()?;
    let state = &call.state;

    let order: Box<dyn Iterator<Item = &Transaction>> = match (account, scope) {
        (Some(account), _) => Box::new(
            state
                .account_transactions
                .get(&account)
                .into_iter()
                .flatten()
                .filter_map(|position| state.posting(position)),
        ),
        (None, Scope::All) => Box::new(state.transaction_order.iter()),
        (None, Scope::Developer(developer)) => {
            let positions = state.developer_transactions.get(&developer).into_iter().flatten();
            Box::new(positions.filter_map(|position| state.posting(*position)))
        }
    };
    let matching = order.filter(|transaction| filter.matches(transaction));
    let (items, has_next) = page.slice(matching);
    let items = items.into_iter().map(transaction_json).collect();
    let mut filters = scope_filter(call.caller, scope);
    filters.extend(filter.given.iter().cloned());
    let body = list_json(request, "transactions", items, page, has_next, &filters);
    Ok(Reply::ok("TransactionList", body))
}

/// `GET …/balances/transactions`: one sub-account's postings, oldest first.
pub async fn list_account(
    request: HttpRequest,
    path: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    let account = visible_account(&call.state, scope, &path)?.sid;
    list_transactions(&request, call, scope, Some(account))
}

/// `GET /v1/transactions`: all of the caller's postings, oldest first;
/// `refer_trans_id` finds a reference across sub-accounts.
pub async fn list_all(request: HttpRequest, app: web::Data<AppState>) -> Result<Reply, ApiError> {
    let mut call = Call::begin(&request, &app, &[])?;
    let scope = scope(call.caller, &mut call.params)?;
    list_transactions(&request, call, scope, None)
}
