//! `appliance config synapse` prints reverse-proxy configuration that the proxies accept:
//! `nginx -t` for the nginx locations (wrapped in the server blocks an operator has) and
//! `caddy validate` for the Caddyfile, in both layouts (this service on its own host, or on the
//! homeserver's host). The end-to-end tests also route through the nginx locations
//! (synapse_harness.rs `Nginx::start`), so a snippet that nginx takes but routes wrongly fails there.

use std::path::Path;
use std::process::Command;

use crate::helpers::{expect_success, run_cli, system_program, tempdir, write_test_config};

const OWN_HOST: &str = "http: {public_base: 'https://auth.example.org/', listeners: [{name: web, resources: [{name: oauth}, {name: compat}, {name: human}], binds: [{address: '127.0.0.1:8080'}]}]}\nmatrix: {homeserver: example.org, endpoint: 'http://127.0.0.1:8008/'}";
const SHARED_HOST: &str = "http: {public_base: 'https://matrix.example.org/', listeners: [{name: web, resources: [{name: oauth}, {name: compat}, {name: human}], binds: [{address: '127.0.0.1:8080'}]}]}\nmatrix: {homeserver: example.org, endpoint: 'http://127.0.0.1:8008/'}";

fn part(config: &Path, part: &str) -> String {
    let out =
        run_cli(config, &["config", "synapse", "--homeserver-url", "https://matrix.example.org/", "--part", part]);
    expect_success(&format!("config synapse --part {part}"), &out)
}

/// `nginx -t` on an nginx.conf holding the generated locations in the server blocks of the two hosts.
fn nginx_test(dir: &Path, homeserver: &str, service: &str) -> std::process::Output {
    let p = dir.display();
    let conf = format!(
        "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    \
         client_body_temp_path {p}/b;\n    proxy_temp_path {p}/p;\n\
         server {{\n    listen 127.0.0.1:8443;\n    server_name matrix.example.org;\n{homeserver}}}\n\
         server {{\n    listen 127.0.0.1:8443;\n    server_name auth.example.org;\n{service}}}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    Command::new(system_program("nginx"))
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .output()
        .expect("run nginx -t")
}

fn caddy_validate(dir: &Path, caddyfile: &str) -> std::process::Output {
    std::fs::write(dir.join("Caddyfile"), caddyfile).expect("write Caddyfile");
    Command::new(system_program("caddy"))
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .output()
        .expect("run caddy validate")
}

fn assert_ok(what: &str, out: &std::process::Output, config: &str) {
    assert!(
        out.status.success(),
        "{what} refuses the generated configuration:\n{}{}\n--- generated\n{config}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_layout(patch: &str, shared: bool) {
    crate::synapse_harness::ensure_installed();
    let dir = tempdir();
    let config = write_test_config(dir.path(), patch);
    let homeserver = part(&config, "nginx-homeserver");
    let service = part(&config, "nginx-service");
    assert!(homeserver.contains("location ~ ^/_matrix/client/(.*)/(login|logout|refresh)"), "{homeserver}");
    assert_eq!(
        homeserver.contains("location / {"),
        shared,
        "the service's catch-all is on the homeserver host only when shared:\n{homeserver}"
    );
    assert_eq!(service.contains("location / {"), !shared, "{service}");
    let out = nginx_test(dir.path(), &homeserver, &service);
    assert_ok("nginx -t", &out, &format!("{homeserver}\n{service}"));

    let caddyfile = part(&config, "caddy");
    assert!(caddyfile.contains("matrix.example.org {"), "{caddyfile}");
    assert_eq!(caddyfile.contains("auth.example.org {"), !shared, "{caddyfile}");
    let out = caddy_validate(dir.path(), &caddyfile);
    assert_ok("caddy validate", &out, &caddyfile);

    // The full output (every part with its comments) still names them all.
    let all = expect_success(
        "config synapse",
        &run_cli(&config, &["config", "synapse", "--homeserver-url", "https://matrix.example.org/"]),
    );
    for piece in ["matrix_authentication_service:", &homeserver, &caddyfile] {
        assert!(all.contains(piece.trim()), "the full output lacks:\n{piece}\n--- full\n{all}");
    }
}

#[test]
fn nginx_and_caddy_accept_the_snippets_for_a_service_on_its_own_host() {
    check_layout(OWN_HOST, false);
}

#[test]
fn nginx_and_caddy_accept_the_snippets_for_a_service_on_the_homeservers_host() {
    check_layout(SHARED_HOST, true);
}

/// The check itself bites: a location nginx refuses (the old snippet's `proxy_pass` with a URI
/// in a regex location) makes `nginx -t` fail, and a Caddyfile typo makes `caddy validate` fail.
#[test]
fn the_validators_refuse_broken_snippets() {
    crate::synapse_harness::ensure_installed();
    let dir = tempdir();
    let broken =
        "location ~ ^/_matrix/client/(.*)/(login|logout|refresh) {\n    proxy_pass http://127.0.0.1:8080/;\n}\n";
    let out = nginx_test(dir.path(), broken, "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot have URI part"), "{out:?}");
    let out = caddy_validate(dir.path(), "example.org {\n\treverse_prox 127.0.0.1:8080\n}\n");
    assert!(!out.status.success(), "{out:?}");
}
