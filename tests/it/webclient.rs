//! Browser apps on their own origin (issue 12), in headless Chromium against the real binary,
//! real Synapse 1.163.2 and nginx. The page (tests/e2e/webclient/, bundled by
//! tests/e2e/webclient.sh) is served on a third origin and runs:
//! - Element Web's sign-in: matrix-js-sdk's discovery through the homeserver, `registerOidcClient`,
//!   `generateOidcAuthorizationUrl`, `completeAuthorizationCodeGrant`, `OidcTokenRefresher`, and
//!   oidc-client-ts's revocation for logout;
//! - a legacy client: `/login` flows, password login, whoami and `/logout` through nginx;
//! - element-admin: registration as a `web` client asking for `urn:mas:admin`, an admin's consent,
//!   admin API calls (reads and a write) and revocation.
//!
//! One appliance, Synapse, nginx and Chromium serve the three walks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::browser::Chrome;
use crate::e2e_synapse::Env;
use crate::synapse_harness::{self as harness, SynapseMode};

const PASSWORD: &str = "correct horse battery staple";
const API_SCOPE: &str = "urn:matrix:org.matrix.msc2967.client:api:*";

/// The appliance with the admin API on, and dynamic registration accepting the page's
/// `http://127.0.0.1:<port>/` URIs (MAS's `allow_insecure_uris`).
const CONFIG: &str = r#"http:
  listeners:
    - name: web
      resources: [{name: discovery}, {name: human}, {name: oauth}, {name: compat}, {name: assets}, {name: adminapi}]
      binds: [{address: "127.0.0.1:$PORT"}]
policy:
  data:
    client_registration:
      allow_insecure_uris: true
"#;

/// Serves the bundled page on its own origin: `/bundle.js`, and `index.html` for every other path
/// (`/`, `/callback`).
async fn serve_page(dist: PathBuf) -> SocketAddr {
    let index = std::fs::read_to_string(dist.join("index.html")).expect("webclient index.html (run setup.sh)");
    let bundle = std::fs::read(dist.join("bundle.js")).expect("webclient bundle.js (run setup.sh)");
    let app = Router::new()
        .route(
            "/bundle.js",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "text/javascript")], bundle) }),
        )
        .fallback(move || async move { axum::response::Html(index).into_response() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the page server");
    let addr = listener.local_addr().expect("page address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Runs `window.walk[name](...args)` in the page and returns its report.
async fn walk(chrome: &Chrome, name: &str, args: Value) -> Value {
    let script = "const done = arguments[arguments.length - 1];\
                  window.walk[arguments[0]](...arguments[1]).then(done, (e) => done({error: String(e)}));";
    let report = match chrome.client.execute_async(script, vec![json!(name), args]).await {
        Ok(report) => report,
        Err(e) => panic!("walk.{name}: {e}\n{}", chrome.text().await),
    };
    assert!(report.get("error").is_none(), "walk.{name} failed: {report:#}");
    report
}

async fn open_page(chrome: &Chrome, url: &str) {
    chrome.goto(url).await;
    chrome.settle().await;
    let status = chrome.find("#status").await.text().await.expect("status text");
    assert_eq!(status, "ready", "the page did not start on {url}");
}

/// Signs in on the appliance's login page and allows the consent; the browser then goes back to
/// the page's origin.
async fn sign_in_and_consent(chrome: &Chrome, username: &str, client_name: &str) {
    chrome.expect_path("/login").await;
    chrome.fill("#username", username).await;
    chrome.fill("#password", PASSWORD).await;
    chrome.click("form[action='/login'] button[type=submit]").await;
    chrome.expect_path("/consent/").await;
    assert!(chrome.text().await.contains(client_name), "{}", chrome.text().await);
    chrome.click("button[name=decision][value=allow]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn element_web_legacy_login_and_element_admin_from_another_origin_in_chromium() {
    let dist = tokio::task::block_in_place(harness::ensure_installed).join("webclient").join("dist");
    let env = Env::start_with(SynapseMode::Modern, CONFIG).await;
    let app = &env.app;
    for (name, extra) in [("wendy", None), ("root", Some("--admin"))] {
        let mut args = vec!["manage", "register-user", name, "--password", PASSWORD];
        args.extend(extra);
        let out = tokio::task::block_in_place(|| app.run_cli(&args));
        assert!(out.status.success(), "register-user {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let page = serve_page(dist).await;
    let origin = format!("http://{page}/");
    let hs = env.nginx.base_url.clone();
    assert!(!hs.contains(&page.port().to_string()) && !app.base.contains(&page.port().to_string()));
    let chrome = Chrome::start("webclient").await;
    chrome
        .client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(0)),
        ))
        .await
        .expect("script timeout");

    // 1. Element Web.
    env.step("Element Web: discovery through the homeserver, registration, authorization URL");
    open_page(&chrome, &origin).await;
    let start = walk(&chrome, "elementStart", json!([hs])).await;
    assert_eq!(start["issuer"], app.url("/"), "{start:#}");
    let url = start["url"].as_str().expect("authorization URL");
    assert!(url.starts_with(&app.url("/authorize?")), "{url}");
    chrome.goto(url).await;
    sign_in_and_consent(&chrome, "wendy", "Element (cross-origin test)").await;
    let back = chrome.url().await;
    assert_eq!(back.port(), Some(page.port()), "back on the page: {back}");
    chrome.settle().await;
    env.step("Element Web: code grant, whoami, refresh, logout");
    let report = walk(&chrome, "elementFinish", json!([])).await;
    eprintln!("[webclient] Element Web saw: {report}");
    assert_eq!(report["homeserverUrl"], hs, "{report:#}");
    assert!(report["hasRefreshToken"].as_bool().unwrap_or(false), "{report:#}");
    assert!(report["scope"].as_str().unwrap_or_default().contains(API_SCOPE), "{report:#}");
    assert_eq!(report["whoami"]["status"], 200, "{report:#}");
    assert_eq!(report["whoami"]["body"]["user_id"], env.synapse.user_id("wendy"), "{report:#}");
    let device = report["whoami"]["body"]["device_id"].as_str().expect("device id").to_string();
    assert_eq!(report["refreshed"]["changed"], true, "{report:#}");
    assert_eq!(report["whoamiAfterRefresh"]["status"], 200, "{report:#}");
    assert_eq!(report["whoamiAfterRefresh"]["body"]["device_id"], device.as_str(), "{report:#}");
    assert_eq!(report["whoamiAfterLogout"]["status"], 401, "{report:#}");
    assert_eq!(report["whoamiAfterLogout"]["body"]["errcode"], "M_UNKNOWN_TOKEN", "{report:#}");

    // 2. A legacy client on the same page: password login and logout through nginx.
    env.step("legacy login and logout from the page");
    open_page(&chrome, &origin).await;
    let report = walk(&chrome, "legacy", json!([hs, "wendy", PASSWORD])).await;
    eprintln!("[webclient] legacy login saw: {report}");
    assert!(report["flows"].as_array().expect("flows").contains(&json!("m.login.password")), "{report:#}");
    assert_eq!(report["userId"], env.synapse.user_id("wendy"), "{report:#}");
    assert_eq!(report["whoami"]["user_id"], env.synapse.user_id("wendy"), "{report:#}");
    assert_eq!(report["whoami"]["device_id"], report["deviceId"], "{report:#}");
    assert_eq!(report["whoamiAfterLogout"]["status"], 401, "{report:#}");

    // 3. element-admin: a web client asking for the admin scope; an admin consents (wendy, still
    // signed in to the appliance in this browser, signs out first).
    env.step("element-admin: registration as a web client, admin consent");
    chrome.goto(&app.url("/account/")).await;
    chrome.click("form[action='/logout'] button[type=submit]").await;
    chrome.expect_path("/login").await;
    open_page(&chrome, &origin).await;
    let start = walk(&chrome, "adminStart", json!([hs])).await;
    assert_eq!(start["registration"]["status"], 201, "{start:#}");
    chrome.goto(start["url"].as_str().expect("authorization URL")).await;
    sign_in_and_consent(&chrome, "root", "Element Admin").await;
    let back = chrome.url().await;
    assert_eq!((back.port(), back.path()), (Some(page.port()), "/callback"), "{back}");
    chrome.settle().await;
    env.step("element-admin: token, admin API calls, refresh, revoke");
    let report = walk(&chrome, "adminFinish", json!([])).await;
    eprintln!("[webclient] element-admin saw: {report}");
    assert_eq!(report["stateMatches"], true, "{report:#}");
    assert_eq!(report["token"]["status"], 200, "{report:#}");
    assert!(report["token"]["scope"].as_str().unwrap_or_default().contains("urn:mas:admin"), "{report:#}");
    assert_eq!(report["siteConfig"]["status"], 200, "{report:#}");
    assert_eq!(report["siteConfig"]["body"]["server_name"], "localhost", "{report:#}");
    assert_eq!(report["version"]["status"], 200, "{report:#}");
    assert_eq!(report["users"]["status"], 200, "{report:#}");
    let names: Vec<&str> = report["users"]["body"]["data"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["attributes"]["username"].as_str())
        .collect();
    assert!(names.contains(&"wendy") && names.contains(&"root"), "{report:#}");
    assert_eq!(report["count"]["body"]["meta"]["count"], 2, "{report:#}");
    assert_eq!(report["newToken"]["status"], 201, "{report:#}");
    assert_eq!(report["spec"]["openapi"], "3.1.0", "{report:#}");
    assert_eq!(report["refresh"]["status"], 200, "{report:#}");
    assert_eq!(report["revoke"]["status"], 200, "{report:#}");
    assert_eq!(report["afterRevoke"]["status"], 401, "{report:#}");
}
