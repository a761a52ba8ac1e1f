//! Less travelled corners of the provider: form_post and fragment response modes, webfinger,
//! ES256 ID tokens, browser-session expiry, clean-up of expired rows.

use base64::Engine;
use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", "correct horse battery", false).await;
    app
}

fn base_query<'a>(p: &'a Pkce, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut q = vec![
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    q
}

#[tokio::test]
async fn form_post_and_fragment_response_modes() {
    let app = app().await;
    let client = app.new_client();
    let p = pkce();
    let res = authorize_and_consent(
        &app,
        &client,
        &base_query(&p, &[("response_mode", "form_post")]),
        Some(("alice", "correct horse battery")),
    )
    .await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    // Its form posts to the client, so this page does not limit form targets.
    assert!(!csp.contains("form-action"), "{csp}");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("action=\"{REDIRECT}\"")), "{html}");
    assert!(html.contains("name=\"code\"") && html.contains("value=\"st\""));

    let p = pkce();
    let res = authorize_and_consent(&app, &client, &base_query(&p, &[("response_mode", "fragment")]), None).await;
    let loc = location(&res);
    let fragment = url::Url::parse(&loc).unwrap().fragment().unwrap_or_default().to_string();
    assert!(fragment.contains("code=") && fragment.contains("state=st"), "{loc}");
}

#[tokio::test]
async fn webfinger_names_the_issuer() {
    let app = app().await;
    let rel = "http://openid.net/specs/connect/1.0/issuer";
    let res = app.get(&format!("/.well-known/webfinger?resource=acct:alice@localhost&rel={}", urlencode(rel))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/jrd+json");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["links"], json!([{"rel": rel, "href": app.url("/")}]));
    let v: Value = app.get("/.well-known/webfinger?resource=acct:alice@localhost").await.json().await.unwrap();
    assert_eq!(v["links"], json!([]));
    assert_eq!(app.get("/.well-known/webfinger").await.status(), 400);
}

#[tokio::test]
async fn es256_id_tokens_for_clients_that_ask() {
    let app = app().await;
    let reg: Value = app
        .client
        .post(app.url("/oauth2/registration"))
        .json(&json!({
            "client_name": "ES app", "client_uri": "https://es.example.org/", "application_type": "web",
            "redirect_uris": ["https://es.example.org/cb"], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"], "response_types": ["code"], "id_token_signed_response_alg": "ES256"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().expect("registered");
    let redirect = "https://es.example.org/cb";
    let (params, p) =
        authorize_code(&app, client_id, redirect, "openid", &[], ("alice", "correct horse battery")).await;
    let res = exchange_code(&app, client_id, redirect, &params["code"], &p.verifier).await;
    let tokens: Value = res.json().await.unwrap();
    assert!(tokens.get("refresh_token").is_none(), "the client did not register the refresh_token grant");
    let header = tokens["id_token"].as_str().unwrap().split('.').next().unwrap().to_string();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let jwks: Value = app.get("/oauth2/keys.json").await.json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header["kid"] && k["alg"] == "ES256"));
}

#[tokio::test]
async fn browser_sign_in_expires() {
    let app = spawn_app_with(&format!("{}\nexperimental: {{browser_session_ttl: 3600}}", clients_patch())).await;
    register_user(&app, "alice", "correct horse battery", false).await;
    let browser = app.new_client();
    let res = login(&app, &browser, "/account/", "alice", "correct horse battery").await;
    assert_eq!(res.status(), 303);
    assert_eq!(browser.get(app.url("/account/")).send().await.unwrap().status(), 200);
    app.clock.advance(3601);
    let res = browser.get(app.url("/account/")).send().await.unwrap();
    assert!(location(&res).starts_with("/login"), "an old sign-in asks for the password again");
}

#[tokio::test]
async fn expired_rows_are_cleaned_up() {
    let app = app().await;
    let tokens = code_login(&app, "alice", "correct horse battery", "openid").await;
    let now = app.state.now() + 2 * 3600;
    let removed = app
        .state
        .store
        .write(move |c| {
            Ok(appliance::store::tokens::cleanup(c, now)? + appliance::store::grants::cleanup(c, now + 7 * 86400)?)
        })
        .await
        .unwrap();
    assert!(removed >= 2, "the expired access token and the old grant go (removed {removed})");
    assert_eq!(introspect(&app, tokens["access_token"].as_str().unwrap()).await["active"], false);
    // The refresh token is still usable: only expired or dead rows went.
    let res = refresh(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
}
