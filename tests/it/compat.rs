//! The Matrix legacy login API: flows, password and token login, refresh, logout, errors.

use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", "correct horse battery", false).await;
    app
}

async fn login(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn flows_are_exactly_the_reference() {
    let app = app().await;
    for v in ["v3", "r0"] {
        let res = app.client.get(app.url(&format!("/_matrix/client/{v}/login"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.text().await.unwrap(),
            r#"{"flows":[{"type":"m.login.password"},{"type":"m.login.sso","oauth_aware_preferred":true,"org.matrix.msc3824.delegated_oidc_compatibility":true},{"type":"m.login.token"}]}"#
        );
    }
}

#[tokio::test]
async fn password_login_refresh_logout() {
    let app = app().await;
    let (status, body) = login(
        &app,
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "correct horse battery",
               "device_id": "BOTDEVICE1", "initial_device_display_name": "Bot", "refresh_token": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_eq!(body["device_id"], "BOTDEVICE1");
    assert_eq!(body["home_server"], "localhost");
    assert_eq!(body["expires_in_ms"], 300_000);
    let access = body["access_token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("mct_") && refresh.starts_with("mcr_"));

    let info = introspect_any(&app, &access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "legacy");
    assert_eq!(info["device_id"], "BOTDEVICE1");
    assert_eq!(info["username"], "alice");
    assert!(!info["scope"].as_str().unwrap().contains("device"), "device in device_id, not scope");
    let info = introspect_with(&app, &access, None, false).await;
    assert!(info["scope"].as_str().unwrap().contains("urn:matrix:client:device:BOTDEVICE1"));
    assert!(info.get("device_id").is_none());

    // Refresh: new pair, the old access token stops at once, the old refresh token is spent.
    let res = compat_refresh(&app, &refresh).await;
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.unwrap();
    assert_eq!(introspect_any(&app, &access).await["active"], false);
    let res = compat_refresh(&app, &refresh).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_UNKNOWN_TOKEN");
    let access2 = r["access_token"].as_str().unwrap();
    assert_eq!(introspect_any(&app, access2).await["active"], true);

    // Logout ends the session.
    let res = app
        .client
        .post(app.url("/_matrix/client/v3/logout"))
        .bearer_auth(access2)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(introspect_any(&app, access2).await["active"], false);
    let res = app.client.post(app.url("/_matrix/client/v3/logout")).bearer_auth(access2).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_UNKNOWN_TOKEN");
    let res = app.client.post(app.url("/_matrix/client/v3/logout")).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_MISSING_TOKEN");
}

#[tokio::test]
async fn login_variants_and_errors() {
    let app = app().await;
    // Legacy `user` field, full MXID, no refresh: a non-expiring token.
    let (status, body) = login(
        &app,
        json!({"type": "m.login.password", "user": "@alice:localhost", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("expires_in_ms").is_none() && body.get("refresh_token").is_none());
    assert_eq!(body["device_id"].as_str().unwrap().len(), 10);
    // Reusing the device id ends the previous session of that device.
    let first = body["access_token"].as_str().unwrap().to_string();
    let device = body["device_id"].as_str().unwrap().to_string();
    let (_, again) = login(
        &app,
        json!({"type": "m.login.password", "user": "alice", "password": "correct horse battery", "device_id": device}),
    )
    .await;
    assert_eq!(again["device_id"], device.as_str());
    assert_eq!(introspect_any(&app, &first).await["active"], false);

    let cases = [
        (json!({"type": "m.login.password", "user": "alice", "password": "wrong"}), 403, "M_FORBIDDEN"),
        (json!({"type": "m.login.password", "user": "nobody", "password": "wrong"}), 403, "M_FORBIDDEN"),
        (
            json!({"type": "m.login.password", "user": "@alice:elsewhere.org", "password": "correct horse battery"}),
            403,
            "M_FORBIDDEN",
        ),
        (json!({"type": "m.login.password", "password": "x"}), 400, "M_BAD_JSON"),
        (
            json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "alice"}}),
            400,
            "M_APPSERVICE_LOGIN_UNSUPPORTED",
        ),
        (json!({"type": "m.login.dummy"}), 400, "M_UNKNOWN"),
        (json!({"type": "m.login.token", "token": "nope"}), 403, "M_FORBIDDEN"),
        (
            json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "password": "x"}),
            400,
            "M_BAD_JSON",
        ),
    ];
    for (body, status, errcode) in cases {
        let (s, b) = login(&app, body.clone()).await;
        assert_eq!((s, b["errcode"].as_str()), (status, Some(errcode)), "{body}");
    }
    let res = app.client.post(app.url("/_matrix/client/v3/login")).body("not json").send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_NOT_JSON");

    appliance::lifecycle::users::set_locked(&app.state.store, app.state.clock.as_ref(), "alice", true).await.unwrap();
    let (s, b) =
        login(&app, json!({"type": "m.login.password", "user": "alice", "password": "correct horse battery"})).await;
    assert_eq!((s, b["errcode"].as_str()), (401, Some("M_USER_LOCKED")));
}

#[tokio::test]
async fn password_login_is_rate_limited() {
    let app = spawn_app_with("rate_limiting: {login: {per_ip: {burst: 2, per_second: 0.001}}}").await;
    register_user(&app, "bob", "secret secret", false).await;
    let mut last = (0, Value::Null);
    for _ in 0..3 {
        last = login(&app, json!({"type": "m.login.password", "user": "bob", "password": "nope"})).await;
    }
    assert_eq!(last.0, 429);
    assert_eq!(last.1["errcode"], "M_LIMIT_EXCEEDED");
    assert!(last.1["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn sso_redirect_login_token_is_single_use() {
    let app = app().await;
    let browser = app.new_client();
    let res = browser
        .get(app.url("/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fclient.example%2Fdone%3Fx%3D1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let confirm = location(&res);
    let path = confirm.trim_start_matches(app.base.as_str());
    assert!(path.starts_with("/complete-compat-sso/"), "{confirm}");
    let res = login_page(&app, &browser, path).await;
    assert_eq!(location(&res), path);
    let html = browser.get(app.url(path)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("client.example"), "the page names the redirect target");
    let res = browser.post(app.url(path)).form(&[("csrf", csrf_of(&html).as_str())]).send().await.unwrap();
    let back = location(&res);
    assert!(back.starts_with("https://client.example/done?x=1&loginToken="), "{back}");
    let token = redirect_params(&back)["loginToken"].clone();
    let (s, body) = login(&app, json!({"type": "m.login.token", "token": token})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    let (s, body) = login(&app, json!({"type": "m.login.token", "token": token})).await;
    assert_eq!((s, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "single use");
    // Bad redirect URLs are refused.
    for bad in ["", "?redirectUrl=https%3A%2F%2Fuser%3Apw%40evil.example%2F", "?redirectUrl=not%20a%20url"] {
        let res = browser.get(app.url(&format!("/_matrix/client/v3/login/sso/redirect{bad}"))).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
}

async fn login_page(app: &TestApp, browser: &reqwest::Client, next: &str) -> reqwest::Response {
    let res = browser.get(app.url(next)).send().await.unwrap();
    assert!(location(&res).starts_with("/login"), "login required first");
    crate::flows::login(app, browser, next, "alice", "correct horse battery").await
}

#[tokio::test]
async fn issue_compatibility_token_cli() {
    let app = app().await;
    let config = app.config_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::helpers::run_cli(
            &config,
            &[
                "manage",
                "issue-compatibility-token",
                "alice",
                "BOTDEVICE9",
                "--yes-i-want-to-grant-synapse-admin-privileges",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("mct_"));
    let info = introspect_any(&app, &token).await;
    assert_eq!(info["device_id"], "BOTDEVICE9");
    assert!(info["scope"].as_str().unwrap().contains("urn:synapse:admin:*"));
    assert!(info.get("expires_in").is_none(), "long-lived");
}

/// A compat password login for `device` with a refresh token: the login answer.
async fn device_login(app: &TestApp, device: &str) -> Value {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse battery", "device_id": device, "refresh_token": true});
    let (status, body) = login(app, body).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn token(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_string()
}

#[tokio::test]
async fn logout_all_ends_every_compat_session_and_nothing_else() {
    let (endpoint, calls) = crate::register::fake_homeserver().await;
    let app = spawn_app_with(&crate::helpers::merged_yaml(
        &clients_patch(),
        &format!("matrix: {{endpoint: \"{endpoint}\"}}"),
    ))
    .await;
    register_user(&app, "alice", "correct horse battery", false).await;
    register_user(&app, "bob", "correct horse battery", false).await;
    let one = device_login(&app, "COMPATONE1").await;
    let two = device_login(&app, "COMPATTWO2").await;
    let oauth = code_login(
        &app,
        "alice",
        "correct horse battery",
        "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:OAUTHDEV01",
    )
    .await;
    let (status, bob) =
        login(&app, json!({"type": "m.login.password", "user": "bob", "password": "correct horse battery"})).await;
    assert_eq!(status, 200, "{bob}");
    let alive = [
        token(&one, "access_token"),
        token(&one, "refresh_token"),
        token(&two, "access_token"),
        token(&two, "refresh_token"),
        token(&oauth, "access_token"),
        token(&bob, "access_token"),
    ];
    for t in &alive {
        assert_eq!(introspect_any(&app, t).await["active"], true, "{t}");
    }
    let logout_all = |body: Value| {
        app.client
            .post(app.url("/_matrix/client/v3/logout/all"))
            .bearer_auth(token(&one, "access_token"))
            .json(&body)
            .send()
    };

    // Without the client's word that only compat sessions are fine, nothing happens (as MAS).
    let res = logout_all(json!({})).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_UNRECOGNIZED");
    for t in &alive {
        assert_eq!(introspect_any(&app, t).await["active"], true, "{t} after a refused logout/all");
    }

    let before = calls.lock().unwrap().len();
    let res = logout_all(json!({"io.element.only_compat_is_fine": true})).await.unwrap();
    assert_eq!(res.status(), 200);
    // Both compat sessions of alice are over: access and refresh tokens.
    for t in &alive[..4] {
        assert_eq!(introspect_any(&app, t).await["active"], false, "{t} after logout/all");
    }
    assert_eq!(compat_refresh(&app, &token(&two, "refresh_token")).await.status(), 401);
    // Her OAuth session and bob's compat session are untouched.
    assert_eq!(introspect_any(&app, &alive[4]).await["active"], true, "alice's OAuth session");
    assert_eq!(introspect_any(&app, &alive[5]).await["active"], true, "bob's compat session");
    // The homeserver keeps only the OAuth session's device (the sync ran before the answer).
    let syncs: Vec<Value> = calls.lock().unwrap()[before..]
        .iter()
        .filter(|(call, body)| call == "sync_devices" && body["localpart"] == "alice")
        .map(|(_, body)| body["devices"].clone())
        .collect();
    assert_eq!(syncs, [json!(["OAUTHDEV01"])], "device syncs after logout/all");
    // The token that asked is dead too.
    let res = logout_all(json!({"io.element.only_compat_is_fine": true})).await.unwrap();
    assert_eq!(res.status(), 401);
}

/// Through the SSO redirect, sign-in and confirmation: the `loginToken` handed to the client.
async fn sso_login_token(app: &TestApp) -> String {
    let browser = app.new_client();
    let res = browser
        .get(app.url("/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fclient.example%2Fdone"))
        .send()
        .await
        .unwrap();
    let path = location(&res).trim_start_matches(app.base.as_str()).to_string();
    login_page(app, &browser, &path).await;
    let html = browser.get(app.url(&path)).send().await.unwrap().text().await.unwrap();
    let res = browser.post(app.url(&path)).form(&[("csrf", csrf_of(&html).as_str())]).send().await.unwrap();
    redirect_params(&location(&res))["loginToken"].clone()
}

#[tokio::test]
async fn the_sso_login_token_expires_after_30_seconds() {
    let app = app().await;
    let late = sso_login_token(&app).await;
    let in_time = sso_login_token(&app).await;
    app.clock.advance(30);
    let (s, body) = login(&app, json!({"type": "m.login.token", "token": in_time})).await;
    assert_eq!(s, 200, "a 30-second-old login token: {body}");
    app.clock.advance(1);
    let (s, body) = login(&app, json!({"type": "m.login.token", "token": late})).await;
    assert_eq!((s, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "a 31-second-old login token: {body}");
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in_and_their_tokens_are_dead() {
    let app = app().await;
    let before = device_login(&app, "BEFOREDEV1").await;
    let sso_token = sso_login_token(&app).await;
    let alice = appliance::lifecycle::users::find(&app.state.store, "alice").await.unwrap();
    appliance::lifecycle::users::deactivate(&app.state.lifecycle, &alice.id, false).await.unwrap();

    let (s, body) =
        login(&app, json!({"type": "m.login.password", "user": "alice", "password": "correct horse battery"})).await;
    assert_eq!((s, body["errcode"].as_str()), (403, Some("M_USER_DEACTIVATED")), "{body}");
    // A wrong password says nothing about the account.
    let (s, body) = login(&app, json!({"type": "m.login.password", "user": "alice", "password": "wrong"})).await;
    assert_eq!((s, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    // A login token issued before the deactivation does not sign in either.
    let (s, body) = login(&app, json!({"type": "m.login.token", "token": sso_token})).await;
    assert_ne!(s, 200, "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(introspect_any(&app, &token(&before, "access_token")).await["active"], false);
    assert_eq!(compat_refresh(&app, &token(&before, "refresh_token")).await.status(), 401);
}

#[tokio::test]
async fn email_login_when_allowed() {
    let patch = crate::helpers::merged_yaml(&clients_patch(), "account: {login_with_email_allowed: true}");
    let app = spawn_app_with(&patch).await;
    let s = &app.state;
    appliance::lifecycle::users::register(
        &s.store,
        &s.passwords,
        s.clock.as_ref(),
        s.rng.as_ref(),
        appliance::lifecycle::users::NewUser {
            username: "alice".into(),
            password: Some("correct horse battery".into()),
            emails: vec!["alice@example.org".into()],
            display_name: None,
            admin: false,
        },
    )
    .await
    .unwrap();
    let by_email = |address: &str, password: &str| {
        json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email",
            "address": address}, "password": password})
    };
    let (s, body) = login(&app, by_email("alice@example.org", "correct horse battery")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_eq!(introspect_any(&app, &token(&body, "access_token")).await["username"], "alice");
    for (body, what) in [
        (by_email("alice@example.org", "wrong"), "a wrong password"),
        (by_email("nobody@example.org", "correct horse battery"), "an unknown address"),
    ] {
        let (s, answer) = login(&app, body).await;
        assert_eq!((s, answer["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{what}: {answer}");
    }
    let msisdn = json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "msisdn",
        "address": "+15550100"}, "password": "correct horse battery"});
    let (s, answer) = login(&app, msisdn).await;
    assert_eq!((s, answer["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "a phone number: {answer}");
}
