//! Regression tests for the security review (issue 10): each test names the hole it closes.
//! Hostile single requests live in the table of `adversarial.rs`; the walks that need state
//! (several requests, a race, a log) live here.

use serde_json::Value;

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
const PASSWORD: &str = "correct horse battery";

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

// ---- Item 7: refresh-token theft (RFC 9700 §4.14.2) ----

/// A thief's copy of a refresh token, presented after the client rotated it and used the
/// successor, ends the whole session: the client's current tokens stop working too.
#[tokio::test]
async fn refresh_reuse_after_the_successor_was_used_ends_the_session() {
    let app = app().await;
    let tokens = code_login(&app, "alice", PASSWORD, API).await;
    let stolen = str_of(&tokens, "refresh_token");
    let res = refresh(&app, stolen).await;
    assert_eq!(res.status(), 200);
    let current: Value = res.json().await.unwrap();
    assert_eq!(introspect(&app, str_of(&current, "access_token")).await["active"], true, "the successor is used");

    let res = refresh(&app, stolen).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(str_of(&body, "error_description").contains("session has been ended"), "{body}");
    assert_eq!(introspect(&app, str_of(&current, "access_token")).await["active"], false, "session ended");
    let res = refresh(&app, str_of(&current, "refresh_token")).await;
    assert_eq!(res.status(), 400, "the client's own refresh token died with the session");
}

/// Also when the thief rotated first: the victim's late refresh with the same token ends the
/// session the thief is using.
#[tokio::test]
async fn a_victims_late_refresh_ends_the_session_a_thief_rotated() {
    let app = app().await;
    let tokens = code_login(&app, "alice", PASSWORD, API).await;
    let shared = str_of(&tokens, "refresh_token");
    let thief: Value = refresh(&app, shared).await.json().await.unwrap();
    assert_eq!(refresh(&app, str_of(&thief, "refresh_token")).await.status(), 200, "the thief keeps rotating");
    assert_eq!(refresh(&app, shared).await.status(), 400, "the victim's refresh is refused");
    let res = refresh(&app, str_of(&thief, "refresh_token")).await;
    assert_eq!(res.status(), 400, "and the thief's chain ended with the session");
}

/// Element Web in two tabs, Element X after a lost response: two refreshes of the same token at
/// once both leave the client signed in with tokens that work and keep rotating.
#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_both_keep_the_client_signed_in() {
    let app = app().await;
    let tokens = code_login(&app, "alice", PASSWORD, API).await;
    let r0 = str_of(&tokens, "refresh_token");
    let (a, b) = tokio::join!(refresh(&app, r0), refresh(&app, r0));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_ne!(a["access_token"], b["access_token"]);
    for tab in [&a, &b] {
        assert_eq!(introspect(&app, str_of(tab, "access_token")).await["active"], true, "{tab}");
    }
    for tab in [&a, &b] {
        let res = refresh(&app, str_of(tab, "refresh_token")).await;
        assert_eq!(res.status(), 200, "each tab keeps rotating");
        let next: Value = res.json().await.unwrap();
        assert_eq!(introspect(&app, str_of(&next, "access_token")).await["active"], true);
    }
}

// ---- Item 8: the redirect_uri of the authorization request must be repeated ----

#[tokio::test]
async fn code_exchange_must_repeat_the_redirect_uri_of_the_authorization_request() {
    let app = app().await;
    let (params, p) = authorize_code(&app, PUBLIC_CLIENT, REDIRECT, API, &[], ("alice", PASSWORD)).await;
    let code = &params["code"];
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", PUBLIC_CLIENT),
        ("code_verifier", p.verifier.as_str()),
    ];
    let res = token_request(&app, &form).await;
    assert_eq!(res.status(), 400, "redirect_uri omitted");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let res = exchange_code(&app, PUBLIC_CLIENT, LOOPBACK_REDIRECT, code, &p.verifier).await;
    assert_eq!(res.status(), 400, "another registered redirect_uri");
    let res = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, code, &p.verifier).await;
    assert_eq!(res.status(), 200, "the same redirect_uri");
}

/// When `/authorize` had none (one registered URI), the token request needs none either.
#[tokio::test]
async fn code_exchange_without_redirect_uri_when_the_authorization_request_had_none() {
    let app = app().await;
    let query = [("client_id", CONFIDENTIAL_CLIENT), ("response_type", "code"), ("scope", API)];
    let res = authorize_and_consent(&app, &app.new_client(), &query, Some(("alice", PASSWORD))).await;
    let params = redirect_params(&location(&res));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("client_id", CONFIDENTIAL_CLIENT),
        ("client_secret", CONFIDENTIAL_SECRET),
    ];
    let res = token_request(&app, &form).await;
    assert_eq!(res.status(), 200);
}

// ---- Item 1: device IDs cannot smuggle scope tokens ----

const INJECTED: &str = "AAAAAAAAAA urn:synapse:admin:*";

/// Introspection as a homeserver without `X-MAS-Supports-Device-Id` (device in the scope) and
/// with it (device in `device_id`).
async fn both_introspections(app: &TestApp, token: &str) -> [Value; 2] {
    [introspect_with(app, token, None, false).await, introspect_with(app, token, None, true).await]
}

fn scope_tokens(v: &Value) -> Vec<String> {
    v["scope"].as_str().unwrap_or_default().split(' ').map(String::from).collect()
}

#[tokio::test]
async fn compat_device_ids_cannot_inject_scope_tokens() {
    let app = app().await;
    let login = |device: &str| {
        serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
            "password": PASSWORD, "device_id": device})
    };
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&login(INJECTED)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_INVALID_PARAM", "{body}");

    // A valid device: the scope is the API plus exactly that device, in both forms.
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&login("GOODDEVICE")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let token: Value = res.json().await.unwrap();
    let [legacy, modern] = both_introspections(&app, str_of(&token, "access_token")).await;
    assert_eq!(legacy["active"], true);
    assert!(scope_tokens(&legacy).contains(&"urn:matrix:client:device:GOODDEVICE".to_string()), "{legacy}");
    assert!(!scope_tokens(&legacy).contains(&"urn:synapse:admin:*".to_string()), "{legacy}");
    assert_eq!((modern["active"].clone(), modern["device_id"].clone()), (Value::Bool(true), "GOODDEVICE".into()));
    assert!(!scope_tokens(&modern).iter().any(|t| t.contains("device") || t == "urn:synapse:admin:*"), "{modern}");

    // A session stored before the grammar was enforced never yields an injected scope: the token
    // is inactive in both forms. A short ID a client chose under Synapse (imported) stays valid.
    let user = app.state.store.read(|c| appliance::store::users::by_username(c, "alice")).await.unwrap().unwrap();
    for (device_id, active) in [(INJECTED, false), ("BOT1", true)] {
        let access = appliance::tokens::TokenKind::CompatAccessToken.generate(&appliance::rng::OsRng);
        let hash = appliance::tokens::hash_token(&access);
        let now = app.state.now();
        let user_id = user.id.clone();
        app.state
            .store
            .write(move |c| {
                let s = appliance::store::compat::CompatSession {
                    id: ulid::Ulid::new().to_string(),
                    user_id,
                    device_id: Some(device_id.into()),
                    user_session_id: None,
                    is_synapse_admin: false,
                    human_name: None,
                    created_at: now,
                    finished_at: None,
                };
                appliance::store::compat::insert_session(c, &s, None)?;
                appliance::store::compat::insert_access(c, &ulid::Ulid::new().to_string(), &s.id, &hash, now, None)
                    .map(|_| ())
            })
            .await
            .unwrap();
        let [legacy, modern] = both_introspections(&app, &access).await;
        if active {
            assert!(scope_tokens(&legacy).contains(&format!("urn:matrix:client:device:{device_id}")), "{legacy}");
            assert_eq!(modern["device_id"], device_id, "{modern}");
        } else {
            for v in [legacy, modern] {
                assert_eq!(v, serde_json::json!({"active": false}), "a stored injected device id");
            }
        }
    }
}

/// `manage issue-compatibility-token` and `manage issue-personal-token --device` refuse device
/// IDs outside the grammar, so nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_device_ids_outside_the_grammar_are_refused() {
    let app = app().await;
    for args in [
        vec!["manage", "issue-compatibility-token", "alice", INJECTED],
        vec!["manage", "issue-compatibility-token", "alice", "AAAAAAAAAA\turn:synapse:admin:*"],
        vec!["manage", "issue-personal-token", "alice", "--name", "bot", "--device", INJECTED],
    ] {
        let out = {
            let config = app.config_path.clone();
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            tokio::task::spawn_blocking(move || {
                crate::helpers::run_cli(&config, &args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap()
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains("device"), "{args:?}: {stderr}");
    }
    let stored: i64 = rusqlite::Connection::open(&app.db_path)
        .unwrap()
        .query_row(
            "SELECT (SELECT count(*) FROM compat_sessions) + (SELECT count(*) FROM personal_sessions)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 0);
}

// ---- Item 9: fail closed on administration ----

const ADMIN_SCOPES: &str = "urn:matrix:org.matrix.msc2967.client:api:* urn:mas:admin urn:synapse:admin:*";

fn has(v: &Value, token: &str) -> bool {
    scope_tokens(v).iter().any(|t| t == token)
}

/// A demoted admin's OAuth session and personal token lose `urn:mas:admin` and
/// `urn:synapse:admin:*` at their next use, in introspection and at the admin API.
#[tokio::test]
async fn a_demoted_admin_loses_the_administration_scopes_at_once() {
    let (app, _calls) = crate::admin::admin_app("").await;
    register_user(&app, "root", PASSWORD, true).await;
    let tokens = code_login(&app, "root", PASSWORD, ADMIN_SCOPES).await;
    let oauth = str_of(&tokens, "access_token").to_string();
    let root = app.state.store.read(|c| appliance::store::users::by_username(c, "root")).await.unwrap().unwrap();
    let (status, body) = crate::admin::call(
        &app,
        "POST",
        "/personal-sessions",
        Some(&oauth),
        Some(serde_json::json!({"actor_user_id": root.id, "human_name": "tool", "scope": "urn:mas:admin urn:synapse:admin:*"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let personal = body["data"]["attributes"]["access_token"].as_str().expect("personal token").to_string();
    for t in [&oauth, &personal] {
        let v = introspect(&app, t).await;
        assert!(has(&v, "urn:mas:admin") && has(&v, "urn:synapse:admin:*"), "before: {v}");
        assert_eq!(crate::admin::call(&app, "GET", "/users", Some(t), None).await.0, 200);
    }

    appliance::lifecycle::users::set_admin(&app.state.store, &root.id, false).await.unwrap();
    for t in [&oauth, &personal] {
        let v = introspect(&app, t).await;
        assert_eq!(v["active"], true, "the session itself goes on");
        assert!(!has(&v, "urn:mas:admin") && !has(&v, "urn:synapse:admin:*"), "after demotion: {v}");
        assert_eq!(crate::admin::call(&app, "GET", "/users", Some(t), None).await.0, 403);
    }
}

/// A client removed from `policy.data.admin_clients` loses `urn:mas:admin` with the next request
/// (after the restart that loads the new config).
#[tokio::test]
async fn a_client_removed_from_admin_clients_loses_urn_mas_admin() {
    let (app, _calls) = crate::admin::admin_app("").await;
    let token = crate::admin::admin_token(&app).await;
    assert!(has(&introspect(&app, &token).await, "urn:mas:admin"));
    let (dir, patch) = app.stop().await;
    let app = crate::helpers::spawn_app_in(dir, &crate::helpers::merged_yaml(&patch, "policy: ~")).await;
    let v = introspect(&app, &token).await;
    assert_eq!(v["active"], true);
    assert!(!has(&v, "urn:mas:admin"), "{v}");
    assert_eq!(crate::admin::call(&app, "GET", "/users", Some(&token), None).await.0, 403);
}

/// A stored client whose auth method cannot be read is never treated as public.
#[tokio::test]
async fn an_unreadable_client_auth_method_is_not_public() {
    let app = app().await;
    let client = "01J0000000000000000000BRK2";
    app.state
        .store
        .write(move |c| {
            c.execute(
                "INSERT INTO oauth2_clients (client_id, metadata, is_static, created_at) VALUES (?1, ?2, 0, 0)",
                [client, r#"{"token_endpoint_auth_method": "Client_Secret_Basic", "grant_types": ["client_credentials", "refresh_token"], "redirect_uris": ["https://app.example.org/callback"]}"#],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let res = token_request(&app, &[("grant_type", "client_credentials"), ("client_id", client)]).await;
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client", "{v}");
    // Nor may it introspect as if public (public clients get their own refusal, a 403).
    let res = app
        .client
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", "mat_x"), ("client_id", client)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

// ---- Item 11: files at rest ----

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_and_shm_are_private_from_the_first_byte() {
    let app = app().await;
    let _ = code_login(&app, "alice", PASSWORD, API).await; // writes go through the WAL
    for suffix in ["", "-wal", "-shm"] {
        let mut name = app.db_path.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let backup = app.dir.path().join("copy.db");
    let out = {
        let (config, b) = (app.config_path.clone(), backup.clone());
        tokio::task::spawn_blocking(move || {
            crate::helpers::run_cli(&config, &["database", "backup", b.to_str().unwrap()])
        })
        .await
        .unwrap()
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&backup), 0o600);
}

// ---- Item 6: client assertions as Synapse's legacy mode signs them (Authlib) ----

const HS_CLIENT: &str = "01J0000000000000000000HS01";
const HS_SECRET: &str = "a-shared-secret-for-client-secret-jwt";
const PK_CLIENT: &str = "01J0000000000000000000PK01";

/// Assertions signed by Authlib's `client_secret_jwt_sign` / `private_key_jwt_sign` (what
/// Synapse's msc3861 mode uses: `iat` now, `exp` an hour later, a 36-character `jti`) pass with
/// the default limits, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_signed_the_way_authlib_signs_them_are_accepted_once() {
    use jwt_simple::prelude::*;
    tokio::task::spawn_blocking(crate::synapse_harness::ensure_installed).await.unwrap();
    let key = ES256KeyPair::generate().with_key_id("k1");
    let point = key.public_key().public_key().to_bytes_uncompressed();
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    let app = spawn_app_with(&format!(
        r#"
clients:
  - client_id: {HS_CLIENT}
    client_auth_method: client_secret_jwt
    client_secret: "{HS_SECRET}"
  - client_id: {PK_CLIENT}
    client_auth_method: private_key_jwt
    jwks: {jwks}
"#
    ))
    .await;
    let token_endpoint = app.url("/oauth2/token");
    let script = r#"
import sys
from authlib.oauth2.rfc7523 import client_secret_jwt_sign, private_key_jwt_sign
kind, secret, client_id, aud = sys.argv[1:5]
if kind == "hs":
    print(client_secret_jwt_sign(secret, client_id, aud, alg="HS256"))
else:
    print(private_key_jwt_sign(secret, client_id, aud, alg="ES256", header={"kid": "k1"}))
"#;
    let pem = key.to_pem().unwrap();
    for (kind, secret, client) in [("hs", HS_SECRET.to_string(), HS_CLIENT), ("pk", pem, PK_CLIENT)] {
        let mut cmd = crate::synapse_harness::python_command(crate::synapse_harness::SynapseMode::Legacy);
        cmd.args(["-c", script, kind, &secret, client, &token_endpoint]);
        let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("run python");
        assert!(out.status.success(), "authlib: {}", String::from_utf8_lossy(&out.stderr));
        let assertion = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        let res = token_request(&app, &form).await;
        assert_eq!(res.status(), 200, "{kind}: {}", res.text().await.unwrap());
        let res = token_request(&app, &form).await;
        assert_eq!(res.status(), 401, "{kind}: the same assertion again");
    }
}

/// Without `exp` an assertion was remembered for an hour only and then replayable; one valid far
/// longer than any real client asks for is a long-lived password. Both are refused, and the
/// limit follows `client_auth.assertion_max_lifetime`.
#[tokio::test]
async fn assertions_without_exp_or_too_long_lived_are_refused() {
    use jwt_simple::prelude::*;
    let patch = |max: &str| {
        format!(
            r#"
clients:
  - client_id: {HS_CLIENT}
    client_auth_method: client_secret_jwt
    client_secret: "{HS_SECRET}"
{max}"#
        )
    };
    let sign = |app: &TestApp, jti: &str, lifetime: Option<u64>| {
        let now = Clock::now_since_epoch().as_secs();
        let claims = JWTClaims {
            issued_at: Some(UnixTimeStamp::from_secs(now)),
            expires_at: lifetime.map(|l| UnixTimeStamp::from_secs(now + l)),
            invalid_before: None,
            issuer: Some(HS_CLIENT.into()),
            subject: Some(HS_CLIENT.into()),
            audiences: Some(Audiences::AsString(app.url("/oauth2/token"))),
            jwt_id: Some(jti.into()),
            nonce: None,
            custom: NoCustomClaims {},
        };
        HS256Key::from_bytes(HS_SECRET.as_bytes()).authenticate(claims).unwrap()
    };
    let grant = |a: String| {
        vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()),
            ("client_assertion", a),
        ]
    };
    let status = |app: &TestApp, a: String| {
        let form = grant(a);
        let req = app.client.post(app.url("/oauth2/token")).form(&form);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let app = spawn_app_with(&patch("")).await;
    assert_eq!(status(&app, sign(&app, "no-exp", None)).await, 401, "no exp");
    assert_eq!(status(&app, sign(&app, "two-hours", Some(7200))).await, 401, "exp two hours ahead");
    assert_eq!(status(&app, sign(&app, "one-hour", Some(3600))).await, 200, "exp an hour ahead (Authlib)");
    let app = spawn_app_with(&patch("client_auth: {assertion_max_lifetime: 300}")).await;
    assert_eq!(status(&app, sign(&app, "one-hour", Some(3600))).await, 401, "beyond a lower maximum");
    assert_eq!(status(&app, sign(&app, "five-minutes", Some(300))).await, 200);
}

// ---- Item 5: nothing secret in the log, at any level ----

const STRONG: &str = "Correct-Horse-Battery-Staple-42";
const NEW_PASSWORD: &str = "another brand new passphrase 9";

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.cookies().map(|c| c.value().to_string()).filter(|v| v.len() >= 8).collect()
}

/// Registration with an emailed code, a second address, password recovery, sign-in, the
/// authorization code, refresh, introspection, revocation, the compat login and refresh, a
/// confidential client's secret and a registered client's new secret — all with the log captured
/// at trace level from every crate: none of the secrets handled appears in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_any_level() {
    use crate::email::{Smtp, code_of, smtp_config};
    let log = crate::helpers::LogCapture::start();
    let smtp = Smtp::start();
    let (endpoint, _calls) = crate::register::fake_homeserver().await;
    let patch = crate::helpers::merged_yaml(
        &clients_patch(),
        &format!(
            r#"
account:
  password_registration_enabled: true
  password_registration_email_required: true
  password_recovery_enabled: true
matrix:
  endpoint: "{endpoint}"
{email}
rate_limiting:
  registration: {{burst: 1000, per_second: 100}}
  account_recovery:
    per_ip: {{burst: 1000, per_second: 100}}
    per_address: {{burst: 1000, per_second: 100}}
  email_authentication:
    per_ip: {{burst: 1000, per_second: 100}}
    per_address: {{burst: 1000, per_second: 100}}
"#,
            email = smtp_config(smtp.port)
        ),
    );
    let app = spawn_app_with(&patch).await;
    let mut secrets: Vec<String> = vec![
        PASSWORD.into(),
        STRONG.into(),
        NEW_PASSWORD.into(),
        CONFIDENTIAL_SECRET.into(),
        crate::helpers::MATRIX_SECRET.into(),
        crate::helpers::SYNAPSE_CLIENT_SECRET.into(),
    ];
    register_user(&app, "alice", PASSWORD, false).await;

    // Sign-up with an emailed code.
    let browser = app.new_client();
    let (_, html) = crate::flows::get(&app, &browser, "/register").await;
    let csrf = csrf_of(&html);
    secrets.push(csrf.clone());
    let form = [
        ("csrf", csrf.as_str()),
        ("username", "dora"),
        ("email", "dora@example.org"),
        ("password", STRONG),
        ("password_confirm", STRONG),
    ];
    let res = post(&app, &browser, "/register", &form).await;
    assert_eq!(res.status(), 303);
    secrets.extend(set_cookies(&res));
    let verify = location(&res);
    let code = code_of(&smtp.wait_for(1).await);
    let res = post(&app, &browser, &verify, &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(res.status(), 303, "sign-up");
    secrets.extend(set_cookies(&res));
    secrets.push(code);

    // A second address on the account page.
    let csrf = csrf_of(&crate::flows::get(&app, &browser, "/account/emails").await.1);
    let res = post(&app, &browser, "/account/emails/add", &[("csrf", &csrf), ("email", "dora2@example.org")]).await;
    let verify = location(&res);
    let code = code_of(&smtp.wait_for(2).await);
    let res = post(&app, &browser, &verify, &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(res.status(), 303, "address added");
    secrets.push(code);

    // Password recovery by email.
    let stranger = app.new_client();
    let csrf = csrf_of(&crate::flows::get(&app, &stranger, "/recover").await.1);
    let (status, _) = post_text(&app, &stranger, "/recover", &[("csrf", &csrf), ("email", "dora@example.org")]).await;
    assert_eq!(status, 200);
    let mail = smtp.wait_for(3).await;
    let text = mail["text"].as_str().unwrap();
    let url = text.split_whitespace().find(|w| w.contains("/recover/")).expect("recovery link");
    let link = url.strip_prefix(&app.base).unwrap().to_string();
    secrets.push(link.trim_start_matches("/recover/").to_string());
    let form = [("csrf", csrf.as_str()), ("new_password", NEW_PASSWORD), ("new_password_confirm", NEW_PASSWORD)];
    let (status, html) = post_text(&app, &stranger, &link, &form).await;
    assert!(status == 200 || status == 303, "{status}: {html}");

    // Sign-in, the code grant, refresh, introspection, revocation.
    let (params, p) = authorize_code(&app, PUBLIC_CLIENT, REDIRECT, API, &[], ("alice", PASSWORD)).await;
    let code = params["code"].clone();
    let res = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, &code, &p.verifier).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    secrets.extend([code, p.verifier.clone(), p.challenge.clone()]);
    let res = refresh(&app, str_of(&tokens, "refresh_token")).await;
    let refreshed: Value = res.json().await.unwrap();
    assert_eq!(introspect(&app, str_of(&refreshed, "access_token")).await["active"], true);
    assert_eq!(revoke(&app, str_of(&refreshed, "refresh_token")).await.status(), 200);
    for t in [&tokens, &refreshed] {
        secrets.extend([str_of(t, "access_token").to_string(), str_of(t, "refresh_token").to_string()]);
    }

    // The compat login and refresh.
    let body = serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "refresh_token": true});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let compat: Value = res.json().await.unwrap();
    assert_eq!(introspect(&app, str_of(&compat, "access_token")).await["active"], true);
    let res = compat_refresh(&app, str_of(&compat, "refresh_token")).await;
    let compat2: Value = res.json().await.unwrap();
    for t in [&compat, &compat2] {
        secrets.extend([str_of(t, "access_token").to_string(), str_of(t, "refresh_token").to_string()]);
    }
    // A wrong password is not logged either.
    let wrong = serde_json::json!({"type": "m.login.password", "user": "alice", "password": "wrong-password-1234"});
    let _ = app.client.post(app.url("/_matrix/client/v3/login")).json(&wrong).send().await.unwrap();
    secrets.push("wrong-password-1234".into());

    // A confidential client's secret, and a registered client's new one.
    let res = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CONFIDENTIAL_CLIENT),
            ("client_secret", CONFIDENTIAL_SECRET),
        ],
    )
    .await;
    let cc: Value = res.json().await.unwrap();
    secrets.push(str_of(&cc, "access_token").to_string());
    let dcr = serde_json::json!({"client_uri": "https://bot.example.com", "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post"});
    let res = app.client.post(app.url("/oauth2/registration")).json(&dcr).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let registered: Value = res.json().await.unwrap();
    secrets.push(str_of(&registered, "client_secret").to_string());

    app.stop().await;
    let text = log.text();
    drop(log);
    assert!(text.contains("email sent"), "the capture works: {} bytes", text.len());
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "below info is captured");
    let leaked: Vec<&String> = secrets.iter().filter(|s| text.contains(s.as_str())).collect();
    let lines: Vec<&str> = text.lines().filter(|l| leaked.iter().any(|s| l.contains(s.as_str()))).take(10).collect();
    assert!(leaked.is_empty(), "secrets in the log: {leaked:?}\n{}", lines.join("\n"));
}
