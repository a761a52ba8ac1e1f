//! Cookies and client IPs: the browser cookies are `HttpOnly`, `SameSite=Lax` and `Secure` exactly
//! when `public_base` is https; `X-Forwarded-For` counts only when it comes from a trusted proxy;
//! and behind the real nginx each client is limited on its own, by its own address.
//!
//! Clients are told apart by their source address: Linux routes all of 127.0.0.0/8 to the
//! loopback interface, so a client bound to 127.0.0.2 reaches a server on 127.0.0.1 as 127.0.0.2.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::flows::*;
use crate::helpers::{TestApp, spawn_app_with};
use crate::synapse_harness::{self as harness, Nginx};

const PASSWORD: &str = "correct horse battery";

/// A client (no cookies, no redirects) whose connections come from `source`.
fn client_from(source: &str) -> reqwest::Client {
    let ip: IpAddr = source.parse().expect("an IP address");
    reqwest::Client::builder()
        .local_address(ip)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// The `Set-Cookie` header for cookie `name`, e.g. `appliance-session=…; HttpOnly; …`.
fn set_cookie(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set (status {}): {:?}", res.status(), res.headers()))
        .to_string()
}

/// The attributes of a `Set-Cookie` value, lowercased, without the value itself.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
}

/// Signs in by hand (no cookie store, so that `Secure` cookies are still sent over the test's
/// plain http): the `Set-Cookie` values of the CSRF cookie and of the session cookie.
async fn sign_in_cookies(app: &TestApp) -> (String, String) {
    let http = client_from("127.0.0.1");
    let page = http.get(app.url("/login")).send().await.unwrap();
    let csrf_cookie = set_cookie(&page, "appliance-csrf");
    let csrf = csrf_of(&page.text().await.unwrap());
    let cookie = csrf_cookie.split(';').next().unwrap().to_string();
    let res = http
        .post(app.url("/login"))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "alice"), ("password", PASSWORD), ("next", "/account/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in failed: {}", res.text().await.unwrap());
    (csrf_cookie, set_cookie(&res, "appliance-session"))
}

#[tokio::test]
async fn cookies_are_http_only_same_site_lax_and_secure_only_on_https() {
    for (public_base, secure) in [(None, false), (Some("https://auth.example.org/"), true)] {
        let patch = public_base.map(|b| format!("http: {{public_base: \"{b}\"}}")).unwrap_or_default();
        let app = spawn_app_with(&patch).await;
        register_user(&app, "alice", PASSWORD, false).await;
        let (csrf, session) = sign_in_cookies(&app).await;
        for cookie in [&csrf, &session] {
            let attrs = attributes(cookie);
            assert!(attrs.contains(&"httponly".to_string()), "{public_base:?}: not HttpOnly: {cookie}");
            assert!(attrs.contains(&"samesite=lax".to_string()), "{public_base:?}: not SameSite=Lax: {cookie}");
            assert!(attrs.contains(&"path=/".to_string()), "{public_base:?}: not Path=/: {cookie}");
            assert_eq!(attrs.contains(&"secure".to_string()), secure, "{public_base:?}: Secure is wrong: {cookie}");
        }
    }
}

/// Compat password logins for unknown users (so only the per-IP limit can refuse them), each
/// with `x_forwarded_for` if given: the status of each.
async fn login_statuses(
    client: &reqwest::Client,
    url: &str,
    x_forwarded_for: Option<&str>,
    names: &[&str],
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for name in names {
        let mut req = client.post(url).json(&json!({"type": "m.login.password", "user": name, "password": "nope"}));
        if let Some(xff) = x_forwarded_for {
            req = req.header("x-forwarded-for", xff);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        assert!(status == 403 || status == 429, "unexpected answer {status}: {body}");
        statuses.push(status);
    }
    statuses
}

/// Two attempts at once, then none for a long time.
const TWO_PER_IP: &str = "login: {per_ip: {burst: 2, per_second: 0.0001}, per_account: {burst: 1000, per_second: 100}}";

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    // 127.0.0.1 is a trusted proxy: its X-Forwarded-For names the client, and each client
    // named there has its own limit.
    let app =
        spawn_app_with(&format!("http: {{trusted_proxies: [\"127.0.0.1/32\"]}}\nrate_limiting: {{{TWO_PER_IP}}}"))
            .await;
    let url = app.url("/_matrix/client/v3/login");
    let proxy = client_from("127.0.0.1");
    let seven = login_statuses(&proxy, &url, Some("203.0.113.7"), &["u1", "u2", "u3"]).await;
    assert_eq!(seven, [403, 403, 429], "203.0.113.7 behind the trusted proxy");
    let eight = login_statuses(&proxy, &url, Some("203.0.113.8"), &["u4"]).await;
    assert_eq!(eight, [403], "203.0.113.8 has a limit of its own");
    // A spoofed entry left of the one the proxy appended changes nothing.
    let spoofed = login_statuses(&proxy, &url, Some("198.51.100.1, 203.0.113.7"), &["u5"]).await;
    assert_eq!(spoofed, [429], "the proxy's entry (the rightmost) is the client");

    // 127.0.0.2 is not trusted: whatever X-Forwarded-For it sends, it is counted as itself.
    let direct = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for (i, xff) in ["198.51.100.2", "198.51.100.3", "198.51.100.4"].iter().enumerate() {
        let name = format!("v{i}");
        statuses.extend(login_statuses(&direct, &url, Some(xff), &[name.as_str()]).await);
    }
    assert_eq!(statuses, [403, 403, 429], "an untrusted peer's X-Forwarded-For was believed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_each_real_client_has_its_own_login_limit() {
    tokio::task::block_in_place(harness::ensure_installed);
    // Only nginx (which reaches the appliance from 127.0.0.1) is a trusted proxy.
    let app =
        spawn_app_with(&format!("http: {{trusted_proxies: [\"127.0.0.1/32\"]}}\nrate_limiting: {{{TWO_PER_IP}}}"))
            .await;
    register_user(&app, "alice", PASSWORD, false).await;
    // Nothing here goes to Synapse: a port nothing listens on stands in for it.
    let nginx = tokio::task::block_in_place(|| Nginx::start(harness::free_port(), app.addr.port()));
    let url = nginx.url("/_matrix/client/v3/login");

    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let first = login_statuses(&a, &url, None, &["w1", "w2", "w3"]).await;
    assert_eq!(first, [403, 403, 429], "client 127.0.0.2 through nginx{}", nginx.log_tail(5));
    // Another client through the same nginx is not limited by the first one's attempts.
    let other = login_statuses(&b, &url, None, &["w4"]).await;
    assert_eq!(other, [403], "client 127.0.0.3 through nginx was limited by 127.0.0.2's attempts");
    // The first client cannot escape its limit by sending its own X-Forwarded-For.
    let spoofed = login_statuses(&a, &url, Some("198.51.100.9"), &["w5"]).await;
    assert_eq!(spoofed, [429], "a client-supplied X-Forwarded-For escaped the limit");

    // The real client's address is also what the session records.
    let res = b
        .post(&url)
        .json(&json!({"type": "m.login.password", "user": "alice", "password": PASSWORD, "refresh_token": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let refresh_token = res.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_string();
    let res = b
        .post(nginx.url("/_matrix/client/v3/refresh"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.state.lifecycle.activity().flush().await;
    let ip: Option<String> = app
        .state
        .store
        .read(|c| Ok(c.query_row("SELECT last_active_ip FROM compat_sessions", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(ip.as_deref(), Some("127.0.0.3"), "the session's last IP");
}
