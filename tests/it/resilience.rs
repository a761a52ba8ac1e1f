//! Hostile load at the HTTP level (issue 11): worst-case forms, slow clients, the connection cap,
//! oversized bodies (directly and through nginx), unauthenticated writes and per-IP limits.
//! Nothing here asserts a timing: each test waits for the server's own signal (an answer, an EOF).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::flows::{PUBLIC_CLIENT, REDIRECT, clients_patch, introspect_any, pkce};
use crate::helpers::{MATRIX_SECRET, TestApp, spawn_app_with};

/// How long a test waits for a signal before calling the server stuck (never reached when it works).
const STUCK: Duration = Duration::from_secs(30);

/// A raw HTTP/1.1 exchange: writes `head` then `body` (concurrently with reading, as a client
/// that keeps sending would), reads the answer to EOF. Returns (status, head, body).
async fn raw(addr: std::net::SocketAddr, head: String, body: Vec<u8>) -> (u16, String, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&body).await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut out = Vec::new();
    tokio::time::timeout(STUCK, rd.read_to_end(&mut out))
        .await
        .expect("the server neither answered nor closed")
        .expect("reading the answer failed (a reset instead of the answer?)");
    let _ = writer.await;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn post_head(path: &str, content_type: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// Waits until the server closes `stream` (EOF or reset), discarding what it sends.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(STUCK, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server kept the connection open");
}

async fn health(app: &TestApp) -> u16 {
    app.new_client().get(app.url("/health")).send().await.expect("GET /health").status().as_u16()
}

// ---- item 2: worst-case forms ------------------------------------------------------------------

/// 256 KiB of distinct keys cost seconds of CPU before (a quadratic repeat check); now parsing
/// stops at the parameter cap and the answer is an ordinary `invalid_request`.
#[tokio::test]
async fn worst_case_forms_are_refused_as_invalid_requests() {
    let app = spawn_app_with(&clients_patch()).await;
    let mut keys = String::new();
    let mut i = 0u32;
    while keys.len() < 256 * 1024 - 16 {
        keys.push_str(&format!("{i:x}=&"));
        i += 1;
    }
    assert!(i > 40_000, "{i} keys");
    for path in ["/oauth2/introspect", "/oauth2/token", "/oauth2/revoke", "/oauth2/device"] {
        let res = app
            .client
            .post(app.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .bearer_auth(MATRIX_SECRET)
            .body(keys.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}: {body}");
        assert_eq!(body["error_description"], "more than 64 parameters", "{path}");
    }
    // One parameter holding 30k distinct scope tokens: parsing stops at the scope cap.
    let scope: Vec<String> = (0..30_000).map(|i| format!("s{i}")).collect();
    let form = [("grant_type", "client_credentials"), ("client_id", PUBLIC_CLIENT), ("scope", &scope.join(" "))];
    let res = app.client.post(app.url("/oauth2/token")).form(&form).send().await.unwrap();
    let body: Value = res.json().await.unwrap();
    // The public client may not use client_credentials; a confidential one reaches the scope.
    assert!(body["error"] == "unauthorized_client" || body["error"] == "invalid_scope", "{body}");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", crate::flows::CONFIDENTIAL_CLIENT),
        ("client_secret", crate::flows::CONFIDENTIAL_SECRET),
        ("scope", &scope.join(" ")),
    ];
    let res = app.client.post(app.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope", "{body}");
    assert_eq!(body["error_description"], "more than 64 scope tokens");
    // A repeated parameter is still refused.
    let res = app
        .client
        .post(app.url("/oauth2/introspect"))
        .bearer_auth(MATRIX_SECRET)
        .form(&[("token", "a"), ("token", "b")])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error_description"], "parameter token is repeated");
}

// ---- item 3: slow clients ----------------------------------------------------------------------

/// Half a request header, held open: closed by the server once `http.header_read_timeout` passed,
/// while /health and introspection keep answering on the same listener.
#[tokio::test]
async fn half_open_connections_are_closed_while_the_service_keeps_answering() {
    let app = spawn_app_with("http: {header_read_timeout: 1, idle_timeout: 30}").await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"POST /oauth2/introspect HTTP/1.1\r\nHost: localhost\r\nContent-Le").await.unwrap();
        slow.push(s);
    }
    // Connections that never send a byte count too.
    for _ in 0..50 {
        slow.push(TcpStream::connect(app.addr).await.unwrap());
    }
    assert_eq!(health(&app).await, 200);
    let answer = introspect_any(&app, "mat_garbage").await;
    assert_eq!(answer["active"], false);
    for s in &mut slow {
        closed_by_server(s).await;
    }
    assert_eq!(health(&app).await, 200);
}

/// A kept-alive connection that sends nothing after its answer is closed after `idle_timeout`;
/// a header dribbled byte by byte does not extend its deadline.
#[tokio::test]
async fn idle_and_dribbling_connections_are_closed() {
    let app = spawn_app_with("http: {header_read_timeout: 2, idle_timeout: 1}").await;
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    closed_by_server(&mut idle).await;

    let mut dribble = TcpStream::connect(app.addr).await.unwrap();
    let closed = tokio::time::timeout(STUCK, async {
        for b in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".iter().cycle() {
            if dribble.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 64];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), dribble.read(&mut buf)).await {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a dribbled header kept its connection open");
}

/// Above `http.max_connections` a new connection is answered 503 and closed; once the slow ones
/// are gone, new connections are served again.
#[tokio::test]
async fn connections_above_the_cap_are_refused_cleanly() {
    let app = spawn_app_with("http: {max_connections: 8, header_read_timeout: 2, idle_timeout: 2}").await;
    // Whatever the test harness left open (none expected) times out first.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: loc").await.unwrap();
        slow.push(s);
    }
    let (status, head, body) = raw(app.addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".into(), vec![]).await;
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.to_lowercase().contains("retry-after: 1"), "{head}");
    for s in &mut slow {
        closed_by_server(s).await;
    }
    let (status, _, body) =
        raw(app.addr, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(), vec![]).await;
    assert_eq!(status, 200, "{body}");
}

// ---- item 9: oversized bodies --------------------------------------------------------------------

const MIB: usize = 1024 * 1024;

/// A 1 MiB body is answered 413 in the endpoint's error shape, and the client reads that answer
/// (before: a reset while it was still sending, and `text/plain` on Matrix routes).
#[tokio::test]
async fn oversized_bodies_get_the_endpoints_error_shape() {
    let app = spawn_app_with(&clients_patch()).await;
    let cases = [
        ("/_matrix/client/v3/login", "application/json", "errcode", "M_TOO_LARGE"),
        ("/oauth2/token", "application/x-www-form-urlencoded", "error", "invalid_request"),
        ("/oauth2/introspect", "application/x-www-form-urlencoded", "error", "invalid_request"),
        ("/oauth2/registration", "application/json", "error", "invalid_request"),
    ];
    for (path, content_type, field, value) in cases {
        let (status, head, body) = raw(app.addr, post_head(path, content_type, MIB), vec![b'a'; MIB]).await;
        assert_eq!(status, 413, "{path}: {head}");
        assert!(head.to_lowercase().contains("content-type: application/json"), "{path}: {head}");
        let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(json[field], value, "{path}: {json}");
    }
    // A page form gets an error page.
    let (status, head, body) =
        raw(app.addr, post_head("/login", "application/x-www-form-urlencoded", MIB), vec![b'a'; MIB]).await;
    assert_eq!(status, 413, "{head}");
    assert!(head.to_lowercase().contains("text/html") && body.contains("Too much data"), "{head}\n{body}");

    // Without a Content-Length (chunked), the limit hits while the handler reads the body.
    let chunk = vec![b'a'; 64 * 1024];
    let mut chunked = Vec::new();
    for _ in 0..16 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let (status, head, body) = raw(app.addr, head.into(), chunked).await;
    assert_eq!(status, 413, "{head}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["errcode"], "M_TOO_LARGE");
    // The service is unaffected.
    assert_eq!(health(&app).await, 200);
}

/// Through nginx (which buffers the body and sends all of it upstream), the client sees the
/// appliance's 413 JSON, not nginx's 502.
#[tokio::test]
async fn through_nginx_an_oversized_body_gets_the_413_json() {
    let app = spawn_app_with("").await;
    let nginx = crate::synapse_harness::Nginx::start(crate::synapse_harness::free_port(), app.addr.port());
    let res = reqwest::Client::new()
        .post(nginx.url("/_matrix/client/v3/login"))
        .header("Content-Type", "application/json")
        .body(vec![b'a'; MIB])
        .send()
        .await
        .expect("POST through nginx");
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();
    assert_eq!(status, 413, "{body}\n{}", nginx.log_tail(20));
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["errcode"], "M_TOO_LARGE");
}

// ---- item 4: unauthenticated writes --------------------------------------------------------------

fn authorize_url(state: &str) -> String {
    let challenge = pkce().challenge;
    format!(
        "/authorize?response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={}&scope=openid&state={state}&code_challenge={challenge}&code_challenge_method=S256",
        crate::flows::urlencode(REDIRECT)
    )
}

#[tokio::test]
async fn stored_authorization_parameters_are_capped() {
    let app = spawn_app_with(&clients_patch()).await;
    let res = app.get(&authorize_url(&"s".repeat(2048))).await;
    assert_eq!(res.status(), 303, "a state of 2048 bytes is fine");
    let res = app.get(&authorize_url(&"s".repeat(2049))).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("state is longer than 2048 bytes"));
    let res = app.get(&format!("{}&login_hint={}", authorize_url("x"), "h".repeat(513))).await;
    assert_eq!(res.status(), 400);
    let grants = count(&app, "SELECT count(*) FROM oauth2_authorization_grants");
    assert_eq!(grants, 1, "refused requests store nothing");
    // Client metadata over 16 KiB is refused before it is parsed.
    let big = serde_json::json!({"client_name": "x".repeat(17 * 1024), "redirect_uris": ["https://a.example/cb"]});
    let res = app.client.post(app.url("/oauth2/registration")).json(&big).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata");
    // A legacy SSO redirect URL over 2 KiB is refused.
    let long = format!("https://app.example.org/{}", "p".repeat(2100));
    let res = app.get(&format!("/_matrix/client/v3/login/sso/redirect?redirectUrl={long}")).await;
    assert_eq!(res.status(), 400);
}

fn count(app: &TestApp, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits (on the worker's hourly cleanup, driven by the mock clock) until `sql` counts `want`.
async fn wait_for_count(app: &TestApp, sql: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + STUCK;
    loop {
        let n = count(app, sql);
        if n == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sql}: {n}, expected {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Expired SSO logins and grants are deleted, and a dynamically registered client that never
/// completed a grant goes after `experimental.dynamic_client_ttl`; config clients stay.
#[tokio::test]
async fn unauthenticated_rows_are_pruned() {
    let app = spawn_app_with(&format!("{}\nexperimental: {{dynamic_client_ttl: 3600}}", clients_patch())).await;
    let res = app.get("/_matrix/client/v3/login/sso/redirect?redirectUrl=https://app.example.org/").await;
    assert_eq!(res.status(), 303);
    assert_eq!(app.get(&authorize_url("x")).await.status(), 303);
    let dcr = serde_json::json!({
        "client_name": "Unused",
        "client_uri": "https://unused.example/",
        "redirect_uris": ["https://unused.example/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    });
    let res = app.client.post(app.url("/oauth2/registration")).json(&dcr).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let clients_before = count(&app, "SELECT count(*) FROM oauth2_clients");
    assert_eq!(count(&app, "SELECT count(*) FROM compat_sso_logins"), 1);
    assert_eq!(count(&app, "SELECT count(*) FROM oauth2_authorization_grants"), 1);

    app.clock.advance(2 * 86400);
    wait_for_count(&app, "SELECT count(*) FROM compat_sso_logins", 0).await;
    wait_for_count(&app, "SELECT count(*) FROM oauth2_authorization_grants", 0).await;
    wait_for_count(&app, "SELECT count(*) FROM oauth2_clients WHERE is_static = 0", 0).await;
    assert_eq!(count(&app, "SELECT count(*) FROM oauth2_clients"), clients_before - 1);
}

/// `/authorize`, `/oauth2/device`, `/oauth2/registration` and the SSO redirect are limited per
/// client IP — the peer, or the `X-Forwarded-For` a trusted proxy set; IPv6 clients by /64.
#[tokio::test]
async fn unauthenticated_endpoints_are_rate_limited_per_client_ip() {
    let limit = "{burst: 2, per_second: 0.0001}";
    let patch = clients_patch().replace(
        "rate_limiting:\n",
        &format!(
            "rate_limiting:\n  authorization: {limit}\n  device_authorization: {limit}\n  client_registration: {limit}\n  compat_sso: {limit}\n"
        ),
    );
    let app = spawn_app_with(&patch).await;
    async fn status(app: &TestApp, method: &str, path: &str, ip: &str) -> (u16, String) {
        let req = match method {
            "GET" => app.client.get(app.url(path)),
            _ => app.client.post(app.url(path)),
        };
        let req = match path {
            "/oauth2/device" => req.form(&[("client_id", PUBLIC_CLIENT), ("scope", "openid")]),
            "/oauth2/registration" => req.json(&serde_json::json!({"redirect_uris": ["https://x.example/cb"]})),
            _ => req,
        };
        let res = req.header("X-Forwarded-For", ip).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }
    let sso = "/_matrix/client/v3/login/sso/redirect?redirectUrl=https://app.example.org/";
    let authorize = authorize_url("x");
    for (method, path, shape) in [
        ("GET", authorize.as_str(), "Too many sign-in requests"),
        ("POST", "/oauth2/device", "temporarily_unavailable"),
        ("POST", "/oauth2/registration", "temporarily_unavailable"),
        ("GET", sso, "M_LIMIT_EXCEEDED"),
    ] {
        for _ in 0..2 {
            assert_ne!(status(&app, method, path, "203.0.113.5").await.0, 429, "{path}");
        }
        let (code, body) = status(&app, method, path, "203.0.113.5").await;
        assert_eq!(code, 429, "{path}");
        assert!(body.contains(shape), "{path}: {body}");
        assert_ne!(status(&app, method, path, "203.0.113.6").await.0, 429, "another client IP: {path}");
        // IPv6 clients share their /64.
        assert_ne!(status(&app, method, path, "2001:db8:0:1::1").await.0, 429, "{path}");
        assert_ne!(status(&app, method, path, "2001:db8:0:1::2").await.0, 429, "{path}");
        assert_eq!(status(&app, method, path, "2001:db8:0:1:ffff::3").await.0, 429, "same /64: {path}");
    }
}
