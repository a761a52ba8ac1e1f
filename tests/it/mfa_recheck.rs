//! Sensitive account actions re-check the second factor (issue 16 item 4): changing the
//! password, adding or removing an email address, allowing a cross-signing reset, deactivating,
//! adding or removing a factor. For a user with a factor each is refused without a code, refused
//! with a wrong one, and accepted with a TOTP code, with a recovery code (spent by it) or within
//! five minutes of confirming the factor (`/account/confirm`, the sign-in's second step). A user
//! without a factor keeps the password check alone.

use appliance::clock::Clock;

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};
use crate::mfa::{PASSWORD, code_at, enrol};

/// How long a confirmed factor lasts, plus one second.
const STALE: i64 = 301;
const MISSING: &str = "Enter a code from your authenticator app or a recovery code";
const WRONG: &str = "That code is not correct, or was already used.";

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

/// The sensitive actions (deactivation and turning TOTP off end what the others test, so they
/// run last, each in an app of its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Action {
    Password,
    EmailAdd,
    EmailRemove,
    CrossSigningReset,
    PasskeyAdd,
    PasskeyRemove,
    TotpAdd,
    RecoveryCodes,
    TotpOff,
    Deactivate,
}

pub(crate) const REPEATABLE: [Action; 7] = [
    Action::Password,
    Action::EmailAdd,
    Action::EmailRemove,
    Action::CrossSigningReset,
    Action::PasskeyAdd,
    Action::PasskeyRemove,
    Action::RecoveryCodes,
];

/// The state the actions change: alice's password, how many addresses were added.
pub(crate) struct Alice {
    pub password: String,
    pub n: usize,
    /// Recovery codes made by `RecoveryCodes`.
    pub new_codes: Vec<String>,
}

impl Alice {
    pub(crate) fn new() -> Self {
        Alice { password: PASSWORD.into(), n: 0, new_codes: vec![] }
    }
}

/// Runs `action` as alice's `client` with `code` (empty: none); the status, the body and whether
/// the action got past its checks.
pub(crate) async fn run(
    app: &TestApp,
    client: &reqwest::Client,
    alice: &mut Alice,
    action: Action,
    code: &str,
) -> (u16, String, bool) {
    alice.n += 1;
    let (_, html) = get(app, client, "/account/").await;
    let csrf = csrf_of(&html);
    let new_password = format!("violet tundra marble {}", alice.n);
    let email = format!("alice{}@example.org", alice.n);
    let pw = alice.password.clone();
    let (path, form): (&str, Vec<(&str, &str)>) = match action {
        Action::Password => (
            "/account/password",
            vec![("current_password", &pw), ("new_password", &new_password), ("new_password_confirm", &new_password)],
        ),
        Action::EmailAdd => ("/account/emails/add", vec![("email", &email)]),
        Action::EmailRemove => ("/account/emails/remove", vec![("email", "nobody@example.org")]),
        Action::CrossSigningReset => ("/account/cross-signing-reset", vec![("password", &pw)]),
        Action::PasskeyAdd => ("/account/passkeys/add", vec![("credential", "{}"), ("name", "Key")]),
        Action::PasskeyRemove => ("/account/passkeys/remove", vec![("id", "01J0000000000000000000NONE")]),
        Action::TotpAdd => ("/account/mfa/totp", vec![]),
        Action::RecoveryCodes => ("/account/mfa/recovery-codes", vec![("password", &pw)]),
        Action::TotpOff => ("/account/mfa/disable", vec![("password", &pw)]),
        Action::Deactivate => ("/account/deactivate", vec![("password", &pw), ("confirm", "yes")]),
    };
    let mut form = form;
    form.push(("csrf", &csrf));
    if !code.is_empty() {
        form.push(("code", code));
    }
    let res = post(app, client, path, &form).await;
    let status = res.status().as_u16();
    let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    let body = res.text().await.unwrap();
    let passed = match action {
        Action::Password => status == 303 && location == "/account/?notice=password_changed",
        Action::EmailAdd => status == 303 && location.starts_with("/account/emails/verify/"),
        Action::EmailRemove => status == 303 && location == "/account/emails",
        // No homeserver here: past the checks, the reset fails there.
        Action::CrossSigningReset => status == 502 && body.contains("could not be reached"),
        // No ceremony (or an old one): past the checks, the made-up answer is refused.
        Action::PasskeyAdd => {
            status == 401
                && (body.contains("The passkey request expired.") || body.contains("That passkey was not accepted."))
        }
        Action::PasskeyRemove => status == 404 && body.contains("There is no such passkey."),
        Action::TotpAdd => status == 303,
        Action::RecoveryCodes => {
            let ok = status == 200 && body.contains("Your recovery codes");
            if ok {
                alice.new_codes = crate::mfa::codes_of(&body);
            }
            ok
        }
        Action::TotpOff => status == 303 && location == "/account/mfa?notice=disabled",
        Action::Deactivate => status == 200 && body.contains("is deactivated"),
    };
    if passed && action == Action::Password {
        alice.password = new_password;
    }
    (status, body, passed)
}

/// Refused without a code and with a wrong one, nothing done and nothing spent.
async fn refused_without_and_with_a_wrong_code(
    app: &TestApp,
    client: &reqwest::Client,
    alice: &mut Alice,
    action: Action,
) {
    let (status, body, passed) = run(app, client, alice, action, "").await;
    assert!(!passed && status == 401 && body.contains(MISSING), "{action:?} without a code: {status}\n{body}");
    let (status, body, passed) = run(app, client, alice, action, "000000").await;
    assert!(!passed && status == 401 && body.contains(WRONG), "{action:?} with a wrong code: {status}\n{body}");
    let (status, body, passed) = run(app, client, alice, action, "aaaa-bbbb-cccc").await;
    assert!(
        !passed && status == 401 && body.contains(WRONG),
        "{action:?} with a wrong recovery code: {status}\n{body}"
    );
}

fn recovery_codes_left(app: &TestApp) -> i64 {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM user_recovery_codes WHERE used_at IS NULL", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn each_sensitive_action_needs_a_fresh_totp_or_recovery_code() {
    let app = app().await;
    let (secret, mut codes, client) = enrol(&app).await;
    let mut alice = Alice::new();
    for action in REPEATABLE {
        app.clock.advance(STALE);
        refused_without_and_with_a_wrong_code(&app, &client, &mut alice, action).await;
        let (status, body, passed) = run(&app, &client, &mut alice, action, &code_at(&secret, app.clock.now())).await;
        assert!(passed, "{action:?} with the app's code: {status}\n{body}");
        if action == Action::RecoveryCodes {
            codes = std::mem::take(&mut alice.new_codes);
        }

        app.clock.advance(STALE);
        let (status, body, passed) = run(&app, &client, &mut alice, action, "").await;
        assert!(!passed && status == 401 && body.contains(MISSING), "{action:?}: the confirmation expired: {body}");
        let left = recovery_codes_left(&app);
        let recovery = codes.pop().unwrap();
        let (status, body, passed) = run(&app, &client, &mut alice, action, &recovery).await;
        assert!(passed, "{action:?} with a recovery code: {status}\n{body}");
        if action == Action::RecoveryCodes {
            // The new codes replaced the old ones.
            codes = std::mem::take(&mut alice.new_codes);
            assert_eq!(recovery_codes_left(&app), 10);
        } else {
            assert_eq!(recovery_codes_left(&app), left - 1, "{action:?}: the recovery code is spent");
        }
        app.clock.advance(STALE);
        let (status, body, passed) = run(&app, &client, &mut alice, action, &recovery).await;
        assert!(!passed && status == 401 && body.contains(WRONG), "{action:?}: a recovery code works once: {body}");
    }

    // A right code confirms the factor for five minutes: the next actions need none.
    app.clock.advance(STALE);
    let code = code_at(&secret, app.clock.now());
    assert!(run(&app, &client, &mut alice, Action::EmailAdd, &code).await.2);
    app.clock.advance(STALE - 2);
    for action in [Action::EmailRemove, Action::Password, Action::CrossSigningReset] {
        let (status, body, passed) = run(&app, &client, &mut alice, action, "").await;
        assert!(passed, "{action:?} right after a confirmation: {status}\n{body}");
    }
    app.clock.advance(2);
    assert!(!run(&app, &client, &mut alice, Action::EmailRemove, "").await.2, "five minutes, not more");

    // The second step of signing in counts as a confirmation.
    let (client2, csrf2) = crate::mfa::password_step_as(&app, &alice.password).await;
    app.clock.advance(30);
    let res = crate::mfa::code_step(&app, &client2, &csrf2, &code_at(&secret, app.clock.now())).await;
    assert_eq!(res.status(), 303);
    assert!(run(&app, &client2, &mut alice, Action::EmailRemove, "").await.2, "just signed in with the factor");
}

/// The confirmation page takes a code and goes back where it was asked from.
#[tokio::test]
async fn the_confirmation_page_takes_a_code_and_goes_back() {
    let app = app().await;
    let (secret, _, client) = enrol(&app).await;
    let mut alice = Alice::new();
    let (_, html) = get(&app, &client, "/account/emails").await;
    assert!(html.contains("Changes on this page need your second factor again."), "{html}");
    assert!(html.contains("href=\"/account/confirm?next=%2Faccount%2Femails\""), "{html}");
    let (_, html) = get(&app, &client, "/account/").await;
    assert!(html.contains("name=\"code\""), "the password form asks for a code:\n{html}");
    let (status, html) = get(&app, &client, "/account/confirm?next=%2Faccount%2Femails").await;
    assert_eq!(status, 200);
    assert!(html.contains("Confirm it’s you") && html.contains("name=\"code\""), "{html}");
    let csrf = csrf_of(&html);
    let (status, html) = post_text(
        &app,
        &client,
        "/account/confirm",
        &[("csrf", &csrf), ("code", "000000"), ("next", "/account/emails")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(html.contains(WRONG), "{html}");
    app.clock.advance(30);
    let code = code_at(&secret, app.clock.now());
    let res =
        post(&app, &client, "/account/confirm", &[("csrf", &csrf), ("code", &code), ("next", "//evil.example")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/", "only a path of this site");
    let (_, html) = get(&app, &client, "/account/emails").await;
    assert!(!html.contains("need your second factor again"), "{html}");
    let (_, html) = get(&app, &client, "/account/").await;
    assert!(!html.contains("name=\"code\""), "no code asked while confirmed:\n{html}");
    for action in [Action::EmailAdd, Action::Password, Action::PasskeyRemove] {
        let (status, body, passed) = run(&app, &client, &mut alice, action, "").await;
        assert!(passed, "{action:?} after the confirmation page: {status}\n{body}");
    }
}

/// Turning TOTP off and deactivating end the factor or the account: each runs in its own app,
/// once with the app's code and once with a recovery code.
#[tokio::test]
async fn turning_the_factor_off_and_deactivating_need_a_code_too() {
    for (action, recovery) in
        [(Action::TotpOff, false), (Action::TotpOff, true), (Action::Deactivate, false), (Action::Deactivate, true)]
    {
        let app = app().await;
        let (secret, mut codes, client) = enrol(&app).await;
        let mut alice = Alice::new();
        app.clock.advance(STALE);
        refused_without_and_with_a_wrong_code(&app, &client, &mut alice, action).await;
        let code = if recovery { codes.pop().unwrap() } else { code_at(&secret, app.clock.now()) };
        let (status, body, passed) = run(&app, &client, &mut alice, action, &code).await;
        assert!(passed, "{action:?} (recovery code: {recovery}): {status}\n{body}");
    }
}

/// Without a second factor nothing changes: the password alone (when the action asked for it),
/// no code field, and the confirmation page has nothing to ask.
#[tokio::test]
async fn users_without_a_factor_keep_the_password_check_alone() {
    let app = app().await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let mut alice = Alice::new();
    let (_, html) = get(&app, &client, "/account/").await;
    assert!(!html.contains("name=\"code\""), "{html}");
    let (_, html) = get(&app, &client, "/account/emails").await;
    assert!(!html.contains("need your second factor again"), "{html}");
    let res = client.get(app.url("/account/confirm?next=%2Faccount%2Femails")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/emails");
    for action in REPEATABLE.into_iter().filter(|a| *a != Action::RecoveryCodes).chain([Action::Deactivate]) {
        app.clock.advance(STALE);
        let (status, body, passed) = run(&app, &client, &mut alice, action, "").await;
        assert!(passed, "{action:?} without a factor: {status}\n{body}");
    }
}

/// Adding the first factor needs nothing more; with a factor, another one (here TOTP next to a
/// passkey) needs it first. Tested with the passkey in `passkeys.rs`; here the first one.
#[tokio::test]
async fn the_first_factor_needs_no_code() {
    let app = app().await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let mut alice = Alice::new();
    let (status, body, passed) = run(&app, &client, &mut alice, Action::TotpAdd, "").await;
    assert!(passed, "{status}\n{body}");
    let (status, body, passed) = run(&app, &client, &mut alice, Action::PasskeyAdd, "").await;
    assert!(passed, "{status}\n{body}");
}
