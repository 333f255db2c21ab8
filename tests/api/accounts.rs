//! Sub-accounts over HTTP: the field rules of create and update, encrypted
//! passwords, the default SIP account, the status lifecycle, list paging and
//! filters, and that no response or log line shows a password.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use subledger::crypto::{encrypt_password, AesKey};

use crate::support::{assert_json_snapshot, Auth, Developer, Reply, Server};

const PASSWORD: &str = "secret123";

fn create_body(login_id: &str) -> Value {
    json!({"login_id": login_id, "password": PASSWORD})
}

async fn create(server: &Server, developer: &Developer, body: &Value) -> Reply {
    server.post_json("/v1/accounts", &developer.auth(), body).await
}

/// Returns the response field that shows a request parameter.
fn shown_as(field: &str) -> &str {
    match field {
        "mobile_phone" => "phone_number",
        other => other,
    }
}

/// Asserts that no text contains a password, its hash or the AES key.
#[track_caller]
fn assert_no_secrets(server: &Server, texts: &[&str], passwords: &[&str]) {
    let aes_key = server.aes_key.to_base64();
    for text in texts {
        for password in passwords {
            assert!(!text.contains(password), "a password leaked: {text}");
        }
        assert!(!text.contains("argon2"), "a password hash leaked: {text}");
        assert!(!text.contains(&aes_key), "the AES key leaked: {text}");
        assert!(!text.contains(&server.platform_key), "the platform key leaked: {text}");
    }
}

/// What a field case expects.
enum Expect {
    /// 201, and the response shows this value.
    Stored(Value),
    /// 400 naming the field.
    Rejected,
}

/// Creates one sub-account per case with `field` set to the case's value and
/// checks each outcome.
async fn check_field_cases(field: &str, cases: Vec<(&str, Value, Expect)>) {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let mut texts = Vec::new();

    for (index, (case, value, expect)) in cases.into_iter().enumerate() {
        let mut body = create_body(&format!("case{index:02}"));
        body[field] = value;
        let reply = create(&server, &developer, &body).await;
        match expect {
            Expect::Stored(shown) => {
                assert_eq!(reply.status, 201, "{field} {case}: status; body {}", reply.text);
                assert_eq!(reply.json[shown_as(field)], shown, "{field} {case}: stored value");
            }
            Expect::Rejected => {
                assert_eq!(reply.status, 400, "{field} {case}: status; body {}", reply.text);
                reply.expect_error(400);
                assert_eq!(reply.error_fields(), vec![field], "{field} {case}: errors");
                assert_eq!(reply.json["code"], 20001, "{field} {case}: code");
            }
        }
        texts.push(reply.text);
    }
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_no_secrets(&server, &texts, &[PASSWORD]);
}

#[tokio::test]
async fn login_id_rules() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let cases = [
        ("3 chars", "abc".to_string(), false),
        ("4 chars", "abcd".to_string(), true),
        ("32 chars", format!("a{}", "b".repeat(31)), true),
        ("33 chars", format!("a{}", "b".repeat(32)), false),
        ("all allowed chars", "Ab9.x_y-z".to_string(), true),
        ("digit first", "1abcd".to_string(), false),
        ("dot first", ".abcd".to_string(), false),
        ("space", "ab cd".to_string(), false),
        ("at sign", "ab@cd".to_string(), false),
        ("non-ASCII letter", "abcdé".to_string(), false),
        ("empty", String::new(), false),
    ];

    for (case, login_id, accepted) in cases {
        let reply = create(&server, &developer, &create_body(&login_id)).await;
        if accepted {
            assert_eq!(reply.status, 201, "login_id {case}: status; body {}", reply.text);
            assert_eq!(reply.json["login_id"], login_id, "login_id {case}: kept as given");
        } else {
            assert_eq!(reply.status, 400, "login_id {case}: status; body {}", reply.text);
            reply.expect_error(400);
            assert_eq!(reply.error_fields(), vec!["login_id"], "login_id {case}: errors");
        }
    }
    let missing = create(&server, &developer, &json!({"password": PASSWORD})).await;
    missing.expect_error(400);
    assert_eq!(missing.error_fields(), vec!["login_id"], "missing login_id");
    assert_eq!(missing.json["code"], 20002, "missing parameter code");
    let invalid = create(&server, &developer, &create_body("1abcd")).await;
    assert_json_snapshot("error_400", &invalid.json);
}

#[tokio::test]
async fn login_id_unique_any_case() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let other = server.developer("Other").await;
    create(&server, &developer, &create_body("Alice01")).await.expect(201);

    let lower = create(&server, &developer, &create_body("alice01")).await;
    let upper = create(&server, &developer, &create_body("ALICE01")).await;
    let other_developer = create(&server, &other, &create_body("alice01")).await;

    for (case, reply) in
        [("lower", &lower), ("upper", &upper), ("other developer", &other_developer)]
    {
        assert_eq!(reply.status, 409, "case {case}: status; body {}", reply.text);
        reply.expect_error(409);
        assert_eq!(reply.json["code"], 20409, "case {case}: name taken code");
    }
    let listed = server.get("/v1/accounts", &Auth::Platform).await;
    assert_eq!(listed.json["accounts"].as_array().map(Vec::len), Some(1), "one account");
    assert_json_snapshot("error_409", &lower.json);
}

#[tokio::test]
async fn login_id_unique_concurrent() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let spellings = ["race01", "RACE01", "Race01", "rAcE01", "race01", "RACE01"];

    let creates = spellings.map(|login_id| {
        let body = create_body(login_id);
        let server = &server;
        let developer = &developer;
        async move { create(server, developer, &body).await }
    });
    let replies = futures_util::future::join_all(creates).await;

    let created: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 201).collect();
    let conflicts = replies.iter().filter(|reply| reply.status == 409).count();
    assert_eq!(created.len(), 1, "exactly one create wins: {replies:?}");
    assert_eq!(conflicts, spellings.len() - 1, "every other create is 409");
    let listed = server.get("/v1/accounts?login_id=race01", &developer.auth()).await;
    assert_eq!(listed.json["accounts"], json!([created[0].json]), "only the winner exists");
}

#[tokio::test]
async fn name_rules() {
    use Expect::{Rejected, Stored};
    let composed = "é".repeat(64);
    let decomposed = "e\u{301}".repeat(64);
    for field in ["first_name", "last_name"] {
        let cases = vec![
            ("64 two-byte chars", json!(composed), Stored(json!(composed))),
            ("64 chars after NFC", json!(decomposed), Stored(json!(composed))),
            ("64 CJK chars", json!("日".repeat(64)), Stored(json!("日".repeat(64)))),
            ("untrimmed", json!(" Ann "), Stored(json!(" Ann "))),
            ("65 chars", json!("é".repeat(65)), Rejected),
            ("65 CJK chars", json!("日".repeat(65)), Rejected),
            ("empty", json!(""), Rejected),
            ("only spaces", json!("   "), Rejected),
            ("only U+200B", json!("\u{200B}"), Rejected),
            ("only invisible and space", json!("\u{FEFF} \u{200B}"), Rejected),
            ("control char", json!("Ann\u{7}"), Rejected),
            ("tab", json!("Ann\tLee"), Rejected),
            ("line feed", json!("Ann\nLee"), Rejected),
            ("bidi override", json!("Ann\u{202E}eeL"), Rejected),
            ("bidi isolate", json!("\u{2067}Ann"), Rejected),
            ("JSON number", json!(12), Stored(json!("12"))),
        ];
        check_field_cases(field, cases).await;
    }
}

#[tokio::test]
async fn email_rules() {
    use Expect::{Rejected, Stored};
    let longest = format!("{}@b.co", "a".repeat(249));
    let cases = vec![
        ("short", json!("a@b"), Stored(json!("a@b"))),
        (
            "tagged",
            json!("first.last+tag@example.com"),
            Stored(json!("first.last+tag@example.com")),
        ),
        ("254 chars", json!(longest), Stored(json!(longest))),
        ("255 chars", json!(format!("a{longest}")), Rejected),
        ("no at sign", json!("user.example.com"), Rejected),
        ("two at signs", json!("a@b@example.com"), Rejected),
        ("nothing before", json!("@example.com"), Rejected),
        ("nothing after", json!("user@"), Rejected),
        ("space", json!("us er@example.com"), Rejected),
        ("empty", json!(""), Rejected),
    ];
    check_field_cases("email", cases).await;
}

#[tokio::test]
async fn mobile_phone_rules() {
    use Expect::{Rejected, Stored};
    let cases = vec![
        ("plus and digits", json!("+6591234567"), Stored(json!("+6591234567"))),
        ("4 digits", json!("1234"), Stored(json!("1234"))),
        ("15 digits", json!("123456789012345"), Stored(json!("123456789012345"))),
        ("3 digits", json!("123"), Rejected),
        ("16 digits", json!("+1234567890123456"), Rejected),
        ("spaces", json!("+65 9123 4567"), Rejected),
        ("dash", json!("6591-2345"), Rejected),
        ("plus only", json!("+"), Rejected),
        ("two plus signs", json!("++6591234567"), Rejected),
        ("full-width digits", json!("\u{FF16}\u{FF15}\u{FF19}\u{FF11}"), Rejected),
        ("empty", json!(""), Rejected),
    ];
    check_field_cases("mobile_phone", cases).await;
}

#[tokio::test]
async fn domain_rules() {
    use Expect::{Rejected, Stored};
    let label = "a".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    let cases = vec![
        ("mixed case", json!("Voice.Example.ORG"), Stored(json!("voice.example.org"))),
        ("hyphen", json!("sip-1.example.com"), Stored(json!("sip-1.example.com"))),
        ("253 chars", json!(longest), Stored(json!(longest))),
        ("254 chars", json!(format!("c{longest}")), Rejected),
        ("one label", json!("localhost"), Rejected),
        ("leading hyphen", json!("-sip.example.com"), Rejected),
        ("empty label", json!("sip..example.com"), Rejected),
        ("trailing dot", json!("sip.example.com."), Rejected),
        ("IPv4 address", json!("10.0.0.1"), Rejected),
        ("underscore", json!("sip_1.example.com"), Rejected),
        ("non-ASCII", json!("bücher.example"), Rejected),
        ("64-char label", json!(format!("{}.example.com", "a".repeat(64))), Rejected),
        ("empty", json!(""), Rejected),
    ];
    check_field_cases("domain", cases).await;

    // The default SIP account takes the lower-cased domain too, and an
    // account without a domain gets the server's default.
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let mut body = create_body("mixed01");
    body["domain"] = json!("Voice.Example.ORG");
    let mixed = create(&server, &developer, &body).await;
    mixed.expect(201);
    let plain = create(&server, &developer, &create_body("plain01")).await;
    plain.expect(201);
    let sip = server.get(&format!("/v1/accounts/{}/SIP", mixed.sid()), &developer.auth()).await;
    assert_eq!(sip.json["sip_accounts"][0]["domain"], "voice.example.org", "SIP domain");
    assert_eq!(plain.json["domain"], "sip.example.com", "default domain");
}

#[tokio::test]
async fn currency_rules() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let cases = [
        ("default", None, Some(("SGD", "S$0.00"))),
        ("USD", Some("USD"), Some(("USD", "$0.00"))),
        ("EUR", Some("EUR"), Some(("EUR", "€0.00"))),
        ("MYR without a symbol", Some("MYR"), Some(("MYR", "MYR 0.00"))),
        ("unknown code", Some("XYZ"), None),
        ("lower case", Some("usd"), None),
        ("empty", Some(""), None),
    ];

    for (index, (case, currency, expected)) in cases.into_iter().enumerate() {
        let mut body = create_body(&format!("money{index:02}"));
        if let Some(code) = currency {
            body["currency"] = json!(code);
        }
        let reply = create(&server, &developer, &body).await;
        match expected {
            Some((code, balance)) => {
                assert_eq!(reply.status, 201, "currency {case}: status; body {}", reply.text);
                assert_eq!(reply.json["currency"], code, "currency {case}: code");
                assert_eq!(reply.json["balance"], balance, "currency {case}: balance");
                assert_eq!(reply.json["balance_amount"], "0.00", "currency {case}: amount");
            }
            None => {
                assert_eq!(reply.status, 400, "currency {case}: status; body {}", reply.text);
                reply.expect_error(400);
                assert_eq!(reply.error_fields(), vec!["currency"], "currency {case}: errors");
            }
        }
    }
}

#[tokio::test]
async fn encrypt_type_rules() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let sealed = server.encrypt(PASSWORD);
    let cases = [
        ("absent, plain", None, PASSWORD.to_string(), None),
        ("0, plain", Some(json!(0)), PASSWORD.to_string(), None),
        ("\"0\", plain", Some(json!("0")), PASSWORD.to_string(), None),
        ("1, AES", Some(json!(1)), sealed.clone(), None),
        ("\"1\", AES", Some(json!("1")), sealed.clone(), None),
        ("1, plain text", Some(json!(1)), PASSWORD.to_string(), Some("password")),
        ("2", Some(json!(2)), PASSWORD.to_string(), Some("encrypt_type")),
        ("x", Some(json!("x")), PASSWORD.to_string(), Some("encrypt_type")),
        ("-1", Some(json!(-1)), PASSWORD.to_string(), Some("encrypt_type")),
        ("1.0", Some(json!(1.0)), sealed.clone(), Some("encrypt_type")),
        ("empty", Some(json!("")), PASSWORD.to_string(), Some("encrypt_type")),
    ];

    for (index, (case, encrypt_type, password, rejected)) in cases.into_iter().enumerate() {
        let mut body = json!({"login_id": format!("enc{index:02}"), "password": password});
        if let Some(value) = encrypt_type {
            body["encrypt_type"] = value;
        }
        let reply = create(&server, &developer, &body).await;
        match rejected {
            None => assert_eq!(reply.status, 201, "{case}: status; body {}", reply.text),
            Some(field) => {
                assert_eq!(reply.status, 400, "{case}: status; body {}", reply.text);
                reply.expect_error(400);
                assert_eq!(reply.error_fields(), vec![field], "{case}: errors");
            }
        }
        assert_no_secrets(&server, &[&reply.text], &[PASSWORD]);
    }
}

/// Decodes base64 `encoded`, applies `change` to the bytes and encodes them
/// again.
fn altered(encoded: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(encoded).expect("the server's encryption is base64");
    change(&mut bytes);
    engine.encode(bytes)
}

#[tokio::test]
async fn aes_password_rules() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let sealed = server.encrypt(PASSWORD);
    let engine = base64::engine::general_purpose::STANDARD;
    let random_bytes: Vec<u8> = (0..40).map(|_| rand::random::<u8>()).collect();
    let rejected = [
        ("tampered tag", altered(&sealed, |b| *b.last_mut().expect("bytes") ^= 1)),
        ("tampered nonce", altered(&sealed, |b| b[0] ^= 1)),
        ("tampered ciphertext", altered(&sealed, |b| b[12] ^= 1)),
        ("truncated by a byte", altered(&sealed, |b| b.truncate(b.len() - 1))),
        ("truncated below nonce and tag", altered(&sealed, |b| b.truncate(20))),
        ("wrong key", encrypt_password(&AesKey::generate(), PASSWORD)),
        ("not base64", "%%%not base64%%%".to_string()),
        ("unpadded base64", sealed.trim_end_matches('=').to_string()),
        ("random bytes", engine.encode(&random_bytes)),
        ("empty", String::new()),
    ];
    assert!(sealed.ends_with('='), "the unpadded case needs padding to strip: {sealed}");
    let mut first_error: Option<Value> = None;

    for (index, (case, password)) in rejected.into_iter().enumerate() {
        let body =
            json!({"login_id": format!("aes{index:02}"), "password": password, "encrypt_type": 1});
        let reply = create(&server, &developer, &body).await;
        assert_eq!(reply.status, 400, "{case}: status; body {}", reply.text);
        reply.expect_error(400);
        assert_eq!(reply.error_fields(), vec!["password"], "{case}: errors");
        match &first_error {
            None => first_error = Some(reply.json.clone()),
            Some(error) => assert_eq!(&reply.json, error, "{case}: one generic error"),
        }
    }

    let body = json!({"login_id": "aesgood", "password": sealed, "encrypt_type": 1});
    let accepted = create(&server, &developer, &body).await;
    accepted.expect(201);
    let weak =
        json!({"login_id": "aesweak", "password": server.encrypt("short1"), "encrypt_type": 1});
    let weak = create(&server, &developer, &weak).await;
    weak.expect_error(400);
    assert_eq!(weak.error_fields(), vec!["password"], "decrypted password follows the rules");
    assert_ne!(Some(&weak.json), first_error.as_ref(), "a rule breach is not a decryption error");
    let logs = server.logs().join("\n");
    assert_no_secrets(&server, &[&logs, &accepted.text, &weak.text], &[PASSWORD, &sealed]);
}

#[tokio::test]
async fn password_rules() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let longest = format!("a1{}", "x".repeat(126));
    let too_long = format!("{longest}z");
    let cases = [
        ("7 chars", "abc1234", false),
        ("8 chars", "abcd1234", true),
        ("128 chars", longest.as_str(), true),
        ("129 chars", too_long.as_str(), false),
        ("no digit", "abcdefgh", false),
        ("no letter", "12345678", false),
        ("space", "abcd 1234", false),
        ("non-ASCII", "pässwörd1", false),
        ("tab", "abcd\t1234", false),
        ("empty", "", false),
    ];

    for (index, (case, password, accepted)) in cases.into_iter().enumerate() {
        let body = json!({"login_id": format!("pw{index:02}"), "password": password});
        let reply = create(&server, &developer, &body).await;
        if accepted {
            assert_eq!(reply.status, 201, "{case}: status; body {}", reply.text);
        } else {
            assert_eq!(reply.status, 400, "{case}: status; body {}", reply.text);
            reply.expect_error(400);
            assert_eq!(reply.error_fields(), vec!["password"], "{case}: errors");
        }
        if password.len() >= 4 {
            assert!(!reply.text.contains(password), "{case}: password echoed: {}", reply.text);
        }
        assert!(!reply.text.contains("argon2"), "{case}: hash shown: {}", reply.text);
    }
    let missing = create(&server, &developer, &json!({"login_id": "nopass"})).await;
    missing.expect_error(400);
    assert_eq!(missing.error_fields(), vec!["password"], "missing password");
    let logs = server.logs().join("\n");
    assert_no_secrets(&server, &[&logs], &["abcd1234", &longest, PASSWORD]);
}

#[tokio::test]
async fn json_and_form_agree() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let fields = [
        ("password", PASSWORD),
        ("encrypt_type", "0"),
        ("first_name", "Zoë"),
        ("last_name", "O'Brien & Co"),
        ("email", "zoe+1@example.com"),
        ("mobile_phone", "+6591234567"),
        ("domain", "Voice.Example.NET"),
        ("currency", "USD"),
    ];
    let mut json_body = json!({"login_id": "viajson"});
    let mut form_pairs = vec![("login_id", "viaform")];
    for (name, value) in fields {
        json_body[name] = json!(value);
        form_pairs.push((name, value));
    }

    let from_json = create(&server, &developer, &json_body).await;
    let from_form = server.post_form("/v1/accounts", &developer.auth(), &form_pairs).await;

    from_json.expect(201);
    from_form.expect(201);
    let comparable = |reply: &Reply| {
        let mut body = reply.json.clone();
        let map = body.as_object_mut().expect("object");
        for varying in
            ["sid", "login_id", "date_created", "date_updated", "uri", "sub_resource_uris"]
        {
            map.remove(varying);
        }
        body
    };
    assert_eq!(comparable(&from_json), comparable(&from_form), "same fields either way");
    assert_eq!(from_form.json["login_id"], "viaform", "form login_id");
    assert_eq!(from_form.json["first_name"], "Zoë", "form UTF-8 text");
    assert_eq!(from_form.json["last_name"], "O'Brien & Co", "form escapes");
    assert_eq!(from_form.json["domain"], "voice.example.net", "form domain lower-cased");
    assert_eq!(from_form.json["currency"], "USD", "form currency");
}

#[tokio::test]
async fn json_suffix_same_resource() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;

    let created =
        server.post_json("/v1/accounts.json", &developer.auth(), &create_body("suffix01")).await;
    created.expect(201);
    let sid = created.sid();
    let plain = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
    let suffixed = server.get(&format!("/v1/accounts/{sid}.json"), &developer.auth()).await;
    let updated = server
        .put_json(
            &format!("/v1/accounts/{sid}.json"),
            &developer.auth(),
            &json!({"last_name": "Lee"}),
        )
        .await;
    let list = server.get("/v1/accounts.json", &developer.auth()).await;
    let sip = server.get(&format!("/v1/accounts/{sid}/SIP.json"), &developer.auth()).await;

    assert_eq!(plain.json, created.json, "created through the suffix");
    assert_eq!(suffixed.json, plain.json, "GET with and without .json");
    let content_type = suffixed.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content type {content_type}");
    updated.expect(200);
    assert_eq!(updated.json["last_name"], "Lee", "PUT through the suffix");
    list.expect(200);
    let uri = list.json["uri"].as_str().unwrap_or_default();
    assert!(uri.starts_with("/v1/accounts.json?"), "page links keep the suffix: {uri}");
    sip.expect(200);
}

#[tokio::test]
async fn default_sip_account_created() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "Sipper01").await;
    let sid = account["sid"].as_str().expect("sid");

    let list = server.get(&format!("/v1/accounts/{sid}/SIP"), &developer.auth()).await;
    list.expect(200);
    let sip_accounts = list.json["sip_accounts"].as_array().expect("sip_accounts list");
    assert_eq!(sip_accounts.len(), 1, "one default SIP account: {}", list.text);
    let sip = &sip_accounts[0];
    assert_eq!(sip["sip_id"], "Sipper01", "sip_id is the login_id");
    assert_eq!(sip["account_sid"], sid, "SIP account belongs to the sub-account");
    assert_eq!(sip["domain"], account["domain"], "sub-account's domain");
    assert_eq!(sip["status"], "active", "SIP status");
    let aliases = sip["sip_aliases"].as_array().expect("sip_aliases");
    assert_eq!(aliases.len(), 1, "one default alias: {}", list.text);
    let alias = aliases[0].as_str().expect("alias text");
    assert!(!alias.is_empty() && alias.bytes().all(|b| b.is_ascii_digit()), "alias {alias}");

    let sip_sid = sip["sid"].as_str().expect("SIP sid");
    let alias_list =
        server.get(&format!("/v1/accounts/{sid}/SIP/{sip_sid}/aliases"), &developer.auth()).await;
    alias_list.expect(200);
    assert_eq!(alias_list.json["sip_aliases"][0]["sip_alias"], alias, "alias resource");
    assert_no_secrets(&server, &[&list.text, &alias_list.text], &[PASSWORD]);
}

async fn set_status(server: &Server, developer: &Developer, sid: &str, status: &str) -> Reply {
    server.put_form(&format!("/v1/accounts/{sid}"), &developer.auth(), &[("status", status)]).await
}

#[tokio::test]
async fn status_lifecycle() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "cycle01").await;
    let sid = account["sid"].as_str().expect("sid").to_string();
    server.account(&developer, "stays01").await;

    for status in ["suspended", "active", "suspended", "active", "closed"] {
        let reply = set_status(&server, &developer, &sid, status).await;
        assert_eq!(reply.status, 200, "to {status}: status; body {}", reply.text);
        assert_eq!(reply.json["status"], status, "to {status}: shown");
    }
    let fetched = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
    assert_eq!(fetched.json["status"], "closed", "GET shows the closed account");

    let closed_puts = [
        ("reopen", vec![("status", "active")]),
        ("suspend", vec![("status", "suspended")]),
        ("close again", vec![("status", "closed")]),
        ("first_name", vec![("first_name", "Ann")]),
        ("email", vec![("email", "ann@example.com")]),
        ("domain", vec![("domain", "other.example.com")]),
        ("password", vec![("password", "secret456"), ("encrypt_type", "0")]),
        ("nothing", vec![]),
    ];
    let mut conflict = None;
    for (case, pairs) in closed_puts {
        let reply =
            server.put_form(&format!("/v1/accounts/{sid}"), &developer.auth(), &pairs).await;
        assert_eq!(reply.status, 409, "closed, {case}: status; body {}", reply.text);
        reply.expect_error(409);
        conflict = Some(reply);
    }
    let conflict = conflict.expect("a 409 reply");
    assert_eq!(conflict.json["code"], 20410, "closed code");
    let after = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
    assert_eq!(after.json, fetched.json, "the closed account did not change");

    let listed = server.get("/v1/accounts", &developer.auth()).await;
    let closed_list = server.get("/v1/accounts?status=closed", &developer.auth()).await;
    let active_list = server.get("/v1/accounts?status=active", &developer.auth()).await;
    let bad_status = server.get("/v1/accounts?status=deleted", &developer.auth()).await;
    let logins = |reply: &Reply| -> Vec<String> {
        reply.json["accounts"]
            .as_array()
            .map(|items| {
                items.iter().map(|a| a["login_id"].as_str().unwrap_or("").to_string()).collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(logins(&listed), vec!["stays01"], "closed hidden from the list");
    assert_eq!(logins(&closed_list), vec!["cycle01"], "status=closed shows it");
    assert_eq!(logins(&active_list), vec!["stays01"], "status=active");
    bad_status.expect_error(400);
    assert_eq!(bad_status.error_fields(), vec!["status"], "unknown status");
    let invalid_put = set_status(&server, &developer, &first_listed_sid(&listed), "deleted").await;
    invalid_put.expect_error(400);
    assert_eq!(invalid_put.error_fields(), vec!["status"], "PUT unknown status");
}

fn first_listed_sid(list: &Reply) -> String {
    list.json["accounts"][0]["sid"].as_str().expect("a listed sid").to_string()
}

#[tokio::test]
async fn update_changes_fields() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let account = server.account(&developer, "change01").await;
    let sid = account["sid"].as_str().expect("sid").to_string();
    // Response times have whole seconds, so wait for the next one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new_password = "newsecret789";
    let body = json!({
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann@example.com",
        "mobile_phone": "+6598765432",
        "domain": "New.Example.com",
        "password": server.encrypt(new_password),
    });

    let updated = server.put_json(&format!("/v1/accounts/{sid}"), &developer.auth(), &body).await;
    let fetched = server.get(&format!("/v1/accounts/{sid}"), &developer.auth()).await;
    let plain_password = server
        .put_json(
            &format!("/v1/accounts/{sid}"),
            &developer.auth(),
            &json!({"password": "other123"}),
        )
        .await;
    let bad_email = server
        .put_json(&format!("/v1/accounts/{sid}"), &developer.auth(), &json!({"email": "nope"}))
        .await;
    let login_change = server
        .put_json(&format!("/v1/accounts/{sid}"), &developer.auth(), &json!({"login_id": "x1234"}))
        .await;

    updated.expect(200);
    assert_eq!(fetched.json, updated.json, "GET shows the update");
    assert_eq!(updated.json["first_name"], "Ann", "first_name");
    assert_eq!(updated.json["last_name"], "Lee", "last_name");
    assert_eq!(updated.json["email"], "ann@example.com", "email");
    assert_eq!(updated.json["phone_number"], "+6598765432", "phone_number");
    assert_eq!(updated.json["domain"], "new.example.com", "domain lower-cased");
    assert_eq!(updated.json["login_id"], "change01", "login_id unchanged");
    assert_eq!(updated.json["date_created"], account["date_created"], "date_created kept");
    assert_ne!(updated.json["date_updated"], account["date_updated"], "date_updated moves");
    plain_password.expect_error(400);
    assert_eq!(plain_password.error_fields(), vec!["password"], "PUT passwords default to AES");
    bad_email.expect_error(400);
    assert_eq!(bad_email.error_fields(), vec!["email"], "PUT validates fields");
    login_change.expect_error(400);
    assert_eq!(login_change.json["code"], 20003, "login_id cannot change");
    let logs = server.logs().join("\n");
    assert_no_secrets(&server, &[&logs, &updated.text], &[PASSWORD, new_password]);
}

fn listed_logins(reply: &Reply) -> Vec<String> {
    reply.json["accounts"]
        .as_array()
        .expect("accounts list")
        .iter()
        .map(|account| account["login_id"].as_str().expect("login_id").to_string())
        .collect()
}

#[tokio::test]
async fn list_pages_and_links() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    let other = server.developer("Other").await;
    for login_id in ["page01", "page02", "page03"] {
        server.account(&developer, login_id).await;
    }
    server.account(&other, "hidden01").await;

    let first = server.get("/v1/accounts?page_size=1", &developer.auth()).await;
    first.expect(200);
    assert_eq!(listed_logins(&first), vec!["page01"], "page 0 is the oldest");
    assert_eq!(first.json["page"], 0, "page");
    assert_eq!(first.json["page_size"], 1, "page_size");
    assert_eq!(first.json["uri"], "/v1/accounts?page=0&page_size=1", "uri");
    assert_eq!(first.json["first_page_uri"], "/v1/accounts?page=0&page_size=1", "first");
    assert_eq!(first.json["previous_page_uri"], Value::Null, "no previous page");
    assert_eq!(first.json["next_page_uri"], "/v1/accounts?page=1&page_size=1", "next");
    assert_json_snapshot("account_list", &first.json);

    let second_uri = first.json["next_page_uri"].as_str().expect("next link").to_string();
    let second = server.get(&second_uri, &developer.auth()).await;
    assert_eq!(listed_logins(&second), vec!["page02"], "page 1");
    assert_eq!(second.json["previous_page_uri"], "/v1/accounts?page=0&page_size=1", "previous");
    let third_uri = second.json["next_page_uri"].as_str().expect("next link").to_string();
    let third = server.get(&third_uri, &developer.auth()).await;
    assert_eq!(listed_logins(&third), vec!["page03"], "page 2");
    assert_eq!(third.json["next_page_uri"], Value::Null, "last page has no next");
    let beyond = server.get("/v1/accounts?page=7&page_size=1", &developer.auth()).await;
    assert_eq!(listed_logins(&beyond), Vec::<String>::new(), "past the end is empty");
    assert_eq!(beyond.json["next_page_uri"], Value::Null, "no next past the end");
    assert_eq!(beyond.json["previous_page_uri"], "/v1/accounts?page=6&page_size=1", "previous");

    let default = server.get("/v1/accounts", &developer.auth()).await;
    assert_eq!(default.json["page_size"], 50, "default page_size");
    assert_eq!(listed_logins(&default), vec!["page01", "page02", "page03"], "own accounts");
    let largest = server.get("/v1/accounts?page_size=1000", &developer.auth()).await;
    largest.expect(200);
    assert_eq!(listed_logins(&largest).len(), 3, "page_size 1000");
    for bad in ["page_size=0", "page_size=1001", "page_size=x", "page_size=-1", "page=-1"] {
        let reply = server.get(&format!("/v1/accounts?{bad}"), &developer.auth()).await;
        assert_eq!(reply.status, 400, "{bad}: status; body {}", reply.text);
        reply.expect_error(400);
        let field = bad.split('=').next().expect("name");
        assert_eq!(reply.error_fields(), vec![field], "{bad}: errors");
    }
}

#[tokio::test]
async fn list_filters_kept() {
    let server = Server::start().await;
    let developer = server.developer("Acme").await;
    for login_id in ["alice01", "bob01"] {
        server.account(&developer, login_id).await;
    }

    let by_login = server.get("/v1/accounts?login_id=ALICE01", &developer.auth()).await;
    let both = server
        .get("/v1/accounts?status=active&login_id=Bob01&page_size=1", &developer.auth())
        .await;
    let none = server.get("/v1/accounts?login_id=carol01", &developer.auth()).await;

    assert_eq!(listed_logins(&by_login), vec!["alice01"], "login_id compared case-insensitively");
    assert_eq!(listed_logins(&both), vec!["bob01"], "status and login_id together");
    assert_eq!(listed_logins(&none), Vec::<String>::new(), "no match");
    for link in ["uri", "first_page_uri"] {
        let uri = both.json[link].as_str().unwrap_or_default();
        assert!(uri.contains("status=active"), "{link} keeps status: {uri}");
        assert!(uri.contains("login_id=Bob01"), "{link} keeps login_id: {uri}");
        let again = server.get(uri, &developer.auth()).await;
        assert_eq!(again.json, both.json, "{link} gives the same page");
    }
}
