//! Personal access tokens (`mpt_`) for bots and admin tools: `manage issue-personal-token` and the
//! admin API's `/personal-sessions`; introspection as MAS answers it, expiry, revocation (device
//! deleted), regeneration, locked users, the admin API accepting a PAT, and hashing at rest.

use appliance::clock::Clock;
use appliance::tokens::TokenKind;
use serde_json::{Value, json};

use crate::admin::{ADMIN_CLIENT, PASSWORD, admin_app, admin_token, call, calls_to, title, user_id};
use crate::flows::{introspect, introspect_with, register_user};
use crate::helpers::TestApp;
use crate::register::Calls;

const API: &str = "urn:matrix:client:api:*";

/// `manage ARGS…` against the app's config: (success, stdout, stderr).
async fn manage(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let config = app.config_path.clone();
    let mut all = vec!["manage".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        crate::helpers::run_cli(&config, &args)
    })
    .await
    .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out.status.success(), stdout, stderr)
}

/// The device sets the homeserver was told to keep, in order.
fn devices_synced(calls: &Calls) -> Vec<Value> {
    calls_to(calls, "sync_devices").iter().map(|c| c["devices"].clone()).collect()
}

/// `POST /personal-sessions` as `token`: (status, body).
async fn create(app: &TestApp, token: &str, actor: &str, scope: &str, expires_in: Option<u32>) -> (u16, Value) {
    let mut body = json!({"actor_user_id": actor, "human_name": "Bot", "scope": scope});
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    call(app, "POST", "/personal-sessions", Some(token), Some(body)).await
}

fn access_token(body: &Value) -> String {
    body["data"]["attributes"]["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {body}")).into()
}

#[tokio::test]
async fn cli_token_introspects_as_the_actor_with_its_device_and_expires() {
    let (app, calls) = admin_app("").await;
    register_user(&app, "alice", PASSWORD, false).await;
    let alice = user_id(&app, "alice").await;

    let (ok, stdout, stderr) = manage(
        &app,
        &["issue-personal-token", "alice", "--name", "Bot", "--device", "BOTDEVICE01", "--expires-in", "3600"],
    )
    .await;
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_string();
    assert_eq!(TokenKind::check(&token), Some(TokenKind::PersonalAccessToken), "only the token on stdout: {stdout}");
    assert!(stderr.contains("personal session 01"), "the session id goes to stderr: {stderr}");

    // The device was created before the token was printed.
    let upserts = calls_to(&calls, "upsert_device");
    assert_eq!(upserts.len(), 1, "{upserts:?}");
    assert_eq!(
        (upserts[0]["localpart"].as_str(), upserts[0]["device_id"].as_str()),
        (Some("alice"), Some("BOTDEVICE01"))
    );
    assert_eq!(upserts[0]["display_name"], "Bot");

    let info = introspect(&app, &token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["username"], "alice");
    assert_eq!(info["sub"], alice.as_str());
    assert_eq!(info["token_type"], "access_token");
    let scope: Vec<&str> = info["scope"].as_str().unwrap().split(' ').collect();
    for s in [
        API,
        "urn:matrix:org.matrix.msc2967.client:api:*",
        "urn:matrix:client:device:BOTDEVICE01",
        "urn:matrix:org.matrix.msc2967.client:device:BOTDEVICE01",
    ] {
        assert!(scope.contains(&s), "{s} in {scope:?}");
    }
    // As MAS: owned by a user, so no client_id; no jti; the device is in the scope only.
    for absent in ["client_id", "jti", "device_id"] {
        assert!(info.get(absent).is_none(), "{absent} in {info}");
    }
    // The CLI issued it by the wall clock; the server's clock is a mock started at boot.
    assert_eq!(info["exp"].as_i64().unwrap() - info["iat"].as_i64().unwrap(), 3600, "{info}");
    assert!(info["expires_in"].as_i64().expect("expires_in") >= 3600);

    // Introspection counts as activity.
    app.state.lifecycle.activity().flush().await;
    let admin = admin_token(&app).await;
    let (_, listed) =
        call(&app, "GET", &format!("/personal-sessions?filter[actor_user]={alice}"), Some(&admin), None).await;
    assert_eq!(listed["meta"]["count"], 1, "{listed}");
    let attributes = &listed["data"][0]["attributes"];
    assert!(attributes["last_active_at"].is_string(), "{attributes}");
    assert_eq!(
        (attributes["owner_user_id"].as_str(), attributes["actor_user_id"].as_str()),
        (Some(&*alice), Some(&*alice))
    );
    assert!(attributes.get("access_token").is_none(), "the token is shown once only");

    // Hashed at rest: the database holds its SHA-256, never the token.
    let db = rusqlite::Connection::open(&app.db_path).unwrap();
    let stored: Vec<String> = db
        .prepare("SELECT access_token_sha256 FROM personal_access_tokens")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, vec![appliance::crypto::sha256_hex(token.as_bytes())]);
    let dump: String = db
        .query_row(
            "SELECT group_concat(personal_session_id || human_name || scope, '') FROM personal_sessions",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!dump.contains(&token) && !dump.contains(&token[4..34]), "plaintext in personal_sessions");
    drop(db);
    // Nor anywhere in the files (the WAL holds the latest writes).
    let wal = app.db_path.with_extension("db-wal");
    for file in [app.db_path.clone(), wal] {
        let raw = std::fs::read(&file).unwrap_or_default();
        assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()), "plaintext token in {}", file.display());
    }

    // Expired once its time is up.
    let exp = info["exp"].as_i64().unwrap();
    app.clock.advance(exp - app.clock.now() - 1);
    assert_eq!(introspect(&app, &token).await["active"], true, "a second left");
    app.clock.advance(1);
    assert_eq!(introspect(&app, &token).await, json!({"active": false}));
}

#[tokio::test]
async fn cli_lists_and_revokes_and_the_device_goes() {
    let (app, calls) = admin_app("").await;
    register_user(&app, "alice", PASSWORD, false).await;
    let (ok, stdout, stderr) = manage(&app, &["issue-personal-token", "alice", "--name", "Nightly bot"]).await;
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_string();
    let device = calls_to(&calls, "upsert_device")[0]["device_id"].as_str().unwrap().to_string();
    assert_eq!(device.len(), 10, "a generated device id");
    let info = introspect(&app, &token).await;
    assert!(info["scope"].as_str().unwrap().contains(&format!("urn:matrix:client:device:{device}")));
    assert!(info.get("expires_in").is_none(), "long-lived");

    let (ok, list, _) = manage(&app, &["list-personal-tokens", "alice"]).await;
    assert!(ok);
    let row = list.lines().find(|l| l.contains("Nightly bot")).unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("alice") && row.contains("active") && row.contains("never"), "{row}");
    let session_id = row.split_whitespace().next().unwrap().to_string();
    let (ok, list, _) = manage(&app, &["list-personal-tokens", "nobody"]).await;
    assert!(!ok, "{list}");

    let (ok, out, stderr) = manage(&app, &["revoke-personal-token", &session_id]).await;
    assert!(ok, "{stderr}");
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(introspect(&app, &token).await["active"], false, "inactive at once");
    assert_eq!(devices_synced(&calls).last(), Some(&json!([])), "the device is deleted");
    let (ok, _, stderr) = manage(&app, &["revoke-personal-token", &session_id]).await;
    assert!(!ok && stderr.contains("already revoked"), "{stderr}");
    let (ok, list, _) = manage(&app, &["list-personal-tokens"]).await;
    assert!(ok && list.lines().any(|l| l.starts_with(&session_id) && l.contains("revoked")), "{list}");

    // Homeserver administration only when the operator says so (or the user may request it).
    let (ok, _, stderr) = manage(
        &app,
        &["issue-personal-token", "alice", "--name", "x", "--scope", &format!("{API} urn:synapse:admin:*")],
    )
    .await;
    assert!(!ok && stderr.contains("urn:synapse:admin:*"), "{stderr}");
    let (ok, _, stderr) = manage(&app, &["issue-personal-token", "alice", "--name", "x", "--device", "short"]).await;
    assert!(!ok, "an invalid device id: {stderr}");
    let args = ["issue-personal-token", "alice", "--name", "Admin", "--yes-i-want-to-grant-synapse-admin-privileges"];
    let (ok, stdout, stderr) = manage(&app, &args).await;
    assert!(ok, "{stderr}");
    let info = introspect(&app, stdout.trim()).await;
    assert!(info["scope"].as_str().unwrap().split(' ').any(|s| s == "urn:synapse:admin:*"), "{info}");
}

#[tokio::test]
async fn admin_api_creates_lists_gets_regenerates_and_revokes() {
    let (app, calls) = admin_app("").await;
    let admin = admin_token(&app).await;
    let t = Some(admin.as_str());
    register_user(&app, "alice", PASSWORD, false).await;
    register_user(&app, "bob", PASSWORD, false).await;
    let (alice, bob) = (user_id(&app, "alice").await, user_id(&app, "bob").await);

    let scope = format!("{API} urn:matrix:client:device:ALICEBOT01");
    let (status, created) = create(&app, &admin, &alice, &scope, Some(600)).await;
    assert_eq!(status, 201, "{created}");
    let data = &created["data"];
    assert_eq!(data["type"], "personal-session");
    let id = data["id"].as_str().unwrap().to_string();
    assert_eq!(data["links"]["self"], format!("/api/admin/v1/personal-sessions/{id}"));
    let a = &data["attributes"];
    assert_eq!(a["owner_client_id"], ADMIN_CLIENT, "a client_credentials caller owns it");
    assert!(a["owner_user_id"].is_null() && a["revoked_at"].is_null() && a["expires_at"].is_string(), "{a}");
    assert_eq!((a["actor_user_id"].as_str(), a["human_name"].as_str()), (Some(&*alice), Some("Bot")));
    assert_eq!(a["scope"], scope.as_str());
    let first = access_token(&created);
    assert_eq!(calls_to(&calls, "upsert_device").last().unwrap()["device_id"], "ALICEBOT01");
    let info = introspect(&app, &first).await;
    assert_eq!((info["active"].as_bool(), info["client_id"].as_str()), (Some(true), Some(ADMIN_CLIENT)));
    assert_eq!(info["username"], "alice");

    // Shown once: reading it back has no token.
    let (status, one) = call(&app, "GET", &format!("/personal-sessions/{id}"), t, None).await;
    assert_eq!(status, 200);
    assert!(one["data"]["attributes"].get("access_token").is_none(), "{one}");
    assert_eq!(one["data"]["attributes"]["scope"], scope.as_str());

    // One for bob without a device; errors.
    let (status, _) = create(&app, &admin, &bob, "urn:mas:graphql:*", None).await;
    assert_eq!(status, 201);
    let (status, body) = create(&app, &admin, "01ARZ3NDEKTSV4RRFFQ69G5FAV", API, None).await;
    assert_eq!((status, title(&body)), (404, "User ID 01ARZ3NDEKTSV4RRFFQ69G5FAV not found"));
    for (scope, why) in
        [("bad\"scope", "malformed"), ("profile", "unknown scope"), ("urn:matrix:client:device:X", "bad")]
    {
        let (status, body) = create(&app, &admin, &alice, scope, None).await;
        assert_eq!(status, 400, "{why}: {body}");
    }
    let (status, _) = call(&app, "POST", "/personal-sessions", t, Some(json!({"actor_user_id": alice}))).await;
    assert_eq!(status, 400, "missing fields");
    let body = json!({"actor_user_id": alice, "human_name": " ", "scope": ""});
    let (status, _) = call(&app, "POST", "/personal-sessions", t, Some(body)).await;
    assert_eq!(status, 400, "empty name");

    // Lists and filters.
    let (_, all) = call(&app, "GET", "/personal-sessions", t, None).await;
    assert_eq!(all["meta"]["count"], 2, "{all}");
    let (_, hers) = call(&app, "GET", &format!("/personal-sessions?filter[actor_user]={alice}"), t, None).await;
    assert_eq!((hers["meta"]["count"].as_u64(), hers["data"][0]["id"].as_str()), (Some(1), Some(&*id)));
    let (_, by_client) =
        call(&app, "GET", &format!("/personal-sessions?filter[owner_client]={ADMIN_CLIENT}"), t, None).await;
    assert_eq!(by_client["meta"]["count"], 2);
    let (_, by_user) = call(&app, "GET", &format!("/personal-sessions?filter[owner_user]={alice}"), t, None).await;
    assert_eq!(by_user["meta"]["count"], 0);
    let (status, _) = call(&app, "GET", "/personal-sessions?filter[status]=finished", t, None).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, "GET", "/personal-sessions?filter[actor_user]=alice", t, None).await;
    assert_eq!(status, 400);

    // Regenerate: the old token dies, the new one is shown once.
    app.clock.advance(60);
    let (status, again) =
        call(&app, "POST", &format!("/personal-sessions/{id}/regenerate"), t, Some(json!({"expires_in": 86400}))).await;
    assert_eq!(status, 201, "{again}");
    let second = access_token(&again);
    assert_ne!(first, second);
    assert_eq!(again["data"]["id"], id.as_str());
    assert_eq!(introspect(&app, &first).await["active"], false);
    let info = introspect(&app, &second).await;
    assert_eq!(info["active"], true);
    assert!(info["expires_in"].as_i64().unwrap() > 80_000);
    let (_, one) = call(&app, "GET", &format!("/personal-sessions/{id}"), t, None).await;
    assert!(one["data"]["attributes"].get("access_token").is_none());
    let (status, _) = call(&app, "POST", &format!("/personal-sessions/{id}/regenerate"), t, None).await;
    assert_eq!(status, 201, "without a body: never expires");
    let (_, one) = call(&app, "GET", &format!("/personal-sessions/{id}"), t, None).await;
    assert!(one["data"]["attributes"]["expires_at"].is_null());
    assert_eq!(introspect(&app, &second).await["active"], false);

    // Revoke: dead at once, the device goes, and only once.
    let (status, revoked) = call(&app, "POST", &format!("/personal-sessions/{id}/revoke"), t, None).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["data"]["attributes"]["revoked_at"].is_string());
    assert!(revoked["data"]["attributes"].get("access_token").is_none());
    assert_eq!(devices_synced(&calls).last(), Some(&json!([])));
    let (status, body) = call(&app, "POST", &format!("/personal-sessions/{id}/revoke"), t, None).await;
    assert_eq!((status, title(&body)), (409, format!("Personal session with ID {id} is already revoked").as_str()));
    let (status, _) = call(&app, "POST", &format!("/personal-sessions/{id}/regenerate"), t, None).await;
    assert_eq!(status, 422, "a revoked session is not regenerated");
    let (_, active) = call(&app, "GET", "/personal-sessions?filter[status]=active", t, None).await;
    assert_eq!(active["meta"]["count"], 1);
    let (_, gone) = call(&app, "GET", "/personal-sessions?filter[status]=revoked", t, None).await;
    assert_eq!(gone["data"][0]["id"], id.as_str());
    assert!(gone["data"][0]["attributes"]["expires_at"].is_null());
    for path in ["", "/revoke", "/regenerate"] {
        let method = if path.is_empty() { "GET" } else { "POST" };
        let (status, _) =
            call(&app, method, &format!("/personal-sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV{path}"), t, None).await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn locked_or_deactivated_users_tokens_are_inactive() {
    let (app, calls) = admin_app("").await;
    let admin = admin_token(&app).await;
    let t = Some(admin.as_str());
    register_user(&app, "alice", PASSWORD, false).await;
    let alice = user_id(&app, "alice").await;
    let (_, created) = create(&app, &admin, &alice, &format!("{API} urn:matrix:client:device:ALICEBOT01"), None).await;
    let token = access_token(&created);

    let (status, _) = call(&app, "POST", &format!("/users/{alice}/lock"), t, None).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&app, &token).await, json!({"active": false}));
    let (status, _) = call(&app, "POST", &format!("/users/{alice}/unlock"), t, None).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&app, &token).await["active"], true);

    // Deactivation revokes the tokens (they stay dead after a reactivation).
    let (status, _) = call(&app, "POST", &format!("/users/{alice}/deactivate"), t, Some(json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&app, &token).await["active"], false);
    let id = created["data"]["id"].as_str().unwrap();
    let (_, one) = call(&app, "GET", &format!("/personal-sessions/{id}"), t, None).await;
    assert!(one["data"]["attributes"]["revoked_at"].is_string(), "{one}");
    assert_eq!(devices_synced(&calls).last(), Some(&json!([])));
    let (status, body) = create(&app, &admin, &alice, API, None).await;
    assert_eq!((status, title(&body)), (410, "User is not active"));
}

#[tokio::test]
async fn a_personal_token_with_the_admin_scope_is_an_admin_api_bearer() {
    let (app, _) = admin_app("").await;
    let admin = admin_token(&app).await;
    register_user(&app, "root", PASSWORD, true).await;
    register_user(&app, "carol", PASSWORD, false).await;
    let (root, carol) = (user_id(&app, "root").await, user_id(&app, "carol").await);

    // Administration scopes only for a user who may request administration (as at consent).
    for scope in ["urn:mas:admin", "urn:synapse:admin:*", &format!("{API} urn:synapse:admin:*")] {
        let (status, body) = create(&app, &admin, &carol, scope, None).await;
        assert_eq!(status, 400, "{scope}: {body}");
        assert!(title(&body).contains("not allowed"), "{body}");
    }
    let (status, body) = create(&app, &admin, &root, &format!("{API} urn:synapse:admin:*"), None).await;
    assert_eq!(status, 201, "{body}");
    let info = introspect(&app, &access_token(&body)).await;
    assert!(info["scope"].as_str().unwrap().contains("urn:synapse:admin:*"));

    let (status, body) = create(&app, &admin, &root, "urn:mas:admin", None).await;
    assert_eq!(status, 201, "{body}");
    let pat = access_token(&body);
    let pat_id = body["data"]["id"].as_str().unwrap().to_string();
    let (status, users) = call(&app, "GET", "/users", Some(&pat), None).await;
    assert_eq!(status, 200, "{users}");
    // What a PAT creates, its user owns.
    let (status, mine) = create(&app, &pat, &carol, API, None).await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["data"]["attributes"]["owner_user_id"], root.as_str());
    assert!(mine["data"]["attributes"]["owner_client_id"].is_null());
    let (_, owned) =
        call(&app, "GET", &format!("/personal-sessions?filter[owner_user]={root}"), Some(&pat), None).await;
    assert_eq!(owned["meta"]["count"], 1);
    // Only the owner regenerates.
    let (status, _) = call(&app, "POST", &format!("/personal-sessions/{pat_id}/regenerate"), Some(&pat), None).await;
    assert_eq!(status, 403, "owned by the admin client, not by root");

    // Without the scope, or once its user may no longer request administration: refused.
    let (_, plain) = create(&app, &admin, &root, API, None).await;
    let (status, body) = call(&app, "GET", "/users", Some(&access_token(&plain)), None).await;
    assert_eq!((status, title(&body)), (403, "Missing urn:mas:admin scope"));
    let (status, _) =
        call(&app, "POST", &format!("/users/{root}/set-admin"), Some(&admin), Some(json!({"admin": false}))).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, "GET", "/users", Some(&pat), None).await;
    assert_eq!(status, 403);
    // Revoked: refused as any unknown token.
    let (status, _) =
        call(&app, "POST", &format!("/users/{root}/set-admin"), Some(&admin), Some(json!({"admin": true}))).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, "GET", "/users", Some(&pat), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, "POST", &format!("/personal-sessions/{pat_id}/revoke"), Some(&admin), None).await;
    assert_eq!(status, 200);
    let (status, body) = call(&app, "GET", "/users", Some(&pat), None).await;
    assert_eq!((status, title(&body)), (401, "Invalid access token"));
}

#[tokio::test]
async fn garbage_and_unknown_personal_tokens_are_inactive() {
    let (app, _) = admin_app("").await;
    let unknown = TokenKind::PersonalAccessToken.generate(&appliance::rng::OsRng);
    let mut tampered = unknown.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    for token in ["mpt_garbage", "mpt_", &unknown, &tampered, &format!("{unknown}_x")] {
        assert_eq!(introspect(&app, token).await, json!({"active": false}), "{token}");
    }

    // A live token with the wrong hint is inactive too, as MAS.
    register_user(&app, "alice", PASSWORD, false).await;
    let admin = admin_token(&app).await;
    let (_, created) = create(&app, &admin, &user_id(&app, "alice").await, API, None).await;
    let token = access_token(&created);
    assert_eq!(introspect_with(&app, &token, Some("refresh_token"), true).await, json!({"active": false}));
    assert_eq!(introspect_with(&app, &token, None, false).await["active"], true);
}

/// The homeserver's devices of a user are those of all of its live sessions: ending another
/// session must keep the personal token's device.
///
/// Needs `jobs::desired_devices` (src/jobs/mod.rs) to add `store::personal::active_device_ids`;
/// that file belongs to the inactive-session-expiry work, so the line is not added here.
#[tokio::test]
async fn ending_another_session_keeps_the_personal_device() {
    let (app, calls) = admin_app("").await;
    let admin = admin_token(&app).await;
    register_user(&app, "alice", PASSWORD, false).await;
    let alice = user_id(&app, "alice").await;
    let (_, created) = create(&app, &admin, &alice, &format!("{API} urn:matrix:client:device:ALICEBOT01"), None).await;
    let token = access_token(&created);
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                       "password": PASSWORD, "device_id": "PHONE00001"});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&login).send().await.unwrap();
    let compat: Value = res.json().await.unwrap();
    let res = app
        .client
        .post(app.url("/_matrix/client/v3/logout"))
        .bearer_auth(compat["access_token"].as_str().unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(devices_synced(&calls).last(), Some(&json!(["ALICEBOT01"])));
    assert_eq!(introspect(&app, &token).await["active"], true);
}

/// A token acting as a user shows on that user's sessions page, and the user can end it there.
#[tokio::test]
async fn the_user_sees_tokens_acting_as_them_and_can_revoke_them() {
    let (app, calls) = admin_app("").await;
    register_user(&app, "alice", PASSWORD, false).await;
    let (ok, stdout, stderr) =
        manage(&app, &["issue-personal-token", "alice", "--name", "Reminder bot", "--device", "BOTDEVICE09"]).await;
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_string();

    let browser = crate::flows::signed_in(&app, "alice", PASSWORD).await;
    let list = browser.get(app.url("/account/?action=org.matrix.sessions_list")).send().await.unwrap();
    let html = list.text().await.unwrap();
    assert!(html.contains("Reminder bot") && html.contains("BOTDEVICE09"), "{html}");
    let view = browser
        .get(app.url("/account/?action=org.matrix.device_view&device_id=BOTDEVICE09"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(view.contains("Personal access token"), "{view}");
    let csrf = crate::flows::csrf_of(&view);
    let id = view
        .split("name=\"id\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the session id in the form")
        .to_string();
    let before = devices_synced(&calls).len();
    let res = browser
        .post(app.url("/account/sessions/end"))
        .form(&[("csrf", csrf.as_str()), ("kind", "personal"), ("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(introspect(&app, &token).await["active"], false);
    let synced = devices_synced(&calls);
    assert!(synced.len() > before && synced.last() == Some(&json!([])), "{synced:?}");

    // Another user's token cannot be ended from this account.
    register_user(&app, "bob", PASSWORD, false).await;
    let (ok, stdout, _) = manage(&app, &["issue-personal-token", "bob", "--name", "Bob's bot"]).await;
    assert!(ok);
    let bobs = stdout.trim().to_string();
    let bob_session = app
        .state
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT personal_session_id FROM personal_sessions WHERE human_name = 'Bob''s bot'",
                [],
                |r| r.get::<_, String>(0),
            )?)
        })
        .await
        .unwrap();
    let res = browser
        .post(app.url("/account/sessions/end"))
        .form(&[("csrf", csrf.as_str()), ("kind", "personal"), ("id", bob_session.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(introspect(&app, &bobs).await["active"], true);
}
