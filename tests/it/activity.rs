//! Session activity: `last_active_at` / `last_active_ip` recorded by introspection, refreshes
//! and page views, batched in memory, written on flush and at shutdown, IPs forgotten after 30
//! days without activity; the account page shows it.

use std::path::Path;
use std::time::Duration;

use appliance::store::sessions::SessionKind;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};

const PASSWORD: &str = "correct horse battery";
const API_SCOPE: &str = "openid urn:matrix:org.matrix.msc2967.client:api:*";

async fn app() -> TestApp {
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "alice", PASSWORD, false).await;
    app
}

/// `(last_active_at, last_active_ip)` of one session, read straight from the database file.
fn activity(db: &Path, table: &str, id_column: &str, id: &str) -> (Option<i64>, Option<String>) {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open database");
    conn.query_row(&format!("SELECT last_active_at, last_active_ip FROM {table} WHERE {id_column} = ?1"), [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .expect("query")
    .unwrap_or_else(|| panic!("no {table} row {id}"))
}

fn oauth_activity(app: &TestApp, id: &str) -> (Option<i64>, Option<String>) {
    activity(&app.db_path, "oauth2_sessions", "oauth2_session_id", id)
}

fn compat_activity(app: &TestApp, id: &str) -> (Option<i64>, Option<String>) {
    activity(&app.db_path, "compat_sessions", "compat_session_id", id)
}

/// The only session id in `table` (each test makes one of a kind unless said otherwise).
fn only_id(db: &Path, table: &str, id_column: &str) -> String {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open database");
    let ids: Vec<String> = conn
        .prepare(&format!("SELECT {id_column} FROM {table} ORDER BY created_at"))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("query");
    assert_eq!(ids.len(), 1, "{table}: {ids:?}");
    ids[0].clone()
}

async fn flush(app: &TestApp) -> usize {
    app.state.lifecycle.activity().flush().await
}

async fn compat_login(app: &TestApp, device_id: &str) -> Value {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "device_id": device_id, "refresh_token": true});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// A compat refresh that must succeed: the new tokens.
async fn compat_refreshed(app: &TestApp, refresh_token: &str) -> Value {
    let res = compat_refresh(app, refresh_token).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn compat_session_of_device(app: &TestApp, device_id: &str) -> String {
    let (db, device) = (app.db_path.clone(), device_id.to_string());
    tokio::task::spawn_blocking(move || {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.query_row("SELECT compat_session_id FROM compat_sessions WHERE device_id = ?1", [device], |r| r.get(0))
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn introspection_records_the_time_but_no_ip_and_a_refresh_records_the_ip() {
    let app = app().await;
    let t0 = app.state.now();
    let tokens = code_login(&app, "alice", PASSWORD, API_SCOPE).await;
    let session = only_id(&app.db_path, "oauth2_sessions", "oauth2_session_id");
    assert_eq!(oauth_activity(&app, &session), (Some(t0), None), "set at creation");

    app.clock.advance(120);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, access).await["active"], true);
    // Batched: nothing is written until the flush.
    assert_eq!(oauth_activity(&app, &session), (Some(t0), None));
    let pending = app.state.lifecycle.activity().pending_for(SessionKind::OAuth2, &session).expect("pending");
    assert_eq!((pending.at, pending.ip), (t0 + 120, None));
    assert!(flush(&app).await >= 1);
    assert_eq!(oauth_activity(&app, &session), (Some(t0 + 120), None), "introspection records no IP");
    assert!(app.state.lifecycle.activity().pending_for(SessionKind::OAuth2, &session).is_none());

    app.clock.advance(60);
    let res = refresh(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    flush(&app).await;
    assert_eq!(oauth_activity(&app, &session), (Some(t0 + 180), Some("127.0.0.1".into())));

    // An older introspection result never moves the time back; the IP stays.
    app.clock.advance(-100);
    let access = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &access).await["active"], true);
    flush(&app).await;
    assert_eq!(oauth_activity(&app, &session), (Some(t0 + 180), Some("127.0.0.1".into())));

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("appliance_session_activity_records_total"), "{metrics}");
}

#[tokio::test]
async fn compat_introspection_and_refresh_update_the_compat_session() {
    let app = app().await;
    let t0 = app.state.now();
    let login = compat_login(&app, "ACTIVITY01").await;
    let session = compat_session_of_device(&app, "ACTIVITY01").await;
    assert_eq!(compat_activity(&app, &session), (Some(t0), None));
    // The login itself was seen from the client's address.
    flush(&app).await;
    assert_eq!(compat_activity(&app, &session), (Some(t0), Some("127.0.0.1".into())));
    app.state.store.write(|c| Ok(c.execute("UPDATE compat_sessions SET last_active_ip = NULL", [])?)).await.unwrap();

    app.clock.advance(100);
    let info = introspect(&app, login["access_token"].as_str().unwrap()).await;
    assert_eq!(info["active"], true);
    flush(&app).await;
    assert_eq!(compat_activity(&app, &session), (Some(t0 + 100), None), "introspection records no IP");

    app.clock.advance(50);
    let refreshed = compat_refreshed(&app, login["refresh_token"].as_str().unwrap()).await;
    assert!(refreshed["access_token"].as_str().is_some());
    flush(&app).await;
    assert_eq!(compat_activity(&app, &session), (Some(t0 + 150), Some("127.0.0.1".into())));
}

#[tokio::test]
async fn browsing_the_account_page_updates_the_browser_session() {
    let app = app().await;
    let t0 = app.state.now();
    let browser = app.new_client();
    assert_eq!(login(&app, &browser, "/account/", "alice", PASSWORD).await.status(), 303);
    let session = only_id(&app.db_path, "user_sessions", "user_session_id");
    flush(&app).await;
    let row = activity(&app.db_path, "user_sessions", "user_session_id", &session);
    assert_eq!(row, (Some(t0), Some("127.0.0.1".into())));

    app.clock.advance(300);
    let res = browser.get(app.url("/account/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    flush(&app).await;
    let row = activity(&app.db_path, "user_sessions", "user_session_id", &session);
    assert_eq!(row, (Some(t0 + 300), Some("127.0.0.1".into())));

    // A page without a signed-in session records nothing.
    app.clock.advance(60);
    let _ = app.new_client().get(app.url("/login")).send().await.unwrap();
    assert_eq!(flush(&app).await, 0);
}

#[tokio::test]
async fn the_account_page_shows_when_and_where_a_session_was_last_active() {
    let app = app().await;
    let t0 = app.state.now();
    let login = compat_login(&app, "ACTIVITY02").await;
    flush(&app).await;
    let browser = app.new_client();
    assert_eq!(login_page_status(&app, &browser).await, 303);

    // Used after creation (within the 5-minute compat token life), shown 2 minutes later, not
    // yet flushed: the page merges what the tracker holds.
    app.clock.advance(200);
    assert_eq!(introspect(&app, login["access_token"].as_str().unwrap()).await["active"], true);
    app.clock.advance(120);
    let list = get(&app, &browser, "/account/?action=org.matrix.sessions_list").await.1;
    assert!(list.contains("active <time datetime=\"") && list.contains(">2 minutes ago</time>"), "{list}");
    let view = get(&app, &browser, "/account/?action=org.matrix.device_view&device_id=ACTIVITY02").await.1;
    assert!(view.contains("Last active"), "{view}");
    let iso = iso(t0 + 200);
    assert!(view.contains(&format!("<time datetime=\"{iso}\">2 minutes ago</time>")), "{iso} in {view}");
    assert!(view.contains("IP address") && view.contains("127.0.0.1"), "{view}");

    // The same after the flush, from the database.
    flush(&app).await;
    let again = get(&app, &browser, "/account/?action=org.matrix.device_view&device_id=ACTIVITY02").await.1;
    assert!(again.contains(&format!("<time datetime=\"{iso}\">2 minutes ago</time>")), "{again}");
}

async fn login_page_status(app: &TestApp, browser: &reqwest::Client) -> u16 {
    login(app, browser, "/account/", "alice", PASSWORD).await.status().as_u16()
}

/// `2026-01-03T14:05:00Z`, as the pages write `<time datetime>`.
fn iso(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant), to avoid a date crate in tests.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = ts.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

#[tokio::test]
async fn stopping_the_app_writes_pending_activity() {
    let app = app().await;
    let t0 = app.state.now();
    let login = compat_login(&app, "ACTIVITY03").await;
    let session = compat_session_of_device(&app, "ACTIVITY03").await;
    app.clock.advance(90);
    assert_eq!(introspect(&app, login["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(compat_activity(&app, &session), (Some(t0), None), "not written yet");

    let db = app.db_path.clone();
    let (dir, _) = app.stop().await;
    let row = activity(&db, "compat_sessions", "compat_session_id", &session);
    assert_eq!(row, (Some(t0 + 90), Some("127.0.0.1".into())), "written at shutdown");
    drop(dir);
}

#[tokio::test]
async fn ips_are_forgotten_after_30_days_without_activity() {
    let app = app().await;
    let stale = compat_login(&app, "STALE00001").await;
    let fresh = compat_login(&app, "FRESH00001").await;
    let browser = app.new_client();
    assert_eq!(login_page_status(&app, &browser).await, 303);
    let browser_session = only_id(&app.db_path, "user_sessions", "user_session_id");
    flush(&app).await;
    let (stale_id, fresh_id) =
        (compat_session_of_device(&app, "STALE00001").await, compat_session_of_device(&app, "FRESH00001").await);
    assert_eq!(compat_activity(&app, &stale_id).1.as_deref(), Some("127.0.0.1"));
    assert!(stale["access_token"].is_string());

    // 31 days later one session is used again; the hourly cleanup forgets the other's IP.
    app.clock.advance(31 * 86_400);
    compat_refreshed(&app, fresh["refresh_token"].as_str().unwrap()).await;
    flush(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stale_ip = compat_activity(&app, &stale_id).1;
        let browser_ip = activity(&app.db_path, "user_sessions", "user_session_id", &browser_session).1;
        if stale_ip.is_none() && browser_ip.is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "IPs still kept: {stale_ip:?} {browser_ip:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(compat_activity(&app, &fresh_id).1.as_deref(), Some("127.0.0.1"), "an active session keeps its IP");

    // The store function on its own: only sessions inactive since the cut-off lose the IP.
    let now = app.state.now();
    let cleared = app
        .state
        .store
        .write(move |c| {
            Ok(appliance::store::compat::clear_stale_ips(c, now - 30 * 86_400)?
                + appliance::store::sessions::clear_stale_ips(c, now - 30 * 86_400)?)
        })
        .await
        .unwrap();
    assert_eq!(cleared, 0);
    assert_eq!(compat_activity(&app, &fresh_id).1.as_deref(), Some("127.0.0.1"));
}
