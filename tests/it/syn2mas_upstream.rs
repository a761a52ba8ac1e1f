//! `syn2mas` and upstream providers (issue 13): Synapse's `user_external_ids` become upstream
//! links through each provider's `synapse_idp_id`; an `auth_provider` no provider maps stops
//! `check` and `migrate` unless `--ignore-missing-auth-providers`. Access tokens without a device
//! become compat sessions without a device, as in MAS. `manage register-user
//! --upstream-provider-mapping` links a new user.

use rusqlite::Connection;
use serde_json::json;

use crate::flows;
use crate::helpers::{self, run_cli};
use crate::syn2mas_fixture::{GITHUB, SynapseDb, appliance_patch, text};

fn count(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_ids_become_links_and_unmapped_providers_stop_the_import_unless_ignored() {
    let dir = helpers::tempdir();
    let synapse = SynapseDb::create(dir.path());
    synapse.user("bob", Some("bob's password"), false);
    synapse.user("carol", None, false);
    synapse.external_id("bob", "oidc-github", "gh-1234");
    synapse.external_id("carol", "oidc-gitlab", "gl-77");
    let config = helpers::write_test_config(dir.path(), &appliance_patch());
    let db_path = dir.path().join("appliance.db");

    let out = synapse.syn2mas(&config, &["check"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(10), "{report}");
    assert!(report.contains("error: 1 external id(s) of auth_provider `oidc-gitlab`"), "{report}");
    assert!(report.contains("--ignore-missing-auth-providers"), "the way out is named: {report}");
    assert!(!report.contains("oidc-github"), "a mapped provider is no problem: {report}");

    let out = synapse.syn2mas(&config, &["migrate"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(10), "{report}");
    assert!(report.contains("nothing was imported"), "{report}");
    assert!(!db_path.exists() || count(&Connection::open(&db_path).unwrap(), "SELECT COUNT(*) FROM users") == 0);

    let out = synapse.syn2mas(&config, &["--ignore-missing-auth-providers", "check"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(11), "warnings only: {report}");
    assert!(report.contains("warning: 1 external id(s) of auth_provider `oidc-gitlab` are not linked"), "{report}");

    let out = synapse.syn2mas(&config, &["migrate", "--ignore-missing-auth-providers"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("1 external ids as upstream links"), "{report}");
    assert!(report.contains("warning: 1 external id(s) were not linked"), "{report}");

    let db = Connection::open(&db_path).unwrap();
    let (user, provider, subject, created): (String, String, String, i64) = db
        .query_row(
            "SELECT u.username, l.upstream_oauth_provider_id, l.subject, l.created_at
             FROM upstream_oauth_links l JOIN users u USING (user_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((user.as_str(), provider.as_str(), subject.as_str()), ("bob", GITHUB, "gh-1234"));
    assert_eq!(created, 1_700_000_000, "a link dates from its user's creation in Synapse");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM upstream_oauth_links"), 1, "carol's gitlab id is not a link");
    let kept: String = db
        .query_row("SELECT auth_provider || ':' || external_id FROM user_synapse_external_ids", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "oidc-gitlab:gl-77", "the unlinked id is kept aside");
    drop(db);

    // The server starts on the imported database; its provider sync adds the client secret the
    // import left out, and the link is the provider's.
    let app = helpers::spawn_app_in(dir, &appliance_patch()).await;
    let link = app
        .state
        .store
        .read(|c| appliance::store::upstream::link_by_subject(c, GITHUB, "gh-1234"))
        .await
        .unwrap()
        .expect("bob's link");
    assert!(link.user_id.is_some());
    let db = Connection::open(&app.db_path).unwrap();
    let secret: Option<String> = db
        .query_row(
            "SELECT encrypted_client_secret FROM upstream_oauth_providers WHERE upstream_oauth_provider_id = ?1",
            [GITHUB],
            |r| r.get(0),
        )
        .unwrap();
    assert!(secret.is_some(), "the start-up sync stored the provider's secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_without_a_device_become_compat_sessions_without_a_device() {
    let dir = helpers::tempdir();
    let mut synapse = SynapseDb::create(dir.path());
    synapse.user("alice", Some("alice's password"), true);
    synapse.user("erin", None, false);
    synapse.device("alice", "ALICEPHONE");
    synapse.access_token("alice", Some("ALICEPHONE"), "syt_YWxpY2U_phone_token_0001");
    synapse.access_token("alice", None, "syt_YWxpY2U_deviceless_0002");
    synapse.access_token("erin", None, "syt_ZXJpbg_deactivated_0003");
    synapse.deactivate("erin");
    let config = helpers::write_test_config(dir.path(), &appliance_patch());
    let db_path = dir.path().join("appliance.db");

    let out = synapse.syn2mas(&config, &["check"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "nothing to warn about, as in MAS: {report}");
    assert!(!report.contains("without a device"), "{report}");

    let counts = "1 devices as compat sessions, 2 access tokens, 0 refresh tokens";
    let deviceless = "of the access tokens, 1 had no device";
    let out = synapse.syn2mas(&config, &["migrate", "--dry-run"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("rolled back; it would import: 2 users"), "{report}");
    assert!(report.contains(counts) && report.contains(deviceless), "the dry run counts it: {report}");
    assert_eq!(count(&Connection::open(&db_path).unwrap(), "SELECT COUNT(*) FROM compat_sessions"), 0);

    let out = synapse.syn2mas(&config, &["migrate"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains(counts) && report.contains(deviceless), "{report}");
    assert!(!report.contains("warning"), "{report}");
    let db = Connection::open(&db_path).unwrap();
    let (sessions, deviceless): (i64, i64) = db
        .query_row("SELECT COUNT(*), COUNT(*) - COUNT(device_id) FROM compat_sessions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((sessions, deviceless), (2, 1), "erin's token is not imported: she was deactivated");
    let row: (String, bool, i64, Option<i64>, Option<String>) = db
        .query_row(
            "SELECT u.username, s.is_synapse_admin, s.created_at, s.last_active_at, s.human_name
             FROM compat_sessions s JOIN users u USING (user_id) WHERE s.device_id IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        ("alice".into(), false, 1_700_000_100, None, None),
        "dated by the token's last validation, never Synapse admin (MAS's rule)"
    );
    drop(db);

    let app = helpers::spawn_app_in(dir, &appliance_patch()).await;
    let phone = flows::introspect(&app, "syt_YWxpY2U_phone_token_0001").await;
    assert_eq!(phone["active"], true, "{phone}");
    assert_eq!(phone["device_id"], "ALICEPHONE", "{phone}");
    assert!(phone["scope"].as_str().unwrap().contains("urn:synapse:admin:*"), "alice was a Synapse admin: {phone}");
    // As MAS answers a device-less compat session, with and without X-MAS-Supports-Device-Id.
    for header in [true, false] {
        let deviceless =
            flows::introspect_with(&app, "syt_YWxpY2U_deviceless_0002", Some("access_token"), header).await;
        assert_eq!(deviceless["active"], true, "{deviceless}");
        assert_eq!((&deviceless["username"], &deviceless["client_id"]), (&json!("alice"), &json!("legacy")));
        assert_eq!(deviceless["token_type"], "access_token", "{deviceless}");
        assert!(deviceless.get("device_id").is_none(), "no device to name: {deviceless}");
        let scope: Vec<&str> = deviceless["scope"].as_str().unwrap().split(' ').collect();
        assert!(scope.contains(&"urn:matrix:org.matrix.msc2967.client:api:*"), "{deviceless}");
        assert!(scope.contains(&"urn:matrix:client:api:*"), "{deviceless}");
        assert!(scope.iter().all(|s| !s.contains(":device:") && !s.starts_with("urn:synapse:admin")), "{deviceless}");
    }
    let erin = flows::introspect(&app, "syt_ZXJpbg_deactivated_0003").await;
    assert_eq!(erin["active"], false, "{erin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_user_links_upstream_accounts_and_refuses_bad_mappings_before_creating_anyone() {
    let app = helpers::spawn_app_with(&appliance_patch()).await;
    let cli = |args: &[&str]| {
        let mut all = vec!["manage", "register-user", "--skip-homeserver-check", "--no-password"];
        all.extend_from_slice(args);
        tokio::task::block_in_place(|| run_cli(&app.config_path, &all))
    };
    let users = || count(&Connection::open(&app.db_path).unwrap(), "SELECT COUNT(*) FROM users");

    let mapping = format!("{}:gh-dana", GITHUB.to_lowercase());
    let out = cli(&["dana", "--upstream-provider-mapping", &mapping]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.contains(&format!("linked upstream {GITHUB}:gh-dana")), "{report}");
    let link = app
        .state
        .store
        .read(|c| appliance::store::upstream::link_by_subject(c, GITHUB, "gh-dana"))
        .await
        .unwrap()
        .expect("dana's link");
    let dana = app.state.store.read(|c| appliance::store::users::by_username(c, "dana")).await.unwrap().unwrap();
    assert_eq!(link.user_id.as_deref(), Some(dana.id.as_str()));
    assert_eq!(users(), 1);

    for (args, refusal) in [
        (vec!["erin", "--upstream-provider-mapping", &format!("{GITHUB}:gh-dana")], "already linked to dana"),
        (vec!["erin", "--upstream-provider-mapping", "01J5SYNAPSEGTHB00000000009:x"], "no upstream provider"),
        (vec!["erin", "--upstream-provider-mapping", "github:x"], "is not a provider id"),
        (vec!["erin", "--upstream-provider-mapping", "no-colon"], "expected PROVIDER_ID:SUBJECT"),
    ] {
        let out = cli(&args);
        let report = text(&out);
        assert!(!out.status.success() && report.contains(refusal), "{args:?}: {report}");
        assert_eq!(users(), 1, "{args:?} created a user before refusing: {report}");
    }
}
