//! The `components` of the OpenAPI document: the response schemas (the
//! fields `api::views` writes), the request body schemas, the shared error
//! responses, the `Idempotency-Key` parameter and the Basic security scheme.
//!
//! Every response object lists all its fields as required and allows no
//! others, so a field added to or dropped from a view without a change here
//! fails the response-schema check of the contract test.

use serde_json::{json, Map, Value};

use crate::api::error::ERROR_DOCS;
use crate::api::openapi::{body_schema, sid_schema, Body};
use crate::api::IDEMPOTENCY_KEY_CHARS_MAX;

/// Times in responses: RFC 2822 in UTC without the day name.
fn date_schema() -> Value {
    let months = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec";
    json!({
        "type": "string",
        "pattern": format!("^[0-9]{{2}} ({months}) [0-9]{{4}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} \\+0000$"),
        "examples": ["15 Dec 2014 14:20:25 +0000"],
    })
}

/// Amounts in responses: two to four fraction digits.
fn amount_schema() -> Value {
    json!({"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2,4}$", "examples": ["10.50"]})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn nullable_string() -> Value {
    json!({"type": ["string", "null"]})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Builds an object schema whose fields are all required and the only ones
/// allowed, named `xml_name` as an XML document element.
fn object(xml_name: &str, fields: Vec<(&str, Value)>) -> Value {
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> =
        fields.into_iter().map(|(name, schema)| (name.to_string(), schema)).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "xml": {"name": xml_name},
    })
}

/// An array rendered in XML as a wrapper element around `item_name` items.
fn array(items: Value, item_name: &str) -> Value {
    let mut items = items;
    items["xml"] = json!({"name": item_name});
    json!({"type": "array", "items": items, "xml": {"wrapped": true}})
}

fn account_status() -> Value {
    json!({"type": "string", "enum": ["active", "suspended", "closed"]})
}

fn account() -> Value {
    object(
        "Account",
        vec![
            ("sid", sid_schema("AC")),
            ("login_id", string()),
            ("status", account_status()),
            ("balance", json!({"type": "string", "examples": ["S$10.50", "MYR 3.00"]})),
            ("balance_amount", amount_schema()),
            ("currency", json!({"type": "string", "pattern": "^[A-Z]{3}$"})),
            ("first_name", nullable_string()),
            ("last_name", nullable_string()),
            ("email", nullable_string()),
            ("phone_number", nullable_string()),
            ("domain", string()),
            ("date_created", date_schema()),
            ("date_updated", date_schema()),
            (
                "sub_resource_uris",
                object(
                    "sub_resource_uris",
                    vec![
                        ("sip_accounts", string()),
                        ("balances", string()),
                        ("transactions", string()),
                    ],
                ),
            ),
            ("uri", string()),
        ],
    )
}

fn sip_account() -> Value {
    object(
        "SipAccount",
        vec![
            ("sid", sid_schema("SC")),
            ("account_sid", sid_schema("AC")),
            ("sip_id", string()),
            ("sip_aliases", array(string(), "sip_alias")),
            ("domain", string()),
            ("status", account_status()),
            ("date_created", date_schema()),
            ("date_updated", date_schema()),
            ("sub_resource_uris", object("sub_resource_uris", vec![("sip_aliases", string())])),
            ("uri", string()),
        ],
    )
}

fn sip_alias() -> Value {
    object(
        "SipAlias",
        vec![
            ("sid", sid_schema("SA")),
            ("account_sid", sid_schema("AC")),
            ("sip_sid", sid_schema("SC")),
            ("sip_alias", string()),
            ("domain", string()),
            ("status", account_status()),
            ("date_created", date_schema()),
            ("date_updated", date_schema()),
            ("uri", string()),
        ],
    )
}

fn balance() -> Value {
    object(
        "Balance",
        vec![
            ("account_sid", sid_schema("AC")),
            ("balance", string()),
            ("balance_amount", amount_schema()),
            ("currency", json!({"type": "string", "pattern": "^[A-Z]{3}$"})),
            ("date_updated", date_schema()),
            ("uri", string()),
        ],
    )
}

fn transaction() -> Value {
    object(
        "Transaction",
        vec![
            ("sid", sid_schema("BA")),
            ("account_sid", sid_schema("AC")),
            ("amount", amount_schema()),
            ("currency", json!({"type": "string", "pattern": "^[A-Z]{3}$"})),
            ("type", json!({"type": "string", "enum": ["TOPUP", "ADJUSTMENT"]})),
            ("pay_method", json!({"type": "integer"})),
            ("refer_trans_id", nullable_string()),
            ("desc", nullable_string()),
            ("balance", string()),
            ("balance_amount", amount_schema()),
            ("date_created", date_schema()),
            ("date_updated", date_schema()),
            ("uri", string()),
        ],
    )
}

fn developer(with_key: bool) -> Value {
    let mut fields = vec![
        ("sid", sid_schema("DV")),
        ("name", string()),
        ("date_created", date_schema()),
        ("uri", string()),
    ];
    if with_key {
        fields.push(("api_key", string()));
    }
    object("Developer", fields)
}

/// Builds the schema of a page of a collection: the items under
/// `collection` and the paging fields. `next_page_uri` is null on the last
/// page and `previous_page_uri` on the first.
fn list(xml_name: &str, collection: &str, item: &str, item_xml: &str) -> Value {
    let page = json!({"type": "integer", "minimum": 0});
    object(
        xml_name,
        vec![
            (collection, array(reference(item), item_xml)),
            ("page", page),
            ("page_size", json!({"type": "integer", "minimum": 1})),
            ("uri", string()),
            ("first_page_uri", string()),
            ("next_page_uri", nullable_string()),
            ("previous_page_uri", nullable_string()),
        ],
    )
}

fn event() -> Value {
    let hash = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    object(
        "Event",
        vec![
            ("seq", json!({"type": "integer", "minimum": 1})),
            ("stream", json!({"type": "string", "pattern": "^[A-Z]{2}[0-9a-f]{32}$"})),
            ("version", json!({"type": "integer", "minimum": 1})),
            ("type", json!({"type": "string", "examples": ["BalanceToppedUp"]})),
            ("recorded_at", date_schema()),
            ("actor", json!({"type": "string", "description": "A developer sid or `platform`."})),
            ("request_id", string()),
            ("data", json!({"type": "object", "description": "The event's fields."})),
            ("prev_hash", hash.clone()),
            ("hash", hash),
        ],
    )
}

fn rest_exception() -> Value {
    let field_error = object("error", vec![("field", string()), ("reason", string())]);
    let mut schema = object(
        "RestException",
        vec![
            ("code", json!({"type": "integer", "description": "See `more_info`."})),
            ("message", string()),
            ("status", json!({"type": "integer", "description": "The HTTP status."})),
            ("more_info", json!({"type": "string", "examples": [ERROR_DOCS]})),
            ("errors", array(field_error, "error")),
        ],
    );
    // `errors` is present only where fields are at fault.
    schema["required"] = json!(["code", "message", "status", "more_info"]);
    schema
}

fn readiness() -> Value {
    object(
        "Readiness",
        vec![
            ("status", json!({"type": "string", "enum": ["ready", "unavailable"]})),
            ("last_seq", json!({"type": "integer", "minimum": 0})),
            ("log_head", json!({"type": "integer", "minimum": 0})),
            ("writer", string()),
        ],
    )
}

fn response_schemas() -> Map<String, Value> {
    let schemas = [
        ("Health", object("Health", vec![("status", json!({"type": "string", "enum": ["ok"]}))])),
        ("Readiness", readiness()),
        ("Developer", developer(false)),
        ("DeveloperWithKey", developer(true)),
        ("Account", account()),
        ("AccountList", list("AccountList", "accounts", "Account", "account")),
        ("SipAccount", sip_account()),
        ("SipAccountList", list("SipAccountList", "sip_accounts", "SipAccount", "sip_account")),
        ("SipAlias", sip_alias()),
        ("SipAliasList", list("SipAliasList", "sip_aliases", "SipAlias", "sip_alias")),
        ("Balance", balance()),
        ("Transaction", transaction()),
        ("TransactionList", list("TransactionList", "transactions", "Transaction", "transaction")),
        ("Event", event()),
        ("EventList", list("EventList", "events", "Event", "event")),
        ("RestException", rest_exception()),
    ];
    schemas.into_iter().map(|(name, schema)| (name.to_string(), schema)).collect()
}

/// Builds the shared error responses, one per status, keyed by name.
fn error_responses() -> Map<String, Value> {
    let responses = [
        ("BadRequest", "Invalid input: a parameter is invalid, missing, unknown or given twice."),
        ("Unauthorized", "Missing or wrong credentials."),
        ("Forbidden", "A developer called a platform-only operation."),
        ("NotFound", "No such resource among the caller's."),
        (
            "Conflict",
            "A name is taken, the sub-account is closed, or a reference or \
            `Idempotency-Key` was used for a different request.",
        ),
        ("RequestTimeout", "The body did not arrive within the read deadline."),
        ("PayloadTooLarge", "The body is larger than the limit."),
        ("UnsupportedMediaType", "The body is neither JSON nor a form."),
        ("UnprocessableEntity", "A business rule: insufficient balance, or a limit reached."),
        ("ServiceUnavailable", "The writer stopped after a storage failure."),
    ];
    responses
        .into_iter()
        .map(|(name, description)| {
            let schema = reference("RestException");
            let mut response = json!({
                "description": description,
                "content": {
                    "application/json": {"schema": schema},
                    "application/xml": {"schema": schema},
                },
            });
            if name == "Unauthorized" {
                response["headers"] = json!({
                    "WWW-Authenticate": {
                        "required": true,
                        "schema": {"type": "string", "const": "Basic realm=\"subledger\""},
                    },
                });
            }
            (name.to_string(), response)
        })
        .collect()
}

/// Builds the `components` object, with the schemas of the request
/// `bodies` of every operation.
pub fn components(bodies: &[&Body]) -> Value {
    let mut schemas = response_schemas();
    for body in bodies {
        schemas.insert(body.schema_name.to_string(), body_schema(body));
    }
    json!({
        "schemas": schemas,
        "responses": error_responses(),
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "The same key with the same request returns 200 with the \
                    resource as it is now, or 404 when it was deleted since; with a \
                    different request it is 409.",
                "schema": {
                    "type": "string",
                    "pattern": format!("^[!-~]{{1,{IDEMPOTENCY_KEY_CHARS_MAX}}}$"),
                },
            },
        },
        "headers": {
            "IdempotentReplayed": {
                "description": "Present on the result of a repeated request.",
                "schema": {"type": "string", "const": "true"},
            },
        },
        "securitySchemes": {
            "basic": {
                "type": "http",
                "scheme": "basic",
                "description": "A developer's sid and API key, or `platform` and the platform key.",
            },
        },
    })
}
