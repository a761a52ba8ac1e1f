//! Synapse access tokens without a device (issue 13): `syn2mas migrate` imports each as a compat
//! session without a device, as MAS does, and such a session then lives like any other: the
//! account page and the admin API list it (`device_id: null`), compat logout, the account page,
//! the admin API and inactive-session expiry end it, and the device sync after its end asks the
//! homeserver for no device of its own. Against real Synapse, in both integration modes, a Matrix
//! call with the imported token succeeds and whoami names no device.

use appliance::config::InactiveSessionExpirationConfig;
use appliance::lifecycle::expiry::{self, Expired};
use serde_json::{Value, json};

use crate::admin::{admin_token, call};
use crate::e2e_synapse::{Env, cli_text};
use crate::flows::{csrf_of, get, introspect, post, signed_in};
use crate::helpers::{self, TestApp, merged_yaml};
use crate::register::{Calls, fake_homeserver};
use crate::syn2mas_fixture::{PEPPER, SynapseDb, appliance_patch, text};
use crate::synapse_harness::SynapseMode;

const DANA_PASSWORD: &str = "dana's old synapse password";
const PHONE_TOKEN: &str = "syt_ZGFuYQ_phone_token_00001";
/// Device-less tokens: one per way a session ends.
const LOGOUT_TOKEN: &str = "syt_ZGFuYQ_deviceless_logout";
const ADMIN_TOKEN: &str = "syt_ZGFuYQ_deviceless_adminfin";
const PAGE_TOKEN: &str = "syt_ZGFuYQ_deviceless_account";
const IDLE_TOKEN: &str = "syt_ZGFuYQ_deviceless_idle000";
const TTL: i64 = 600;

/// dana in a Synapse database: a phone with a token, and four tokens without a device.
fn synapse_with_dana(dir: &std::path::Path, password: Option<&str>) -> SynapseDb {
    let mut synapse = SynapseDb::create(dir);
    synapse.user("dana", password, false);
    synapse.device("dana", "DANAPHONE");
    synapse.access_token("dana", Some("DANAPHONE"), PHONE_TOKEN);
    for token in [LOGOUT_TOKEN, ADMIN_TOKEN, PAGE_TOKEN, IDLE_TOKEN] {
        synapse.access_token("dana", None, token);
    }
    synapse
}

/// The import's config with the admin API, an admin client and the recording homeserver.
fn lifecycle_patch(endpoint: &str) -> String {
    merged_yaml(&crate::admin::admin_config(endpoint), &appliance_patch())
}

/// The compat session of an access token.
async fn session_of(app: &TestApp, token: &str) -> String {
    let hash = appliance::tokens::hash_token(token);
    app.state
        .store
        .read(move |c| {
            Ok(c.query_row("SELECT compat_session_id FROM compat_access_tokens WHERE token_hash = ?1", [hash], |r| {
                r.get::<_, String>(0)
            })?)
        })
        .await
        .expect("the token's session")
}

/// The devices of each `sync_devices` call for dana since `from`.
fn device_syncs(calls: &Calls, from: usize) -> Vec<Vec<String>> {
    let calls = calls.lock().unwrap();
    calls[from..]
        .iter()
        .filter(|(call, body)| call == "sync_devices" && body["localpart"] == "dana")
        .map(|(_, body)| body["devices"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect())
        .collect()
}

async fn active(app: &TestApp, token: &str) -> bool {
    introspect(app, token).await["active"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_session_without_a_device_is_listed_and_ends_like_any_other() {
    let dir = helpers::tempdir();
    let synapse = synapse_with_dana(dir.path(), Some(DANA_PASSWORD));
    let (endpoint, calls) = fake_homeserver().await;
    let patch = lifecycle_patch(&endpoint);
    // The CLI binds nothing; the server picks its own port when it starts.
    let config = helpers::write_test_config(dir.path(), &patch.replace("$PORT", "0"));
    let out = synapse.syn2mas(&config, &["migrate"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("1 devices as compat sessions, 5 access tokens, 0 refresh tokens"), "{report}");
    assert!(report.contains("of the access tokens, 4 had no device"), "{report}");
    let app = helpers::spawn_app_in(dir, &patch).await;
    for token in [PHONE_TOKEN, LOGOUT_TOKEN, ADMIN_TOKEN, PAGE_TOKEN, IDLE_TOKEN] {
        assert!(active(&app, token).await, "{token} was imported");
    }
    let dana = appliance::lifecycle::users::find(&app.state.store, "dana").await.expect("dana").id;

    // The admin API: MAS's shape, with `device_id: null`.
    let admin = admin_token(&app).await;
    let (status, list) =
        call(&app, "GET", &format!("/compat-sessions?filter[user]={dana}&filter[status]=active"), Some(&admin), None)
            .await;
    assert_eq!(status, 200, "{list}");
    let devices: Vec<&Value> = list["data"].as_array().unwrap().iter().map(|s| &s["attributes"]["device_id"]).collect();
    assert_eq!(devices.len(), 5, "{list}");
    assert_eq!(devices.iter().filter(|d| d.is_null()).count(), 4, "{list}");
    assert!(devices.contains(&&json!("DANAPHONE")), "{list}");
    let admin_session = session_of(&app, ADMIN_TOKEN).await;
    let (status, one) = call(&app, "GET", &format!("/compat-sessions/{admin_session}"), Some(&admin), None).await;
    assert_eq!(status, 200, "{one}");
    let attributes = one["data"]["attributes"].as_object().unwrap();
    assert_eq!(attributes.get("device_id"), Some(&Value::Null), "the key is there, null: {one}");
    assert_eq!(attributes.get("user_id"), Some(&json!(dana)), "{one}");

    // The account page lists every session, the device-less ones without a device id.
    let browser = signed_in(&app, "dana", DANA_PASSWORD).await;
    let (status, html) = get(&app, &browser, "/account/?action=org.matrix.sessions_list").await;
    assert_eq!(status, 200);
    let page_session = session_of(&app, PAGE_TOKEN).await;
    let items: Vec<&str> = html.split("<li class=\"session").skip(1).collect();
    let compat: Vec<&&str> = items.iter().filter(|b| b.contains("name=\"kind\" value=\"compat\"")).collect();
    assert_eq!(compat.len(), 5, "{html}");
    let listed = compat
        .iter()
        .find(|b| b.contains(&format!("name=\"id\" value=\"{page_session}\"")))
        .unwrap_or_else(|| panic!("no row for {page_session}:\n{html}"));
    assert!(listed.contains("Matrix client") && !listed.contains("session-device"), "{listed}");

    // Ended from the account page: the token dies, and the device sync keeps the phone only.
    let before = calls.lock().unwrap().len();
    let form = [("csrf", csrf_of(&html)), ("kind", "compat".into()), ("id", page_session)];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = post(&app, &browser, "/account/sessions/end", &form).await;
    assert_eq!(res.status(), 303);
    assert!(!active(&app, PAGE_TOKEN).await);
    assert_eq!(device_syncs(&calls, before), vec![vec!["DANAPHONE".to_string()]]);

    // Compat logout with the token itself.
    let before = calls.lock().unwrap().len();
    let res = app.client.post(app.url("/_matrix/client/v3/logout")).bearer_auth(LOGOUT_TOKEN).json(&json!({})).send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    assert!(!active(&app, LOGOUT_TOKEN).await);
    assert_eq!(device_syncs(&calls, before), vec![vec!["DANAPHONE".to_string()]]);

    // The admin API's finish.
    let (status, done) =
        call(&app, "POST", &format!("/compat-sessions/{admin_session}/finish"), Some(&admin), None).await;
    assert_eq!(status, 200, "{done}");
    assert!(done["data"]["attributes"]["finished_at"].is_string(), "{done}");
    assert!(!active(&app, ADMIN_TOKEN).await);

    // Inactive-session expiry: the phone and the last device-less session have been idle since
    // 2023; dana's browser goes idle once the clock moves on.
    app.clock.advance(TTL + 1);
    let before = calls.lock().unwrap().len();
    let expired = expiry::run_once(&app.state.lifecycle, &InactiveSessionExpirationConfig::all(TTL)).await.unwrap();
    assert_eq!(expired, Expired { oauth2: 0, compat: 2, browser: 1, users_synced: 1 });
    assert!(!active(&app, IDLE_TOKEN).await && !active(&app, PHONE_TOKEN).await);
    assert_eq!(device_syncs(&calls, before), vec![Vec::<String>::new()]);
}

/// The appliance's import config for `Env`: the bcrypt scheme with the fixture's pepper.
fn schemes() -> String {
    format!(
        "passwords:\n  schemes:\n    - version: 1\n      algorithm: bcrypt\n      secret: \"{PEPPER}\"\n      \
         unicode_normalization: true\n    - version: 2\n      algorithm: argon2id\n      memory_kib: 64\n      \
         iterations: 1\n"
    )
}

/// dana's Synapse rows imported into the running appliance (its import tables are empty), dana
/// and her devices provisioned on the real Synapse; then her tokens used through nginx.
async fn a_token_without_a_device_works_on_real_synapse(mode: SynapseMode) {
    let env = Env::start_with(mode, &schemes()).await;
    env.step("import a Synapse database with a device-less token");
    let source = env.app.dir.path().join("old-synapse");
    std::fs::create_dir(&source).unwrap();
    let synapse = synapse_with_dana(&source, None);
    let out = synapse.syn2mas(&env.app.config_path, &["migrate"]);
    assert!(out.status.success(), "{}", cli_text(&out));
    let dana = env.user_id_of("dana").await;
    assert!(env.app.state.lifecycle.provision_user(&dana).await, "provision dana{}", env.logs());
    assert!(env.app.state.lifecycle.sync_devices(&dana).await, "sync dana's devices{}", env.logs());
    assert_eq!(env.synapse_devices("dana"), vec!["DANAPHONE".to_string()], "no device for device-less sessions");

    env.step("whoami and /sync with the device-less token, through nginx");
    let (status, me) = env.whoami(LOGOUT_TOKEN).await;
    assert_eq!(status, 200, "whoami: {me}{}", env.logs());
    assert_eq!(me["user_id"], "@dana:localhost", "{me}");
    assert!(me.get("device_id").is_none(), "whoami names no device: {me}");
    let (status, sync) = env.sync(LOGOUT_TOKEN).await;
    assert_eq!(status, 200, "sync: {sync}{}", env.logs());
    env.expect_whoami(PHONE_TOKEN, "dana", "DANAPHONE").await;
    let seen = env.introspect(LOGOUT_TOKEN).await;
    eprintln!("[deviceless {}] the appliance's answer: {seen}", mode.version());
    assert!(seen["active"] == true && seen.get("device_id").is_none(), "{seen}");

    env.step("compat logout through nginx ends it");
    let res = env.http.post(env.nginx.url("/_matrix/client/v3/logout")).bearer_auth(LOGOUT_TOKEN).json(&json!({}));
    let (status, body) = env.send(res).await;
    assert_eq!(status, 200, "logout: {body}{}", env.logs());
    assert_eq!(env.introspect(LOGOUT_TOKEN).await["active"], false);
    assert_eq!(env.synapse_devices("dana"), vec!["DANAPHONE".to_string()], "the phone stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_an_imported_token_without_a_device_works_on_real_synapse() {
    a_token_without_a_device_works_on_real_synapse(SynapseMode::Modern).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_an_imported_token_without_a_device_works_on_real_synapse() {
    a_token_without_a_device_works_on_real_synapse(SynapseMode::Legacy).await;
}
