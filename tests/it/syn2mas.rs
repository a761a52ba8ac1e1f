//! `syn2mas` end to end against real Synapse 1.163.2 (issue 13), on SQLite and on PostgreSQL:
//! Synapse runs with its own password login (a pepper); users are registered through its
//! shared-secret and admin APIs (emails, a phone number, an external id, a locked and a
//! deactivated user) and log devices in with matrix-nio, some with refresh tokens. Then Synapse
//! stops, `appliance syn2mas migrate` imports it, Synapse restarts delegating to the appliance, and
//! the same clients carry on with their old tokens; old refresh tokens rotate to `mcr_`/`mct_`;
//! old passwords log in through the compat API and are re-hashed with argon2id.

use std::path::Path;
use std::process::Output;

use serde_json::{Map, Value, json};

use crate::flows;
use crate::helpers::{self, MATRIX_SECRET};
use crate::synapse_harness::{self as harness, Nginx, Synapse, SynapseConfig, SynapseMode};

const PEPPER: &str = "pepper-of-the-e2e-synapse";
const SHARED_SECRET: &str = "syn2mas-e2e-registration-secret";
const SERVER_NAME: &str = "localhost";
/// The upstream provider that takes over Synapse's `oidc-github` logins (`synapse_idp_id`).
const GITHUB: &str = "01J5SYNAPSEGTHB00000000001";

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Synapse with its own password login, as a homeserver is before the switch.
fn native_auth(hs: &mut Map<String, Value>) {
    hs.remove("matrix_authentication_service");
    hs.insert("password_config".into(), json!({"enabled": true, "pepper": PEPPER}));
    hs.insert("registration_shared_secret".into(), json!(SHARED_SECRET));
    hs.insert("refreshable_access_token_lifetime".into(), json!("1h"));
}

/// The same Synapse delegating to the appliance at `endpoint` (what `config synapse` prints).
fn delegated_auth(hs: &mut Map<String, Value>, endpoint: &str) {
    for key in ["password_config", "registration_shared_secret", "refreshable_access_token_lifetime"] {
        hs.remove(key);
    }
    hs.insert("password_config".into(), json!({"enabled": false}));
    hs.insert(
        "matrix_authentication_service".into(),
        json!({"enabled": true, "endpoint": endpoint, "secret": MATRIX_SECRET}),
    );
}

fn appliance_patch(synapse_url: &str, pepper: &str) -> String {
    format!(
        "{clients}\nmatrix:\n  kind: synapse\n  homeserver: \"{SERVER_NAME}\"\n  secret: \"{MATRIX_SECRET}\"\n  endpoint: \"{synapse_url}\"\n\
         passwords:\n  schemes:\n    - version: 1\n      algorithm: bcrypt\n      secret: \"{pepper}\"\n      unicode_normalization: true\n\
         \x20   - version: 2\n      algorithm: argon2id\n      memory_kib: 64\n      iterations: 1\n\
         upstream_oauth2:\n  providers:\n    - id: {GITHUB}\n      synapse_idp_id: oidc-github\n\
         \x20     issuer: \"https://github.example/\"\n      client_id: matrix\n      token_endpoint_auth_method: none\n\
         \x20     scope: openid\n",
        clients = flows::clients_patch()
    )
}

fn run_clients(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/syn2mas_clients.py");
    let out = harness::python_command(SynapseMode::Modern).arg(script).args(args).output().expect("run matrix-nio");
    assert!(out.status.success(), "syn2mas_clients.py {} failed:\n{}", args[0], text(&out));
    serde_json::from_slice(&out.stdout).expect("JSON from syn2mas_clients.py")
}

/// Where Synapse keeps its data in this run.
pub(crate) enum Backend {
    Sqlite,
    /// A database on the test's PostgreSQL (`database.args` for homeserver.yaml).
    Postgres(Value),
}

pub(crate) async fn import_and_carry_on(backend: Backend) {
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("[syn2mas +{:>5.1} s] {what}", started.elapsed().as_secs_f64());
    blocking(harness::ensure_installed);

    step("Synapse with its own password login");
    let cfg = SynapseConfig {
        mode: SynapseMode::Modern,
        server_name: SERVER_NAME.into(),
        appliance_endpoint: "http://127.0.0.1:9/".into(),
        issuer: "http://127.0.0.1:9/".into(),
        secret: MATRIX_SECRET.into(),
        legacy_client_secret: String::new(),
    };
    let database = match &backend {
        Backend::Sqlite => None,
        Backend::Postgres(args) => Some(json!({"name": "psycopg2", "args": args})),
    };
    let mut synapse = blocking(|| {
        Synapse::start_with(cfg, harness::free_port(), |hs| {
            native_auth(hs);
            if let Some(db) = database {
                hs.insert("database".into(), db);
            }
        })
    });
    let synapse_url = synapse.base_url.trim_end_matches('/').to_string();

    step("users, emails, a phone number, an external id; devices logged in with matrix-nio");
    let state = blocking(|| run_clients(&["before", &synapse_url, SHARED_SECRET, SERVER_NAME]));

    let dir = helpers::tempdir();
    let config = helpers::write_test_config(dir.path(), &appliance_patch(&synapse.base_url, PEPPER));
    let hs_yaml = synapse.config_path();
    let hs_yaml = hs_yaml.to_str().unwrap();
    let cli = |args: &[&str]| blocking(|| helpers::run_cli(&config, args));

    step("check while Synapse runs: warnings only (exit 11)");
    let out = cli(&["syn2mas", "--synapse-config", hs_yaml, "check"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(11), "{report}");
    assert!(report.contains("medium `msisdn`"), "{report}");
    assert!(!report.contains("`oidc-github`"), "an upstream provider maps it: {report}");

    step("migrate refuses while Synapse runs");
    let out = cli(&["syn2mas", "--synapse-config", hs_yaml, "migrate"]);
    assert!(!out.status.success() && text(&out).contains("stop Synapse"), "{}", text(&out));

    step("a dry run imports, counts and rolls back");
    let out = cli(&["syn2mas", "--synapse-config", hs_yaml, "migrate", "--dry-run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("rolled back; it would import: 5 users"), "{report}");
    let dry = rusqlite::Connection::open(dir.path().join("appliance.db")).unwrap();
    let users: i64 = dry.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(users, 0, "the dry run left rows behind");
    drop(dry);

    step("stop Synapse; migrate");
    blocking(|| synapse.stop());
    let out = cli(&["syn2mas", "--synapse-config", hs_yaml, "migrate"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("imported in") && report.contains("5 users (1 admins, 1 locked, 1 deactivated, 0 guests"),
        "{report}"
    );
    assert!(report.contains("4 password hashes"), "erin's went with her deactivation: {report}");
    assert!(report.contains("8 devices as compat sessions, 8 access tokens, 2 refresh tokens"), "{report}");
    assert!(
        report.contains("2 email addresses, 1 other third-party ids, 1 external ids as upstream links"),
        "{report}"
    );
    assert!(report.contains("matrix_authentication_service:"), "the homeserver.yaml to use: {report}");
    assert!(report.contains("appliance doctor"), "{report}");
    let out = cli(&["syn2mas", "--synapse-config", hs_yaml, "migrate"]);
    assert!(!out.status.success() && text(&out).contains("is not empty"), "a second run: {}", text(&out));
    let imported = rusqlite::Connection::open(dir.path().join("appliance.db")).unwrap();
    let link: (String, String, String) = imported
        .query_row(
            "SELECT u.username, l.upstream_oauth_provider_id, l.subject FROM upstream_oauth_links l JOIN users u USING (user_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(link, ("carol".into(), GITHUB.into(), "carol-gh-1".into()), "carol's GitHub login became a link");
    drop(imported);

    step("the appliance starts on the imported database; Synapse delegates to it");
    let app = helpers::spawn_app_in(dir, &appliance_patch(&synapse.base_url, PEPPER)).await;
    let endpoint = format!("{}/", app.base);
    synapse.edit_config(|hs| delegated_auth(hs, &endpoint));
    blocking(|| synapse.start_again());
    let nginx = blocking(|| Nginx::start(synapse.port, app.addr.port()));
    let through_nginx = nginx.base_url.trim_end_matches('/').to_string();

    step("the same clients, with their old tokens, whoami and /sync; old refresh tokens rotate");
    let state_file = app.dir.path().join("clients.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    let results = blocking(|| run_clients(&["after", &through_nginx, state_file.to_str().unwrap()]));
    let results = results.as_array().expect("list");
    assert_eq!(results.len(), 4, "{results:?}");
    for r in results {
        assert_eq!(r["whoami_device"], r["device_id"], "{r}");
        assert_eq!(r["synced"], true, "{r}");
    }
    let refreshed: Vec<&Value> = results.iter().filter(|r| r.get("refreshed_access_prefix").is_some()).collect();
    assert_eq!(refreshed.len(), 2, "{results:?}");
    for r in refreshed {
        assert_eq!(r["refreshed_access_prefix"], "mct_", "{r}");
        assert_eq!(r["refreshed_refresh_prefix"], "mcr_", "{r}");
        assert_eq!(r["refreshed_whoami_device"], r["device_id"], "{r}");
    }
    // Synapse caches introspection results, so ask the appliance itself about the tokens.
    let introspect = |token: String| {
        let http = reqwest::Client::new();
        let url = app.url("/oauth2/introspect");
        async move {
            let res = http
                .post(url)
                .bearer_auth(MATRIX_SECRET)
                .header("X-MAS-Supports-Device-Id", "1")
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap();
            res.json::<Value>().await.unwrap()
        }
    };
    let devices = state["devices"].as_array().unwrap();
    for d in devices.iter().filter(|d| d.get("refresh_token").is_some()) {
        let old = introspect(d["access_token"].as_str().unwrap().to_string()).await;
        assert_eq!(old["active"], false, "the old access token ended with the refresh: {old}");
    }
    let alice = devices.iter().find(|d| d["user"] == "alice").unwrap();
    let seen = introspect(alice["access_token"].as_str().unwrap().to_string()).await;
    eprintln!("[syn2mas] alice's Synapse token, introspected: {seen}");
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], "legacy", "{seen}");
    assert_eq!(seen["username"], "alice", "{seen}");
    assert_eq!(seen["device_id"], alice["device_id"], "{seen}");
    assert!(seen["scope"].as_str().unwrap().contains("urn:synapse:admin:*"), "alice was a Synapse admin: {seen}");
    let spent = results.iter().find(|r| r.get("spent_refresh_status").is_some()).expect("a spent refresh token");
    assert_eq!(spent["spent_refresh_status"], 401, "a refresh token Synapse had replaced stays spent: {spent}");

    step("old passwords log in through the compat API; the hash becomes argon2id");
    let http = reqwest::Client::new();
    let login = |user: &str, password: &str| {
        let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
        http.post(format!("{through_nginx}/_matrix/client/v3/login")).json(&body).send()
    };
    let hash_of = |user: &str| -> (String, i64) {
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        conn.query_row(
            "SELECT p.hashed_password, p.version FROM user_passwords p JOIN users u USING (user_id) WHERE u.username = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (before, version) = hash_of("bob");
    assert!(before.starts_with("$2b$12$") && version == 1, "bob's imported hash: {before} v{version}");
    let wrong = login("bob", "not bob's password").await.unwrap();
    assert_eq!(wrong.status(), 403);
    // NFKC: the ligature and the numeral of bob's password normalise to what he types here.
    let res = login("bob", "fish IX battery staple").await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let (after, version) = hash_of("bob");
    assert!(after.starts_with("$argon2id$") && version == 2, "bob's hash after his first login: {after} v{version}");
    let res = login("bob", "fish IX battery staple").await.unwrap();
    assert_eq!(res.status(), 200, "the upgraded hash verifies too");
    // bcrypt reads 72 bytes: carol's 80-byte password works, and so does any tail after byte 72.
    let carol = format!("{}-carol-end", "c".repeat(70));
    let res = login("carol", &carol).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let res = login("alice", "alice correct horse battery").await.unwrap();
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].as_str().is_some_and(|t| t.starts_with("mct_")), "{body}");
    let res = login("dave", "dave correct horse battery").await.unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_USER_LOCKED", "dave was locked in Synapse: {body}");
    let res = login("erin", "erin correct horse battery").await.unwrap();
    assert_ne!(res.status(), 200, "erin was deactivated in Synapse");

    step("check names a misconfigured Synapse: guests on, wrong server name, wrong pepper");
    let bad = app.dir.path().join("bad-homeserver.yaml");
    let mut hs: Value = serde_json::from_str(&std::fs::read_to_string(synapse.config_path()).unwrap()).unwrap();
    hs["allow_guest_access"] = json!(true);
    hs["server_name"] = json!("wrong.example");
    hs["password_config"] = json!({"enabled": true, "pepper": "not the pepper"});
    std::fs::write(&bad, hs.to_string()).unwrap();
    let out = cli_at(&app.config_path, &["syn2mas", "--synapse-config", bad.to_str().unwrap(), "check"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(10), "{report}");
    for needle in
        ["allow_guest_access", "server_name is `wrong.example`", "differs from Synapse's password_config.pepper"]
    {
        assert!(report.contains(needle), "`{needle}` missing:\n{report}");
    }
    step("done");
    drop(nginx);
    drop(synapse);
}

fn cli_at(config: &Path, args: &[&str]) -> Output {
    blocking(|| helpers::run_cli(config, args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_on_sqlite_users_devices_and_tokens_carry_over() {
    import_and_carry_on(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_on_postgres_users_devices_and_tokens_carry_over() {
    blocking(harness::ensure_installed);
    let pg = blocking(Postgres::start);
    import_and_carry_on(Backend::Postgres(pg.synapse_args())).await;
    drop(pg);
}

/// A throwaway PostgreSQL cluster from Debian's binaries: `initdb` in a temp dir as the
/// `postgres` user (when the tests run as root), listening only on a Unix socket in that dir.
/// Like Synapse and nginx in the harness, it ends when the test process's pipe to it closes.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

/// Runs "$@" in the background and ends it (fast shutdown) when stdin reaches EOF.
const PG_WRAPPER: &str = r#"
exec 3<&0
"$@" </dev/null 3<&- &
pid=$!
{ while read -r _ <&3; do :; done; kill -INT "$pid" 2>/dev/null; } &
wait "$pid"
"#;

impl Postgres {
    fn bin(name: &str) -> std::path::PathBuf {
        let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql is not installed (tests/e2e/postgres.sh)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop().expect("no /usr/lib/postgresql/*/bin/initdb").join(name)
    }

    /// `cmd` as the `postgres` user when running as root (initdb refuses root).
    fn as_owner(mut cmd: std::process::Command) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = owner() {
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(std::process::Stdio::null());
        cmd
    }

    fn start() -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("pg-").tempdir().expect("temp dir for PostgreSQL");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let mut initdb = Self::as_owner(std::process::Command::new(Self::bin("initdb")));
        initdb.args(["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "--locale=C", "-E", "UTF8", "-N"]);
        let out = initdb.output().expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", text(&out));

        let port = harness::free_port();
        let mut postgres = Self::as_owner(std::process::Command::new("sh"));
        postgres
            .args(["-c", PG_WRAPPER, "sh"])
            .arg(Self::bin("postgres"))
            .args(["-D", data.to_str().unwrap(), "-k", dir.path().to_str().unwrap(), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log")).unwrap());
        let child = postgres.spawn().expect("start postgres");
        let pg = Postgres { dir, port, child: Some(child) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !pg.psql("postgres", "SELECT 1").status.success() {
            assert!(std::time::Instant::now() < deadline, "PostgreSQL did not start: {}", pg.log());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let out = pg
            .psql("postgres", "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
        assert!(out.status.success(), "createdb failed: {}", text(&out));
        pg
    }

    fn psql(&self, db: &str, sql: &str) -> Output {
        let mut cmd = Self::as_owner(std::process::Command::new(Self::bin("psql")));
        cmd.args(["-h", self.dir.path().to_str().unwrap(), "-p", &self.port.to_string(), "-U", "postgres"]).args([
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ]);
        cmd.output().expect("run psql")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// homeserver.yaml's `database.args` (psycopg2 keywords) for the `synapse` database.
    fn synapse_args(&self) -> Value {
        json!({"user": "postgres", "host": self.dir.path(), "port": self.port, "database": "synapse",
               "cp_min": 1, "cp_max": 5})
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// The `postgres` user's (uid, gid) when this process is root.
fn owner() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}
