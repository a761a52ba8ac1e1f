//! Issue 16's "How it is tested", end to end: headless Chromium through the real pages of the
//! appliance, in front of real Synapse 1.163.2 behind nginx (one Synapse for the whole walk).
//!
//! - TOTP: enrolled on the account page (the walk reads the text secret off the page and
//!   computes the codes itself, RFC 6238), then an app's sign-in asks for a code after the
//!   password: a wrong code is refused, the right one leads on to consent, and the token the app
//!   gets works at Synapse through nginx (whoami). A recovery code works once, then is refused.
//! - Compat `m.login.password` through nginx is refused with `M_FORBIDDEN` for that user, and
//!   the single sign-on flow it points to works (code step included, `m.login.token`, whoami).
//! - Passkeys with Chromium's virtual authenticator: added on the account page, an app's
//!   sign-in with the passkey alone (no username; whoami), the passkey as the step after the
//!   password, then removed — after the five minutes a sign-in's factor covers, only once a
//!   factor is confirmed again on the confirmation page (a wrong code refused first).
//! - `account.mfa: required`: the appliance restarted with it (same port and database; Synapse
//!   and nginx unchanged) takes a user without a factor through enrolment at sign-in, and on to
//!   the app (whoami).
//!
//! WebAuthn needs a domain as relying party (browsers refuse IP addresses), so the appliance's
//! `public_base` is `http://localhost:PORT/` and Chromium opens `localhost`; Synapse reaches it
//! on 127.0.0.1. Every MFA page is screenshot at desktop and phone widths into
//! `target/screenshots/mfa-e2e/` (see `browser.rs`).
//!
//! Time: the server's clock follows the wall clock (`e2e_synapse`); a TOTP code is single-use
//! per 30-second step, so before each new code the walk moves the server's clock on one step
//! instead of waiting for it.

use std::collections::HashMap;

use appliance::clock::Clock;
use serde_json::{Value, json};
use totp_rs::Secret;

use crate::browser::{Callback, Chrome};
use crate::e2e_synapse::{Env, PASSWORD};
use crate::flows::{self, PUBLIC_CLIENT};
use crate::mfa::code_at;
use crate::synapse_harness::{self as harness, SynapseMode};

const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
const WRONG_CODE_TEXT: &str = "That code is not correct";

/// Pages under `localhost` (see the module doc).
const LOCALHOST: &str = "http:\n  public_base: \"http://localhost:$PORT/\"\n";

/// `http://localhost:PORT/path` of the appliance.
fn local(env: &Env, path: &str) -> String {
    format!("http://localhost:{}{path}", env.app.addr.port())
}

/// The code of the next step: codes are single-use per step, so the clock moves on one.
fn next_code(env: &Env, secret: &[u8]) -> String {
    env.app.clock.advance(30);
    code_at(secret, env.app.clock.now())
}

/// Six digits that none of the steps the server accepts now (or a moment later) gives.
fn wrong_code(env: &Env, secret: &[u8]) -> String {
    let now = env.app.clock.now();
    let valid: Vec<String> = [-30, 0, 30, 60].iter().map(|d| code_at(secret, now + d)).collect();
    (0u32..).map(|n| format!("{:06}", (123_456 + n * 7919) % 1_000_000)).find(|c| !valid.contains(c)).unwrap()
}

/// The secret the enrolment page shows as text (what someone types into an app that cannot
/// scan the QR code).
async fn secret_on_page(chrome: &Chrome) -> Vec<u8> {
    let b32: String = chrome.find("#totp-secret").await.text().await.unwrap().split_whitespace().collect();
    Secret::Encoded(b32.clone()).to_bytes().unwrap_or_else(|e| panic!("not a base32 secret: {b32}: {e:?}"))
}

async fn recovery_codes_on_page(chrome: &Chrome) -> Vec<String> {
    let mut codes = Vec::new();
    for e in chrome.client.find_all(fantoccini::Locator::Css(".mfa-codes code")).await.unwrap() {
        codes.push(e.text().await.unwrap());
    }
    assert_eq!(codes.len(), 10, "ten recovery codes:\n{}", chrome.text().await);
    codes
}

async fn password_step(chrome: &Chrome, username: &str) {
    chrome.expect_path("/login").await;
    chrome.fill("#username", username).await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
}

async fn code_step(chrome: &Chrome, code: &str) {
    chrome.fill("#code", code).await;
    chrome.click("form[action='/login/mfa'] button[type=submit]").await;
}

async fn sign_out(env: &Env, chrome: &Chrome) {
    chrome.goto(&local(env, "/account/")).await;
    chrome.click("form[action='/logout'] button[type=submit]").await;
    chrome.wait_path("/login").await;
}

/// An app's sign-in as Element X makes it: authorization code + PKCE, a device scope, a loopback
/// redirect URI.
struct AppSignIn {
    callback: Callback,
    redirect_uri: String,
    pkce: flows::Pkce,
    device: &'static str,
}

impl AppSignIn {
    /// Sends the browser to `/authorize`; it lands on the sign-in page.
    async fn start(env: &Env, chrome: &Chrome, device: &'static str) -> AppSignIn {
        let callback = Callback::start();
        let redirect_uri = format!("http://127.0.0.1:{}/callback", callback.port);
        let pkce = flows::pkce();
        let scope = format!("openid {API} urn:matrix:org.matrix.msc2967.client:device:{device}");
        let authorize = url::Url::parse_with_params(
            &local(env, "/authorize"),
            [
                ("response_type", "code"),
                ("client_id", PUBLIC_CLIENT),
                ("redirect_uri", redirect_uri.as_str()),
                ("scope", scope.as_str()),
                ("state", device),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .expect("authorize url");
        chrome.goto(authorize.as_str()).await;
        chrome.wait_path("/login").await;
        AppSignIn { callback, redirect_uri, pkce, device }
    }

    /// Once signed in: consent, the code back at the app, exchanged for tokens; the access token
    /// works at Synapse through nginx as `localpart` with the requested device.
    async fn finish(self, env: &Env, chrome: &Chrome, localpart: &str) -> String {
        chrome.wait_path("/consent/").await;
        chrome.click("button[name=decision][value=allow]").await;
        let back = chrome.url().await;
        assert_eq!(back.port(), Some(self.callback.port), "back at the app: {back}");
        let params: HashMap<_, _> = back.query_pairs().into_owned().collect();
        assert_eq!(params.get("state").map(String::as_str), Some(self.device));
        let code = params.get("code").unwrap_or_else(|| panic!("no code in {back}"));
        let (status, tokens) = env
            .send(env.http.post(env.app.url("/oauth2/token")).form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("client_id", PUBLIC_CLIENT),
                ("code_verifier", self.pkce.verifier.as_str()),
            ]))
            .await;
        assert_eq!(status, 200, "code exchange: {tokens}");
        let access = crate::e2e_synapse::access_token(&tokens);
        env.expect_whoami(&access, localpart, self.device).await;
        access
    }
}

/// `POST /_matrix/client/v3/login` through nginx, as a legacy client sends it.
async fn compat_password_login(env: &Env, localpart: &str) -> (reqwest::StatusCode, Value) {
    let body = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": PASSWORD,
    });
    env.send(env.http.post(env.nginx.url("/_matrix/client/v3/login")).json(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_factors_walk_against_synapse_behind_nginx_in_chromium() {
    tokio::task::block_in_place(harness::ensure_installed);
    let mut env = Env::start_with(SynapseMode::Modern, LOCALHOST).await;
    env.register("alice", &[]);
    let chrome = Chrome::start("mfa-e2e").await;
    chrome.add_virtual_authenticator().await;

    // Before any factor, compat password login through nginx works (the refusal below is the
    // factor's doing, not the route's).
    env.step("compat password login before enrolment");
    let (status, body) = compat_password_login(&env, "alice").await;
    assert_eq!(status, 200, "{body}{}", env.logs());

    // 1. Enrol TOTP on the account page.
    env.step("enrol TOTP on the account page");
    chrome.goto(&local(&env, "/account/mfa")).await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/account/mfa").await;
    chrome.shoot("account-mfa-off").await;
    chrome.click("form[action='/account/mfa/totp'] button[type=submit]").await;
    chrome.wait_path("/account/mfa/totp").await;
    assert!(chrome.find(".mfa-qr-wrap svg").await.attr("aria-label").await.unwrap().is_some(), "a QR code");
    chrome.shoot("totp-enrol").await;
    let secret = secret_on_page(&chrome).await;
    chrome.fill("#code", &wrong_code(&env, &secret)).await;
    chrome.click("form[action='/account/mfa/totp/confirm'] button[type=submit]").await;
    chrome.wait_text(WRONG_CODE_TEXT).await;
    chrome.shoot("totp-enrol-wrong-code").await;
    chrome.fill("#code", &code_at(&secret, env.app.clock.now())).await;
    chrome.click("form[action='/account/mfa/totp/confirm'] button[type=submit]").await;
    chrome.shoot("recovery-codes").await;
    let codes = recovery_codes_on_page(&chrome).await;
    chrome.click("a[href='/account/mfa']").await;
    chrome.wait_text("10 recovery codes are left.").await;
    chrome.shoot("account-mfa-on").await;

    // 2. Compat password login cannot carry the code: refused, pointing to single sign-on.
    env.step("compat password login refused");
    let (status, body) = compat_password_login(&env, "alice").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("m.login.sso"), "{body}");

    // 3. An app's sign-in: password, a wrong code refused, the right code, consent, whoami.
    env.step("an app's sign-in with password and TOTP code");
    sign_out(&env, &chrome).await;
    let app_sign_in = AppSignIn::start(&env, &chrome, "MFAWALKTOTP1").await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/login/mfa").await;
    chrome.shoot("login-code").await;
    code_step(&chrome, &wrong_code(&env, &secret)).await;
    chrome.wait_text(WRONG_CODE_TEXT).await;
    chrome.shoot("login-code-wrong").await;
    code_step(&chrome, &next_code(&env, &secret)).await;
    app_sign_in.finish(&env, &chrome, "alice").await;

    // 4. A recovery code instead of the TOTP code: once, then refused.
    env.step("a recovery code once, then refused");
    sign_out(&env, &chrome).await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/login/mfa").await;
    code_step(&chrome, &codes[3]).await;
    chrome.wait_path("/account/").await;
    sign_out(&env, &chrome).await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/login/mfa").await;
    code_step(&chrome, &codes[3]).await;
    chrome.wait_text("That code is not correct, or was already used.").await;
    chrome.expect_path("/login/mfa").await;
    chrome.shoot("login-recovery-code-used").await;
    code_step(&chrome, &next_code(&env, &secret)).await;
    chrome.wait_path("/account/").await;
    chrome.goto(&local(&env, "/account/mfa")).await;
    chrome.wait_text("9 recovery codes are left.").await;

    // 5. Legacy single sign-on, where the refusal points: the code step, then m.login.token.
    env.step("compat single sign-on with the code step");
    sign_out(&env, &chrome).await;
    let sso_callback = Callback::start();
    let redirect_url = format!("http://127.0.0.1:{}/sso", sso_callback.port);
    let sso_start = url::Url::parse_with_params(
        &env.nginx.url("/_matrix/client/v3/login/sso/redirect"),
        [("redirectUrl", redirect_url.as_str())],
    )
    .unwrap();
    chrome.goto(sso_start.as_str()).await;
    chrome.wait_path("/login").await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/login/mfa").await;
    code_step(&chrome, &next_code(&env, &secret)).await;
    chrome.wait_path("/complete-compat-sso/").await;
    chrome.click("form[action^='/complete-compat-sso/'] button[type=submit]").await;
    let back = chrome.url().await;
    assert_eq!(back.port(), Some(sso_callback.port), "back at the legacy client: {back}");
    let login_token = back.query_pairs().find(|(k, _)| k == "loginToken").map(|(_, v)| v.into_owned());
    let login_token = login_token.unwrap_or_else(|| panic!("no loginToken in {back}"));
    let (status, body) = env
        .send(
            env.http
                .post(env.nginx.url("/_matrix/client/v3/login"))
                .json(&json!({"type": "m.login.token", "token": login_token, "device_id": "MFAWALKSSO01"})),
        )
        .await;
    assert_eq!(status, 200, "m.login.token through nginx: {body}");
    let token = body["access_token"].as_str().expect("access_token").to_string();
    env.expect_whoami(&token, "alice", "MFAWALKSSO01").await;

    // 6. Passkeys: add one on the account page.
    env.step("add a passkey");
    chrome.goto(&local(&env, "/account/mfa")).await;
    assert!(chrome.text().await.contains("You have no passkey."), "{}", chrome.text().await);
    chrome.fill("#passkey-name", "Laptop").await;
    chrome.click("form[action='/account/passkeys/add'] button[type=submit]").await;
    chrome.wait_path("/account/mfa?notice=passkey_added").await;
    assert!(chrome.text().await.contains("Laptop"), "{}", chrome.text().await);
    chrome.shoot("account-passkey-added").await;

    // 7. An app's sign-in with the passkey alone: no username, no password, no code.
    env.step("an app's sign-in with the passkey alone");
    sign_out(&env, &chrome).await;
    let app_sign_in = AppSignIn::start(&env, &chrome, "MFAWALKPASS1").await;
    chrome.shoot("login-with-passkey").await;
    chrome.click("form[action='/login/passkey'] button[type=submit]").await;
    app_sign_in.finish(&env, &chrome, "alice").await;

    // 8. The passkey as the step after the password.
    env.step("the passkey after the password");
    sign_out(&env, &chrome).await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/login/mfa").await;
    chrome.shoot("login-code-or-passkey").await;
    chrome.click("form[action='/login/mfa/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;

    // 9. Remove it. The sign-in's second step confirmed a factor for five minutes; after
    // that, removing a factor asks for one again: refused, then confirmed with a TOTP code on
    // the confirmation page (a wrong one first), then removed. The account page lists none,
    // and the sign-in page offers the code only.
    env.step("remove the passkey, re-checking a factor");
    env.app.clock.advance(301);
    chrome.goto(&local(&env, "/account/mfa")).await;
    chrome.wait_text("Changes on this page need your second factor again.").await;
    chrome.click(".passkey-remove button[type=submit]").await;
    chrome.wait_text("confirm it’s you with a passkey").await;
    assert!(chrome.text().await.contains("Laptop"), "not removed yet:\n{}", chrome.text().await);
    chrome.shoot("account-mfa-factor-needed").await;
    chrome.click("a[href='/account/confirm?next=%2Faccount%2Fmfa']").await;
    chrome.wait_path("/account/confirm").await;
    chrome.shoot("account-confirm").await;
    chrome.fill("#code", &wrong_code(&env, &secret)).await;
    chrome.click("form[action='/account/confirm'] button[type=submit]").await;
    chrome.wait_text(WRONG_CODE_TEXT).await;
    chrome.shoot("account-confirm-wrong-code").await;
    chrome.fill("#code", &next_code(&env, &secret)).await;
    chrome.click("form[action='/account/confirm'] button[type=submit]").await;
    chrome.wait_path("/account/mfa").await;
    chrome.click(".passkey-remove button[type=submit]").await;
    chrome.wait_path("/account/mfa?notice=passkey_removed").await;
    assert!(chrome.text().await.contains("You have no passkey."), "{}", chrome.text().await);
    chrome.shoot("account-passkey-removed").await;
    sign_out(&env, &chrome).await;
    password_step(&chrome, "alice").await;
    chrome.wait_path("/login/mfa").await;
    assert!(
        chrome.client.find(fantoccini::Locator::Css("form[action='/login/mfa/passkey']")).await.is_err(),
        "no passkey offered once removed"
    );

    // 10. The operator makes a second factor required and restarts: bob, who has none, is taken
    // through enrolment at his next sign-in, and on to the app.
    env.step("account.mfa: required");
    env.reboot_app_with("account:\n  mfa: required\n").await;
    env.register("bob", &[]);
    let app_sign_in = AppSignIn::start(&env, &chrome, "MFAWALKBOB01").await;
    password_step(&chrome, "bob").await;
    chrome.wait_path("/login/mfa").await;
    chrome.wait_text("asks every account for a second step").await;
    chrome.shoot("required-enrol").await;
    let bob_secret = secret_on_page(&chrome).await;
    code_step(&chrome, &wrong_code(&env, &bob_secret)).await;
    chrome.wait_text(WRONG_CODE_TEXT).await;
    chrome.shoot("required-enrol-wrong-code").await;
    code_step(&chrome, &code_at(&bob_secret, env.app.clock.now())).await;
    chrome.shoot("required-recovery-codes").await;
    recovery_codes_on_page(&chrome).await;
    chrome.click("a.button-primary[href^='/consent/']").await;
    app_sign_in.finish(&env, &chrome, "bob").await;
    let (status, body) = compat_password_login(&env, "bob").await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    env.step("done");
}
