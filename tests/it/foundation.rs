//! Issue 2, "How it is tested": the real server on 127.0.0.1 with a temporary database. The CLI,
//! run as subprocesses, is tested in `foundation/cli.rs`.

mod cli;

use std::collections::HashSet;
use std::path::Path;

use appliance::store;
use base64::Engine;
use serde_json::Value;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Database

fn sql_migration_count() -> usize {
    std::fs::read_dir(repo_root().join("sql"))
        .expect("sql/")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sql"))
        .count()
}

fn table_names(db: &Path) -> HashSet<String> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0)).expect("query").map(|r| r.expect("row")).collect()
}

#[test]
fn migrations_apply_to_an_empty_database_and_rerun_as_no_ops() {
    let dir = tempdir();
    let config = write_test_config(dir.path(), "");
    let db = dir.path().join("appliance.db");
    assert!(!db.exists());

    let first = expect_success("database migrate", &run_cli(&config, &["database", "migrate"]));
    let applied = first.lines().filter(|l| l.starts_with("applied ")).count();
    assert_eq!(applied, sql_migration_count(), "first run:\n{first}");
    let second = expect_success("database migrate (again)", &run_cli(&config, &["database", "migrate"]));
    assert!(second.contains("up to date"), "second run:\n{second}");

    let tables = table_names(&db);
    for t in [
        "users",
        "user_passwords",
        "user_emails",
        "oauth2_clients",
        "site_secrets",
        "signing_keys",
        "refinery_schema_history",
    ] {
        assert!(tables.contains(t), "table {t} missing from {tables:?}");
    }
    let conn = rusqlite::Connection::open(&db).expect("open db");
    let history: i64 =
        conn.query_row("SELECT count(*) FROM refinery_schema_history", [], |r| r.get(0)).expect("history");
    assert_eq!(history as usize, sql_migration_count());
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");

    // The library entry point too: a fresh file, then nothing left to apply.
    let other = dir.path().join("other.db");
    assert_eq!(store::migrate_path(&other).expect("migrate").len(), sql_migration_count());
    assert!(store::migrate_path(&other).expect("migrate again").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Discovery and keys

#[tokio::test]
async fn discovery_document_is_served_and_valid() {
    let app = spawn_app().await;
    let res = app.get("/.well-known/openid-configuration").await;
    assert_eq!(res.status(), 200);
    let ct = header(&res, "content-type");
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let doc: Value = res.json().await.expect("JSON");

    let issuer = format!("{}/", app.base);
    assert_eq!(doc["issuer"], issuer.as_str());
    let obj = doc.as_object().expect("object");
    let mut endpoints = 0;
    for (key, value) in obj {
        if key.ends_with("_endpoint") || key == "jwks_uri" || key == "account_management_uri" {
            let url = value.as_str().unwrap_or_else(|| panic!("{key} is not a string"));
            assert!(url.starts_with(&issuer) && url.len() > issuer.len(), "{key} = {url} is not under {issuer}");
            endpoints += 1;
        }
    }
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "account_management_uri",
    ] {
        assert!(obj.contains_key(key), "{key} missing");
    }
    assert!(endpoints >= 7);

    let has = |key: &str, item: &str| {
        doc[key].as_array().unwrap_or_else(|| panic!("{key} is not an array")).iter().any(|v| v == item)
    };
    assert!(has("code_challenge_methods_supported", "S256"));
    assert!(has("response_types_supported", "code"));
    assert!(has("grant_types_supported", "authorization_code"));
    assert!(has("grant_types_supported", "refresh_token"));
    assert!(has("token_endpoint_auth_methods_supported", "client_secret_basic"));
    assert!(has("token_endpoint_auth_methods_supported", "none"));
    assert!(has("scopes_supported", "openid"));
    assert!(has("id_token_signing_alg_values_supported", "RS256"));
    assert!(has("subject_types_supported", "public"));
    let actions = doc["account_management_actions_supported"].as_array().expect("account_management_actions_supported");
    assert!(!actions.is_empty());
    assert!(actions.iter().all(|a| a.as_str().is_some_and(|s| s.starts_with("org.matrix."))), "{actions:?}");

    // The advertised jwks_uri answers.
    let jwks = app.client.get(doc["jwks_uri"].as_str().expect("jwks_uri")).send().await.expect("GET jwks_uri");
    assert_eq!(jwks.status(), 200);
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn b64(field: &Value) -> Vec<u8> {
    let s = field.as_str().expect("string member");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("{s:?} is not base64url without padding: {e}"))
}

/// Checks every key's public parameters and returns the `kid`s in order.
async fn fetch_kids(app: &TestApp) -> Vec<String> {
    let res = app.get("/oauth2/keys.json").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let jwks: Value = res.json().await.expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    let mut kids = Vec::new();
    let mut algs = HashSet::new();
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "private member {private} in {k}");
        }
        assert_eq!(k["use"], "sig");
        match k["kty"].as_str() {
            Some("RSA") => {
                assert_eq!(k["alg"], "RS256");
                let n = b64(&k["n"]);
                assert!(n.len() >= 256, "RSA modulus of {} bytes", n.len());
                assert_ne!(n[0], 0, "modulus has a leading zero byte");
                assert_eq!(b64(&k["e"]), vec![1, 0, 1]);
            }
            Some("EC") => {
                assert_eq!(k["alg"], "ES256");
                assert_eq!(k["crv"], "P-256");
                assert_eq!(b64(&k["x"]).len(), 32);
                assert_eq!(b64(&k["y"]).len(), 32);
            }
            other => panic!("unexpected kty {other:?}"),
        }
        algs.insert(k["alg"].as_str().unwrap_or_default().to_string());
        let kid = k["kid"].as_str().expect("kid").to_string();
        assert!(!kid.is_empty());
        kids.push(kid);
    }
    assert!(algs.contains("RS256") && algs.contains("ES256"), "{algs:?}");
    let unique: HashSet<_> = kids.iter().collect();
    assert_eq!(unique.len(), kids.len(), "duplicate kid in {kids:?}");
    kids
}

#[tokio::test]
async fn jwks_serves_the_configured_keys() {
    let app = spawn_app().await;
    let kids = fetch_kids(&app).await;
    assert_eq!(kids, test_key_ids());
}

fn stored_secrets(db: &Path) -> (Vec<String>, String) {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut stmt = conn.prepare("SELECT kid FROM signing_keys ORDER BY kid").expect("prepare");
    let kids = stmt.query_map([], |r| r.get(0)).expect("query").map(|r| r.expect("row")).collect();
    let enc = conn
        .query_row("SELECT value FROM site_secrets WHERE name = 'encryption'", [], |r| r.get(0))
        .expect("encryption secret");
    (kids, enc)
}

#[tokio::test]
async fn without_secrets_keys_are_generated_once_and_stable_across_restarts() {
    let mut app = spawn_app_with("secrets: ~").await;
    let first = fetch_kids(&app).await;
    assert_eq!(first.len(), 2, "one RSA and one P-256 key: {first:?}");
    for kid in test_key_ids() {
        assert!(!first.contains(&kid));
    }
    let (stored, encryption) = stored_secrets(&app.db_path);
    assert_eq!(stored.len(), 2);
    assert_eq!(encryption.len(), 64);

    // The same keys (the JWKS order may differ: generated keys share a created_at second).
    let mut first = first;
    first.sort();
    for _ in 0..2 {
        let restarted = app.restart().await;
        let mut kids = fetch_kids(&restarted).await;
        kids.sort();
        assert_eq!(kids, first, "kids changed across a restart");
        app = restarted;
    }
    assert_eq!(stored_secrets(&app.db_path), (stored, encryption));
}

#[tokio::test]
async fn keys_in_config_win_over_keys_in_the_database() {
    let app = spawn_app_with("secrets: ~").await;
    let generated = fetch_kids(&app).await;
    let (dir, _) = app.stop().await;

    // Same database, now with `secrets` in the config.
    let app = spawn_app_in(dir, "").await;
    let kids = fetch_kids(&app).await;
    assert_eq!(kids, test_key_ids());
    for kid in &generated {
        assert!(!kids.contains(kid), "database key {kid} still served");
    }
}

// ---------------------------------------------------------------------------------------------
// Health, metrics, assets, headers

#[tokio::test]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.expect("body"), "ok");
}

#[tokio::test]
async fn metrics_are_served_only_on_the_prometheus_listener() {
    let app = spawn_app_with(
        r#"
http:
  listeners:
    - name: web
      resources: [{name: discovery}, {name: oauth}, {name: assets}, {name: health}]
      binds: [{address: "127.0.0.1:$PORT"}]
    - name: internal
      resources: [{name: health}, {name: prometheus}]
      binds: [{address: "127.0.0.1:0"}]
"#,
    )
    .await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 404);

    let res = app.client.get(app.listener_url("internal", "/metrics")).send().await.expect("GET /metrics");
    assert_eq!(res.status(), 200);
    assert!(
        header(&res, "content-type").starts_with("application/openmetrics-text"),
        "{}",
        header(&res, "content-type")
    );
    let body = res.text().await.expect("body");
    assert!(body.contains("# TYPE appliance_"), "{body}");
    assert!(body.contains("appliance_http_responses"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // The internal listener serves no discovery.
    let res = app
        .client
        .get(app.listener_url("internal", "/.well-known/openid-configuration"))
        .send()
        .await
        .expect("GET discovery on internal");
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn assets_are_served_at_hashed_urls_with_immutable_caching() {
    let app = spawn_app().await;
    for (name, content_type) in [
        ("app.css", "text/css"),
        ("app.js", "text/javascript"),
        ("logo.svg", "image/svg+xml"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let path = app.state.assets.path(name);
        let stem = name.split('.').next().unwrap_or_default();
        assert!(
            path.starts_with(&format!("/assets/{stem}.")) && path != format!("/assets/{name}"),
            "{name} is not content-hashed: {path}"
        );
        let res = app.get(&path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            header(&res, "content-type").starts_with(content_type),
            "{path}: content-type {}",
            header(&res, "content-type")
        );
        assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable");
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        // The name carries a prefix of the SHA-256 of the bytes served under it.
        let body = res.bytes().await.expect("body");
        assert!(!body.is_empty(), "{path} is empty");
        let hash = path.rsplit('.').nth(1).unwrap_or_default();
        assert!(hash.len() >= 8, "{path}: short hash {hash:?}");
        assert!(
            appliance::crypto::sha256_hex(&body).starts_with(hash),
            "{path}: the hash in the name is not the hash of the content"
        );
    }
}

#[tokio::test]
async fn the_operators_logo_replaces_the_built_in_one() {
    let dir = tempdir();
    let logo = dir.path().join("club.svg");
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="5"/></svg>"#;
    std::fs::write(&logo, svg).expect("write logo");
    let app = spawn_app_in(dir, &format!("branding: {{logo_path: \"{}\"}}", logo.display())).await;
    let html = app.get("/login").await.text().await.expect("body");
    let path = app.state.assets.logo_path();
    assert!(path.starts_with("/assets/brand-logo.") && path.ends_with(".svg"), "{path}");
    assert!(html.contains(&format!("src=\"{path}\"")), "{html}");
    assert!(!html.contains(&app.state.assets.path("logo.svg")));
    let res = app.get(&path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "image/svg+xml");
    assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable");
    // Opened on its own, the SVG runs nothing on this origin.
    assert!(header(&res, "content-security-policy").contains("sandbox"));
    assert_eq!(res.bytes().await.expect("body").as_ref(), svg);
}

#[tokio::test]
async fn unknown_assets_are_404() {
    let app = spawn_app().await;
    for path in ["/assets/nope.css", "/assets/app.0000000000.css", "/assets/../Cargo.toml", "/assets/"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_ne!(header(&res, "cache-control"), "public, max-age=31536000, immutable", "{path}");
    }
}

#[tokio::test]
async fn only_pages_that_lead_back_to_a_client_allow_any_form_target() {
    let app = spawn_app().await;
    // Sign-in, sign-up and consent forms end in a redirect to the client (any origin or an app's
    // own scheme), which browsers check against `form-action`; every other page keeps it.
    for (path, restricted) in
        [("/login", false), ("/register", false), ("/consent/01J00000000000000000000000", false), ("/recover", true)]
    {
        let res = app.get(path).await;
        assert!(header(&res, "content-type").starts_with("text/html"), "{path}");
        let csp = header(&res, "content-security-policy");
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(csp.contains("form-action 'self'"), restricted, "{path}: {csp}");
    }
}

#[tokio::test]
async fn error_pages_carry_the_branding() {
    let app = spawn_app_with(
        "branding: {service_name: \"Example Club accounts\", tos_uri: \"https://club.example.org/terms\"}",
    )
    .await;
    let res = app.get("/authorize?client_id=nope").await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.expect("body");
    assert!(html.contains("not known to this server"), "{html}");
    assert!(html.contains("Example Club accounts"), "{html}");
    assert!(html.contains("https://club.example.org/terms"), "{html}");
    assert!(html.contains(&app.state.assets.path("app.css")), "hashed stylesheet: {html}");
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = spawn_app().await;
    for path in ["/health", "/.well-known/openid-configuration", "/oauth2/keys.json", "/no/such/page"] {
        let res = app.get(path).await;
        assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&res, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer", "{path}");
        assert!(res.headers().get("strict-transport-security").is_none(), "HSTS over plain http on {path}");
    }
    assert_eq!(app.get("/no/such/page").await.status(), 404);

    // HSTS once the public URL is https (TLS ends at the reverse proxy).
    let app = spawn_app_with("http: {public_base: 'https://auth.example.test/'}").await;
    let res = app.get("/health").await;
    assert!(header(&res, "strict-transport-security").starts_with("max-age="), "{:?}", res.headers());
    let doc: Value = app.get("/.well-known/openid-configuration").await.json().await.expect("JSON");
    assert_eq!(doc["issuer"], "https://auth.example.test/");
    assert_eq!(doc["token_endpoint"], "https://auth.example.test/oauth2/token");
}

// ---------------------------------------------------------------------------------------------
// Config clients at startup (`config sync` is in cli.rs)

#[tokio::test]
async fn startup_syncs_the_config_clients() {
    let app = spawn_app().await;
    let clients = app.state.store.read(|c| store::clients::list(c, true)).await.expect("list");
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].id, SYNAPSE_CLIENT_ID);
    let enc = clients[0].encrypted_secret.as_deref().expect("secret");
    assert_eq!(app.state.encrypter.decrypt_string(enc).expect("decrypt"), SYNAPSE_CLIENT_SECRET);
}
