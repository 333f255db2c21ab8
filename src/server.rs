//! `subledger serve`: opens the data directory, recovers the projections,
//! starts the writer and serves HTTP until SIGTERM or SIGINT.
//!
//! The data directory contains the event log (`log/`, a sled database) and,
//! unless they come from the environment, the platform key
//! (`platform.key`) and the AES key (`aes.key`), created on first start
//! with mode 0600.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context;

use crate::api::metrics::HttpMetrics;
use crate::api::params::BODY_BYTES_MAX;
use crate::api::AppState;
use crate::crypto::{generate_api_key, hash_api_key, AesKey};
use crate::ledger::recovery::{
    log_state_hash, preload_snapshot, recover_with, Preloaded, Recovered,
};
use crate::ledger::{Ledger, WriterConfig};
use crate::store::{EventStore, IndexReading, SledStore, SnapshotFile};

/// Environment variable with the platform key.
pub const PLATFORM_KEY_ENV: &str = "SUBLEDGER_PLATFORM_KEY";
/// Environment variable with the AES key: base64 of 32 bytes.
pub const AES_KEY_ENV: &str = "SUBLEDGER_AES_KEY";
/// Shortest platform key accepted from the environment.
pub const PLATFORM_KEY_CHARS_MIN: usize = 16;
/// Seconds in-flight requests get to finish after SIGTERM or SIGINT.
pub const SHUTDOWN_GRACE_SECONDS: u64 = 30;

/// Settings of `subledger serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub default_domain: String,
    pub snapshot_interval_events: u64,
    pub workers: usize,
}

/// The event log's directory inside a data directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// Creates the data directory, with its missing parents, readable by its
/// owner only: the log contains password hashes and SIP digests, and sled
/// creates its files readable by everyone under the usual umask. Warns
/// when an existing directory lets other users in.
fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("failed to read the permissions of {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is open to other users, and its log contains password hashes and SIP digests; run chmod 700 on it"
        );
    }
    Ok(())
}

/// Writes a new secret file readable by its owner only.
fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

/// Reads a key from the environment, else from its file in the data
/// directory, else generates it into that file. Returns the key and where
/// it came from (the variable or the file), for messages.
fn load_or_create_key(
    env_name: &str,
    path: &Path,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<(String, String)> {
    if let Ok(value) = std::env::var(env_name) {
        tracing::info!(source = env_name, "key read from the environment");
        // Surrounding white space is dropped as it is for key files, so a
        // key of only spaces counts as empty.
        return Ok((value.trim().to_string(), env_name.to_string()));
    }
    let source = path.display().to_string();
    if path.exists() {
        let value =
            std::fs::read_to_string(path).with_context(|| format!("failed to read {source}"))?;
        tracing::info!(path = %source, "key read from the data directory");
        return Ok((value.trim().to_string(), source));
    }
    let value = generate();
    write_secret_file(path, &value)?;
    tracing::info!(path = %source, "key generated into the data directory (mode 0600)");
    Ok((value, source))
}

/// Checks the length of a platform key read from `source`.
fn check_platform_key(key: &str, source: &str) -> anyhow::Result<()> {
    if key.chars().count() < PLATFORM_KEY_CHARS_MIN {
        anyhow::bail!(
            "the platform key from {source} is too short: it must be at least \
             {PLATFORM_KEY_CHARS_MIN} characters"
        );
    }
    Ok(())
}

/// Parses an AES key read from `source`.
fn parse_aes_key(text: &str, source: &str) -> anyhow::Result<AesKey> {
    AesKey::from_base64(text).map_err(|error| {
        anyhow::anyhow!("invalid AES key from {source} (expected base64 of 32 bytes): {error}")
    })
}

/// Checks the keys set in the environment before the data directory is
/// touched, so that a bad one stops the start before sled creates its
/// files there.
fn check_keys_in_environment() -> anyhow::Result<()> {
    if let Ok(value) = std::env::var(PLATFORM_KEY_ENV) {
        check_platform_key(value.trim(), PLATFORM_KEY_ENV)?;
    }
    if let Ok(value) = std::env::var(AES_KEY_ENV) {
        parse_aes_key(value.trim(), AES_KEY_ENV)?;
    }
    Ok(())
}

/// The platform key's SHA-256 and the AES key.
fn load_keys(data_dir: &Path) -> anyhow::Result<([u8; 32], AesKey)> {
    let (platform_key, source) =
        load_or_create_key(PLATFORM_KEY_ENV, &data_dir.join("platform.key"), generate_api_key)?;
    check_platform_key(&platform_key, &source)?;
    let (aes_text, source) = load_or_create_key(AES_KEY_ENV, &data_dir.join("aes.key"), || {
        AesKey::generate().to_base64()
    })?;
    let aes_key = parse_aes_key(&aes_text, &source)?;
    Ok((hash_api_key(&platform_key), aes_key))
}

/// Opens the log and rebuilds the projections; shared by `serve` and the
/// offline commands that read a data directory.
pub fn open_store(data_dir: &Path) -> anyhow::Result<Arc<SledStore>> {
    open_store_reading(data_dir, IndexReading::AtOpen)
}

/// Opens the event log like `open_store`, reading the stream index when
/// `reading` selects.
fn open_store_reading(data_dir: &Path, reading: IndexReading) -> anyhow::Result<Arc<SledStore>> {
    let path = log_dir(data_dir);
    let store = SledStore::open_reading_index(&path, reading)
        .with_context(|| format!("failed to open the event log in {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Starts reading and decoding the newest projection snapshot on a thread
/// of its own, so that it runs while the log opens. At 1,000,000 postings
/// each takes a few hundred milliseconds. The files are read before the
/// log's lock is taken, which is safe because they are only read: a server
/// that holds the lock renames each new snapshot into place whole, and the
/// open then fails on the lock anyway. Returns `None` when there is no
/// snapshot file, or the thread did not start.
fn start_preload(data_dir: &Path) -> Option<std::thread::JoinHandle<Preloaded>> {
    let files = match SnapshotFile::list(&log_dir(data_dir)) {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(%error, "failed to list the projection snapshots; recovery lists them again");
            return None;
        }
    };
    if files.is_empty() {
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("snapshot-load".into())
        .spawn(move || preload_snapshot(files));
    match spawned {
        Ok(handle) => Some(handle),
        Err(error) => {
            tracing::warn!(%error, "failed to start the snapshot thread; recovery reads the snapshot");
            None
        }
    }
}

/// Connections that the kernel queues for the server to accept, as many
/// as actix-web's own listeners queue (`HttpServer::backlog`).
/// `std::net::TcpListener::bind` requests 128 (rust-lang/rust#55614),
/// which a burst of new clients can fill.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds `address` the way actix-web binds its own listeners, with
/// `SO_REUSEADDR`, so that a restart need not wait for the connections
/// of the previous process to time out.
fn listen(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Returns what to do when binding the listening address failed with
/// `kind`. Only an address in use is fixed by stopping another process.
fn listen_hint(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::AddrInUse => {
            "stop the process that uses it or choose another address with --listen"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need CAP_NET_BIND_SERVICE unless the system lowers that \
             limit; choose a port of 1024 or above with --listen"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "the IP address is not one of this host's; choose a local address, such as \
             127.0.0.1 or 0.0.0.0, with --listen"
        }
        _ => "choose another address with --listen",
    }
}

/// Waits for the preload. A preload that panicked counts as none, so that
/// recovery reads the snapshots itself.
fn finish_preload(preload: Option<std::thread::JoinHandle<Preloaded>>) -> Preloaded {
    let Some(handle) = preload else {
        return Preloaded::default();
    };
    handle.join().unwrap_or_else(|_| {
        tracing::error!("the snapshot thread panicked; recovery reads the snapshots itself");
        Preloaded::default()
    })
}

/// Runs the service until SIGTERM or SIGINT.
pub fn serve(config: ServeConfig) -> anyhow::Result<()> {
    check_keys_in_environment()?;
    // The address is taken first, so that a port in use stops the start
    // at once: before a replay that can take seconds, and before a new
    // data directory or key files are made. Connections made before the
    // projections are rebuilt wait in the kernel's queue until then.
    let listener = listen(config.listen).map_err(|error| {
        let hint = listen_hint(error.kind());
        anyhow::Error::new(error).context(format!("failed to listen on {}; {hint}", config.listen))
    })?;
    create_data_dir(&config.data_dir)?;
    let started = std::time::Instant::now();
    let preload = start_preload(&config.data_dir);
    // The open reads the stream index while the snapshot is decoded, or,
    // with no snapshot to decode, on a thread of its own while the whole
    // log is replayed. Either way both cores have work.
    let reading = match preload {
        Some(_) => IndexReading::AtOpen,
        None => IndexReading::Background,
    };
    let store = open_store_reading(&config.data_dir, reading)?;
    let preloaded = finish_preload(preload);
    let recovered = recover_with(store.as_ref(), preloaded);
    // A read that failed leaves the log taking no writes too, so its own
    // error comes first.
    store.join_index_read().with_context(|| {
        format!("failed to read the stream index in {}", log_dir(&config.data_dir).display())
    })?;
    // A log that opens for reading only is for the audit commands. A
    // service on it would reject every write with 503. Its reason names
    // the break, which the rebuild may have failed on as well.
    if let Some(reason) = store.read_only_reason() {
        anyhow::bail!("the event log in {} takes no writes: {reason}", config.data_dir.display());
    }
    let recovered = recovered.context("failed to rebuild the projections from the log")?;
    // The keys come after the log, whose lock stops a second server on
    // the same directory before it writes a key file there, and after the
    // check above, so that a log that takes no writes gets no key files.
    let (platform_key_sha256, aes_key) = load_keys(&config.data_dir)?;
    log_recovered(&recovered, started.elapsed());
    log_state_hash(recovered.state.clone());

    let writer_config = WriterConfig { snapshot_interval_events: config.snapshot_interval_events };
    let dyn_store: Arc<dyn EventStore> = store;
    let (ledger, writer) = Ledger::start(dyn_store, recovered.state, writer_config);
    let app_state = web::Data::new(AppState {
        ledger: ledger.clone(),
        platform_key_sha256,
        aes_key,
        default_domain: config.default_domain.clone(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers.max(1))
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let result = runtime.block_on(run_http(config, app_state, listener));

    // The HTTP server has stopped: stop the writer after the commands it
    // already has, so that every acknowledged write is durable.
    ledger.stop();
    drop(ledger);
    if writer.join().is_err() {
        tracing::error!("the ledger writer panicked during shutdown");
    }
    tracing::info!("stopped");
    result
}

/// Logs how the start rebuilt the projections. All three messages begin
/// with "projections rebuilt", and only a start from a snapshot has the
/// field `snapshot_seq`.
fn log_recovered(recovered: &Recovered, elapsed: std::time::Duration) {
    let last_seq = recovered.state.last_seq;
    let replayed_events = recovered.replayed_events;
    let elapsed_ms = elapsed.as_millis() as u64;
    match recovered.snapshot_seq {
        Some(snapshot_seq) => tracing::info!(
            last_seq,
            snapshot_seq,
            replayed_events,
            elapsed_ms,
            "projections rebuilt from a projection snapshot and the events after it"
        ),
        None if recovered.snapshots_unusable => tracing::info!(
            last_seq,
            replayed_events,
            elapsed_ms,
            "projections rebuilt by a full replay of the log, because no projection snapshot was usable"
        ),
        None => tracing::info!(
            last_seq,
            replayed_events,
            elapsed_ms,
            "projections rebuilt by a full replay of the log, which has no projection snapshot yet"
        ),
    }
}

async fn run_http(
    config: ServeConfig,
    app_state: web::Data<AppState>,
    listener: std::net::TcpListener,
) -> anyhow::Result<()> {
    let http_metrics = web::Data::new(HttpMetrics::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(http_metrics.clone())
            .app_data(web::PayloadConfig::new(BODY_BYTES_MAX))
            .wrap(middleware::from_fn(crate::api::format::edge))
            .configure(crate::api::configure)
    })
    .workers(config.workers.max(1))
    .shutdown_timeout(SHUTDOWN_GRACE_SECONDS)
    .listen(listener)
    .with_context(|| format!("failed to listen on {}", config.listen))?;
    for address in server.addrs() {
        tracing::info!(addr = %address, data_dir = %config.data_dir.display(), "listening");
    }
    server.run().await.context("the HTTP server failed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("the directory exists").permissions().mode() & 0o777
    }

    #[test]
    fn new_data_dir_is_owner_only() {
        let parent = tempfile::tempdir().expect("a temporary directory");
        let data_dir = parent.path().join("outer").join("data");
        create_data_dir(&data_dir).expect("the data directory is created");
        assert_eq!(mode_of(&data_dir), 0o700, "the data directory");
        assert_eq!(mode_of(&parent.path().join("outer")), 0o700, "a created parent");
    }

    #[test]
    fn short_platform_key_names_its_source() {
        let error = check_platform_key("short", PLATFORM_KEY_ENV).expect_err("5 characters");
        let message = error.to_string();
        assert!(message.contains(PLATFORM_KEY_ENV), "names the variable: {message}");
        assert!(message.contains("at least 16 characters"), "gives the minimum: {message}");
        assert!(check_platform_key("0123456789abcdef", PLATFORM_KEY_ENV).is_ok(), "16 characters");
    }

    #[test]
    fn invalid_aes_key_names_its_source() {
        let error = parse_aes_key("not base64", "/data/aes.key").expect_err("not base64");
        assert!(error.to_string().contains("/data/aes.key"), "names the file: {error}");
        let key = AesKey::generate().to_base64();
        assert!(parse_aes_key(&key, AES_KEY_ENV).is_ok(), "a generated key parses");
    }

    #[test]
    fn listen_hint_matches_error() {
        let in_use = listen_hint(std::io::ErrorKind::AddrInUse);
        assert!(in_use.contains("stop the process"), "a port in use: {in_use}");
        let cases = [
            (std::io::ErrorKind::PermissionDenied, "CAP_NET_BIND_SERVICE"),
            (std::io::ErrorKind::AddrNotAvailable, "local address"),
        ];
        for (kind, expected) in cases {
            let hint = listen_hint(kind);
            assert!(hint.contains(expected), "{kind:?}: {hint}");
            assert!(!hint.contains("stop the process"), "{kind:?} blames another process: {hint}");
            assert!(hint.contains("--listen"), "{kind:?} names the option: {hint}");
        }
    }

    #[test]
    fn existing_data_dir_keeps_its_mode() {
        let parent = tempfile::tempdir().expect("a temporary directory");
        let data_dir = parent.path().join("data");
        std::fs::create_dir(&data_dir).expect("the directory is created");
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755))
            .expect("the mode is set");
        create_data_dir(&data_dir).expect("an existing directory is accepted");
        assert_eq!(mode_of(&data_dir), 0o755, "the operator's mode is kept");
    }
}
