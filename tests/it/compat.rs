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
