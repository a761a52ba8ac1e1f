//! Passkeys (issue 16 item 3): registered, used and removed through the real pages in headless
//! Chromium with its virtual authenticator (WebDriver `addVirtualAuthenticator`, CTAP2, resident
//! keys, user verification); the forms' place without JavaScript; the sign-in rate limit.
//!
//! WebAuthn needs a domain as relying party (browsers refuse IP addresses), so these apps have
//! `public_base: http://localhost:PORT/` and Chromium opens `localhost`.

use serde_json::json;

use crate::browser::Chrome;
use crate::flows::*;
use crate::helpers::{TestApp, merged_yaml, spawn_app_with};
use crate::mfa::PASSWORD;

async fn localhost_app(extra: &str) -> TestApp {
    let patch = format!("{}http:\n  public_base: \"http://localhost:$PORT/\"\n", clients_patch());
    let app = spawn_app_with(&merged_yaml(&patch, extra)).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

/// `http://localhost:PORT/path` of an app.
fn local(app: &TestApp, path: &str) -> String {
    let port = url::Url::parse(&app.url("/")).unwrap().port().unwrap();
    format!("http://localhost:{port}{path}")
}

fn passkey_rows(app: &TestApp) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let mut stmt = conn.prepare("SELECT name, credential FROM user_passkeys ORDER BY passkey_id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
}

/// Register a passkey from the account page, sign in with it alone (no username), use it as
/// the step after the password, rename it and remove it — then the password alone signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passkeys_in_chromium_with_a_virtual_authenticator() {
    let app = localhost_app("").await;
    let chrome = Chrome::start("passkeys").await;
    chrome.add_virtual_authenticator().await;
    let sign_out = async |chrome: &Chrome| {
        chrome.goto(&local(&app, "/account/")).await;
        chrome.click("form[action='/logout'] button").await;
        chrome.wait_path("/login").await;
    };
    let password_sign_in = async |chrome: &Chrome| {
        chrome.goto(&local(&app, "/login")).await;
        chrome.fill("#username", "alice").await;
        chrome.fill("#password", PASSWORD).await;
        chrome.click("form[action='/login'] button[type=submit]").await;
    };

    password_sign_in(&chrome).await;
    chrome.wait_path("/account/").await;
    chrome.goto(&local(&app, "/account/mfa")).await;
    assert!(chrome.text().await.contains("You have no passkey."));
    chrome.shoot("passkeys-none").await;
    chrome.fill("#passkey-name", "Laptop").await;
    chrome.click("form[action='/account/passkeys/add'] button[type=submit]").await;
    chrome.wait_path("/account/mfa?notice=passkey_added").await;
    assert!(chrome.text().await.contains("Laptop"), "{}", chrome.text().await);
    chrome.shoot("passkeys-one").await;
    let rows = passkey_rows(&app);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "Laptop");

    // Username-less: the passkey alone signs in.
    sign_out(&chrome).await;
    chrome.shoot("login-with-passkey-button").await;
    chrome.click("form[action='/login/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    assert!(chrome.text().await.contains("@alice:localhost"), "{}", chrome.text().await);

    // After the password, the passkey is the second step.
    sign_out(&chrome).await;
    password_sign_in(&chrome).await;
    chrome.wait_path("/login/mfa").await;
    chrome.shoot("login-mfa-passkey").await;
    chrome.click("form[action='/login/mfa/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let used: Option<i64> = conn.query_row("SELECT last_used_at FROM user_passkeys", [], |r| r.get(0)).unwrap();
    assert!(used.is_some(), "the passkey's last use is recorded");

    // Rename, then remove.
    chrome.goto(&local(&app, "/account/mfa")).await;
    chrome.fill(".passkey-rename input[name=name]", "Work laptop").await;
    chrome.click(".passkey-rename button[type=submit]").await;
    chrome.wait_path("/account/mfa?notice=passkey_renamed").await;
    assert_eq!(passkey_rows(&app)[0].0, "Work laptop");
    chrome.click(".passkey-remove button[type=submit]").await;
    chrome.wait_path("/account/mfa?notice=passkey_removed").await;
    assert!(passkey_rows(&app).is_empty());
    sign_out(&chrome).await;
    password_sign_in(&chrome).await;
    chrome.wait_path("/account/").await;
}

/// Without JavaScript the passkey forms stay hidden; the one script is a hashed asset (the
/// strict CSP allows no inline script); on an IP-address `public_base` no passkey is offered.
#[tokio::test]
async fn passkey_forms_are_hidden_without_javascript_and_need_a_domain() {
    let app = localhost_app("").await;
    let client = app.new_client();
    let res = client.get(app.url("/login")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.unwrap();
    let form = html.split("action=\"/login/passkey\"").nth(1).expect("a passkey form on /login");
    let form = form.split('>').next().unwrap();
    assert!(form.contains("data-passkey=\"get\"") && form.ends_with(" hidden"), "{form}");
    let script = html.split("<script src=\"").filter_map(|s| s.split('"').next()).find(|s| s.contains("passkey."));
    let script = script.expect("the passkey script");
    assert!(script.starts_with("/assets/passkey.") && script.ends_with(".js"), "{script}");
    let res = client.get(app.url(script)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(!html.contains("<script>"), "no inline script");

    let ip_app = spawn_app_with(&clients_patch()).await;
    let (_, html) = get(&ip_app, &ip_app.new_client(), "/login").await;
    assert!(!html.contains("data-passkey"), "no passkeys on an IP address");
}

/// Every passkey sign-in attempt counts against the per-IP sign-in limit, as passwords do.
#[tokio::test]
async fn passkey_sign_in_is_rate_limited_like_passwords() {
    let app = localhost_app(
        "rate_limiting:\n  login:\n    per_ip: {burst: 3, per_second: 0.001}\n    per_account: {burst: 100, per_second: 100}\n",
    )
    .await;
    let client = app.new_client();
    let (_, html) = get(&app, &client, "/login").await;
    let csrf = csrf_of(&html);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = post(&app, &client, "/login/passkey", &[("csrf", &csrf), ("credential", "{}")]).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "the fourth attempt is limited");
    let res = post(&app, &client, "/login", &[("csrf", &csrf), ("username", "alice"), ("password", PASSWORD)]).await;
    assert!(res.text().await.unwrap().contains("Too many attempts"), "one budget for both ways in");
}

/// An HTTP client holding Chromium's cookies for the app (HttpOnly ones included): the same
/// browser session, CSRF cookie and passkey ceremonies.
async fn client_like(chrome: &Chrome, app: &TestApp) -> reqwest::Client {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let url = reqwest::Url::parse(&app.url("/")).unwrap();
    for c in chrome.client.get_all_cookies().await.unwrap() {
        jar.add_cookie_str(&format!("{}={}; Path=/", c.name(), c.value()), &url);
    }
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Makes the page keep the passkey answer it submits, in `sessionStorage` (which outlives the
/// navigation the submission starts).
async fn capture_answers(chrome: &Chrome) {
    let script = r#"
        const submit = HTMLFormElement.prototype.submit;
        HTMLFormElement.prototype.submit = function () {
            const field = this.querySelector("input[name=credential]");
            if (field && field.value) sessionStorage.setItem("captured", field.value);
            return submit.call(this);
        };"#;
    chrome.client.execute(script, vec![]).await.unwrap();
}

async fn captured(chrome: &Chrome) -> String {
    let v = chrome.client.execute("return sessionStorage.getItem('captured')", vec![]).await.unwrap();
    let answer = v.as_str().expect("a captured passkey answer").to_string();
    assert!(answer.contains("authenticatorData") && answer.contains("signature"), "{answer}");
    answer
}

async fn csrf_in_page(chrome: &Chrome) -> String {
    let v = chrome.client.execute("return document.querySelector('input[name=csrf]').value", vec![]).await.unwrap();
    v.as_str().unwrap().to_string()
}

/// Alice signs in with her password in Chromium and adds a passkey (her first factor: nothing
/// more is asked).
async fn alice_with_a_passkey(app: &TestApp, chrome: &Chrome) {
    chrome.goto(&local(app, "/login")).await;
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    chrome.goto(&local(app, "/account/mfa")).await;
    chrome.fill("#passkey-name", "Laptop").await;
    chrome.click("form[action='/account/passkeys/add'] button[type=submit]").await;
    chrome.wait_path("/account/mfa?notice=passkey_added").await;
    assert_eq!(passkey_rows(app).len(), 1);
}

/// A user whose factor is a passkey: every sensitive action is refused until a passkey confirms
/// it on `/account/confirm` (a code does not stand in), then accepted for five minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passkey_confirmation_lets_sensitive_actions_through() {
    use crate::mfa_recheck::{Action, Alice, run};
    let app = localhost_app("").await;
    let chrome = Chrome::start("passkey-recheck").await;
    chrome.add_virtual_authenticator().await;
    alice_with_a_passkey(&app, &chrome).await;

    let actions = [
        Action::Password,
        Action::EmailAdd,
        Action::EmailRemove,
        Action::CrossSigningReset,
        Action::PasskeyAdd,
        Action::PasskeyRemove,
        Action::TotpAdd,
        Action::Deactivate,
    ];
    let client = client_like(&chrome, &app).await;
    let mut alice = Alice::new();
    for action in actions {
        for code in ["", "123456"] {
            let (status, body, passed) = run(&app, &client, &mut alice, action, code).await;
            assert!(
                !passed && status == 401 && body.contains("Confirm it’s you with your passkey first."),
                "{action:?} without a passkey ({code:?}): {status}\n{body}"
            );
        }
    }

    // The page shows the way; no new passkey is offered before it.
    chrome.goto(&local(&app, "/account/mfa")).await;
    assert!(chrome.text().await.contains("Changes on this page need your second factor again."));
    assert!(!chrome.text().await.contains("Name of the new passkey"));
    chrome.shoot("account-mfa-confirm-first").await;
    chrome.click("a[href='/account/confirm?next=%2Faccount%2Fmfa']").await;
    chrome.wait_path("/account/confirm").await;
    chrome.shoot("account-confirm").await;
    chrome.click("form[action='/account/confirm/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/mfa").await;
    assert!(chrome.text().await.contains("Name of the new passkey"), "{}", chrome.text().await);

    let client = client_like(&chrome, &app).await;
    for action in &actions[..actions.len() - 1] {
        let (status, body, passed) = run(&app, &client, &mut alice, *action, "").await;
        assert!(passed, "{action:?} after the passkey: {status}\n{body}");
    }
    app.clock.advance(301);
    assert!(!run(&app, &client, &mut alice, Action::EmailRemove, "").await.2, "for five minutes only");

    chrome.goto(&local(&app, "/account/confirm?next=%2Faccount%2F")).await;
    chrome.click("form[action='/account/confirm/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    let client = client_like(&chrome, &app).await;
    let (status, body, passed) = run(&app, &client, &mut alice, Action::Deactivate, "").await;
    assert!(passed, "deactivation after the passkey: {status}\n{body}");
}

/// A username-less passkey sign-in is a factor given: like the second step after a password, it
/// covers sensitive actions for five minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passkey_sign_in_covers_sensitive_actions_for_five_minutes() {
    use crate::mfa_recheck::{Action, Alice, run};
    let app = localhost_app("").await;
    let chrome = Chrome::start("passkey-sign-in-recheck").await;
    chrome.add_virtual_authenticator().await;
    alice_with_a_passkey(&app, &chrome).await;
    chrome.goto(&local(&app, "/account/")).await;
    chrome.click("form[action='/logout'] button").await;
    chrome.wait_path("/login").await;
    chrome.click("form[action='/login/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;

    let client = client_like(&chrome, &app).await;
    let mut alice = Alice::new();
    let (status, body, passed) = run(&app, &client, &mut alice, Action::CrossSigningReset, "").await;
    assert!(passed, "right after a passkey sign-in: {status}\n{body}");
    app.clock.advance(301);
    assert!(!run(&app, &client, &mut alice, Action::EmailAdd, "").await.2, "for five minutes only");
}

/// A captured passkey answer (the same clientDataJSON, authenticatorData and signature) sent
/// again is refused, at sign-in and at the confirmation, with the ceremony it answered (its
/// challenge is spent) or a new one (another challenge); a challenge older than five minutes is
/// refused even with a right answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passkey_answers_and_challenges_are_used_once() {
    let app = localhost_app("").await;
    let chrome = Chrome::start("passkey-replay").await;
    chrome.add_virtual_authenticator().await;
    alice_with_a_passkey(&app, &chrome).await;
    let sign_out = async |chrome: &Chrome| {
        chrome.goto(&local(&app, "/account/")).await;
        chrome.click("form[action='/logout'] button").await;
        chrome.wait_path("/login").await;
    };

    // Sign-in without a username.
    sign_out(&chrome).await;
    capture_answers(&chrome).await;
    let (before, csrf) = (client_like(&chrome, &app).await, csrf_in_page(&chrome).await);
    chrome.click("form[action='/login/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    let answer = captured(&chrome).await;
    let replay = [("csrf", csrf.as_str()), ("credential", answer.as_str())];
    let (status, html) = post_text(&app, &before, "/login/passkey", &replay).await;
    assert_eq!(status, 401, "the same answer to the same (spent) challenge");
    assert!(html.contains("That passkey was not accepted."), "{html}");
    assert_eq!(get(&app, &before, "/account/").await.0, 303, "not signed in");
    let fresh = app.new_client();
    let (_, html) = get(&app, &fresh, "/login").await;
    let (status, _) =
        post_text(&app, &fresh, "/login/passkey", &[("csrf", &csrf_of(&html)), ("credential", &answer)]).await;
    assert_eq!(status, 401, "the answer to another challenge");
    assert_eq!(get(&app, &fresh, "/account/").await.0, 303);

    // The confirmation of sensitive actions.
    chrome.goto(&local(&app, "/account/confirm?next=%2Faccount%2F")).await;
    capture_answers(&chrome).await;
    let (before, csrf) = (client_like(&chrome, &app).await, csrf_in_page(&chrome).await);
    chrome.click("form[action='/account/confirm/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    let answer = captured(&chrome).await;
    app.clock.advance(301);
    let replay = [("csrf", csrf.as_str()), ("credential", answer.as_str()), ("next", "/account/")];
    let (status, html) = post_text(&app, &before, "/account/confirm/passkey", &replay).await;
    assert_eq!(status, 401, "the same answer to the same (spent) challenge");
    assert!(html.contains("That passkey was not accepted.") || html.contains("expired"), "{html}");
    let mut alice = crate::mfa_recheck::Alice::new();
    let (_, _, passed) =
        crate::mfa_recheck::run(&app, &before, &mut alice, crate::mfa_recheck::Action::EmailRemove, "").await;
    assert!(!passed, "a replayed answer confirms nothing");
    let (_, html) = get(&app, &before, "/account/confirm?next=%2Faccount%2F").await;
    let form = [("csrf", csrf_of(&html)), ("credential", answer.clone()), ("next", "/account/".into())];
    let res = before.post(app.url("/account/confirm/passkey")).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 401, "the answer to another challenge");

    // A challenge too old to answer.
    sign_out(&chrome).await;
    app.clock.advance(301);
    chrome.click("form[action='/login/passkey'] button[type=submit]").await;
    chrome.wait_path("/login").await;
    let start = std::time::Instant::now();
    while !chrome.text().await.contains("The passkey request expired.") {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "{}", chrome.text().await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(get(&app, &client_like(&chrome, &app).await, "/account/").await.0, 303, "not signed in");

    // Two answers to one challenge: the second carries a later signature counter, so only the
    // spent challenge can refuse it (authenticators that always send counter 0 rely on this).
    chrome.goto(&local(&app, "/login")).await;
    let (first, second) = two_answers(&chrome, "form[action='/login/passkey']").await;
    let (x, y, csrf) =
        (client_like(&chrome, &app).await, client_like(&chrome, &app).await, csrf_in_page(&chrome).await);
    let res = post(&app, &x, "/login/passkey", &[("csrf", &csrf), ("credential", &first)]).await;
    assert_eq!(res.status(), 303, "the first answer signs in");
    let (status, html) = post_text(&app, &y, "/login/passkey", &[("csrf", &csrf), ("credential", &second)]).await;
    assert_eq!(status, 401, "a second answer to the same challenge");
    assert!(html.contains("That passkey was not accepted."), "{html}");
    assert_eq!(get(&app, &y, "/account/").await.0, 303, "not signed in");

    chrome.goto(&local(&app, "/login")).await;
    chrome.click("form[action='/login/passkey'] button[type=submit]").await;
    chrome.wait_path("/account/").await;
    app.clock.advance(301);
    chrome.goto(&local(&app, "/account/confirm?next=%2Faccount%2F")).await;
    let (first, second) = two_answers(&chrome, "form[action='/account/confirm/passkey']").await;
    let (x, y, csrf) =
        (client_like(&chrome, &app).await, client_like(&chrome, &app).await, csrf_in_page(&chrome).await);
    let form =
        |answer: &str| vec![("csrf", csrf.clone()), ("credential", answer.to_string()), ("next", "/account/".into())];
    let res = x.post(app.url("/account/confirm/passkey")).form(&form(&first)).send().await.unwrap();
    assert_eq!(res.status(), 303, "the first answer confirms");
    let res = y.post(app.url("/account/confirm/passkey")).form(&form(&second)).send().await.unwrap();
    assert_eq!(res.status(), 401, "a second answer to the same challenge");
    let mut alice = crate::mfa_recheck::Alice::new();
    let (_, _, passed) =
        crate::mfa_recheck::run(&app, &y, &mut alice, crate::mfa_recheck::Action::EmailRemove, "").await;
    assert!(!passed, "the refused answer confirms nothing");
    let (_, _, passed) =
        crate::mfa_recheck::run(&app, &x, &mut alice, crate::mfa_recheck::Action::EmailRemove, "").await;
    assert!(passed, "the accepted one does");
}

/// Two answers of the authenticator to the challenge of the page's passkey form `form` (the page
/// itself sends neither).
async fn two_answers(chrome: &Chrome, form: &str) -> (String, String) {
    let script = r#"
        const [selector, done] = arguments;
        const o = JSON.parse(document.querySelector(selector).getAttribute("data-options"));
        const bytes = (s) => {
            s = s.replace(/-/g, "+").replace(/_/g, "/");
            while (s.length % 4) s += "=";
            return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer;
        };
        const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
            .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
        const publicKey = Object.assign({}, o.publicKey, { challenge: bytes(o.publicKey.challenge) });
        publicKey.allowCredentials = (publicKey.allowCredentials || []).map((c) => Object.assign({}, c, { id: bytes(c.id) }));
        const one = () => navigator.credentials.get({ publicKey }).then((c) => JSON.stringify({
            id: c.id, rawId: b64(c.rawId), type: c.type, extensions: {},
            response: {
                clientDataJSON: b64(c.response.clientDataJSON),
                authenticatorData: b64(c.response.authenticatorData),
                signature: b64(c.response.signature),
                userHandle: c.response.userHandle ? b64(c.response.userHandle) : null,
            },
        }));
        one().then((a) => one().then((b) => done([a, b]))).catch((e) => done(String(e)));"#;
    let v = chrome.client.execute_async(script, vec![json!(form)]).await.unwrap();
    let answers: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_else(|_| panic!("two answers: {v}"));
    assert_ne!(answers[0], answers[1]);
    (answers[0].clone(), answers[1].clone())
}
