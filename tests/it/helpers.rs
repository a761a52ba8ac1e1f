//! `spawn_app()`: the real `appliance::App` on a free loopback port with a fresh SQLite file in a
//! temporary directory and a `MockClock`, served from the test's own tokio runtime (zero2prod
//! `helpers.rs`). Plus helpers to run the binary as a subprocess (`run_cli`, `ServeProcess`).
//!
//! Logs: set `TEST_LOG=1` (and optionally `RUST_LOG`) to see the server's tracing output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use appliance::App;
use appliance::clock::{Clock, MockClock, SystemClock};
use appliance::config::Config;
use appliance::crypto::keys::SigningKey;
use serde_yaml::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The matrix secret of the default test config.
pub const MATRIX_SECRET: &str = "test-matrix-secret";
/// The static client every test config declares (the legacy-Synapse introspection client).
pub const SYNAPSE_CLIENT_ID: &str = "0000000000000000000SYNAPSE";
pub const SYNAPSE_CLIENT_SECRET: &str = "test-synapse-secret";
/// `secrets.encryption` of the default test config.
pub const ENCRYPTION_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A server running inside the test's runtime. Dropping it stops the server.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// Address of the first listener.
    pub addr: SocketAddr,
    /// Every bound listener by name (`web` in the default config).
    pub listeners: Vec<(String, SocketAddr)>,
    /// Cookie store on, redirects off.
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub db_path: PathBuf,
    pub clock: Arc<MockClock>,
    pub state: appliance::http::AppState,
    patch: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Absolute URL of `path` on this server (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') { format!("{}{path}", self.base) } else { format!("{}/{path}", self.base) }
    }

    /// A client with its own empty cookie jar; redirects are not followed.
    pub fn new_client(&self) -> reqwest::Client {
        new_client()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url(path)).form(form).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// The URL of `path` on the listener called `name`.
    pub fn listener_url(&self, name: &str, path: &str) -> String {
        let addr = self
            .listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {name:?} in {:?}", self.listeners));
        format!("http://{addr}{path}")
    }

    /// Runs the binary as a subprocess against this server's config and database.
    /// Blocking: call it from a multi-threaded runtime or through `spawn_blocking`.
    pub fn run_cli(&self, args: &[&str]) -> Output {
        run_cli(&self.config_path, args)
    }

    /// Stops the server and waits until every listener has closed.
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        self.stop_in_place().await;
        let dir = std::mem::replace(&mut self.dir, tempdir());
        (dir, std::mem::take(&mut self.patch))
    }

    async fn stop_in_place(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(Duration::from_secs(10), server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("server ended with an error: {e:#}"),
                Ok(Err(e)) => panic!("server task failed: {e}"),
                Err(_) => panic!("server did not stop within 10 s"),
            }
        }
    }

    /// Waits (up to `timeout`) for the server to stop by itself, without asking it to: its result.
    pub async fn stopped_by_itself(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let server = self.server.take().expect("the server task is still held");
        match tokio::time::timeout(timeout, server).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("server task failed: {e}"),
            Err(_) => panic!("the server did not stop by itself within {timeout:?}"),
        }
    }

    /// Stops the server and boots a new one on the same directory, database and config patch
    /// (the config file is rewritten for a new free port).
    pub async fn restart(self) -> TestApp {
        let (dir, patch) = self.stop().await;
        boot(dir, &patch).await
    }

    /// Stops the server and boots it again in place: the same directory, database and port
    /// (whatever names it — Synapse's `endpoint`, nginx — keeps working), with `extra` merged
    /// over the config patch, as an operator editing config.yaml and restarting would.
    pub async fn reboot_with(&mut self, extra: &str) {
        self.stop_in_place().await;
        let dir = std::mem::replace(&mut self.dir, tempdir());
        let patch = merged_yaml(&self.patch, extra);
        *self = boot_on(dir, &patch, Some(self.addr.port())).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// Boots with `yaml_patch` merged over the default test config: mappings merge key by key,
/// anything else (lists, scalars) replaces; a `~` (null) value removes the key, e.g.
/// `secrets: ~` starts without `secrets` so keys are generated into the database. `$PORT` in
/// the patch is replaced by the port of the main listener (for patches that rewrite
/// `http.listeners`; bind extra listeners on `127.0.0.1:0`).
pub async fn spawn_app_with(yaml_patch: &str) -> TestApp {
    boot(tempdir(), yaml_patch).await
}

/// Boots on an existing directory (its `appliance.db` kept, `config.yaml` rewritten), e.g. the
/// one `TestApp::stop` hands back, with another patch.
pub async fn spawn_app_in(dir: tempfile::TempDir, yaml_patch: &str) -> TestApp {
    boot(dir, yaml_patch).await
}

/// As `spawn_app_with`, with the clock starting at `start` and the randomness seeded with `seed`
/// (`App::build_with`): two such apps given the same requests mint the same IDs and tokens.
pub async fn spawn_app_pinned(yaml_patch: &str, start: i64, seed: u64) -> TestApp {
    boot_pinned(tempdir(), yaml_patch, Some((start, seed))).await
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("appliance-it-").tempdir().expect("tempdir")
}

async fn boot(dir: tempfile::TempDir, patch: &str) -> TestApp {
    boot_on(dir, patch, None).await
}

/// Boots on `port`, or on a free port when None.
async fn boot_on(dir: tempfile::TempDir, patch: &str, port: Option<u16>) -> TestApp {
    boot_with(dir, patch, port, None).await
}

async fn boot_pinned(dir: tempfile::TempDir, patch: &str, pin: Option<(i64, u64)>) -> TestApp {
    boot_with(dir, patch, None, pin).await
}

/// Boots on `port` (or a free one), with the clock and rng pinned to `pin` (start, seed) if given.
async fn boot_with(dir: tempfile::TempDir, patch: &str, port: Option<u16>, pin: Option<(i64, u64)>) -> TestApp {
    init_tracing();
    let config_path = dir.path().join("config.yaml");
    let db_path = dir.path().join("appliance.db");
    let mut last_error = String::new();
    // The port is picked before the server binds it (public_base must name it), so another
    // process may take it in between: then pick again.
    for _ in 0..5 {
        let port = port.unwrap_or_else(free_port);
        let public_base = format!("http://127.0.0.1:{port}/");
        let yaml = merged_yaml(&test_config_yaml(&public_base, &db_path), &patch.replace("$PORT", &port.to_string()));
        std::fs::write(&config_path, &yaml).expect("write config");
        let config = Config::load(&config_path).unwrap_or_else(|e| panic!("test config is invalid: {e:#}\n{yaml}"));
        let built = match pin {
            None => {
                let clock = MockClock::new(SystemClock.now());
                (clock.clone(), App::build_with_clock(config, clock).await)
            }
            Some((start, seed)) => {
                let clock = MockClock::new(start);
                (clock.clone(), App::build_with(config, clock, appliance::rng::SeededRng::new(seed)).await)
            }
        };
        let (clock, app) = built;
        let app = match app {
            Ok(app) => app,
            Err(e) => {
                last_error = format!("{e:#}");
                if last_error.contains("cannot listen") {
                    continue;
                }
                panic!("App::build failed: {last_error}\n{yaml}");
            }
        };
        let addr = app.local_addr();
        let listeners = app.local_addrs();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        return TestApp {
            base: format!("http://{addr}"),
            addr,
            listeners,
            client: new_client(),
            dir,
            config_path,
            db_path,
            clock,
            state,
            patch: patch.to_string(),
            shutdown: Some(tx),
            server: Some(server),
        };
    }
    panic!("cannot bind a free port: {last_error}");
}

/// A port nothing listens on right now (bind port 0, read it, close).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// A fixed RSA and P-256 key (PEM) per test process: RSA generation is slow.
pub fn test_keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = SigningKey::generate_rsa().expect("generate RSA key");
        let ec = SigningKey::generate_p256();
        (rsa.to_pem(), ec.to_pem())
    })
}

/// The `kid`s the configured test keys get (their RFC 7638 thumbprints).
pub fn test_key_ids() -> Vec<String> {
    let (rsa, ec) = test_keys();
    [rsa, ec].iter().map(|pem| SigningKey::from_pem(pem, None).expect("test key").kid).collect()
}

/// The default test config: one listener on `public_base`'s host and port serving every
/// resource, the database at `db_path`, fixed secrets, cheap argon2.
pub fn test_config_yaml(public_base: &str, db_path: &Path) -> String {
    let url = url::Url::parse(public_base).expect("public_base is a URL");
    let bind = format!(
        "{}:{}",
        url.host_str().expect("public_base has a host"),
        url.port_or_known_default().expect("public_base has a port")
    );
    let (rsa, ec) = test_keys();
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("        {l}\n")).collect() };
    format!(
        r#"http:
  public_base: "{public_base}"
  listeners:
    - name: web
      resources:
        - name: discovery
        - name: human
        - name: oauth
        - name: compat
        - name: assets
        - name: health
        - name: prometheus
      binds:
        - address: "{bind}"
database:
  path: "{db}"
matrix:
  homeserver: "localhost"
  secret: "{MATRIX_SECRET}"
  endpoint: "http://127.0.0.1:9/"
clients:
  - client_id: {SYNAPSE_CLIENT_ID}
    client_auth_method: client_secret_basic
    client_secret: "{SYNAPSE_CLIENT_SECRET}"
secrets:
  encryption: "{ENCRYPTION_KEY_HEX}"
  keys:
    - key: |
{rsa}    - key: |
{ec}passwords:
  schemes:
    - version: 1
      algorithm: argon2id
      memory_kib: 64
      iterations: 1
# Tests register many clients from one address; resilience.rs tests the limit itself.
rate_limiting:
  client_registration: {{burst: 1000, per_second: 100}}
"#,
        db = db_path.display(),
        rsa = indent(rsa),
        ec = indent(ec),
    )
}

/// `base` with `patch` merged over it (see `spawn_app_with`), as YAML text.
pub fn merged_yaml(base: &str, patch: &str) -> String {
    let mut base: Value = serde_yaml::from_str(base).expect("base YAML");
    if !patch.trim().is_empty() {
        let patch: Value =
            serde_yaml::from_str(patch).unwrap_or_else(|e| panic!("config patch is not YAML: {e}\n{patch}"));
        merge(&mut base, patch);
    }
    serde_yaml::to_string(&base).expect("render YAML")
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Mapping(b), Value::Mapping(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(existing) = b.get_mut(&k) {
                    merge(existing, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// Every event and span of the process while a [`LogCapture`] is alive, at every level and from
/// every crate (`log` records included), formatted as `serve` prints them — what
/// `RUST_LOG=trace appliance serve` would write.
static CAPTURING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = CAPTURED.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the server's log at trace level until dropped (other tests running meanwhile are
/// captured too; assert only on what this test handled).
pub struct LogCapture {
    start: usize,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        init_tracing();
        CAPTURING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LogCapture { start: CAPTURED.lock().map(|v| v.len()).unwrap_or(0) }
    }

    /// Everything logged since `start`.
    pub fn text(&self) -> String {
        CAPTURED.lock().map(|v| String::from_utf8_lossy(&v[self.start.min(v.len())..]).into_owned()).unwrap_or_default()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn init_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let test_log = std::env::var_os("TEST_LOG").is_some().then(|| {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter)
        });
        let capture = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(|| CaptureWriter).with_filter(
            tracing_subscriber::filter::filter_fn(|meta| {
                // The tests' own HTTP client (reqwest and its cookie store) is not the server.
                CAPTURING.load(std::sync::atomic::Ordering::Relaxed) > 0
                    && !meta.target().starts_with("cookie_store")
                    && !meta.target().starts_with("reqwest")
            }),
        );
        let _ = tracing_subscriber::registry().with(test_log).with(capture).try_init();
    });
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a system program the tests run (installed by tests/e2e/setup.sh, whose
/// `system_programs` table must name it: tests/it/tooling.rs checks that). Panics when missing.
pub fn system_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run `bash tests/e2e/setup.sh` (as root)"))
}

pub fn appliance_bin() -> &'static str {
    env!("CARGO_BIN_EXE_appliance")
}

/// `appliance --config CONFIG ARGS…`, stdin closed, output captured.
pub fn run_cli(config: &Path, args: &[&str]) -> Output {
    Command::new(appliance_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("APPLIANCE_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", appliance_bin()))
}

/// `appliance --config A --config B … ARGS…`: several config files, merged in order.
pub fn run_cli_multi(configs: &[&Path], args: &[&str]) -> Output {
    let mut cmd = Command::new(appliance_bin());
    for config in configs {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args)
        .env_remove("APPLIANCE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", appliance_bin()))
}

/// Panics with the command's output unless it exited 0; returns its stdout.
pub fn expect_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{what}` failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `appliance serve` as a child process; killed (SIGKILL) on drop unless it has exited.
pub struct ServeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stderr line read so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `appliance serve --config CONFIG` and waits for its "listening on" log line.
    pub fn start(config: &Path, timeout: Duration) -> Result<ServeProcess, String> {
        Self::start_with_env(config, &[], timeout)
    }

    /// `start` with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)], timeout: Duration) -> Result<ServeProcess, String> {
        let mut child = Command::new(appliance_bin())
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("APPLIANCE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", appliance_bin()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let all2 = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut v) = all2.lock() {
                    v.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        let mut process = ServeProcess { child, lines: rx, stderr: all };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match process.lines.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => return Ok(process),
                Ok(_) => {}
                Err(_) => {
                    let status = process.child.try_wait().ok().flatten();
                    return Err(format!(
                        "no \"listening on\" line within {timeout:?} (exit status {status:?}):\n{}",
                        process.stderr_text()
                    ));
                }
            }
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the reader thread has seen the end of stderr (the process closed it, e.g. by
    /// exiting), so `stderr_text` holds every line; panics after `timeout`.
    pub fn wait_for_stderr_end(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stderr still open after {timeout:?}"),
            }
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill -TERM`) and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        self.wait_for_exit(timeout)
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `INT`, `KILL`) without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes the default test config (with `patch` merged, database `DIR/appliance.db`) to
/// `DIR/config.yaml` for CLI tests that need no running server; returns the config path.
/// `public_base` is `http://127.0.0.1:9/`: nothing listens there.
pub fn write_test_config(dir: &Path, patch: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    let yaml = merged_yaml(&test_config_yaml("http://127.0.0.1:9/", &dir.join("appliance.db")), patch);
    std::fs::write(&path, yaml).expect("write config");
    path
}
