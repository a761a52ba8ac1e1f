//! Sign in with an upstream OpenID Provider (issue 14), end to end: a real provider
//! (panva/oidc-provider from npm, tests/e2e/oidc/, installed by tests/e2e/setup.sh), real Synapse
//! behind nginx, headless Chromium. One Synapse, one provider, one browser for the whole walk.
//!
//! Providers configured here (MAS's keys):
//! - "Upstream ID": client_secret_basic, query response mode, username required from the claims,
//!   display name and email suggested, `on_backchannel_logout: logout_all`;
//! - "Second ID": form_post + private_key_jwt (signed with the appliance's own keys, which the
//!   provider fetches from /oauth2/keys.json), userinfo fetched;
//! - "Tampered ID": its token endpoint is a proxy that alters the ID token's payload.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::browser::Chrome;
use crate::e2e_synapse::{Env, PASSWORD, blocking};
use crate::synapse_harness::{self as harness, SynapseMode};

const P1: &str = "01JXPSTREAM000000000000001";
const P2: &str = "01JXPSTREAM000000000000002";
const P3: &str = "01JXPSTREAM000000000000003";

/// The provider process; killed on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    fn start(port: u16, clients: Value) -> Provider {
        let dir = harness::e2e_dir().join("oidc-provider");
        assert!(dir.join("node_modules/oidc-provider").exists(), "oidc-provider is not installed in {}", dir.display());
        // The script must sit beside node_modules to resolve the package.
        let script = dir.join(format!("provider-{}.mjs", std::process::id()));
        std::fs::copy(crate::helpers::repo_root().join("tests/e2e/oidc/provider.mjs"), &script)
            .expect("copy provider.mjs");
        let issuer = format!("http://127.0.0.1:{port}");
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(&dir)
            .env("OP_PORT", port.to_string())
            .env("OP_ISSUER", &issuer)
            .env("OP_CLIENTS", clients.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        // Wait for its "listening" line.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[oidc-provider] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.starts_with("listening") => break,
                Ok(_) => {}
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("oidc-provider exited: {status}");
                    }
                    assert!(Instant::now() < deadline, "oidc-provider did not start");
                }
            }
        }
        Provider { child, issuer }
    }
}

/// A token endpoint in front of the provider's that changes `preferred_username` in the ID
/// token's payload and keeps the signature: a forged identity.
async fn tampering_proxy(token_endpoint: String) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/token",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let token_endpoint = token_endpoint.clone();
            async move {
                let mut req = reqwest::Client::new()
                    .post(&token_endpoint)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
                if let Some(auth) = headers.get("authorization") {
                    req = req.header("authorization", auth.to_str().unwrap_or_default());
                }
                let mut v: Value = req.send().await.unwrap().json().await.unwrap();
                let id_token = v["id_token"].as_str().unwrap_or_default().to_string();
                let parts: Vec<&str> = id_token.split('.').collect();
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
                payload["preferred_username"] = json!("admin");
                let forged = format!("{}.{}.{}", parts[0], b64.encode(payload.to_string()), parts[2]);
                v["id_token"] = json!(forged);
                axum::Json(v)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/token")
}

fn providers_yaml(op: &str, proxy: &str) -> String {
    format!(
        r#"
upstream_oauth2:
  providers:
    - id: {P1}
      human_name: Upstream ID
      issuer: "{op}"
      client_id: appliance-basic
      client_secret: "basic-secret-for-tests"
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile email"
      on_backchannel_logout: logout_all
      claims_imports:
        localpart: {{action: require}}
        displayname: {{action: suggest}}
        email: {{action: suggest}}
        account_name: {{template: "@{{{{ user.preferred_username }}}}"}}
    - id: {P2}
      human_name: Second ID
      issuer: "{op}"
      client_id: appliance-pkjwt
      token_endpoint_auth_method: private_key_jwt
      token_endpoint_auth_signing_alg: RS256
      response_mode: form_post
      fetch_userinfo: true
      scope: "openid profile email"
      claims_imports:
        localpart: {{action: suggest}}
    - id: {P3}
      human_name: Tampered ID
      issuer: "{op}"
      discovery_mode: disabled
      authorization_endpoint: "{op}/auth"
      token_endpoint: "{proxy}"
      jwks_uri: "{op}/jwks"
      client_id: appliance-tampered
      client_secret: "tampered-secret-for-tests"
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile"
"#
    )
}

async fn wait_for_path(chrome: &Chrome, prefix: &str) {
    let start = Instant::now();
    while !chrome.path().await.starts_with(prefix) {
        if start.elapsed() > Duration::from_secs(20) {
            panic!("never reached {prefix}: on {}:\n{}", chrome.path().await, chrome.text().await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    chrome.settle().await;
}

/// Signs in on the provider's own (development) login form, if it asks.
async fn provider_login(chrome: &Chrome, op: &str, login: &str) {
    let start = Instant::now();
    loop {
        let url = chrome.url().await.to_string();
        if !url.starts_with(op) {
            return;
        }
        if chrome.client.find(fantoccini::Locator::Css("input[name=login]")).await.is_ok() {
            chrome.fill("input[name=login]", login).await;
            chrome.fill("input[name=password]", "anything").await;
            chrome.click("button[type=submit]").await;
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "stuck at the provider on {url}:\n{}", chrome.text().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_out(chrome: &Chrome) {
    chrome.click("form[action='/logout'] button").await;
    wait_for_path(chrome, "/login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sign_in_against_a_real_provider_and_synapse() {
    blocking(harness::ensure_installed);
    let op_port = harness::free_port();
    let op = format!("http://127.0.0.1:{op_port}");
    let proxy = tampering_proxy(format!("{op}/token")).await;
    let env = Env::start_with(SynapseMode::Modern, &providers_yaml(&op, &proxy)).await;
    let app = env.app.url("");
    let app = app.trim_end_matches('/');
    let clients = json!([
        {
            "client_id": "appliance-basic", "client_secret": "basic-secret-for-tests",
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [format!("{app}/upstream/callback/{P1}")],
            "backchannel_logout_uri": format!("{app}/upstream/backchannel-logout/{P1}"),
            "backchannel_logout_session_required": true,
        },
        {
            "client_id": "appliance-pkjwt", "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks_uri": format!("{app}/oauth2/keys.json"),
            "redirect_uris": [format!("{app}/upstream/callback/{P2}")],
        },
        {
            "client_id": "appliance-tampered", "client_secret": "tampered-secret-for-tests",
            "token_endpoint_auth_method": "client_secret_basic",
            "redirect_uris": [format!("{app}/upstream/callback/{P3}")],
        },
    ]);
    let provider = blocking(|| Provider::start(op_port, clients));
    assert_eq!(provider.issuer, op);
    let chrome = Chrome::start("upstream").await;

    // 1. First sign-in creates the user: the claims are shown, the user lands in Synapse.
    env.step("first sign-in through the provider");
    chrome.goto(&env.app.url("/login")).await;
    chrome.shoot("login-with-providers").await;
    chrome.click(&format!("a[href^='/upstream/authorize/{P1}']")).await;
    provider_login(&chrome, &op, "carol").await;
    wait_for_path(&chrome, "/upstream/link/").await;
    let text = chrome.text().await;
    assert!(text.contains("@carol:localhost"), "{text}");
    assert!(text.contains("Carol Upstream") && text.contains("carol@upstream.test"), "{text}");
    chrome.shoot("upstream-create-account").await;
    chrome.click("#create-account").await;
    wait_for_path(&chrome, "/account/").await;
    chrome.shoot("account-after-upstream-sign-up").await;
    let (status, user) = env.synapse_user("carol").await;
    assert_eq!(status, 200, "carol is not in Synapse: {user}{}", env.logs());
    assert_eq!(user["display_name"], "Carol Upstream", "{user}");
    assert!(chrome.text().await.contains("@carol"), "account name of the link");

    // 2. Second sign-in reuses the link: no questions, straight to the account.
    env.step("second sign-in reuses the link");
    sign_out(&chrome).await;
    chrome.click(&format!("a[href^='/upstream/authorize/{P1}']")).await;
    provider_login(&chrome, &op, "carol").await;
    wait_for_path(&chrome, "/account/").await;
    assert!(chrome.text().await.contains("@carol:localhost"));

    // 3. Linking to an existing password user from the account page, through the form_post +
    //    private_key_jwt provider.
    env.step("link an upstream account to a password user (form_post, private_key_jwt)");
    sign_out(&chrome).await;
    env.register("dave", &[]);
    chrome.fill("#username", "dave").await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    wait_for_path(&chrome, "/account/").await;
    chrome.click(&format!("a[href^='/upstream/authorize/{P2}']")).await;
    provider_login(&chrome, &op, "carol").await;
    wait_for_path(&chrome, "/upstream/link/").await;
    chrome.shoot("upstream-suggest-link").await;
    chrome.click("#link-account").await;
    wait_for_path(&chrome, "/account/").await;
    let text = chrome.text().await;
    assert!(text.contains("Second ID") && text.contains("@dave:localhost"), "{text}");
    chrome.shoot("account-linked-accounts").await;

    // 4. A tampered ID token is refused with a page saying so.
    env.step("tampered ID token");
    chrome.click(&format!("a[href^='/upstream/authorize/{P3}']")).await;
    provider_login(&chrome, &op, "carol").await;
    wait_for_path(&chrome, "/upstream/callback/").await;
    let text = chrome.text().await;
    assert!(text.contains("invalid identity"), "{text}");
    chrome.shoot("upstream-error-tampered-id-token").await;

    // 5. Back-channel logout: carol signs in again through "Upstream ID", then signs out at the
    //    provider; the provider tells the appliance, which ends her browser session.
    env.step("back-channel logout");
    chrome.goto(&env.app.url("/account/")).await;
    sign_out(&chrome).await;
    chrome.click(&format!("a[href^='/upstream/authorize/{P1}']")).await;
    provider_login(&chrome, &op, "carol").await;
    wait_for_path(&chrome, "/account/").await;
    chrome.goto(&format!("{op}/session/end")).await;
    chrome.click("button[value=yes]").await;
    let start = Instant::now();
    loop {
        chrome.goto(&env.app.url("/account/")).await;
        if chrome.path().await.starts_with("/login") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the browser session survived the back-channel logout");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(provider);
}
