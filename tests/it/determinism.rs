//! Time and randomness are injected (issue 15): two fresh servers with the same pinned clock and
//! the same seeded rng (`App::build_with`), given the same requests, mint the same IDs, codes and
//! tokens. A direct `Ulid::new()` or `OsRng` in a request path breaks this (and the source scan
//! in `layering.rs`).

use serde_json::{Value, json};

use crate::flows::{PUBLIC_CLIENT, REDIRECT, authorize_code, clients_patch, exchange_code, register_user};
use crate::helpers::{TestApp, spawn_app_pinned};

const START: i64 = 1_900_000_000;
const SEED: u64 = 15;
const PASSWORD: &str = "correct horse battery staple";

/// What the server handed out during one scripted session, in order.
async fn script(app: &TestApp) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    register_user(app, "alice", PASSWORD, false).await;
    let alice = app.state.store.read(|c| appliance::store::users::by_username(c, "alice")).await.unwrap().unwrap();
    out.push(("user id", json!(alice.id)));

    // Dynamic client registration: the client ID and secret.
    let metadata = json!({"client_name": "Det", "client_uri": "https://det.example.org",
        "redirect_uris": ["https://det.example.org/cb"], "application_type": "web",
        "token_endpoint_auth_method": "client_secret_basic", "grant_types": ["authorization_code"],
        "response_types": ["code"]});
    let res = app.client.post(app.url("/oauth2/registration")).json(&metadata).send().await.unwrap();
    let registered: Value = res.json().await.unwrap();
    out.push(("registered client_id", registered["client_id"].clone()));
    out.push(("registered client_secret", registered["client_secret"].clone()));

    // An authorization-code flow: the code, then the tokens.
    let scope = "openid urn:matrix:client:api:* urn:matrix:client:device:DETDEVICE1";
    let (params, pkce) = authorize_code(app, PUBLIC_CLIENT, REDIRECT, scope, &[], ("alice", PASSWORD)).await;
    out.push(("authorization code", json!(params["code"])));
    let res = exchange_code(app, PUBLIC_CLIENT, REDIRECT, &params["code"], &pkce.verifier).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    out.push(("access token", tokens["access_token"].clone()));
    out.push(("refresh token", tokens["refresh_token"].clone()));

    // A compat login without a device ID: the generated device and the token.
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "refresh_token": true});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&login).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let compat: Value = res.json().await.unwrap();
    for key in ["device_id", "access_token", "refresh_token"] {
        out.push((key, compat[key].clone()));
    }

    // The session rows behind them.
    let sessions = app
        .state
        .store
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT oauth2_session_id FROM oauth2_sessions UNION ALL SELECT compat_session_id FROM compat_sessions
                 UNION ALL SELECT user_session_id FROM user_sessions ORDER BY 1",
            )?;
            let ids = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
        .unwrap();
    out.push(("session ids", json!(sessions)));
    out
}

#[tokio::test]
async fn a_pinned_clock_and_rng_give_the_same_ids_and_tokens() {
    let first = script(&spawn_app_pinned(&clients_patch(), START, SEED).await).await;
    let second = script(&spawn_app_pinned(&clients_patch(), START, SEED).await).await;
    for ((what, a), (_, b)) in first.iter().zip(&second) {
        assert!(a.is_string() || a.is_array(), "{what}: {a}");
        assert_eq!(a, b, "{what} differs between two servers with the same clock and seed");
    }
    // Another seed, other values (the seed is really used).
    let other = script(&spawn_app_pinned(&clients_patch(), START, SEED + 1).await).await;
    assert_ne!(first[0], other[0]);
    assert_ne!(first[3], other[3]);
}
