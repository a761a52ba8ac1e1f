//! Real Synapse (and nginx) for the end-to-end tests.
//!
//! `ensure_installed()` runs `tests/e2e/setup.sh` once per test process (Python venvs with
//! matrix-synapse 1.163.2 and 1.156.0, matrix-nio, requests; Debian's nginx). `Synapse::start`
//! runs a private homeserver on a free loopback port with a fresh SQLite database, and
//! `Nginx::start` puts the MAS-style reverse proxy in front of it and the appliance.
//!
//! Every child process is started with a pipe on its stdin that only this process holds: when
//! the test binary dies without running `Drop` (SIGKILL, abort), the pipe closes and a watchdog
//! in the child ends it, so no Synapse or nginx outlives the tests.
//!
//! Facts this relies on (checked on 1.156.0 and 1.163.2):
//! - neither version fetches the auth service's discovery document at startup (both load it
//!   lazily: 1.163.2 from `endpoint`, 1.156.0 from `issuer`); Synapse starts even when nothing
//!   listens there.
//! - 1.156.0 checks `admin_token` locally (no request to the issuer); the first other token makes
//!   it fetch `<issuer>.well-known/openid-configuration`, and introspection then uses its
//!   `introspection_endpoint`. `PUT /_synapse/admin/v2/users/<new user>` answers 201.
//! - a fresh database queues about 50 background updates; with `sleep_enabled: false` they finish
//!   within seconds, and until they have, some `/_synapse/mas/*` calls answer 500. `start` waits.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const START_TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `${APPLIANCE_E2E_DIR:-<repo>/target/e2e}`, where setup.sh installs the venvs.
pub fn e2e_dir() -> PathBuf {
    match std::env::var_os("APPLIANCE_E2E_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("target").join("e2e"),
    }
}

/// Runs `tests/e2e/setup.sh` once per test process; panics with its output when it fails.
pub fn ensure_installed() -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = repo_root().join("tests/e2e/setup.sh");
        let dir = e2e_dir();
        let out = Command::new("bash")
            .arg(&script)
            .env("APPLIANCE_E2E_DIR", &dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `bash {}`: {e}", script.display()));
        if !out.status.success() {
            panic!(
                "`bash {}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
    .clone()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynapseMode {
    /// matrix-synapse 1.163.2 with `matrix_authentication_service:`.
    Modern,
    /// matrix-synapse 1.156.0 with `experimental_features.msc3861`.
    Legacy,
}

impl SynapseMode {
    pub fn version(self) -> &'static str {
        match self {
            SynapseMode::Modern => "1.163.2",
            SynapseMode::Legacy => "1.156.0",
        }
    }
}

/// The Python of the venv for `mode` (has synapse, matrix-nio and requests). Installs if needed.
pub fn venv_python(mode: SynapseMode) -> PathBuf {
    ensure_installed().join(format!("synapse-{}", mode.version())).join("bin/python")
}

/// A `Command` running the venv's python for `mode`, with `GIT_CEILING_DIRECTORIES` set so that
/// Synapse, installed under the repo's `target/`, does not report "1.163.2 (b=main,<commit>)" as
/// its version (server_version, User-Agent) after running `git describe` on this checkout.
pub fn python_command(mode: SynapseMode) -> Command {
    let mut cmd = Command::new(venv_python(mode));
    cmd.env("GIT_CEILING_DIRECTORIES", ensure_installed()).stdin(Stdio::null());
    cmd
}

#[derive(Clone, Debug)]
pub struct SynapseConfig {
    pub mode: SynapseMode,
    /// e.g. "localhost": users are `@lp:<server_name>`.
    pub server_name: String,
    /// Internal base URL of the appliance, e.g. `http://127.0.0.1:PORT/` (Modern: `endpoint`).
    pub appliance_endpoint: String,
    /// The appliance's issuer (Legacy: `msc3861.issuer`, `account_management_url` = issuer + "account/").
    pub issuer: String,
    /// `matrix.secret`: Modern `matrix_authentication_service.secret`, Legacy `admin_token`.
    pub secret: String,
    /// Legacy only: the client secret of `0000000000000000000SYNAPSE`.
    pub legacy_client_secret: String,
}

pub const LEGACY_CLIENT_ID: &str = "0000000000000000000SYNAPSE";

/// A Synapse process with its own temp dir (config, signing key, SQLite db, log).
pub struct Synapse {
    pub port: u16,
    /// `http://127.0.0.1:PORT/`, which is also its `public_baseurl`.
    pub base_url: String,
    pub config: SynapseConfig,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Ends the process when fd 0 (a pipe that only the test process holds) reaches EOF.
const SYNAPSE_LAUNCHER: &str = r#"
import os, runpy, sys, threading
def _watchdog():
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(70)
threading.Thread(target=_watchdog, daemon=True).start()
sys.argv = ["synapse.app.homeserver", "--config-path", sys.argv[1]]
runpy.run_module("synapse.app.homeserver", run_name="__main__", alter_sys=True)
"#;

/// Relaxes every rate limit (both versions) so that tests never see 429. A dotted key is a
/// field of a section (`rc_login: {address: …}`).
fn relax_rate_limits(hs: &mut serde_json::Map<String, Value>) {
    let keys = "rc_message rc_registration rc_registration_token_validity rc_admin_redaction \
        rc_joins_per_room rc_3pid_validation rc_third_party_invite rc_media_create \
        rc_delayed_event_mgmt rc_reports rc_room_creation rc_key_requests rc_user_directory \
        rc_profile rc_login.address rc_login.account rc_login.failed_attempts rc_joins.local \
        rc_joins.remote rc_invites.per_room rc_invites.per_user rc_invites.per_issuer \
        rc_presence.per_user";
    for key in keys.split_whitespace() {
        let relaxed = json!({"per_second": 1000, "burst_count": 1000});
        match key.split_once('.') {
            Some((section, field)) => hs.entry(section).or_insert_with(|| json!({}))[field] = relaxed,
            None => drop(hs.insert(key.to_string(), relaxed)),
        }
    }
}

/// A signing key as `python -m synapse._scripts.generate_signing_key` writes it (`ed25519
/// a_<id> <unpadded base64 seed>`), without its second of Python imports.
fn signing_key() -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bits: Vec<u8> = random_bytes::<32>().iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let seed: String =
        bits.chunks(6).map(|c| B64[c.iter().fold(0, |v, b| v * 2 + *b as usize) << (6 - c.len())] as char).collect();
    let id: String = random_bytes::<4>().iter().map(|b| (b'a' + b % 26) as char).collect();
    format!("ed25519 a_{id} {seed}\n")
}

impl Synapse {
    /// Starts a fresh Synapse and waits until `/health` is 200 and its background updates are done.
    pub fn start(cfg: SynapseConfig) -> Synapse {
        Synapse::start_on(cfg, free_port())
    }

    /// Like `start`, on a port chosen beforehand (e.g. with `free_port()`, so that the
    /// appliance's `matrix.endpoint` can name it before Synapse runs).
    pub fn start_on(cfg: SynapseConfig, port: u16) -> Synapse {
        Synapse::start_with(cfg, port, |_| {})
    }

    /// Like `start_on`, with `extra` homeserver.yaml keys set over the harness's own (e.g.
    /// `public_baseurl` naming the nginx in front).
    pub fn start_on_with(cfg: SynapseConfig, port: u16, extra: Value) -> Synapse {
        Synapse::start_with(cfg, port, move |obj| {
            if let Value::Object(extra) = extra {
                obj.extend(extra);
            }
        })
    }

    /// Like `start_on`, with `edit` applied to homeserver.yaml (as a JSON object) before the
    /// first start, e.g. to run Synapse with its own password login.
    pub fn start_with(
        cfg: SynapseConfig,
        port: u16,
        edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> Synapse {
        let dir = tempfile::Builder::new()
            .prefix(&format!("synapse-{}-", cfg.mode.version()))
            .tempdir()
            .expect("cannot create a temp dir for Synapse");
        let d = dir.path();
        let base_url = format!("http://127.0.0.1:{port}/");

        let log_config = json!({
            "version": 1,
            "formatters": {"precise": {"format":
                "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                  "filename": d.join("synapse.log"), "encoding": "utf8"}},
            "loggers": {"synapse.storage.SQL": {"level": "INFO"}},
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": false,
        });
        write_json(&d.join("log.config"), &log_config);

        let mut hs = json!({
            "server_name": cfg.server_name,
            "pid_file": d.join("homeserver.pid"),
            "public_baseurl": base_url,
            "serve_client_wellknown": true,
            "listeners": [{
                "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": false,
                "x_forwarded": true, "resources": [{"names": ["client"], "compress": false}],
            }],
            "database": {"name": "sqlite3", "args": {"database": d.join("homeserver.db")}},
            "log_config": d.join("log.config"),
            "media_store_path": d.join("media_store"),
            "signing_key_path": d.join("signing.key"),
            "macaroon_secret_key": random_hex(),
            "form_secret": random_hex(),
            "report_stats": false,
            "enable_registration": false,
            "trusted_key_servers": [],
            "suppress_key_server_warning": true,
            "background_updates": {"sleep_enabled": false},
        });
        let obj = hs.as_object_mut().expect("object");
        relax_rate_limits(obj);
        match cfg.mode {
            SynapseMode::Modern => {
                obj.insert(
                    "matrix_authentication_service".into(),
                    json!({
                        "enabled": true, "endpoint": cfg.appliance_endpoint, "secret": cfg.secret,
                    }),
                );
            }
            SynapseMode::Legacy => {
                obj.insert("password_config".into(), json!({"enabled": false}));
                obj.insert(
                    "experimental_features".into(),
                    json!({"msc3861": {
                        "enabled": true,
                        "issuer": cfg.issuer,
                        "client_id": LEGACY_CLIENT_ID,
                        "client_auth_method": "client_secret_basic",
                        "client_secret": cfg.legacy_client_secret,
                        "admin_token": cfg.secret,
                        "account_management_url": format!("{}/account/", cfg.issuer.trim_end_matches('/')),
                    }}),
                );
            }
        }
        edit(obj);
        // JSON is YAML: no quoting pitfalls with secrets or paths.
        write_json(&d.join("homeserver.yaml"), &hs);

        fs::write(d.join("signing.key"), signing_key()).expect("cannot write signing.key");

        let mut synapse = Synapse { port, base_url, config: cfg, dir, child: None };
        synapse.spawn();
        synapse
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("synapse.log")
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("homeserver.db")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("homeserver.yaml")
    }
    /// `@localpart:server_name`
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.config.server_name)
    }
    /// `base_url` joined with a path such as `/_matrix/client/versions`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path.trim_start_matches('/'))
    }

    /// The last `n` lines of Synapse's log (its stdout, stderr and Python logging).
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path(), n)
    }

    /// Runs one SQL statement on Synapse's database — SQLite, or PostgreSQL when homeserver.yaml
    /// says psycopg2 — through the venv's python; one row per line, columns separated by `|`.
    /// Returns Err with python's stderr on failure.
    pub fn query_db(&self, sql: &str) -> Result<String, String> {
        let out = python_command(self.config.mode)
            .args([
                "-c",
                "import json, sys\n\
                db = json.load(open(sys.argv[1])).get('database') or {}\n\
                if db.get('name') == 'psycopg2':\n\
                \x20   import psycopg2\n\
                \x20   c = psycopg2.connect(**{k: v for k, v in db['args'].items() if not k.startswith('cp_')})\n\
                \x20   cur = c.cursor(); cur.execute(sys.argv[2]); rows = cur.fetchall()\n\
                else:\n\
                \x20   import sqlite3\n\
                \x20   c = sqlite3.connect('file:' + sys.argv[3] + '?mode=ro', uri=True, timeout=10)\n\
                \x20   rows = c.execute(sys.argv[2])\n\
                for row in rows: print('|'.join('' if v is None else str(v) for v in row))",
            ])
            .arg(self.config_path())
            .arg(sql)
            .arg(self.db_path())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Rewrites homeserver.yaml (takes effect at the next `start_again`).
    pub fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let text = fs::read_to_string(self.config_path()).expect("cannot read homeserver.yaml");
        let mut hs: Value = serde_json::from_str(&text).expect("homeserver.yaml is JSON");
        edit(hs.as_object_mut().expect("object"));
        write_json(&self.config_path(), &hs);
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills Synapse (SIGKILL, like a crash or an outage). The port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        append_log(&self.log_path(), "---- harness: Synapse stopped ----");
    }

    /// Starts Synapse again on the same port, config and database (after `stop`).
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        append_log(&self.log_path(), "---- harness: Synapse started again ----");
        self.spawn();
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the Synapse log file");
        let err_log = log.try_clone().expect("cannot clone the log file handle");
        let started = Instant::now();
        let child = python_command(self.config.mode)
            .arg("-c")
            .arg(SYNAPSE_LAUNCHER)
            .arg(self.config_path())
            .current_dir(d)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Synapse {}: {e}", self.config.mode.version()));
        self.child = Some(child);

        let deadline = started + START_TIMEOUT;
        self.wait_until(deadline, "GET /health to answer 200", |s| http_status(s.port, "/health") == Some(200));
        let healthy = started.elapsed();
        // A fresh db queues ~50 background updates; some /_synapse/mas calls fail until they ran.
        self.wait_until(
            deadline,
            "the background_updates table to be empty",
            |s| matches!(s.query_db("SELECT COUNT(*) FROM background_updates"), Ok(n) if n.trim() == "0"),
        );
        eprintln!(
            "[synapse_harness] Synapse {} ready on {} in {:.1} s (/health 200 after {:.1} s)",
            self.config.mode.version(),
            self.base_url,
            started.elapsed().as_secs_f64(),
            healthy.as_secs_f64()
        );
    }

    fn wait_until(&mut self, deadline: Instant, what: &str, mut ready: impl FnMut(&Synapse) -> bool) {
        loop {
            if ready(self) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "Synapse {} exited ({status}) while waiting for {what}; last log lines:\n{}",
                    self.config.mode.version(),
                    self.log_tail(50)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "Synapse {} on port {}: timed out after {:?} waiting for {what}; last log lines:\n{}",
                    self.config.mode.version(),
                    self.port,
                    START_TIMEOUT,
                    self.log_tail(50)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private nginx in front of Synapse and the appliance, routed like MAS's documented recipe.
pub struct Nginx {
    pub port: u16,
    /// `http://127.0.0.1:PORT/`
    pub base_url: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// nginx (`$2`) runs as one process (`master_process off`) under a shell that kills it when its stdin
/// (a pipe held by the test process) closes, or ends when nginx ends.
const NGINX_WRAPPER: &str = r#"
exec 3<&0
"$2" -p "$1" -c "$1/nginx.conf" -e "$1/error.log" -g 'daemon off; master_process off;' </dev/null 3<&- &
pid=$!
{ while read -r _ <&3; do :; done; kill -9 "$pid" 2>/dev/null; } &
wait "$pid"
"#;

/// The nginx `location` blocks that `appliance config synapse --part nginx-homeserver` prints
/// for a homeserver whose clients come through `http://127.0.0.1:<nginx_port>/`, Synapse on
/// `synapse_port` and the appliance on `appliance_port`. With `shared`, the appliance's
/// `public_base` is the nginx URL too (the service on the homeserver's host).
pub fn generated_nginx_locations(nginx_port: u16, synapse_port: u16, appliance_port: u16, shared: bool) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let public = if shared { nginx_port } else { appliance_port };
    let config = dir.path().join("config.yaml");
    let yaml = format!(
        "http:\n  public_base: \"http://127.0.0.1:{public}/\"\n  listeners:\n    - name: web\n      \
         resources: [{{name: discovery}}, {{name: human}}, {{name: oauth}}, {{name: compat}}, {{name: assets}}]\n      \
         binds: [{{address: \"127.0.0.1:{appliance_port}\"}}]\n\
         matrix:\n  homeserver: localhost\n  secret: \"{secret}\"\n  endpoint: \"http://127.0.0.1:{synapse_port}/\"\n",
        secret = random_hex(),
    );
    fs::write(&config, yaml).expect("write the config for `config synapse`");
    let homeserver_url = format!("http://127.0.0.1:{nginx_port}/");
    let out = crate::helpers::run_cli(
        &config,
        &["config", "synapse", "--part", "nginx-homeserver", "--homeserver-url", &homeserver_url],
    );
    crate::helpers::expect_success("appliance config synapse --part nginx-homeserver", &out)
}

impl Nginx {
    /// Starts nginx on a free loopback port, routed by the locations `appliance config synapse`
    /// generates: `^/_matrix/client/(.*)/(login|logout|refresh)` goes to the appliance; the rest
    /// of `/_matrix`, `/_synapse/client` and `/.well-known/matrix/client` go to Synapse.
    pub fn start(synapse_port: u16, appliance_port: u16) -> Nginx {
        Nginx::start_on(free_port(), synapse_port, appliance_port)
    }

    /// Like `start`, on a port chosen beforehand (e.g. Synapse's `public_baseurl` names it).
    pub fn start_on(port: u16, synapse_port: u16, appliance_port: u16) -> Nginx {
        Nginx::start_with_locations(port, &generated_nginx_locations(port, synapse_port, appliance_port, false))
    }

    /// Starts nginx on `port` with `locations` (nginx `location` blocks) in its one server block.
    pub fn start_with_locations(port: u16, locations: &str) -> Nginx {
        ensure_installed();
        let dir = tempfile::Builder::new().prefix("nginx-").tempdir().expect("cannot create a temp dir for nginx");
        let d = dir.path();
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            fs::create_dir_all(d.join(sub)).expect("cannot create nginx temp dirs");
        }
        let is_root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let p = d.display();
        let locations = locations.replace('\n', "\n        ");
        let conf = format!(
            r#"{user}
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    client_max_body_size 50m;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        proxy_http_version 1.1;
        proxy_read_timeout 300s;
        # Generated by `appliance config synapse --part nginx-homeserver`:
        {locations}
    }}
}}
"#,
            user = if is_root { "user root;" } else { "" },
        );
        fs::write(d.join("nginx.conf"), conf).expect("cannot write nginx.conf");

        let mut child = Command::new("sh")
            .args(["-c", NGINX_WRAPPER, "sh"])
            .arg(d)
            .arg(crate::helpers::system_program("nginx"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(File::create(d.join("stderr.log")).expect("cannot create nginx stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "nginx did not come up on port {port} ({}):\n--- error.log\n{}\n--- stderr\n{}",
                    exited.map_or("timed out".to_string(), |s| format!("exited: {s}")),
                    tail(&d.join("error.log"), 30),
                    tail(&d.join("stderr.log"), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { port, base_url: format!("http://127.0.0.1:{port}/"), dir, child: Some(child) }
    }

    /// `base_url` joined with a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path.trim_start_matches('/'))
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The last `n` lines of error.log and access.log.
    pub fn log_tail(&self, n: usize) -> String {
        format!(
            "--- error.log\n{}\n--- access.log\n{}",
            tail(&self.dir.path().join("error.log"), n),
            tail(&self.dir.path().join("access.log"), n)
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing stdin makes the wrapper kill nginx; then reap the wrapper.
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("cannot bind 127.0.0.1:0")
}

/// Minimal blocking `GET` on 127.0.0.1:port; the status code, or None when it fails.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn append_log(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("cannot read /dev/urandom");
    bytes
}

fn random_hex() -> String {
    random_bytes::<24>().iter().map(|b| format!("{b:02x}")).collect()
}
