//! A user's whole lifecycle against real Synapse, in both modes (issue 19): lock and unlock,
//! display-name change, cross-signing reset, "sign out everywhere" by password recovery,
//! deactivation and reactivation, a `manage issue-compatibility-token` token, and a name taken in
//! Synapse but unknown here — each checked by Synapse's own view (its admin API or
//! `/_synapse/mas/query_user`, its database, and whether it accepts the tokens).
//!
//! One Synapse per mode for all of it: starting Synapse is the expensive part.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::e2e_synapse::{Env, PASSWORD, access_token, refresh_token, scope};
use crate::email::{Smtp, smtp_config};
use crate::flows::{self, csrf_of};
use crate::synapse_harness::SynapseMode;

const NEW_PASSWORD: &str = "a brand new passphrase for bob";

/// Registration, recovery and mail on; the rest as `Env` sets it.
fn config(smtp_port: u16) -> String {
    format!(
        "account:\n  password_registration_enabled: true\n  password_registration_email_required: false\n  password_recovery_enabled: true\n{}\n",
        smtp_config(smtp_port)
    )
}

impl Env {
    /// `users.locked` in Synapse's database (both versions store the flag there).
    fn synapse_locked(&self, localpart: &str) -> bool {
        let sql = format!("SELECT locked FROM users WHERE name = '{}'", self.synapse.user_id(localpart));
        let row = crate::e2e_synapse::blocking(|| self.synapse.query_db(&sql))
            .unwrap_or_else(|e| panic!("query_db({sql}): {e}"));
        match row.trim() {
            "1" | "True" => true,
            "0" | "False" | "" => false,
            other => panic!("users.locked is {other:?}"),
        }
    }

    /// Synapse's display name and deactivation flag for the user (query_user or the admin API).
    async fn synapse_profile(&self, localpart: &str) -> (Option<String>, bool) {
        let (status, user) = self.synapse_user(localpart).await;
        assert_eq!(status, 200, "{localpart} in Synapse: {user}{}", self.logs());
        let (name, deactivated) = match self.mode {
            SynapseMode::Modern => (&user["display_name"], &user["is_deactivated"]),
            SynapseMode::Legacy => (&user["displayname"], &user["deactivated"]),
        };
        (name.as_str().map(String::from), deactivated.as_bool().unwrap_or_else(|| panic!("{user}")))
    }

    /// A compat password login through nginx: status and body.
    async fn compat_login(&self, localpart: &str, password: &str, device: &str) -> (StatusCode, Value) {
        self.send(self.http.post(self.nginx.url("/_matrix/client/v3/login")).json(&json!({
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
            "password": password, "device_id": device, "refresh_token": true,
        })))
        .await
    }

    /// Uploads a new random master cross-signing key with `token` through nginx.
    async fn upload_master_key(&self, token: &str, localpart: &str) -> (StatusCode, Value) {
        let key = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode((&appliance::rng::OsRng as &dyn appliance::rng::Rng).alnum(32));
        let body = json!({"master_key": {"user_id": self.synapse.user_id(localpart), "usage": ["master"],
            "keys": {format!("ed25519:{key}"): key}}});
        let url = self.nginx.url("/_matrix/client/v3/keys/device_signing/upload");
        self.send(self.http.post(url).bearer_auth(token).json(&body)).await
    }

    /// `POST path` as the signed-in `browser` with the CSRF token of `page` and `fields`.
    async fn account_post(&self, browser: &reqwest::Client, page: &str, path: &str, fields: &[(&str, &str)]) -> u16 {
        let html = browser.get(self.app.url(page)).send().await.unwrap().text().await.unwrap();
        let csrf = csrf_of(&html);
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let res = browser.post(self.app.url(path)).form(&form).send().await.unwrap();
        let status = res.status().as_u16();
        assert!(status < 400, "POST {path}: {status} {}{}", res.text().await.unwrap(), self.logs());
        status
    }
}

async fn user_lifecycle(mode: SynapseMode) {
    let smtp = Smtp::start();
    let env = Env::start_with(mode, &config(smtp.port)).await;
    env.register("bob", &["--display-name", "Bob", "--email", "bob@example.org"]);
    assert_eq!(env.synapse_profile("bob").await, (Some("Bob".into()), false));

    // Lock: Synapse's flag is set, sign-in is refused; unlock clears it and sign-in works.
    env.step("lock-user bob");
    let (status, before_lock) = env.compat_login("bob", PASSWORD, "BOBCOMPAT1").await;
    assert_eq!(status, 200, "{before_lock}");
    assert!(!env.synapse_locked("bob"));
    env.cli_ok(&["manage", "lock-user", "bob"]);
    assert!(env.synapse_locked("bob"), "Synapse does not have bob locked{}", env.logs());
    assert_eq!(env.introspect(&access_token(&before_lock)).await["active"], false);
    let (status, body) = env.compat_login("bob", PASSWORD, "BOBCOMPAT2").await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (401, Some("M_USER_LOCKED")), "{body}");
    env.step("unlock-user bob");
    env.cli_ok(&["manage", "unlock-user", "bob"]);
    assert!(!env.synapse_locked("bob"), "Synapse still has bob locked{}", env.logs());
    let (status, compat) = env.compat_login("bob", PASSWORD, "BOBCOMPAT2").await;
    assert_eq!(status, 200, "{compat}");
    env.expect_whoami(&access_token(&compat), "bob", "BOBCOMPAT2").await;

    // Display name: changed on the account page, Synapse has the new one.
    env.step("display name from the account page");
    let browser = flows::signed_in(&env.app, "bob", PASSWORD).await;
    env.account_post(&browser, "/account/", "/account/profile", &[("display_name", "Bobby Tables")]).await;
    assert_eq!(env.synapse_profile("bob").await.0.as_deref(), Some("Bobby Tables"), "{}", env.logs());

    // Cross-signing reset: replacing the master key is refused until the account page allows it.
    env.step("cross-signing reset");
    let oauth = flows::code_login(&env.app, "bob", PASSWORD, &scope("BOBOAUTH01", "")).await;
    let token = access_token(&oauth);
    env.expect_whoami(&token, "bob", "BOBOAUTH01").await;
    let (status, body) = env.upload_master_key(&token, "bob").await;
    assert_eq!(status, 200, "first cross-signing upload: {body}{}", env.logs());
    let (status, body) = env.upload_master_key(&token, "bob").await;
    assert_ne!(status, 200, "Synapse let the keys be replaced without approval: {body}");
    env.step(&format!("replacement before approval: {status} {body}"));
    env.account_post(&browser, "/account/", "/account/cross-signing-reset", &[("password", PASSWORD)]).await;
    let (status, body) = env.upload_master_key(&token, "bob").await;
    assert_eq!(status, 200, "replacement after the account page allowed it: {body}{}", env.logs());

    sign_out_everywhere(&env, &smtp, &compat, &oauth).await;

    // Deactivation on the account page: Synapse deactivates the user; reactivation undoes it.
    env.step("deactivate on the account page");
    let browser = flows::signed_in(&env.app, "bob", NEW_PASSWORD).await;
    let (status, compat) = env.compat_login("bob", NEW_PASSWORD, "BOBCOMPAT3").await;
    assert_eq!(status, 200, "{compat}");
    env.account_post(&browser, "/account/", "/account/deactivate", &[("password", NEW_PASSWORD), ("confirm", "yes")])
        .await;
    assert!(env.synapse_profile("bob").await.1, "Synapse does not have bob deactivated{}", env.logs());
    assert!(env.synapse_devices("bob").is_empty(), "devices left after deactivation{}", env.logs());
    let (status, body) = env.whoami(&access_token(&compat)).await;
    assert_eq!(status, 401, "Synapse accepts a deactivated user's token: {body}");
    let (status, body) = env.compat_login("bob", NEW_PASSWORD, "BOBCOMPAT4").await;
    assert_eq!((status.as_u16(), body["errcode"].as_str()), (403, Some("M_USER_DEACTIVATED")), "{body}");

    env.step("unlock-user --reactivate bob");
    env.cli_ok(&["manage", "unlock-user", "bob", "--reactivate"]);
    assert!(!env.synapse_profile("bob").await.1, "Synapse still has bob deactivated{}", env.logs());
    let (status, compat) = env.compat_login("bob", NEW_PASSWORD, "BOBCOMPAT4").await;
    assert_eq!(status, 200, "{compat}");
    env.expect_whoami(&access_token(&compat), "bob", "BOBCOMPAT4").await;

    // A long-lived compatibility token from the CLI: Synapse accepts it with its device.
    env.step("issue-compatibility-token bob BOBBOTDEV1");
    let issued = env.cli_ok(&["manage", "issue-compatibility-token", "bob", "BOBBOTDEV1"]);
    let issued = issued.trim();
    assert!(issued.starts_with("mct_"), "{issued}");
    env.expect_whoami(issued, "bob", "BOBBOTDEV1").await;
    assert!(env.synapse_devices("bob").contains(&"BOBBOTDEV1".to_string()), "{}", env.logs());

    taken_in_synapse_only(&env).await;
    code_reuse_and_refresh_replay(&env).await;
    env.step("done");
}

/// A reused authorization code, and a refresh token replayed after its successor was used, end
/// the session: Synapse loses the device and refuses the token (it had seen it: modern Synapse
/// drops the cached answer with the device).
async fn code_reuse_and_refresh_replay(env: &Env) {
    env.step("authorization code reused");
    env.register("dave", &[]);
    let (params, p) = flows::authorize_code(
        &env.app,
        flows::PUBLIC_CLIENT,
        flows::REDIRECT,
        &scope("DAVEREUSE1", ""),
        &[],
        ("dave", PASSWORD),
    )
    .await;
    let exchange =
        || flows::exchange_code(&env.app, flows::PUBLIC_CLIENT, flows::REDIRECT, &params["code"], &p.verifier);
    let res = exchange().await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    let token = access_token(&tokens);
    env.expect_whoami(&token, "dave", "DAVEREUSE1").await;
    let res = exchange().await;
    assert_eq!(res.status(), 400, "a reused code");
    assert!(env.synapse_devices("dave").is_empty(), "the device outlived the code reuse{}", env.logs());
    if env.mode == SynapseMode::Modern {
        let (status, body) = env.whoami(&token).await;
        assert_eq!(status, 401, "Synapse accepts the token of a reused code: {body}");
    }
    let res = flows::refresh(&env.app, &refresh_token(&tokens)).await;
    assert_eq!(res.status(), 400, "the refresh token outlived the code reuse");

    // A refresh token presented again after its successor was used ends the session.
    env.step("refresh token replayed");
    let tokens = flows::code_login(&env.app, "dave", PASSWORD, &scope("DAVEREPLAY", "")).await;
    let current = env.refresh(&refresh_token(&tokens)).await;
    let token = access_token(&current);
    env.expect_whoami(&token, "dave", "DAVEREPLAY").await;
    let res = flows::refresh(&env.app, &refresh_token(&tokens)).await;
    assert_eq!(res.status(), 400, "a replayed refresh token");
    assert!(env.synapse_devices("dave").is_empty(), "the device outlived the replay{}", env.logs());
    if env.mode == SynapseMode::Modern {
        let (status, body) = env.whoami(&token).await;
        assert_eq!(status, 401, "Synapse accepts a token of a session ended by a replay: {body}");
    }
    let res = flows::refresh(&env.app, &refresh_token(&current)).await;
    assert_eq!(res.status(), 400, "the current refresh token outlived the replay");
}

/// Password recovery with "sign out everywhere": every session's device goes from Synapse, and
/// Synapse refuses the tokens — in legacy mode (whose cache keeps a token it has seen for 2
/// minutes) the ones it has not seen yet; in modern mode all of them.
async fn sign_out_everywhere(env: &Env, smtp: &Smtp, compat: &Value, oauth: &Value) {
    env.step("recovery: sign out everywhere");
    // Fresh access tokens Synapse has never seen (refresh mints them).
    let unseen_compat = {
        let (status, body) = env
            .send(
                env.http
                    .post(env.nginx.url("/_matrix/client/v3/refresh"))
                    .json(&json!({"refresh_token": refresh_token(compat)})),
            )
            .await;
        assert_eq!(status, 200, "compat refresh: {body}");
        access_token(&body)
    };
    let unseen_oauth = access_token(&env.refresh(&refresh_token(oauth)).await);
    let seen = [access_token(compat), access_token(oauth)];
    assert_eq!(env.synapse_devices("bob"), ["BOBCOMPAT1", "BOBCOMPAT2", "BOBOAUTH01"], "{}", env.logs());

    let client = env.app.new_client();
    let html = client.get(env.app.url("/recover")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    let res = client.post(env.app.url("/recover")).form(&[("csrf", csrf.as_str()), ("email", "bob@example.org")]);
    assert_eq!(res.send().await.unwrap().status(), 200);
    let mail = smtp.wait_for(1).await;
    let text = mail["text"].as_str().expect("text part");
    let link = text.split_whitespace().find(|w| w.contains("/recover/")).expect("a link").to_string();
    let link = link.strip_prefix(&env.app.base).expect("a link to the appliance").to_string();
    let res = client
        .post(env.app.url(&link))
        .form(&[
            ("csrf", csrf.as_str()),
            ("new_password", NEW_PASSWORD),
            ("new_password_confirm", NEW_PASSWORD),
            ("end_sessions", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("signed out"));

    assert!(env.synapse_devices("bob").is_empty(), "devices left after recovery{}", env.logs());
    for token in [&unseen_compat, &unseen_oauth] {
        assert_eq!(env.introspect(token).await["active"], false);
        let (status, body) = env.whoami(token).await;
        assert_eq!(status, 401, "Synapse accepts a signed-out token: {body}{}", env.logs());
    }
    if env.mode == SynapseMode::Modern {
        for token in &seen {
            let (status, body) = env.whoami(token).await;
            assert_eq!(status, 401, "Synapse accepts a signed-out token it had seen: {body}");
        }
    }
}

/// A name Synapse has but the appliance does not: refused by `register-user` and by the
/// registration page, and nothing is created here.
async fn taken_in_synapse_only(env: &Env) {
    env.step("a name taken in Synapse only");
    let (status, body) = match env.mode {
        SynapseMode::Modern => {
            let url = env.synapse.url("/_synapse/mas/provision_user");
            env.send(env.http.post(url).bearer_auth(&env.secret).json(&json!({"localpart": "carol"}))).await
        }
        SynapseMode::Legacy => {
            let url = env.synapse.url(&format!("/_synapse/admin/v2/users/{}", env.synapse.user_id("carol")));
            env.send(env.http.put(url).bearer_auth(&env.secret).json(&json!({"displayname": "Carol"}))).await
        }
    };
    assert_eq!(status, 201, "creating carol in Synapse: {body}");

    let out = env.cli(&["manage", "register-user", "carol", "--password", PASSWORD]);
    assert!(!out.status.success(), "register-user made carol: {}", crate::e2e_synapse::cli_text(&out));
    let browser = env.app.new_client();
    let html = browser.get(env.app.url("/register")).send().await.unwrap().text().await.unwrap();
    let strong = "correct horse battery staple wombat";
    let form = [
        ("csrf", csrf_of(&html)),
        ("username", "carol".into()),
        ("password", strong.into()),
        ("password_confirm", strong.into()),
    ];
    let res = browser.post(env.app.url("/register")).form(&form).send().await.unwrap();
    let status = res.status();
    let html = res.text().await.unwrap();
    assert_eq!(status, 400, "the registration page for a name taken in Synapse:\n{html}");
    assert!(html.contains("id=\"username-error\"") && html.contains("taken"), "{html}");
    assert!(appliance::lifecycle::users::find(&env.app.state.store, "carol").await.is_err(), "carol was created here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_user_lifecycle_against_synapse() {
    user_lifecycle(SynapseMode::Modern).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_user_lifecycle_against_synapse() {
    user_lifecycle(SynapseMode::Legacy).await;
}
