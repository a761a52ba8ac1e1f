//! Browser-like walks through the sign-in pages, and the requests the tests make to the OAuth,
//! compat and account endpoints; shared by the test modules.
#![allow(dead_code)]

use appliance::lifecycle::users::{self, NewUser};
use base64::Engine;
use sha2::Digest;

use crate::helpers::{MATRIX_SECRET, SYNAPSE_CLIENT_ID, SYNAPSE_CLIENT_SECRET, TestApp};

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
        s.rng.as_ref(),
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
    let verifier = (&appliance::rng::OsRng as &dyn appliance::rng::Rng).alnum(64);
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

/// `/authorize` (code flow, PKCE with S256, `extra` parameters added) in a new browser that signs
/// in with `credentials` and consents: the query parameters of the redirect to the client, and the
/// PKCE pair for the exchange.
pub async fn authorize_code(
    app: &TestApp,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    extra: &[(&str, &str)],
    credentials: (&str, &str),
) -> (std::collections::HashMap<String, String>, Pkce) {
    let p = pkce();
    let mut query = vec![
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("scope", scope),
        ("code_challenge", &p.challenge),
        ("code_challenge_method", "S256"),
    ];
    query.extend_from_slice(extra);
    let res = authorize_and_consent(app, &app.new_client(), &query, Some(credentials)).await;
    (redirect_params(&location(&res)), p)
}

/// A full authorization-code + PKCE login as the public client; returns the token response.
pub async fn code_login(app: &TestApp, username: &str, password: &str, scope: &str) -> serde_json::Value {
    let (params, p) =
        authorize_code(app, PUBLIC_CLIENT, REDIRECT, scope, &[("state", "xyz")], (username, password)).await;
    assert_eq!(params.get("state").map(String::as_str), Some("xyz"));
    let code = params.get("code").expect("code in redirect");
    let res = exchange_code(app, PUBLIC_CLIENT, REDIRECT, code, &p.verifier).await;
    assert_eq!(res.status(), 200, "token exchange failed");
    res.json().await.unwrap()
}

/// `POST /oauth2/token` with `form` (client credentials, if any, in the form).
pub async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client.post(app.url("/oauth2/token")).form(form).send().await.unwrap()
}

/// The authorization_code grant for a public client, with the PKCE verifier.
pub async fn exchange_code(
    app: &TestApp,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// The client_credentials grant, the client authenticated with HTTP Basic (client_secret_basic).
pub async fn client_credentials_basic(app: &TestApp, client_id: &str, secret: &str) -> reqwest::Response {
    let req = app.client.post(app.url("/oauth2/token")).basic_auth(client_id, Some(secret));
    req.form(&[("grant_type", "client_credentials")]).send().await.unwrap()
}

/// The refresh_token grant for the public client.
pub async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", PUBLIC_CLIENT)];
    token_request(app, &form).await
}

/// `POST /oauth2/device` for the public client: the JSON answer (device code, user code, …).
pub async fn start_device(app: &TestApp, scope: &str) -> serde_json::Value {
    let form = [("client_id", PUBLIC_CLIENT), ("scope", scope)];
    app.client.post(app.url("/oauth2/device")).form(&form).send().await.unwrap().json().await.unwrap()
}

/// One poll of the device_code grant for the public client: the JSON answer (tokens or an error).
pub async fn poll_device(app: &TestApp, device_code: &str) -> serde_json::Value {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
        ("client_id", PUBLIC_CLIENT),
    ];
    token_request(app, &form).await.json().await.unwrap()
}

/// `POST /oauth2/revoke` of `token` by the public client.
pub async fn revoke(app: &TestApp, token: &str) -> reqwest::Response {
    let form = [("token", token), ("client_id", PUBLIC_CLIENT)];
    app.client.post(app.url("/oauth2/revoke")).form(&form).send().await.unwrap()
}

/// Introspects an access token as Synapse does: the shared secret, `X-MAS-Supports-Device-Id`,
/// and the `access_token` hint.
pub async fn introspect(app: &TestApp, token: &str) -> serde_json::Value {
    introspect_with(app, token, Some("access_token"), true).await
}

/// Introspects any kind of token (no hint), otherwise as `introspect`.
pub async fn introspect_any(app: &TestApp, token: &str) -> serde_json::Value {
    introspect_with(app, token, None, true).await
}

/// Introspects with the shared secret, the token type `hint` if any, and with
/// `X-MAS-Supports-Device-Id` when `device_id_header` (the device then shows in `device_id`
/// rather than in the scope).
pub async fn introspect_with(
    app: &TestApp,
    token: &str,
    hint: Option<&str>,
    device_id_header: bool,
) -> serde_json::Value {
    let mut form = vec![("token", token)];
    form.extend(hint.map(|h| ("token_type_hint", h)));
    let mut req = app.client.post(app.url("/oauth2/introspect")).bearer_auth(MATRIX_SECRET);
    if device_id_header {
        req = req.header("X-MAS-Supports-Device-Id", "1");
    }
    req.form(&form).send().await.unwrap().json().await.unwrap()
}

/// `POST /_matrix/client/v3/refresh` (the compat layer) with `refresh_token`.
pub async fn compat_refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    let body = serde_json::json!({"refresh_token": refresh_token});
    app.client.post(app.url("/_matrix/client/v3/refresh")).json(&body).send().await.unwrap()
}

/// A browser signed in as `username`, redirected to the account page.
pub async fn signed_in(app: &TestApp, username: &str, password: &str) -> reqwest::Client {
    let client = app.new_client();
    let res = login(app, &client, "/account/", username, password).await;
    assert_eq!(res.status(), 303, "login failed");
    assert_eq!(location(&res), "/account/");
    client
}

/// `GET path` with `client`: the status and the body.
pub async fn get(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, String) {
    let res = client.get(app.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// `POST path` with `client` and the form fields `form`.
pub async fn post(app: &TestApp, client: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client.post(app.url(path)).form(form).send().await.unwrap()
}

/// `post`, then the status and the body.
pub async fn post_text(app: &TestApp, client: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let res = post(app, client, path, form).await;
    (res.status().as_u16(), res.text().await.unwrap())
}
