//! The catalogue of operations: every route with its parameters, request
//! body, success responses and extra error statuses. Limits, codes and
//! patterns come from the constants the handlers check against.

use actix_web::http::Method;
use serde_json::{json, Value};

use crate::api::openapi::{param, Access, Body, Link, Operation, Param, Success};
use crate::api::views::{PAGE_MAX, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};
use crate::domain::money::Currency;
use crate::domain::posting::PAY_METHODS;
use crate::domain::text::{
    ALIAS_CHARS_MAX, DESC_CHARS_MAX, DOMAIN_CHARS_MAX, EMAIL_CHARS_MAX, NAME_CHARS_MAX,
    REFER_TRANS_ID_CHARS_MAX,
};

fn string_schema(chars_max: usize, description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": chars_max, "description": description})
}

fn pattern_schema(pattern: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": pattern, "description": description})
}

fn developer_id() -> Param {
    let schema = json!({
        "type": "string",
        "pattern": "^DV[0-9a-f]{32}$",
        "description": "The developer the platform acts for. A developer passing it gets 400.",
    });
    param("developer_id", false, schema)
}

fn page_params() -> Vec<Param> {
    vec![
        param("page", false, json!({"type": "integer", "minimum": 0, "maximum": PAGE_MAX})),
        param(
            "page_size",
            false,
            json!({"type": "integer", "minimum": 1, "maximum": PAGE_SIZE_MAX,
                   "default": PAGE_SIZE_DEFAULT}),
        ),
    ]
}

fn time_schema(description: &str) -> Value {
    let text = format!(
        "{description} RFC 3339 (`2026-01-31T12:00:00Z`) or RFC 2822 \
         (`31 Jan 2026 12:00:00 +0000`); the offset is required."
    );
    json!({"type": "string", "minLength": 1, "description": text})
}

fn login_id_schema(description: &str) -> Value {
    pattern_schema("^[A-Za-z][A-Za-z0-9._-]{3,31}$", description)
}

fn password_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "description": "With `encrypt_type` 0, the password itself: 8 to 128 printable ASCII \
            characters without spaces, with at least one letter and one digit. With \
            `encrypt_type` 1, base64 of a 12-byte nonce, the AES-256-GCM ciphertext of \
            the password and its tag, under the server's AES key.",
    })
}

fn encrypt_type_schema(default: u32) -> Value {
    json!({
        "anyOf": [
            {"type": "integer", "enum": [0, 1]},
            {"type": "string", "enum": ["0", "1"]},
        ],
        "default": default,
        "description": "0: `password` is plain text. 1: `password` is AES-encrypted.",
    })
}

/// Lists the profile fields of a sub-account. `domain_when_absent` is
/// what an absent `domain` means for the operation.
fn profile_params(domain_when_absent: &str) -> Vec<Param> {
    vec![
        param("first_name", false, string_schema(NAME_CHARS_MAX, "Stored after NFC.")),
        param("last_name", false, string_schema(NAME_CHARS_MAX, "Stored after NFC.")),
        param("email", false, string_schema(EMAIL_CHARS_MAX, "One `@` with text on both sides.")),
        param(
            "mobile_phone",
            false,
            pattern_schema("^\\+?[0-9]{4,15}$", "Shown as `phone_number`."),
        ),
        param("domain", false, domain_schema(Some(domain_when_absent))),
    ]
}

/// Describes a SIP domain parameter. `when_absent` completes the sentence
/// "… when absent" for an optional one, and is `None` for a required one.
fn domain_schema(when_absent: Option<&str>) -> Value {
    let description = match when_absent {
        Some(meaning) => format!("A DNS name, compared lower-cased; {meaning} when absent."),
        None => "A DNS name, compared lower-cased.".to_string(),
    };
    string_schema(DOMAIN_CHARS_MAX, &description)
}

fn status_schema() -> Value {
    json!({"type": "string", "enum": ["active", "suspended", "closed"]})
}

fn alias_schema() -> Value {
    let pattern = format!("^[A-Za-z0-9+][A-Za-z0-9+._-]{{0,{}}}$", ALIAS_CHARS_MAX - 1);
    pattern_schema(&pattern, "Unique in the domain among SIP ids and aliases.")
}

fn pay_method_schema() -> Value {
    let codes: Vec<u16> = PAY_METHODS.iter().map(|(code, _, _)| *code).collect();
    let texts: Vec<String> = codes.iter().map(u16::to_string).collect();
    let names: Vec<String> =
        PAY_METHODS.iter().map(|(code, _, label)| format!("{code} {label}")).collect();
    json!({
        "anyOf": [{"type": "integer", "enum": codes}, {"type": "string", "enum": texts}],
        "description": format!("Pay method code: {}.", names.join(", ")),
    })
}

fn transaction_filters() -> Vec<Param> {
    let kind = json!({"type": "string", "enum": ["TOPUP", "ADJUSTMENT"]});
    vec![
        param("type", false, kind),
        param("pay_method", false, pay_method_schema()),
        param("refer_trans_id", false, string_schema(REFER_TRANS_ID_CHARS_MAX, "Exact match.")),
        param("start_date", false, time_schema("Postings at or after this time.")),
        param("end_date", false, time_schema("Postings before this time.")),
    ]
}

/// Lists every operation of the API.
pub fn operations() -> Vec<Operation> {
    let mut all = operations_ops();
    all.extend(operations_accounts());
    all.extend(operations_sip());
    all.extend(operations_balances());
    all.push(operation_events());
    all
}

/// Starts the description of a GET on a public route.
fn public_get(path: &'static str, id: &'static str, summary: &'static str) -> Operation {
    Operation {
        method: Method::GET,
        path,
        id,
        summary,
        tag: "operations",
        access: Access::Public,
        query: Vec::new(),
        body: None,
        success: Vec::new(),
        extra_errors: &[],
        links: Vec::new(),
    }
}

fn success(status: u16, description: &'static str, schema: Option<&'static str>) -> Success {
    Success { status, description, schema }
}

/// Lists the two successes of a create: 201, and 200 for a replay of an
/// earlier request with the same `Idempotency-Key` or `refer_trans_id`.
fn created(schema: &'static str) -> Vec<Success> {
    vec![
        success(201, "Created.", Some(schema)),
        success(200, "The same request again: the resource as it is now, with the header `Idempotent-Replayed: true`.", Some(schema)),
    ]
}

/// Starts the description of an authenticated operation, without
/// parameters or responses yet.
fn authed(method: Method, path: &'static str, id: &'static str, tag: &'static str) -> Operation {
    Operation {
        method,
        path,
        id,
        summary: "",
        tag,
        access: Access::Authenticated,
        query: Vec::new(),
        body: None,
        success: Vec::new(),
        extra_errors: &[],
        links: Vec::new(),
    }
}

fn operations_ops() -> Vec<Operation> {
    let mut health = public_get("/healthz", "getHealth", "The process is up.");
    health.success = vec![success(200, "Up.", Some("Health"))];
    let mut ready = public_get(
        "/readyz",
        "getReadiness",
        "The log is open, the projections are caught up and the writer accepts writes.",
    );
    ready.success = vec![
        success(200, "Ready.", Some("Readiness")),
        success(503, "Not ready, for example after a storage failure.", Some("Readiness")),
    ];
    let mut metrics =
        public_get("/metrics", "getMetrics", "Prometheus metrics in the text format 0.0.4.");
    metrics.success = vec![success(200, "The metrics.", None)];
    let mut document = public_get("/openapi.json", "getOpenApi", "This OpenAPI document.");
    document.success = vec![success(200, "The OpenAPI 3.1 document.", None)];

    let mut create = authed(Method::POST, "/v1/developers", "createDeveloper", "developers");
    create.summary = "Creates a developer and shows its API key, this once.";
    create.access = Access::Platform;
    create.body = Some(Body {
        schema_name: "CreateDeveloperRequest",
        params: vec![param("name", true, string_schema(NAME_CHARS_MAX, "Stored after NFC."))],
        example: json!({"name": "Acme"}),
    });
    create.success = vec![
        success(201, "Created; `api_key` is shown only here.", Some("DeveloperWithKey")),
        success(
            200,
            "The same `Idempotency-Key` again: the developer, without its key.",
            Some("Developer"),
        ),
    ];
    let mut fetch =
        authed(Method::GET, "/v1/developers/{developer_sid}", "getDeveloper", "developers");
    fetch.summary = "Fetches a developer, without its key.";
    fetch.access = Access::Platform;
    fetch.success = vec![success(200, "The developer.", Some("Developer"))];

    vec![health, ready, metrics, document, create, fetch]
}

fn operations_accounts() -> Vec<Operation> {
    let mut list = authed(Method::GET, "/v1/accounts", "listAccounts", "accounts");
    list.summary = "Lists sub-accounts, oldest first; closed ones only with `status=closed`.";
    list.query = vec![
        developer_id(),
        param("status", false, status_schema()),
        param("login_id", false, string_schema(32, "Compared case-insensitively.")),
    ];
    list.query.extend(page_params());
    list.success = vec![success(200, "A page of sub-accounts.", Some("AccountList"))];

    let mut create = authed(Method::POST, "/v1/accounts", "createAccount", "accounts");
    create.summary = "Creates a sub-account with its default SIP account and alias.";
    let mut params = vec![
        param("login_id", true, login_id_schema("Unique platform-wide, case-insensitively.")),
        param("password", true, password_schema()),
        param("encrypt_type", false, encrypt_type_schema(0)),
    ];
    params.extend(profile_params("the server's default SIP domain"));
    let codes: Vec<&str> = Currency::all().iter().map(|currency| currency.code()).collect();
    let currency = json!({"type": "string", "enum": codes, "default": Currency::DEFAULT.code()});
    params.push(param("currency", false, currency));
    params.push(developer_id());
    create.body = Some(Body {
        schema_name: "CreateAccountRequest",
        params,
        example: json!({"login_id": "alice01", "password": "secret123", "first_name": "Alice"}),
    });
    create.success = created("Account");
    create.links = account_links();

    let mut fetch = authed(Method::GET, "/v1/accounts/{account_sid}", "getAccount", "accounts");
    fetch.summary = "Fetches a sub-account.";
    fetch.query = vec![developer_id()];
    fetch.success = vec![success(200, "The sub-account.", Some("Account"))];

    let mut update = authed(Method::PUT, "/v1/accounts/{account_sid}", "updateAccount", "accounts");
    update.summary = "Changes a sub-account's profile, password or status; `closed` is final.";
    let mut params = vec![
        param("password", false, password_schema()),
        param("encrypt_type", false, encrypt_type_schema(1)),
        param("status", false, status_schema()),
    ];
    params.extend(profile_params("unchanged"));
    params.push(developer_id());
    update.body = Some(Body {
        schema_name: "UpdateAccountRequest",
        params,
        example: json!({"first_name": "Alicia"}),
    });
    update.success = vec![success(200, "The changed sub-account.", Some("Account"))];

    vec![list, create, fetch, update]
}

/// Links to each of `operation_ids`, all with the same path parameters.
fn links(operation_ids: &[&'static str], parameters: &[(&'static str, &'static str)]) -> Vec<Link> {
    operation_ids
        .iter()
        .map(|operation_id| Link { operation_id, parameters: parameters.to_vec() })
        .collect()
}

fn account_links() -> Vec<Link> {
    let targets = [
        "getAccount",
        "updateAccount",
        "listSipAccounts",
        "createSipAccount",
        "getBalance",
        "postBalance",
        "listAccountTransactions",
        "listAccountEvents",
    ];
    links(&targets, &[("account_sid", "$response.body#/sid")])
}

const SIP_PATH: &str = "/v1/accounts/{account_sid}/SIP";
const SIP_ITEM_PATH: &str = "/v1/accounts/{account_sid}/SIP/{sip_sid}";
const ALIASES_PATH: &str = "/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases";
const ALIAS_ITEM_PATH: &str = "/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases/{alias_sid}";

fn operations_sip() -> Vec<Operation> {
    let mut list = authed(Method::GET, SIP_PATH, "listSipAccounts", "sip");
    list.summary = "Lists a sub-account's SIP accounts, oldest first.";
    list.query = vec![developer_id()];
    list.query.extend(page_params());
    list.success = vec![success(200, "A page of SIP accounts.", Some("SipAccountList"))];

    let mut create = authed(Method::POST, SIP_PATH, "createSipAccount", "sip");
    create.summary = "Creates a SIP account under a sub-account.";
    create.body = Some(Body {
        schema_name: "CreateSipAccountRequest",
        params: vec![
            param("password", true, password_schema()),
            param("encrypt_type", false, encrypt_type_schema(1)),
            param("domain", false, domain_schema(Some("the sub-account's domain"))),
            param("sip_id", false, login_id_schema("Generated when absent; never changes.")),
            developer_id(),
        ],
        example: json!({"password": "sippass123", "encrypt_type": 0, "sip_id": "desk01"}),
    });
    create.success = created("SipAccount");
    let targets = [
        "getSipAccount",
        "updateSipAccount",
        "deleteSipAccount",
        "listSipAliases",
        "createSipAlias",
    ];
    let sip = [("account_sid", "$response.body#/account_sid"), ("sip_sid", "$response.body#/sid")];
    create.links = links(&targets, &sip);

    let mut fetch = authed(Method::GET, SIP_ITEM_PATH, "getSipAccount", "sip");
    fetch.summary = "Fetches a SIP account.";
    fetch.query = vec![developer_id()];
    fetch.success = vec![success(200, "The SIP account.", Some("SipAccount"))];

    let mut update = authed(Method::PUT, SIP_ITEM_PATH, "updateSipAccount", "sip");
    update.summary = "Sets a SIP account's password and domain; both are required because the \
        digests depend on the domain.";
    update.body = Some(Body {
        schema_name: "UpdateSipAccountRequest",
        params: vec![
            param("password", true, password_schema()),
            param("encrypt_type", false, encrypt_type_schema(1)),
            param("domain", true, domain_schema(None)),
            developer_id(),
        ],
        example: json!({"password": "sippass456", "encrypt_type": 0, "domain": "sip.example.com"}),
    });
    update.success = vec![success(200, "The changed SIP account.", Some("SipAccount"))];

    let mut delete = authed(Method::DELETE, SIP_ITEM_PATH, "deleteSipAccount", "sip");
    delete.summary = "Deletes a SIP account and its aliases, freeing every name.";
    delete.query = vec![developer_id()];
    delete.success = vec![success(204, "Deleted.", None)];

    let mut all = vec![list, create, fetch, update, delete];
    all.extend(operations_aliases());
    all
}

fn operations_aliases() -> Vec<Operation> {
    let mut list = authed(Method::GET, ALIASES_PATH, "listSipAliases", "sip");
    list.summary = "Lists a SIP account's aliases, oldest first.";
    list.query = vec![developer_id()];
    list.query.extend(page_params());
    list.success = vec![success(200, "A page of SIP aliases.", Some("SipAliasList"))];

    let alias_body = |schema_name, example| Body {
        schema_name,
        params: vec![param("alias", true, alias_schema()), developer_id()],
        example,
    };
    let mut create = authed(Method::POST, ALIASES_PATH, "createSipAlias", "sip");
    create.summary = "Adds an alias to a SIP account; the 101st is 422.";
    create.body = Some(alias_body("CreateSipAliasRequest", json!({"alias": "6580001234"})));
    create.success = created("SipAlias");
    create.extra_errors = &[422];
    let alias = [
        ("account_sid", "$response.body#/account_sid"),
        ("sip_sid", "$response.body#/sip_sid"),
        ("alias_sid", "$response.body#/sid"),
    ];
    create.links = links(&["getSipAlias", "updateSipAlias", "deleteSipAlias"], &alias);

    let mut fetch = authed(Method::GET, ALIAS_ITEM_PATH, "getSipAlias", "sip");
    fetch.summary = "Fetches a SIP alias.";
    fetch.query = vec![developer_id()];
    fetch.success = vec![success(200, "The SIP alias.", Some("SipAlias"))];

    let mut update = authed(Method::PUT, ALIAS_ITEM_PATH, "updateSipAlias", "sip");
    update.summary = "Renames a SIP alias.";
    update.body = Some(alias_body("UpdateSipAliasRequest", json!({"alias": "6580005678"})));
    update.success = vec![success(200, "The changed SIP alias.", Some("SipAlias"))];

    let mut delete = authed(Method::DELETE, ALIAS_ITEM_PATH, "deleteSipAlias", "sip");
    delete.summary = "Deletes a SIP alias.";
    delete.query = vec![developer_id()];
    delete.success = vec![success(204, "Deleted.", None)];

    vec![list, create, fetch, update, delete]
}

fn operations_balances() -> Vec<Operation> {
    let path = "/v1/accounts/{account_sid}/balances";
    let mut fetch = authed(Method::GET, path, "getBalance", "balances");
    fetch.summary = "Fetches the balance now, or after every posting at or before `at`.";
    fetch.query = vec![developer_id(), param("at", false, time_schema("A point in time."))];
    fetch.success = vec![success(200, "The balance.", Some("Balance"))];

    let mut post = authed(Method::POST, path, "postBalance", "balances");
    post.summary = "Posts a TOPUP or an ADJUSTMENT; a balance below zero is 422.";
    let amount = json!({
        "anyOf": [
            {"type": "string", "pattern": "^-?[0-9]{1,9}(\\.[0-9]{1,4})?$"},
            {"type": "number"},
        ],
        "description": "A plain decimal with at most 4 fraction digits and magnitude below \
            1,000,000,000, parsed exactly. Positive for a TOPUP, non-zero for an ADJUSTMENT.",
    });
    post.body = Some(Body {
        schema_name: "PostBalanceRequest",
        params: vec![
            param("amount", true, amount),
            param("type", true, json!({"type": "string", "enum": ["TOPUP", "ADJUSTMENT"]})),
            param("pay_method", true, pay_method_schema()),
            param(
                "refer_trans_id",
                false,
                string_schema(
                    REFER_TRANS_ID_CHARS_MAX,
                    "Unique per developer and pay method: the same posting again is 200 \
                     with the original, a different one 409. A new reference with an \
                     invisible format character, such as U+200B, is 400.",
                ),
            ),
            param("desc", false, string_schema(DESC_CHARS_MAX, "Stored after NFC.")),
            developer_id(),
        ],
        example: json!({"amount": "10.50", "type": "TOPUP", "pay_method": 4,
                        "refer_trans_id": "paypal-0001"}),
    });
    post.success = created("Transaction");
    post.extra_errors = &[422];
    let transaction = [
        ("account_sid", "$response.body#/account_sid"),
        ("transaction_sid", "$response.body#/sid"),
    ];
    post.links = links(&["getTransaction"], &transaction);

    let mut list_account = authed(
        Method::GET,
        "/v1/accounts/{account_sid}/balances/transactions",
        "listAccountTransactions",
        "balances",
    );
    list_account.summary = "Lists a sub-account's postings, oldest first.";
    list_account.query = vec![developer_id()];
    list_account.query.extend(page_params());
    list_account.query.extend(transaction_filters());
    list_account.success = vec![success(200, "A page of postings.", Some("TransactionList"))];

    let mut fetch_one = authed(
        Method::GET,
        "/v1/accounts/{account_sid}/balances/transactions/{transaction_sid}",
        "getTransaction",
        "balances",
    );
    fetch_one.summary = "Fetches one posting.";
    fetch_one.query = vec![developer_id()];
    fetch_one.success = vec![success(200, "The posting.", Some("Transaction"))];

    let mut list_all = authed(Method::GET, "/v1/transactions", "listTransactions", "balances");
    list_all.summary = "Lists all of the caller's postings, oldest first.";
    list_all.query = vec![developer_id()];
    list_all.query.extend(page_params());
    list_all.query.extend(transaction_filters());
    list_all.success = vec![success(200, "A page of postings.", Some("TransactionList"))];

    vec![fetch, post, list_account, fetch_one, list_all]
}

fn operation_events() -> Operation {
    let path = "/v1/accounts/{account_sid}/events";
    let mut list = authed(Method::GET, path, "listAccountEvents", "accounts");
    list.summary = "Lists the raw events of a sub-account and of every SIP account it had, \
        oldest first, with their place in the hash chain and without hashed secrets.";
    list.query = vec![developer_id()];
    list.query.extend(page_params());
    list.success = vec![success(200, "A page of events.", Some("EventList"))];
    list
}
