//! Developers, HTTP Basic authentication and tenancy: who may call which
//! route, and that another developer's resources look exactly like ones that
//! do not exist.

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_json_snapshot, Auth, Developer, Reply, Server};

const REALM: &str = "Basic realm=\"subledger\"";

fn basic(credentials: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Basic {token}")
}

/// Generates a sid with `prefix` that no resource has.
fn unknown_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

async fn get_with_authorization(server: &Server, path: &str, value: &str) -> Reply {
    server.send(Method::GET, path, &Auth::None, None, None, &[("authorization", value)]).await
}

#[tokio::test]
async fn developer_create_and_fetch() {
    let server = Server::start().await;

    let created = server.post_form("/v1/developers", &Auth::Platform, &[("name", "Acme")]).await;
    created.expect(201);
    let sid = created.sid();
    let fetched = server.get(&format!("/v1/developers/{sid}"), &Auth::Platform).await;
    fetched.expect(200);
    let suffixed = server.get(&format!("/v1/developers/{sid}.json"), &Auth::Platform).await;

    let api_key = created.json["api_key"].as_str().expect("api_key is a string");
    assert_eq!(api_key.len(), 64, "api_key is 64 hex digits: {api_key}");
    assert!(api_key.bytes().all(|b| b.is_ascii_hexdigit()), "api_key is hex: {api_key}");
    assert_eq!(created.json["name"], "Acme", "name");
    assert_eq!(created.json["uri"], format!("/v1/developers/{sid}"), "uri");
    assert!(fetched.json.get("api_key").is_none(), "GET shows no key: {}", fetched.text);
    assert!(!fetched.text.contains(api_key), "GET text has no key: {}", fetched.text);
    let mut without_key = created.json.clone();
    without_key.as_object_mut().expect("object").remove("api_key");
    assert_eq!(fetched.json, without_key, "GET is the created developer without its key");
    assert_eq!(suffixed.json, fetched.json, ".json suffix is the same resource");
    assert_json_snapshot("developer_created", &created.json);
    assert_json_snapshot("developer_fetched", &fetched.json);

    let developer = Developer { sid, key: api_key.to_string() };
    let own_list = server.get("/v1/accounts", &developer.auth()).await;
    own_list.expect(200);
    let logs = server.logs().join("\n");
    assert!(!logs.contains(api_key), "logs never contain an API key");
    assert!(!logs.contains(&server.platform_key), "logs never contain the platform key");
}

#[tokio::test]
async fn developer_routes_platform_only() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;

    let create = server.post_form("/v1/developers", &developer.auth(), &[("name", "Other")]).await;
    let fetch_own =
        server.get(&format!("/v1/developers/{}", developer.sid), &developer.auth()).await;

    create.expect_error(403);
    fetch_own.expect_error(403);
    assert_eq!(create.json["code"], 20301, "forbidden code");
}

#[tokio::test]
async fn developer_not_found() {
    let server = Server::start().await;
    server.developer("Acme").await;

    let unknown =
        server.get(&format!("/v1/developers/{}", unknown_sid("DV")), &Auth::Platform).await;
    let malformed = server.get("/v1/developers/DVnothex", &Auth::Platform).await;
    let account_sid =
        server.get(&format!("/v1/developers/{}", unknown_sid("AC")), &Auth::Platform).await;
    let missing_name = server.post_form("/v1/developers", &Auth::Platform, &[]).await;

    unknown.expect_error(404);
    malformed.expect_error(404);
    account_sid.expect_error(404);
    missing_name.expect_error(400);
    assert_eq!(missing_name.error_fields(), vec!["name"], "missing name is named");
}

#[tokio::test]
async fn bad_credentials_all_401() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let other = server.developer("Other").await;
    let platform_key = server.platform_key.clone();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("empty header", Some(String::new())),
        ("wrong scheme", Some(format!("Bearer {platform_key}"))),
        ("scheme only", Some("Basic".to_string())),
        ("bad base64", Some("Basic !!!not-base64!!!".to_string())),
        ("no colon", Some(basic(&format!("platform{platform_key}")))),
        ("wrong platform key", Some(basic("platform:wrong-key-wrong-key"))),
        ("empty platform key", Some(basic("platform:"))),
        ("platform user in capitals", Some(basic(&format!("PLATFORM:{platform_key}")))),
        ("unknown developer", Some(basic(&format!("{}:{}", unknown_sid("DV"), developer.key)))),
        ("malformed user", Some(basic(&format!("not-a-sid:{}", developer.key)))),
        ("account sid as user", Some(basic(&format!("{}:{}", unknown_sid("AC"), developer.key)))),
        ("another developer's key", Some(basic(&format!("{}:{}", developer.sid, other.key)))),
        ("developer with platform key", Some(basic(&format!("{}:{platform_key}", developer.sid)))),
        (
            "upper-case sid",
            Some(basic(&format!("{}:{}", developer.sid.to_uppercase(), developer.key))),
        ),
        (
            "invalid UTF-8",
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'k'])
            )),
        ),
    ];
    let mut first_body: Option<Value> = None;

    for (case, header) in cases {
        let reply = match &header {
            None => server.get("/v1/accounts", &Auth::None).await,
            Some(value) => get_with_authorization(&server, "/v1/accounts", value).await,
        };
        assert_eq!(reply.status, 401, "case {case}: status; body {}", reply.text);
        reply.expect_error(401);
        let challenge = reply.header("www-authenticate");
        assert_eq!(challenge.as_deref(), Some(REALM), "case {case}: WWW-Authenticate");
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "case {case}: {content_type}");
        match &first_body {
            None => first_body = Some(reply.json.clone()),
            Some(body) => assert_eq!(&reply.json, body, "case {case}: one body for every cause"),
        }
    }
    assert_json_snapshot("error_401", first_body.as_ref().expect("a 401 body"));
}

#[tokio::test]
async fn good_credentials_accepted() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let platform_key = server.platform_key.clone();
    let lower_scheme = format!("basic {}", &basic(&format!("platform:{platform_key}"))[6..]);

    let platform = server.get("/v1/accounts", &Auth::Platform).await;
    let lower = get_with_authorization(&server, "/v1/accounts", &lower_scheme).await;
    let own = server.get("/v1/accounts", &developer.auth()).await;
    let health = server.get("/healthz", &Auth::None).await;
    let ready = server.get("/readyz", &Auth::None).await;

    platform.expect(200);
    lower.expect(200);
    own.expect(200);
    health.expect(200);
    ready.expect(200);
}

#[tokio::test]
async fn unauthorized_xml() {
    let server = Server::start().await;

    let reply = server.get("/v1/accounts.xml", &Auth::None).await;

    assert_eq!(reply.status, 401, "status");
    assert_eq!(reply.header("www-authenticate").as_deref(), Some(REALM), "challenge");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/xml"), "content type {content_type}");
    assert!(reply.text.contains("<RestException>"), "XML error: {}", reply.text);
    assert!(reply.text.contains("<status>401</status>"), "XML status: {}", reply.text);
}

/// The routes that hang below one sub-account, with `{ac}` for its sid and
/// `{sc}` for its default SIP account's sid.
const ACCOUNT_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/accounts/{ac}"),
    ("GET", "/v1/accounts/{ac}.json"),
    ("PUT", "/v1/accounts/{ac}"),
    ("GET", "/v1/accounts/{ac}/SIP"),
    ("POST", "/v1/accounts/{ac}/SIP"),
    ("GET", "/v1/accounts/{ac}/SIP/{sc}"),
    ("PUT", "/v1/accounts/{ac}/SIP/{sc}"),
    ("DELETE", "/v1/accounts/{ac}/SIP/{sc}"),
    ("GET", "/v1/accounts/{ac}/SIP/{sc}/aliases"),
    ("GET", "/v1/accounts/{ac}/balances"),
    ("POST", "/v1/accounts/{ac}/balances"),
    ("GET", "/v1/accounts/{ac}/balances/transactions"),
];

/// Builds a valid body for each write route, so that only visibility
/// decides the outcome.
fn route_body(server: &Server, method: &str, template: &str) -> Option<Value> {
    match (method, template) {
        ("PUT", "/v1/accounts/{ac}") => Some(json!({"first_name": "Mallory"})),
        ("POST", "/v1/accounts/{ac}/SIP") => Some(json!({"password": server.encrypt("secret456")})),
        ("PUT", "/v1/accounts/{ac}/SIP/{sc}") => {
            Some(json!({"password": server.encrypt("secret456"), "domain": "sip.example.com"}))
        }
        ("POST", "/v1/accounts/{ac}/balances") => {
            Some(json!({"amount": "10.00", "type": "TOPUP", "pay_method": 4}))
        }
        _ => None,
    }
}

async fn call_route(
    server: &Server,
    auth: &Auth,
    method: &str,
    template: &str,
    account: &str,
    sip: &str,
) -> Reply {
    let path = template.replace("{ac}", account).replace("{sc}", sip);
    let method = Method::from_bytes(method.as_bytes()).expect("HTTP method");
    match route_body(server, method.as_str(), template) {
        Some(body) => {
            let bytes = serde_json::to_vec(&body).expect("JSON body");
            server.send(method, &path, auth, Some("application/json"), Some(bytes), &[]).await
        }
        None => server.send(method, &path, auth, None, None, &[]).await,
    }
}

/// Fetches the sid of the sub-account's default SIP account.
async fn default_sip_sid(server: &Server, auth: &Auth, account: &str) -> String {
    let list = server.get(&format!("/v1/accounts/{account}/SIP"), auth).await;
    list.expect(200);
    list.json["sip_accounts"][0]["sid"].as_str().expect("a default SIP account").to_string()
}

#[tokio::test]
async fn other_developer_sees_404() {
    let server = Server::start().await;
    let owner = server.developer("Owner").await;
    let intruder = server.developer("Intruder").await;
    let account = server.account(&owner, "owned01").await;
    let account_sid = account["sid"].as_str().expect("sid").to_string();
    let sip_sid = default_sip_sid(&server, &owner.auth(), &account_sid).await;
    let nobody_account = unknown_sid("AC");
    let nobody_sip = unknown_sid("SC");
    let before = server.get(&format!("/v1/accounts/{account_sid}"), &owner.auth()).await;

    for (method, template) in ACCOUNT_ROUTES {
        let case = format!("{method} {template}");
        let foreign =
            call_route(&server, &intruder.auth(), method, template, &account_sid, &sip_sid).await;
        let absent =
            call_route(&server, &intruder.auth(), method, template, &nobody_account, &nobody_sip)
                .await;
        assert_eq!(foreign.status, 404, "{case}: status; body {}", foreign.text);
        foreign.expect_error(404);
        assert_eq!(foreign.json, absent.json, "{case}: same body as a sid that does not exist");
        assert_eq!(foreign.status, absent.status, "{case}: same status as an unknown sid");
    }

    let intruder_list = server.get("/v1/accounts", &intruder.auth()).await;
    let intruder_transactions = server.get("/v1/transactions", &intruder.auth()).await;
    let after = server.get(&format!("/v1/accounts/{account_sid}"), &owner.auth()).await;
    let balance = server.get(&format!("/v1/accounts/{account_sid}/balances"), &owner.auth()).await;
    let sip_list = server.get(&format!("/v1/accounts/{account_sid}/SIP"), &owner.auth()).await;
    intruder_list.expect(200);
    intruder_transactions.expect(200);
    assert_eq!(intruder_list.json["accounts"], json!([]), "no foreign account listed");
    assert_eq!(intruder_transactions.json["transactions"], json!([]), "no foreign transaction");
    assert_eq!(after.json, before.json, "the owner's account is unchanged");
    assert_eq!(balance.json["balance_amount"], "0.00", "no foreign posting landed");
    assert_eq!(sip_list.json["sip_accounts"].as_array().map(Vec::len), Some(1), "no SIP added");
    assert_json_snapshot("error_404", &after_not_found(&server, &intruder, &account_sid).await);
}

async fn after_not_found(server: &Server, developer: &Developer, account: &str) -> Value {
    let reply = server.get(&format!("/v1/accounts/{account}"), &developer.auth()).await;
    reply.expect_error(404);
    reply.json
}

#[tokio::test]
async fn platform_sees_and_filters() {
    let server = Server::start().await;
    let first = server.developer("First").await;
    let second = server.developer("Second").await;
    let first_account = server.account(&first, "first01").await;
    let second_account = server.account(&second, "second01").await;
    let first_sid = first_account["sid"].as_str().expect("sid");

    let fetched = server.get(&format!("/v1/accounts/{first_sid}"), &Auth::Platform).await;
    let everything = server.get("/v1/accounts", &Auth::Platform).await;
    let filtered =
        server.get(&format!("/v1/accounts?developer_id={}", second.sid), &Auth::Platform).await;
    let scoped_fetch = server
        .get(&format!("/v1/accounts/{first_sid}?developer_id={}", second.sid), &Auth::Platform)
        .await;
    let bad_filter = server.get("/v1/accounts?developer_id=DVxyz", &Auth::Platform).await;

    fetched.expect(200);
    everything.expect(200);
    filtered.expect(200);
    assert_eq!(fetched.json, first_account, "platform reads any developer's account");
    assert_eq!(everything.json["accounts"], json!([first_account, second_account]), "all");
    assert_eq!(filtered.json["accounts"], json!([second_account]), "developer_id filters");
    let link = filtered.json["uri"].as_str().unwrap_or_default();
    assert!(link.contains(&format!("developer_id={}", second.sid)), "filter kept: {link}");
    scoped_fetch.expect_error(404);
    bad_filter.expect_error(400);
    assert_eq!(bad_filter.error_fields(), vec!["developer_id"], "malformed developer_id");
}

#[tokio::test]
async fn developer_passing_developer_id() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "alice01").await;
    let sid = account["sid"].as_str().expect("sid");
    let own_id = developer.sid.clone();
    let create_body = json!({"login_id": "bob01", "password": "secret123", "developer_id": own_id});

    let list = server.get(&format!("/v1/accounts?developer_id={own_id}"), &developer.auth()).await;
    let fetch =
        server.get(&format!("/v1/accounts/{sid}?developer_id={own_id}"), &developer.auth()).await;
    let create = server.post_json("/v1/accounts", &developer.auth(), &create_body).await;
    let update = server
        .put_json(
            &format!("/v1/accounts/{sid}"),
            &developer.auth(),
            &json!({"developer_id": own_id}),
        )
        .await;

    for (case, reply) in [("list", list), ("fetch", fetch), ("create", create), ("update", update)]
    {
        assert_eq!(reply.status, 400, "case {case}: status; body {}", reply.text);
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), vec!["developer_id"], "case {case}: field");
    }
    let list = server.get("/v1/accounts?login_id=bob01", &developer.auth()).await;
    assert_eq!(list.json["accounts"], json!([]), "the rejected create left nothing");
}

#[tokio::test]
async fn platform_create_needs_developer() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let other = server.developer("Other").await;
    let body = |developer_id: Option<&str>| {
        let mut body = json!({"login_id": "plat01", "password": "secret123"});
        if let Some(id) = developer_id {
            body["developer_id"] = json!(id);
        }
        body
    };

    let without = server.post_json("/v1/accounts", &Auth::Platform, &body(None)).await;
    let unknown =
        server.post_json("/v1/accounts", &Auth::Platform, &body(Some(&unknown_sid("DV")))).await;
    let malformed = server.post_json("/v1/accounts", &Auth::Platform, &body(Some("DV12"))).await;
    let created =
        server.post_json("/v1/accounts", &Auth::Platform, &body(Some(&developer.sid))).await;

    without.expect_error(400);
    assert_eq!(without.error_fields(), vec!["developer_id"], "missing developer_id");
    assert_eq!(without.json["code"], 20002, "missing parameter code");
    unknown.expect_error(400);
    assert_eq!(unknown.error_fields(), vec!["developer_id"], "unknown developer_id");
    malformed.expect_error(400);
    assert_eq!(malformed.error_fields(), vec!["developer_id"], "malformed developer_id");
    created.expect(201);
    let sid = created.sid();
    let owner_view = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
    let other_view = server.get(&format!("/v1/accounts/{sid}"), &other.auth()).await;
    owner_view.expect(200);
    other_view.expect_error(404);
    assert_eq!(owner_view.json, created.json, "the named developer owns it");
}
