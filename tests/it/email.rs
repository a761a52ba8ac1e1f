//! Email: adding an address with a 6-digit code, removing it, and password recovery by email,
//! against a real local SMTP server (aiosmtpd from the e2e venv, see tests/e2e/setup.sh) that
//! writes each message it receives as JSON into a directory.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use appliance::lifecycle::users::{self, NewUser};
use serde_json::Value;

use crate::flows::{
    clients_patch, code_login, compat_refresh, csrf_of, get, introspect_any, location, login, post, post_text, refresh,
    signed_in,
};
use crate::helpers::{TestApp, free_port, merged_yaml, spawn_app_with, tempdir};
use crate::synapse_harness::{SynapseMode, python_command};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const ALICE_EMAIL: &str = "alice@example.org";
const OAUTH_SCOPE: &str =
    "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:OAUTHDEV01";

/// Waits until `n` password recovery requests have settled, by the
/// `appliance_password_recovery_requests_total` metric; returns the counts by result.
async fn recovery_requests_settled(app: &TestApp, n: u64) -> Vec<(String, u64)> {
    let start = Instant::now();
    loop {
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let mut counts: Vec<(String, u64)> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("appliance_password_recovery_requests_total{result=\""))
            .filter_map(|l| l.split_once("\"} "))
            .map(|(result, n)| (result.to_string(), n.trim().parse().expect("a count")))
            .collect();
        counts.sort();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        assert!(total <= n, "more recovery requests settled than made: {counts:?}");
        if total == n {
            return counts;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "only {counts:?} of {n} recovery requests settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn compat_refresh_status(app: &TestApp, refresh_token: &str) -> u16 {
    compat_refresh(app, refresh_token).await.status().as_u16()
}

/// The SMTP server: each message becomes `<n>.json` with to, from, reply_to, subject, text, html.
const SMTP_SCRIPT: &str = r#"
import asyncio, email, email.policy, json, os, sys, time
from aiosmtpd.controller import Controller
out, port = sys.argv[1], int(sys.argv[2])
class Catch:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = lambda kind: (msg.get_body(preferencelist=(kind,)) or None)
        text, html = body("plain"), body("html")
        Catch.n += 1
        doc = {"rcpt_tos": envelope.rcpt_tos, "to": str(msg["To"]), "from": str(msg["From"]),
               "reply_to": str(msg["Reply-To"]), "subject": str(msg["Subject"]),
               "text": text.get_content() if text else None, "html": html.get_content() if html else None}
        tmp = os.path.join(out, f".{Catch.n}.tmp")
        with open(tmp, "w") as f: json.dump(doc, f)
        os.rename(tmp, os.path.join(out, f"{Catch.n:04}.json"))
        return "250 OK"
c = Controller(Catch(), hostname="127.0.0.1", port=port)
c.start()
print("READY", flush=True)
while True: time.sleep(3600)
"#;

pub(crate) struct Smtp {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    pub(crate) fn start() -> Smtp {
        let dir = tempdir();
        let port = free_port();
        let mut child = python_command(SynapseMode::Modern)
            .arg("-c")
            .arg(SMTP_SCRIPT)
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        std::io::BufRead::read_line(&mut out, &mut line).expect("SMTP server output");
        assert_eq!(line.trim(), "READY", "the SMTP server did not start");
        Smtp { child, port, dir }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
    }

    pub(crate) fn messages(&self) -> Vec<Value> {
        self.files()
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read mail")).expect("mail json"))
            .collect()
    }

    /// Waits until at least `n` messages arrived; returns the `n`th (1-based).
    pub(crate) async fn wait_for(&self, n: usize) -> Value {
        let start = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages[n - 1].clone();
            }
            assert!(start.elapsed() < Duration::from_secs(15), "message {n} did not arrive (have {})", messages.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `email` config section sending through the SMTP server on `port`.
pub(crate) fn smtp_config(port: u16) -> String {
    format!(
        r#"email:
  from: '"Test Accounts" <accounts@test.example>'
  reply_to: support@test.example
  transport: smtp
  mode: plain
  hostname: 127.0.0.1
  port: {port}"#
    )
}

fn patch(smtp_port: u16, recovery: bool, extra_limits: &str) -> String {
    format!(
        r#"
account:
  password_recovery_enabled: {recovery}
{email}
rate_limiting:
  login:
    per_ip: {{burst: 1000, per_second: 100}}
    per_account: {{burst: 1000, per_second: 100}}
{extra_limits}"#,
        email = smtp_config(smtp_port)
    )
}

const GENEROUS: &str = r#"  account_recovery:
    per_ip: {burst: 1000, per_second: 100}
    per_address: {burst: 1000, per_second: 100}
  email_authentication:
    per_ip: {burst: 1000, per_second: 100}
    per_address: {burst: 1000, per_second: 100}
"#;

async fn register(app: &TestApp, name: &str, emails: Vec<String>) {
    let s = &app.state;
    users::register(
        &s.store,
        &s.passwords,
        s.clock.as_ref(),
        s.rng.as_ref(),
        NewUser { username: name.into(), password: Some(PASSWORD.into()), emails, display_name: None, admin: false },
    )
    .await
    .expect("register user");
}

/// The 6-digit code of a verification mail.
pub(crate) fn code_of(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text part");
    let code = text.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()));
    let code = code.unwrap_or_else(|| panic!("no code in {text}")).to_string();
    assert!(mail["subject"].as_str().unwrap().contains(&code));
    assert!(mail["html"].as_str().expect("html part").contains(&code));
    code
}

/// The recovery link (path) of a recovery mail.
fn link_of(app: &TestApp, mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text part");
    let url = text.split_whitespace().find(|w| w.contains("/recover/")).unwrap_or_else(|| panic!("no link in {text}"));
    assert!(mail["html"].as_str().expect("html part").contains(url));
    url.strip_prefix(&app.base).unwrap_or_else(|| panic!("{url} is not on {}", app.base)).to_string()
}

pub(crate) fn wrong_code(code: &str) -> String {
    let first = if code.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", &code[1..])
}

/// Asks for a new code from the verify page `verify` (its resend button); checks that it leads back
/// there with a notice. Returns the resend path.
pub(crate) async fn resend_code(app: &TestApp, client: &reqwest::Client, verify: &str, csrf: &str) -> String {
    let resend = verify.replace("/verify/", "/resend/");
    let res = post(app, client, &resend, &[("csrf", csrf)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("{verify}?notice=resent"));
    assert!(get(app, client, &location(&res)).await.1.contains("A new code was sent."));
    resend
}

/// Adds `address` on the emails page; returns the verify page path.
async fn add_address(app: &TestApp, client: &reqwest::Client, address: &str) -> String {
    let csrf = csrf_of(&get(app, client, "/account/emails").await.1);
    let res = post(app, client, "/account/emails/add", &[("csrf", &csrf), ("email", address)]).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let to = location(&res);
    assert!(to.starts_with("/account/emails/verify/"), "{to}");
    to
}

#[tokio::test]
async fn add_verify_and_remove_an_email() {
    let smtp = Smtp::start();
    let app = spawn_app_with(&patch(smtp.port, false, GENEROUS)).await;
    register(&app, "alice", vec![]).await;
    let client = signed_in(&app, "alice", PASSWORD).await;

    // The profile page links to the emails page, which lists nothing yet.
    assert!(get(&app, &client, "/account/").await.1.contains("href=\"/account/emails\""));
    let (status, html) = get(&app, &client, "/account/emails").await;
    assert_eq!(status, 200);
    assert!(html.contains("No email address is linked"));
    let csrf = csrf_of(&html);

    // Not an address: refused on the page, nothing sent.
    let (status, html) = post_text(&app, &client, "/account/emails/add", &[("csrf", &csrf), ("email", "nope")]).await;
    assert_eq!(status, 400);
    assert!(html.contains("Enter an email address"));
    assert!(html.contains("aria-invalid=\"true\""));

    let verify = add_address(&app, &client, ALICE_EMAIL).await;
    let mail = smtp.wait_for(1).await;
    assert_eq!(mail["rcpt_tos"], serde_json::json!([ALICE_EMAIL]));
    assert_eq!(mail["from"], "Test Accounts <accounts@test.example>");
    assert_eq!(mail["reply_to"], "support@test.example");
    let code = code_of(&mail);
    let (status, html) = get(&app, &client, &verify).await;
    assert_eq!(status, 200);
    assert!(html.contains(ALICE_EMAIL));
    assert!(!html.contains(&code), "the page must not show the code");

    // A wrong code counts an attempt.
    let (status, html) = post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &wrong_code(&code))]).await;
    assert_eq!(status, 400);
    assert!(html.contains("That code is not right. 4 attempts left."), "{html}");

    // Another user cannot use alice's verification.
    register(&app, "bob", vec![]).await;
    let bob = signed_in(&app, "bob", PASSWORD).await;
    let bob_csrf = csrf_of(&get(&app, &bob, "/account/emails").await.1);
    let (status, _) = post_text(&app, &bob, &verify, &[("csrf", &bob_csrf), ("code", &code)]).await;
    assert_eq!(status, 404);

    // The right code (spaces tolerated) adds the address.
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let res = post(&app, &client, &verify, &[("csrf", &csrf), ("code", &spaced)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/emails?notice=added");
    let (_, html) = get(&app, &client, "/account/emails?notice=added").await;
    assert!(html.contains("was verified and added"));
    assert!(html.contains(ALICE_EMAIL));
    assert!(get(&app, &client, "/account/").await.1.contains(ALICE_EMAIL));
    let owner = app
        .state
        .store
        .read(|c| appliance::store::users::by_email(c, "ALICE@example.org"))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(owner.username, "alice");
    // The homeserver is unreachable in tests: the push to it is queued.
    let jobs: i64 = rusqlite::Connection::open(&app.db_path)
        .unwrap()
        .query_row("SELECT count(*) FROM queue_jobs WHERE kind = 'provision_user'", [], |r| r.get(0))
        .unwrap_or(-1);
    assert!(jobs != 0, "a provisioning job should be queued");

    // The code works once; the finished verification just leads back to the list.
    let res = post(&app, &client, &verify, &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/emails");

    // Adding it again is refused; a second address can be added.
    let (status, html) =
        post_text(&app, &client, "/account/emails/add", &[("csrf", &csrf), ("email", "Alice@Example.org")]).await;
    assert_eq!(status, 400);
    assert!(html.contains("already on your account"));

    // Bob proving alice's address: another account uses it.
    let bob_verify = add_address(&app, &bob, ALICE_EMAIL).await;
    let bob_code = code_of(&smtp.wait_for(2).await);
    let (status, html) = post_text(&app, &bob, &bob_verify, &[("csrf", &bob_csrf), ("code", &bob_code)]).await;
    assert_eq!(status, 409);
    assert!(html.contains("Another account"));

    // Removal.
    let res = post(&app, &client, "/account/emails/remove", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/emails?notice=removed");
    let (_, html) = get(&app, &client, "/account/emails").await;
    assert!(html.contains("No email address is linked"));
    let owner = app.state.store.read(|c| appliance::store::users::by_email(c, ALICE_EMAIL)).await.unwrap();
    assert!(owner.is_none());
}

#[tokio::test]
async fn codes_expire_allow_five_attempts_and_resends_are_limited() {
    let smtp = Smtp::start();
    let limits = r#"  email_authentication:
    per_ip: {burst: 1000, per_second: 100}
    per_address: {burst: 4, per_second: 0.0001}
"#;
    let app = spawn_app_with(&patch(smtp.port, false, limits)).await;
    register(&app, "alice", vec![]).await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let verify = add_address(&app, &client, ALICE_EMAIL).await;
    let code = code_of(&smtp.wait_for(1).await);
    let csrf = csrf_of(&get(&app, &client, &verify).await.1);

    // Expired after 10 minutes, even the right code.
    app.clock.advance(601);
    let (status, html) = post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &code)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("This code has expired"), "{html}");

    // A new code: the old one no longer works.
    let resend = resend_code(&app, &client, &verify, &csrf).await;
    let code2 = code_of(&smtp.wait_for(2).await);
    if code2 != code {
        let (status, html) = post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &code)]).await;
        assert_eq!(status, 400);
        assert!(html.contains("4 attempts left"), "{html}");
        // Four more wrong codes make five: the code stops working, even when right.
        for left in (1..4).rev() {
            let (_, html) = post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &wrong_code(&code2))]).await;
            let unit = if left == 1 { "attempt" } else { "attempts" };
            assert!(html.contains(&format!("{left} {unit} left")), "{html}");
        }
    } else {
        for _ in 0..4 {
            post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &wrong_code(&code2))]).await;
        }
    }
    let (status, html) = post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &wrong_code(&code2))]).await;
    assert_eq!(status, 400);
    assert!(html.contains("no longer works"), "{html}");
    let (status, html) = post_text(&app, &client, &verify, &[("csrf", &csrf), ("code", &code2)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("no longer works"), "{html}");

    // Another resend gives five fresh attempts; the right code works.
    let res = post(&app, &client, &resend, &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 303);
    let code3 = code_of(&smtp.wait_for(3).await);
    let res = post(&app, &client, &verify, &[("csrf", &csrf), ("code", &code3)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/emails?notice=added");

    // Three codes went to this address; a fourth is allowed (burst 4), then resends are refused.
    let res = post(&app, &client, "/account/emails/remove", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    assert_eq!(res.status(), 303);
    let verify = add_address(&app, &client, ALICE_EMAIL).await;
    smtp.wait_for(4).await;
    let resend = verify.replace("/verify/", "/resend/");
    let (status, html) = post_text(&app, &client, &resend, &[("csrf", &csrf)]).await;
    assert_eq!(status, 429, "{html}");
    assert!(html.contains("Too many codes were sent"));
    let (status, html) =
        post_text(&app, &client, "/account/emails/add", &[("csrf", &csrf), ("email", "ALICE@example.org")]).await;
    assert_eq!(status, 429, "{html}");
    // Other addresses are not affected.
    add_address(&app, &client, "alice2@example.org").await;
    smtp.wait_for(5).await;
}

#[tokio::test]
async fn recovery_by_email_resets_the_password_once() {
    let smtp = Smtp::start();
    let app = spawn_app_with(&merged_yaml(&clients_patch(), &patch(smtp.port, true, GENEROUS))).await;
    register(&app, "alice", vec![ALICE_EMAIL.into()]).await;
    // Alice is signed in elsewhere (a browser session, a compat session and an OAuth session).
    let elsewhere = signed_in(&app, "alice", PASSWORD).await;
    let body = serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "device_id": "OTHERDEVICE", "refresh_token": true});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let compat = res.json::<Value>().await.unwrap();
    let compat_token = compat["access_token"].as_str().unwrap().to_string();
    let compat_refresh = compat["refresh_token"].as_str().unwrap().to_string();
    let oauth = code_login(&app, "alice", PASSWORD, OAUTH_SCOPE).await;
    let oauth_token = oauth["access_token"].as_str().unwrap().to_string();
    let oauth_refresh = oauth["refresh_token"].as_str().unwrap().to_string();
    for token in [&compat_token, &compat_refresh, &oauth_token, &oauth_refresh] {
        assert_eq!(introspect_any(&app, token).await["active"], true, "{token} before the recovery");
    }

    // The login page offers recovery.
    let client = app.new_client();
    let (_, html) = get(&app, &client, "/login").await;
    assert!(html.contains("href=\"/recover\""));
    let (status, html) = get(&app, &client, "/recover").await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&html);

    let (status, html) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", "not an address")]).await;
    assert_eq!(status, 400);
    assert!(html.contains("Enter an email address"));

    let (status, known_page) =
        post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", "Alice@Example.org")]).await;
    assert_eq!(status, 200);
    assert!(known_page.contains("Check your email"));
    let mail = smtp.wait_for(1).await;
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["Alice@Example.org"]));
    assert!(mail["text"].as_str().unwrap().contains("@alice:localhost"));
    let link = link_of(&app, &mail);

    // The link shows the form; mistakes are shown on it.
    let (status, html) = get(&app, &client, &link).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("@alice:localhost"));
    assert!(html.contains("name=\"end_sessions\""));
    let (status, html) = post_text(
        &app,
        &client,
        &link,
        &[("csrf", &csrf), ("new_password", "alice2024"), ("new_password_confirm", "alice2024")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("This password is too easy to guess."), "{html}");
    assert!(html.contains("id=\"new_password-error\""));
    let (status, html) = post_text(
        &app,
        &client,
        &link,
        &[
            ("csrf", &csrf),
            ("new_password", NEW_PASSWORD),
            ("new_password_confirm", "something else"),
            ("end_sessions", "yes"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("The passwords do not match."));
    assert!(html.contains(" checked"), "the checkbox keeps its state");

    let (status, html) = post_text(
        &app,
        &client,
        &link,
        &[
            ("csrf", &csrf),
            ("new_password", NEW_PASSWORD),
            ("new_password_confirm", NEW_PASSWORD),
            ("end_sessions", "yes"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Password changed"));
    assert!(html.contains("every session of your account was signed out"));

    // Used: the link no longer works.
    let (status, html) = get(&app, &client, &link).await;
    assert_eq!(status, 410);
    assert!(html.contains("This link no longer works"));
    let (status, _) = post_text(
        &app,
        &client,
        &link,
        &[("csrf", &csrf), ("new_password", "another one!"), ("new_password_confirm", "another one!")],
    )
    .await;
    assert_eq!(status, 410);

    // Old sessions ended: the other browser is signed out, the compat token is dead.
    let res = elsewhere.get(app.url("/account/")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login"));
    // Every token of those sessions is dead for the homeserver (introspection) and for refresh.
    for token in [&compat_token, &compat_refresh, &oauth_token, &oauth_refresh] {
        assert_eq!(introspect_any(&app, token).await["active"], false, "{token} after \"sign out everywhere\"");
    }
    assert_eq!(compat_refresh_status(&app, &compat_refresh).await, 401);
    assert_eq!(refresh(&app, &oauth_refresh).await.status(), 400);

    // The new password works, the old one does not.
    let res = login(&app, &app.new_client(), "/account/", "alice", PASSWORD).await;
    assert_eq!(res.status(), 401);
    signed_in(&app, "alice", NEW_PASSWORD).await;

    // Without the checkbox, other sessions stay.
    let other = signed_in(&app, "alice", NEW_PASSWORD).await;
    let kept = code_login(&app, "alice", NEW_PASSWORD, OAUTH_SCOPE).await;
    let kept = kept["access_token"].as_str().unwrap().to_string();
    post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    let link = link_of(&app, &smtp.wait_for(2).await);
    let (status, html) = post_text(
        &app,
        &client,
        &link,
        &[("csrf", &csrf), ("new_password", PASSWORD), ("new_password_confirm", PASSWORD)],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("signed out"));
    assert_eq!(other.get(app.url("/account/")).send().await.unwrap().status(), 200);
    assert_eq!(introspect_any(&app, &kept).await["active"], true, "the OAuth session stays");

    // Links expire after 10 minutes.
    post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    let link = link_of(&app, &smtp.wait_for(3).await);
    app.clock.advance(601);
    assert_eq!(get(&app, &client, &link).await.0, 410);
    // Made-up tickets are gone too.
    assert_eq!(get(&app, &client, &format!("/recover/{}", "A".repeat(32))).await.0, 410);
    assert_eq!(get(&app, &client, "/recover/whatever").await.0, 410);
}

#[tokio::test]
async fn recovery_for_an_unknown_address_looks_the_same_and_sends_nothing() {
    let smtp = Smtp::start();
    let app = spawn_app_with(&patch(smtp.port, true, GENEROUS)).await;
    register(&app, "alice", vec![ALICE_EMAIL.into()]).await;
    let client = app.new_client();
    let csrf = csrf_of(&get(&app, &client, "/recover").await.1);
    let (known_status, known) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    let unknown_address = "nobody@example.org";
    let (status, unknown) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", unknown_address)]).await;
    assert_eq!(status, known_status);
    assert_eq!(unknown.replace(unknown_address, ALICE_EMAIL), known, "the pages must not differ");
    smtp.wait_for(1).await;
    // Both requests settled (a mail goes out before its request counts as sent).
    let settled = recovery_requests_settled(&app, 2).await;
    assert_eq!(settled, [("no_account".to_string(), 1), ("sent".to_string(), 1)], "{settled:?}");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "only the known address gets mail: {messages:?}");
    assert_eq!(messages[0]["rcpt_tos"], serde_json::json!([ALICE_EMAIL]));
}

#[tokio::test]
async fn recovery_is_rate_limited_per_ip_and_per_address() {
    let smtp = Smtp::start();
    let limits = r#"  account_recovery:
    per_ip: {burst: 3, per_second: 0.0001}
    per_address: {burst: 1, per_second: 0.0001}
"#;
    let app = spawn_app_with(&patch(smtp.port, true, limits)).await;
    register(&app, "alice", vec![ALICE_EMAIL.into()]).await;
    let client = app.new_client();
    let csrf = csrf_of(&get(&app, &client, "/recover").await.1);
    // Per address: the second request looks the same but sends nothing.
    for _ in 0..2 {
        let (status, html) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
        assert_eq!(status, 200);
        assert!(html.contains("Check your email"));
    }
    smtp.wait_for(1).await;
    let settled = recovery_requests_settled(&app, 2).await;
    assert_eq!(settled, [("limited".to_string(), 1), ("sent".to_string(), 1)], "{settled:?}");
    assert_eq!(smtp.messages().len(), 1);
    // Per IP: the fourth request is refused.
    let (status, _) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", "x@example.org")]).await;
    assert_eq!(status, 200);
    let (status, html) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", "y@example.org")]).await;
    assert_eq!(status, 429);
    assert!(html.contains("Too many requests"));
}

#[tokio::test]
async fn recovery_is_not_offered_when_disabled() {
    let app = spawn_app_with("").await;
    let client = app.new_client();
    let (_, html) = get(&app, &client, "/login").await;
    assert!(!html.contains("/recover"));
    let (status, _) = get(&app, &client, "/recover").await;
    assert_eq!(status, 404);
    let csrf = csrf_of(&get(&app, &client, "/login").await.1);
    let (status, _) = post_text(&app, &client, "/recover", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    assert_eq!(status, 404);
    assert_eq!(get(&app, &client, &format!("/recover/{}", "A".repeat(32))).await.0, 404);
}

#[tokio::test]
async fn email_forms_require_csrf() {
    // Blackhole transport (the default): nothing needs an SMTP server here.
    let app = spawn_app_with("account:\n  password_recovery_enabled: true\n").await;
    register(&app, "alice", vec![ALICE_EMAIL.into()]).await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let csrf = csrf_of(&get(&app, &client, "/account/emails").await.1);
    // With the token, adding works (the blackhole mailer "sends").
    let verify = add_address(&app, &client, "alice2@example.org").await;
    let resend = verify.replace("/verify/", "/resend/");
    let ticket = format!("/recover/{}", "A".repeat(32));
    for (path, form) in [
        ("/account/emails/add", vec![("email", "alice3@example.org")]),
        (verify.as_str(), vec![("code", "123456")]),
        (resend.as_str(), vec![]),
        ("/account/emails/remove", vec![("email", ALICE_EMAIL)]),
        ("/recover", vec![("email", ALICE_EMAIL)]),
        (ticket.as_str(), vec![("new_password", NEW_PASSWORD), ("new_password_confirm", NEW_PASSWORD)]),
    ] {
        let (status, html) = post_text(&app, &client, path, &form).await;
        assert_eq!(status, 400, "{path} without csrf: {html}");
        let mut wrong = form.clone();
        wrong.push(("csrf", "not-the-token-not-the-token-not-the-token"));
        let (status, _) = post_text(&app, &client, path, &wrong).await;
        assert_eq!(status, 400, "{path} with a wrong csrf");
    }
    // Nothing changed.
    let (_, html) = get(&app, &client, "/account/emails").await;
    assert!(html.contains(ALICE_EMAIL));
    assert!(!csrf.is_empty());
}

#[tokio::test]
async fn email_changes_can_be_disallowed() {
    let app = spawn_app_with("account:\n  email_change_allowed: false\n").await;
    register(&app, "alice", vec![ALICE_EMAIL.into()]).await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let (status, html) = get(&app, &client, "/account/emails").await;
    assert_eq!(status, 200);
    assert!(html.contains(ALICE_EMAIL));
    assert!(html.contains("cannot be changed"));
    assert!(!html.contains("/account/emails/add"));
    let csrf = csrf_of(&get(&app, &client, "/account/").await.1);
    let (status, _) =
        post_text(&app, &client, "/account/emails/add", &[("csrf", &csrf), ("email", "x@example.org")]).await;
    assert_eq!(status, 403);
    let (status, _) =
        post_text(&app, &client, "/account/emails/remove", &[("csrf", &csrf), ("email", ALICE_EMAIL)]).await;
    assert_eq!(status, 403);
    // Signed out: the emails page asks to sign in.
    let res = app.new_client().get(app.url("/account/emails")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login?next="));
}
