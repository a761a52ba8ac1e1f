//! Login storm: memory and CPU of password hashing under hostile load (issues 11 and 18).
//!
//!     cargo bench --bench login_storm                  # 10,000 operations, 64 connections
//!     OPS=2000 CONNS=4 MIX=logins cargo bench --bench login_storm   # right passwords only
//!
//! Starts the release binary with a fake homeserver, then runs a mix of password operations —
//! right, wrong and unknown-user compat logins, sign-ups and password changes through the pages —
//! while one connection keeps introspecting. Prints RSS before, during (sampled) and after,
//! operations per second, server CPU per operation and the introspection latency during the
//! storm. Asserts nothing: figures only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "storm password one two";
const NEW_PASSWORD: &str = "storm password three four";
const USERS: usize = 64;
const MATRIX_SECRET: &str = "bench-matrix-secret-0123456789";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Proc {
    pid: u32,
}

impl Proc {
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") as f64 / 1024.0
    }
    fn hwm_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }
    /// utime + stime in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks as f64 / 100.0
    }
}

/// A homeserver that accepts every username and provisioning call.
async fn fake_homeserver() -> String {
    let router = axum::Router::new()
        .route("/_synapse/mas/is_localpart_available", axum::routing::get(|| async { axum::Json(json!({})) }))
        .route(
            "/_synapse/mas/{call}",
            axum::routing::post(|axum::extract::Path(call): axum::extract::Path<String>| async move {
                let status = if call == "provision_user" { 201 } else { 200 };
                (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(json!({})))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/")
}

fn write_config(dir: &Path, port: u16, homeserver: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            r#"http:
  public_base: "http://127.0.0.1:{port}/"
  listeners:
    - name: web
      resources: [{{name: discovery}}, {{name: human}}, {{name: oauth}}, {{name: compat}}, {{name: assets}}, {{name: health}}]
      binds: [{{address: "127.0.0.1:{port}"}}]
database:
  path: "{db}"
matrix:
  kind: synapse
  homeserver: "bench.local"
  secret: "{MATRIX_SECRET}"
  endpoint: "{homeserver}"
account:
  password_registration_enabled: true
  password_registration_email_required: false
passwords:
  minimum_complexity: 0
rate_limiting:
  login:
    per_ip: {{burst: 1000000, per_second: 1000000}}
    per_account: {{burst: 1000000, per_second: 1000000}}
  registration: {{burst: 1000000, per_second: 1000000}}
"#,
            db = dir.join("appliance.db").display()
        ),
    )
    .unwrap();
    path
}

fn cli(bin: &str, config: &Path, args: &[&str]) {
    let out = Command::new(bin).arg("-c").arg(config).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\"").expect("a csrf field");
    let value = &html[at..];
    let start = value.find("value=\"").unwrap() + 7;
    value[start..start + value[start..].find('"').unwrap()].to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn compat_login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> u16 {
    let body =
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
    match http.post(format!("{base}/_matrix/client/v3/login")).json(&body).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn sign_up(base: &str, username: &str) -> u16 {
    let http = client();
    let Ok(page) = http.get(format!("{base}/register")).send().await else { return 0 };
    let html = page.text().await.unwrap_or_default();
    if !html.contains("name=\"csrf\"") {
        return 0;
    }
    let form = [
        ("csrf", csrf_of(&html)),
        ("username", username.to_string()),
        ("password", PASSWORD.to_string()),
        ("password_confirm", PASSWORD.to_string()),
    ];
    http.post(format!("{base}/register")).form(&form).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Signs in through the page, then changes the password and back (two hashes, three verifications).
async fn change_password(base: &str, username: &str) -> u16 {
    let http = client();
    let Ok(page) = http.get(format!("{base}/login")).send().await else { return 0 };
    let html = page.text().await.unwrap_or_default();
    let form = [("csrf", csrf_of(&html)), ("username", username.into()), ("password", PASSWORD.into())];
    let Ok(res) = http.post(format!("{base}/login")).form(&form).send().await else { return 0 };
    if res.status() != 303 {
        return res.status().as_u16();
    }
    let mut last = 0;
    for (current, new) in [(PASSWORD, NEW_PASSWORD), (NEW_PASSWORD, PASSWORD)] {
        let Ok(page) = http.get(format!("{base}/account/")).send().await else { return 0 };
        let html = page.text().await.unwrap_or_default();
        let form = [
            ("csrf", csrf_of(&html)),
            ("current_password", current.into()),
            ("new_password", new.into()),
            ("new_password_confirm", new.into()),
        ];
        last = http
            .post(format!("{base}/account/password"))
            .form(&form)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
    }
    last
}

#[tokio::main]
async fn main() {
    let ops = env_usize("OPS", 10_000);
    let conns = env_usize("CONNS", 64);
    // MIX=logins: right passwords only (CPU per login); otherwise the hostile mix below.
    let logins_only = std::env::var("MIX").is_ok_and(|m| m == "logins");
    let bin = std::env::var("BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_appliance").to_string());
    let dir = tempfile::tempdir().unwrap();
    let homeserver = fake_homeserver().await;
    let port = free_port();
    let config = write_config(dir.path(), port, &homeserver);
    for i in 0..USERS {
        cli(&bin, &config, &["manage", "register-user", &format!("storm{i}"), "--password", PASSWORD]);
    }
    let mut server: Child = Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc { pid: server.id() };
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/health")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A token for the introspection probe.
    let login = http
        .post(format!("{base}/_matrix/client/v3/login"))
        .json(&json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "storm0"}, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("probe login").to_string();
    println!("binary: {bin}");
    println!("before: RSS {:.1} MiB", proc.rss_mib());

    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Introspection probe on its own connection.
    let probe = {
        let (base, token, stop) = (base.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let http = client();
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let ok = http
                    .post(format!("{base}/oauth2/introspect"))
                    .bearer_auth(MATRIX_SECRET)
                    .form(&[("token", token.as_str())])
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false);
                if ok {
                    latencies.push(t0.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies
        })
    };

    // RSS sampler.
    let sampler = {
        let (stop, pid, done) = (stop.clone(), proc.pid, done.clone());
        tokio::spawn(async move {
            let proc = Proc { pid };
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push((done.load(Ordering::Relaxed), proc.rss_mib()));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            samples
        })
    };

    let cpu0 = proc.cpu_seconds();
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for w in 0..conns {
        let (base, done, failures, next) = (base.clone(), done.clone(), failures.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let http = client();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let user = format!("storm{}", i % USERS);
                // 40 % right, 25 % wrong, 20 % unknown user, 10 % sign-up, 5 % password change.
                let (status, ok) = match if logins_only { 0 } else { i % 20 } {
                    0..=7 => {
                        let s = compat_login(&http, &base, &user, PASSWORD).await;
                        (s, s == 200)
                    }
                    8..=12 => {
                        let s = compat_login(&http, &base, &user, "wrong password").await;
                        (s, s == 403)
                    }
                    13..=16 => {
                        let s = compat_login(&http, &base, &format!("nobody{w}x{i}"), PASSWORD).await;
                        (s, s == 403)
                    }
                    17 | 18 => {
                        let s = sign_up(&base, &format!("new{i}")).await;
                        (s, s == 303)
                    }
                    _ => {
                        let s = change_password(&base, &user).await;
                        (s, s == 303)
                    }
                };
                if !ok && failures.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("operation {i} answered {status}");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = proc.cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = probe.await.unwrap();
    let samples = sampler.await.unwrap();
    let during_peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let timeline: Vec<String> =
        samples.iter().step_by((samples.len() / 12).max(1)).map(|(n, r)| format!("{n}:{r:.0}")).collect();
    println!("during: RSS timeline (ops done: MiB) {}", timeline.join(" "));
    println!("during: RSS peak {during_peak:.1} MiB (VmHWM {:.1} MiB)", proc.hwm_mib());
    println!("after:  RSS {:.1} MiB (3 s after the storm)", proc.rss_mib());
    println!(
        "operations: {ops} at {conns} connections in {elapsed:.1} s = {:.1}/s; failures {}",
        ops as f64 / elapsed,
        failures.load(Ordering::Relaxed)
    );
    println!("server CPU: {cpu:.1} s = {:.1} ms per operation", cpu * 1000.0 / ops as f64);
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    if let (Some(p50), Some(p99)) = (pct(0.5), pct(0.99)) {
        println!(
            "introspection during the storm: {} probes, p50 {:.2} ms, p99 {:.2} ms",
            latencies.len(),
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
    let _ = Command::new("kill").arg(proc.pid.to_string()).status();
    let _ = server.wait();
}
