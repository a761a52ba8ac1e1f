//! Self-registration (`/register`, `prompt=create`): the form's validation, the homeserver's
//! say on usernames, registration tokens (and their `manage` commands), ToS, CSRF, rate limit.

use std::sync::{Arc, Mutex};

use appliance::store::registration_tokens::{self as token_store, RegistrationToken};
use appliance::store::users as user_store;
use serde_json::{Value, json};

use crate::flows::{
    PUBLIC_CLIENT, REDIRECT, clients_patch, csrf_of, location, pkce, redirect_params, register_user, urlencode,
};
use crate::helpers::{TestApp, expect_success, merged_yaml, run_cli, spawn_app, spawn_app_with};

const STRONG: &str = "correct horse battery staple wombat";

/// What the fake homeserver was asked: (call, localpart or body).
pub(crate) type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// A homeserver answering the MAS API: `taken` and `reserved` are not available, everything else
/// is; provisioning succeeds. Records every call.
pub(crate) async fn fake_homeserver() -> (String, Calls) {
    use axum::extract::{Path, Query, State};
    use axum::http::StatusCode;
    let calls: Calls = Arc::default();
    let router = axum::Router::new()
        .route(
            "/_synapse/mas/is_localpart_available",
            axum::routing::get(
                |State(calls): State<Calls>, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let localpart = q.get("localpart").cloned().unwrap_or_default();
                    calls.lock().unwrap().push(("is_localpart_available".into(), json!(localpart)));
                    match localpart.as_str() {
                        "taken" => (StatusCode::BAD_REQUEST, axum::Json(json!({"errcode": "M_USER_IN_USE"}))),
                        "reserved" => (StatusCode::BAD_REQUEST, axum::Json(json!({"errcode": "M_EXCLUSIVE"}))),
                        _ => (StatusCode::OK, axum::Json(json!({}))),
                    }
                },
            ),
        )
        .route(
            "/_synapse/mas/{call}",
            axum::routing::post(
                |State(calls): State<Calls>, Path(call): Path<String>, axum::Json(body): axum::Json<Value>| async move {
                    calls.lock().unwrap().push((call.clone(), body));
                    let status = if call == "provision_user" { StatusCode::CREATED } else { StatusCode::OK };
                    (status, axum::Json(json!({})))
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/"), calls)
}

/// Registration on, the fake homeserver, a generous rate limit; `extra` merged over that.
fn patch(endpoint: &str, extra: &str) -> String {
    let base = format!(
        r#"
account:
  password_registration_enabled: true
  password_registration_email_required: false
matrix:
  endpoint: "{endpoint}"
rate_limiting:
  registration: {{burst: 1000, per_second: 100}}
"#
    );
    merged_yaml(&base, extra)
}

async fn app_with(extra: &str) -> (TestApp, Calls) {
    let (endpoint, calls) = fake_homeserver().await;
    (spawn_app_with(&patch(&endpoint, extra)).await, calls)
}

/// The registration page for `client` (status, csrf token, html).
async fn form(app: &TestApp, client: &reqwest::Client, query: &str) -> (u16, String, String) {
    let res = client.get(app.url(&format!("/register{query}"))).send().await.unwrap();
    let status = res.status().as_u16();
    let html = res.text().await.unwrap();
    let csrf = if status == 200 { csrf_of(&html) } else { String::new() };
    (status, csrf, html)
}

/// Fills in and posts the form; `fields` override the defaults (username `bob`, a strong password).
async fn submit(app: &TestApp, client: &reqwest::Client, fields: &[(&str, &str)]) -> reqwest::Response {
    let (status, csrf, html) = form(app, client, "").await;
    assert_eq!(status, 200, "{html}");
    let mut body: Vec<(String, String)> = vec![
        ("csrf".into(), csrf),
        ("username".into(), "bob".into()),
        ("password".into(), STRONG.into()),
        ("password_confirm".into(), STRONG.into()),
    ];
    for (k, v) in fields {
        body.retain(|(name, _)| name != k);
        body.push(((*k).into(), (*v).into()));
    }
    client.post(app.url("/register")).form(&body).send().await.unwrap()
}

async fn user(app: &TestApp, name: &str) -> Option<appliance::model::User> {
    let name = name.to_string();
    app.state.store.read(move |c| user_store::by_username(c, &name)).await.unwrap()
}

async fn token(app: &TestApp, t: &str) -> RegistrationToken {
    let t = t.to_string();
    app.state.store.read(move |c| token_store::by_token(c, &t)).await.unwrap().expect("token exists")
}

async fn insert_token(app: &TestApp, t: RegistrationToken) {
    app.state.store.write(move |c| token_store::insert(c, &t)).await.unwrap();
}

/// `status` and an error tied to `field` (`<field>-error`, referenced by the input).
async fn assert_field_error(res: reqwest::Response, status: u16, field: &str, text: &str) -> String {
    assert_eq!(res.status(), status);
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("id=\"{field}-error\"")), "no error on {field}:\n{html}");
    assert!(html.contains(text), "expected {text:?} in:\n{html}");
    html
}

#[tokio::test]
async fn not_offered_unless_enabled() {
    let app = spawn_app().await;
    let (status, _, html) = form(&app, &app.client, "").await;
    assert_eq!(status, 404);
    assert!(html.contains("does not offer sign-up"));
    let login = app.get("/login").await.text().await.unwrap();
    assert!(!login.contains("/register"));
    let res = app.post_form("/register", &[("username", "bob")]).await;
    assert_eq!(res.status(), 404);

    // Enabled with MAS's default (an email address is required): offered, asking for the address.
    let app = spawn_app_with("account: {password_registration_enabled: true}").await;
    let (status, _, html) = form(&app, &app.client, "").await;
    assert_eq!(status, 200);
    assert!(html.contains("name=\"email\"") && html.contains("type=\"email\""), "{html}");

    // Without a required address and without a mail server, no email field at all.
    let (app, _) = app_with("").await;
    let (status, _, html) = form(&app, &app.client, "").await;
    assert_eq!(status, 200);
    assert!(!html.contains("name=\"email\""));
    let login = app.get("/login").await.text().await.unwrap();
    assert!(login.contains("href=\"/register\""));
}

#[tokio::test]
async fn registers_provisions_and_signs_in() {
    let (app, calls) = app_with("").await;
    let client = app.new_client();
    let (status, _, html) = form(&app, &client, "").await;
    assert_eq!(status, 200);
    for needle in ["name=\"username\"", "name=\"password\"", "name=\"password_confirm\"", "name=\"display_name\""] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert!(!html.contains("name=\"token\"") && !html.contains("name=\"tos\""));

    let res = submit(&app, &client, &[("username", " Bob "), ("display_name", "Bob B.")]).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(location(&res), "/account/");
    let u = user(&app, "bob").await.expect("user created");
    assert_eq!(u.username, "bob");
    assert_eq!(u.display_name.as_deref(), Some("Bob B."));
    assert!(!u.can_request_admin);

    // Signed in: the account page is there.
    let res = client.get(app.url("/account/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("@bob:localhost"));

    // Asked the homeserver first, then provisioned the user there.
    let calls = calls.lock().unwrap().clone();
    let checked = calls.iter().position(|(c, l)| c == "is_localpart_available" && l == "bob").expect("checked");
    let provisioned = calls
        .iter()
        .position(|(c, b)| c == "provision_user" && b["localpart"] == "bob" && b["set_displayname"] == "Bob B.")
        .expect("provisioned");
    assert!(checked < provisioned);

    // The password works for signing in.
    let res = crate::flows::login(&app, &app.new_client(), "/account/", "bob", STRONG).await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn weak_password_is_refused_with_feedback() {
    let (app, _) = app_with("").await;
    let res = submit(&app, &app.client, &[("password", "password1"), ("password_confirm", "password1")]).await;
    let html = assert_field_error(res, 400, "password", "too easy to guess").await;
    assert!(html.contains("<meter"), "strength meter shown");
    assert!(html.contains("This server needs at least 3 of 4"));
    assert!(html.contains("aria-describedby=\"password-hint password-error password-strength\""), "{html}");
    assert!(!html.contains("password1"), "the password is never echoed");
    assert!(html.contains("value=\"bob\""), "the username is kept");
    assert!(user(&app, "bob").await.is_none());

    // The username itself counts as guessable.
    let res = submit(
        &app,
        &app.client,
        &[("username", "zebracorn"), ("password", "zebracorn"), ("password_confirm", "zebracorn")],
    )
    .await;
    assert_field_error(res, 400, "password", "too easy to guess").await;

    // A lower minimum lets it through.
    let (app, _) = app_with("passwords: {minimum_complexity: 0}").await;
    let res = submit(&app, &app.client, &[("password", "password1"), ("password_confirm", "password1")]).await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn mismatched_confirmation_and_empty_fields() {
    let (app, _) = app_with("").await;
    let res = submit(&app, &app.client, &[("password_confirm", "something else entirely")]).await;
    let html = assert_field_error(res, 400, "password_confirm", "do not match").await;
    assert!(html.contains("Enter it again to continue"), "a strong password is said to be fine");
    let res = submit(&app, &app.client, &[("username", ""), ("password", ""), ("password_confirm", "")]).await;
    let html = assert_field_error(res, 400, "username", "Choose a username").await;
    assert!(html.contains("id=\"password-error\""));
    assert!(user(&app, "bob").await.is_none());
}

#[tokio::test]
async fn taken_and_invalid_usernames() {
    let (app, _) = app_with("").await;
    register_user(&app, "alice", STRONG, false).await;
    let res = submit(&app, &app.client, &[("username", "alice")]).await;
    assert_field_error(res, 400, "username", "taken").await;
    let res = submit(&app, &app.client, &[("username", "@Alice:localhost")]).await;
    assert_field_error(res, 400, "username", "taken").await;
    // The homeserver knows a user we do not.
    let res = submit(&app, &app.client, &[("username", "taken")]).await;
    assert_field_error(res, 400, "username", "taken").await;
    let res = submit(&app, &app.client, &[("username", "reserved")]).await;
    assert_field_error(res, 400, "username", "reserved").await;
    for (bad, why) in [
        ("bob smith", "may only contain"),
        ("12345", "only of digits"),
        ("bob!", "may only contain"),
        ("@bob:elsewhere.org", "on localhost"),
    ] {
        let res = submit(&app, &app.client, &[("username", bad)]).await;
        assert_field_error(res, 400, "username", why).await;
    }
    let long = "a".repeat(250);
    let res = submit(&app, &app.client, &[("username", &long)]).await;
    assert_field_error(res, 400, "username", "too long").await;
    assert!(user(&app, "taken").await.is_none() && user(&app, "bob").await.is_none());
}

#[tokio::test]
async fn unreachable_homeserver_refuses_with_try_again_later() {
    // The default test endpoint (port 9) answers nothing.
    let app = spawn_app_with(
        "account: {password_registration_enabled: true, password_registration_email_required: false}\nrate_limiting: {registration: {burst: 1000, per_second: 100}}",
    )
    .await;
    let res = submit(&app, &app.client, &[]).await;
    assert_eq!(res.status(), 503);
    let html = res.text().await.unwrap();
    assert!(html.contains("Try again later") && html.contains("role=\"alert\""), "{html}");
    assert!(user(&app, "bob").await.is_none());
}

#[tokio::test]
async fn registration_tokens() {
    let (app, _) = app_with("account: {registration_token_required: true}").await;
    let now = app.state.now();
    let mk = |t: &str, limit: Option<u32>, used: u32, expires: Option<i64>, revoked: Option<i64>| RegistrationToken {
        id: ulid::Ulid::new().to_string(),
        token: t.into(),
        usage_limit: limit,
        times_used: used,
        created_at: now - 10,
        last_used_at: None,
        expires_at: expires,
        revoked_at: revoked,
    };
    insert_token(&app, mk("GOOD", Some(1), 0, Some(now + 3600), None)).await;
    insert_token(&app, mk("USEDUP", Some(2), 2, None, None)).await;
    insert_token(&app, mk("OLD", None, 0, Some(now - 1), None)).await;
    insert_token(&app, mk("GONE", None, 0, None, Some(now - 5))).await;
    insert_token(&app, mk("MANY", None, 7, None, None)).await;

    let (_, _, html) = form(&app, &app.client, "?token=GOOD").await;
    assert!(html.contains("name=\"token\"") && html.contains("value=\"GOOD\""), "invite links prefill the token");

    let res = submit(&app, &app.client, &[]).await;
    assert_field_error(res, 400, "token", "Enter the registration token").await;
    for (t, why) in [("WRONG", "not valid"), ("USEDUP", "used up"), ("OLD", "expired"), ("GONE", "revoked")] {
        let res = submit(&app, &app.client, &[("token", t)]).await;
        assert_field_error(res, 400, "token", why).await;
    }
    assert!(user(&app, "bob").await.is_none());
    assert_eq!(token(&app, "USEDUP").await.times_used, 2);

    let res = submit(&app, &app.client, &[("token", " GOOD ")]).await;
    assert_eq!(res.status(), 303);
    assert!(user(&app, "bob").await.is_some());
    let good = token(&app, "GOOD").await;
    assert_eq!(good.times_used, 1);
    assert!(good.last_used_at.is_some());
    // Single use: the next person is turned away.
    let res = submit(&app, &app.new_client(), &[("username", "carol"), ("token", "GOOD")]).await;
    assert_field_error(res, 400, "token", "used up").await;
    assert!(user(&app, "carol").await.is_none());

    let res = submit(&app, &app.new_client(), &[("username", "carol"), ("token", "MANY")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(token(&app, "MANY").await.times_used, 8);
}

#[tokio::test]
async fn terms_of_service_must_be_accepted() {
    let (app, _) = app_with("branding: {tos_uri: \"https://example.org/tos\"}").await;
    let (_, _, html) = form(&app, &app.client, "").await;
    assert!(html.contains("name=\"tos\"") && html.contains("https://example.org/tos"));
    let res = submit(&app, &app.client, &[]).await;
    assert_field_error(res, 400, "tos", "Accept the terms").await;
    let res = submit(&app, &app.client, &[("tos", "accept")]).await;
    assert_eq!(res.status(), 303);
    let u = user(&app, "bob").await.unwrap();
    let terms = app.state.store.read(move |c| token_store::accepted_terms(c, &u.id)).await.unwrap();
    assert_eq!(terms, vec!["https://example.org/tos".to_string()]);
}

#[tokio::test]
async fn csrf_is_required() {
    let (app, _) = app_with("").await;
    let _ = form(&app, &app.client, "").await;
    let fields = [("username", "bob"), ("password", STRONG), ("password_confirm", STRONG)];
    let res = app.post_form("/register", &fields).await;
    assert_eq!(res.status(), 400);
    let mut with_wrong = fields.to_vec();
    with_wrong.push(("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let res = app.post_form("/register", &with_wrong).await;
    assert_eq!(res.status(), 400);
    assert!(user(&app, "bob").await.is_none());
}

#[tokio::test]
async fn rate_limited_per_client_ip() {
    let (app, calls) = app_with("rate_limiting: {registration: {burst: 2, per_second: 0.0001}}").await;
    // Mistakes caught by the form itself do not count.
    for _ in 0..3 {
        let res = submit(&app, &app.client, &[("password_confirm", "nope")]).await;
        assert_eq!(res.status(), 400);
    }
    let res = submit(&app, &app.new_client(), &[("username", "taken")]).await;
    assert_eq!(res.status(), 400);
    let res = submit(&app, &app.new_client(), &[("username", "bob")]).await;
    assert_eq!(res.status(), 303);
    let res = submit(&app, &app.new_client(), &[("username", "carol")]).await;
    assert_eq!(res.status(), 429);
    assert!(res.text().await.unwrap().contains("Too many sign-ups"));
    assert!(user(&app, "carol").await.is_none());
    assert!(!calls.lock().unwrap().iter().any(|(_, l)| l == "carol"), "the homeserver is spared");
}

#[tokio::test]
async fn prompt_create_registers_then_continues_to_consent() {
    let (endpoint, _) = fake_homeserver().await;
    let app = spawn_app_with(&merged_yaml(&clients_patch(), &patch(&endpoint, ""))).await;
    let client = app.new_client();
    let p = pkce();
    let url = reqwest::Url::parse_with_params(
        &app.url("/authorize"),
        &[
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid urn:matrix:client:api:*"),
            ("state", "st"),
            ("code_challenge", p.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("prompt", "create"),
        ],
    )
    .unwrap();
    let res = client.get(url).send().await.unwrap();
    let to = location(&res);
    assert!(to.starts_with("/register?next=%2Fconsent%2F"), "{to}");
    let res = client.get(app.url(&to)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let consent = url::Url::parse(&format!("http://x{to}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(html.contains(&format!("name=\"next\" value=\"{consent}\"")));
    assert!(html.contains(&format!("/login?next={}", urlencode(&consent))), "sign-in link keeps the flow");
    let csrf = csrf_of(&html);
    let res = client
        .post(app.url("/register"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "dave"),
            ("password", STRONG),
            ("password_confirm", STRONG),
            ("next", consent.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), consent);
    let html = client.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    let res =
        client.post(app.url(&consent)).form(&[("csrf", csrf.as_str()), ("decision", "allow")]).send().await.unwrap();
    let params = redirect_params(&location(&res));
    assert!(params.contains_key("code"), "{params:?}");
    assert_eq!(params["state"], "st");

    // Open redirects are not followed.
    let res = submit(&app, &app.new_client(), &[("username", "erin"), ("next", "//evil.example")]).await;
    assert_eq!(location(&res), "/account/");
}

#[tokio::test]
async fn cli_manages_registration_tokens() {
    let (app, _) = app_with("account: {registration_token_required: true}").await;
    let config = app.config_path.clone();
    let cli = move |args: &'static [&'static str]| {
        let config = config.clone();
        async move { tokio::task::spawn_blocking(move || run_cli(&config, args)).await.unwrap() }
    };
    let out = cli(&[
        "manage",
        "issue-user-registration-token",
        "--token",
        "INVITE1",
        "--usage-limit",
        "2",
        "--expires-in",
        "3600",
    ])
    .await;
    assert_eq!(expect_success("issue", &out).trim(), "INVITE1");
    let t = token(&app, "INVITE1").await;
    assert_eq!(t.usage_limit, Some(2));
    assert!(t.expires_at.unwrap() > app.state.now() + 3500);

    let out = cli(&["manage", "issue-user-registration-token"]).await;
    let generated = expect_success("issue", &out).trim().to_string();
    assert_eq!(generated.len(), 20);
    assert_eq!(token(&app, &generated).await.usage_limit, Some(1), "single use by default");

    let out = cli(&["manage", "issue-user-registration-token", "--token", "OPEN", "--unlimited"]).await;
    expect_success("issue", &out);
    assert_eq!(token(&app, "OPEN").await.usage_limit, None);
    let out = cli(&["manage", "issue-user-registration-token", "--token", "OPEN"]).await;
    assert!(!out.status.success(), "duplicate tokens are refused");
    let out = cli(&["manage", "issue-user-registration-token", "--unlimited", "--usage-limit", "3"]).await;
    assert!(!out.status.success());

    let res = submit(&app, &app.client, &[("token", "INVITE1")]).await;
    assert_eq!(res.status(), 303);

    let out = cli(&["manage", "list-user-registration-tokens"]).await;
    let list = expect_success("list", &out);
    let line = list.lines().find(|l| l.starts_with("INVITE1")).expect("listed");
    assert!(line.contains("valid") && line.contains("1/2"), "{list}");
    assert!(list.lines().any(|l| l.starts_with("OPEN") && l.contains("0/-") && l.contains("never")), "{list}");

    let out = cli(&["manage", "revoke-user-registration-token", "INVITE1"]).await;
    expect_success("revoke", &out);
    let out = cli(&["manage", "revoke-user-registration-token", "NOSUCH"]).await;
    assert!(!out.status.success());
    let list = expect_success("list", &cli(&["manage", "list-user-registration-tokens"]).await);
    assert!(list.lines().any(|l| l.starts_with("INVITE1") && l.contains("revoked")), "{list}");

    let res = submit(&app, &app.new_client(), &[("username", "carol"), ("token", "INVITE1")]).await;
    assert_field_error(res, 400, "token", "revoked").await;
}
