//! A password imported from Synapse signs in through the real sign-in page in headless Chromium
//! during an OAuth authorization-code flow (issue 13): the bcrypt hash (pepper appended, NFKC) is
//! verified, re-hashed with argon2id at that first sign-in, and the same password works after.

use rusqlite::Connection;

use crate::browser::{Callback, Chrome};
use crate::flows::{self, PUBLIC_CLIENT};
use crate::helpers;
use crate::syn2mas_fixture::{SynapseDb, appliance_patch, text};

/// What alice chose under Synapse: a ligature and a Roman numeral, which Synapse normalised
/// (NFKC) to what she types now.
const AS_CHOSEN: &str = "\u{FB01}sh \u{2168} battery staple";
const AS_TYPED: &str = "fish IX battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_bcrypt_password_signs_in_through_oauth_in_chromium_and_becomes_argon2id() {
    let dir = helpers::tempdir();
    let synapse = SynapseDb::create(dir.path());
    synapse.user("alice", Some(AS_CHOSEN), false);
    let patch = format!("{}{}", appliance_patch(), flows::clients_patch());
    let config = helpers::write_test_config(dir.path(), &patch);
    let out = synapse.syn2mas(&config, &["migrate"]);
    assert!(out.status.success(), "{}", text(&out));

    let app = helpers::spawn_app_in(dir, &patch).await;
    let hash = || -> (String, i64) {
        Connection::open(&app.db_path)
            .unwrap()
            .query_row(
                "SELECT p.hashed_password, p.version FROM user_passwords p JOIN users u USING (user_id)
                 WHERE u.username = 'alice'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let (imported, version) = hash();
    assert!(imported.starts_with("$2b$04$") && version == 1, "the imported hash: {imported} v{version}");

    let chrome = Chrome::start("syn2mas").await;
    let callback = Callback::start();
    let redirect_uri = format!("http://127.0.0.1:{}/callback", callback.port);
    let pkce = flows::pkce();
    let authorize = url::Url::parse_with_params(
        &app.url("/authorize"),
        [
            ("response_type", "code"),
            ("client_id", PUBLIC_CLIENT),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "openid urn:matrix:org.matrix.msc2967.client:api:*"),
            ("state", "syn2mas-state"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("authorize url");
    chrome.goto(authorize.as_str()).await;
    chrome.expect_path("/login").await;
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", AS_TYPED).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.expect_path("/consent/").await;
    chrome.click("button[name=decision][value=allow]").await;
    let back = chrome.url().await;
    assert_eq!(back.port(), Some(callback.port), "{back}");
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("syn2mas-state"));
    let code = params.get("code").unwrap_or_else(|| panic!("no code in {back}"));
    let res = app
        .client
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("client_id", PUBLIC_CLIENT),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the code exchange");
    let tokens: serde_json::Value = res.json().await.unwrap();
    let seen = flows::introspect(&app, tokens["access_token"].as_str().expect("access token")).await;
    assert_eq!(seen["username"], "alice", "{seen}");

    let (upgraded, version) = hash();
    assert!(upgraded.starts_with("$argon2id$") && version == 2, "after the first sign-in: {upgraded} v{version}");

    // Signed out, the same password signs in again: the argon2id hash verifies it too.
    chrome.goto(&app.url("/account/")).await;
    chrome.click("form[action='/logout'] button").await;
    chrome.expect_path("/login").await;
    chrome.fill("#username", "alice").await;
    chrome.fill("#password", AS_TYPED).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.expect_path("/account/").await;
    assert_eq!(hash().0, upgraded, "hashed once, not at every sign-in");
}
