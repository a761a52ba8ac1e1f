//! What the token endpoint refuses, and what a refusal leaves behind: a code of another client,
//! an expired code, a missing `code_verifier`, a `redirect_uri` that differs from the one of the
//! authorization request (omitting it: `security.rs`), a refresh that widens the scope, a denied
//! device code, a denied consent;
//! and after a code reuse or a refresh-token replay, what happens to the session, its refresh
//! token and its device on the homeserver (the recording fake here; real Synapse in
//! `e2e_lifecycle.rs`).

use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, merged_yaml, spawn_app_with};
use crate::register::{Calls, fake_homeserver};

const PASSWORD: &str = "correct horse battery";
const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
const DEVICE_PREFIX: &str = "urn:matrix:org.matrix.msc2967.client:device:";

async fn app() -> (TestApp, Calls) {
    let (endpoint, calls) = fake_homeserver().await;
    let app = spawn_app_with(&merged_yaml(&clients_patch(), &format!("matrix: {{endpoint: \"{endpoint}\"}}"))).await;
    register_user(&app, "alice", PASSWORD, false).await;
    (app, calls)
}

/// The status and JSON body of a token-endpoint answer.
async fn answer(res: reqwest::Response) -> (u16, Value) {
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn expect_error(res: reqwest::Response, status: u16, error: &str, what: &str) {
    let (s, body) = answer(res).await;
    assert_eq!((s, body["error"].as_str()), (status, Some(error)), "{what}: {body}");
    assert!(body.get("access_token").is_none(), "{what}: {body}");
}

/// The devices of alice's `sync_devices` calls from `from` on.
fn device_syncs(calls: &Calls, from: usize) -> Vec<Value> {
    let calls = calls.lock().unwrap();
    calls[from..]
        .iter()
        .filter(|(call, body)| call == "sync_devices" && body["localpart"] == "alice")
        .map(|(_, body)| body["devices"].clone())
        .collect()
}

#[tokio::test]
async fn a_code_of_another_client_an_expired_code_a_missing_verifier_and_another_redirect_uri_are_refused() {
    let (app, _) = app().await;
    let creds = ("alice", PASSWORD);

    // Issued to the public client, presented by the confidential one: refused, and the code is
    // not burnt for its own client.
    let (params, p) = authorize_code(&app, PUBLIC_CLIENT, REDIRECT, API, &[], creds).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", CONFIDENTIAL_CLIENT),
        ("client_secret", CONFIDENTIAL_SECRET),
        ("code_verifier", p.verifier.as_str()),
    ];
    expect_error(token_request(&app, &form).await, 400, "invalid_grant", "another client's code").await;
    // Missing code_verifier for a code with a challenge.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", PUBLIC_CLIENT),
    ];
    expect_error(token_request(&app, &form).await, 400, "invalid_request", "no code_verifier").await;
    // Another of the client's registered redirect URIs than the one /authorize was given.
    let res = exchange_code(&app, PUBLIC_CLIENT, LOOPBACK_REDIRECT, &params["code"], &p.verifier).await;
    expect_error(res, 400, "invalid_grant", "a redirect_uri mismatch").await;
    let (s, body) = answer(exchange_code(&app, PUBLIC_CLIENT, REDIRECT, &params["code"], &p.verifier).await).await;
    assert_eq!(s, 200, "the code's own client after the refusals: {body}");

    // Ten minutes is the code's life.
    let (params, p) = authorize_code(&app, PUBLIC_CLIENT, REDIRECT, API, &[], creds).await;
    app.clock.advance(601);
    let res = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, &params["code"], &p.verifier).await;
    expect_error(res, 400, "invalid_grant", "an expired code").await;
}

#[tokio::test]
async fn a_refresh_cannot_widen_the_scope() {
    let (app, _) = app().await;
    let device = format!("{DEVICE_PREFIX}WIDENDEV01");
    let tokens = code_login(&app, "alice", PASSWORD, &format!("{API} {device}")).await;
    let r1 = tokens["refresh_token"].as_str().unwrap();
    let wider = format!("{API} {device} urn:synapse:admin:*");
    let form =
        [("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", PUBLIC_CLIENT), ("scope", &wider)];
    expect_error(token_request(&app, &form).await, 400, "invalid_scope", "a wider scope").await;
    let (status, body) = answer(refresh(&app, r1).await).await;
    assert_eq!(status, 200, "{body}");
    let info = introspect(&app, body["access_token"].as_str().unwrap()).await;
    assert!(!info["scope"].as_str().unwrap().contains("urn:synapse:admin:*"), "{info}");
    // A narrower scope is fine.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ("client_id", PUBLIC_CLIENT),
        ("scope", API),
    ];
    let (status, body) = answer(token_request(&app, &form).await).await;
    assert_eq!(status, 200, "a narrower scope: {body}");
}

#[tokio::test]
async fn a_denied_device_code_and_a_denied_consent_reach_the_client() {
    let (app, _) = app().await;
    // Device code: the user denies on /device/{id}; the next poll says access_denied, for good.
    let start = start_device(&app, API).await;
    let device_code = start["device_code"].as_str().unwrap().to_string();
    let browser = signed_in(&app, "alice", PASSWORD).await;
    let html = browser.get(app.url("/link")).send().await.unwrap().text().await.unwrap();
    let user_code = start["user_code"].as_str().unwrap();
    let res = post(&app, &browser, "/link", &[("csrf", &csrf_of(&html)), ("code", user_code)]).await;
    let consent = location(&res);
    let html = browser.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    let (status, page) = post_text(&app, &browser, &consent, &[("csrf", &csrf_of(&html)), ("decision", "deny")]).await;
    assert_eq!(status, 200, "{page}");
    for _ in 0..2 {
        app.clock.advance(6);
        let body = poll_device(&app, &device_code).await;
        assert_eq!(body["error"], "access_denied", "{body}");
        assert!(body.get("access_token").is_none());
    }

    // Consent: "deny" sends access_denied back to the client with its state; the grant is over.
    let p = pkce();
    let query = [
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", API),
        ("state", "st8"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let url = reqwest::Url::parse_with_params(&app.url("/authorize"), query).unwrap();
    let consent = location(&browser.get(url).send().await.unwrap());
    assert!(consent.starts_with("/consent/"), "{consent}");
    let html = browser.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    let res = post(&app, &browser, &consent, &[("csrf", &csrf_of(&html)), ("decision", "deny")]).await;
    let back = location(&res);
    assert!(back.starts_with(REDIRECT), "{back}");
    let params = redirect_params(&back);
    assert_eq!(params.get("error").map(String::as_str), Some("access_denied"), "{back}");
    assert_eq!(params.get("state").map(String::as_str), Some("st8"), "{back}");
    assert!(!params.contains_key("code"), "{back}");
    let res = post(&app, &browser, &consent, &[("csrf", &csrf_of(&html)), ("decision", "allow")]).await;
    assert!(res.status().is_client_error(), "a denied grant was allowed afterwards: {}", res.status());
}

#[tokio::test]
async fn a_reused_code_ends_the_session_its_refresh_token_and_its_device() {
    let (app, calls) = app().await;
    let scope = format!("{API} {DEVICE_PREFIX}REUSEDEV01");
    let (params, p) = authorize_code(&app, PUBLIC_CLIENT, REDIRECT, &scope, &[], ("alice", PASSWORD)).await;
    let (status, tokens) =
        answer(exchange_code(&app, PUBLIC_CLIENT, REDIRECT, &params["code"], &p.verifier).await).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(introspect(&app, access).await["active"], true);

    let before = calls.lock().unwrap().len();
    let res = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, &params["code"], &p.verifier).await;
    expect_error(res, 400, "invalid_grant", "a reused code").await;
    assert_eq!(introspect(&app, access).await["active"], false, "the access token outlived the reuse");
    assert_eq!(introspect_any(&app, refresh_token).await["active"], false, "the refresh token outlived the reuse");
    expect_error(refresh(&app, refresh_token).await, 400, "invalid_grant", "refresh after the reuse").await;
    // The device is gone from the homeserver before the answer.
    assert_eq!(device_syncs(&calls, before), [json!([])], "the session's device after the code reuse");
}

#[tokio::test]
async fn a_replayed_refresh_token_ends_the_session_its_refresh_token_and_its_device() {
    let (app, calls) = app().await;
    let tokens = code_login(&app, "alice", PASSWORD, &format!("{API} {DEVICE_PREFIX}REPLAYDEV1")).await;
    let stolen = tokens["refresh_token"].as_str().unwrap();
    let (status, current) = answer(refresh(&app, stolen).await).await;
    assert_eq!(status, 200, "{current}");
    let (access, refresh_token) =
        (current["access_token"].as_str().unwrap(), current["refresh_token"].as_str().unwrap());
    assert_eq!(introspect(&app, access).await["active"], true, "the client uses its new token");

    let before = calls.lock().unwrap().len();
    expect_error(refresh(&app, stolen).await, 400, "invalid_grant", "a replayed refresh token").await;
    assert_eq!(introspect(&app, access).await["active"], false, "the access token outlived the replay");
    assert_eq!(introspect_any(&app, refresh_token).await["active"], false, "the refresh token outlived the replay");
    expect_error(refresh(&app, refresh_token).await, 400, "invalid_grant", "refresh after the replay").await;
    assert_eq!(device_syncs(&calls, before), [json!([])], "the session's device after the replay");
}
