//! CSRF on every state-changing form outside the account pages (those are in `account.rs` and
//! `email.rs`): each form refuses a post without the token and with a wrong one — a valid token
//! of another browser — and nothing changes; the right token then works, which shows that the
//! refused posts left the request as it was.

use serde_json::Value;

use crate::email::{Smtp, code_of, smtp_config};
use crate::flows::*;
use crate::helpers::{TestApp, merged_yaml, spawn_app_with};
use crate::register::fake_homeserver;

const PASSWORD: &str = "correct horse battery";
const STRONG: &str = "correct horse battery staple wombat";
const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

/// A valid CSRF token, but of another browser.
async fn foreign_token(app: &TestApp) -> String {
    csrf_of(&get(app, &app.new_client(), "/login").await.1)
}

/// Posts `fields` to `path` with `client` twice, without a token and with another browser's
/// token: both must be refused with 400 and the "form has expired" page.
async fn refused(app: &TestApp, client: &reqwest::Client, path: &str, fields: &[(&str, &str)]) {
    let foreign = foreign_token(app).await;
    let mut wrong = fields.to_vec();
    wrong.push(("csrf", &foreign));
    for (what, form) in [("without a token", fields.to_vec()), ("with another browser's token", wrong)] {
        let (status, html) = post_text(app, client, path, &form).await;
        assert_eq!(status, 400, "POST {path} {what} was not refused:\n{html}");
        assert!(html.contains("This form has expired"), "POST {path} {what}:\n{html}");
    }
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    app.state.store.read(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?)).await.expect("count")
}

#[tokio::test]
async fn login_and_logout_refuse_a_wrong_token() {
    let app = app().await;
    let browser = app.new_client();
    let html = get(&app, &browser, "/login").await.1;
    let mine = csrf_of(&html);
    refused(&app, &browser, "/login", &[("username", "alice"), ("password", PASSWORD), ("next", "/account/")]).await;
    assert_eq!(count(&app, "SELECT count(*) FROM user_sessions").await, 0, "a refused login made a session");
    assert!(location(&browser.get(app.url("/account/")).send().await.unwrap()).starts_with("/login"));
    // The right token signs in.
    let res = post(&app, &browser, "/login", &[("csrf", &mine), ("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), 303);

    // Logout: refused, still signed in; then the right token signs out.
    let html = get(&app, &browser, "/account/").await.1;
    refused(&app, &browser, "/logout", &[]).await;
    let (status, _) = get(&app, &browser, "/account/").await;
    assert_eq!(status, 200, "a refused logout signed out");
    assert_eq!(count(&app, "SELECT count(*) FROM user_sessions WHERE finished_at IS NULL").await, 1);
    let res = post(&app, &browser, "/logout", &[("csrf", &csrf_of(&html))]).await;
    assert_eq!(res.status(), 303);
    assert!(location(&browser.get(app.url("/account/")).send().await.unwrap()).starts_with("/login"));
}

#[tokio::test]
async fn consent_refuses_a_wrong_token() {
    let app = app().await;
    let browser = app.new_client();
    let p = pkce();
    let query = [
        ("client_id", PUBLIC_CLIENT),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", API),
        ("state", "s1"),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let url = reqwest::Url::parse_with_params(&app.url("/authorize"), query).unwrap();
    let to_login = location(&browser.get(url).send().await.unwrap());
    let consent = redirect_params(&format!("http://x{to_login}"))["next"].clone();
    assert_eq!(login(&app, &browser, &consent, "alice", PASSWORD).await.status(), 303);
    assert!(consent.starts_with("/consent/"), "{consent}");
    let html = get(&app, &browser, &consent).await.1;

    for decision in ["allow", "deny"] {
        refused(&app, &browser, &consent, &[("decision", decision)]).await;
    }
    assert_eq!(count(&app, "SELECT count(*) FROM oauth2_sessions").await, 0, "a refused consent made a session");
    // Still pending: the right token gets the code, and it is exchanged.
    let res = post(&app, &browser, &consent, &[("csrf", &csrf_of(&html)), ("decision", "allow")]).await;
    let params = redirect_params(&location(&res));
    let res = exchange_code(&app, PUBLIC_CLIENT, REDIRECT, &params["code"], &p.verifier).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn device_link_and_device_consent_refuse_a_wrong_token() {
    let app = app().await;
    let start = start_device(&app, API).await;
    let device_code = start["device_code"].as_str().unwrap().to_string();
    let user_code = start["user_code"].as_str().unwrap().to_string();
    let browser = app.new_client();
    assert_eq!(location(&login(&app, &browser, "/link", "alice", PASSWORD).await), "/link");
    let html = get(&app, &browser, "/link").await.1;

    // /link only leads on to /device/{id}: refused, it leads nowhere.
    refused(&app, &browser, "/link", &[("code", &user_code)]).await;
    let res = post(&app, &browser, "/link", &[("csrf", &csrf_of(&html)), ("code", &user_code)]).await;
    let consent = location(&res);
    assert!(consent.starts_with("/device/"), "{consent}");

    let html = get(&app, &browser, &consent).await.1;
    for decision in ["allow", "deny"] {
        refused(&app, &browser, &consent, &[("decision", decision)]).await;
    }
    app.clock.advance(6);
    assert_eq!(poll_device(&app, &device_code).await["error"], "authorization_pending", "a refused post decided");
    let (status, page) = post_text(&app, &browser, &consent, &[("csrf", &csrf_of(&html)), ("decision", "allow")]).await;
    assert_eq!(status, 200, "{page}");
    app.clock.advance(6);
    let tokens: Value = poll_device(&app, &device_code).await;
    assert!(tokens["access_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn compat_sso_confirmation_refuses_a_wrong_token() {
    let app = app().await;
    let browser = app.new_client();
    let res = browser
        .get(app.url("/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fclient.example%2Fdone"))
        .send()
        .await
        .unwrap();
    let confirm = location(&res).trim_start_matches(app.base.as_str()).to_string();
    assert!(confirm.starts_with("/complete-compat-sso/"), "{confirm}");
    assert_eq!(location(&login(&app, &browser, &confirm, "alice", PASSWORD).await), confirm);
    let html = get(&app, &browser, &confirm).await.1;

    refused(&app, &browser, &confirm, &[]).await;
    assert_eq!(
        count(&app, "SELECT count(*) FROM compat_sso_logins WHERE fulfilled_at IS NOT NULL").await,
        0,
        "a refused confirmation issued a login token"
    );
    let res = post(&app, &browser, &confirm, &[("csrf", &csrf_of(&html))]).await;
    let token = redirect_params(&location(&res))["loginToken"].clone();
    let body = serde_json::json!({"type": "m.login.token", "token": token});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn registration_code_and_resend_refuse_a_wrong_token() {
    let smtp = Smtp::start();
    let (endpoint, _calls) = fake_homeserver().await;
    let config = format!(
        r#"
account:
  password_registration_enabled: true
  password_registration_email_required: true
matrix:
  endpoint: "{endpoint}"
{email}
rate_limiting:
  registration: {{burst: 1000, per_second: 100}}
  email_authentication:
    per_ip: {{burst: 1000, per_second: 100}}
    per_address: {{burst: 1000, per_second: 100}}
"#,
        email = smtp_config(smtp.port)
    );
    let app = spawn_app_with(&merged_yaml(&config, "")).await;
    let browser = app.new_client();
    let csrf = csrf_of(&get(&app, &browser, "/register").await.1);
    let form = [
        ("csrf", csrf.as_str()),
        ("username", "carol"),
        ("email", "carol@example.org"),
        ("password", STRONG),
        ("password_confirm", STRONG),
    ];
    let verify = location(&post(&app, &browser, "/register", &form).await);
    assert!(verify.starts_with("/register/verify/"), "{verify}");
    let code = code_of(&smtp.wait_for(1).await);

    // A refused resend sends nothing (resending is done before the answer) and keeps the code.
    let resend = verify.replace("/verify/", "/resend/");
    refused(&app, &browser, &resend, &[]).await;
    assert_eq!(smtp.messages().len(), 1, "a refused resend sent a code");
    // A refused code creates no account.
    refused(&app, &browser, &verify, &[("code", &code)]).await;
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0, "a refused code created the account");
    // The first code still works with the right token.
    let res = post(&app, &browser, &verify, &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
}
