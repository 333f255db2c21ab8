//! The OpenAPI document: the committed copy in `docs/openapi.json`, its
//! agreement with the registered route table, its references, and real
//! responses checked against its schemas.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{Auth, Server};

/// The committed copy of the document.
const DOCUMENT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

/// HTTP methods an OpenAPI path item can hold.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

async fn served_document(server: &Server) -> Value {
    let reply = server.get("/openapi.json", &Auth::None).await;
    reply.expect(200);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert_eq!(content_type, "application/json", "content type of /openapi.json");
    reply.json.clone()
}

/// Collects every (path, method) the document describes.
fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths is an object");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_some() {
                operations.insert((path.clone(), method.to_string()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn committed_copy_is_current() {
    let server = Server::start().await;
    let document = served_document(&server).await;
    let generated = serde_json::to_string_pretty(&document).expect("document serializes") + "\n";
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(DOCUMENT_FILE, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(DOCUMENT_FILE).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the server generates; regenerate it \
         with `UPDATE_OPENAPI=1 cargo test --test api openapi::` and commit it"
    );
}

#[tokio::test]
async fn paths_match_route_table() {
    let server = Server::start().await;
    let document = served_document(&server).await;
    let documented = documented_operations(&document);
    let registered: BTreeSet<(String, String)> = subledger::api::registered_routes()
        .into_iter()
        .flat_map(|(path, methods)| {
            methods.into_iter().map(move |m| (path.to_string(), m.as_str().to_ascii_lowercase()))
        })
        .collect();

    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes missing from the document: {undocumented:?}");
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(unregistered.is_empty(), "documented operations with no route: {unregistered:?}");

    // The server routes every documented operation: without credentials a
    // route returns 200 or 401, never the 404 or 405 of a missing route.
    for (path, method) in &documented {
        let concrete = path
            .replace("{account_sid}", &format!("AC{}", "0".repeat(32)))
            .replace("{sip_sid}", &format!("SC{}", "0".repeat(32)))
            .replace("{alias_sid}", &format!("SA{}", "0".repeat(32)))
            .replace("{transaction_sid}", &format!("BA{}", "0".repeat(32)))
            .replace("{developer_sid}", &format!("DV{}", "0".repeat(32)));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let reply = server.send(method.clone(), &concrete, &Auth::None, None, None, &[]).await;
        let public =
            document["paths"][path][method.as_str().to_lowercase()]["security"] == json!([]);
        let expected = if public { 200 } else { 401 };
        assert_eq!(reply.status, expected, "{method} {concrete}: {}", reply.text);
    }
}

/// Resolves a local `$ref` such as `#/components/schemas/Account`.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|child| collect_refs(child, refs));
        }
        Value::Array(items) => items.iter().for_each(|child| collect_refs(child, refs)),
        _ => {}
    }
}

#[tokio::test]
async fn document_is_consistent() {
    let server = Server::start().await;
    let document = served_document(&server).await;
    assert_eq!(document["openapi"], "3.1.0", "OpenAPI version");
    let scheme = &document["components"]["securitySchemes"]["basic"];
    assert_eq!(scheme["scheme"], "basic", "HTTP Basic security scheme");

    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty(), "the document uses references");
    for reference in &refs {
        assert!(resolve(&document, reference).is_some(), "unresolved reference {reference}");
    }

    let mut ids = BTreeSet::new();
    for (path, method) in documented_operations(&document) {
        let operation = &document["paths"][&path][&method];
        let id = operation["operationId"].as_str().expect("operationId").to_string();
        assert!(ids.insert(id.clone()), "operationId {id} is used twice");
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path} documents no response");
        let is_v1 = path.starts_with("/v1/");
        assert_eq!(responses.contains_key("401"), is_v1, "{method} {path}: 401 on /v1 only");
    }
    let mut links = Vec::new();
    collect_link_targets(&document["paths"], &mut links);
    assert!(!links.is_empty(), "the document has links");
    for target in links {
        assert!(ids.contains(&target), "link to unknown operation {target}");
    }
}

fn collect_link_targets(value: &Value, targets: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(links)) = map.get("links") {
                for link in links.values() {
                    targets.push(link["operationId"].as_str().unwrap_or_default().to_string());
                }
            }
            map.values().for_each(|child| collect_link_targets(child, targets));
        }
        Value::Array(items) => items.iter().for_each(|child| collect_link_targets(child, targets)),
        _ => {}
    }
}

/// Checks `value` against the subset of JSON Schema the document uses:
/// `$ref`, `type` (one or a list), `properties`, `required`,
/// `additionalProperties: false`, `items`, `enum` and `const`. Returns the
/// first mismatch with its location.
fn check(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = resolve(document, reference).ok_or(format!("{at}: bad $ref"))?;
        return check(document, target, value, at);
    }
    if let Some(options) = schema["anyOf"].as_array() {
        let any = options.iter().any(|option| check(document, option, value, at).is_ok());
        return if any { Ok(()) } else { Err(format!("{at}: {value} matches no anyOf option")) };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty() && !types.contains(&type_of) {
        return Err(format!("{at}: {type_of} where the schema has {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            return Err(format!("{at}: {value} is not {constant}"));
        }
    }
    if let (Value::Object(map), Some(properties)) = (value, schema["properties"].as_object()) {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !map.contains_key(name) {
                return Err(format!("{at}: required field {name} is missing"));
            }
        }
        for (name, child) in map {
            match properties.get(name) {
                Some(property) => check(document, property, child, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == json!(false) => {
                    return Err(format!("{at}: field {name} is not in the schema"));
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check(document, item_schema, item, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

/// Checks a real response against the schema the document gives for its
/// operation and status.
#[track_caller]
fn assert_conforms(document: &Value, path: &str, method: &str, reply: &crate::support::Reply) {
    let response = &document["paths"][path][method]["responses"][reply.status.to_string()];
    assert!(!response.is_null(), "{method} {path}: status {} is not documented", reply.status);
    let response = match response["$ref"].as_str() {
        Some(reference) => resolve(document, reference).expect("response reference resolves"),
        None => response,
    };
    let schema = &response["content"]["application/json"]["schema"];
    if let Err(mismatch) = check(document, schema, &reply.json, "body") {
        panic!("{method} {path} {}: {mismatch}\n{}", reply.status, reply.text);
    }
}

#[tokio::test]
async fn responses_match_schemas() {
    let server = Server::start().await;
    let document = served_document(&server).await;
    let d = &document;

    let health = server.get("/healthz", &Auth::None).await;
    assert_conforms(d, "/healthz", "get", &health);
    let ready = server.get("/readyz", &Auth::None).await;
    assert_conforms(d, "/readyz", "get", &ready);

    let developer_reply =
        server.post_form("/v1/developers", &Auth::Platform, &[("name", "Acme")]).await;
    assert_conforms(d, "/v1/developers", "post", &developer_reply);
    let developer = crate::support::Developer {
        sid: developer_reply.sid(),
        key: developer_reply.json["api_key"].as_str().expect("api_key").to_string(),
    };
    let auth = developer.auth();
    let fetched = server.get(&format!("/v1/developers/{}", developer.sid), &Auth::Platform).await;
    assert_conforms(d, "/v1/developers/{developer_sid}", "get", &fetched);

    let body = json!({"login_id": "shape01", "password": "secret123", "email": "a@example.com"});
    let account = server.post_json("/v1/accounts", &auth, &body).await;
    assert_conforms(d, "/v1/accounts", "post", &account);
    let account_path = format!("/v1/accounts/{}", account.sid());
    let item = "/v1/accounts/{account_sid}";
    assert_conforms(d, item, "get", &server.get(&account_path, &auth).await);
    assert_conforms(d, "/v1/accounts", "get", &server.get("/v1/accounts", &auth).await);

    let sip_list = server.get(&format!("{account_path}/SIP"), &auth).await;
    assert_conforms(d, "/v1/accounts/{account_sid}/SIP", "get", &sip_list);
    let sip_path = sip_list.json["sip_accounts"][0]["uri"].as_str().expect("SIP uri").to_string();
    let sip = server.get(&sip_path, &auth).await;
    assert_conforms(d, "/v1/accounts/{account_sid}/SIP/{sip_sid}", "get", &sip);
    let aliases = server.get(&format!("{sip_path}/aliases"), &auth).await;
    let aliases_pattern = "/v1/accounts/{account_sid}/SIP/{sip_sid}/aliases";
    assert_conforms(d, aliases_pattern, "get", &aliases);
    let alias_path = aliases.json["sip_aliases"][0]["uri"].as_str().expect("alias uri");
    let alias = server.get(alias_path, &auth).await;
    assert_conforms(d, &format!("{aliases_pattern}/{{alias_sid}}"), "get", &alias);

    let posting = json!({"amount": "10.50", "type": "TOPUP", "pay_method": 4, "desc": "first"});
    let balances = format!("{account_path}/balances");
    let posted = server.post_json(&balances, &auth, &posting).await;
    let balances_pattern = "/v1/accounts/{account_sid}/balances";
    assert_conforms(d, balances_pattern, "post", &posted);
    assert_conforms(d, balances_pattern, "get", &server.get(&balances, &auth).await);
    let history = server.get(&format!("{balances}/transactions"), &auth).await;
    assert_conforms(d, &format!("{balances_pattern}/transactions"), "get", &history);
    let one = server.get(posted.json["uri"].as_str().expect("transaction uri"), &auth).await;
    let one_pattern = format!("{balances_pattern}/transactions/{{transaction_sid}}");
    assert_conforms(d, &one_pattern, "get", &one);
    assert_conforms(d, "/v1/transactions", "get", &server.get("/v1/transactions", &auth).await);
    let events = server.get(&format!("{account_path}/events"), &auth).await;
    assert_eq!(events.status, 200, "events status: {}", events.text);
    assert_conforms(d, "/v1/accounts/{account_sid}/events", "get", &events);

    // Errors, with and without field details.
    let invalid = server.post_json("/v1/accounts", &auth, &json!({"login_id": "1"})).await;
    assert_conforms(d, "/v1/accounts", "post", &invalid);
    let overdraft = json!({"amount": "-99", "type": "ADJUSTMENT", "pay_method": 1});
    let rejected = server.post_json(&balances, &auth, &overdraft).await;
    assert_eq!(rejected.status, 422, "overdraft status: {}", rejected.text);
    assert_conforms(d, balances_pattern, "post", &rejected);
    let forbidden = server.get(&format!("/v1/developers/{}", developer.sid), &auth).await;
    assert_conforms(d, "/v1/developers/{developer_sid}", "get", &forbidden);
}

/// Returns the `domain` description of a request body schema.
fn domain_description(document: &Value, schema: &str) -> String {
    let description = &document["components"]["schemas"][schema]["properties"]["domain"];
    description["description"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn domain_default_described_per_operation() {
    let server = Server::start().await;
    let document = served_document(&server).await;
    let developer = server.developer("Acme").await;
    let auth = developer.auth();

    // A SIP account created without `domain` takes its sub-account's
    // domain, not the server's default.
    let body = json!({"login_id": "domain01", "password": "secret123",
                      "domain": "voip.example.net"});
    let account = server.post_json("/v1/accounts", &auth, &body).await;
    account.expect(201);
    let sip_path = format!("/v1/accounts/{}/SIP", account.sid());
    let body = json!({"password": "sippass123", "encrypt_type": 0});
    let sip = server.post_json(&sip_path, &auth, &body).await;
    sip.expect(201);
    assert_eq!(sip.json["domain"], "voip.example.net", "SIP account domain");
    let create_sip = domain_description(&document, "CreateSipAccountRequest");
    assert!(create_sip.contains("the sub-account's domain when absent"), "{create_sip}");

    // An account update without `domain` keeps the domain.
    let body = json!({"first_name": "Dana"});
    let updated = server.put_json(&format!("/v1/accounts/{}", account.sid()), &auth, &body).await;
    updated.expect(200);
    assert_eq!(updated.json["domain"], "voip.example.net", "account domain after update");
    let update_account = domain_description(&document, "UpdateAccountRequest");
    assert!(update_account.contains("unchanged when absent"), "{update_account}");

    let create_account = domain_description(&document, "CreateAccountRequest");
    assert!(create_account.contains("default SIP domain when absent"), "{create_account}");

    // A SIP account update requires `domain`, so nothing describes its absence.
    let update_sip = domain_description(&document, "UpdateSipAccountRequest");
    assert!(!update_sip.contains("when absent"), "{update_sip}");
    let required = &document["components"]["schemas"]["UpdateSipAccountRequest"]["required"];
    assert!(required.as_array().is_some_and(|names| names.contains(&json!("domain"))));
}

#[tokio::test]
async fn idempotent_replay_described_as_current() {
    let server = Server::start().await;
    let document = served_document(&server).await;
    let developer = server.developer("Acme").await;
    let auth = developer.auth();

    // A replay returns the sub-account as it is now, with a later change.
    let headers = [("idempotency-key", "replay-current-1")];
    let body = serde_json::to_vec(&json!({"login_id": "replay01", "password": "secret123"}))
        .expect("JSON body");
    let send = || {
        let body = Some(body.clone());
        server.send(
            reqwest::Method::POST,
            "/v1/accounts",
            &auth,
            Some("application/json"),
            body,
            &headers,
        )
    };
    let created = send().await;
    created.expect(201);
    let path = format!("/v1/accounts/{}", created.sid());
    server.put_json(&path, &auth, &json!({"first_name": "Later"})).await.expect(200);
    let replayed = send().await;
    replayed.expect(200);
    assert_eq!(replayed.header("idempotent-replayed").as_deref(), Some("true"), "header");
    assert_eq!(replayed.json["first_name"], "Later", "replay shows the later change");

    let replay = &document["paths"]["/v1/accounts"]["post"]["responses"]["200"]["description"];
    let replay = replay.as_str().unwrap_or_default();
    assert!(replay.contains("as it is now"), "200 description: {replay}");
    let key = &document["components"]["parameters"]["IdempotencyKey"]["description"];
    let key = key.as_str().unwrap_or_default();
    assert!(key.contains("as it is now"), "Idempotency-Key description: {key}");
    assert!(key.contains("404"), "Idempotency-Key description names the deleted case: {key}");
}
