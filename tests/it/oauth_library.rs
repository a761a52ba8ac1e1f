//! The provider driven by Authlib (Python), an OAuth 2.0 / OIDC client library not written here.

use crate::flows::*;
use crate::helpers::spawn_app_with;
use crate::synapse_harness::{SynapseMode, ensure_installed, python_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_walks_every_grant() {
    tokio::task::spawn_blocking(ensure_installed).await.unwrap();
    let app = spawn_app_with(&clients_patch()).await;
    register_user(&app, "carol", "a long enough password", false).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/oauth_client.py");
    let mut cmd = python_command(SynapseMode::Modern);
    cmd.args([
        script,
        &app.base,
        PUBLIC_CLIENT,
        REDIRECT,
        "carol",
        "a long enough password",
        CONFIDENTIAL_CLIENT,
        CONFIDENTIAL_SECRET,
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "authlib walk failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["has_refresh_token"], true);
    assert_eq!(v["userinfo"]["username"], "carol");
    assert_eq!(v["userinfo"]["sub"], v["id_token_sub"]);
    assert_eq!(v["refreshed"], true);
    assert_eq!(v["old_refresh_after_use"], 400);
    assert_eq!(v["introspected_active"], true);
    assert_eq!(v["introspected_username"], "carol");
    assert_eq!(v["client_credentials_token"], true);
    assert_eq!(v["revoke_status"], 200);
    assert_eq!(v["active_after_revoke"], false);
}
