//! SIP accounts and their aliases over HTTP. The tests cover the lifecycle
//! of both and the one namespace per domain that SIP ids and aliases share.
//! They also cover the alias limit, the rules for `sip_id`, `alias` and
//! passwords, domain moves, the cascade on delete, status, tenancy and the
//! digests written to the log. Every test also checks the state after a
//! restart.

use futures_util::future::join_all;
use md5::Md5;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subledger::crypto::{encrypt_password, AesKey};
use subledger::domain::events::Event;
use subledger::store::{EventStore, SledStore};

use crate::support::{assert_json_snapshot, Auth, Developer, Reply, Server};

/// A valid SIP password: 8 to 128 printable ASCII characters, a letter and
/// a digit.
const PASSWORD: &str = "Voice2Pass";
/// The domain a sub-account gets when the request names none.
const DEFAULT_DOMAIN: &str = "sip.example.com";

/// The error codes the API documents for these statuses.
const CODE_INVALID: u64 = 20001;
const CODE_MISSING: u64 = 20002;
const CODE_UNKNOWN: u64 = 20003;
const CODE_NOT_FOUND: u64 = 20404;
const CODE_NAME_TAKEN: u64 = 20409;
const CODE_CLOSED: u64 = 20410;
const CODE_LIMIT: u64 = 20423;

fn sip_path(account: &str) -> String {
    format!("/v1/accounts/{account}/SIP")
}

fn aliases_path(account: &str, sip: &str) -> String {
    format!("/v1/accounts/{account}/SIP/{sip}/aliases")
}

/// A server, one developer and one of its sub-accounts.
struct Setup {
    server: Server,
    developer: Developer,
    account: String,
}

impl Setup {
    async fn start(login_id: &str) -> Setup {
        Setup::start_with(login_id, &[]).await
    }

    async fn start_with(login_id: &str, serve_args: &[&str]) -> Setup {
        let server = Server::start_with(serve_args).await;
        let developer = server.developer("Acme").await;
        let account = server.account(&developer, login_id).await["sid"]
            .as_str()
            .expect("account sid")
            .to_string();
        Setup { server, developer, account }
    }

    fn restart(self) -> Setup {
        Setup { server: self.server.restart(), ..self }
    }

    fn auth(&self) -> Auth {
        self.developer.auth()
    }

    /// Creates a SIP account under the sub-account with an AES password.
    async fn create_sip(&self, sip_id: &str, domain: Option<&str>) -> Reply {
        let mut body = json!({"sip_id": sip_id, "password": self.server.encrypt(PASSWORD)});
        if let Some(domain) = domain {
            body["domain"] = json!(domain);
        }
        self.server.post_json(&sip_path(&self.account), &self.auth(), &body).await
    }

    /// Creates a SIP account, asserts 201 and returns its sid.
    async fn sip(&self, sip_id: &str, domain: Option<&str>) -> String {
        self.create_sip(sip_id, domain).await.expect(201).sid()
    }

    async fn add_alias(&self, sip: &str, alias: &str) -> Reply {
        let body = json!({"alias": alias});
        self.server.post_json(&aliases_path(&self.account, sip), &self.auth(), &body).await
    }

    async fn alias(&self, sip: &str, alias: &str) -> String {
        self.add_alias(sip, alias).await.expect(201).sid()
    }

    async fn get(&self, path: &str) -> Reply {
        self.server.get(path, &self.auth()).await
    }

    /// Fetches the default SIP account created with the sub-account.
    async fn default_sip(&self) -> Value {
        let list = self.get(&sip_path(&self.account)).await;
        list.expect(200);
        list.json["sip_accounts"][0].clone()
    }

    async fn set_status(&self, status: &str) {
        let path = format!("/v1/accounts/{}", self.account);
        let reply = self.server.put_json(&path, &self.auth(), &json!({"status": status})).await;
        reply.expect(200);
    }
}

/// Asserts an error response with its status and code.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, code: u64, case: &str) {
    assert_eq!(reply.status, status, "case {case}: status; body {}", reply.text);
    assert_eq!(reply.json["status"], status, "case {case}: body status");
    assert_eq!(reply.json["code"], code, "case {case}: code; body {}", reply.text);
}

/// HA1 in lower-case hex with MD5 and with SHA-256, as a registrar stores it.
fn ha1(sip_id: &str, domain: &str, password: &str) -> (String, String) {
    let input = format!("{sip_id}:{domain}:{password}");
    let md5 = hex::encode(Md5::digest(input.as_bytes()));
    let sha256 = hex::encode(Sha256::digest(input.as_bytes()));
    (md5, sha256)
}

/// Asserts that a response shows neither the password, its digests, nor a
/// field that could carry them.
#[track_caller]
fn assert_no_secret(reply: &Reply, sip_id: &str, domain: &str, password: &str) {
    let text = &reply.text;
    let (md5, sha256) = ha1(sip_id, domain, password);
    assert!(!text.contains(password), "response shows the password: {text}");
    assert!(!text.contains(&md5), "response shows the MD5 digest: {text}");
    assert!(!text.contains(&sha256), "response shows the SHA-256 digest: {text}");
    for field in ["\"password", "ha1", "digest", "hash"] {
        assert!(!text.contains(field), "response has a {field} field: {text}");
    }
}

/// Checks that `sip_id` follows the `login_id` rule.
fn is_login_id(sip_id: &str) -> bool {
    let length_ok = (4..=32).contains(&sip_id.len());
    let first_ok = sip_id.starts_with(|c: char| c.is_ascii_alphabetic());
    let rest_ok = sip_id.chars().all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    length_ok && first_ok && rest_ok
}

/// Replaces the generated default alias of a list or SIP account so that
/// golden files do not depend on it.
fn without_generated(value: &Value, generated: &str) -> Value {
    let text = value.to_string().replace(&format!("\"{generated}\""), "\"[generated]\"");
    serde_json::from_str(&text).expect("JSON stays valid")
}

#[tokio::test]
async fn sip_account_lifecycle() {
    let setup = Setup::start("owner01").await;
    let account = setup.account.clone();
    let domain = "voice.example.net";

    // Create, with the default encrypt_type (AES).
    let created = setup.create_sip("desk01", Some(domain)).await;
    created.expect(201);
    assert_no_secret(&created, "desk01", domain, PASSWORD);
    assert_json_snapshot("sip_account_created", &created.json);
    let sip = created.sid();
    assert!(sip.starts_with("SC"), "SIP account sid prefix: {sip}");
    assert_eq!(sip.len(), 34, "SIP account sid length: {sip}");
    assert_eq!(created.json["account_sid"], account.as_str(), "account_sid");
    assert_eq!(created.json["sip_id"], "desk01", "sip_id");
    assert_eq!(created.json["domain"], domain, "domain");
    assert_eq!(created.json["status"], "active", "status");
    assert_eq!(created.json["sip_aliases"], json!([]), "no aliases yet");
    let uri = format!("/v1/accounts/{account}/SIP/{sip}");
    assert_eq!(created.json["uri"], uri.as_str(), "uri");

    // Fetch, with and without the .json suffix.
    let fetched = setup.get(&uri).await;
    fetched.expect(200);
    assert_eq!(fetched.json, created.json, "fetched equals created");
    let suffixed = setup.get(&format!("{uri}.json")).await;
    suffixed.expect(200);
    assert_eq!(suffixed.json, created.json, "fetched with .json equals created");

    // An alias shows in the SIP account.
    setup.alias(&sip, "desk01-home").await;
    let with_alias = setup.get(&uri).await;
    with_alias.expect(200);
    assert_eq!(with_alias.json["sip_aliases"], json!(["desk01-home"]), "sip_aliases");
    assert_json_snapshot("sip_account_fetched", &with_alias.json);

    // List: the default SIP account first, then this one.
    let default_sip = setup.default_sip().await;
    let generated = default_sip["sip_aliases"][0].as_str().expect("default alias").to_string();
    let list = setup.get(&sip_path(&account)).await;
    list.expect(200);
    assert_no_secret(&list, "owner01", DEFAULT_DOMAIN, "secret123");
    let items = list.json["sip_accounts"].as_array().expect("sip_accounts").clone();
    assert_eq!(items.len(), 2, "two SIP accounts listed");
    assert_eq!(items[0]["sip_id"], "owner01", "default SIP account first");
    assert_eq!(items[1], with_alias.json, "list item equals fetched");
    assert_json_snapshot("sip_account_list", &without_generated(&list.json, &generated));
    let suffixed_list = setup.get(&format!("{}.json", sip_path(&account))).await;
    suffixed_list.expect(200);
    assert_eq!(suffixed_list.json["sip_accounts"], list.json["sip_accounts"], "list with .json");

    // Pages of one.
    let first = setup.get(&format!("{}?page_size=1", sip_path(&account))).await;
    first.expect(200);
    assert_eq!(first.json["sip_accounts"][0]["sip_id"], "owner01", "page 0 item");
    assert!(first.json["next_page_uri"].is_string(), "page 0 has a next page");
    assert!(first.json["previous_page_uri"].is_null(), "page 0 has no previous page");
    let second = setup.get(&format!("{}?page=1&page_size=1", sip_path(&account))).await;
    second.expect(200);
    assert_eq!(second.json["sip_accounts"][0]["sip_id"], "desk01", "page 1 item");
    assert!(second.json["next_page_uri"].is_null(), "page 1 is the last");
    assert!(second.json["previous_page_uri"].is_string(), "page 1 has a previous page");

    // Update: a new password in the same domain, with encrypt_type 0.
    let new_password = "Changed2Pass";
    let body = json!({"password": new_password, "encrypt_type": 0, "domain": domain});
    let updated = setup.server.put_json(&uri, &setup.auth(), &body).await;
    updated.expect(200);
    assert_no_secret(&updated, "desk01", domain, new_password);
    assert_eq!(updated.json["sid"], sip.as_str(), "updated sid");
    assert_eq!(updated.json["sip_id"], "desk01", "sip_id never changes");
    assert_eq!(updated.json["sip_aliases"], json!(["desk01-home"]), "aliases kept");

    // After a restart, every read gives the same response.
    let before = setup.get(&uri).await;
    let list_before = setup.get(&sip_path(&account)).await;
    let setup = setup.restart();
    let after = setup.get(&uri).await;
    after.expect(200);
    assert_eq!(after.json, before.json, "SIP account after restart");
    let list_after = setup.get(&sip_path(&account)).await;
    assert_eq!(list_after.json, list_before.json, "list after restart");

    // Delete, then every path to it is 404.
    let deleted = setup.server.delete(&uri, &setup.auth()).await;
    deleted.expect(204);
    assert!(deleted.text.is_empty(), "204 has no body: {}", deleted.text);
    assert_error(&setup.get(&uri).await, 404, CODE_NOT_FOUND, "fetch deleted");
    let again = setup.server.delete(&uri, &setup.auth()).await;
    assert_error(&again, 404, CODE_NOT_FOUND, "delete twice");
    let list = setup.get(&sip_path(&account)).await;
    assert_eq!(list.json["sip_accounts"].as_array().map(Vec::len), Some(1), "one left");
}

#[tokio::test]
async fn sip_alias_lifecycle() {
    let setup = Setup::start("owner02").await;
    let account = setup.account.clone();
    let sip = setup.sip("phone01", None).await;
    let path = aliases_path(&account, &sip);

    let created = setup.add_alias(&sip, "+6512345678").await;
    created.expect(201);
    assert_json_snapshot("sip_alias_created", &created.json);
    let alias = created.sid();
    let uri = format!("{path}/{alias}");
    assert!(alias.starts_with("SA"), "alias sid prefix: {alias}");
    assert_eq!(alias.len(), 34, "alias sid length: {alias}");
    assert_eq!(created.json["account_sid"], account.as_str(), "account_sid");
    assert_eq!(created.json["sip_sid"], sip.as_str(), "sip_sid");
    assert_eq!(created.json["sip_alias"], "+6512345678", "sip_alias");
    assert_eq!(created.json["domain"], DEFAULT_DOMAIN, "domain of the SIP account");
    assert_eq!(created.json["status"], "active", "status");
    assert_eq!(created.json["uri"], uri.as_str(), "uri");

    let fetched = setup.get(&uri).await;
    fetched.expect(200);
    assert_eq!(fetched.json, created.json, "fetched equals created");
    let suffixed = setup.get(&format!("{uri}.json")).await;
    assert_eq!(suffixed.json, created.json, "fetched with .json equals created");

    setup.alias(&sip, "phone01.work").await;
    let list = setup.get(&path).await;
    list.expect(200);
    assert_json_snapshot("sip_alias_list", &list.json);
    let names: Vec<&Value> = list.json["sip_aliases"].as_array().expect("list").iter().collect();
    assert_eq!(names.len(), 2, "two aliases");
    assert_eq!(names[0]["sip_alias"], "+6512345678", "oldest first");
    assert_eq!(names[1]["sip_alias"], "phone01.work", "newest last");
    let suffixed_list = setup.get(&format!("{path}.json")).await;
    assert_eq!(suffixed_list.json["sip_aliases"], list.json["sip_aliases"], "list .json");

    // Rename, then the old name is free and the SIP account shows the new.
    let renamed =
        setup.server.put_json(&uri, &setup.auth(), &json!({"alias": "phone01-mobile"})).await;
    renamed.expect(200);
    assert_eq!(renamed.json["sip_alias"], "phone01-mobile", "renamed");
    assert_eq!(renamed.json["sid"], alias.as_str(), "same sid");
    let sip_json = setup.get(&sip_path(&account)).await.json["sip_accounts"][1].clone();
    assert_eq!(sip_json["sip_aliases"], json!(["phone01-mobile", "phone01.work"]), "names");
    let put_missing = setup.server.put_json(&uri, &setup.auth(), &json!({})).await;
    assert_error(&put_missing, 400, CODE_MISSING, "PUT without alias");

    // The renamed alias and list survive a restart.
    let list_before = setup.get(&path).await;
    let setup = setup.restart();
    assert_eq!(setup.get(&uri).await.json, renamed.json, "alias after restart");
    assert_eq!(setup.get(&path).await.json, list_before.json, "list after restart");
    setup.alias(&sip, "+6512345678").await;

    // Delete.
    setup.server.delete(&uri, &setup.auth()).await.expect(204);
    assert_error(&setup.get(&uri).await, 404, CODE_NOT_FOUND, "fetch deleted alias");
    let deleted_twice = setup.server.delete(&uri, &setup.auth()).await;
    assert_error(&deleted_twice, 404, CODE_NOT_FOUND, "delete twice");
    let names: Vec<Value> = setup.get(&path).await.json["sip_aliases"]
        .as_array()
        .expect("list")
        .iter()
        .map(|alias| alias["sip_alias"].clone())
        .collect();
    assert_eq!(names, vec![json!("phone01.work"), json!("+6512345678")], "after delete");
    setup.alias(&sip, "phone01-mobile").await;
}

/// Asserts 409 for each collision of SIP ids and aliases in one domain.
async fn check_collisions(setup: &Setup, sip: &str, default_sip: &str, default_alias: &str) {
    let cases = [
        ("alias equal to a SIP id", setup.add_alias(sip, "owner03").await),
        ("alias equal to a SIP id but upper case", setup.add_alias(sip, "OWNER03").await),
        ("alias equal to the default alias", setup.add_alias(sip, default_alias).await),
        ("alias repeated exactly", setup.add_alias(default_sip, "shared").await),
        ("alias differing in case", setup.add_alias(default_sip, "SHARED").await),
        ("sip_id repeated exactly", setup.create_sip("bob01", None).await),
        ("sip_id differing in case", setup.create_sip("BOB01", None).await),
        ("sip_id equal to an alias", setup.create_sip("Shared", None).await),
    ];
    for (case, reply) in &cases {
        assert_error(reply, 409, CODE_NAME_TAKEN, case);
    }
    let login = json!({"login_id": "SHARED", "password": "secret123"});
    let reply = setup.server.post_json("/v1/accounts", &setup.auth(), &login).await;
    assert_error(&reply, 409, CODE_NAME_TAKEN, "login_id equal to an alias in its domain");
}

#[tokio::test]
async fn sip_name_collisions() {
    let setup = Setup::start("owner03").await;
    let default = setup.default_sip().await;
    let default_sip = default["sid"].as_str().expect("default sid").to_string();
    let default_alias = default["sip_aliases"][0].as_str().expect("default alias").to_string();
    assert!(
        default_alias.len() == 10 && default_alias.bytes().all(|b| b.is_ascii_digit()),
        "default alias is a generated number: {default_alias}"
    );
    let sip = setup.sip("bob01", None).await;
    let shared = setup.alias(&sip, "shared").await;

    check_collisions(&setup, &sip, &default_sip, &default_alias).await;
    let name_taken = setup.add_alias(&sip, "owner03").await;
    assert_json_snapshot("sip_name_taken", &name_taken.json);

    // The same names in another domain are free.
    let other = "other.example.org";
    let other_sip = setup.sip("BOB01", Some(other)).await;
    for name in ["owner03", "shared", default_alias.as_str()] {
        setup.add_alias(&other_sip, name).await.expect(201);
    }
    let login =
        json!({"login_id": "shared", "password": "secret123", "domain": "third.example.org"});
    let reply = setup.server.post_json("/v1/accounts", &setup.auth(), &login).await;
    reply.expect(201);

    // Renaming an alias onto a taken name is 409. Renaming it to its own
    // name in another case is allowed.
    let shared_uri = format!("{}/{shared}", aliases_path(&setup.account, &sip));
    let onto_sip_id =
        setup.server.put_json(&shared_uri, &setup.auth(), &json!({"alias": "Bob01"})).await;
    assert_error(&onto_sip_id, 409, CODE_NAME_TAKEN, "rename onto a SIP id");
    let onto_default = json!({"alias": default_alias});
    let onto_alias = setup.server.put_json(&shared_uri, &setup.auth(), &onto_default).await;
    assert_error(&onto_alias, 409, CODE_NAME_TAKEN, "rename onto the default alias");
    let own = setup.server.put_json(&shared_uri, &setup.auth(), &json!({"alias": "SHARED"})).await;
    own.expect(200);
    assert_eq!(own.json["sip_alias"], "SHARED", "renamed to its own name in upper case");

    // Concurrent requests for one free name: exactly one wins.
    let racers = (0..8).map(|index| {
        let owner = if index % 2 == 0 { &sip } else { &default_sip };
        setup.add_alias(owner, "race")
    });
    let replies = join_all(racers).await;
    let won = replies.iter().filter(|reply| reply.status == 201).count();
    assert_eq!(won, 1, "one concurrent request takes the name");
    for reply in replies.iter().filter(|reply| reply.status != 201) {
        assert_error(reply, 409, CODE_NAME_TAKEN, "concurrent loser");
    }

    // After a restart the same requests get the same responses.
    let setup = setup.restart();
    check_collisions(&setup, &sip, &default_sip, &default_alias).await;
    let taken_after = setup.add_alias(&sip, "owner03").await;
    assert_eq!(taken_after.json, name_taken.json, "409 body after restart");
    assert_error(&setup.add_alias(&sip, "RACE").await, 409, CODE_NAME_TAKEN, "race name kept");
}

#[tokio::test]
async fn sip_alias_limit() {
    // Snapshots every 50 events, so that the restart below starts from one.
    let setup = Setup::start_with("owner04", &["--snapshot-interval", "50"]).await;
    let sip = setup.sip("many01", None).await;
    let path = aliases_path(&setup.account, &sip);

    // 100 aliases, sent concurrently.
    let names: Vec<String> = (0..100).map(|index| format!("n{index:03}")).collect();
    let replies = join_all(names.iter().map(|name| setup.add_alias(&sip, name))).await;
    for (name, reply) in names.iter().zip(&replies) {
        assert_eq!(reply.status, 201, "alias {name}: {}", reply.text);
    }
    let sip_json = setup.get(&format!("{}/{sip}", sip_path(&setup.account))).await;
    assert_eq!(sip_json.json["sip_aliases"].as_array().map(Vec::len), Some(100), "100 shown");

    let over = setup.add_alias(&sip, "n100").await;
    assert_error(&over, 422, CODE_LIMIT, "101st alias");
    assert_json_snapshot("sip_alias_limit", &over.json);
    assert_error(&setup.add_alias(&sip, "n100").await, 422, CODE_LIMIT, "101st retried");

    // 103 concurrent requests on an empty SIP account: exactly 100 land.
    let crowded = setup.sip("crowd01", None).await;
    let crowd: Vec<String> = (0..103).map(|index| format!("c{index:03}")).collect();
    let replies_crowd = join_all(crowd.iter().map(|name| setup.add_alias(&crowded, name))).await;
    let created = replies_crowd.iter().filter(|reply| reply.status == 201).count();
    assert_eq!(created, 100, "concurrent requests created exactly the maximum");
    for reply in replies_crowd.iter().filter(|reply| reply.status != 201) {
        assert_error(reply, 422, CODE_LIMIT, "concurrent request past the maximum");
    }

    // Pages of 40 give every alias once.
    let mut listed = Vec::new();
    for page in 0..3 {
        let reply = setup.get(&format!("{path}?page={page}&page_size=40")).await;
        reply.expect(200);
        let items = reply.json["sip_aliases"].as_array().expect("items").clone();
        assert_eq!(items.len(), [40, 40, 20][page], "page {page} size");
        assert_eq!(reply.json["next_page_uri"].is_null(), page == 2, "page {page} next link");
        assert_eq!(reply.json["previous_page_uri"].is_null(), page == 0, "page {page} previous");
        listed.extend(items.iter().map(|item| item["sip_alias"].as_str().unwrap().to_string()));
    }
    listed.sort();
    assert_eq!(listed, names, "every alias listed once");

    // Deleting one makes room for exactly one.
    let first = replies[0].sid();
    setup.server.delete(&format!("{path}/{first}"), &setup.auth()).await.expect(204);
    setup.alias(&sip, "n100").await;
    assert_error(&setup.add_alias(&sip, "n101").await, 422, CODE_LIMIT, "full again");
    let list_before = setup.get(&format!("{path}?page_size=1000")).await;

    // The restart starts from a snapshot, and the limit and the names still apply.
    wait_for_log(&setup.server, "projection snapshot written").await;
    let setup = setup.restart();
    let rebuilt = setup.server.logs().into_iter().find(|line| line.contains("projections rebuilt"));
    let rebuilt = rebuilt.expect("start-up log line");
    assert!(rebuilt.contains("snapshot_seq="), "restart used a snapshot: {rebuilt}");
    let after = setup.add_alias(&sip, "n101").await;
    assert_eq!(after.status, 422, "limit after restart: {}", after.text);
    assert_eq!(after.json, over.json, "422 body after restart");
    let list_after = setup.get(&format!("{path}?page_size=1000")).await;
    assert_eq!(list_after.json, list_before.json, "aliases after restart");
    let other = setup.sip("many02", None).await;
    setup.alias(&other, "n000").await;
    assert_error(&setup.add_alias(&other, "N001").await, 409, CODE_NAME_TAKEN, "n001 kept");
}

/// Waits until the server has logged a line containing `text`.
async fn wait_for_log(server: &Server, text: &str) {
    for _ in 0..100 {
        if server.logs().iter().any(|line| line.contains(text)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no log line with {text:?} within 5 s: {:?}", server.logs());
}

/// Invalid `sip_id` values: each breaks the `login_id` rule.
fn invalid_sip_ids() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("3 characters", "abc".into()),
        ("33 characters", format!("a{}", "b".repeat(32))),
        ("digit first", "1abc".into()),
        ("dot first", ".abc".into()),
        ("underscore first", "_abc".into()),
        ("hyphen first", "-abc".into()),
        ("space inside", "ab cd".into()),
        ("at sign", "ab@cd".into()),
        ("plus sign", "ab+cd".into()),
        ("colon", "ab:cd".into()),
        ("slash", "ab/cd".into()),
        ("non-ASCII letter", "abcé".into()),
        ("Kelvin sign", "\u{212A}elvin".into()),
        ("combining accent", "cafe\u{301}".into()),
        ("trailing line feed", "abcd\n".into()),
        ("4000 characters", "a".repeat(4000)),
    ]
}

/// Invalid `alias` values.
fn invalid_aliases() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("33 characters", "1".repeat(33)),
        ("dot first", ".a".into()),
        ("underscore first", "_a".into()),
        ("hyphen first", "-a".into()),
        ("space inside", "a b".into()),
        ("at sign", "a@b".into()),
        ("colon", "a:b".into()),
        ("slash", "a/b".into()),
        ("asterisk", "a*".into()),
        ("non-ASCII letter", "é".into()),
        ("combining accent", "e\u{301}".into()),
        ("NUL", "a\u{0}b".into()),
        ("4000 characters", "1".repeat(4000)),
    ]
}

async fn check_invalid_names(setup: &Setup, sip: &str) {
    let before = setup.get(&sip_path(&setup.account)).await;
    for (case, sip_id) in invalid_sip_ids() {
        let reply = setup.create_sip(&sip_id, None).await;
        assert_error(&reply, 400, CODE_INVALID, &format!("sip_id {case}"));
        assert_eq!(reply.error_fields(), vec!["sip_id"], "sip_id {case}: field");
    }
    for (case, alias) in invalid_aliases() {
        let reply = setup.add_alias(sip, &alias).await;
        assert_error(&reply, 400, CODE_INVALID, &format!("alias {case}"));
        assert_eq!(reply.error_fields(), vec!["alias"], "alias {case}: field");
    }
    let after = setup.get(&sip_path(&setup.account)).await;
    assert_eq!(after.json, before.json, "rejected requests created nothing");
}

#[tokio::test]
async fn sip_name_rules() {
    let setup = Setup::start("owner05").await;

    // Boundaries that pass.
    let sip = setup.sip("abcd", None).await;
    setup.sip(&format!("z{}", "9".repeat(31)), None).await;
    setup.sip("A.b_c-D1", None).await;
    for alias in ["1", "+", "a.b_c-d+e", &"x".repeat(32), "Z"] {
        setup.alias(&sip, alias).await;
    }

    // Without sip_id, a free one is generated by the login_id rule.
    let mut generated = Vec::new();
    for _ in 0..2 {
        let body = json!({"password": setup.server.encrypt(PASSWORD)});
        let reply = setup.server.post_json(&sip_path(&setup.account), &setup.auth(), &body).await;
        reply.expect(201);
        let sip_id = reply.json["sip_id"].as_str().expect("generated sip_id").to_string();
        assert!(is_login_id(&sip_id), "generated sip_id {sip_id:?} follows the login_id rule");
        generated.push(sip_id);
    }
    assert_ne!(generated[0], generated[1], "generated sip_ids differ");

    check_invalid_names(&setup, &sip).await;
    let setup = setup.restart();
    check_invalid_names(&setup, &sip).await;
}

/// Password cases that must be rejected with 400 on `password`.
fn invalid_passwords() -> Vec<(&'static str, String)> {
    vec![
        ("7 characters", "abcd123".into()),
        ("129 characters", format!("a1{}", "b".repeat(127))),
        ("no letter", "12345678".into()),
        ("no digit", "abcdefgh".into()),
        ("space", "abcd 1234".into()),
        ("non-ASCII", "pässwort1".into()),
        ("tab", "abcd\t1234".into()),
    ]
}

/// AES values that must all be rejected with one generic message.
fn broken_ciphertexts(server: &Server) -> Vec<(&'static str, String)> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    let valid = server.encrypt(PASSWORD);
    let mut tampered = STANDARD.decode(&valid).expect("base64");
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    vec![
        ("tampered tag", STANDARD.encode(&tampered)),
        ("wrong key", encrypt_password(&AesKey::generate(), PASSWORD)),
        ("truncated", STANDARD.encode(&tampered[..20])),
        ("not base64", "not*base64".into()),
        ("plain text sent as AES", PASSWORD.into()),
        ("empty", String::new()),
    ]
}

async fn check_passwords(setup: &Setup, sip_uri: &str) {
    let server = &setup.server;
    let path = sip_path(&setup.account);
    for (case, password) in invalid_passwords() {
        for (encrypt_type, sent) in [(1, server.encrypt(&password)), (0, password.clone())] {
            let body = json!({"password": sent, "encrypt_type": encrypt_type});
            let reply = server.post_json(&path, &setup.auth(), &body).await;
            let case = format!("{case}, encrypt_type {encrypt_type}");
            assert_error(&reply, 400, CODE_INVALID, &case);
            assert_eq!(reply.error_fields(), vec!["password"], "{case}: field");
            assert!(!reply.text.contains(&password), "{case}: message shows the password");
        }
        let body = json!({"password": server.encrypt(&password), "domain": DEFAULT_DOMAIN});
        let reply = server.put_json(sip_uri, &setup.auth(), &body).await;
        assert_error(&reply, 400, CODE_INVALID, &format!("PUT {case}"));
    }

    let mut messages = Vec::new();
    for (case, sent) in broken_ciphertexts(server) {
        let reply = server.post_json(&path, &setup.auth(), &json!({"password": sent})).await;
        assert_error(&reply, 400, CODE_INVALID, case);
        assert_eq!(reply.error_fields(), vec!["password"], "{case}: field");
        messages.push(reply.json["message"].clone());
        let body = json!({"password": sent, "domain": DEFAULT_DOMAIN});
        let reply = server.put_json(sip_uri, &setup.auth(), &body).await;
        assert_error(&reply, 400, CODE_INVALID, &format!("PUT {case}"));
        messages.push(reply.json["message"].clone());
    }
    assert!(messages.windows(2).all(|pair| pair[0] == pair[1]), "one message: {messages:?}");

    let body = json!({"password": server.encrypt(PASSWORD), "encrypt_type": 2});
    let reply = server.post_json(&path, &setup.auth(), &body).await;
    assert_error(&reply, 400, CODE_INVALID, "encrypt_type 2");
    assert_eq!(reply.error_fields(), vec!["encrypt_type"], "encrypt_type 2: field");
    let missing = server.post_json(&path, &setup.auth(), &json!({"sip_id": "nopass"})).await;
    assert_error(&missing, 400, CODE_MISSING, "no password");
}

#[tokio::test]
async fn sip_password_rules() {
    let setup = Setup::start("owner06").await;
    let server = &setup.server;
    let path = sip_path(&setup.account);

    // 8 and 128 characters pass, encrypted or plain, JSON or form.
    let long = format!("a1{}", "~".repeat(126));
    let cases = [
        ("pass08a", server.encrypt("abcd1234"), "1"),
        ("pass128a", server.encrypt(&long), "1"),
        ("pass08b", "abcd1234".to_string(), "0"),
        ("pass128b", long.clone(), "0"),
    ];
    for (sip_id, password, encrypt_type) in &cases {
        let pairs = [("sip_id", *sip_id), ("password", password), ("encrypt_type", encrypt_type)];
        let reply = server.post_form(&path, &setup.auth(), &pairs).await;
        assert_eq!(reply.status, 201, "{sip_id}: {}", reply.text);
    }
    let sip = setup.sip("target01", None).await;
    let sip_uri = format!("{path}/{sip}");
    let before = setup.get(&sip_uri).await;

    check_passwords(&setup, &sip_uri).await;
    let setup = setup.restart();
    check_passwords(&setup, &sip_uri).await;
    assert_eq!(setup.get(&sip_uri).await.json, before.json, "rejected PUTs changed nothing");
}

/// Asserts 400 for each PUT that lacks a required parameter or has a bad
/// one.
async fn check_put_rules(setup: &Setup, uri: &str) {
    let server = &setup.server;
    let cases = [
        ("no password", json!({"domain": DEFAULT_DOMAIN}), CODE_MISSING, "password"),
        ("no domain", json!({"password": server.encrypt(PASSWORD)}), CODE_MISSING, "domain"),
        ("empty body", json!({}), CODE_MISSING, "password"),
        (
            "sip_id given",
            json!({"password": server.encrypt(PASSWORD), "domain": DEFAULT_DOMAIN, "sip_id": "x1234"}),
            CODE_UNKNOWN,
            "sip_id",
        ),
        (
            "invalid domain",
            json!({"password": server.encrypt(PASSWORD), "domain": "no_dots"}),
            CODE_INVALID,
            "domain",
        ),
    ];
    for (case, body, code, field) in &cases {
        let reply = server.put_json(uri, &setup.auth(), body).await;
        assert_error(&reply, 400, *code, case);
        assert_eq!(reply.error_fields(), vec![*field], "{case}: field");
    }
    let form = server.put_form(uri, &setup.auth(), &[("domain", DEFAULT_DOMAIN)]).await;
    assert_error(&form, 400, CODE_MISSING, "form without password");
}

#[tokio::test]
async fn sip_put_rules() {
    let setup = Setup::start("owner07").await;
    let sip = setup.sip("putter01", None).await;
    let uri = format!("{}/{sip}", sip_path(&setup.account));
    let before = setup.get(&uri).await;

    check_put_rules(&setup, &uri).await;
    let setup = setup.restart();
    check_put_rules(&setup, &uri).await;
    assert_eq!(setup.get(&uri).await.json, before.json, "rejected PUTs changed nothing");
}

#[tokio::test]
async fn sip_domain_move() {
    let setup = Setup::start("owner08").await;
    let server = &setup.server;
    let (home, taken_id, taken_alias, free) =
        ("one.example.com", "two.example.com", "three.example.com", "four.example.com");

    let sip = setup.sip("mover01", Some(home)).await;
    let first = setup.alias(&sip, "first1").await;
    setup.alias(&sip, "second2").await;
    let blocker = setup.sip("MOVER01", Some(taken_id)).await;
    let alias_holder = setup.sip("holder01", Some(taken_alias)).await;
    setup.alias(&alias_holder, "Second2").await;

    let uri = format!("{}/{sip}", sip_path(&setup.account));
    let alias_uri = format!("{}/{first}", aliases_path(&setup.account, &sip));
    let before = setup.get(&uri).await;
    let alias_before = setup.get(&alias_uri).await;
    let move_to = |domain: &str| json!({"password": server.encrypt(PASSWORD), "domain": domain});

    for (case, domain) in [("sip_id taken", taken_id), ("an alias taken", taken_alias)] {
        let reply = server.put_json(&uri, &setup.auth(), &move_to(domain)).await;
        assert_error(&reply, 409, CODE_NAME_TAKEN, case);
        assert_eq!(setup.get(&uri).await.json, before.json, "{case}: SIP account unchanged");
        assert_eq!(setup.get(&alias_uri).await.json, alias_before.json, "{case}: alias unchanged");
    }
    // Nothing moved: "first1" is still free where the move was rejected.
    setup.alias(&blocker, "first1").await;
    // It is still taken at home.
    assert_error(
        &setup.create_sip("FIRST1", Some(home)).await,
        409,
        CODE_NAME_TAKEN,
        "first1 at home",
    );

    let moved = server.put_json(&uri, &setup.auth(), &move_to(free)).await;
    moved.expect(200);
    assert_eq!(moved.json["domain"], free, "moved domain");
    assert_eq!(setup.get(&alias_uri).await.json["domain"], free, "alias moved along");

    // The old names are free at home and taken in the new domain.
    let setup = setup.restart();
    let returned = setup.sip("mover01", Some(home)).await;
    setup.alias(&returned, "first1").await;
    setup.alias(&returned, "Second2").await;
    for name in ["Mover01", "FIRST1", "second2"] {
        let reply = setup.create_sip(name, Some(free)).await;
        assert_error(&reply, 409, CODE_NAME_TAKEN, &format!("{name} in the new domain"));
    }
    assert_eq!(setup.get(&uri).await.json, moved.json, "moved SIP account after restart");
}

#[tokio::test]
async fn sip_delete_cascades() {
    let setup = Setup::start("owner09").await;
    let default = setup.default_sip().await;
    let default_sip = default["sid"].as_str().expect("default sid").to_string();
    let default_alias = default["sip_aliases"][0].as_str().expect("default alias").to_string();
    let sip = setup.sip("cascade01", None).await;
    let mut alias_uris = Vec::new();
    for (owner, name) in [(&sip, "c1"), (&sip, "C2"), (&default_sip, "d1"), (&default_sip, "d2")] {
        let alias = setup.alias(owner, name).await;
        alias_uris.push(format!("{}/{alias}", aliases_path(&setup.account, owner)));
    }
    let default_alias_sid = setup.get(&aliases_path(&setup.account, &default_sip)).await.json
        ["sip_aliases"][0]["sid"]
        .as_str()
        .expect("default alias sid")
        .to_string();
    alias_uris.push(format!("{}/{default_alias_sid}", aliases_path(&setup.account, &default_sip)));

    // Deleting both SIP accounts, the default one included, takes every
    // alias with it.
    for owner in [&sip, &default_sip] {
        let uri = format!("{}/{owner}", sip_path(&setup.account));
        setup.server.delete(&uri, &setup.auth()).await.expect(204);
        assert_error(&setup.get(&uri).await, 404, CODE_NOT_FOUND, "deleted SIP account");
        let aliases = setup.get(&aliases_path(&setup.account, owner)).await;
        assert_error(&aliases, 404, CODE_NOT_FOUND, "aliases of a deleted SIP account");
    }
    for uri in &alias_uris {
        assert_error(&setup.get(uri).await, 404, CODE_NOT_FOUND, "alias of a deleted SIP");
    }
    let list = setup.get(&sip_path(&setup.account)).await;
    assert_eq!(list.json["sip_accounts"], json!([]), "no SIP accounts left");

    // Every name is free again, and stays free after a restart.
    let setup = setup.restart();
    for uri in &alias_uris {
        assert_error(&setup.get(uri).await, 404, CODE_NOT_FOUND, "alias after restart");
    }
    let again = setup.sip("CASCADE01", None).await;
    let owner_again = setup.sip("owner09", None).await;
    for name in ["c1", "c2", "D1", "d2", default_alias.as_str()] {
        setup.alias(&again, name).await;
    }
    setup.alias(&owner_again, "c3").await;
}

/// Asserts 409 for each write that a closed sub-account rejects.
async fn check_closed(setup: &Setup, sip_uri: &str, alias_uri: &str, sip: &str) {
    let server = &setup.server;
    let put = json!({"password": server.encrypt(PASSWORD), "domain": DEFAULT_DOMAIN});
    let cases = [
        ("POST SIP account", setup.create_sip("late01", None).await),
        ("PUT SIP account", server.put_json(sip_uri, &setup.auth(), &put).await),
        ("DELETE SIP account", server.delete(sip_uri, &setup.auth()).await),
        ("POST alias", setup.add_alias(sip, "late").await),
        ("PUT alias", server.put_json(alias_uri, &setup.auth(), &json!({"alias": "x9"})).await),
        ("DELETE alias", server.delete(alias_uri, &setup.auth()).await),
    ];
    for (case, reply) in &cases {
        assert_error(reply, 409, CODE_CLOSED, case);
    }
}

#[tokio::test]
async fn sip_status_follows_account() {
    let setup = Setup::start("owner10").await;
    let sip = setup.sip("status01", None).await;
    let alias = setup.alias(&sip, "s1").await;
    let sip_uri = format!("{}/{sip}", sip_path(&setup.account));
    let alias_uri = format!("{}/{alias}", aliases_path(&setup.account, &sip));

    for status in ["suspended", "active", "suspended", "active", "closed"] {
        setup.set_status(status).await;
        assert_eq!(setup.get(&sip_uri).await.json["status"], status, "SIP account {status}");
        assert_eq!(setup.get(&alias_uri).await.json["status"], status, "alias {status}");
        let list = setup.get(&sip_path(&setup.account)).await;
        for item in list.json["sip_accounts"].as_array().expect("list") {
            assert_eq!(item["status"], status, "listed SIP account {status}");
        }
        let aliases = setup.get(&aliases_path(&setup.account, &sip)).await;
        assert_eq!(aliases.json["sip_aliases"][0]["status"], status, "listed alias {status}");
    }

    let closed_sip = setup.get(&sip_uri).await;
    let closed_alias = setup.get(&alias_uri).await;
    check_closed(&setup, &sip_uri, &alias_uri, &sip).await;
    let rejected = setup.add_alias(&sip, "late").await;
    assert_json_snapshot("sip_account_closed", &rejected.json);

    let setup = setup.restart();
    check_closed(&setup, &sip_uri, &alias_uri, &sip).await;
    assert_eq!(setup.get(&sip_uri).await.json, closed_sip.json, "closed SIP account unchanged");
    assert_eq!(setup.get(&alias_uri).await.json, closed_alias.json, "closed alias unchanged");
}

/// Asserts 404 for GET, PUT and DELETE on each (case, caller, path).
async fn check_hidden(server: &Server, cases: &[(&str, Auth, String)]) {
    let put_sip = json!({"password": server.encrypt(PASSWORD), "domain": "x.example.com"});
    for (case, auth, path) in cases {
        assert_error(&server.get(path, auth).await, 404, CODE_NOT_FOUND, case);
        let body =
            if path.contains("/aliases/") { json!({"alias": "stolen"}) } else { put_sip.clone() };
        let put = server.put_json(path, auth, &body).await;
        assert_error(&put, 404, CODE_NOT_FOUND, &format!("PUT {case}"));
        let delete = server.delete(path, auth).await;
        assert_error(&delete, 404, CODE_NOT_FOUND, &format!("DELETE {case}"));
    }
}

#[tokio::test]
async fn sip_tenancy() {
    let setup = Setup::start("owner11").await;
    let server = &setup.server;
    let sip = setup.sip("tenant01", None).await;
    let other_sip = setup.sip("tenant02", None).await;
    let alias = setup.alias(&sip, "t1").await;
    let other_alias = setup.alias(&other_sip, "t2").await;
    let sibling = server.account(&setup.developer, "owner11b").await["sid"]
        .as_str()
        .expect("sibling sid")
        .to_string();
    let stranger = server.developer("Other").await;
    let stranger_account =
        server.account(&stranger, "stranger1").await["sid"].as_str().expect("sid").to_string();

    let account = setup.account.clone();
    let sip_uri = format!("/v1/accounts/{account}/SIP/{sip}");
    let alias_uri = format!("{sip_uri}/aliases/{alias}");
    let before = (setup.get(&sip_uri).await.json, setup.get(&alias_uri).await.json);

    // Paths that must be 404 for every method, with the caller.
    let mine = setup.auth();
    let cases = [
        ("other developer, SIP account", stranger.auth(), sip_uri.clone()),
        ("other developer, alias", stranger.auth(), alias_uri.clone()),
        (
            "other developer, own sub-account path",
            stranger.auth(),
            format!("/v1/accounts/{stranger_account}/SIP/{sip}"),
        ),
        ("SIP account under a sibling", mine.clone(), format!("/v1/accounts/{sibling}/SIP/{sip}")),
        (
            "alias under another SIP account",
            mine.clone(),
            format!("/v1/accounts/{account}/SIP/{sip}/aliases/{other_alias}"),
        ),
        ("alias sid as SIP sid", mine.clone(), format!("/v1/accounts/{account}/SIP/{alias}")),
        ("malformed SIP sid", mine, format!("/v1/accounts/{account}/SIP/SC1234")),
    ];
    check_hidden(server, &cases).await;
    let list = server.get(&sip_path(&account), &stranger.auth()).await;
    assert_error(&list, 404, CODE_NOT_FOUND, "other developer lists SIP accounts");
    let post = server
        .post_json(&aliases_path(&account, &sip), &stranger.auth(), &json!({"alias": "x"}))
        .await;
    assert_error(&post, 404, CODE_NOT_FOUND, "other developer adds an alias");

    // The platform can read every developer's SIP accounts.
    let platform = server.get(&sip_uri, &Auth::Platform).await;
    platform.expect(200);
    assert_eq!(platform.json, before.0, "platform view");
    let scoped = format!("{sip_uri}?developer_id={}", setup.developer.sid);
    assert_eq!(server.get(&scoped, &Auth::Platform).await.json, before.0, "scoped platform view");
    let wrong_scope = format!("{sip_uri}?developer_id={}", stranger.sid);
    let reply = server.get(&wrong_scope, &Auth::Platform).await;
    assert_error(&reply, 404, CODE_NOT_FOUND, "platform acting for another developer");

    let setup = setup.restart();
    check_hidden(&setup.server, &cases).await;
    let after = (setup.get(&sip_uri).await.json, setup.get(&alias_uri).await.json);
    assert_eq!(after, before, "rejected requests changed nothing");
}

/// Reads every event of a stopped server's log.
fn read_log(server: &Server) -> Vec<(Event, Vec<u8>)> {
    let store = SledStore::open(&server.data_dir.join("log")).expect("open the log");
    let events = store
        .read_raw_from(1)
        .map(|raw| {
            let raw = raw.expect("read a stored event");
            let recorded = raw.decode().expect("decode a stored event");
            (recorded.event, raw.body.to_vec())
        })
        .collect();
    events
}

#[tokio::test]
async fn sip_digests_in_log() {
    let mut setup = Setup::start("owner12").await;
    let domain = "digest.example.net";
    let sip = setup.sip("digest01", Some(domain)).await;
    let uri = format!("{}/{sip}", sip_path(&setup.account));
    let new_password = "Renewed7Pass";
    let new_domain = "moved.example.net";
    let body = json!({"password": setup.server.encrypt(new_password), "domain": new_domain});
    setup.server.put_json(&uri, &setup.auth(), &body).await.expect(200);
    let doomed = setup.sip("doomed01", None).await;
    let doomed_aliases = [setup.alias(&doomed, "g1").await, setup.alias(&doomed, "g2").await];
    let doomed_uri = format!("{}/{doomed}", sip_path(&setup.account));
    setup.server.delete(&doomed_uri, &setup.auth()).await.expect(204);

    setup.server.stop();
    let events = read_log(&setup.server);

    let created = events.iter().find_map(|(event, _)| match event {
        Event::SipAccountCreated(e) if e.sid.to_string() == sip => Some(e.clone()),
        _ => None,
    });
    let created = created.expect("SipAccountCreated in the log");
    let (md5, sha256) = ha1("digest01", domain, PASSWORD);
    assert_eq!(created.digests.ha1_md5, md5, "created MD5 HA1");
    assert_eq!(created.digests.ha1_sha256, sha256, "created SHA-256 HA1");

    let updated = events.iter().find_map(|(event, _)| match event {
        Event::SipAccountUpdated(e) if e.sid.to_string() == sip => Some(e.clone()),
        _ => None,
    });
    let updated = updated.expect("SipAccountUpdated in the log");
    let (md5, sha256) = ha1("digest01", new_domain, new_password);
    assert_eq!(updated.domain, new_domain, "updated domain");
    assert_eq!(updated.digests.ha1_md5, md5, "updated MD5 HA1 with the new realm");
    assert_eq!(updated.digests.ha1_sha256, sha256, "updated SHA-256 HA1 with the new realm");

    // The default SIP account takes the login password's digests.
    let default = events.iter().find_map(|(event, _)| match event {
        Event::SipAccountCreated(e) if e.sip_id == "owner12" => Some(e.clone()),
        _ => None,
    });
    let default = default.expect("default SipAccountCreated in the log");
    let (md5, sha256) = ha1("owner12", DEFAULT_DOMAIN, "secret123");
    assert_eq!(default.digests.ha1_md5, md5, "default MD5 HA1");
    assert_eq!(default.digests.ha1_sha256, sha256, "default SHA-256 HA1");

    // One event deletes the SIP account and both aliases.
    let deletions: Vec<_> = events
        .iter()
        .filter_map(|(event, _)| match event {
            Event::SipAccountDeleted(e) if e.sid.to_string() == doomed => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(deletions.len(), 1, "one deletion event");
    let listed: Vec<String> = deletions[0].alias_sids.iter().map(|sid| sid.to_string()).collect();
    assert_eq!(listed, doomed_aliases.to_vec(), "deletion lists both aliases");
    let removals = events.iter().filter(|(event, _)| matches!(event, Event::SipAliasRemoved(_)));
    assert_eq!(removals.count(), 0, "no separate alias removals");

    // No stored event contains a password in plain text.
    for (event, body) in &events {
        let body = String::from_utf8_lossy(body);
        for password in [PASSWORD, new_password, "secret123"] {
            assert!(!body.contains(password), "{} stores a password", event.kind());
        }
    }

    let setup = setup.restart();
    assert_eq!(setup.get(&uri).await.json["domain"], new_domain, "log replays after reading");
}
