//! The HTTP workload: creating the developer and sub-accounts, and driving
//! keep-alive clients through one scenario for a fixed time, recording the
//! latency of every request and the count of every status.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use futures_util::{stream, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Maximum time a request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest latency the histograms hold, in microseconds (one minute).
const LATENCY_MICROS_MAX: u64 = 60_000_000;
/// Bytes read from a socket at a time; a response fits in one read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Concurrent requests while reading every balance for the final check.
const CHECK_CONCURRENCY: usize = 32;
/// TOPUP amount of every posting the load generator sends.
pub const TOPUP_AMOUNT: &str = "1.00";

/// The request mix of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// TOPUPs on sub-accounts drawn at random.
    Spread,
    /// TOPUPs on one sub-account.
    Hot,
    /// `GET …/balances` of sub-accounts drawn at random.
    Read,
    /// Reads and TOPUPs on sub-accounts drawn at random (`--mix-read-percent`).
    Mix,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Spread => "spread",
            Scenario::Hot => "hot",
            Scenario::Read => "read",
            Scenario::Mix => "mix",
        }
    }
}

/// A server and the developer whose sub-accounts the load uses.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub base_url: String,
    /// The `Authorization` header value of the developer.
    pub authorization: String,
    pub accounts: Arc<Vec<String>>,
}

/// Counts and latencies of one scenario.
pub struct ScenarioResult {
    pub elapsed: Duration,
    pub requests: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response: refused, reset or timed out.
    pub transport_errors: u64,
    /// Latency of every request that got a response, in microseconds.
    pub latency: Histogram<u64>,
}

impl ScenarioResult {
    fn new() -> ScenarioResult {
        ScenarioResult {
            elapsed: Duration::ZERO,
            requests: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            latency: Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3)
                .expect("valid histogram bounds"),
        }
    }

    fn merge(&mut self, other: ScenarioResult) {
        self.requests += other.requests;
        self.transport_errors += other.transport_errors;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.latency.add(&other.latency).expect("histograms with equal bounds add");
    }

    /// Responses with a status outside 2xx, plus transport errors.
    pub fn errors(&self) -> u64 {
        let failed: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, count)| count)
            .sum();
        failed + self.transport_errors
    }
}

/// Builds the `Authorization` header value for HTTP Basic credentials.
pub fn basic_authorization(user: &str, key: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"));
    format!("Basic {token}")
}

/// Builds one keep-alive client: a connection pool that keeps one connection.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client builds")
}

/// Creates a developer as the platform; returns its sid and API key.
pub async fn create_developer(
    base_url: &str,
    platform_key: &str,
) -> anyhow::Result<(String, String)> {
    let response = client()
        .post(format!("{base_url}/v1/developers"))
        .header("authorization", basic_authorization("platform", platform_key))
        .form(&[("name", "Load test")])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status.as_u16() != 201 {
        bail!("creating the developer returned {status}: {body}");
    }
    let sid = body["sid"].as_str().context("developer sid")?.to_string();
    let key = body["api_key"].as_str().context("developer api_key")?.to_string();
    Ok((sid, key))
}

/// Creates `count` sub-accounts, `concurrency` at a time; returns their sids.
pub async fn create_accounts(
    base_url: &str,
    authorization: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let clients: Vec<reqwest::Client> = (0..concurrency.max(1)).map(|_| client()).collect();
    stream::iter(0..count)
        .map(|index| {
            let client = clients[index % clients.len()].clone();
            async move {
                let body = json!({"login_id": format!("load{index:07}"), "password": "secret123"});
                let response = client
                    .post(format!("{base_url}/v1/accounts"))
                    .header("authorization", authorization)
                    .json(&body)
                    .send()
                    .await?;
                let status = response.status();
                let body: Value = response.json().await?;
                if status.as_u16() != 201 {
                    bail!("creating sub-account {index} returned {status}: {body}");
                }
                Ok(body["sid"].as_str().context("sub-account sid")?.to_string())
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Runs `clients` clients through `scenario` for `duration`, each on its
/// own thread with one keep-alive connection. Blocking sockets and a
/// minimal HTTP/1.1 exchange keep the generator's CPU use low, because it
/// shares the machine with the server.
pub fn run_scenario(
    target: &Target,
    scenario: Scenario,
    clients: usize,
    duration: Duration,
    mix_read_percent: u64,
    tag: &str,
) -> ScenarioResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut total = ScenarioResult::new();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|index| {
                let seed = (scenario as u64) << 32 | index as u64;
                let tag = tag.to_string();
                let load = ClientLoad { target, scenario, index, mix_read_percent, seed, tag };
                scope.spawn(move || load.run(deadline))
            })
            .collect();
        for thread in threads {
            total.merge(thread.join().expect("a client thread does not panic"));
        }
    });
    total.elapsed = started.elapsed();
    total
}

/// One client's share of a scenario.
struct ClientLoad<'a> {
    target: &'a Target,
    scenario: Scenario,
    index: usize,
    mix_read_percent: u64,
    seed: u64,
    /// Starts every `refer_trans_id` this scenario sends, keeping them
    /// unique across the scenarios of one run.
    tag: String,
}

impl ClientLoad<'_> {
    fn run(self, deadline: Instant) -> ScenarioResult {
        let mut connection = Connection::new(self.target.addr);
        let mut result = ScenarioResult::new();
        let mut random = SplitMix64(self.seed);
        let accounts = &self.target.accounts;
        let mut sent = 0u64;
        while Instant::now() < deadline {
            let account = match self.scenario {
                Scenario::Hot => &accounts[0],
                _ => &accounts[(random.next() % accounts.len() as u64) as usize],
            };
            let read = match self.scenario {
                Scenario::Read => true,
                Scenario::Mix => random.next() % 100 < self.mix_read_percent,
                Scenario::Spread | Scenario::Hot => false,
            };
            let request = if read {
                self.get_balance(account)
            } else {
                self.post_topup(account, &format!("{}-{}-{sent}", self.tag, self.index))
            };
            sent += 1;

            let started = Instant::now();
            let status = connection.exchange(&request);
            result.requests += 1;
            let Some(status) = status else {
                result.transport_errors += 1;
                continue;
            };
            let micros = started.elapsed().as_micros() as u64;
            result.latency.saturating_record(micros.max(1));
            *result.statuses.entry(status).or_default() += 1;
        }
        result
    }

    fn get_balance(&self, account: &str) -> Vec<u8> {
        format!(
            "GET /v1/accounts/{account}/balances HTTP/1.1\r\nHost: {}\r\n\
             Authorization: {}\r\n\r\n",
            self.target.addr, self.target.authorization
        )
        .into_bytes()
    }

    fn post_topup(&self, account: &str, reference: &str) -> Vec<u8> {
        let body =
            format!("amount={TOPUP_AMOUNT}&type=TOPUP&pay_method=4&refer_trans_id={reference}");
        format!(
            "POST /v1/accounts/{account}/balances HTTP/1.1\r\nHost: {}\r\n\
             Authorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.target.addr,
            self.target.authorization,
            body.len()
        )
        .into_bytes()
    }
}

/// One keep-alive HTTP/1.1 connection, opened again after any failure.
/// It reads only responses with a `Content-Length`, which is how the
/// server sends every response these scenarios get.
struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Connection {
        Connection { addr, stream: None, buffer: Vec::with_capacity(READ_CHUNK_BYTES) }
    }

    /// Sends one request and reads its whole response; returns the status,
    /// or `None` when no complete response arrived.
    fn exchange(&mut self, request: &[u8]) -> Option<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, REQUEST_TIMEOUT).ok()?;
            stream.set_nodelay(true).ok()?;
            stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut()?;
        let outcome = match stream.write_all(request) {
            Ok(()) => read_response(stream, &mut self.buffer),
            Err(_) => None,
        };
        match outcome {
            Some((status, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Some(status)
            }
            None => {
                self.stream = None;
                None
            }
        }
    }
}

/// Reads one response and returns its status and whether the connection
/// stays open.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(u16, bool)> {
    buffer.clear();
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };

    let head = std::str::from_utf8(&buffer[..header_end]).ok()?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut content_length = None;
    let mut keep_alive = true;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }

    // Requests are not pipelined, so bytes after the body mean the stream
    // is out of step and the connection is dropped.
    let total = header_end + content_length?;
    while buffer.len() < total {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    (buffer.len() == total).then_some((status, keep_alive))
}

/// The writer's counters from the server's Prometheus metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterCounters {
    pub batches: f64,
    pub commands: f64,
    pub commits: f64,
    pub commit_seconds: f64,
}

impl WriterCounters {
    /// Returns the counters' growth from `earlier` to `self`.
    pub fn since(self, earlier: WriterCounters) -> WriterCounters {
        WriterCounters {
            batches: self.batches - earlier.batches,
            commands: self.commands - earlier.commands,
            commits: self.commits - earlier.commits,
            commit_seconds: self.commit_seconds - earlier.commit_seconds,
        }
    }
}

/// Reads the writer's counters from `GET /metrics`.
pub async fn writer_counters(base_url: &str) -> anyhow::Result<WriterCounters> {
    let text = client().get(format!("{base_url}/metrics")).send().await?.text().await?;
    let value = |name: &str| -> anyhow::Result<f64> {
        let line = text
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .with_context(|| format!("no {name} in /metrics"))?;
        let number = line.split_whitespace().nth(1).context("metric without a value")?;
        Ok(number.parse()?)
    };
    Ok(WriterCounters {
        batches: value("subledger_writer_batches_total")?,
        commands: value("subledger_writer_commands_total")?,
        commits: value("subledger_commit_duration_seconds_count")?,
        commit_seconds: value("subledger_commit_duration_seconds_sum")?,
    })
}

/// Sums the balances of every sub-account of `target`.
pub async fn sum_balances(target: &Target) -> anyhow::Result<Decimal> {
    let clients: Vec<reqwest::Client> = (0..CHECK_CONCURRENCY).map(|_| client()).collect();
    let balances: Vec<Decimal> = stream::iter(target.accounts.iter().enumerate())
        .map(|(index, account)| {
            let client = clients[index % clients.len()].clone();
            let url = format!("{}/v1/accounts/{account}/balances", target.base_url);
            async move {
                let response =
                    client.get(url).header("authorization", &target.authorization).send().await?;
                let body: Value = response.json().await?;
                let amount = body["balance_amount"].as_str().context("balance_amount")?;
                Ok::<Decimal, anyhow::Error>(Decimal::from_str(amount)?)
            }
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(balances.into_iter().sum())
}

/// A small, fast pseudo-random sequence (SplitMix64); the load only needs
/// an even spread, not unpredictability.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
