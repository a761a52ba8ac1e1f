//! Dynamic client registration (`POST /oauth2/registration`): what Element X and Element Web
//! send, confidential clients, de-duplication and the table of refusals.

use appliance::store::clients as client_store;
use serde_json::{Value, json};

use crate::flows::{
    authorize_and_consent, client_credentials_basic, exchange_code, introspect, location, pkce, redirect_params,
    register_user,
};
use crate::helpers::{TestApp, spawn_app};

/// Element X's registration body (matrix-sdk), as sent to MAS.
fn element_x_body() -> Value {
    json!({
        "client_name": "Element X",
        "client_uri": "https://element.io",
        "application_type": "native",
        "redirect_uris": ["io.element.app:/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
}

/// Element Web's registration body (matrix-js-sdk).
fn element_web_body() -> Value {
    json!({
        "client_name": "Element",
        "client_uri": "https://app.element.io",
        "logo_uri": "https://app.element.io/vector-icons/1024.png",
        "application_type": "web",
        "redirect_uris": ["https://app.element.io/?no_universal_links=true"],
        "token_endpoint_auth_method": "none",
        "id_token_signed_response_alg": "RS256",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "contacts": ["support@element.io"],
        "policy_uri": "https://app.element.io/privacy",
    })
}

async fn register_raw(app: &TestApp, body: &str) -> reqwest::Response {
    app.client
        .post(app.url("/oauth2/registration"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /oauth2/registration")
}

/// Registers `body`; returns the status and the JSON answer.
async fn register(app: &TestApp, body: &Value) -> (u16, Value) {
    let res = register_raw(app, &body.to_string()).await;
    let status = res.status().as_u16();
    assert_eq!(
        res.headers().get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "registration answers must not be cached"
    );
    (status, res.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn element_x_registers_as_a_public_client_and_is_deduplicated() {
    let app = spawn_app().await;
    let (status, first) = register(&app, &element_x_body()).await;
    assert_eq!(status, 201, "{first}");
    let client_id = first["client_id"].as_str().expect("client_id").to_string();
    assert_eq!(client_id.len(), 26);
    assert_eq!(client_id, client_id.to_uppercase());
    assert!(first.get("client_secret").is_none(), "public clients get no secret");
    assert!(first.get("client_secret_expires_at").is_none());
    assert_eq!(first["client_id_issued_at"], json!(app.state.now()));
    assert_eq!(first["application_type"], "native");
    assert_eq!(first["token_endpoint_auth_method"], "none");
    assert_eq!(first["redirect_uris"], json!(["io.element.app:/callback"]));
    assert_eq!(first["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(first["response_types"], json!(["code"]));
    assert_eq!(first["client_name"], "Element X");
    assert_eq!(first["client_uri"], "https://element.io/");

    // The same registration (even with the lists reordered) gets the same client back.
    let (status, again) = register(&app, &element_x_body()).await;
    assert_eq!((status, again["client_id"].as_str()), (201, Some(client_id.as_str())));
    let mut reordered = element_x_body();
    reordered["grant_types"] = json!(["refresh_token", "authorization_code"]);
    reordered["software_id"] = json!("ignored");
    let (_, third) = register(&app, &reordered).await;
    assert_eq!(third["client_id"].as_str(), Some(client_id.as_str()));

    // A different name is a different client.
    let mut renamed = element_x_body();
    renamed["client_name"] = json!("Element X Nightly");
    let (_, other) = register(&app, &renamed).await;
    assert_ne!(other["client_id"].as_str(), Some(client_id.as_str()));

    let id = client_id.clone();
    let stored = app.state.store.read(move |c| client_store::by_id(c, &id)).await.unwrap().expect("client stored");
    assert!(!stored.is_static && stored.encrypted_secret.is_none() && stored.is_public());
    assert_eq!(stored.metadata.application_type.as_deref(), Some("native"));
}

#[tokio::test]
async fn element_web_registers_with_an_rs256_id_token() {
    let app = spawn_app().await;
    let (status, body) = register(&app, &element_web_body()).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["client_id"].is_string());
    assert!(body.get("client_secret").is_none());
    assert_eq!(body["id_token_signed_response_alg"], "RS256");
    assert_eq!(body["application_type"], "web");
    assert_eq!(body["contacts"], json!(["support@element.io"]));
    assert_eq!(body["redirect_uris"], json!(["https://app.element.io/?no_universal_links=true"]));
}

#[tokio::test]
async fn a_registered_element_x_client_can_sign_in() {
    let app = spawn_app().await;
    register_user(&app, "alice", "correct horse battery", false).await;
    let (_, reg) = register(&app, &element_x_body()).await;
    let client_id = reg["client_id"].as_str().unwrap();
    let redirect = "io.element.app:/callback";
    let scope = "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:ABCDEFGHIJ";
    let browser = app.new_client();
    let p = pkce();
    let res = authorize_and_consent(
        &app,
        &browser,
        &[
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
        Some(("alice", "correct horse battery")),
    )
    .await;
    let back = location(&res);
    assert!(back.starts_with("io.element.app:/callback?"), "{back}");
    let params = redirect_params(&back);
    let res = exchange_code(&app, client_id, redirect, &params["code"], &p.verifier).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert!(tokens["refresh_token"].is_string());
    let info = introspect(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!((info["active"].as_bool(), info["client_id"].as_str()), (Some(true), Some(client_id)));
}

#[tokio::test]
async fn a_confidential_client_gets_a_secret_and_uses_client_credentials() {
    let app = spawn_app().await;
    let body = json!({
        "client_name": "Bot",
        "client_uri": "https://bot.example.com",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let (status, reg) = register(&app, &body).await;
    assert_eq!(status, 201, "{reg}");
    let client_id = reg["client_id"].as_str().unwrap();
    let secret = reg["client_secret"].as_str().expect("a generated secret");
    assert_eq!(secret.len(), 20);
    assert!(secret.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(reg["client_secret_expires_at"], 0);
    assert_eq!(reg["response_types"], json!([]));

    // Clients with a secret are never de-duplicated: each registration gets its own.
    let (_, second) = register(&app, &body).await;
    assert_ne!(second["client_id"], reg["client_id"]);
    assert_ne!(second["client_secret"], reg["client_secret"]);

    // The secret is stored encrypted, not in clear.
    let id = client_id.to_string();
    let stored = app.state.store.read(move |c| client_store::by_id(c, &id)).await.unwrap().unwrap();
    let encrypted = stored.encrypted_secret.as_deref().expect("secret stored");
    assert_ne!(encrypted, secret);
    assert_eq!(app.state.encrypter.decrypt_string(encrypted).unwrap(), secret);

    let res = client_credentials_basic(&app, client_id, secret).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().expect("access token");
    assert!(tokens.get("refresh_token").is_none());
    assert_eq!(introspect(&app, access).await["active"], true);

    let wrong = client_credentials_basic(&app, client_id, "not-the-secret").await;
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn registrations_that_break_the_rules_are_refused() {
    let app = spawn_app().await;
    let with = |changes: Value| {
        let mut body = element_x_body();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let web = |changes: Value| {
        let mut body = element_web_body();
        body.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing client_uri",
            with(json!({"client_uri": null, "redirect_uris": ["http://localhost/cb"]})),
            "invalid_client_metadata",
        ),
        ("http client_uri", with(json!({"client_uri": "http://element.io"})), "invalid_client_metadata"),
        (
            "localhost client_uri",
            web(json!({"client_uri": "https://localhost", "logo_uri": null, "tos_uri": null, "policy_uri": null,
            "redirect_uris": ["https://localhost/cb"]})),
            "invalid_redirect_uri",
        ),
        (
            "localhost client_uri, no redirects",
            json!({"client_uri": "https://localhost", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            "logo on another host",
            web(json!({"logo_uri": "https://cdn.example.net/logo.png"})),
            "invalid_client_metadata",
        ),
        (
            "public suffix client_uri",
            json!({"client_uri": "https://co.uk", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            "redirect with a fragment",
            with(json!({"redirect_uris": ["io.element.app:/callback#frag"]})),
            "invalid_redirect_uri",
        ),
        (
            "web redirect on another host",
            web(json!({"redirect_uris": ["https://evil.example.com/cb"]})),
            "invalid_redirect_uri",
        ),
        ("web redirect over http", web(json!({"redirect_uris": ["http://app.element.io/cb"]})), "invalid_redirect_uri"),
        (
            "native scheme not the reverse DNS",
            with(json!({"redirect_uris": ["com.example.app:/callback"]})),
            "invalid_redirect_uri",
        ),
        (
            "native scheme with an authority",
            with(json!({"redirect_uris": ["io.element.app://callback"]})),
            "invalid_redirect_uri",
        ),
        ("implicit grant", with(json!({"grant_types": ["implicit"]})), "invalid_client_metadata"),
        ("password grant", with(json!({"grant_types": ["password"]})), "invalid_client_metadata"),
        ("token response type", with(json!({"response_types": ["token"]})), "invalid_client_metadata"),
        (
            "client_credentials with none",
            with(json!({"grant_types": ["client_credentials"], "redirect_uris": null, "response_types": null})),
            "invalid_client_metadata",
        ),
        (
            "private_key_jwt without keys",
            with(json!({"token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256"})),
            "invalid_client_metadata",
        ),
        (
            "client_secret_jwt without an alg",
            with(json!({"token_endpoint_auth_method": "client_secret_jwt"})),
            "invalid_client_metadata",
        ),
        (
            "jwks and jwks_uri",
            with(json!({"jwks": {"keys": []}, "jwks_uri": "https://element.io/jwks.json"})),
            "invalid_client_metadata",
        ),
        ("id_token alg none", web(json!({"id_token_signed_response_alg": "none"})), "invalid_client_metadata"),
        (
            "id_token alg we cannot sign",
            web(json!({"id_token_signed_response_alg": "HS256"})),
            "invalid_client_metadata",
        ),
        (
            "unknown auth method",
            with(json!({"token_endpoint_auth_method": "tls_client_auth"})),
            "invalid_client_metadata",
        ),
        ("redirect_uris missing", with(json!({"redirect_uris": null})), "invalid_redirect_uri"),
        (
            "redirect_uris not an array",
            with(json!({"redirect_uris": "io.element.app:/callback"})),
            "invalid_client_metadata",
        ),
        ("client_uri not a URL", with(json!({"client_uri": "not a url"})), "invalid_client_metadata"),
        ("body not an object", json!(["io.element.app:/callback"]), "invalid_client_metadata"),
    ];
    for (what, body, expected) in cases {
        let (status, answer) = register(&app, &body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"], expected, "{what}: {answer}");
        assert!(answer["error_description"].is_string(), "{what}: {answer}");
    }

    let res = register_raw(&app, "{\"client_uri\": ").await;
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_request", "malformed JSON: {answer}");

    // Every violation is reported, joined by "; ".
    let (_, answer) = register(
        &app,
        &web(json!({"logo_uri": "https://cdn.example.net/l.png", "tos_uri": "http://app.element.io/t"})),
    )
    .await;
    assert_eq!(answer["error_description"], "invalid tos_uri; logo_uri not on the same host as the client_uri");
    let (_, answer) =
        register(&app, &with(json!({"client_uri": null, "redirect_uris": ["http://localhost/cb"]}))).await;
    assert_eq!(answer["error_description"], "missing client_uri");

    // Nothing was stored by the refusals.
    let clients = app.state.store.read(|c| client_store::list(c, false)).await.unwrap();
    assert!(clients.iter().all(|c| c.is_static), "{clients:?}");
}
