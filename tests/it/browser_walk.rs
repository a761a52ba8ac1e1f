//! The account pages walked in headless Chromium against the real binary, real Synapse 1.163.2
//! behind nginx, and a real SMTP server (aiosmtpd): register with an invite code → verify the
//! email → sign out → recover the password by email → sign in through an OAuth client →
//! consent → account page → rename (visible in Synapse) → end the session (device gone in
//! Synapse). Every page is screenshot at desktop and phone widths (see `browser.rs`).

use std::time::{Duration, Instant};

use appliance::lifecycle::users;
use serde_json::Value;

use crate::browser::{Callback, Chrome};
use crate::e2e_synapse::Env;
use crate::email::{Smtp, code_of};
use crate::flows::{self, PUBLIC_CLIENT};
use crate::synapse_harness::{self as harness, SynapseMode};

const INVITE: &str = "WELCOME-TO-THE-CLUB";
const FIRST_PASSWORD: &str = "amber walrus juggles quietly";
const NEW_PASSWORD: &str = "seven copper kites over lisbon";
const DEVICE: &str = "BROWSERWALK1";
const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";

fn config(smtp_port: u16) -> String {
    format!(
        r#"account:
  password_registration_enabled: true
  registration_token_required: true
  password_registration_email_required: true
  password_recovery_enabled: true
branding:
  service_name: "Example Club accounts"
  tos_uri: "https://club.example.org/terms"
  policy_uri: "https://club.example.org/privacy"
email:
  from: '"Example Club" <accounts@club.example.org>'
  transport: smtp
  mode: plain
  hostname: 127.0.0.1
  port: {smtp_port}
"#
    )
}

/// Polls `check` until it holds (Synapse is told through jobs that may run a moment later).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(20), "{what} did not happen within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn link_of(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text part");
    text.split_whitespace().find(|w| w.contains("/recover/")).unwrap_or_else(|| panic!("no link in {text}")).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_recover_consent_and_manage_the_account_in_chromium() {
    tokio::task::block_in_place(harness::ensure_installed);
    let smtp = tokio::task::block_in_place(Smtp::start);
    let env = Env::start_with(SynapseMode::Modern, &config(smtp.port)).await;
    let app = &env.app;
    let out = env.app.run_cli(&["manage", "issue-user-registration-token", "--token", INVITE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chrome = Chrome::start("account-walk").await;

    // 1. Register with the invite code; the emailed code proves the address.
    env.step("register");
    chrome.goto(&app.url("/register")).await;
    chrome.shoot("register").await;
    chrome.fill("#username", "carol").await;
    chrome.fill("#email", "carol@club.example.org").await;
    chrome.fill("#password", FIRST_PASSWORD).await;
    chrome.fill("#password_confirm", FIRST_PASSWORD).await;
    chrome.fill("#display_name", "Carol").await;
    chrome.fill("#token", INVITE).await;
    chrome.find("#tos").await.click().await.expect("tick the terms");
    chrome.click("form[action='/register'] button[type=submit]").await;
    chrome.expect_path("/register/verify/").await;
    chrome.shoot("register-verify-email").await;
    let code = code_of(&smtp.wait_for(1).await);
    chrome.fill("#code", &code).await;
    chrome.click("form[action^='/register/verify/'] button[type=submit]").await;
    chrome.expect_path("/account/").await;
    assert!(chrome.text().await.contains("@carol:localhost"));
    chrome.shoot("account-after-registration").await;
    let carol = env.synapse.user_id("carol");
    eventually("carol exists in Synapse with her email", async || {
        let sql = format!("SELECT name FROM users WHERE name = '{carol}'");
        let exists = tokio::task::block_in_place(|| env.synapse.query_db(&sql)).is_ok_and(|r| r.trim() == carol);
        exists && env.synapse_emails("carol") == ["carol@club.example.org"]
    })
    .await;

    // 2. Sign out from the header.
    env.step("sign out");
    chrome.click("form[action='/logout'] button[type=submit]").await;
    chrome.expect_path("/login").await;
    chrome.shoot("login").await;

    // 3. Recover the password by email.
    env.step("recover the password");
    chrome.click("a[href='/recover']").await;
    chrome.expect_path("/recover").await;
    chrome.shoot("recover").await;
    chrome.fill("#email", "carol@club.example.org").await;
    chrome.click("form[action='/recover'] button[type=submit]").await;
    assert!(chrome.text().await.to_lowercase().contains("email"), "{}", chrome.text().await);
    chrome.shoot("recover-sent").await;
    let link = link_of(&smtp.wait_for(2).await);
    assert!(link.starts_with(&app.base), "{link}");
    chrome.goto(&link).await;
    chrome.shoot("recover-new-password").await;
    chrome.fill("#new_password", "carol2026").await;
    chrome.fill("#new_password_confirm", "carol2026").await;
    chrome.click("form[action^='/recover/'] button[type=submit]").await;
    assert!(chrome.text().await.contains("too easy to guess"), "{}", chrome.text().await);
    chrome.shoot("recover-weak-password").await;
    chrome.fill("#new_password", NEW_PASSWORD).await;
    chrome.fill("#new_password_confirm", NEW_PASSWORD).await;
    chrome.click("form[action^='/recover/'] button[type=submit]").await;
    assert!(chrome.text().await.contains("Password changed"), "{}", chrome.text().await);
    chrome.shoot("recover-done").await;

    // 4. An app sends the browser to /authorize: sign in with the new password, then consent.
    env.step("sign in through an OAuth client and consent");
    let callback = Callback::start();
    let redirect_uri = format!("http://127.0.0.1:{}/callback", callback.port);
    let pkce = flows::pkce();
    let scope = format!("openid {API} urn:matrix:org.matrix.msc2967.client:device:{DEVICE}");
    let authorize = url::Url::parse_with_params(
        &app.url("/authorize"),
        [
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", scope.as_str()),
            ("state", "walk-state"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("authorize url");
    chrome.goto(authorize.as_str()).await;
    chrome.expect_path("/login").await;
    chrome.fill("#username", "carol").await;
    chrome.fill("#password", FIRST_PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.expect_path("/login").await;
    assert!(chrome.text().await.contains("Invalid username or password."), "{}", chrome.text().await);
    chrome.shoot("login-wrong-password").await;
    chrome.fill("#password", NEW_PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.expect_path("/consent/").await;
    assert!(chrome.text().await.contains("Test App"), "{}", chrome.text().await);
    chrome.shoot("consent").await;
    chrome.click("button[name=decision][value=allow]").await;
    let back = chrome.url().await;
    assert_eq!(back.port(), Some(callback.port), "{back}");
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("walk-state"));
    let code = params.get("code").unwrap_or_else(|| panic!("no code in {back}"));
    let (status, tokens) = env
        .send(env.http.post(app.url("/oauth2/token")).form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", PUBLIC_CLIENT),
            ("code_verifier", pkce.verifier.as_str()),
        ]))
        .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access token").to_string();
    env.expect_whoami(&access, "carol", DEVICE).await;
    assert!(env.synapse_devices("carol").contains(&DEVICE.to_string()));

    // 5. The account page: rename, and Synapse shows the new name.
    env.step("rename on the account page");
    chrome.goto(&app.url("/account/")).await;
    chrome.shoot("account").await;
    chrome.fill("#display_name", "Carol Danvers").await;
    chrome.click("form[action='/account/profile'] button[type=submit]").await;
    chrome.expect_path("/account/").await;
    chrome.shoot("account-renamed").await;
    let profile_url = env.nginx.url(&format!("/_matrix/client/v3/profile/{carol}/displayname"));
    eventually("Synapse shows the new display name", async || {
        let (status, body) = env.send(env.http.get(&profile_url).bearer_auth(&access)).await;
        status == 200 && body["displayname"] == "Carol Danvers"
    })
    .await;
    let user = users::find(&app.state.store, "carol").await.expect("carol");
    assert_eq!(user.display_name.as_deref(), Some("Carol Danvers"));

    // 6. Sessions: the list, the device page Element X opens, and signing the device out.
    env.step("end the session from the account page");
    chrome.goto(&app.url("/account/?action=org.matrix.sessions_list")).await;
    assert!(chrome.text().await.contains(DEVICE), "{}", chrome.text().await);
    chrome.shoot("sessions").await;
    chrome.goto(&app.url(&format!("/account/?action=org.matrix.device_view&device_id={DEVICE}"))).await;
    assert!(chrome.text().await.contains("Test App"), "{}", chrome.text().await);
    chrome.shoot("session").await;
    chrome.click("form[action='/account/sessions/end'] button[type=submit]").await;
    chrome.expect_path("/account/").await;
    assert!(!chrome.text().await.contains(DEVICE), "{}", chrome.text().await);
    chrome.shoot("sessions-after-sign-out").await;
    eventually("the device is gone from Synapse", async || !env.synapse_devices("carol").contains(&DEVICE.into()))
        .await;
    let (status, body) = env.whoami(&access).await;
    assert_eq!(status, 401, "the ended session's token still works: {body}");

    // 7. A page that goes wrong still looks like the service.
    chrome.goto(&app.url("/account/?action=org.matrix.device_view&device_id=NOSUCHDEVICE")).await;
    chrome.shoot("unknown-device").await;
    chrome.goto(&app.url("/authorize?client_id=nope")).await;
    chrome.shoot("authorize-error").await;
    env.step("done");
}

/// The pages the first walk does not reach, against a fake homeserver (fast; nothing here needs
/// Synapse's answers): the strength meter, email addresses, linking a device by code, the legacy
/// SSO confirmation, cross-signing reset, deactivation and a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_other_page_in_chromium() {
    tokio::task::block_in_place(harness::ensure_installed);
    let smtp = tokio::task::block_in_place(Smtp::start);
    let (endpoint, _calls) = crate::register::fake_homeserver().await;
    let patch = crate::helpers::merged_yaml(
        &format!("{}\n{}", flows::clients_patch(), config(smtp.port)),
        &format!("matrix: {{endpoint: \"{endpoint}\"}}\naccount: {{registration_token_required: false}}\n"),
    );
    let app = crate::helpers::spawn_app_with(&patch).await;
    let chrome = Chrome::start("other-pages").await;

    // Sign-up: a weak password shows the meter and zxcvbn's advice.
    chrome.goto(&app.url("/register")).await;
    chrome.fill("#username", "dave").await;
    chrome.fill("#email", "dave@club.example.org").await;
    chrome.fill("#password", "dave1234").await;
    chrome.fill("#password_confirm", "dave1234").await;
    chrome.find("#tos").await.click().await.expect("tick the terms");
    chrome.click("form[action='/register'] button[type=submit]").await;
    chrome.expect_path("/register").await;
    assert!(chrome.text().await.contains("too easy to guess"), "{}", chrome.text().await);
    chrome.find("meter.strength-meter").await;
    chrome.shoot("register-weak-password").await;

    // Signed in as an existing user from here on.
    flows::register_user(&app, "erin", NEW_PASSWORD, false).await;
    chrome.goto(&app.url("/login")).await;
    chrome.fill("#username", "erin").await;
    chrome.fill("#password", NEW_PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.expect_path("/account/").await;

    // Email addresses: add one, the code page, a wrong code, then the right one.
    chrome.goto(&app.url("/account/emails")).await;
    chrome.shoot("emails").await;
    chrome.fill("#email", "erin@club.example.org").await;
    chrome.click("form[action='/account/emails/add'] button[type=submit]").await;
    chrome.expect_path("/account/emails/verify/").await;
    chrome.shoot("email-verify").await;
    let code = code_of(&smtp.wait_for(1).await);
    chrome.fill("#code", &crate::email::wrong_code(&code)).await;
    chrome.click("form[action^='/account/emails/verify/'] button[type=submit]").await;
    chrome.shoot("email-verify-wrong-code").await;
    chrome.fill("#code", &code).await;
    chrome.click("form[action^='/account/emails/verify/'] button[type=submit]").await;
    assert!(chrome.text().await.contains("erin@club.example.org"), "{}", chrome.text().await);
    chrome.shoot("emails-verified").await;

    // A TV-style device asks for a code; the user links it here.
    let (status, start) = {
        let res = app
            .client
            .post(app.url("/oauth2/device"))
            .form(&[("client_id", PUBLIC_CLIENT), ("scope", &format!("openid {API}"))])
            .send()
            .await
            .expect("device authorization");
        (res.status(), res.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, 200, "{start}");
    chrome.goto(&app.url("/link")).await;
    chrome.shoot("link-device").await;
    chrome.fill("#code", start["user_code"].as_str().expect("user_code")).await;
    chrome.click("form[action='/link'] button[type=submit]").await;
    chrome.expect_path("/device/").await;
    chrome.shoot("device-consent").await;
    chrome.click("button[name=decision][value=allow]").await;
    chrome.shoot("device-linked").await;

    // A legacy client's SSO login asks before handing over a login token.
    let sso = "/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fclient.example%2Fdone";
    chrome.goto(&app.url(sso)).await;
    chrome.expect_path("/complete-compat-sso/").await;
    chrome.shoot("legacy-sso-confirm").await;

    // Cross-signing reset and deactivation, as Element X opens them, with a wrong password first.
    chrome.goto(&app.url("/account/?action=org.matrix.cross_signing_reset")).await;
    chrome.shoot("cross-signing-reset").await;
    chrome.fill("#password", "not my password").await;
    chrome.click("form[action='/account/cross-signing-reset'] button[type=submit]").await;
    chrome.shoot("cross-signing-reset-wrong-password").await;
    chrome.fill("#password", NEW_PASSWORD).await;
    chrome.click("form[action='/account/cross-signing-reset'] button[type=submit]").await;
    chrome.shoot("cross-signing-reset-allowed").await;
    chrome.goto(&app.url("/account/?action=org.matrix.account_deactivate")).await;
    chrome.shoot("deactivate").await;

    chrome.goto(&app.url("/no/such/page")).await;
    chrome.shoot("not-found").await;
}
