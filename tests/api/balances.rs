//! The prepaid balance over HTTP: exact amounts in every accepted and
//! rejected form, balance display, pay methods, the prepaid guard, closed
//! and suspended sub-accounts, `refer_trans_id` and `Idempotency-Key`
//! replays, posting history with its filters, the balance at a time, and
//! the same responses after a restart.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::support::{assert_json_snapshot, Auth, Developer, Reply, Server};

/// Every pay method code the API takes.
pub const PAY_METHOD_CODES: [u16; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 242];

/// Returns the balances path of a sub-account.
pub fn balances_path(account: &str) -> String {
    format!("/v1/accounts/{account}/balances")
}

/// Returns the posting history path of a sub-account.
pub fn transactions_path(account: &str) -> String {
    format!("/v1/accounts/{account}/balances/transactions")
}

/// Creates a developer and one sub-account of it. Returns the developer and
/// the sub-account's sid.
pub async fn developer_with_account(server: &Server, login_id: &str) -> (Developer, String) {
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, login_id).await;
    let sid = account["sid"].as_str().expect("account sid").to_string();
    (developer, sid)
}

/// Sends a JSON body given as raw text, so that JSON numbers keep their
/// exact spelling.
pub async fn post_raw_json(server: &Server, auth: &Auth, path: &str, body: &str) -> Reply {
    let bytes = Some(body.as_bytes().to_vec());
    server.send(Method::POST, path, auth, Some("application/json"), bytes, &[]).await
}

/// Posts a TOPUP of `amount` with pay method 4 and asserts 201.
pub async fn top_up(server: &Server, auth: &Auth, account: &str, amount: &str) -> Value {
    let body = json!({"amount": amount, "type": "TOPUP", "pay_method": 4});
    let reply = server.post_json(&balances_path(account), auth, &body).await;
    reply.expect(201);
    reply.json.clone()
}

/// Reads the `balance_amount` of `GET …/balances`.
pub async fn balance_amount(server: &Server, auth: &Auth, account: &str) -> String {
    let reply = server.get(&balances_path(account), auth).await;
    reply.expect(200);
    reply.json["balance_amount"].as_str().expect("balance_amount").to_string()
}

/// Reads every item of the transaction list at `path` (with or without a
/// query) in pages of 1000.
pub async fn all_transactions(server: &Server, auth: &Auth, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut page = 0;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let page_path = format!("{path}{separator}page={page}&page_size=1000");
        let reply = server.get(&page_path, auth).await;
        reply.expect(200);
        let batch = reply.json["transactions"].as_array().expect("transactions array").clone();
        items.extend(batch);
        if reply.json["next_page_uri"].is_null() {
            return items;
        }
        page += 1;
    }
}

fn decimal(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|_| panic!("{text:?} is a decimal"))
}

fn text_of(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("no string {field} in {value}")).to_string()
}

/// Builds a JSON body whose `amount` member is the raw JSON text `amount`.
fn body_with_amount(amount: &str, kind: &str) -> String {
    format!(r#"{{"amount": {amount}, "type": "{kind}", "pay_method": 4}}"#)
}

#[tokio::test]
async fn amount_plain_forms() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "plain01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    // (JSON text of the amount, amount shown, balance after)
    let cases = [
        (r#""12.5""#, "12.50", "12.50"),
        ("12.5", "12.50", "25.00"),
        (r#""0007""#, "7.00", "32.00"),
        (r#""11.0041""#, "11.0041", "43.0041"),
        ("0.0001", "0.0001", "43.0042"),
        (r#""1.2300""#, "1.23", "44.2342"),
        (r#""999999999.9999""#, "999999999.9999", "1000000044.2341"),
        ("999999999.9999", "999999999.9999", "2000000044.234"),
    ];
    for (raw, amount, balance) in cases {
        let reply = post_raw_json(&server, &auth, &path, &body_with_amount(raw, "TOPUP")).await;
        reply.expect(201);
        assert_eq!(reply.json["amount"], amount, "amount of {raw}");
        assert_eq!(reply.json["balance_amount"], balance, "balance after {raw}");
    }

    let adjust = body_with_amount(r#""-0.0001""#, "ADJUSTMENT");
    let reply = post_raw_json(&server, &auth, &path, &adjust).await;
    reply.expect(201);
    assert_eq!(reply.json["amount"], "-0.0001", "negative adjustment amount");
    assert_eq!(reply.json["balance_amount"], "2000000044.2339", "balance after adjustment");
}

#[tokio::test]
async fn amount_rejected_forms() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "reject01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    let ten_thousand_digits = format!(r#""{}""#, "7".repeat(10_000));
    let thirty_digit_number = "123456789012345678901234567890".to_string();
    let one_and_400_zeros = format!("1{}", "0".repeat(400));
    let mut raw_amounts: Vec<String> = [
        r#""1e3""#,
        "1e3",
        r#""1E3""#,
        "1E3",
        r#""0.1e1""#,
        "0.1e1",
        "1e-2",
        r#""1.00001""#,
        "1.00001",
        r#""1000000000""#,
        "1000000000",
        r#""-1000000000""#,
        r#""1000000000.0000""#,
        r#""NaN""#,
        r#""nan""#,
        r#""Infinity""#,
        r#""-Infinity""#,
        r#""+1""#,
        r#""1,000""#,
        r#""1_000""#,
        r#"" 1""#,
        r#""1 ""#,
        r#""0x10""#,
        r#""""#,
        r#"".""#,
        r#""1.""#,
        r#"".5""#,
        r#""--1""#,
        r#""1.2.3""#,
        r#""１""#,
        r#""79228162514264337593543950336""#,
        r#""-79228162514264337593543950336.5""#,
        r#""0.00000000000000000000000000001""#,
        "79228162514264337593543950336",
        "true",
        "[1]",
        r#"{"value": 1}"#,
    ]
    .iter()
    .map(|raw| raw.to_string())
    .collect();
    raw_amounts.push(ten_thousand_digits);
    raw_amounts.push(thirty_digit_number);
    raw_amounts.push(format!(r#""{one_and_400_zeros}""#));
    raw_amounts.push(one_and_400_zeros);

    for raw in &raw_amounts {
        for kind in ["TOPUP", "ADJUSTMENT"] {
            let shown: String = raw.chars().take(40).collect();
            let reply = post_raw_json(&server, &auth, &path, &body_with_amount(raw, kind)).await;
            reply.expect_error(400);
            assert_eq!(reply.error_fields(), ["amount"], "{kind} {shown}: field at fault");
        }
    }

    let form = [("amount", "1e3"), ("type", "TOPUP"), ("pay_method", "4")];
    let reply = server.post_form(&path, &auth, &form).await;
    reply.expect_error(400);
    assert_eq!(reply.error_fields(), ["amount"], "form amount 1e3: field at fault");

    assert_eq!(balance_amount(&server, &auth, &account).await, "0.00", "balance untouched");
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert!(listed.is_empty(), "no transaction recorded: {listed:?}");
}

#[tokio::test]
async fn amount_zero_and_sign() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "zero01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    // Zero in any spelling is no TOPUP and no ADJUSTMENT.
    for raw in ["-0", r#""-0""#, "-0.00", r#""-0.00""#, "0", r#""0.0000""#] {
        for kind in ["TOPUP", "ADJUSTMENT"] {
            let reply = post_raw_json(&server, &auth, &path, &body_with_amount(raw, kind)).await;
            reply.expect_error(400);
            assert_eq!(reply.error_fields(), ["amount"], "{kind} {raw}: field at fault");
        }
    }

    // A TOPUP is positive; an ADJUSTMENT may be either sign.
    let negative_topup = body_with_amount(r#""-5""#, "TOPUP");
    let reply = post_raw_json(&server, &auth, &path, &negative_topup).await;
    reply.expect_error(400);
    assert_eq!(reply.error_fields(), ["amount"], "negative TOPUP: field at fault");
    let positive_adjustment = body_with_amount(r#""10.00""#, "ADJUSTMENT");
    post_raw_json(&server, &auth, &path, &positive_adjustment).await.expect(201);

    // Back to zero: shown without a minus sign.
    let back_to_zero = body_with_amount(r#""-10.0000""#, "ADJUSTMENT");
    let reply = post_raw_json(&server, &auth, &path, &back_to_zero).await;
    reply.expect(201);
    assert_eq!(reply.json["balance"], "S$0.00", "transaction balance at zero");
    assert_eq!(reply.json["balance_amount"], "0.00", "transaction balance_amount at zero");
    let balance = server.get(&path, &auth).await;
    assert_eq!(balance.json["balance"], "S$0.00", "balance at zero");
    assert_eq!(balance.json["balance_amount"], "0.00", "balance_amount at zero");
}

#[tokio::test]
async fn amount_number_matches_string() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "same01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    let as_string =
        r#"{"amount": "12.34", "type": "TOPUP", "pay_method": "4", "refer_trans_id": "r-1"}"#;
    let as_number =
        r#"{"amount": 12.34, "type": "TOPUP", "pay_method": 4, "refer_trans_id": "r-1"}"#;
    let first = post_raw_json(&server, &auth, &path, as_string).await;
    first.expect(201);
    let second = post_raw_json(&server, &auth, &path, as_number).await;
    second.expect(200);
    assert_eq!(second.json, first.json, "number and string give the same transaction");
    let form =
        [("amount", "12.340"), ("type", "TOPUP"), ("pay_method", "4"), ("refer_trans_id", "r-1")];
    let third = server.post_form(&path, &auth, &form).await;
    third.expect(200);
    assert_eq!(third.json, first.json, "form body gives the same transaction");

    let number = post_raw_json(&server, &auth, &path, &body_with_amount("0.5", "TOPUP")).await;
    let string = post_raw_json(&server, &auth, &path, &body_with_amount(r#""0.5""#, "TOPUP")).await;
    assert_eq!(number.json["amount"], "0.50", "amount from a number");
    assert_eq!(string.json["amount"], "0.50", "amount from a string");
    assert_eq!(balance_amount(&server, &auth, &account).await, "13.34", "balance");
}

#[tokio::test]
async fn balance_display_currencies() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let auth = developer.auth();

    // (currency, amount posted, balance shown at zero, balance shown after)
    let cases = [
        ("SGD", "10.5", "S$0.00", "S$10.50"),
        ("USD", "5.25", "$0.00", "$5.25"),
        ("EUR", "1", "€0.00", "€1.00"),
        ("MYR", "3", "MYR 0.00", "MYR 3.00"),
        ("GBP", "11.0041", "£0.00", "£11.0041"),
    ];
    for (index, (currency, amount, zero, shown)) in cases.into_iter().enumerate() {
        let login_id = format!("money{index:02}");
        let body = json!({"login_id": login_id, "password": "secret123", "currency": currency});
        let created = server.post_json("/v1/accounts", &auth, &body).await;
        created.expect(201);
        let account = created.sid();
        assert_eq!(created.json["balance"], zero, "{currency} balance of a new account");

        let posted = top_up(&server, &auth, &account, amount).await;
        assert_eq!(posted["currency"], currency, "{currency} transaction currency");
        assert_eq!(posted["balance"], shown, "{currency} transaction balance");

        let balance = server.get(&balances_path(&account), &auth).await;
        balance.expect(200);
        assert_eq!(balance.json["balance"], shown, "{currency} balance");
        assert_eq!(balance.json["currency"], currency, "{currency} balance currency");
        let fetched = server.get(&format!("/v1/accounts/{account}"), &auth).await;
        assert_eq!(fetched.json["balance"], shown, "{currency} account balance");
        assert_eq!(
            fetched.json["balance_amount"], balance.json["balance_amount"],
            "{currency} account balance_amount"
        );
    }
}

#[tokio::test]
async fn pay_method_codes() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "methods01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    for code in PAY_METHOD_CODES {
        let body = format!(r#"{{"amount": "1", "type": "TOPUP", "pay_method": {code}}}"#);
        let reply = post_raw_json(&server, &auth, &path, &body).await;
        reply.expect(201);
        assert_eq!(reply.json["pay_method"], code, "pay_method {code} shown");
    }
    let as_string = json!({"amount": "1", "type": "ADJUSTMENT", "pay_method": "242"});
    let reply = server.post_json(&path, &auth, &as_string).await;
    reply.expect(201);
    assert_eq!(reply.json["pay_method"], 242, "pay_method \"242\" shown as a number");

    let rejected = [
        "0", "11", "241", "243", "-1", "65540", "4.0", "1e1", r#""+4""#, r#"" 4""#, r#""4 ""#,
        r#""x""#, r#""""#, "true", "[4]",
    ];
    for raw in rejected {
        let body = format!(r#"{{"amount": "1", "type": "TOPUP", "pay_method": {raw}}}"#);
        let reply = post_raw_json(&server, &auth, &path, &body).await;
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), ["pay_method"], "pay_method {raw}: field at fault");
    }

    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), PAY_METHOD_CODES.len() + 1, "one transaction per accepted code");
    let filter_path = format!("{}?pay_method=242", transactions_path(&account));
    let filtered = all_transactions(&server, &auth, &filter_path).await;
    assert_eq!(filtered.len(), 2, "two postings with pay_method 242");
}

#[tokio::test]
async fn posting_required_and_unknown_parameters() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "params01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    let full = json!({"amount": "1", "type": "TOPUP", "pay_method": 4});
    for missing in ["amount", "type", "pay_method"] {
        let mut body = full.clone();
        body.as_object_mut().expect("object").remove(missing);
        let reply = server.post_json(&path, &auth, &body).await;
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), [missing], "missing {missing}: field at fault");
    }
    for kind in ["topup", "Adjustment", "REFUND", ""] {
        let body = json!({"amount": "1", "type": kind, "pay_method": 4});
        let reply = server.post_json(&path, &auth, &body).await;
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), ["type"], "type {kind:?}: field at fault");
    }
    let unknown = json!({"amount": "1", "type": "TOPUP", "pay_method": 4, "currency": "USD"});
    server.post_json(&path, &auth, &unknown).await.expect_error(400);
    let twice = r#"{"amount": "1", "amount": "2", "type": "TOPUP", "pay_method": 4}"#;
    post_raw_json(&server, &auth, &path, twice).await.expect_error(400);

    assert_eq!(balance_amount(&server, &auth, &account).await, "0.00", "balance untouched");
}

#[tokio::test]
async fn prepaid_guard() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "guard01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    top_up(&server, &auth, &account, "10").await;

    let overdraft = json!({"amount": "-10.01", "type": "ADJUSTMENT", "pay_method": 1});
    let reply = server.post_json(&path, &auth, &overdraft).await;
    reply.expect_error(422);
    assert_json_snapshot("posting_insufficient_balance", &reply.json);
    assert_eq!(balance_amount(&server, &auth, &account).await, "10.00", "balance after 422");
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 1, "the 422 records nothing");

    let huge = json!({"amount": "-999999999.9999", "type": "ADJUSTMENT", "pay_method": 1});
    server.post_json(&path, &auth, &huge).await.expect_error(422);

    let to_zero = json!({"amount": "-10", "type": "ADJUSTMENT", "pay_method": 1});
    let reply = server.post_json(&path, &auth, &to_zero).await;
    reply.expect(201);
    assert_eq!(reply.json["balance_amount"], "0.00", "balance may reach zero exactly");
    let below = json!({"amount": "-0.0001", "type": "ADJUSTMENT", "pay_method": 1});
    server.post_json(&path, &auth, &below).await.expect_error(422);
    assert_eq!(balance_amount(&server, &auth, &account).await, "0.00", "final balance");
}

#[tokio::test]
async fn account_status_rules() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "status01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    let account_path = format!("/v1/accounts/{account}");
    let reference = json!({
        "amount": "5", "type": "TOPUP", "pay_method": 4, "refer_trans_id": "before-close"
    });
    let first = server.post_json(&path, &auth, &reference).await;
    first.expect(201);

    // A suspended sub-account still takes postings.
    server.put_json(&account_path, &auth, &json!({"status": "suspended"})).await.expect(200);
    let reply = server
        .post_json(&path, &auth, &json!({"amount": "1", "type": "TOPUP", "pay_method": 4}))
        .await;
    reply.expect(201);
    assert_eq!(reply.json["balance_amount"], "6.00", "suspended account balance");

    // A closed one does not, but its balance and history stay readable.
    server.put_json(&account_path, &auth, &json!({"status": "closed"})).await.expect(200);
    let topup = json!({"amount": "1", "type": "TOPUP", "pay_method": 4});
    server.post_json(&path, &auth, &topup).await.expect_error(409);
    let adjustment = json!({"amount": "-1", "type": "ADJUSTMENT", "pay_method": 1});
    server.post_json(&path, &auth, &adjustment).await.expect_error(409);
    assert_eq!(balance_amount(&server, &auth, &account).await, "6.00", "closed account balance");
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 2, "closed account history");

    // Retrying an acknowledged posting still finds it.
    let retry = server.post_json(&path, &auth, &reference).await;
    retry.expect(200);
    assert_eq!(retry.json, first.json, "replay on a closed account");
}

#[tokio::test]
async fn foreign_account_not_found() {
    let server = Server::start().await;
    let (owner, account) = developer_with_account(&server, "owner01").await;
    let other = server.developer("Other").await;
    top_up(&server, &owner.auth(), &account, "5").await;
    let posted = top_up(&server, &owner.auth(), &account, "1").await;
    let transaction = text_of(&posted, "sid");

    let path = balances_path(&account);
    let body = json!({"amount": "1", "type": "TOPUP", "pay_method": 4});
    server.post_json(&path, &other.auth(), &body).await.expect_error(404);
    server.get(&path, &other.auth()).await.expect_error(404);
    let history = transactions_path(&account);
    server.get(&history, &other.auth()).await.expect_error(404);
    server.get(&format!("{history}/{transaction}"), &other.auth()).await.expect_error(404);
    let foreign_list = all_transactions(&server, &other.auth(), "/v1/transactions").await;
    assert!(foreign_list.is_empty(), "another developer lists none: {foreign_list:?}");
    assert_eq!(balance_amount(&server, &owner.auth(), &account).await, "6.00", "balance");
}

#[tokio::test]
async fn reference_replay() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "replay01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    let body = json!({
        "amount": "25.00", "type": "TOPUP", "pay_method": 4,
        "refer_trans_id": "paypal-0001", "desc": "March top-up"
    });
    let created = server.post_json(&path, &auth, &body).await;
    created.expect(201);
    assert_eq!(created.header("idempotent-replayed"), None, "a first posting is no replay");
    assert_json_snapshot("transaction_created", &created.json);

    let repeated = server.post_json(&path, &auth, &body).await;
    repeated.expect(200);
    assert_eq!(repeated.header("idempotent-replayed").as_deref(), Some("true"), "replay header");
    assert_eq!(repeated.json, created.json, "replay returns the original transaction");
    let same_value = json!({
        "amount": "25", "type": "TOPUP", "pay_method": "4",
        "refer_trans_id": "paypal-0001", "desc": "March top-up"
    });
    let equal = server.post_json(&path, &auth, &same_value).await;
    equal.expect(200);
    assert_eq!(equal.json["sid"], created.json["sid"], "equal amount replays");

    assert_eq!(balance_amount(&server, &auth, &account).await, "25.00", "posted once");
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 1, "one transaction");
}

#[tokio::test]
async fn reference_mismatch() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "mismatch01").await;
    let auth = developer.auth();
    let second_account = server.account(&developer, "mismatch02").await;
    let second_account = text_of(&second_account, "sid");
    let path = balances_path(&account);
    let original = json!({
        "amount": "25.00", "type": "TOPUP", "pay_method": 4,
        "refer_trans_id": "ref-77", "desc": "first"
    });
    server.post_json(&path, &auth, &original).await.expect(201);

    let everything = json!({
        "amount": "-1", "type": "ADJUSTMENT", "pay_method": 4,
        "refer_trans_id": "ref-77", "desc": "second"
    });
    let reply = server.post_json(&path, &auth, &everything).await;
    reply.expect_error(409);
    assert_eq!(reply.error_fields(), ["amount", "type", "desc"], "differing fields");
    assert_json_snapshot("posting_reference_mismatch", &reply.json);

    // (change, fields named)
    let cases: [(Value, &[&str]); 4] = [
        (json!({"amount": "25.01"}), &["amount"]),
        (json!({"type": "ADJUSTMENT"}), &["type"]),
        (json!({"desc": "other"}), &["desc"]),
        (json!({"desc": null}), &["desc"]),
    ];
    for (change, fields) in cases {
        let mut body = original.clone();
        for (name, value) in change.as_object().expect("object") {
            body[name] = value.clone();
        }
        let reply = server.post_json(&path, &auth, &body).await;
        reply.expect_error(409);
        assert_eq!(reply.error_fields(), fields, "fields named for {change}");
    }
    let reply = server.post_json(&balances_path(&second_account), &auth, &original).await;
    reply.expect_error(409);
    assert_eq!(reply.error_fields(), ["account_sid"], "fields named for another account");

    assert_eq!(balance_amount(&server, &auth, &account).await, "25.00", "first balance");
    let second_balance = balance_amount(&server, &auth, &second_account).await;
    assert_eq!(second_balance, "0.00", "second balance");
}

#[tokio::test]
async fn reference_scope() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "scope01").await;
    let auth = developer.auth();
    let other = server.developer("Other").await;
    let other_account = server.account(&other, "scope02").await;
    let other_account = text_of(&other_account, "sid");
    let second_account = server.account(&developer, "scope03").await;
    let second_account = text_of(&second_account, "sid");

    let posting = |pay_method: u16| json!({"amount": "3", "type": "TOPUP", "pay_method": pay_method, "refer_trans_id": "shared"});
    let first = server.post_json(&balances_path(&account), &auth, &posting(4)).await;
    first.expect(201);
    // Another pay method of the same developer: a different reference.
    let second = server.post_json(&balances_path(&second_account), &auth, &posting(5)).await;
    second.expect(201);
    // Another developer: a different reference.
    let other_path = balances_path(&other_account);
    let foreign = server.post_json(&other_path, &other.auth(), &posting(4)).await;
    foreign.expect(201);

    let found = all_transactions(&server, &auth, "/v1/transactions?refer_trans_id=shared").await;
    let sids: Vec<String> = found.iter().map(|item| text_of(item, "sid")).collect();
    assert_eq!(sids, [first.sid(), second.sid()], "the developer's postings with the reference");
    let everyone =
        all_transactions(&server, &Auth::Platform, "/v1/transactions?refer_trans_id=shared").await;
    assert_eq!(everyone.len(), 3, "the platform finds every developer's postings");
    let scoped_path = format!("/v1/transactions?refer_trans_id=shared&developer_id={}", other.sid);
    let scoped = all_transactions(&server, &Auth::Platform, &scoped_path).await;
    assert_eq!(scoped.len(), 1, "the platform acting for one developer");
}

#[tokio::test]
async fn rejected_posting_frees_reference() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "free01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    let charge = json!({
        "amount": "-5", "type": "ADJUSTMENT", "pay_method": 6, "refer_trans_id": "charge-1"
    });

    server.post_json(&path, &auth, &charge).await.expect_error(422);
    top_up(&server, &auth, &account, "5").await;
    let reply = server.post_json(&path, &auth, &charge).await;
    reply.expect(201);
    assert_eq!(reply.json["balance_amount"], "0.00", "balance after the charge");
    let again = server.post_json(&path, &auth, &charge).await;
    again.expect(200);
    assert_eq!(again.json["sid"], reply.json["sid"], "the reference is now taken");

    // A 400 does not take a reference either.
    let invalid = json!({
        "amount": "1e1", "type": "TOPUP", "pay_method": 6, "refer_trans_id": "topup-1"
    });
    server.post_json(&path, &auth, &invalid).await.expect_error(400);
    let valid = json!({
        "amount": "10", "type": "TOPUP", "pay_method": 6, "refer_trans_id": "topup-1"
    });
    server.post_json(&path, &auth, &valid).await.expect(201);
}

#[tokio::test]
async fn reference_and_desc_text() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "text01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    let posting = |reference: &str, desc: &str| {
        json!({
            "amount": "1", "type": "TOPUP", "pay_method": 4,
            "refer_trans_id": reference, "desc": desc
        })
    };

    let longest_reference = "r".repeat(128);
    let longest_desc = "d".repeat(512);
    let reply = server.post_json(&path, &auth, &posting(&longest_reference, &longest_desc)).await;
    reply.expect(201);
    assert_eq!(reply.json["refer_trans_id"], longest_reference, "128-character reference");
    assert_eq!(reply.json["desc"], longest_desc, "512-character desc");

    // (reference, desc, field at fault)
    let too_long_reference = "r".repeat(129);
    let too_long_desc = "d".repeat(513);
    let rejected = [
        ("", "ok", "refer_trans_id"),
        (too_long_reference.as_str(), "ok", "refer_trans_id"),
        ("tab\there", "ok", "refer_trans_id"),
        ("PP\u{200B}-1", "ok", "refer_trans_id"),
        ("\u{FEFF}ok-5", "ok", "refer_trans_id"),
        ("ok-1", "", "desc"),
        ("ok-2", too_long_desc.as_str(), "desc"),
        ("ok-3", "bell\u{7}", "desc"),
        ("ok-4", "\u{202E}reversed", "desc"),
    ];
    for (reference, desc, field) in rejected {
        let reply = server.post_json(&path, &auth, &posting(reference, desc)).await;
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), [field], "{reference:?} / {desc:?}: field at fault");
    }
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 1, "only the valid posting is recorded");
}

#[tokio::test]
async fn invisible_reference_in_log_replays() {
    use subledger::domain::events::{Actor, BalancePosted, Event, EventMeta, Leg};
    use subledger::domain::ids::{Sid, SidKind};
    use subledger::domain::money::Currency;
    use subledger::store::{EventStore, PendingEvent};

    let mut server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "zwsp01").await;
    let account_sid = Sid::parse(&account).expect("account sid");
    server.stop();

    // A TOPUP whose reference contains U+200B, as a log written before new
    // references had to be printable may contain.
    let reference = "PP\u{200B}-1";
    let store = subledger::server::open_store(&server.data_dir).expect("open the stopped log");
    let version = store.stream_sequences(account_sid).expect("the account's events").len();
    let amount = Decimal::new(500, 2);
    let event = Event::BalanceToppedUp(BalancePosted {
        sid: Sid::generate(SidKind::Transaction),
        account_sid,
        developer_sid: Sid::parse(&developer.sid).expect("developer sid"),
        amount,
        currency: Currency::Sgd,
        pay_method: 4,
        refer_trans_id: Some(reference.to_string()),
        desc: None,
        legs: [
            Leg { account: format!("subaccount:{account}"), amount },
            Leg { account: "funding:paypal".to_string(), amount: -amount },
        ],
        balance_after: amount,
    });
    let meta = EventMeta {
        recorded_at: chrono::Utc::now(),
        actor: Actor::Developer(Sid::parse(&developer.sid).expect("developer sid")),
        request_id: "old-reference".into(),
        idempotency: None,
    };
    let seq = store.head().seq + 1;
    let version = version as u64 + 1;
    let pending = PendingEvent { seq, stream: account_sid, version, meta, event };
    store.append(&[pending]).expect("append the posting");
    drop(store);

    let server = server.restart();
    let auth = developer.auth();
    let posting = |reference: &str| json!({"amount": "5", "type": "TOPUP", "pay_method": 4, "refer_trans_id": reference});
    let path = balances_path(&account);
    let replayed = server.post_json(&path, &auth, &posting(reference)).await;
    replayed.expect(200);
    assert_eq!(replayed.json["refer_trans_id"], reference, "the logged posting replays");
    let header = replayed.header("idempotent-replayed");
    assert_eq!(header.as_deref(), Some("true"), "replay header");

    let new = server.post_json(&path, &auth, &posting("PP\u{200B}-2")).await;
    new.expect_error(400);
    assert_eq!(new.error_fields(), ["refer_trans_id"], "a new invisible reference");
    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 1, "only the logged posting is recorded");
}

/// Asserts that a request with an `Idempotency-Key` is created once, then
/// replayed with the same body, and that a different request under the same
/// key is 409.
async fn check_idempotency_key(
    server: &Server,
    auth: &Auth,
    path: &str,
    body: &Value,
    different: &Value,
) -> Reply {
    let key = format!("key-{}", rand::random::<u64>());
    let headers = [("idempotency-key", key.as_str())];
    let send = |body: &Value| {
        let bytes = serde_json::to_vec(body).expect("JSON body");
        server.send(Method::POST, path, auth, Some("application/json"), Some(bytes), &headers)
    };
    let created = send(body).await;
    created.expect(201);
    let repeated = send(body).await;
    repeated.expect(200);
    assert_eq!(repeated.header("idempotent-replayed").as_deref(), Some("true"), "{path}: header");
    assert_eq!(repeated.json["sid"], created.json["sid"], "{path}: same resource");
    send(different).await.expect_error(409);
    created
}

#[tokio::test]
async fn idempotency_key_every_post() {
    let server = Server::start().await;
    let developers = check_idempotency_key(
        &server,
        &Auth::Platform,
        "/v1/developers",
        &json!({"name": "Keyed"}),
        &json!({"name": "Other"}),
    )
    .await;
    let developer = Developer { sid: developers.sid(), key: text_of(&developers.json, "api_key") };
    let auth = developer.auth();

    let account = check_idempotency_key(
        &server,
        &auth,
        "/v1/accounts",
        &json!({"login_id": "keyed01", "password": "secret123"}),
        &json!({"login_id": "keyed02", "password": "secret123"}),
    )
    .await
    .sid();
    let sip_path = format!("/v1/accounts/{account}/SIP");
    let sip = check_idempotency_key(
        &server,
        &auth,
        &sip_path,
        &json!({"sip_id": "keyedsip", "password": "secret123", "encrypt_type": 0}),
        &json!({"sip_id": "keyedsip2", "password": "secret123", "encrypt_type": 0}),
    )
    .await
    .sid();
    check_idempotency_key(
        &server,
        &auth,
        &format!("{sip_path}/{sip}/aliases"),
        &json!({"alias": "keyed-alias"}),
        &json!({"alias": "keyed-alias2"}),
    )
    .await;
    check_idempotency_key(
        &server,
        &auth,
        &balances_path(&account),
        &json!({"amount": "7", "type": "TOPUP", "pay_method": 4}),
        &json!({"amount": "8", "type": "TOPUP", "pay_method": 4}),
    )
    .await;
    assert_eq!(balance_amount(&server, &auth, &account).await, "7.00", "posted once");
}

#[tokio::test]
async fn idempotency_key_bound_on_reference_replay() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "keybind01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    let first =
        json!({"amount": "5", "type": "TOPUP", "pay_method": 4, "refer_trans_id": "bind-1"});
    server.post_json(&path, &auth, &first).await.expect(201);

    // The repeat carries a key for the first time: replayed by its reference.
    let headers = [("idempotency-key", "bind-key")];
    let send = |body: &Value| {
        let bytes = serde_json::to_vec(body).expect("JSON body");
        server.send(Method::POST, &path, &auth, Some("application/json"), Some(bytes), &headers)
    };
    let replayed = send(&first).await;
    replayed.expect(200);
    assert_eq!(replayed.header("idempotent-replayed").as_deref(), Some("true"));

    // The key is now bound: a different request under it is a conflict,
    // also after a restart.
    let other = json!({"amount": "6", "type": "TOPUP", "pay_method": 4});
    send(&other).await.expect_error(409);
    let server = server.restart();
    let bytes = serde_json::to_vec(&other).expect("JSON body");
    let after = server
        .send(Method::POST, &path, &auth, Some("application/json"), Some(bytes), &headers)
        .await;
    after.expect_error(409);
    assert_eq!(balance_amount(&server, &auth, &account).await, "5.00", "posted once");
}

#[tokio::test]
async fn fetch_transaction() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "fetch01").await;
    let auth = developer.auth();
    let second = server.account(&developer, "fetch02").await;
    let second = text_of(&second, "sid");
    let created = top_up(&server, &auth, &account, "4.5").await;
    let sid = text_of(&created, "sid");

    let fetched = server.get(&format!("{}/{sid}", transactions_path(&account)), &auth).await;
    fetched.expect(200);
    assert_eq!(fetched.json, created, "fetched transaction equals the created one");
    let suffixed = format!("{}/{sid}.json", transactions_path(&account));
    assert_eq!(server.get(&suffixed, &auth).await.json, created, ".json suffix");

    let wrong_account = format!("{}/{sid}", transactions_path(&second));
    server.get(&wrong_account, &auth).await.expect_error(404);
    let unknown = format!("{}/BA{}", transactions_path(&account), "0".repeat(32));
    server.get(&unknown, &auth).await.expect_error(404);
    let malformed = format!("{}/{}", transactions_path(&account), &sid[..20]);
    server.get(&malformed, &auth).await.expect_error(404);
    let wrong_kind = format!("{}/AC{}", transactions_path(&account), &sid[2..]);
    server.get(&wrong_kind, &auth).await.expect_error(404);
}

/// Sleeps into the next whole second, at least 50 ms away, so that what
/// was recorded before and after lies in different seconds.
async fn sleep_past_second() {
    let now = Utc::now();
    let mut wait = 1_000_000_000 - u64::from(now.timestamp_subsec_nanos());
    if wait < 50_000_000 {
        wait += 1_000_000_000;
    }
    tokio::time::sleep(Duration::from_nanos(wait + 5_000_000)).await;
}

fn parse_shown_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc2822(text)
        .unwrap_or_else(|_| panic!("{text:?} is RFC 2822"))
        .with_timezone(&Utc)
}

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn history_filters() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "history01").await;
    let auth = developer.auth();
    let path = balances_path(&account);
    let history = transactions_path(&account);

    // Two postings in one second, then two in a later second.
    let early_topup =
        json!({"amount": "10", "type": "TOPUP", "pay_method": 4, "refer_trans_id": "e1"});
    let early = server.post_json(&path, &auth, &early_topup).await;
    early.expect(201);
    let early_adjustment = json!({"amount": "-1", "type": "ADJUSTMENT", "pay_method": 1});
    server.post_json(&path, &auth, &early_adjustment).await.expect(201);
    sleep_past_second().await;
    let late_topup =
        json!({"amount": "5", "type": "TOPUP", "pay_method": 5, "refer_trans_id": "l1"});
    let late = server.post_json(&path, &auth, &late_topup).await;
    late.expect(201);
    let late_adjustment = json!({"amount": "-2", "type": "ADJUSTMENT", "pay_method": 1});
    server.post_json(&path, &auth, &late_adjustment).await.expect(201);

    let early_second = parse_shown_time(&text_of(&early.json, "date_created"));
    let late_second = parse_shown_time(&text_of(&late.json, "date_created"));
    assert!(early_second < late_second, "postings in different seconds");
    let late_rfc2822 = text_of(&late.json, "date_created");
    let late_rfc3339 = late_second.to_rfc3339();
    let late_in_singapore = late_second
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("offset"))
        .to_rfc3339();

    // (query, amounts listed)
    let cases: Vec<(String, Vec<&str>)> = vec![
        (String::new(), vec!["10.00", "-1.00", "5.00", "-2.00"]),
        ("type=TOPUP".into(), vec!["10.00", "5.00"]),
        ("type=ADJUSTMENT".into(), vec!["-1.00", "-2.00"]),
        ("pay_method=1".into(), vec!["-1.00", "-2.00"]),
        ("pay_method=5".into(), vec!["5.00"]),
        ("refer_trans_id=e1".into(), vec!["10.00"]),
        ("refer_trans_id=none".into(), vec![]),
        ("type=TOPUP&pay_method=1".into(), vec![]),
        (format!("start_date={}", encoded(&late_rfc2822)), vec!["5.00", "-2.00"]),
        (format!("end_date={}", encoded(&late_rfc2822)), vec!["10.00", "-1.00"]),
        (format!("start_date={}", encoded(&late_rfc3339)), vec!["5.00", "-2.00"]),
        (format!("end_date={}", encoded(&late_in_singapore)), vec!["10.00", "-1.00"]),
        (
            format!(
                "start_date={}&end_date={}",
                encoded(&early_second.to_rfc3339()),
                encoded(&late_rfc3339)
            ),
            vec!["10.00", "-1.00"],
        ),
        (format!("start_date={0}&end_date={0}", encoded(&late_rfc3339)), vec![]),
    ];
    for (query, expected) in &cases {
        let reply = server.get(&format!("{history}?{query}"), &auth).await;
        reply.expect(200);
        let amounts: Vec<String> = reply.json["transactions"]
            .as_array()
            .expect("transactions")
            .iter()
            .map(|item| text_of(item, "amount"))
            .collect();
        assert_eq!(&amounts, expected, "amounts listed for {query:?}");
    }

    // The same filters across the developer's sub-accounts.
    let all = server.get("/v1/transactions?type=TOPUP&pay_method=5", &auth).await;
    all.expect(200);
    assert_eq!(all.json["transactions"][0]["sid"], late.json["sid"], "filtered across accounts");

    // Time filters need an offset; other filter values are checked too.
    let rejected = [
        ("start_date", "2026-01-31T12:00:00"),
        ("end_date", "2026-01-31"),
        ("start_date", "31 Jan 2026 12:00:00"),
        ("end_date", "yesterday"),
        ("start_date", "1769860800"),
        ("type", "topup"),
        ("pay_method", "11"),
        ("refer_trans_id", ""),
    ];
    for (name, value) in rejected {
        let query = format!("{history}?{name}={}", encoded(value));
        let reply = server.get(&query, &auth).await;
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), [name], "{name}={value:?}: field at fault");
        let across = format!("/v1/transactions?{name}={}", encoded(value));
        server.get(&across, &auth).await.expect_error(400);
    }

    // The balance at a time: after every posting at or before it.
    let just_before_late = (late_second - chrono::Duration::milliseconds(1)).to_rfc3339();
    let before_early = (early_second - chrono::Duration::seconds(1)).to_rfc3339();
    let at_cases = [
        (before_early, "0.00"),
        ("2001-01-01T00:00:00Z".to_string(), "0.00"),
        (just_before_late, "9.00"),
        ("2999-01-01T00:00:00+08:00".to_string(), "12.00"),
    ];
    for (at, expected) in at_cases {
        let reply = server.get(&format!("{path}?at={}", encoded(&at)), &auth).await;
        reply.expect(200);
        assert_eq!(reply.json["balance_amount"], expected, "balance at {at}");
        assert_eq!(reply.json["account_sid"], account.as_str(), "account_sid at {at}");
    }
    for at in ["2026-01-31T12:00:00", "soon", "", "0000-01-01T00:00:00+01:00"] {
        let reply = server.get(&format!("{path}?at={}", encoded(at)), &auth).await;
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), ["at"], "at={at:?}: field at fault");
    }
}

#[tokio::test]
async fn balance_at_leap_second() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "leap01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    // A time before the sub-account existed is shown as given, so a leap
    // second in `at` comes back as second 60, in both accepted forms.
    const LEAP_SECOND: &str = "31 Dec 2016 23:59:60 +0000";
    for at in ["2016-12-31T23:59:60Z", LEAP_SECOND] {
        let reply = server.get(&format!("{path}?at={}", encoded(at)), &auth).await;
        reply.expect(200);
        assert_eq!(reply.json["balance_amount"], "0.00", "balance at {at}");
        assert_eq!(reply.json["date_updated"], LEAP_SECOND, "date_updated at {at}");
    }
}

#[tokio::test]
async fn history_pages() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "pages01").await;
    let auth = developer.auth();
    for amount in ["1", "2", "3", "4", "5"] {
        top_up(&server, &auth, &account, amount).await;
    }
    let history = transactions_path(&account);

    let first = server.get(&format!("{history}?page_size=2&type=TOPUP"), &auth).await;
    first.expect(200);
    assert_json_snapshot("transaction_list", &first.json);
    let next = text_of(&first.json, "next_page_uri");
    assert!(next.contains("type=TOPUP"), "filters kept in next_page_uri: {next}");
    let second = server.get(&next, &auth).await;
    second.expect(200);
    let amounts: Vec<String> = second.json["transactions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| text_of(t, "amount"))
        .collect();
    assert_eq!(amounts, ["3.00", "4.00"], "second page");
    let last = server.get(&text_of(&second.json, "next_page_uri"), &auth).await;
    assert_eq!(last.json["transactions"].as_array().map(Vec::len), Some(1), "last page");
    assert!(last.json["next_page_uri"].is_null(), "no page after the last");
    assert!(!last.json["previous_page_uri"].is_null(), "a page before the last");

    for query in ["page_size=0", "page_size=1001", "page=-1", "page=x"] {
        server.get(&format!("{history}?{query}"), &auth).await.expect_error(400);
    }
}

#[tokio::test]
async fn balance_shape() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "shape02").await;
    let auth = developer.auth();
    top_up(&server, &auth, &account, "10.5").await;
    let reply = server.get(&balances_path(&account), &auth).await;
    reply.expect(200);
    assert_json_snapshot("balance", &reply.json);
    let platform = server.get(&balances_path(&account), &Auth::Platform).await;
    assert_eq!(platform.json, reply.json, "the platform reads the same balance");
}

#[tokio::test]
async fn posting_chain_survives_restart() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server, "chain01").await;
    let auth = developer.auth();
    let path = balances_path(&account);

    // Two TOPUPs of 1 to 11 come before every ADJUSTMENT, which is below 7
    // in magnitude, so the balance never goes below zero. Amounts use all
    // four fraction digits.
    let mut expected = Decimal::ZERO;
    let mut expected_after = Vec::new();
    for index in 0..240u32 {
        let (kind, amount) = if index % 3 == 2 {
            ("ADJUSTMENT", format!("-{}.{:04}", index % 7, index))
        } else {
            ("TOPUP", format!("{}.{:04}", index % 11 + 1, index * 37 % 10_000))
        };
        let pay_method = PAY_METHOD_CODES[index as usize % PAY_METHOD_CODES.len()];
        let body = json!({
            "amount": amount, "type": kind, "pay_method": pay_method,
            "refer_trans_id": format!("chain-{index}")
        });
        let reply = server.post_json(&path, &auth, &body).await;
        reply.expect(201);
        expected += decimal(&amount);
        let after = decimal(&text_of(&reply.json, "balance_amount"));
        assert_eq!(after, expected, "balance after posting {index}");
        expected_after.push(after);
    }

    let listed = all_transactions(&server, &auth, &transactions_path(&account)).await;
    assert_eq!(listed.len(), 240, "every posting listed");
    let mut running = Decimal::ZERO;
    for (index, item) in listed.iter().enumerate() {
        assert_eq!(item["refer_trans_id"], format!("chain-{index}"), "order at {index}");
        running += decimal(&text_of(item, "amount"));
        let after = decimal(&text_of(item, "balance_amount"));
        assert_eq!(after, running, "balance_after chained at {index}");
        assert_eq!(after, expected_after[index], "balance_after as acknowledged at {index}");
    }
    let final_amount = balance_amount(&server, &auth, &account).await;
    assert_eq!(decimal(&final_amount), expected, "final balance");

    let middle = parse_shown_time(&text_of(&listed[120], "date_created"));
    let at_path = format!("{path}?at={}", encoded(&middle.to_rfc3339()));
    let reads = [
        path.clone(),
        at_path,
        format!("{}?page_size=1000", transactions_path(&account)),
        "/v1/transactions?refer_trans_id=chain-7".to_string(),
        format!("{}/{}", transactions_path(&account), text_of(&listed[9], "sid")),
    ];
    let mut before = Vec::new();
    for read in &reads {
        before.push(server.get(read, &auth).await.json);
    }

    let server = server.restart();
    for (read, answer) in reads.iter().zip(&before) {
        let reply = server.get(read, &auth).await;
        reply.expect(200);
        assert_eq!(&reply.json, answer, "{read} after restart");
    }
    let replay = json!({
        "amount": "-2.0002", "type": "ADJUSTMENT", "pay_method": PAY_METHOD_CODES[2],
        "refer_trans_id": "chain-2"
    });
    let reply = server.post_json(&path, &auth, &replay).await;
    reply.expect(200);
    assert_eq!(reply.json["sid"], listed[2]["sid"], "reference kept across restart");
}
