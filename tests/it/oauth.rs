//! The OAuth 2.0 provider: every grant, and the negative tables.

use serde_json::Value;

use crate::flows::*;
use crate::helpers::{MATRIX_SECRET, SYNAPSE_CLIENT_ID, SYNAPSE_CLIENT_SECRET, TestApp, spawn_app_with};

const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
const DEVICE: &str = "urn:matrix:org.matrix.msc2967.client:device:ABCDEFGHIJ";

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", "correct horse battery", false).await;
    app
}

#[tokio::test]
async fn element_x_style_login_introspects_field_by_field() {
    let app = app().await;
    let scope = format!("{API} {DEVICE}");
    let tokens = code_login(&app, "alice", "correct horse battery", &scope).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert!(tokens["refresh_token"].as_str().unwrap().starts_with("mar_"));
    assert!(tokens.get("id_token").is_none(), "no openid scope, no ID token");
    let access = tokens["access_token"].as_str().unwrap();
    assert!(access.starts_with("mat_"));

    let info = introspect(&app, access).await;
    let obj = info.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["active", "client_id", "exp", "expires_in", "iat", "jti", "nbf", "scope", "sub", "token_type", "username"]
    );
    assert_eq!(info["active"], true);
    assert_eq!(info["username"], "alice");
    assert_eq!(info["client_id"], PUBLIC_CLIENT);
    assert_eq!(info["token_type"], "access_token");
    assert!(info["expires_in"].is_i64(), "expires_in must be an integer");
    assert_eq!(info["exp"].as_i64().unwrap() - info["iat"].as_i64().unwrap(), 300);
    let scopes: Vec<&str> = info["scope"].as_str().unwrap().split(' ').collect();
    for s in [API, DEVICE, "urn:matrix:client:api:*", "urn:matrix:client:device:ABCDEFGHIJ"] {
        assert!(scopes.contains(&s), "{s} missing from {scopes:?}");
    }
    assert_eq!(info["sub"].as_str().unwrap().len(), 26);

    // The refresh token introspects as a refresh token.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = introspect_with(&app, refresh, None, false).await;
    assert_eq!(r["token_type"], "refresh_token");
    // A hint that disagrees makes it inactive.
    assert_eq!(introspect(&app, refresh).await, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn introspection_callers_and_garbage() {
    let app = app().await;
    let tokens = code_login(&app, "alice", "correct horse battery", API).await;
    let access = tokens["access_token"].as_str().unwrap();
    // The legacy Synapse client with client_secret_basic.
    let r = app
        .client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(SYNAPSE_CLIENT_ID, Some(SYNAPSE_CLIENT_SECRET))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    // Wrong shared secret → 401 access_denied; public client → 401.
    let r = app
        .client
        .post(app.url("/oauth2/introspect"))
        .bearer_auth("nope")
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "access_denied");
    let r = app
        .client
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", access), ("client_id", PUBLIC_CLIENT)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(app.url("/oauth2/introspect"))
        .basic_auth(SYNAPSE_CLIENT_ID, Some("wrong"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    // Token problems are 200 {"active": false}.
    let mut tampered = access.to_string();
    tampered.replace_range(6..7, if &access[6..7] == "A" { "B" } else { "A" });
    for t in ["garbage", "mat_xxx", tampered.as_str(), "mat_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_000000"] {
        assert_eq!(introspect(&app, t).await, serde_json::json!({"active": false}), "{t}");
    }
    // Missing token → 400.
    let r = app
        .client
        .post(app.url("/oauth2/introspect"))
        .bearer_auth(MATRIX_SECRET)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn tokens_expire_and_locked_users_are_inactive() {
    let app = app().await;
    let tokens = code_login(&app, "alice", "correct horse battery", API).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, access).await["active"], true);
    appliance::lifecycle::users::set_locked(&app.state.store, app.state.clock.as_ref(), "alice", true).await.unwrap();
    assert_eq!(introspect(&app, access).await["active"], false);
    appliance::lifecycle::users::set_locked(&app.state.store, app.state.clock.as_ref(), "alice", false).await.unwrap();
    assert_eq!(introspect(&app, access).await["active"], true);
    app.clock.advance(301);
    assert_eq!(introspect(&app, access).await["active"], false);
}

#[tokio::test]
async fn refresh_rotation_and_replay_tolerance() {
    let app = app().await;
    let tokens = code_login(&app, "alice", "correct horse battery", API).await;
    let r1 = tokens["refresh_token"].as_str().unwrap();
    let res = refresh(&app, r1).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let t2: Value = res.json().await.unwrap();
    let a2 = t2["access_token"].as_str().unwrap().to_string();
    // The old access token is revoked by the rotation.
    assert_eq!(introspect(&app, tokens["access_token"].as_str().unwrap()).await["active"], false);
    // Lost response (or a concurrent refresh): r1 again while a2 is unused → a fresh pair; a2
    // keeps working (the racing request's answer must not log the client out).
    let res = refresh(&app, r1).await;
    assert_eq!(res.status(), 200, "replay tolerated while the successor is unused");
    let t3: Value = res.json().await.unwrap();
    let a3 = t3["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, a3).await["active"], true);
    assert_eq!(introspect(&app, &a2).await["active"], true);
    // Once a successor was used, replaying r1 fails and ends the session (RFC 9700 §4.14.2).
    let res = refresh(&app, r1).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(introspect(&app, a3).await["active"], false);
    // Another client cannot use the token.
    let res = token_request(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t3["refresh_token"].as_str().unwrap()),
            ("client_id", CONFIDENTIAL_CLIENT),
            ("client_secret", CONFIDENTIAL_SECRET),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn code_is_single_use_and_reuse_ends_the_session() {
    let app = app().await;
    let (params, p) = authorize_code(&app, PUBLIC_CLIENT, REDIRECT, API, &[], ("alice", "correct horse battery")).await;
    let code = &params["code"];
    let wrong = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, code, &"x".repeat(50)).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let ok = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, code, &p.verifier).await;
    assert_eq!(ok.status(), 200);
    let tokens: Value = ok.json().await.unwrap();
    let again = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, code, &p.verifier).await;
    assert_eq!(again.status(), 400);
    assert_eq!(
        introspect(&app, tokens["access_token"].as_str().unwrap()).await["active"],
        false,
        "reuse ends the session"
    );
}

#[tokio::test]
async fn authorize_negative_table() {
    let app = app().await;
    let client = app.new_client();
    let p = pkce();
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut q: Vec<(&str, String)> = vec![
            ("client_id", PUBLIC_CLIENT.into()),
            ("redirect_uri", REDIRECT.into()),
            ("response_type", "code".into()),
            ("scope", API.into()),
            ("state", "s1".into()),
            ("code_challenge", p.challenge.clone()),
            ("code_challenge_method", "S256".into()),
        ];
        for (k, v) in extra {
            q.retain(|(kk, _)| kk != k);
            if !v.is_empty() {
                q.push((k, v.to_string()));
            }
        }
        reqwest::Url::parse_with_params(&app.url("/authorize"), q).unwrap()
    };
    // Page errors: the redirect URI cannot be trusted.
    for extra in [
        vec![("client_id", "01J00000000000000000000000")],
        vec![("redirect_uri", "https://evil.example/callback")],
        vec![("redirect_uri", "https://app.example.org/callback/extra")],
        vec![("client_id", "")],
    ] {
        let res = client.get(base(&extra)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{extra:?}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    // Redirected errors.
    for (extra, error) in [
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("scope", "urn:matrix:client:device:SHORT urn:matrix:client:api:*")], "invalid_scope"),
        (vec![("scope", "openid urn:matrix:client:api:* urn:matrix:org.matrix.msc2967.client:api:*")], "invalid_scope"),
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("prompt", "none")], "login_required"),
        (vec![("request", "eyJ")], "request_not_supported"),
        (vec![("response_mode", "weird")], "invalid_request"),
    ] {
        let res = client.get(base(&extra)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{extra:?}");
        let params = redirect_params(&location(&res));
        assert_eq!(params.get("error").map(String::as_str), Some(error), "{extra:?}: {params:?}");
        assert_eq!(params.get("state").map(String::as_str), Some("s1"));
    }
    // Loopback redirect URIs may use any port (RFC 8252).
    let res = client.get(base(&[("redirect_uri", "http://127.0.0.1:43123/callback")])).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login"));
}

#[tokio::test]
async fn openid_id_token_and_userinfo() {
    let app = app().await;
    let credentials = ("alice", "correct horse battery");
    let nonce = ("nonce", "n-0S6_WzA2Mj");
    let (params, p) = authorize_code(&app, CONFIDENTIAL_CLIENT, REDIRECT, "openid email", &[nonce], credentials).await;
    let res = token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &params["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", CONFIDENTIAL_CLIENT),
            ("client_secret", CONFIDENTIAL_SECRET),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["iss"], app.url("/"));
    assert_eq!(claims["aud"], CONFIDENTIAL_CLIENT);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    for c in ["sub", "exp", "iat", "auth_time", "at_hash", "c_hash"] {
        assert!(claims.get(c).is_some(), "{c} missing from {claims}");
    }
    let info: Value = app
        .client
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["username"], "alice");
    assert_eq!(info["sub"], claims["sub"]);
}

#[tokio::test]
async fn client_credentials_and_client_auth_failures() {
    let app = app().await;
    let ok = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CONFIDENTIAL_CLIENT),
            ("client_secret", CONFIDENTIAL_SECRET),
        ],
    )
    .await;
    assert_eq!(ok.status(), 200);
    let tokens: Value = ok.json().await.unwrap();
    assert!(tokens.get("refresh_token").is_none());
    let info = introspect(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    assert!(info.get("username").is_none());
    for (form, status, error) in [
        (
            vec![("grant_type", "client_credentials"), ("client_id", CONFIDENTIAL_CLIENT), ("client_secret", "bad")],
            401,
            "invalid_client",
        ),
        (vec![("grant_type", "client_credentials"), ("client_id", PUBLIC_CLIENT)], 400, "unauthorized_client"),
        (
            vec![("grant_type", "client_credentials"), ("client_id", "01J00000000000000000000000")],
            401,
            "invalid_client",
        ),
        (vec![("grant_type", "password"), ("client_id", PUBLIC_CLIENT)], 400, "unsupported_grant_type"),
        (vec![("client_id", PUBLIC_CLIENT)], 400, "invalid_request"),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", CONFIDENTIAL_CLIENT),
                ("client_secret", CONFIDENTIAL_SECRET),
                ("scope", "urn:matrix:client:api:*"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![("grant_type", "client_credentials"), ("client_id", CONFIDENTIAL_CLIENT), ("client_assertion", "abc")],
            400,
            "invalid_request",
        ),
    ] {
        let res = token_request(&app, &form).await;
        assert_eq!(res.status(), status, "{form:?}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], error, "{form:?}");
    }
    // Basic auth for a client_secret_post client is the wrong method.
    let res = client_credentials_basic(&app, CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn revoke_ends_the_session() {
    let app = app().await;
    let tokens = code_login(&app, "alice", "correct horse battery", &format!("{API} {DEVICE}")).await;
    let res = revoke(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&app, tokens["access_token"].as_str().unwrap()).await["active"], false);
    // Unknown tokens are fine (RFC 7009).
    let res = revoke(&app, "whatever").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn device_code_grant() {
    let app = app().await;
    let start = start_device(&app, &format!("{API} {DEVICE}")).await;
    let device_code = start["device_code"].as_str().unwrap().to_string();
    assert_eq!(start["verification_uri"], app.url("/link"));
    assert_eq!(start["interval"], 5);
    let poll = || poll_device(&app, &device_code);
    assert_eq!(poll().await["error"], "authorization_pending");
    assert_eq!(poll().await["error"], "slow_down");
    // The user enters the code on /link.
    let browser = app.new_client();
    let res = login(&app, &browser, "/link", "alice", "correct horse battery").await;
    assert_eq!(location(&res), "/link");
    let html = browser.get(app.url("/link")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    let user_code = start["user_code"].as_str().unwrap().to_lowercase();
    let res =
        browser.post(app.url("/link")).form(&[("csrf", csrf.as_str()), ("code", &user_code)]).send().await.unwrap();
    let consent = location(&res);
    assert!(consent.starts_with("/device/"));
    let html = browser.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Test App"));
    let res = browser
        .post(app.url(&consent))
        .form(&[("csrf", csrf_of(&html).as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.clock.advance(6);
    let tokens = poll().await;
    assert!(tokens["access_token"].as_str().unwrap().starts_with("mat_"), "{tokens}");
    assert_eq!(introspect(&app, tokens["access_token"].as_str().unwrap()).await["username"], "alice");
    assert_eq!(poll().await["error"], "invalid_grant", "a device code is single use");

    // An expired code.
    let start = start_device(&app, API).await;
    app.clock.advance(1201);
    let res = poll_device(&app, start["device_code"].as_str().unwrap()).await;
    assert_eq!(res["error"], "expired_token");
}

#[tokio::test]
async fn login_form_csrf_and_wrong_password() {
    let app = app().await;
    let client = app.new_client();
    // No CSRF token: refused.
    let res = client
        .post(app.url("/login"))
        .form(&[("username", "alice"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = client.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    for (user, pass) in [("alice", "wrong"), ("nobody", "whatever"), ("@alice:elsewhere", "correct horse battery")] {
        let res = client
            .post(app.url("/login"))
            .form(&[("csrf", csrf.as_str()), ("username", user), ("password", pass)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.text().await.unwrap().contains("Invalid username or password"));
    }
    // Full MXID works; cross-site posts are refused.
    let res = client
        .post(app.url("/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str()), ("username", "@alice:localhost"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = client
        .post(app.url("/login"))
        .form(&[("csrf", csrf.as_str()), ("username", "@alice:localhost"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let csp = client.get(app.url("/login")).send().await.unwrap().headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
}

#[tokio::test]
async fn login_is_rate_limited() {
    let app = spawn_app_with("rate_limiting: {login: {per_ip: {burst: 3, per_second: 0.001}}}").await;
    register_user(&app, "bob", "secret secret", false).await;
    let client = app.new_client();
    let csrf = csrf_of(&client.get(app.url("/login")).send().await.unwrap().text().await.unwrap());
    let mut last = String::new();
    for _ in 0..4 {
        last = client
            .post(app.url("/login"))
            .form(&[("csrf", csrf.as_str()), ("username", "bob"), ("password", "nope")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(last.contains("Too many attempts"));
}
