//! Browser-like walks through the sign-in pages, shared by the OAuth and end-to-end tests.
#![allow(dead_code)]

use appliance::lifecycle::users::{self, NewUser};
use base64::Engine;
use sha2::Digest;

use crate::helpers::{SYNAPSE_CLIENT_ID, SYNAPSE_CLIENT_SECRET, TestApp};

pub const PUBLIC_CLIENT: &str = "01J0000000000000000000PB01";
pub const CONFIDENTIAL_CLIENT: &str = "01J0000000000000000000CF01";
pub const CONFIDENTIAL_SECRET: &str = "confidential-client-secret";
pub const REDIRECT: &str = "https://app.example.org/callback";
pub const LOOPBACK_REDIRECT: &str = "http://127.0.0.1/callback";

/// A config patch adding a public native-style client and a confidential web client.
pub fn clients_patch() -> String {
    format!(
        r#"
clients:
  - client_id: {SYNAPSE_CLIENT_ID}
    client_auth_method: client_secret_basic
    client_secret: "{SYNAPSE_CLIENT_SECRET}"
  - client_id: {PUBLIC_CLIENT}
    client_auth_method: none
    client_name: "Test App"
    client_uri: "https://app.example.org/"
    redirect_uris: ["{REDIRECT}", "{LOOPBACK_REDIRECT}"]
  - client_id: {CONFIDENTIAL_CLIENT}
    client_auth_method: client_secret_post
    client_secret: "{CONFIDENTIAL_SECRET}"
    client_name: "Confidential App"
    redirect_uris: ["{REDIRECT}"]
rate_limiting:
  login:
    per_ip: {{burst: 1000, per_second: 100}}
    per_account: {{burst: 1000, per_second: 100}}
"#
    )
}

pub async fn register_user(app: &TestApp, username: &str, password: &str, admin: bool) {
    let s = &app.state;
    users::register(
        &s.store,
        &s.passwords,
        s.clock.as_ref(),
        NewUser {
            username: username.into(),
            password: Some(password.into()),
            emails: vec![],
            display_name: None,
            admin,
        },
    )
    .await
    .expect("register user");
}

/// The CSRF token of a rendered form.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).unwrap_or_else(|| panic!("no csrf field in page:\n{html}")) + marker.len();
    html[start..].split('"').next().unwrap_or_default().to_string()
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location header (status {})", res.status()))
        .to_str()
        .expect("ascii location")
        .to_string()
}

/// Signs in through the login form; returns where it redirected.
pub async fn login(
    app: &TestApp,
    client: &reqwest::Client,
    next: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = client.get(app.url(&format!("/login?next={}", urlencode(next)))).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html);
    client
        .post(app.url("/login"))
        .form(&[("csrf", csrf.as_str()), ("username", username), ("password", password), ("next", next)])
        .send()
        .await
        .unwrap()
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = appliance::crypto::random_alnum(64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

/// `/authorize` → login (if needed) → consent (allow): returns the redirect to the client.
pub async fn authorize_and_consent(
    app: &TestApp,
    client: &reqwest::Client,
    query: &[(&str, &str)],
    credentials: Option<(&str, &str)>,
) -> reqwest::Response {
    let url = reqwest::Url::parse_with_params(&app.url("/authorize"), query).unwrap();
    let res = client.get(url).send().await.unwrap();
    assert!(res.status().is_redirection(), "authorize answered {}: {}", res.status(), res.text().await.unwrap());
    let mut next = location(&res);
    if next.starts_with("/login") {
        let consent = url::Url::parse(&format!("http://x{next}"))
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.into_owned())
            .expect("next");
        let (user, pass) = credentials.expect("login required but no credentials given");
        let res = login(app, client, &consent, user, pass).await;
        assert_eq!(res.status(), 303, "login failed");
        next = location(&res);
    }
    assert!(next.starts_with("/consent/"), "expected the consent page, got {next}");
    let html = client.get(app.url(&next)).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    client.post(app.url(&next)).form(&[("csrf", csrf.as_str()), ("decision", "allow")]).send().await.unwrap()
}

/// The query parameters of a redirect to the client.
pub fn redirect_params(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location).expect("absolute redirect").query_pairs().into_owned().collect()
}

/// A full authorization-code + PKCE login as the public client; returns the token response.
pub async fn code_login(app: &TestApp, username: &str, password: &str, scope: &str) -> serde_json::Value {
    let client = app.new_client();
    let p = pkce();
    let res = authorize_and_consent(
        app,
        &client,
        &[
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "xyz"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
        Some((username, password)),
    )
    .await;
    let params = redirect_params(&location(&res));
    assert_eq!(params.get("state").map(String::as_str), Some("xyz"));
    let code = params.get("code").expect("code in redirect");
    let res = client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", PUBLIC_CLIENT),
            ("code_verifier", &p.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "token exchange failed");
    res.json().await.unwrap()
}

pub async fn introspect(app: &TestApp, token: &str) -> serde_json::Value {
    app.client
        .post(app.url("/oauth2/introspect"))
        .bearer_auth(crate::helpers::MATRIX_SECRET)
        .header("X-MAS-Supports-Device-Id", "1")
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
