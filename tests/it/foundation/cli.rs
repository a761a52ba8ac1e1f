//! The binary as a subprocess: `config …`, `database backup`, `manage …`, `--help`, `serve`.

use std::path::Path;
use std::time::{Duration, Instant};

use appliance::crypto::encrypter::Encrypter;
use appliance::model::Client;
use appliance::store::{self, Store};
use serde_json::Value;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Clients

fn clients_in(db: &Path) -> Vec<Client> {
    let store = Store::open(db, 1).expect("open store");
    store.read_blocking(|c| store::clients::list(c, false)).expect("list clients")
}

type ClientRow = (String, appliance::model::client::ClientMetadata, Option<String>, bool, i64);

fn snapshot(db: &Path) -> Vec<ClientRow> {
    clients_in(db).into_iter().map(|c| (c.id, c.metadata, c.encrypted_secret, c.is_static, c.created_at)).collect()
}

fn secret_of(db: &Path, id: &str) -> Option<String> {
    let key: [u8; 32] = hex::decode(ENCRYPTION_KEY_HEX).expect("hex").try_into().expect("32 bytes");
    let client = clients_in(db).into_iter().find(|c| c.id == id)?;
    let enc = client.encrypted_secret?;
    Some(Encrypter::new(&key).decrypt_string(&enc).expect("decrypt client secret"))
}

const CLIENT_A: &str = "01J0000000000000000000000A";
const CLIENT_DYNAMIC: &str = "01J00000000000000000000DYN";

fn clients_patch(synapse_secret: &str, with_a: bool) -> String {
    let mut yaml = format!(
        "clients:\n  - client_id: {SYNAPSE_CLIENT_ID}\n    client_auth_method: client_secret_basic\n    client_secret: \"{synapse_secret}\"\n"
    );
    if with_a {
        yaml.push_str(&format!(
            "  - client_id: {CLIENT_A}\n    client_auth_method: none\n    redirect_uris: [\"https://a.example.test/cb\"]\n"
        ));
    }
    yaml
}

fn ids(db: &Path) -> Vec<String> {
    clients_in(db).into_iter().map(|c| c.id).collect()
}

#[test]
fn config_sync_adds_updates_prunes_and_dry_run_changes_nothing() {
    let dir = tempdir();
    let db = dir.path().join("appliance.db");
    let sync = |patch: &str, args: &[&str]| -> String {
        let config = write_test_config(dir.path(), patch);
        let mut all = vec!["config", "sync"];
        all.extend_from_slice(args);
        expect_success(&all.join(" "), &run_cli(&config, &all))
    };

    // Add: a dry run on a fresh database plans both and writes nothing.
    let out = sync(&clients_patch("first-secret-s1", true), &["--dry-run"]);
    assert!(out.contains(&format!("would add client {SYNAPSE_CLIENT_ID}")), "{out}");
    assert!(out.contains(&format!("would add client {CLIENT_A}")), "{out}");
    assert!(clients_in(&db).is_empty());
    let out = sync(&clients_patch("first-secret-s1", true), &[]);
    assert!(out.contains("2 added"), "{out}");
    let clients = clients_in(&db);
    assert_eq!(clients.len(), 2);
    assert!(clients.iter().all(|c| c.is_static));
    let a = clients.iter().find(|c| c.id == CLIENT_A).expect("client A");
    assert_eq!(a.metadata.token_endpoint_auth_method, "none");
    assert_eq!(a.metadata.redirect_uris, vec!["https://a.example.test/cb"]);
    assert!(a.encrypted_secret.is_none());
    let synapse = clients.iter().find(|c| c.id == SYNAPSE_CLIENT_ID).expect("synapse client");
    assert_eq!(synapse.metadata.token_endpoint_auth_method, "client_secret_basic");
    let stored = synapse.encrypted_secret.as_deref().expect("secret stored");
    assert!(!stored.contains("first-secret-s1"), "secret stored in clear");
    assert_eq!(secret_of(&db, SYNAPSE_CLIENT_ID).as_deref(), Some("first-secret-s1"));
    let out = sync(&clients_patch("first-secret-s1", true), &[]);
    assert!(out.contains("0 added, 0 updated, 2 unchanged"), "{out}");

    // A client registered at runtime is not the config's to prune.
    {
        let store = Store::open(&db, 1).expect("open store");
        let dynamic = Client {
            id: CLIENT_DYNAMIC.into(),
            metadata: appliance::model::client::ClientMetadata {
                redirect_uris: vec!["https://dyn.example.test/cb".into()],
                token_endpoint_auth_method: "none".into(),
                ..Default::default()
            },
            encrypted_secret: None,
            is_static: false,
            created_at: 1,
        };
        store.write_blocking(move |c| store::clients::upsert(c, &dynamic, None)).expect("insert dynamic client");
    }

    // Update: a changed secret; the dry run leaves every row as it was.
    let before = snapshot(&db);
    let out = sync(&clients_patch("second-secret-s2", true), &["--dry-run"]);
    assert!(out.contains(&format!("would update client {SYNAPSE_CLIENT_ID}")), "{out}");
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(snapshot(&db), before);
    let out = sync(&clients_patch("second-secret-s2", true), &[]);
    assert!(out.contains("1 updated"), "{out}");
    assert_eq!(secret_of(&db, SYNAPSE_CLIENT_ID).as_deref(), Some("second-secret-s2"));
    let after: Vec<_> = snapshot(&db);
    let created = |rows: &[ClientRow]| rows.iter().find(|r| r.0 == SYNAPSE_CLIENT_ID).map(|r| r.4);
    assert_eq!(created(&after), created(&before), "created_at changed");

    // Prune: without --prune a removed client stays (and is reported); --dry-run keeps it too.
    let out = sync(&clients_patch("second-secret-s2", false), &[]);
    assert!(out.contains(CLIENT_A) && out.contains("--prune"), "{out}");
    assert!(ids(&db).contains(&CLIENT_A.to_string()));
    let before = snapshot(&db);
    let out = sync(&clients_patch("second-secret-s2", false), &["--prune", "--dry-run"]);
    assert!(out.contains(&format!("would delete client {CLIENT_A}")), "{out}");
    assert_eq!(snapshot(&db), before);
    let out = sync(&clients_patch("second-secret-s2", false), &["--prune"]);
    assert!(out.contains(&format!("deleted client {CLIENT_A}")), "{out}");
    let mut left = ids(&db);
    left.sort();
    let mut want = vec![SYNAPSE_CLIENT_ID.to_string(), CLIENT_DYNAMIC.to_string()];
    want.sort();
    assert_eq!(left, want);
}

// ---------------------------------------------------------------------------------------------
// Users and backup

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn users_and_emails(store: &Store) -> Vec<(String, Vec<String>, bool)> {
    store
        .read_blocking(|c| {
            let users = store::users::list(c)?;
            users
                .into_iter()
                .map(|u| {
                    let emails = store::users::emails(c, &u.id)?;
                    Ok((u.username, emails, u.locked_at.is_some()))
                })
                .collect()
        })
        .expect("list users")
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_while_serving_copies_the_users_and_refuses_an_existing_file() {
    let app = spawn_app().await;
    for (name, email) in [("alice", "a@example.org"), ("bob", "b@example.org")] {
        expect_success(
            "manage register-user",
            &app.run_cli(&[
                "manage",
                "register-user",
                name,
                "--password",
                "correct horse battery staple",
                "--email",
                email,
                "--skip-homeserver-check",
            ]),
        );
    }
    expect_success("manage lock-user", &app.run_cli(&["manage", "lock-user", "bob"]));
    // The running server sees the users the CLI wrote.
    let live = {
        let store = app.state.store.clone();
        tokio::task::spawn_blocking(move || users_and_emails(&store)).await.expect("join")
    };
    assert_eq!(live.len(), 2);

    let backup = app.dir.path().join("backup.db");
    let backup_arg = backup.to_str().expect("utf-8 path");
    let out = expect_success("database backup", &app.run_cli(&["database", "backup", backup_arg]));
    assert!(out.contains("backed up"), "{out}");
    assert_eq!(app.get("/health").await.status(), 200, "server survives a backup");

    let copied = {
        let backup = backup.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open(&backup, 1).expect("backup opens");
            users_and_emails(&store)
        })
        .await
        .expect("join")
    };
    assert_eq!(copied, live);
    assert_eq!(
        copied,
        vec![
            ("alice".to_string(), vec!["a@example.org".to_string()], false),
            ("bob".to_string(), vec!["b@example.org".to_string()], true),
        ]
    );

    // An existing destination is refused and left alone.
    let size = std::fs::metadata(&backup).expect("backup").len();
    let out = app.run_cli(&["database", "backup", backup_arg]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("already exists"), "{}", stderr_of(&out));
    assert_eq!(std::fs::metadata(&backup).expect("backup").len(), size);
}

#[test]
fn list_users_shows_the_locked_state() {
    let dir = tempdir();
    let config = write_test_config(dir.path(), "");
    for name in ["alice", "bob", "carol"] {
        expect_success(
            "register-user",
            &run_cli(
                &config,
                &["manage", "register-user", name, "--password", "pw-for-tests-1", "--skip-homeserver-check"],
            ),
        );
    }
    expect_success("lock-user", &run_cli(&config, &["manage", "lock-user", "alice"]));
    expect_success("lock-user --deactivate", &run_cli(&config, &["manage", "lock-user", "carol", "--deactivate"]));
    let list = expect_success("list-users", &run_cli(&config, &["manage", "list-users"]));
    let state_of = |name: &str| -> String {
        list.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or_else(|| panic!("{name} missing from\n{list}"))
            .to_string()
    };
    assert_eq!(state_of("alice"), "locked");
    assert_eq!(state_of("bob"), "active");
    assert_eq!(state_of("carol"), "deactivated");

    expect_success("unlock-user", &run_cli(&config, &["manage", "unlock-user", "alice"]));
    let list = expect_success("list-users", &run_cli(&config, &["manage", "list-users"]));
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("alice") && l.split_whitespace().nth(2) == Some("active")),
        "{list}"
    );

    // Errors are reported, not panics.
    let out = run_cli(&config, &["manage", "lock-user", "nobody"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("nobody"), "{}", stderr_of(&out));
    let out = run_cli(
        &config,
        &["manage", "register-user", "bob", "--password", "pw-for-tests-2", "--skip-homeserver-check"],
    );
    assert!(!out.status.success());
    assert!(!stderr_of(&out).contains("panicked"), "{}", stderr_of(&out));
}

// ---------------------------------------------------------------------------------------------
// Config commands

#[test]
fn config_check_names_the_bad_key_and_accepts_the_repo_config() {
    let repo_config = repo_root().join("config.yaml");
    let out = expect_success("config check", &run_cli(&repo_config, &["config", "check"]));
    assert!(out.contains("valid"), "{out}");

    let dir = tempdir();
    let path = dir.path().join("bad.yaml");
    for (yaml, key) in [
        ("matrix: {homeserver: x}", "matrix.secret"),
        ("matrix: {secret: s}\nbogus: 1", "bogus"),
        ("matrix: {secret: s}\nclients: [{client_id: nope}]", "clients[0].client_id"),
        (
            "matrix: {secret: s}\nhttp: {listeners: [{resources: [{name: health}], binds: [{address: nope}]}]}",
            "http.listeners[0].binds[0].address",
        ),
        ("matrix: {secret: s}\nsecrets: {encryption: abc}", "secrets.encryption"),
        ("matrix: {secret: s}\nbranding: {logo_path: logo.bmp}", "branding.logo_path"),
        ("matrix: {secret: s}\nbranding: {logo_path: /nonexistent/logo.svg}", "branding.logo_path"),
        // A path prefix: pages, cookies and the proxy snippets all live at the host's root.
        (
            "matrix: {secret: s}\nhttp: {public_base: 'https://example.org/auth/'}",
            "http.public_base: must be the root of a host",
        ),
        (
            "matrix: {secret: s}\nhttp: {public_base: 'https://example.org/auth'}",
            "http.public_base: must be the root of a host",
        ),
        (
            "matrix: {secret: s}\nhttp: {public_base: 'https://example.org/?x=1'}",
            "http.public_base: must not have a query",
        ),
        (
            "matrix: {secret: s}\nhttp: {public_base: 'https://example.org/#x'}",
            "http.public_base: must not have a query",
        ),
    ] {
        std::fs::write(&path, yaml).expect("write");
        let out = run_cli(&path, &["config", "check"]);
        assert!(!out.status.success(), "{yaml:?} passed `config check`");
        let err = stderr_of(&out);
        assert!(err.contains(key), "{yaml:?}: {err:?} does not name {key}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run_cli(&dir.path().join("missing.yaml"), &["config", "check"]);
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("missing.yaml"), "{}", stderr_of(&out));
}

#[test]
fn config_is_found_through_the_environment() {
    let dir = tempdir();
    let config = write_test_config(dir.path(), "");
    let out = std::process::Command::new(appliance_bin())
        .args(["config", "check"])
        .env("APPLIANCE_CONFIG", &config)
        .current_dir(dir.path())
        .output()
        .expect("run");
    let stdout = expect_success("APPLIANCE_CONFIG=… config check", &out);
    assert!(stdout.contains(&config.display().to_string()), "{stdout}");
    let out = std::process::Command::new(appliance_bin())
        .args(["-c"])
        .arg(&config)
        .args(["config", "check"])
        .output()
        .expect("run");
    expect_success("-c … config check", &out);
}

#[test]
fn generated_config_passes_check() {
    let dir = tempdir();
    let out = std::process::Command::new(appliance_bin())
        .args(["config", "generate"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    let text = expect_success("config generate", &out);
    let path = dir.path().join("generated.yaml");
    std::fs::write(&path, &text).expect("write");
    expect_success("config check", &run_cli(&path, &["config", "check"]));
    // Two runs, two sets of secrets.
    let again = expect_success(
        "config generate",
        &std::process::Command::new(appliance_bin()).args(["config", "generate"]).output().expect("run"),
    );
    assert_ne!(text, again);
    // `--output` writes a private file and refuses to overwrite.
    let file = dir.path().join("out.yaml");
    let file_arg = file.to_str().expect("utf-8");
    expect_success("config generate --output", &run_cli(&path, &["config", "generate", "--output", file_arg]));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("written").permissions().mode();
    assert_eq!(mode & 0o077, 0, "generated config is readable by others: {mode:o}");
    expect_success("config check", &run_cli(&file, &["config", "check"]));
    assert!(!run_cli(&path, &["config", "generate", "--output", file_arg]).status.success());
    assert!(!dir.path().join("appliance.db").exists());
}

#[test]
fn config_dump_hides_secrets() {
    let dir = tempdir();
    let config = write_test_config(dir.path(), "");
    let dump = expect_success("config dump", &run_cli(&config, &["config", "dump"]));
    let (rsa, ec) = test_keys();
    for secret in [MATRIX_SECRET, SYNAPSE_CLIENT_SECRET, ENCRYPTION_KEY_HEX, "PRIVATE KEY"] {
        assert!(!dump.contains(secret), "dump shows {secret}:\n{dump}");
    }
    for pem in [rsa, ec] {
        let body = pem.lines().nth(1).expect("PEM body");
        assert!(!dump.contains(body), "dump shows a private key:\n{dump}");
    }
    assert!(dump.contains("[redacted]"), "{dump}");
    // The rest is still there, and the dump is YAML.
    assert!(dump.contains(SYNAPSE_CLIENT_ID), "{dump}");
    let parsed: serde_yaml::Value = serde_yaml::from_str(&dump).expect("dump is YAML");
    assert_eq!(parsed["matrix"]["homeserver"], "localhost");
}

#[test]
fn config_systemd_prints_a_unit_for_this_config() {
    let dir = tempdir();
    let config = write_test_config(dir.path(), "");
    let unit = expect_success(
        "config systemd",
        &run_cli(&config, &["config", "systemd", "--binary", "/usr/local/bin/appliance", "--user", "matrix-auth"]),
    );
    assert!(
        unit.contains(&format!("ExecStart=/usr/local/bin/appliance serve --config {}", config.display())),
        "{unit}"
    );
    assert!(unit.contains("User=matrix-auth"), "{unit}");
    assert!(unit.contains("Type=notify"), "{unit}");
}

// ---------------------------------------------------------------------------------------------
// The binary

/// The subcommand names in `--help` output (the "Commands:" section, `help` excluded).
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            // Long descriptions wrap onto deeper-indented lines.
            if line.starts_with("   ") {
                continue;
            }
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn help_works_on_every_command() {
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        let out = std::process::Command::new(appliance_bin())
            .args(&path)
            .arg("--help")
            .env_remove("APPLIANCE_CONFIG")
            .output()
            .expect("run --help");
        let what = format!("appliance {} --help", path.join(" "));
        let help = expect_success(&what, &out);
        assert!(help.contains("Usage:"), "{what}:\n{help}");
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        seen.push(path.join(" "));
    }
    for cmd in [
        "serve",
        "config generate",
        "config check",
        "config dump",
        "config sync",
        "config systemd",
        "database migrate",
        "database backup",
        "manage register-user",
        "manage set-password",
        "manage lock-user",
        "manage unlock-user",
        "manage list-users",
    ] {
        assert!(seen.iter().any(|s| s == cmd), "`{cmd} --help` not reached: {seen:?}");
    }
    // An unknown command is a usage error, not a panic.
    let out = std::process::Command::new(appliance_bin()).arg("frobnicate").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// The repo's config.yaml with its two listeners moved to free ports and its database (a
/// relative path) next to the copy.
fn repo_style_config(dir: &Path) -> (std::path::PathBuf, u16, u16) {
    let text = std::fs::read_to_string(repo_root().join("config.yaml")).expect("config.yaml");
    let (web, internal) = (free_port(), free_port());
    let patch = format!(
        r#"
http:
  public_base: "http://127.0.0.1:{web}/"
  listeners:
    - name: web
      resources: [{{name: discovery}}, {{name: human}}, {{name: oauth}}, {{name: compat}}, {{name: assets}}, {{name: health}}]
      binds: [{{address: "127.0.0.1:{web}"}}]
    - name: internal
      resources: [{{name: health}}, {{name: prometheus}}]
      binds: [{{address: "127.0.0.1:{internal}"}}]
"#
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, merged_yaml(&text, &patch)).expect("write");
    (path, web, internal)
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_the_repo_style_config_and_stops_on_sigterm() {
    let dir = tempdir();
    let mut attempt = 0;
    let (mut server, web, internal) = loop {
        attempt += 1;
        let (config, web, internal) = repo_style_config(dir.path());
        let started = Instant::now();
        match ServeProcess::start(&config, Duration::from_secs(60)) {
            Ok(p) => {
                eprintln!("serve: listening after {:?}", started.elapsed());
                break (p, web, internal);
            }
            Err(e) if attempt < 3 && e.contains("cannot listen") => continue,
            Err(e) => panic!("{e}"),
        }
    };
    let client = new_client();
    for port in [web, internal] {
        let res = client.get(format!("http://127.0.0.1:{port}/health")).send().await.expect("GET /health");
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.expect("body"), "ok");
    }
    let doc: Value = client
        .get(format!("http://127.0.0.1:{web}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("JSON");
    assert_eq!(doc["issuer"], format!("http://127.0.0.1:{web}/"));
    let metrics = client.get(format!("http://127.0.0.1:{internal}/metrics")).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    // The relative database path resolves next to the config file.
    assert!(dir.path().join("appliance.db").exists());

    let status = server
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM:\n{}", server.stderr_text()));
    assert!(status.success(), "exit {status}:\n{}", server.stderr_text());
    // Every line written before the exit has been read.
    server.wait_for_stderr_end(Duration::from_secs(10));
    let log = server.stderr_text();
    assert_eq!(log.lines().filter(|l| l.contains("listening on")).count(), 1, "{log}");
    let listening = log.lines().find(|l| l.contains("listening on")).unwrap_or_default();
    assert!(
        listening.contains(&format!("127.0.0.1:{web}")) && listening.contains(&format!("127.0.0.1:{internal}")),
        "{listening}"
    );
    for secret in ["change-me-shared-with-synapse", "change-me-synapse-client-secret"] {
        assert!(!log.contains(secret), "a secret was logged:\n{log}");
    }
}
