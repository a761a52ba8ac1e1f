//! `doctor` follows a Matrix client's path and names what to change for each misconfiguration:
//! real Synapse 1.163.2 behind real nginx (routed by the generated locations), the server name
//! `127.0.0.1:<nginx port>` so that its `.well-known/matrix/client` is served through nginx by
//! Synapse itself; a small fake homeserver for what a real one cannot be made to do (a clock an
//! hour off, a well-known without a base URL).

use std::process::Output;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{self, MATRIX_SECRET, TestApp};
use crate::synapse_harness::{self as harness, Nginx, Synapse, SynapseConfig, SynapseMode, generated_nginx_locations};

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The report line starting with `mark` (✓ ✗ ⚠) that contains `needle`, with its `→` fix line.
fn finding(report: &str, mark: char, needle: &str) -> String {
    let lines: Vec<&str> = report.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(mark) && l.contains(needle))
        .unwrap_or_else(|| panic!("no `{mark} …{needle}…` line in the doctor's report:\n{report}"));
    let fix = lines.get(i + 1).filter(|l| l.trim_start().starts_with('→')).copied().unwrap_or("");
    eprintln!("[doctor] {}\n{fix}", lines[i]);
    format!("{}\n{fix}", lines[i])
}

struct Setup {
    app: TestApp,
    synapse: Synapse,
    nginx: Nginx,
    nginx_port: u16,
}

/// The appliance, Synapse whose server name is nginx's address (so clients find its well-known
/// there) and whose public_baseurl is nginx, and nginx with `locations`, or the generated ones.
async fn setup(extra_hs: Value, locations: Option<fn(String) -> String>) -> Setup {
    blocking(harness::ensure_installed);
    let synapse_port = harness::free_port();
    let nginx_port = harness::free_port();
    let server_name = format!("127.0.0.1:{nginx_port}");
    let patch = format!(
        "matrix:\n  kind: synapse\n  homeserver: \"{server_name}\"\n  secret: \"{MATRIX_SECRET}\"\n  endpoint: \"http://127.0.0.1:{synapse_port}/\"\n"
    );
    let app = helpers::spawn_app_with(&patch).await;
    let cfg = SynapseConfig {
        mode: SynapseMode::Modern,
        server_name,
        appliance_endpoint: format!("{}/", app.base),
        issuer: app.url("/"),
        secret: MATRIX_SECRET.into(),
        legacy_client_secret: String::new(),
    };
    let mut hs = json!({"public_baseurl": format!("http://127.0.0.1:{nginx_port}/")});
    if let (Value::Object(hs), Value::Object(extra)) = (&mut hs, extra_hs) {
        hs.extend(extra);
    }
    let synapse = blocking(|| Synapse::start_on_with(cfg, synapse_port, hs));
    let generated = blocking(|| generated_nginx_locations(nginx_port, synapse_port, app.addr.port(), false));
    let locations = locations.map_or(generated.clone(), |edit| edit(generated));
    let nginx = blocking(|| Nginx::start_with_locations(nginx_port, &locations));
    Setup { app, synapse, nginx, nginx_port }
}

impl Setup {
    fn doctor(&self, extra: &[&str]) -> Output {
        let hs = self.synapse.config_path();
        let mut args = vec!["doctor", "--synapse-config", hs.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        blocking(|| helpers::run_cli(&self.app.config_path, &args))
    }
    fn logs(&self) -> String {
        format!("\n--- synapse\n{}\n--- nginx\n{}", self.synapse.log_tail(30), self.nginx.log_tail(20))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_follows_the_clients_path_through_nginx_to_this_service() {
    let s = setup(json!({}), None).await;
    let out = s.doctor(&[]);
    let report = text(&out);
    assert!(out.status.success(), "doctor fails on a working setup:\n{report}{}", s.logs());
    assert!(!report.contains('✗'), "{report}");
    let wk = format!("http://127.0.0.1:{}/.well-known/matrix/client names the homeserver", s.nginx_port);
    for line in [
        wk.as_str(),
        "auth_metadata names this issuer",
        "/_matrix/client/v3/login is answered by this service",
        "is plain http on loopback",
        "the homeserver's clock agrees with ours",
    ] {
        finding(&report, '✓', line);
    }

    // A config whose issuer is not the one the homeserver names: auth_metadata says so and the
    // fix names the line of homeserver.yaml (and of config.yaml) to change.
    let dir = helpers::tempdir();
    let other = dir.path().join("other-issuer.yaml");
    let current = std::fs::read_to_string(&s.app.config_path).expect("read config");
    std::fs::write(&other, helpers::merged_yaml(&current, "http:\n  issuer: \"https://auth.example.test/\"\n"))
        .expect("write config");
    let hs = s.synapse.config_path();
    let out = blocking(|| helpers::run_cli(&other, &["doctor", "--synapse-config", hs.to_str().expect("utf-8")]));
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    let f = finding(&report, '✗', "auth_metadata names the issuer");
    assert!(f.contains(&s.app.url("/")) && f.contains("but this service is https://auth.example.test/"), "{f}");
    let hs_line = format!("{}:", hs.display());
    assert!(f.contains(&hs_line) && f.contains("(matrix_authentication_service.endpoint)"), "{f}");
    // The https issuer is fine; its public_base line is named as the other thing to check.
    finding(&report, '✓', "the issuer https://auth.example.test/ is https");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_proxy_when_login_reaches_synapse() {
    // The operator pasted only the Synapse locations: the legacy login API goes to Synapse.
    fn without_compat(locations: String) -> String {
        let start = locations.find("location ~ ^/_matrix/client/(.*)/(login").expect("compat location");
        let end = start + locations[start..].find("}\n").expect("block end") + 2;
        format!("{}{}", &locations[..start], &locations[end..])
    }
    let s = setup(json!({}), Some(without_compat)).await;
    let report = text(&s.doctor(&[]));
    let f = finding(&report, '✗', "/_matrix/client/v3/login is not answered by this service");
    assert!(f.contains("HTTP 404"), "Synapse answers it with 404 M_UNRECOGNIZED: {f}");
    assert!(f.contains("server block for 127.0.0.1") && f.contains("--part nginx-homeserver"), "{f}");
    // The rest of the path still holds.
    finding(&report, '✓', "auth_metadata names this issuer");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_well_known_when_the_proxy_does_not_serve_it() {
    // The operator left out the well-known location: nginx answers 404 itself.
    fn without_well_known(locations: String) -> String {
        let start = locations.find("location = /.well-known/matrix/client").expect("well-known location");
        let end = start + locations[start..].find("}\n").expect("block end") + 2;
        format!("{}{}", &locations[..start], &locations[end..])
    }
    let s = setup(json!({}), Some(without_well_known)).await;
    let report = text(&s.doctor(&[]));
    let f = finding(&report, '✗', ".well-known/matrix/client answered 404");
    let line = format!("{}:", s.synapse.config_path().display());
    assert!(f.contains(&line) && f.contains("serve_client_wellknown"), "{f}");
    assert!(f.contains("--part nginx-homeserver"), "{f}");
}

/// A fake homeserver: its well-known names itself (or `well_known`), its auth_metadata names
/// `issuer`, and every answer carries a `Date` `skew` seconds from now.
async fn fake_homeserver(issuer: String, skew: i64, well_known: Option<Value>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/", listener.local_addr().expect("addr"));
    let wk = well_known.unwrap_or_else(|| json!({"m.homeserver": {"base_url": base}}));
    let date = move || {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() as i64;
        http_date(now + skew)
    };
    let app = Router::new()
        .route("/.well-known/matrix/client", get(move || async move { ([("date", date())], axum::Json(wk)) }))
        .route(
            "/_matrix/client/v1/auth_metadata",
            get(move || async move { ([("date", date())], axum::Json(json!({"issuer": issuer}))) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    base
}

fn http_date(secs: i64) -> String {
    let (y, m, d) = appliance::clock::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][secs.div_euclid(86_400).rem_euclid(7) as usize];
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][m as usize - 1];
    format!("{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT", t / 3600, t / 60 % 60, t % 60)
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_catches_a_clock_an_hour_off_and_a_well_known_without_base_url() {
    let app = helpers::spawn_app().await;
    let run = |url: &str| {
        let out = blocking(|| helpers::run_cli(&app.config_path, &["doctor", "--server-url", url]));
        text(&out)
    };
    let skewed = fake_homeserver(app.url("/"), -3600, None).await;
    let report = run(&skewed);
    finding(&report, '✓', "auth_metadata names this issuer");
    let f = finding(&report, '✗', "the homeserver's clock is -3600 s from ours");
    assert!(f.contains("NTP"), "{f}");

    let bare = fake_homeserver(app.url("/"), 0, Some(json!({"m.identity_server": {}}))).await;
    let report = run(&bare);
    let f = finding(&report, '✗', "has no m.homeserver.base_url");
    assert!(f.contains("public_baseurl"), "{f}");
}

#[test]
fn doctor_warns_about_a_plain_http_issuer_outside_loopback() {
    let dir = helpers::tempdir();
    let config = helpers::write_test_config(dir.path(), "http:\n  public_base: \"http://auth.example.test/\"\n");
    let report = text(&helpers::run_cli(&config, &["doctor"]));
    let f = finding(&report, '⚠', "the issuer http://auth.example.test/ is plain http outside loopback");
    // The fix names the config file and the line of public_base.
    let text = std::fs::read_to_string(&config).expect("read");
    let line = text.lines().position(|l| l.trim_start().starts_with("public_base:")).expect("public_base line") + 1;
    assert!(f.contains(&format!("{}:{line} (http.public_base)", config.display())), "{f}");
}

/// The config at `app.config_path` with `patch` merged over it, written beside it.
fn patched_config(app: &TestApp, name: &str, patch: &str) -> std::path::PathBuf {
    let path = app.dir.path().join(name);
    let current = std::fs::read_to_string(&app.config_path).expect("read config");
    std::fs::write(&path, helpers::merged_yaml(&current, patch)).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_http_issuer_when_the_config_sets_it() {
    let app = helpers::spawn_app().await;
    // The homeserver names the running service's issuer; this config claims another one.
    let hs = fake_homeserver(app.url("/"), 0, None).await;
    let config = patched_config(&app, "issuer.yaml", "http:\n  issuer: \"https://auth.example.test/\"\n");
    let report = text(&blocking(|| helpers::run_cli(&config, &["doctor", "--server-url", &hs])));
    let text = std::fs::read_to_string(&config).expect("read");
    let line = text.lines().position(|l| l.trim_start().starts_with("issuer:")).expect("issuer line") + 1;
    let issuer_line = format!("{}:{line} (http.issuer)", config.display());
    let f = finding(&report, '✗', "auth_metadata names the issuer");
    assert!(f.contains(&issuer_line), "the fix must name http.issuer, which the config sets: {f}");
    assert!(!f.contains("http.public_base"), "{f}");
    let f = finding(&report, '✗', "answers with the issuer");
    assert!(f.contains(&issuer_line), "{f}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_tells_a_loopback_server_name_to_serve_its_well_known_over_http() {
    let app = helpers::spawn_app().await;
    // A homeserver on loopback that serves no well-known at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server_name = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, Router::new()).await.expect("serve") });
    let config = patched_config(&app, "loopback.yaml", &format!("matrix:\n  homeserver: \"{server_name}\"\n"));
    let report = text(&blocking(|| helpers::run_cli(&config, &["doctor"])));
    let f = finding(&report, '✗', ".well-known/matrix/client answered 404");
    assert!(f.contains(&format!("clients read it from http://{server_name}/")), "{f}");
    assert!(!f.contains("https://"), "a loopback server name is fetched over http: {f}");
}
