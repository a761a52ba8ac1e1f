//! Second factors (issue 16): TOTP enrolment from the account page, the code asked after the
//! password at sign-in, codes single-use per step, attempts rate-limited, the secret encrypted at
//! rest, recovery codes (single use, count, regenerate) and turning the factor off.

use appliance::clock::Clock;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

pub(crate) const PASSWORD: &str = "correct horse battery";

async fn app_with(extra: &str) -> TestApp {
    let app = spawn_app_with(&format!("{}{extra}", clients_patch())).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

/// The text between `<code class="mfa-secret" id="totp-secret">` and `</code>`.
fn secret_of(html: &str) -> Vec<u8> {
    let m = "id=\"totp-secret\">";
    let start = html.find(m).unwrap_or_else(|| panic!("no secret in\n{html}")) + m.len();
    let b32: String = html[start..].split('<').next().unwrap().chars().filter(|c| !c.is_whitespace()).collect();
    Secret::Encoded(b32).to_bytes().unwrap()
}

pub(crate) fn code_at(secret: &[u8], now: i64) -> String {
    TOTP::new(Algorithm::SHA1, 6, 1, 30, secret.to_vec()).unwrap().generate(now as u64)
}

pub(crate) fn codes_of(html: &str) -> Vec<String> {
    html.split("<li><code>").skip(1).map(|s| s.split('<').next().unwrap().to_string()).collect()
}

/// Signs alice in with her password, enrols TOTP; returns the secret, the recovery codes and the
/// signed-in client.
pub(crate) async fn enrol(app: &TestApp) -> (Vec<u8>, Vec<String>, reqwest::Client) {
    let client = signed_in(app, "alice", PASSWORD).await;
    let (status, html) = get(app, &client, "/account/mfa").await;
    assert_eq!(status, 200);
    assert!(html.contains("Set up an authenticator app"), "{html}");
    let csrf = csrf_of(&html);
    let res = post(app, &client, "/account/mfa/totp", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/mfa/totp");
    let (status, html) = get(app, &client, "/account/mfa/totp").await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg role=\"img\" aria-label=\"QR code"), "server-side SVG QR code:\n{html}");
    let secret = secret_of(&html);
    // A wrong first code does not turn the factor on.
    let (status, html) =
        post_text(app, &client, "/account/mfa/totp/confirm", &[("csrf", &csrf), ("code", "000000")]).await;
    assert_eq!(status, 401);
    assert!(html.contains("That code is not correct"));
    let code = code_at(&secret, app.clock.now());
    let (status, html) =
        post_text(app, &client, "/account/mfa/totp/confirm", &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(status, 200, "{html}");
    let codes = codes_of(&html);
    assert_eq!(codes.len(), 10, "{html}");
    let (_, html) = get(app, &client, "/account/mfa").await;
    assert!(html.contains("10 recovery codes are left."), "{html}");
    (secret, codes, client)
}

/// Password step of a fresh browser; asserts it is sent to the code step. Returns the client and
/// the CSRF token of the code page.
pub(crate) async fn password_step(app: &TestApp) -> (reqwest::Client, String) {
    password_step_as(app, PASSWORD).await
}

/// `password_step` with alice's password `password`.
pub(crate) async fn password_step_as(app: &TestApp, password: &str) -> (reqwest::Client, String) {
    let client = app.new_client();
    let res = login(app, &client, "/account/", "alice", password).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login/mfa");
    // Not signed in yet.
    let res = client.get(app.url("/account/")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login"));
    let (status, html) = get(app, &client, "/login/mfa").await;
    assert_eq!(status, 200);
    assert!(html.contains("Two-step verification"));
    let csrf = csrf_of(&html);
    (client, csrf)
}

pub(crate) async fn code_step(app: &TestApp, client: &reqwest::Client, csrf: &str, code: &str) -> reqwest::Response {
    post(app, client, "/login/mfa", &[("csrf", csrf), ("code", code)]).await
}

#[tokio::test]
async fn totp_enrol_sign_in_single_use_and_disable() {
    let app = app_with("").await;
    let (secret, _, _) = enrol(&app).await;
    let (client, csrf) = password_step(&app).await;
    // The step used to confirm the enrolment is spent.
    let same = code_at(&secret, app.clock.now());
    let res = code_step(&app, &client, &csrf, &same).await;
    assert_eq!(res.status(), 401, "a code works once");
    let res = code_step(&app, &client, &csrf, "123456").await;
    assert_eq!(res.status(), 401);
    app.clock.advance(30);
    let code = code_at(&secret, app.clock.now());
    let res = code_step(&app, &client, &csrf, &code).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/");
    assert_eq!(get(&app, &client, "/account/").await.0, 200);
    // The same code in another browser is refused.
    let (other, csrf2) = password_step(&app).await;
    assert_eq!(code_step(&app, &other, &csrf2, &code).await.status(), 401);

    // Turning it off needs the password and a code.
    let (_, html) = get(&app, &client, "/account/mfa").await;
    let csrf = csrf_of(&html);
    app.clock.advance(30);
    let code = code_at(&secret, app.clock.now());
    let (status, html) = post_text(
        &app,
        &client,
        "/account/mfa/disable",
        &[("csrf", &csrf), ("password", "wrong password"), ("code", &code)],
    )
    .await;
    assert_eq!(status, 401);
    assert!(html.contains("That password is not correct."), "{html}");
    let res =
        post(&app, &client, "/account/mfa/disable", &[("csrf", &csrf), ("password", PASSWORD), ("code", &code)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/mfa?notice=disabled");
    // Signing in is back to the password alone.
    signed_in(&app, "alice", PASSWORD).await;
}

#[tokio::test]
async fn recovery_codes_once_each_counted_and_regenerated() {
    let app = app_with("").await;
    let (secret, codes, client) = enrol(&app).await;
    let (c1, csrf) = password_step(&app).await;
    let res = code_step(&app, &c1, &csrf, &codes[0].to_uppercase()).await;
    assert_eq!(res.status(), 303, "a recovery code instead of a TOTP code");
    let (c2, csrf) = password_step(&app).await;
    assert_eq!(code_step(&app, &c2, &csrf, &codes[0]).await.status(), 401, "a recovery code works once");
    let (_, html) = get(&app, &client, "/account/mfa").await;
    assert!(html.contains("9 recovery codes are left."), "{html}");

    // Regenerating needs re-authentication and replaces the old codes.
    let csrf = csrf_of(&html);
    let (status, _) = post_text(
        &app,
        &client,
        "/account/mfa/recovery-codes",
        &[("csrf", &csrf), ("password", PASSWORD), ("code", "000000")],
    )
    .await;
    assert_eq!(status, 401);
    app.clock.advance(30);
    let code = code_at(&secret, app.clock.now());
    let (status, html) = post_text(
        &app,
        &client,
        "/account/mfa/recovery-codes",
        &[("csrf", &csrf), ("password", PASSWORD), ("code", &code)],
    )
    .await;
    assert_eq!(status, 200);
    let fresh = codes_of(&html);
    assert_eq!(fresh.len(), 10);
    let (c3, csrf) = password_step(&app).await;
    assert_eq!(code_step(&app, &c3, &csrf, &codes[1]).await.status(), 401, "old codes are gone");
    assert_eq!(code_step(&app, &c3, &csrf, &fresh[0]).await.status(), 303);
    let (_, html) = get(&app, &client, "/account/mfa").await;
    assert!(html.contains("9 recovery codes are left."), "{html}");
}

#[tokio::test]
async fn code_attempts_rate_limited_and_pending_step_expires() {
    // Seven attempts a minute per account (every attempt counts): the password and two first
    // codes at enrolment, the password here, then three wrong codes.
    let app = spawn_app_with(
        "rate_limiting:\n  login:\n    per_ip: {burst: 1000, per_second: 100}\n    per_account: {burst: 7, per_second: 0.001}\n",
    )
    .await;
    register_user(&app, "alice", PASSWORD, false).await;
    let (secret, _, _) = enrol(&app).await;
    let (client, csrf) = password_step(&app).await;
    for _ in 0..3 {
        assert_eq!(code_step(&app, &client, &csrf, "000000").await.status(), 401);
    }
    app.clock.advance(30);
    let code = code_at(&secret, app.clock.now());
    let res = code_step(&app, &client, &csrf, &code).await;
    assert_eq!(res.status(), 429, "a right code is refused while limited");
    assert!(res.text().await.unwrap().contains("Too many attempts"));
    // The password step is good for 5 minutes.
    app.clock.advance(301);
    let res = client.get(app.url("/login/mfa")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login");
}

#[tokio::test]
async fn secret_encrypted_at_rest_and_csrf_required() {
    let app = app_with("").await;
    let (secret, _, client) = enrol(&app).await;
    let stored: String = {
        let conn = rusqlite::Connection::open(&app.db_path).unwrap();
        conn.query_row("SELECT secret FROM user_totp", [], |r| r.get(0)).unwrap()
    };
    let b32 = TOTP::new(Algorithm::SHA1, 6, 1, 30, secret.clone()).unwrap().get_secret_base32();
    assert!(!stored.contains(&b32) && !stored.contains(&hex::encode(&secret)), "stored in clear: {stored}");
    let decrypted = app.state.encrypter.decrypt(&stored).unwrap();
    assert_eq!(decrypted, secret);
    for path in ["/account/mfa/totp", "/account/mfa/disable", "/account/mfa/recovery-codes"] {
        assert_eq!(post(&app, &client, path, &[("csrf", "nope")]).await.status(), 400, "{path}");
    }
    let (c, _) = password_step(&app).await;
    assert_eq!(post(&app, &c, "/login/mfa", &[("csrf", "nope"), ("code", "000000")]).await.status(), 400);
}

#[tokio::test]
async fn required_policy_enrols_at_sign_in() {
    let app = app_with("account:\n  mfa: required\n").await;
    let client = app.new_client();
    let res = login(&app, &client, "/account/emails", "alice", PASSWORD).await;
    assert_eq!(location(&res), "/login/mfa");
    let (status, html) = get(&app, &client, "/login/mfa").await;
    assert_eq!(status, 200);
    assert!(html.contains("asks every account for a second step"), "{html}");
    let secret = secret_of(&html);
    let csrf = csrf_of(&html);
    assert_eq!(client.get(app.url("/account/")).send().await.unwrap().status(), 303, "no session yet");
    assert_eq!(code_step(&app, &client, &csrf, "000000").await.status(), 401);
    let res = code_step(&app, &client, &csrf, &code_at(&secret, app.clock.now())).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert_eq!(codes_of(&html).len(), 10);
    assert!(html.contains("href=\"/account/emails\""), "on to where the user was going:\n{html}");
    let (status, html) = get(&app, &client, "/account/mfa").await;
    assert_eq!(status, 200);
    assert!(html.contains("10 recovery codes are left."));
    // From now on the code is asked for.
    password_step(&app).await;
}

async fn compat_password_login(app: &TestApp) -> reqwest::Response {
    let body = serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD});
    app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn compat_password_login_refused_for_mfa_users_unless_allowed() {
    let app = app_with("").await;
    assert_eq!(compat_password_login(&app).await.status(), 200);
    enrol(&app).await;
    let res = compat_password_login(&app).await;
    assert_eq!(res.status(), 403);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    assert!(body["error"].as_str().unwrap().contains("m.login.sso"), "{body}");

    let app = app_with("account:\n  mfa_compat_password_login_allowed: true\n").await;
    enrol(&app).await;
    assert_eq!(compat_password_login(&app).await.status(), 200);
}

/// Waits (on the browser's own navigation, up to 20 s) until the path starts with `prefix`.
/// Headless Chromium through the real pages: enrol (the code computed from the key read off the
/// page) → sign out → sign in with a TOTP code → a wrong code refused → a recovery code once,
/// then refused. Screenshots of every new page at desktop and phone widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mfa_walk_in_chromium() {
    use crate::browser::Chrome;
    let app = app_with("").await;
    let chrome = Chrome::start("mfa").await;
    let sign_in = async |chrome: &Chrome| {
        chrome.goto(&app.url("/login")).await;
        chrome.fill("#username", "alice").await;
        chrome.fill("#password", PASSWORD).await;
        chrome.click("form[action='/login'] button[type=submit]").await;
    };
    let sign_out = async |chrome: &Chrome| {
        chrome.goto(&app.url("/account/")).await;
        chrome.click("form[action='/logout'] button").await;
        chrome.wait_path("/login").await;
    };
    sign_in(&chrome).await;
    chrome.wait_path("/account/").await;
    chrome.goto(&app.url("/account/mfa")).await;
    chrome.shoot("mfa-off").await;
    chrome.click("form[action='/account/mfa/totp'] button").await;
    chrome.wait_path("/account/mfa/totp").await;
    chrome.shoot("mfa-enrol").await;
    let b32: String = chrome.find("#totp-secret").await.text().await.unwrap().split_whitespace().collect();
    let secret = Secret::Encoded(b32).to_bytes().unwrap();
    chrome.fill("#code", &code_at(&secret, app.clock.now())).await;
    chrome.click("form[action='/account/mfa/totp/confirm'] button[type=submit]").await;
    chrome.shoot("mfa-recovery-codes").await;
    let mut codes = Vec::new();
    for e in chrome.client.find_all(fantoccini::Locator::Css(".mfa-codes code")).await.unwrap() {
        codes.push(e.text().await.unwrap());
    }
    assert_eq!(codes.len(), 10);
    chrome.click("a[href='/account/mfa']").await;
    assert!(chrome.text().await.contains("10 recovery codes are left."));
    chrome.shoot("mfa-on").await;

    sign_out(&chrome).await;
    sign_in(&chrome).await;
    chrome.wait_path("/login/mfa").await;
    chrome.shoot("login-mfa").await;
    chrome.fill("#code", "000000").await;
    chrome.click("form[action='/login/mfa'] button[type=submit]").await;
    chrome.wait_text("That code is not correct").await;
    chrome.shoot("login-mfa-wrong").await;
    app.clock.advance(30);
    chrome.fill("#code", &code_at(&secret, app.clock.now())).await;
    chrome.click("form[action='/login/mfa'] button[type=submit]").await;
    chrome.wait_path("/account/").await;

    for attempt in 0..2 {
        sign_out(&chrome).await;
        sign_in(&chrome).await;
        chrome.wait_path("/login/mfa").await;
        chrome.fill("#code", &codes[3]).await;
        chrome.click("form[action='/login/mfa'] button[type=submit]").await;
        if attempt == 0 {
            chrome.wait_path("/account/").await;
        } else {
            chrome.wait_text("That code is not correct, or was already used.").await;
        }
    }
}
