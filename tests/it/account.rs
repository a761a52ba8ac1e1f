//! The account page: sign-in required, profile, password change, sessions (OAuth, compat,
//! browser) view and end, cross-signing reset, deactivation, CSRF on every form.
//!
//! Set `ACCOUNT_SNAPSHOTS=/some/dir` to have the rendered pages written there (with the assets
//! pointing at the source tree) for screenshots.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

const PASSWORD: &str = "correct horse battery";
/// Strong enough for `passwords.minimum_complexity: 3`.
const NEW_PASSWORD: &str = "violet kestrel harbour lantern";
const DEVICE_SCOPE: &str =
    "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:ABCDEFGHIJ";
const SESSIONS: &str = "/account/?action=org.matrix.sessions_list";

async fn app_with(extra: &str) -> TestApp {
    let app = spawn_app_with(&format!("{}{extra}", clients_patch())).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

/// The CSRF token of the account page.
async fn csrf(app: &TestApp, client: &reqwest::Client) -> String {
    csrf_of(&get(app, client, "/account/").await.1)
}

/// Writes a rendered page for screenshots when `ACCOUNT_SNAPSHOTS` is set.
fn snapshot(app: &TestApp, name: &str, html: &str) {
    let Ok(dir) = std::env::var("ACCOUNT_SNAPSHOTS") else { return };
    let root = env!("CARGO_MANIFEST_DIR");
    let mut html = html.to_string();
    for asset in ["app.css", "app.js", "logo.svg", "favicon.svg"] {
        html = html.replace(&app.state.assets.path(asset), &format!("file://{root}/assets/{asset}"));
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/{name}.html"), html).unwrap();
}

/// The `id` of the end-session form of `kind` whose block mentions `marker`.
fn session_id_of(html: &str, kind: &str, marker: &str) -> String {
    let block = html
        .split("<li class=\"session")
        .find(|b| b.contains(marker) && b.contains(&format!("name=\"kind\" value=\"{kind}\"")))
        .unwrap_or_else(|| panic!("no {kind} session mentioning {marker} in:\n{html}"));
    let m = "name=\"id\" value=\"";
    let start = block.find(m).unwrap() + m.len();
    block[start..].split('"').next().unwrap().to_string()
}

async fn compat_login(app: &TestApp, device_id: &str, name: &str) -> String {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "device_id": device_id, "initial_device_display_name": name});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

/// Posts the password form of the account page.
async fn change_password(
    app: &TestApp,
    client: &reqwest::Client,
    csrf: &str,
    current: &str,
    new: &str,
    confirm: &str,
) -> reqwest::Response {
    let form =
        [("csrf", csrf), ("current_password", current), ("new_password", new), ("new_password_confirm", confirm)];
    post(app, client, "/account/password", &form).await
}

async fn user(app: &TestApp) -> appliance::model::User {
    app.state.store.read(|c| appliance::store::users::by_username(c, "alice")).await.unwrap().expect("alice")
}

#[tokio::test]
async fn requires_sign_in_and_keeps_the_action() {
    let app = app_with("").await;
    let client = app.new_client();
    for (path, next) in [
        ("/account", "/account/"),
        ("/account/", "/account/"),
        (
            "/account/?action=org.matrix.device_view&device_id=ABCDEFGHIJ",
            "/account/?action=org.matrix.device_view&device_id=ABCDEFGHIJ",
        ),
    ] {
        let res = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(location(&res), format!("/login?next={}", urlencode(next)), "{path}");
    }
    // Signing in lands back on the deep link.
    let next = "/account/?action=org.matrix.sessions_list";
    let res = login(&app, &client, next, "alice", PASSWORD).await;
    assert_eq!(location(&res), next);
    let (status, html) = get(&app, &client, next).await;
    assert_eq!(status, 200);
    assert!(html.contains("Where you’re signed in"));
    // A form post without a session goes to sign-in too.
    let token = csrf_of(&get(&app, &app.client, "/login").await.1);
    let res = post(&app, &app.client, "/account/profile", &[("csrf", &token), ("display_name", "x")]).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/login?next="));
}

#[tokio::test]
async fn profile_rename_is_stored() {
    let app = app_with("").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let (status, html) = get(&app, &client, "/account/").await;
    assert_eq!(status, 200);
    assert!(html.contains("@alice:localhost") && html.contains("name=\"display_name\""));
    assert!(html.contains("action=\"/account/password\""), "password form shown");
    snapshot(&app, "profile", &html);
    let token = csrf_of(&html);

    let res = post(&app, &client, "/account/profile", &[("csrf", &token), ("display_name", "  Alice Liddell ")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/?notice=profile_saved");
    assert_eq!(user(&app).await.display_name.as_deref(), Some("Alice Liddell"));
    let (_, html) = get(&app, &client, "/account/?notice=profile_saved").await;
    assert!(html.contains("Your display name was saved.") && html.contains("value=\"Alice Liddell\""));
    snapshot(&app, "profile_saved", &html);
    // The homeserver is unreachable: the change is queued for it.
    let jobs = app.state.store.read(appliance::store::jobs::pending).await.unwrap();
    assert!(jobs.iter().any(|j| j.kind == "provision_user"), "{:?}", jobs.iter().map(|j| &j.kind).collect::<Vec<_>>());

    // Too long: refused, the error tied to the field.
    let long = "x".repeat(300);
    let res = post(&app, &client, "/account/profile", &[("csrf", &token), ("display_name", &long)]).await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"display_name-error\"") && html.contains("aria-invalid=\"true\""));
    assert!(html.contains("aria-describedby=\"display_name-hint display_name-error\""));
    snapshot(&app, "profile_error", &html);
    assert_eq!(user(&app).await.display_name.as_deref(), Some("Alice Liddell"));

    // Empty: back to no display name.
    let res = post(&app, &client, "/account/profile", &[("csrf", &token), ("display_name", "")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(user(&app).await.display_name, None);
}

#[tokio::test]
async fn profile_form_hidden_when_not_allowed() {
    let app = app_with("account: {displayname_change_allowed: false, password_change_allowed: false, account_deactivation_allowed: false}\n").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let (_, html) = get(&app, &client, "/account/").await;
    assert!(!html.contains("name=\"display_name\"") && !html.contains("/account/password"));
    assert!(!html.contains("account_deactivate"));
    let token = csrf_of(&html);
    let res = post(&app, &client, "/account/profile", &[("csrf", &token), ("display_name", "x")]).await;
    assert_eq!(res.status(), 403);
    let res = post(
        &app,
        &client,
        "/account/password",
        &[
            ("csrf", &token),
            ("current_password", PASSWORD),
            ("new_password", "another one"),
            ("new_password_confirm", "another one"),
        ],
    )
    .await;
    assert_eq!(res.status(), 403);
    let res =
        post(&app, &client, "/account/deactivate", &[("csrf", &token), ("password", PASSWORD), ("confirm", "yes")])
            .await;
    assert_eq!(res.status(), 403);
    assert!(user(&app).await.deactivated_at.is_none());
}

#[tokio::test]
async fn password_change() {
    let app = app_with("").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let token = csrf(&app, &client).await;
    let change = |current, new, confirm| change_password(&app, &client, &token, current, new, confirm);
    let res = change("wrong password", NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(res.status(), 401);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"current_password-error\"") && html.contains("That password is not correct."));
    snapshot(&app, "password_error", &html);

    // zxcvbn against `passwords.minimum_complexity` (3), the account's own name counting as guessable.
    for weak in ["short", "password123", "alice2024"] {
        let res = change(PASSWORD, weak, weak).await;
        assert_eq!(res.status(), 400, "{weak}");
        let html = res.text().await.unwrap();
        assert!(html.contains("id=\"new_password-error\"") && html.contains("too easy to guess"), "{weak}: {html}");
    }

    let res = change(PASSWORD, NEW_PASSWORD, "a different one").await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("id=\"new_password_confirm-error\""));

    let res = change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/account/?notice=password_changed");

    // The new password works at /login, the old one no longer.
    let fresh = app.new_client();
    assert_eq!(login(&app, &fresh, "/account/", "alice", PASSWORD).await.status(), 401);
    let res = login(&app, &fresh, "/account/", "alice", NEW_PASSWORD).await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn password_checks_are_rate_limited() {
    let app = spawn_app_with(
        "rate_limiting:\n  login:\n    per_ip: {burst: 1000, per_second: 100}\n    per_account: {burst: 3, per_second: 0.001}\n",
    )
    .await;
    register_user(&app, "alice", PASSWORD, false).await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let token = csrf(&app, &client).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = change_password(&app, &client, &token, "nope nope", NEW_PASSWORD, NEW_PASSWORD).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Even the right password is refused while limited.
    let res = change_password(&app, &client, &token, PASSWORD, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(res.status(), 429);
    assert!(res.text().await.unwrap().contains("Too many attempts"));
}

#[tokio::test]
async fn oauth_session_listed_viewed_and_ended() {
    let app = app_with("").await;
    let tokens = code_login(&app, "alice", PASSWORD, DEVICE_SCOPE).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &access).await["active"], true);

    let client = signed_in(&app, "alice", PASSWORD).await;
    let (status, html) = get(&app, &client, "/account/?action=org.matrix.devices_list").await;
    assert_eq!(status, 200);
    assert!(html.contains("Test App") && html.contains("ABCDEFGHIJ"), "{html}");
    assert!(html.contains("This browser"), "the current browser session is marked");
    snapshot(&app, "sessions", &html);
    // The unstable name shows the same list.
    assert_eq!(get(&app, &client, SESSIONS).await.1.matches("ABCDEFGHIJ").count(), html.matches("ABCDEFGHIJ").count());

    for action in ["org.matrix.device_view", "org.matrix.session_view"] {
        let (status, html) = get(&app, &client, &format!("/account/?action={action}&device_id=ABCDEFGHIJ")).await;
        assert_eq!(status, 200);
        assert!(html.contains("<h1>Test App</h1>") && html.contains("ABCDEFGHIJ"));
        snapshot(&app, "session_view", &html);
    }
    for action in ["org.matrix.device_delete", "org.matrix.session_end"] {
        let (status, html) = get(&app, &client, &format!("/account/?action={action}&device_id=ABCDEFGHIJ")).await;
        assert_eq!(status, 200);
        assert!(html.contains("Sign out Test App?") && html.contains("action=\"/account/sessions/end\""));
        snapshot(&app, "session_end", &html);
    }
    let (status, html) = get(&app, &client, "/account/?action=org.matrix.device_view&device_id=NOSUCHDEV").await;
    assert_eq!(status, 404);
    assert!(html.contains("Session not found") && html.contains(SESSIONS));
    snapshot(&app, "session_not_found", &html);

    let id = session_id_of(&html_of_list(&app, &client).await, "oauth", "ABCDEFGHIJ");
    let token = csrf_of(&html);
    let res = post(&app, &client, "/account/sessions/end", &[("csrf", &token), ("kind", "oauth"), ("id", &id)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("{SESSIONS}&notice=session_ended"));
    assert_eq!(introspect(&app, &access).await["active"], false);
    let (_, html) = get(&app, &client, &format!("{SESSIONS}&notice=session_ended")).await;
    assert!(!html.contains("ABCDEFGHIJ") && html.contains("The session was ended."));
    snapshot(&app, "sessions_ended", &html);
    // Device removal is pushed to the homeserver (queued: it is unreachable here).
    let jobs = app.state.store.read(appliance::store::jobs::pending).await.unwrap();
    assert!(jobs.iter().any(|j| j.kind == "sync_devices"));
    // Ending it again: gone.
    let res = post(&app, &client, "/account/sessions/end", &[("csrf", &token), ("kind", "oauth"), ("id", &id)]).await;
    assert_eq!(res.status(), 404);
}

async fn html_of_list(app: &TestApp, client: &reqwest::Client) -> String {
    get(app, client, SESSIONS).await.1
}

#[tokio::test]
async fn compat_session_listed_and_ended() {
    let app = app_with("").await;
    let access = compat_login(&app, "COMPATDEV1", "Nio bot").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let html = html_of_list(&app, &client).await;
    assert!(html.contains("Nio bot") && html.contains("COMPATDEV1"));
    let (status, view) = get(&app, &client, "/account/?action=org.matrix.device_view&device_id=COMPATDEV1").await;
    assert_eq!(status, 200);
    assert!(view.contains("Legacy sign-in"));
    let id = session_id_of(&html, "compat", "COMPATDEV1");
    let res =
        post(&app, &client, "/account/sessions/end", &[("csrf", &csrf_of(&html)), ("kind", "compat"), ("id", &id)])
            .await;
    assert_eq!(res.status(), 303);
    assert_eq!(introspect_any(&app, &access).await["active"], false);
    assert!(!html_of_list(&app, &client).await.contains("COMPATDEV1"));
}

#[tokio::test]
async fn sessions_of_others_cannot_be_ended() {
    let app = app_with("").await;
    register_user(&app, "bob", PASSWORD, false).await;
    // Bob's compat session.
    let body = json!({"type": "m.login.password", "user": "bob", "password": PASSWORD, "device_id": "BOBDEVICE1"});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    let bob_token = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let bob = appliance::lifecycle::users::find(&app.state.store, "bob").await.unwrap();
    let bob_session = app
        .state
        .store
        .read(move |c| appliance::store::compat::active_for_user(c, &bob.id))
        .await
        .unwrap()
        .remove(0)
        .id;

    let client = signed_in(&app, "alice", PASSWORD).await;
    assert!(!html_of_list(&app, &client).await.contains("BOBDEVICE1"));
    let (status, _) = get(&app, &client, "/account/?action=org.matrix.device_view&device_id=BOBDEVICE1").await;
    assert_eq!(status, 404);
    let token = csrf(&app, &client).await;
    for kind in ["compat", "oauth", "browser", "bogus"] {
        let res =
            post(&app, &client, "/account/sessions/end", &[("csrf", &token), ("kind", kind), ("id", &bob_session)])
                .await;
        assert_eq!(res.status(), 404, "{kind}");
    }
    assert_eq!(introspect_any(&app, &bob_token).await["active"], true);
}

#[tokio::test]
async fn browser_sessions_listed_and_ended() {
    let app = app_with("").await;
    let other = signed_in(&app, "alice", PASSWORD).await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let html = html_of_list(&app, &client).await;
    assert_eq!(html.matches("name=\"kind\" value=\"browser\"").count(), 2);
    // End the other browser: it is signed out.
    let other_id = html
        .split("<li class=\"session")
        .filter(|b| b.contains("value=\"browser\"") && !b.contains("This browser"))
        .map(|b| {
            let m = "name=\"id\" value=\"";
            let s = b.find(m).unwrap() + m.len();
            b[s..].split('"').next().unwrap().to_string()
        })
        .next()
        .unwrap();
    let token = csrf_of(&html);
    let res =
        post(&app, &client, "/account/sessions/end", &[("csrf", &token), ("kind", "browser"), ("id", &other_id)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(other.get(app.url("/account/")).send().await.unwrap().status(), 303);
    // End this browser: signing out.
    let html = html_of_list(&app, &client).await;
    let mine = session_id_of(&html, "browser", "This browser");
    let res =
        post(&app, &client, "/account/sessions/end", &[("csrf", &token), ("kind", "browser"), ("id", &mine)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login");
    let res = client.get(app.url("/account/")).send().await.unwrap();
    assert!(location(&res).starts_with("/login"));
}

#[tokio::test]
async fn cross_signing_reset_needs_the_password() {
    let app = app_with("").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let (status, html) = get(&app, &client, "/account/?action=org.matrix.cross_signing_reset").await;
    assert_eq!(status, 200);
    assert!(html.contains("action=\"/account/cross-signing-reset\"") && html.contains("name=\"password\""));
    snapshot(&app, "reset", &html);
    let token = csrf_of(&html);
    let res = post(&app, &client, "/account/cross-signing-reset", &[("csrf", &token), ("password", "wrong")]).await;
    assert_eq!(res.status(), 401);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"password-error\""));
    snapshot(&app, "reset_error", &html);
    // The right password, but the homeserver is unreachable: said so, nothing pretended.
    let res = post(&app, &client, "/account/cross-signing-reset", &[("csrf", &token), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), 502);
    assert!(res.text().await.unwrap().contains("could not be reached"));
}

/// A homeserver that accepts every `/_synapse/mas/*` call and records it.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

async fn recording_homeserver() -> (String, Calls) {
    use axum::extract::{Path, State};
    let calls: Calls = Arc::default();
    let router = axum::Router::new()
        .route(
            "/_synapse/mas/{call}",
            axum::routing::post(
                |State(calls): State<Calls>, Path(call): Path<String>, axum::Json(body): axum::Json<Value>| async move {
                    calls.lock().unwrap().push((call, body));
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/"), calls)
}

#[tokio::test]
async fn homeserver_gets_display_name_reset_and_device_removal() {
    let (endpoint, calls) = recording_homeserver().await;
    let app = app_with(&format!("matrix:\n  endpoint: \"{endpoint}\"\n")).await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let token = csrf(&app, &client).await;
    let res = post(&app, &client, "/account/profile", &[("csrf", &token), ("display_name", "Alice")]).await;
    assert_eq!(res.status(), 303);
    assert!(
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|(c, b)| c == "set_displayname" && b["displayname"] == "Alice" && b["localpart"] == "alice")
    );

    let res = post(&app, &client, "/account/cross-signing-reset", &[("csrf", &token), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("You have 10 minutes to reset your identity in your app"));
    snapshot(&app, "reset_done", &html);
    assert!(calls.lock().unwrap().iter().any(|(c, b)| c == "allow_cross_signing_reset" && b["localpart"] == "alice"));

    let access = compat_login(&app, "COMPATDEV2", "Bot").await;
    let id = session_id_of(&html_of_list(&app, &client).await, "compat", "COMPATDEV2");
    calls.lock().unwrap().clear();
    let res = post(&app, &client, "/account/sessions/end", &[("csrf", &token), ("kind", "compat"), ("id", &id)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(introspect_any(&app, &access).await["active"], false);
    let calls = calls.lock().unwrap().clone();
    let sync = calls.iter().find(|(c, _)| c == "sync_devices").expect("devices synced");
    assert!(!sync.1["devices"].as_array().unwrap().iter().any(|d| d == "COMPATDEV2"), "{sync:?}");
}

#[tokio::test]
async fn deactivation_ends_everything() {
    let app = app_with("").await;
    let tokens = code_login(&app, "alice", PASSWORD, DEVICE_SCOPE).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let compat = compat_login(&app, "COMPATDEV3", "Bot").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let (status, html) = get(&app, &client, "/account/?action=org.matrix.account_deactivate").await;
    assert_eq!(status, 200);
    assert!(html.contains("action=\"/account/deactivate\"") && html.contains("name=\"confirm\""));
    snapshot(&app, "deactivate", &html);
    let token = csrf_of(&html);

    let res = post(&app, &client, "/account/deactivate", &[("csrf", &token), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"confirm-error\"") && html.contains("aria-describedby=\"confirm-error\""));
    snapshot(&app, "deactivate_error", &html);
    let res =
        post(&app, &client, "/account/deactivate", &[("csrf", &token), ("password", "wrong"), ("confirm", "yes")])
            .await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("id=\"password-error\""));
    assert!(user(&app).await.deactivated_at.is_none());

    let res =
        post(&app, &client, "/account/deactivate", &[("csrf", &token), ("password", PASSWORD), ("confirm", "yes")])
            .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Your account was deleted") && !html.contains("Signed in as"));
    snapshot(&app, "goodbye", &html);

    assert!(user(&app).await.deactivated_at.is_some());
    assert_eq!(introspect(&app, &access).await["active"], false);
    assert_eq!(introspect_any(&app, &compat).await["active"], false);
    let jobs = app.state.store.read(appliance::store::jobs::pending).await.unwrap();
    assert!(jobs.iter().any(|j| j.kind == "deactivate_user" && j.payload.contains("\"erase\":false")));
    // Signed out, and cannot sign in again.
    let res = client.get(app.url("/account/")).send().await.unwrap();
    assert!(location(&res).starts_with("/login"));
    let res = login(&app, &app.new_client(), "/account/", "alice", PASSWORD).await;
    assert_ne!(res.status(), 303);
}

#[tokio::test]
async fn every_form_needs_the_csrf_token() {
    let app = app_with("").await;
    let access = compat_login(&app, "COMPATDEV4", "Bot").await;
    let client = signed_in(&app, "alice", PASSWORD).await;
    let id = session_id_of(&html_of_list(&app, &client).await, "compat", "COMPATDEV4");
    let forms: [(&str, Vec<(&str, &str)>); 5] = [
        ("/account/profile", vec![("display_name", "Mallory")]),
        (
            "/account/password",
            vec![
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirm", NEW_PASSWORD),
            ],
        ),
        ("/account/sessions/end", vec![("kind", "compat"), ("id", id.as_str())]),
        ("/account/cross-signing-reset", vec![("password", PASSWORD)]),
        ("/account/deactivate", vec![("password", PASSWORD), ("confirm", "yes")]),
    ];
    for (path, fields) in &forms {
        let res = post(&app, &client, path, fields).await;
        assert_eq!(res.status(), 400, "{path} without csrf");
        let mut with_wrong = fields.clone();
        with_wrong.push(("csrf", "not-the-token-not-the-token-not-the-token"));
        let res = post(&app, &client, path, &with_wrong).await;
        assert_eq!(res.status(), 400, "{path} with a wrong csrf");
    }
    let u = user(&app).await;
    assert!(u.display_name.is_none() && u.deactivated_at.is_none());
    assert_eq!(introspect_any(&app, &access).await["active"], true);
    let fresh = app.new_client();
    assert_eq!(login(&app, &fresh, "/account/", "alice", PASSWORD).await.status(), 303);
}
