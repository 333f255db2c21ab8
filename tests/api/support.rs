//! A real `subledger serve` process on port 0 with a fresh data directory,
//! and an HTTP client for it.

// Each test module uses a different part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use subledger::crypto::{encrypt_password, AesKey};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Who signs a request.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Platform,
    Developer {
        sid: String,
        key: String,
    },
    /// Arbitrary Basic credentials.
    Basic(String, String),
}

/// A developer created through the API.
#[derive(Debug, Clone)]
pub struct Developer {
    pub sid: String,
    pub key: String,
}

impl Developer {
    pub fn auth(&self) -> Auth {
        Auth::Developer { sid: self.sid.clone(), key: self.key.clone() }
    }
}

/// A response with its body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string)
    }

    /// The `sid` field of the body.
    pub fn sid(&self) -> String {
        self.json["sid"].as_str().unwrap_or_else(|| panic!("no sid in {}", self.text)).to_string()
    }

    /// Asserts the status, showing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts an error response: status, the error shape and its status
    /// field.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> &Reply {
        self.expect(status);
        assert_eq!(self.json["status"], status, "error body status: {}", self.text);
        assert!(self.json["code"].is_u64(), "error body code: {}", self.text);
        assert!(self.json["message"].is_string(), "error body message: {}", self.text);
        assert!(self.json["more_info"].is_string(), "error body more_info: {}", self.text);
        self
    }

    /// The fields named in the error's `errors` list.
    pub fn error_fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors.iter().filter_map(|e| e["field"].as_str().map(str::to_string)).collect()
            })
            .unwrap_or_default()
    }
}

/// A running server. Dropping it kills the process; the data directory is
/// removed with the `TempDir` that owns it.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<Arc<tempfile::TempDir>>,
    pub platform_key: String,
    pub aes_key: AesKey,
    aes_key_text: String,
    pub client: reqwest::Client,
    logs: Arc<Mutex<Vec<String>>>,
    /// The thread that copies the server's log into `logs`. It ends when
    /// the process has exited and the pipe is drained.
    log_reader: Option<std::thread::JoinHandle<()>>,
    extra_args: Vec<String>,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts a server on a fresh data directory with extra `serve` flags.
    pub async fn start_with(extra_args: &[&str]) -> Server {
        let temp = Arc::new(tempfile::tempdir().expect("create a temporary data directory"));
        let data_dir = temp.path().join("data");
        let platform_key = format!("{:064x}", rand_u128());
        let aes_key = AesKey::generate();
        let aes_key_text = aes_key.to_base64();
        let extra_args = extra_args.iter().map(|arg| arg.to_string()).collect();
        Server::spawn(data_dir, Some(temp), platform_key, aes_key_text, extra_args)
    }

    fn spawn(
        data_dir: PathBuf,
        temp: Option<Arc<tempfile::TempDir>>,
        platform_key: String,
        aes_key_text: String,
        extra_args: Vec<String>,
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_subledger"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--workers")
            .arg("2")
            .args(&extra_args)
            .env("SUBLEDGER_PLATFORM_KEY", &platform_key)
            .env("SUBLEDGER_AES_KEY", &aes_key_text)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the subledger binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let sink = logs.clone();
        let log_reader = std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("addr=").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(sender) = sender.take() {
                        let _ = sender.send(addr);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            match receiver.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => break addr.parse().expect("listening address parses"),
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!("server did not start: {:?}", logs.lock().unwrap());
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("server exited with {status}: {:?}", logs.lock().unwrap());
                    }
                }
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client");
        let aes_key = AesKey::from_base64(&aes_key_text).expect("valid AES key");
        Server {
            child: Some(child),
            addr,
            data_dir,
            _temp: temp,
            platform_key,
            aes_key,
            aes_key_text,
            client,
            logs,
            log_reader: Some(log_reader),
            extra_args,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for the state hash that the newest start logs once it has
    /// computed it, which may be after the server is ready. Asserts that the
    /// hash is for the sequence number that start rebuilt.
    pub async fn start_state_hash(&self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let logs = self.logs();
            let start = logs.iter().rposition(|line| line.contains("projections rebuilt"));
            let start = start.unwrap_or_else(|| panic!("no start-up line in {logs:?}"));
            let hashed = logs[start..]
                .iter()
                .find(|line| line.contains("state hash of the rebuilt projections"));
            if let Some(line) = hashed {
                let field = |line: &str, name: &str| {
                    let prefix = format!("{name}=");
                    line.split_whitespace()
                        .find_map(|token| token.strip_prefix(&prefix).map(str::to_string))
                };
                let rebuilt_seq = field(&logs[start], "last_seq");
                assert_eq!(field(line, "seq"), rebuilt_seq, "hash of the rebuilt state: {line}");
                let hash = field(line, "state_hash").unwrap_or_else(|| panic!("no hash: {line}"));
                assert_eq!(hash.len(), 64, "state_hash is SHA-256 hex: {line}");
                return hash;
            }
            assert!(Instant::now() < deadline, "no state hash logged: {logs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server with SIGTERM and waits for it; asserts exit 0.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = child.wait().expect("wait for the server");
        self.wait_for_log_end();
        assert!(exit.success(), "server exited with {exit} after SIGTERM: {:?}", self.logs());
    }

    /// Waits until every line the exited server wrote is in `logs`. Without
    /// this, the last lines may still be in the pipe when a test reads them.
    fn wait_for_log_end(&mut self) {
        if let Some(reader) = self.log_reader.take() {
            reader.join().expect("the log reader does not panic");
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the server");
            let _ = child.wait();
            self.wait_for_log_end();
        }
    }

    /// Starts a new server process on the same data directory and keys.
    pub fn restart(mut self) -> Server {
        self.stop();
        self.respawn()
    }

    /// Kills the server with SIGKILL and starts it again on the same data.
    pub fn crash_and_restart(mut self) -> Server {
        self.kill();
        self.respawn()
    }

    /// Kills the server with SIGKILL, removes its projection snapshots and
    /// starts it again on the same data, so that the start replays the
    /// whole log.
    pub fn crash_and_restart_without_snapshots(mut self) -> Server {
        self.kill();
        let snapshots = self.data_dir.join("log").join("projection-snapshots");
        if let Ok(entries) = std::fs::read_dir(&snapshots) {
            for entry in entries {
                let path = entry.expect("list the projection snapshots").path();
                std::fs::remove_file(&path).expect("remove a projection snapshot");
            }
        }
        self.respawn()
    }

    fn respawn(mut self) -> Server {
        let temp = self._temp.take();
        Server::spawn(
            self.data_dir.clone(),
            temp,
            self.platform_key.clone(),
            self.aes_key_text.clone(),
            std::mem::take(&mut self.extra_args),
        )
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }

    /// Encrypts a password for `encrypt_type` 1 under this server's key.
    pub fn encrypt(&self, password: &str) -> String {
        encrypt_password(&self.aes_key, password)
    }

    fn authorize(&self, builder: reqwest::RequestBuilder, auth: &Auth) -> reqwest::RequestBuilder {
        let credentials = match auth {
            Auth::None => return builder,
            Auth::Platform => ("platform".to_string(), self.platform_key.clone()),
            Auth::Developer { sid, key } => (sid.clone(), key.clone()),
            Auth::Basic(user, key) => (user.clone(), key.clone()),
        };
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credentials.0, credentials.1));
        builder.header("authorization", format!("Basic {token}"))
    }

    /// Sends a request with an optional raw body and content type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = self.client.request(method, self.url(path));
        builder = self.authorize(builder, auth);
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let response = builder.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, text, json }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Reply {
        self.send(Method::GET, path, auth, None, None, &[]).await
    }

    pub async fn delete(&self, path: &str, auth: &Auth) -> Reply {
        self.send(Method::DELETE, path, auth, None, None, &[]).await
    }

    pub async fn post_json(&self, path: &str, auth: &Auth, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("JSON body");
        self.send(Method::POST, path, auth, Some("application/json"), Some(bytes), &[]).await
    }

    pub async fn put_json(&self, path: &str, auth: &Auth, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("JSON body");
        self.send(Method::PUT, path, auth, Some("application/json"), Some(bytes), &[]).await
    }

    pub async fn post_form(&self, path: &str, auth: &Auth, pairs: &[(&str, &str)]) -> Reply {
        let body = form(pairs);
        let content_type = Some("application/x-www-form-urlencoded");
        self.send(Method::POST, path, auth, content_type, Some(body.into_bytes()), &[]).await
    }

    pub async fn put_form(&self, path: &str, auth: &Auth, pairs: &[(&str, &str)]) -> Reply {
        let body = form(pairs);
        let content_type = Some("application/x-www-form-urlencoded");
        self.send(Method::PUT, path, auth, content_type, Some(body.into_bytes()), &[]).await
    }

    /// Creates a developer as the platform.
    pub async fn developer(&self, name: &str) -> Developer {
        let reply = self.post_form("/v1/developers", &Auth::Platform, &[("name", name)]).await;
        reply.expect(201);
        let key = reply.json["api_key"].as_str().expect("api_key").to_string();
        Developer { sid: reply.sid(), key }
    }

    /// Creates a sub-account with a plain password and returns its JSON.
    pub async fn account(&self, developer: &Developer, login_id: &str) -> Value {
        let body = serde_json::json!({"login_id": login_id, "password": "secret123"});
        let reply = self.post_json("/v1/accounts", &developer.auth(), &body).await;
        reply.expect(201);
        reply.json.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Encodes pairs as `application/x-www-form-urlencoded`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

fn rand_u128() -> u128 {
    rand::random()
}

/// Asserts a response body against its golden file in `snapshots/`, with
/// the values that change from run to run (ids, times, keys) redacted.
#[track_caller]
pub fn assert_json_snapshot(name: &str, value: &Value) {
    let redacted = redact(value);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    // serde_json's `arbitrary_precision` makes a `Number` serialize as a
    // private wrapper struct through any serializer but serde_json's own, so
    // the text is rendered here rather than by insta's JSON serializer.
    let text = serde_json::to_string_pretty(&redacted).expect("a JSON value renders");
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// Replaces ids, times, keys and generated names with placeholders, keeping
/// their kind: `AC[sid]`, `[date]`, `[api_key]`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, child) in map {
                let redacted = match (key.as_str(), child) {
                    ("date_created" | "date_updated", Value::String(_)) => json!("[date]"),
                    ("api_key", Value::String(_)) => json!("[api_key]"),
                    ("request_id", Value::String(_)) => json!("[request_id]"),
                    ("hash" | "prev_hash", Value::String(_)) => json!("[hash]"),
                    ("recorded_at", Value::String(_)) => json!("[time]"),
                    _ => redact(child),
                };
                out.insert(key.clone(), redacted);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(text) => Value::String(redact_sids(text)),
        other => other.clone(),
    }
}

/// Replaces every `XX` + 32 hex digit id inside a string with `XX[sid]`.
fn redact_sids(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < bytes.len() {
        let rest = &text[index..];
        let is_sid = rest.len() >= 34
            && ["AC", "SC", "SA", "BA", "DV"].iter().any(|prefix| rest.starts_with(prefix))
            && rest.as_bytes()[2..34]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        if is_sid {
            out.push_str(&rest[..2]);
            out.push_str("[sid]");
            index += 34;
        } else {
            let c = rest.chars().next().expect("index is on a char boundary");
            out.push(c);
            index += c.len_utf8();
        }
    }
    out
}
