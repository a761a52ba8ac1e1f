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
