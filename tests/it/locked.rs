//! A locked user: refused on the login page, on the refresh grant (OAuth and compat) and at
//! `/authorize` even with a browser session from before the lock; unlocking restores access.

use appliance::lifecycle::users;
use serde_json::Value;

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

const PASSWORD: &str = "correct horse battery";
const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

async fn set_locked(app: &TestApp, locked: bool) {
    let alice = users::find(&app.state.store, "alice").await.unwrap();
    let lc = &app.state.lifecycle;
    if locked {
        users::lock(lc, &alice.id).await.unwrap()
    } else {
        users::unlock(lc, &alice.id).await.unwrap()
    };
}

#[tokio::test]
async fn a_locked_user_cannot_sign_in_on_the_login_page() {
    let app = app().await;
    set_locked(&app, true).await;
    let browser = app.new_client();
    let res = login(&app, &browser, "/account/", "alice", PASSWORD).await;
    assert_eq!(res.status(), 401);
    let html = res.text().await.unwrap();
    assert!(html.contains("This account is locked"), "{html}");
    assert!(location(&browser.get(app.url("/account/")).send().await.unwrap()).starts_with("/login"));
    // A wrong password says nothing about the lock.
    let res = login(&app, &app.new_client(), "/account/", "alice", "wrong").await;
    assert!(!res.text().await.unwrap().contains("locked"));

    set_locked(&app, false).await;
    assert_eq!(login(&app, &browser, "/account/", "alice", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn a_locked_user_cannot_refresh() {
    let app = app().await;
    let tokens = code_login(&app, "alice", PASSWORD, API).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    let compat = app
        .client
        .post(app.url("/_matrix/client/v3/login"))
        .json(&serde_json::json!({"type": "m.login.password", "user": "alice", "password": PASSWORD,
            "refresh_token": true}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let compat_refresh_token = compat["refresh_token"].as_str().unwrap().to_string();

    set_locked(&app, true).await;
    let res = refresh(&app, &refresh_token).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 400, "the refresh grant for a locked user: {body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let res = compat_refresh(&app, &compat_refresh_token).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 401, "the compat refresh for a locked user: {body}");
    assert!(body.get("access_token").is_none(), "{body}");

    // The refused refreshes spent nothing: after the unlock both tokens still work.
    set_locked(&app, false).await;
    let res = refresh(&app, &refresh_token).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = compat_refresh(&app, &compat_refresh_token).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn authorize_with_the_browser_session_of_a_locked_user_asks_to_sign_in() {
    let app = app().await;
    let browser = signed_in(&app, "alice", PASSWORD).await;
    let p = pkce();
    let query = [
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", API),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let url = reqwest::Url::parse_with_params(&app.url("/authorize"), query).unwrap();
    // Signed in: straight to the consent page.
    let res = browser.get(url.clone()).send().await.unwrap();
    assert!(location(&res).starts_with("/consent/"), "{}", location(&res));

    set_locked(&app, true).await;
    let res = browser.get(url.clone()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("/login"), "a locked user's browser session went on to {to}");
    // The consent page the session had reached does not issue a code either.
    let consent = {
        let res = browser.get(app.url(&to)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        redirect_params(&format!("http://x{to}"))["next"].clone()
    };
    let res = browser.get(app.url(&consent)).send().await.unwrap();
    assert!(
        res.status() == 303 && location(&res).starts_with("/login"),
        "the consent page for a locked user's session answered {}",
        res.status()
    );
    let res = login(&app, &browser, &consent, "alice", PASSWORD).await;
    assert_eq!(res.status(), 401, "a locked user signed in again");
}
