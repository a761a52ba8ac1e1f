//! `experimental.inactive_session_expiration`: idle OAuth, compat and browser sessions are ended
//! as a logout would end them (tokens dead at once, devices deleted on the homeserver with one
//! device sync per user), sessions in use survive even while their activity is only in memory,
//! each `expire_*: false` keeps its kind, and nothing expires unless configured.
//!
//! Most tests run `lifecycle::expiry::run_once` by hand on a server without the feature, so the
//! job worker cannot run it at the same time; one test leaves it to the worker.

use std::time::{Duration, Instant};

use appliance::clock::Clock;
use appliance::config::InactiveSessionExpirationConfig;
use appliance::lifecycle::expiry::{self, Expired};
use appliance::store::sessions::SessionKind;
use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, merged_yaml, spawn_app_with};
use crate::register::{Calls, fake_homeserver};

const PASSWORD: &str = "correct horse battery";
const API: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
const TTL: i64 = 600;

/// The public and confidential clients, the recording homeserver, access tokens that outlive the
/// test's clock jumps (so an inactive answer means the session ended), and `extra` on top.
async fn app_with(extra: &str) -> (TestApp, Calls) {
    let (endpoint, calls) = fake_homeserver().await;
    let base = format!(
        "matrix: {{endpoint: \"{endpoint}\"}}\nexperimental: {{access_token_ttl: 86400, compat_token_ttl: 86400}}\n"
    );
    let app = spawn_app_with(&merged_yaml(&merged_yaml(&clients_patch(), &base), extra)).await;
    register_user(&app, "alice", PASSWORD, false).await;
    (app, calls)
}

async fn app() -> (TestApp, Calls) {
    app_with("").await
}

fn all_kinds() -> InactiveSessionExpirationConfig {
    InactiveSessionExpirationConfig::all(TTL)
}

async fn run(app: &TestApp, config: &InactiveSessionExpirationConfig) -> Expired {
    expiry::run_once(&app.state.lifecycle, config).await.expect("expiry run")
}

/// An OAuth login with a device: (access token, refresh token, session id). Signs in through a
/// new browser, so it also makes a browser session.
async fn oauth_login(app: &TestApp, device: &str) -> (String, String, String) {
    let scope = format!("openid {API} urn:matrix:org.matrix.msc2967.client:device:{device}");
    let tokens = code_login(app, "alice", PASSWORD, &scope).await;
    let access = tokens["access_token"].as_str().expect("access token").to_string();
    let info = introspect(app, &access).await;
    assert_eq!(info["active"], true);
    let session = oauth_session_of_device(app, device).await;
    (access, tokens["refresh_token"].as_str().expect("refresh token").to_string(), session)
}

async fn oauth_session_of_device(app: &TestApp, device: &str) -> String {
    let device = device.to_string();
    app.state
        .store
        .read(move |c| {
            Ok(c.query_row(
                "SELECT oauth2_session_id FROM oauth2_sessions WHERE scope LIKE '%:device:' || ?1",
                [device],
                |r| r.get::<_, String>(0),
            )?)
        })
        .await
        .expect("session of the device")
}

/// A legacy password login for `device` (a non-expiring access token): the access token.
async fn compat_login(app: &TestApp, device: &str) -> String {
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "device_id": device});
    let res = app.client.post(app.url("/_matrix/client/v3/login")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["access_token"].as_str().expect("access token").to_string()
}

async fn active(app: &TestApp, token: &str) -> bool {
    introspect(app, token).await["active"] == true
}

/// Whether the browser is still signed in (the account page, not the login page).
async fn signed_in_still(app: &TestApp, browser: &reqwest::Client) -> bool {
    let res = browser.get(app.url("/account/")).send().await.unwrap();
    match res.status().as_u16() {
        200 => true,
        303 => {
            assert!(location(&res).starts_with("/login"), "{}", location(&res));
            false
        }
        other => panic!("account page answered {other}"),
    }
}

/// The device lists of the `sync_devices` calls for alice from `from` on.
fn device_syncs(calls: &Calls, from: usize) -> Vec<Vec<String>> {
    let calls = calls.lock().unwrap();
    calls[from..]
        .iter()
        .filter(|(call, body)| call == "sync_devices" && body["localpart"] == "alice")
        .map(|(_, body)| {
            let mut devices: Vec<String> =
                body["devices"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
            devices.sort();
            devices
        })
        .collect()
}

/// How many sessions of each table are still active.
async fn active_counts(app: &TestApp) -> (i64, i64, i64) {
    app.state
        .store
        .read(|c| {
            let count = |table: &str| -> rusqlite::Result<i64> {
                c.query_row(&format!("SELECT count(*) FROM {table} WHERE finished_at IS NULL"), [], |r| r.get(0))
            };
            Ok((count("oauth2_sessions")?, count("compat_sessions")?, count("user_sessions")?))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idle_oauth_session_ends_and_its_device_goes_while_one_in_use_survives() {
    let (app, calls) = app().await;
    let (idle, idle_refresh, _) = oauth_login(&app, "IDLEDEVICE").await;
    let (in_use, _, in_use_session) = oauth_login(&app, "BUSYDEVICE").await;

    app.clock.advance(TTL + 100);
    // Synapse checks the token: the activity is only in memory so far.
    assert!(active(&app, &in_use).await);
    let pending = app.state.lifecycle.activity().pending_for(SessionKind::OAuth2, &in_use_session);
    assert_eq!(pending.map(|p| p.at), Some(app.state.now()));

    let before = calls.lock().unwrap().len();
    let expired = run(&app, &all_kinds()).await;
    // Both logins signed in through a browser of their own; those are idle too.
    assert_eq!(expired, Expired { oauth2: 1, compat: 0, browser: 2, users_synced: 1 });

    assert!(!active(&app, &idle).await, "the idle session's token stops working at once");
    assert_eq!(refresh(&app, &idle_refresh).await.status(), 400);
    assert!(active(&app, &in_use).await);
    // One device sync for the user, keeping only the device in use.
    assert_eq!(device_syncs(&calls, before), vec![vec!["BUSYDEVICE".to_string()]]);

    // Nothing is left to do at once.
    assert_eq!(run(&app, &all_kinds()).await, Expired::default());
}

#[tokio::test]
async fn an_idle_compat_session_ends_and_one_in_use_survives() {
    let (app, calls) = app().await;
    let idle = compat_login(&app, "COMPATIDLE").await;
    let in_use = compat_login(&app, "COMPATBUSY").await;
    app.clock.advance(TTL + 1);
    assert!(active(&app, &in_use).await);

    let before = calls.lock().unwrap().len();
    let expired = run(&app, &all_kinds()).await;
    assert_eq!(expired, Expired { oauth2: 0, compat: 1, browser: 0, users_synced: 1 });
    assert!(!active(&app, &idle).await);
    assert!(active(&app, &in_use).await);
    assert_eq!(device_syncs(&calls, before), vec![vec!["COMPATBUSY".to_string()]]);
    // The legacy API agrees: the idle token no longer logs out anything.
    let res = app.client.post(app.url("/_matrix/client/v3/logout")).bearer_auth(&idle).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn an_idle_browser_session_is_signed_out_and_one_in_use_stays() {
    let (app, calls) = app().await;
    let idle = signed_in(&app, "alice", PASSWORD).await;
    let in_use = signed_in(&app, "alice", PASSWORD).await;
    app.clock.advance(TTL + 1);
    assert!(signed_in_still(&app, &in_use).await);

    let before = calls.lock().unwrap().len();
    let expired = run(&app, &all_kinds()).await;
    assert_eq!(expired, Expired { oauth2: 0, compat: 0, browser: 1, users_synced: 0 });
    assert!(!signed_in_still(&app, &idle).await);
    assert!(signed_in_still(&app, &in_use).await);
    assert!(device_syncs(&calls, before).is_empty(), "a browser session has no device");
}

#[tokio::test]
async fn each_expire_flag_keeps_its_kind() {
    let (app, _calls) = app().await;
    for (i, name) in ["oauth", "compat", "user"].into_iter().enumerate() {
        let (oauth, _, _) = oauth_login(&app, &format!("OAUTHFLAG{i}")).await;
        let compat = compat_login(&app, &format!("COMPATFLAG{i}")).await;
        let browser = signed_in(&app, "alice", PASSWORD).await;
        app.clock.advance(TTL + 1);

        let config = InactiveSessionExpirationConfig {
            expire_oauth_sessions: name != "oauth",
            expire_compat_sessions: name != "compat",
            expire_user_sessions: name != "user",
            ..all_kinds()
        };
        let expired = run(&app, &config).await;
        let kept = match name {
            "oauth" => expired.oauth2,
            "compat" => expired.compat,
            _ => expired.browser,
        };
        assert_eq!(kept, 0, "expire_{name}_sessions: false ended some: {expired:?}");
        assert_eq!(expired.sessions(), 2 + usize::from(name != "user"), "{name}: {expired:?}");
        assert_eq!(active(&app, &oauth).await, name == "oauth", "{name}");
        assert_eq!(active(&app, &compat).await, name == "compat", "{name}");
        assert_eq!(signed_in_still(&app, &browser).await, name == "user", "{name}");

        // Everything ends with every flag on (the visit above counts as activity: wait again).
        app.clock.advance(TTL + 1);
        run(&app, &all_kinds()).await;
        assert_eq!(active_counts(&app).await, (0, 0, 0), "{name}");
    }
}

#[tokio::test]
async fn off_by_default_nothing_expires() {
    let (app, calls) = app().await;
    assert!(app.state.config.experimental.inactive_session_expiration.is_none());
    let (oauth, _, _) = oauth_login(&app, "DEFAULTOFF").await;
    let compat = compat_login(&app, "DEFAULTOFF2").await;
    let browser = signed_in(&app, "alice", PASSWORD).await;
    let before = calls.lock().unwrap().len();

    // A day later the worker's six-hourly device reconciliation runs; the periodic tasks (an
    // expiry run, were it configured) run in the same round before its jobs, so once alice's
    // device sync arrived that round is over.
    app.clock.advance(86_000);
    let deadline = Instant::now() + Duration::from_secs(15);
    while device_syncs(&calls, before).is_empty() {
        assert!(Instant::now() < deadline, "the worker did not reconcile alice's devices");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active_counts(&app).await, (1, 1, 2));
    assert!(active(&app, &oauth).await && active(&app, &compat).await);
    assert!(signed_in_still(&app, &browser).await);
    // The reconciliation keeps both devices.
    for devices in device_syncs(&calls, before) {
        assert_eq!(devices, ["DEFAULTOFF", "DEFAULTOFF2"]);
    }
}

#[tokio::test]
async fn the_worker_expires_idle_sessions_on_its_own_and_counts_them() {
    let (app, calls) =
        app_with("experimental: {inactive_session_expiration: {ttl: 600, expire_user_sessions: false}}").await;
    assert_eq!(
        app.state.config.experimental.inactive_session_expiration,
        Some(InactiveSessionExpirationConfig { expire_user_sessions: false, ..all_kinds() })
    );
    let (idle, _, _) = oauth_login(&app, "WORKERIDLE").await;
    let compat = compat_login(&app, "WORKERCOMP").await;
    let before = calls.lock().unwrap().len();

    // Not yet idle for long enough: the worker's first run leaves everything alone. A run shows
    // in the metric (its kinds appear, counted 0) only once it is over.
    app.clock.advance(expiry::RUN_EVERY + 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l.starts_with("appliance_sessions_expired_total{kind=\"oauth2\"}")) {
            assert!(
                ["oauth2", "compat"].iter().all(|k| metrics
                    .lines()
                    .any(|l| l == format!("appliance_sessions_expired_total{{kind=\"{k}\"}} 0"))),
                "the first run ended sessions:\n{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not run the expiry task:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active_counts(&app).await, (1, 1, 1));

    // Past the ttl and past the next run: without anyone asking (introspection would count as
    // activity), the worker ends both, deletes both devices in one sync, and counts them.
    app.clock.advance(TTL);
    let deadline = Instant::now() + Duration::from_secs(15);
    while active_counts(&app).await != (0, 0, 1) {
        assert!(Instant::now() < deadline, "the worker did not expire the sessions: {:?}", active_counts(&app).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!active(&app, &idle).await && !active(&app, &compat).await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while device_syncs(&calls, before).is_empty() {
        assert!(Instant::now() < deadline, "no device sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(device_syncs(&calls, before), vec![Vec::<String>::new()]);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in
        ["appliance_sessions_expired_total{kind=\"oauth2\"} 1", "appliance_sessions_expired_total{kind=\"compat\"} 1"]
    {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    assert!(!metrics.contains("kind=\"browser\""), "{metrics}");
}

/// A session ended without its device sync (a crash in between, simulated by ending it in the
/// database directly) still loses its device at the next periodic reconciliation.
#[tokio::test]
async fn reconciliation_removes_the_device_of_a_session_that_ended_without_a_sync() {
    let (app, calls) = app().await;
    let (access, _, session) = oauth_login(&app, "CRASHDEV01").await;
    let now = app.clock.now();
    app.state
        .store
        .write(move |c| appliance::store::sessions::finish_oauth(c, &session, now))
        .await
        .expect("end the session behind the lifecycle's back");
    assert!(!active(&app, &access).await);
    let before = calls.lock().unwrap().len();
    // The worker's reconciliation runs every 6 hours of its clock.
    app.clock.advance(6 * 3600 + 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !device_syncs(&calls, before).iter().any(|d| !d.contains(&"CRASHDEV01".to_string())) {
        assert!(Instant::now() < deadline, "no reconciling device sync: {:?}", device_syncs(&calls, before));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
