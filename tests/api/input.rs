//! Bad input of every class: malformed or mistyped bodies, invalid UTF-8,
//! content types, repeated and unknown parameters, oversized bodies, unknown
//! routes and methods, and XML errors. The server rejects each with a 4xx
//! status in the error shape, never with a 500.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{assert_json_snapshot, form, Auth, Developer, Reply, Server};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
/// The largest body the server reads, from the API contract: 64 KiB.
const BODY_BYTES_MAX: usize = 64 * 1024;

async fn post_raw(server: &Server, auth: &Auth, content_type: Option<&str>, body: &[u8]) -> Reply {
    let body = Some(body.to_vec());
    server.send(Method::POST, "/v1/accounts", auth, content_type, body, &[]).await
}

/// Asserts a 400 in the error shape with `code`.
#[track_caller]
fn assert_bad_request(case: &str, reply: &Reply, code: u64) {
    assert_eq!(reply.status, 400, "{case}: status; body {}", reply.text);
    reply.expect_error(400);
    assert_eq!(reply.json["code"], code, "{case}: code");
}

/// Asserts that no request ended in a server error.
#[track_caller]
fn assert_no_server_errors(server: &Server) {
    let logs = server.logs();
    let failures: Vec<&String> = logs.iter().filter(|line| line.contains("status=5")).collect();
    assert!(failures.is_empty(), "server errors were logged: {failures:?}");
}

async fn setup() -> (Server, Developer) {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    (server, developer)
}

#[tokio::test]
async fn malformed_json_bodies() {
    let (server, developer) = setup().await;
    let cases: [(&str, &[u8]); 11] = [
        ("truncated", br#"{"login_id":"#),
        ("unquoted name", br#"{login_id: "abcd1"}"#),
        ("trailing brace", br#"{"login_id":"abcd1"}}"#),
        ("two objects", br#"{"login_id":"abcd1"} {"password":"x"}"#),
        ("single quotes", br#"{'login_id':'abcd1'}"#),
        ("array", br#"[{"login_id":"abcd1"}]"#),
        ("empty array", b"[]"),
        ("string", br#""login_id""#),
        ("number", b"42"),
        ("null", b"null"),
        ("boolean", b"true"),
    ];

    for (case, body) in cases {
        let reply = post_raw(&server, &developer.auth(), Some(JSON), body).await;
        assert_bad_request(case, &reply, 20005);
    }
    assert_no_server_errors(&server);
}

#[tokio::test]
async fn json_values_not_text() {
    let (server, developer) = setup().await;
    let cases = [
        ("object", json!({"a": 1})),
        ("empty object", json!({})),
        ("array", json!(["Ann"])),
        ("true", json!(true)),
        ("false", json!(false)),
    ];

    for (case, value) in cases {
        let body = json!({"login_id": "typed01", "password": "secret123", "first_name": value});
        let reply = server.post_json("/v1/accounts", &developer.auth(), &body).await;
        assert_bad_request(case, &reply, 20001);
        assert_eq!(reply.error_fields(), vec!["first_name"], "{case}: field named");
    }
    let listed = server.get("/v1/accounts", &developer.auth()).await;
    assert_eq!(listed.json["accounts"], json!([]), "nothing was created");
}

#[tokio::test]
async fn invalid_utf8_rejected() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let form_cases: [(&str, &[u8]); 4] = [
        ("raw byte in a form value", b"login_id=utf01&password=secret123&first_name=A\xffB"),
        ("escaped byte in a form value", b"login_id=utf01&password=secret123&first_name=A%FFB"),
        ("escaped byte in a form name", b"login_id=utf01&password=secret123&first%FF=Ann"),
        ("truncated escaped sequence", b"login_id=utf01&password=secret123&first_name=%E2%82"),
    ];
    for (case, body) in form_cases {
        let reply = post_raw(&server, &auth, Some(FORM), body).await;
        assert_bad_request(case, &reply, 20005);
    }

    let json_cases: [(&str, &[u8]); 2] = [
        ("raw byte in a JSON string", b"{\"login_id\":\"utf01\",\"first_name\":\"A\xffB\"}"),
        ("lone surrogate escape", br#"{"login_id":"utf01","first_name":"\ud800"}"#),
    ];
    for (case, body) in json_cases {
        let reply = post_raw(&server, &auth, Some(JSON), body).await;
        assert_bad_request(case, &reply, 20005);
    }

    let query = server.get("/v1/accounts?login_id=%FF", &auth).await;
    assert_bad_request("escaped byte in the query", &query, 20005);

    // Percent-encoded UTF-8 and a literal '%' still arrive intact.
    let pairs = [("login_id", "utf02"), ("password", "secret123"), ("first_name", "Zoë 100%+")];
    let valid = server.post_form("/v1/accounts", &auth, &pairs).await;
    valid.expect(201);
    assert_eq!(valid.json["first_name"], "Zoë 100%+", "decoded form text");
    let lenient = b"login_id=utf03&password=secret123&first_name=50%ZZ+off";
    let lenient = post_raw(&server, &auth, Some(FORM), lenient).await;
    lenient.expect(201);
    assert_eq!(lenient.json["first_name"], "50%ZZ off", "a bare '%' is kept");
    let listed = server.get("/v1/accounts", &auth).await;
    let count = listed.json["accounts"].as_array().map(Vec::len);
    assert_eq!(count, Some(2), "only the valid requests created accounts");
}

#[tokio::test]
async fn content_types() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let body = form(&[("login_id", "ctype01"), ("password", "secret123")]);
    let unsupported = [
        ("text/plain", Some("text/plain")),
        ("XML", Some("application/xml")),
        ("multipart", Some("multipart/form-data; boundary=x")),
        ("empty header", Some("")),
        ("no header", None),
    ];

    for (case, content_type) in unsupported {
        let reply = post_raw(&server, &auth, content_type, body.as_bytes()).await;
        assert_eq!(reply.status, 415, "{case}: status; body {}", reply.text);
        reply.expect_error(415);
        assert_eq!(reply.json["code"], 20415, "{case}: code");
        if case == "no header" {
            assert_json_snapshot("error_415", &reply.json);
        }
    }

    let json_body = br#"{"login_id": "ctype02", "password": "secret123"}"#;
    let with_charset =
        post_raw(&server, &auth, Some("application/json; charset=utf-8"), json_body).await;
    with_charset.expect(201);
    let capitals =
        post_raw(&server, &auth, Some("Application/X-WWW-Form-URLEncoded"), body.as_bytes()).await;
    capitals.expect(201);
    let header = [("content-type", JSON)];
    let get_with_type = server.send(Method::GET, "/v1/accounts", &auth, None, None, &header).await;
    get_with_type.expect(200);
    let empty_json = post_raw(&server, &auth, Some(JSON), b"").await;
    assert_bad_request("empty JSON body", &empty_json, 20002);
    assert_eq!(empty_json.error_fields(), vec!["login_id"], "an empty body has no parameters");
    assert_no_server_errors(&server);
}

#[tokio::test]
async fn repeated_parameters() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let base = [("login_id", "twice01"), ("password", "secret123")];

    let in_form = server
        .post_form(
            "/v1/accounts",
            &auth,
            &[base[0], base[1], ("first_name", "A"), ("first_name", "B")],
        )
        .await;
    let in_json = post_raw(
        &server,
        &auth,
        Some(JSON),
        br#"{"login_id":"twice01","password":"secret123","first_name":"A","first_name":"B"}"#,
    )
    .await;
    let null_then_value = post_raw(
        &server,
        &auth,
        Some(JSON),
        br#"{"login_id":"twice01","password":"secret123","first_name":null,"first_name":"B"}"#,
    )
    .await;
    let in_query = server.get("/v1/accounts?page_size=5&page_size=5", &auth).await;
    let query_and_body = server
        .post_form("/v1/accounts?first_name=A", &auth, &[base[0], base[1], ("first_name", "A")])
        .await;
    let json_and_query = server
        .post_json(
            "/v1/accounts?login_id=twice01",
            &auth,
            &json!({"login_id": "twice01", "password": "secret123"}),
        )
        .await;

    let cases = [
        ("form", &in_form, "first_name"),
        ("JSON", &in_json, "first_name"),
        ("JSON null then value", &null_then_value, "first_name"),
        ("query", &in_query, "page_size"),
        ("query and form body", &query_and_body, "first_name"),
        ("query and JSON body", &json_and_query, "login_id"),
    ];
    for (case, reply, name) in cases {
        assert_bad_request(case, reply, 20004);
        assert_eq!(reply.error_fields(), vec![name], "{case}: field");
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(name), "{case}: message names {name}: {message}");
    }
    let listed = server.get("/v1/accounts", &auth).await;
    assert_eq!(listed.json["accounts"], json!([]), "nothing was created");
}

#[tokio::test]
async fn unknown_parameters() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let account = server.account(&developer, "known01").await;
    let sid = account["sid"].as_str().expect("sid").to_string();

    let in_form = server
        .post_form(
            "/v1/accounts",
            &auth,
            &[("login_id", "new01"), ("password", "secret123"), ("nickname", "x")],
        )
        .await;
    let in_json = server
        .post_json(
            "/v1/accounts",
            &auth,
            &json!({"login_id": "new01", "password": "secret123", "nickname": "x"}),
        )
        .await;
    let null_json = server
        .post_json(
            "/v1/accounts",
            &auth,
            &json!({"login_id": "new01", "password": "secret123", "nickname": null}),
        )
        .await;
    let in_list_query = server.get("/v1/accounts?nickname=x", &auth).await;
    let in_fetch_query = server.get(&format!("/v1/accounts/{sid}?nickname=x"), &auth).await;
    let in_update =
        server.put_form(&format!("/v1/accounts/{sid}"), &auth, &[("nickname", "x")]).await;
    let create_only =
        server.put_form(&format!("/v1/accounts/{sid}"), &auth, &[("currency", "USD")]).await;

    let cases = [
        ("form", &in_form, "nickname"),
        ("JSON", &in_json, "nickname"),
        ("JSON null", &null_json, "nickname"),
        ("list query", &in_list_query, "nickname"),
        ("fetch query", &in_fetch_query, "nickname"),
        ("update body", &in_update, "nickname"),
        ("create-only parameter in update", &create_only, "currency"),
    ];
    for (case, reply, name) in cases {
        assert_bad_request(case, reply, 20003);
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(name), "{case}: message names {name}: {message}");
    }
    let listed = server.get("/v1/accounts", &auth).await;
    assert_eq!(listed.json["accounts"], json!([account]), "nothing changed");
}

/// Builds a form body of exactly `bytes` bytes whose `first_name` fills the rest.
fn form_of_size(bytes: usize) -> Vec<u8> {
    let prefix = "login_id=large01&password=secret123&first_name=";
    let mut body = prefix.as_bytes().to_vec();
    body.resize(bytes, b'a');
    body
}

/// Sends `body` as a chunked POST over a raw connection, in chunks of
/// `chunk_bytes`, and returns the status and the response body.
async fn post_chunked(
    server: &Server,
    auth: &str,
    body: &[u8],
    chunk_bytes: usize,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\n\
         Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(chunk_bytes) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may respond and close the connection before it reads the
    // whole body, so a failed write is expected.
    let _ = stream.write_all(&request).await;

    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response));
    let _ = read.await.expect("the server answers within 30 s");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body_text = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body_text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn body_size_limits() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", developer.sid, developer.key));
    let authorization = format!("Basic {token}");

    let at_limit = post_raw(&server, &auth, Some(FORM), &form_of_size(BODY_BYTES_MAX)).await;
    let over_limit = post_raw(&server, &auth, Some(FORM), &form_of_size(BODY_BYTES_MAX + 1)).await;
    let far_over = post_raw(&server, &auth, Some(FORM), &form_of_size(4 * BODY_BYTES_MAX)).await;
    let over_json = format!(r#"{{"login_id":"large01","desc":"{}"}}"#, "a".repeat(BODY_BYTES_MAX));
    let over_json = post_raw(&server, &auth, Some(JSON), over_json.as_bytes()).await;

    // At the limit the body is read, and its too long first_name is the error.
    assert_bad_request("at the limit", &at_limit, 20001);
    assert_eq!(at_limit.error_fields(), vec!["first_name"], "at the limit: field");
    for (case, reply) in
        [("one byte over", &over_limit), ("far over", &far_over), ("JSON", &over_json)]
    {
        assert_eq!(reply.status, 413, "{case}: status; body {}", reply.text);
        reply.expect_error(413);
        assert_eq!(reply.json["code"], 20413, "{case}: code");
    }
    assert_json_snapshot("error_413", &over_limit.json);

    let (status, body) =
        post_chunked(&server, &authorization, &form_of_size(BODY_BYTES_MAX + 1), 8192).await;
    assert_eq!(status, 413, "chunked over the limit: {body}");
    assert_eq!(body["status"], 413, "chunked over the limit: error shape {body}");
    assert_eq!(body["code"], 20413, "chunked over the limit: code");
    let small = form(&[("login_id", "chunked01"), ("password", "secret123")]);
    let (status, body) = post_chunked(&server, &authorization, small.as_bytes(), 7).await;
    assert_eq!(status, 201, "a small chunked body is read: {body}");
    assert_eq!(body["login_id"], "chunked01", "chunked body parsed");
    assert_no_server_errors(&server);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let account = server.account(&developer, "route01").await;
    let sid = account["sid"].as_str().expect("sid").to_string();

    let not_found = [
        "/v1/nothing".to_string(),
        "/v1".to_string(),
        "/".to_string(),
        "/v1/accounts/".to_string(),
        format!("/v1/accounts/{sid}/"),
        format!("/v1/accounts/{sid}/SIP/"),
        "/v2/accounts".to_string(),
        "/v1/Accounts".to_string(),
        format!("/v1/accounts/{}", sid.to_uppercase()),
        "/v1/accounts/ACnothex".to_string(),
    ];
    for path in &not_found {
        let reply = server.get(path, &auth).await;
        assert_eq!(reply.status, 404, "GET {path}: status; body {}", reply.text);
        reply.expect_error(404);
    }

    let wrong_methods = [
        (Method::DELETE, "/v1/accounts".to_string(), "GET, POST"),
        (Method::PUT, "/v1/accounts".to_string(), "GET, POST"),
        (Method::PATCH, format!("/v1/accounts/{sid}"), "GET, PUT"),
        (Method::POST, format!("/v1/accounts/{sid}"), "GET, PUT"),
        (Method::DELETE, format!("/v1/accounts/{sid}"), "GET, PUT"),
        (Method::GET, "/v1/developers".to_string(), "POST"),
        (Method::POST, "/healthz".to_string(), "GET"),
    ];
    let mut method_error = Value::Null;
    for (method, path, allow) in wrong_methods {
        let case = format!("{method} {path}");
        let reply = server.send(method, &path, &auth, None, None, &[]).await;
        assert_eq!(reply.status, 405, "{case}: status; body {}", reply.text);
        reply.expect_error(405);
        assert_eq!(reply.header("allow").as_deref(), Some(allow), "{case}: Allow header");
        method_error = reply.json.clone();
    }
    assert_json_snapshot("error_405", &method_error);
    let fetched = server.get(&format!("/v1/accounts/{sid}"), &auth).await;
    assert_eq!(fetched.json, account, "the account is untouched");
}

#[tokio::test]
async fn xml_errors() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let unknown = format!("AC{:032x}", rand::random::<u128>());
    let bad_login = br#"{"login_id":"1bad","password":"secret123"}"#;
    let xml_accept = [("accept", "application/xml")];

    let cases = [
        ("404 by suffix", server.get(&format!("/v1/accounts/{unknown}.xml"), &auth).await, 404),
        (
            "404 by Accept",
            server.send(Method::GET, "/v1/nothing", &auth, None, None, &xml_accept).await,
            404,
        ),
        ("405", server.send(Method::DELETE, "/v1/accounts.xml", &auth, None, None, &[]).await, 405),
        (
            "415",
            server
                .send(
                    Method::POST,
                    "/v1/accounts.xml",
                    &auth,
                    Some("text/plain"),
                    Some(b"x".to_vec()),
                    &[],
                )
                .await,
            415,
        ),
        (
            "400",
            server
                .send(
                    Method::POST,
                    "/v1/accounts.xml",
                    &auth,
                    Some(JSON),
                    Some(bad_login.to_vec()),
                    &[],
                )
                .await,
            400,
        ),
        (
            "413",
            server
                .send(
                    Method::POST,
                    "/v1/accounts.xml",
                    &auth,
                    Some(FORM),
                    Some(form_of_size(BODY_BYTES_MAX + 1)),
                    &[],
                )
                .await,
            413,
        ),
    ];

    for (case, reply, status) in &cases {
        assert_eq!(reply.status, *status, "{case}: status; body {}", reply.text);
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/xml"), "{case}: content type {content_type}");
        assert!(reply.text.starts_with("<?xml"), "{case}: XML declaration: {}", reply.text);
        assert!(reply.text.contains("<RestException>"), "{case}: root: {}", reply.text);
        assert!(
            reply.text.contains(&format!("<status>{status}</status>")),
            "{case}: status element"
        );
        assert!(reply.text.contains("<code>"), "{case}: code element: {}", reply.text);
        assert!(reply.text.contains("<message>"), "{case}: message element: {}", reply.text);
        assert!(reply.text.contains("<more_info>"), "{case}: more_info element: {}", reply.text);
    }
    let invalid = &cases[4].1;
    let field = "<errors><error><field>login_id</field>";
    assert!(invalid.text.contains(field), "400 lists its field in XML: {}", invalid.text);
}

#[tokio::test]
async fn json_null_is_absent() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let body = json!({
        "login_id": "null01",
        "password": "secret123",
        "encrypt_type": null,
        "first_name": null,
        "email": null,
        "domain": null,
        "currency": null,
    });

    let created = server.post_json("/v1/accounts", &auth, &body).await;
    let missing = server
        .post_json("/v1/accounts", &auth, &json!({"login_id": null, "password": "secret123"}))
        .await;
    created.expect(201);
    let sid = created.sid();
    let named =
        server.put_json(&format!("/v1/accounts/{sid}"), &auth, &json!({"first_name": "Ann"})).await;
    let nulled = server
        .put_json(
            &format!("/v1/accounts/{sid}"),
            &auth,
            &json!({"first_name": null, "status": null}),
        )
        .await;

    assert_eq!(created.json["first_name"], Value::Null, "null first_name is absent");
    assert_eq!(created.json["email"], Value::Null, "null email is absent");
    assert_eq!(created.json["domain"], "sip.example.com", "null domain takes the default");
    assert_eq!(created.json["currency"], "SGD", "null currency takes the default");
    assert_bad_request("null login_id", &missing, 20002);
    assert_eq!(missing.error_fields(), vec!["login_id"], "null required parameter is missing");
    named.expect(200);
    nulled.expect(200);
    assert_eq!(nulled.json["first_name"], "Ann", "null in a PUT leaves the field");
    assert_eq!(nulled.json["status"], "active", "null status leaves the status");
}

#[tokio::test]
async fn stalled_body_times_out() {
    let (server, developer) = setup().await;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", developer.sid, developer.key));
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("send the head and one byte");

    // The body never completes: the server gives up after its read deadline.
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response));
    let _ = read.await.expect("the server answers a stalled body within 30 s");
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "status line: {text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default())
        .unwrap_or(Value::Null);
    assert_eq!(body["status"], 408, "error shape: {text}");
    assert_eq!(body["code"], 20408, "error code: {text}");
}

#[tokio::test]
async fn body_on_read_rejected() {
    let (server, developer) = setup().await;
    let auth = developer.auth();
    let form_body = Some(b"status=closed".to_vec());
    let listed = server.send(Method::GET, "/v1/accounts", &auth, Some(FORM), form_body, &[]).await;
    listed.expect_error(400);
    assert!(
        listed.json["message"].as_str().unwrap_or("").contains("query string"),
        "{}",
        listed.text
    );

    let empty = server.send(Method::GET, "/v1/accounts", &auth, Some(FORM), None, &[]).await;
    empty.expect(200);
}

/// Waits for the request log line of `request_id`.
async fn request_log_line(server: &Server, request_id: &str) -> String {
    let needle = format!("request_id={request_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let logs = server.logs();
        let found =
            logs.iter().find(|line| line.contains("request completed") && line.contains(&needle));
        if let Some(line) = found {
            return line.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no log line for {request_id}: {logs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rejected_request_logs_code() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let invalid = json!({"login_id": "ab", "password": "secret123"});
    let cases = [
        ("invalid login_id", Method::POST, "/v1/accounts", Some(invalid), 400, 20001),
        ("unknown route", Method::GET, "/v1/nothing", None, 404, 20404),
        ("wrong method", Method::PATCH, "/v1/accounts", None, 405, 20405),
    ];
    for (index, (case, method, path, body, status, code)) in cases.into_iter().enumerate() {
        let request_id = format!("rejected-{index}");
        let headers = [("x-request-id", request_id.as_str())];
        let bytes = body.map(|body| serde_json::to_vec(&body).expect("JSON body"));
        let content_type = bytes.as_ref().map(|_| JSON);
        let reply =
            server.send(method, path, &developer.auth(), content_type, bytes, &headers).await;
        assert_eq!(reply.status, status, "{case}: status; body {}", reply.text);
        assert_eq!(reply.json["code"], code, "{case}: code in the body");
        let line = request_log_line(&server, &request_id).await;
        assert!(line.contains(&format!("status={status}")), "{case}: status logged: {line}");
        assert!(line.contains(&format!("code={code}")), "{case}: code logged: {line}");
    }
}
