//! JSON and XML: the `.json` / `.xml` suffixes and the `Accept` header on
//! every kind of route (operations, resources, lists, creates, deletes),
//! and errors of the handlers and of the framework in both formats with the
//! same values.

use reqwest::Method;
use serde_json::{json, Value};
use subledger::api::format::to_xml;

use crate::support::{form, Auth, Developer, Reply, Server};

const XML: &str = "application/xml; charset=utf-8";
const ACCEPT_XML: (&str, &str) = ("accept", "application/xml");

#[track_caller]
fn assert_xml(reply: &Reply, status: u16, root: &str) {
    assert_eq!(reply.status, status, "status; body: {}", reply.text);
    assert_eq!(reply.header("content-type").as_deref(), Some(XML), "content type");
    assert!(reply.text.starts_with("<?xml version=\"1.0\""), "XML declaration: {}", reply.text);
    let opening = format!("<{root}>");
    assert!(reply.text.contains(&opening), "root element {root}: {}", reply.text);
}

#[track_caller]
fn assert_json(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "status; body: {}", reply.text);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert_eq!(content_type, "application/json", "content type");
    assert!(reply.json.is_object(), "JSON body: {}", reply.text);
}

async fn get_with(server: &Server, path: &str, auth: &Auth, headers: &[(&str, &str)]) -> Reply {
    server.send(Method::GET, path, auth, None, None, headers).await
}

/// A developer with one sub-account; returns the account's JSON.
async fn developer_with_account(server: &Server) -> (Developer, Value) {
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "xmlcase01").await;
    (developer, account)
}

#[tokio::test]
async fn operations_in_xml() {
    let server = Server::start().await;

    let health = server.get("/healthz.xml", &Auth::None).await;
    assert_xml(&health, 200, "Health");
    assert!(health.text.contains("<Health><status>ok</status></Health>"), "{}", health.text);
    let health = get_with(&server, "/healthz", &Auth::None, &[ACCEPT_XML]).await;
    assert_xml(&health, 200, "Health");
    assert_json(&server.get("/healthz.json", &Auth::None).await, 200);

    let ready_json = server.get("/readyz", &Auth::None).await;
    assert_json(&ready_json, 200);
    let ready = get_with(&server, "/readyz", &Auth::None, &[ACCEPT_XML]).await;
    assert_xml(&ready, 200, "Readiness");
    assert_eq!(ready.text, to_xml("Readiness", &ready_json.json), "same values as the JSON");
}

#[tokio::test]
async fn resource_xml_matches_json() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server).await;
    let auth = developer.auth();
    let path = format!("/v1/accounts/{}", account["sid"].as_str().expect("sid"));

    let json_reply = server.get(&path, &auth).await;
    assert_json(&json_reply, 200);
    let expected = to_xml("Account", &json_reply.json);

    let by_suffix = server.get(&format!("{path}.xml"), &auth).await;
    assert_xml(&by_suffix, 200, "Account");
    assert_eq!(by_suffix.text, expected, "suffix .xml");
    let by_accept = get_with(&server, &path, &auth, &[ACCEPT_XML]).await;
    assert_eq!(by_accept.text, expected, "Accept: application/xml");
    let text_xml = get_with(&server, &path, &auth, &[("accept", "text/xml")]).await;
    assert_eq!(text_xml.text, expected, "Accept: text/xml");

    let both = get_with(&server, &path, &auth, &[("accept", "application/json, application/xml")]);
    assert_json(&both.await, 200);
    let suffix_wins = get_with(&server, &format!("{path}.json"), &auth, &[ACCEPT_XML]).await;
    assert_json(&suffix_wins, 200);

    // Quality values rank the types; q=0 means not acceptable.
    let ranked = [
        ("application/xml;q=0", false),
        ("application/json;q=0.5, application/xml;q=0.9", true),
        ("application/json;q=0.9, application/xml;q=0.5", false),
        ("*/*;q=0.1, text/xml", true),
        ("*/*", false),
        ("text/html", false),
        // A named type overrides a range that covers it, and wins a tie
        // against a type that only a range covers.
        ("application/xml, */*", true),
        ("text/xml, application/*", true),
        ("application/json;q=0, */*", true),
        ("application/xml;q=0, */*", false),
        ("application/xml;q=0.5, */*", false),
    ];
    for (accept, wants_xml) in ranked {
        let reply = get_with(&server, &path, &auth, &[("accept", accept)]).await;
        if wants_xml {
            assert_eq!(reply.text, expected, "Accept: {accept} gives XML");
        } else {
            let content_type = reply.header("content-type").unwrap_or_default();
            assert_eq!(content_type, "application/json", "Accept: {accept} gives JSON");
            assert_json(&reply, 200);
        }
    }

    let sid = account["sid"].as_str().expect("sid");
    let sid_element = format!("<sid>{sid}</sid>");
    assert!(by_suffix.text.contains(&sid_element), "sid element: {}", by_suffix.text);
    assert!(by_suffix.text.contains("<balance_amount>0.00</balance_amount>"), "amount element");
    assert!(by_suffix.text.contains("<first_name/>"), "null is an empty element");
}

#[tokio::test]
async fn writes_in_xml() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let auth = developer.auth();

    let body = form(&[("login_id", "xmlwrite01"), ("password", "secret123")]);
    let form_type = Some("application/x-www-form-urlencoded");
    let created = server
        .send(Method::POST, "/v1/accounts.xml", &auth, form_type, Some(body.into_bytes()), &[])
        .await;
    assert_xml(&created, 201, "Account");
    assert!(created.text.contains("<login_id>xmlwrite01</login_id>"), "{}", created.text);

    // The created account as JSON, rendered as XML, is what the create sent.
    let sid = created.text.split("<sid>").nth(1).and_then(|rest| rest.split("</sid>").next());
    let sid = sid.expect("sid element in the created account");
    let fetched = server.get(&format!("/v1/accounts/{sid}"), &auth).await;
    assert_eq!(created.text, to_xml("Account", &fetched.json), "created body equals the fetch");

    let posting = json!({"amount": "12.5", "type": "TOPUP", "pay_method": 4});
    let bytes = serde_json::to_vec(&posting).expect("JSON body");
    let path = format!("/v1/accounts/{sid}/balances");
    let json_type = Some("application/json");
    let posted = server.send(Method::POST, &path, &auth, json_type, Some(bytes), &[ACCEPT_XML]);
    let posted = posted.await;
    assert_xml(&posted, 201, "Transaction");
    assert!(posted.text.contains("<amount>12.50</amount>"), "amount: {}", posted.text);
    assert!(posted.text.contains("<pay_method>4</pay_method>"), "pay_method: {}", posted.text);

    let sip_list = server.get(&format!("/v1/accounts/{sid}/SIP"), &auth).await;
    let sip_uri = sip_list.json["sip_accounts"][0]["uri"].as_str().expect("SIP uri").to_string();
    let sip_xml = server.get(&format!("{sip_uri}.xml"), &auth).await;
    assert_xml(&sip_xml, 200, "SipAccount");
    assert!(sip_xml.text.contains("<sip_aliases><sip_alias>"), "alias list: {}", sip_xml.text);

    let alias = server.get(&format!("{sip_uri}/aliases"), &auth).await;
    let alias_uri = alias.json["sip_aliases"][0]["uri"].as_str().expect("alias uri").to_string();
    let deleted = server.delete(&format!("{alias_uri}.xml"), &auth).await;
    assert_eq!(deleted.status, 204, "delete status: {}", deleted.text);
    assert_eq!(deleted.text, "", "204 has no body");
    assert_eq!(deleted.header("content-type"), None, "204 has no content type");
}

#[tokio::test]
async fn lists_in_xml_keep_paging() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let auth = developer.auth();
    server.account(&developer, "xmllist01").await;
    server.account(&developer, "xmllist02").await;

    let json_page = server.get("/v1/accounts.json?page_size=1", &auth).await;
    assert_json(&json_page, 200);
    let xml_page = server.get("/v1/accounts.xml?page_size=1", &auth).await;
    assert_xml(&xml_page, 200, "AccountList");

    // Page links keep the suffix of the request; the rest is the same.
    let mut expected = json_page.json.clone();
    for field in ["uri", "first_page_uri", "next_page_uri"] {
        let link = expected[field].as_str().expect("page link").replace(".json?", ".xml?");
        expected[field] = json!(link);
    }
    assert_eq!(xml_page.text, to_xml("AccountList", &expected), "same values as the JSON");

    let text = &xml_page.text;
    assert!(text.contains("<accounts><account><sid>AC"), "items: {text}");
    assert!(text.contains("<page>0</page>"), "page: {text}");
    assert!(text.contains("<page_size>1</page_size>"), "page_size: {text}");
    let uri = "<uri>/v1/accounts.xml?page=0&amp;page_size=1</uri>";
    assert!(text.contains(uri), "uri with an escaped ampersand: {text}");
    let next = "<next_page_uri>/v1/accounts.xml?page=1&amp;page_size=1</next_page_uri>";
    assert!(text.contains(next), "next_page_uri: {text}");
    assert!(text.contains("<previous_page_uri/>"), "previous_page_uri is empty: {text}");
}

/// One error case: the request, sent once as JSON and once as XML.
struct ErrorCase {
    name: &'static str,
    method: Method,
    path: String,
    auth: Auth,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: u16,
    code: u64,
}

async fn send_case(
    server: &Server,
    case: &ErrorCase,
    suffix: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let path = match case.path.split_once('?') {
        Some((path, query)) => format!("{path}{suffix}?{query}"),
        None => format!("{}{suffix}", case.path),
    };
    let body = case.body.clone();
    server.send(case.method.clone(), &path, &case.auth, case.content_type, body, headers).await
}

#[tokio::test]
async fn errors_in_xml() {
    let server = Server::start().await;
    let (developer, account) = developer_with_account(&server).await;
    let auth = developer.auth();
    let sid = account["sid"].as_str().expect("sid").to_string();
    let case = |name, method, path: String, auth: &Auth, status, code| ErrorCase {
        name,
        method,
        path,
        auth: auth.clone(),
        content_type: None,
        body: None,
        status,
        code,
    };
    let json_type = Some("application/json");
    let cases = vec![
        case("unknown route", Method::GET, "/v1/nothing".into(), &auth, 404, 20404),
        case("no credentials", Method::GET, "/v1/accounts".into(), &Auth::None, 401, 20101),
        case("wrong method", Method::DELETE, "/v1/accounts".into(), &auth, 405, 20405),
        case(
            "platform only",
            Method::GET,
            format!("/v1/developers/{}", developer.sid),
            &auth,
            403,
            20301,
        ),
        case(
            "unknown account",
            Method::GET,
            format!("/v1/accounts/AC{}", "0".repeat(32)),
            &auth,
            404,
            20404,
        ),
        case("unknown parameter", Method::GET, "/v1/accounts?colour=red".into(), &auth, 400, 20003),
        case("health wrong method", Method::POST, "/healthz".into(), &Auth::None, 405, 20405),
        ErrorCase {
            content_type: json_type,
            body: Some(br#"{"login_id": "1", "password": "secret123"}"#.to_vec()),
            ..case("invalid field", Method::POST, "/v1/accounts".into(), &auth, 400, 20001)
        },
        ErrorCase {
            content_type: json_type,
            body: Some(b"{\"login_id\": ".to_vec()),
            ..case("malformed JSON", Method::POST, "/v1/accounts".into(), &auth, 400, 20005)
        },
        ErrorCase {
            content_type: Some("text/plain"),
            body: Some(b"login_id=abcd".to_vec()),
            ..case("media type", Method::POST, "/v1/accounts".into(), &auth, 415, 20415)
        },
        ErrorCase {
            content_type: Some("application/x-www-form-urlencoded"),
            body: Some(vec![b'a'; 65 * 1024]),
            ..case("body too large", Method::POST, "/v1/accounts".into(), &auth, 413, 20413)
        },
        ErrorCase {
            content_type: json_type,
            body: Some(br#"{"amount": "-1", "type": "ADJUSTMENT", "pay_method": 1}"#.to_vec()),
            ..case(
                "overdraft",
                Method::POST,
                format!("/v1/accounts/{sid}/balances"),
                &auth,
                422,
                20422,
            )
        },
    ];

    for case in &cases {
        let name = case.name;
        let as_json = send_case(&server, case, "", &[]).await;
        assert_json(&as_json, case.status);
        assert_eq!(as_json.json["code"], case.code, "{name}: code; {}", as_json.text);
        assert_eq!(as_json.json["status"], case.status, "{name}: status field");

        let by_suffix = send_case(&server, case, ".xml", &[]).await;
        assert_xml(&by_suffix, case.status, "RestException");
        let by_accept = send_case(&server, case, "", &[ACCEPT_XML]).await;
        assert_xml(&by_accept, case.status, "RestException");

        // The message names the path for unknown routes, so compare the
        // XML of the same request (by Accept) with its JSON.
        let expected = to_xml("RestException", &as_json.json);
        assert_eq!(by_accept.text, expected, "{name}: XML has the JSON's values");
        let code = format!("<code>{}</code>", case.code);
        assert!(by_suffix.text.contains(&code), "{name}: code in XML: {}", by_suffix.text);
        let status = format!("<status>{}</status>", case.status);
        assert!(by_suffix.text.contains(&status), "{name}: status in XML");
        assert!(by_suffix.text.contains("<more_info>"), "{name}: more_info in XML");
        if case.status == 401 {
            let challenge = by_suffix.header("www-authenticate");
            assert_eq!(
                challenge.as_deref(),
                Some("Basic realm=\"subledger\""),
                "{name}: challenge"
            );
        }
    }
}

#[tokio::test]
async fn field_errors_in_xml() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let body = form(&[("login_id", "1bad"), ("password", "secret123")]);
    let reply = server
        .send(
            Method::POST,
            "/v1/accounts.xml",
            &developer.auth(),
            Some("application/x-www-form-urlencoded"),
            Some(body.into_bytes()),
            &[],
        )
        .await;
    assert_xml(&reply, 400, "RestException");
    let field = "<errors><error><field>login_id</field><reason>";
    assert!(reply.text.contains(field), "field error list: {}", reply.text);
}

#[tokio::test]
async fn fixed_format_routes() {
    let server = Server::start().await;

    let document = get_with(&server, "/openapi.json", &Auth::None, &[ACCEPT_XML]).await;
    assert_json(&document, 200);
    assert_eq!(document.json["openapi"], "3.1.0", "the document, whatever Accept says");

    let metrics = get_with(&server, "/metrics", &Auth::None, &[ACCEPT_XML]).await;
    assert_eq!(metrics.status, 200, "metrics status");
    let content_type = metrics.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "metrics type: {content_type}");

    let suffixed = server.get("/metrics.xml", &Auth::None).await;
    assert_json(&suffixed, 404);
    let suffixed = server.get("/openapi.json.xml", &Auth::None).await;
    assert_json(&suffixed, 404);
}
