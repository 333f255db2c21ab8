//! The OpenAPI 3.1 document of the REST API, served at `GET /openapi.json`
//! and kept as `docs/openapi.json`.
//!
//! `operations` describes every route that `api::configure` registers;
//! this module turns that catalogue into the document. The integration
//! tests compare the document's paths and methods with the registered route
//! table in both directions, and the served document with the committed
//! copy, so neither can drift.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use crate::api::params::BODY_BYTES_MAX;

mod operations;
mod schemas;

pub use operations::operations;
pub use schemas::components;

/// The callers an operation accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials.
    Public,
    /// A developer or the platform.
    Authenticated,
    /// The platform only; a developer gets 403.
    Platform,
}

/// A query or body parameter.
pub struct Param {
    pub name: &'static str,
    pub required: bool,
    pub schema: Value,
}

/// A request body: its parameters, taken as JSON or as a form.
pub struct Body {
    /// Name of the body's schema under `components.schemas`.
    pub schema_name: &'static str,
    pub params: Vec<Param>,
    /// A body that succeeds on a fresh server, shown as the example.
    pub example: Value,
}

/// A success response: its status, description and schema name (`None`
/// for a response without a body).
pub struct Success {
    pub status: u16,
    pub description: &'static str,
    pub schema: Option<&'static str>,
}

/// One operation: a method on a route pattern.
pub struct Operation {
    pub method: Method,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub access: Access,
    pub query: Vec<Param>,
    pub body: Option<Body>,
    pub success: Vec<Success>,
    /// Error statuses beyond those every operation of its kind can return
    /// (see `error_statuses`).
    pub extra_errors: &'static [u16],
    /// Links from the first success response to operations on the created
    /// resource.
    pub links: Vec<Link>,
}

/// An OpenAPI link: an operation that takes its path parameters from a
/// response.
pub struct Link {
    pub operation_id: &'static str,
    /// (path parameter, runtime expression) pairs.
    pub parameters: Vec<(&'static str, &'static str)>,
}

impl Operation {
    /// Lists the error statuses the operation can return. Every
    /// authenticated route can return 400 and 401, platform-only ones 403,
    /// routes whose path names a resource 404, routes that read a body 408,
    /// 413 and 415, and routes that send a command to the writer 409 and 503.
    /// The operation's own extras come on top.
    pub fn error_statuses(&self) -> BTreeSet<u16> {
        let mut statuses: BTreeSet<u16> = self.extra_errors.iter().copied().collect();
        if self.access == Access::Public {
            return statuses;
        }
        statuses.extend([400, 401]);
        if self.access == Access::Platform {
            statuses.insert(403);
        }
        if self.path.contains('{') {
            statuses.insert(404);
        }
        if self.body.is_some() {
            statuses.extend([408, 413, 415]);
        }
        if self.method != Method::GET {
            statuses.extend([409, 503]);
        }
        statuses
    }

    /// Returns the names of the path's `{parameters}`, in order.
    pub fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect()
    }
}

pub(crate) fn param(name: &'static str, required: bool, schema: Value) -> Param {
    Param { name, required, schema }
}

/// Returns the schema of an id with a two-letter prefix.
pub fn sid_schema(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}[0-9a-f]{{32}}$")})
}

/// Returns the name of the shared error response of a status.
fn error_response_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        408 => "RequestTimeout",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableEntity",
        _ => "ServiceUnavailable",
    }
}

fn parameter_json(param: &Param, location: &str) -> Value {
    json!({"name": param.name, "in": location, "required": param.required, "schema": param.schema})
}

fn path_param_schema(name: &str) -> Value {
    match name {
        "account_sid" => sid_schema("AC"),
        "sip_sid" => sid_schema("SC"),
        "alias_sid" => sid_schema("SA"),
        "transaction_sid" => sid_schema("BA"),
        _ => sid_schema("DV"),
    }
}

fn success_json(operation: &Operation, success: &Success, first: bool) -> Value {
    let mut response = json!({"description": success.description});
    match (success.schema, operation.path) {
        (None, "/metrics") => {
            response["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
        }
        (None, "/openapi.json") => {
            response["content"] = json!({"application/json": {"schema": {"type": "object"}}});
        }
        (None, _) => {}
        (Some(name), _) => {
            let schema = json!({"$ref": format!("#/components/schemas/{name}")});
            response["content"] = json!({
                "application/json": {"schema": schema},
                "application/xml": {"schema": schema},
            });
        }
    }
    if success.status == 200 && operation.method == Method::POST {
        response["headers"] =
            json!({"Idempotent-Replayed": {"$ref": "#/components/headers/IdempotentReplayed"}});
    }
    if first && !operation.links.is_empty() {
        let mut links = Map::new();
        for link in &operation.links {
            let parameters: Map<String, Value> = link
                .parameters
                .iter()
                .map(|(name, expression)| (name.to_string(), json!(expression)))
                .collect();
            // Link names are the target's operation id in upper camel case.
            let mut name = link.operation_id.to_string();
            name[..1].make_ascii_uppercase();
            links.insert(name, json!({"operationId": link.operation_id, "parameters": parameters}));
        }
        response["links"] = Value::Object(links);
    }
    response
}

fn operation_json(operation: &Operation) -> Value {
    let mut parameters: Vec<Value> = operation
        .path_params()
        .into_iter()
        .map(|name| parameter_json(&param(name, true, path_param_schema(name)), "path"))
        .collect();
    parameters.extend(operation.query.iter().map(|param| parameter_json(param, "query")));
    if operation.method == Method::POST && operation.access != Access::Public {
        parameters.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
    }

    let mut responses = Map::new();
    for (index, success) in operation.success.iter().enumerate() {
        responses.insert(success.status.to_string(), success_json(operation, success, index == 0));
    }
    for status in operation.error_statuses() {
        let reference = format!("#/components/responses/{}", error_response_name(status));
        responses.insert(status.to_string(), json!({"$ref": reference}));
    }

    let mut value = json!({
        "operationId": operation.id,
        "summary": operation.summary,
        "tags": [operation.tag],
    });
    if !parameters.is_empty() {
        value["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = &operation.body {
        let schema = json!({"$ref": format!("#/components/schemas/{}", body.schema_name)});
        let media = json!({"schema": schema, "example": body.example});
        value["requestBody"] = json!({
            "required": body.params.iter().any(|param| param.required),
            "content": {
                "application/json": media,
                "application/x-www-form-urlencoded": media,
            },
        });
    }
    value["responses"] = Value::Object(responses);
    if operation.access == Access::Public {
        value["security"] = json!([]);
    }
    value
}

/// Builds the schema of a request body, with its parameters as properties.
pub fn body_schema(body: &Body) -> Value {
    let properties: Map<String, Value> =
        body.params.iter().map(|param| (param.name.to_string(), param.schema.clone())).collect();
    let required: Vec<&str> =
        body.params.iter().filter(|param| param.required).map(|param| param.name).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

const DESCRIPTION: &str = "Sub-accounts, SIP accounts and aliases, and prepaid balances.\n\n\
Every `/v1` route takes HTTP Basic credentials: a developer's sid and API key, or the user \
`platform` and the platform key. Every path also answers with the suffix `.json` or `.xml`; \
without one, the `Accept` header picks JSON (the default) or XML. Request bodies are JSON or \
`application/x-www-form-urlencoded` with the same parameter names. Every error has the \
`RestException` shape. Bodies above {body} bytes are rejected with 413. A POST may carry an \
`Idempotency-Key` header: the same request again returns the resource as it is now.";

/// Builds the document.
pub fn document() -> Value {
    let operations = operations();
    let mut paths = Map::new();
    for operation in &operations {
        let item = paths.entry(operation.path.to_string()).or_insert_with(|| json!({}));
        item[operation.method.as_str().to_ascii_lowercase()] = operation_json(operation);
    }
    let bodies: Vec<&Body> = operations.iter().filter_map(|op| op.body.as_ref()).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "subledger",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION.replace("{body}", &BODY_BYTES_MAX.to_string()),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "operations", "description": "Health, readiness, metrics and this document."},
            {"name": "developers", "description": "API consumers; the platform only."},
            {"name": "accounts", "description": "Sub-accounts."},
            {"name": "sip", "description": "SIP accounts and their aliases."},
            {"name": "balances", "description": "Prepaid balances and postings."},
        ],
        "security": [{"basic": []}],
        "paths": paths,
        "components": components(&bodies),
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = DOCUMENT.get_or_init(|| document().to_string());
    HttpResponse::Ok().content_type("application/json").body(text.as_str())
}
