//! `config generate --synapse-config homeserver.yaml` (MAS's flag) carries an existing Synapse's
//! settings into the generated config: server name, Synapse's address, the shared secret of
//! `matrix_authentication_service` (or msc3861's admin token and client secret), email over
//! SMTP, registration. Several files merge in order. The result passes `config check` and loads.

use appliance::config::{Config, EmailTransportKind, HomeserverKind, SmtpMode};

use crate::helpers::{expect_success, run_cli, tempdir};

const HOMESERVER: &str = r#"
server_name: "example.net"
public_baseurl: "https://matrix.example.net/"
listeners:
  - port: 8448
    type: http
    tls: true
    resources: [{names: [federation]}]
  - port: 8118
    type: http
    tls: false
    x_forwarded: true
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [client, federation]
        compress: false
enable_registration: true
registrations_require_3pid: [email]
registration_requires_token: true
password_config:
  enabled: true
  pepper: "PEPPER-from-synapse"
email:
  smtp_host: mail.example.net
  smtp_port: 465
  smtp_user: "synapse"
  smtp_pass: "smtp-secret"
  force_tls: true
  notif_from: "Your Friendly %(app)s homeserver <noreply@example.net>"
  app_name: "Example Chat"
matrix_authentication_service:
  enabled: true
  endpoint: "http://127.0.0.1:8181/"
  secret: "the-shared-secret-from-synapse"
"#;

fn generate(dir: &std::path::Path, files: &[&str]) -> (String, Config) {
    let out_path = dir.join("generated.yaml");
    let mut args = vec!["config", "generate", "--output", out_path.to_str().expect("utf-8")];
    for f in files {
        args.extend(["--synapse-config", f]);
    }
    expect_success("config generate --synapse-config", &run_cli(&dir.join("unused.yaml"), &args));
    expect_success("config check", &run_cli(&out_path, &["config", "check"]));
    let text = std::fs::read_to_string(&out_path).expect("read generated");
    let config = Config::load(&out_path).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    (text, config)
}

#[test]
fn generate_takes_synapse_settings_from_homeserver_yaml() {
    let dir = tempdir();
    let hs = dir.path().join("homeserver.yaml");
    std::fs::write(&hs, HOMESERVER).expect("write");
    let (text, c) = generate(dir.path(), &[hs.to_str().expect("utf-8")]);

    assert_eq!(c.matrix.kind, HomeserverKind::Synapse);
    assert_eq!(c.matrix.homeserver, "example.net");
    assert_eq!(c.matrix.secret(), "the-shared-secret-from-synapse");
    assert_eq!(c.matrix.endpoint.as_str(), "http://127.0.0.1:8118/", "Synapse's plain client listener");
    assert_eq!(c.http.public_base.as_str(), "https://auth.example.net/");
    let bind = c.http.listeners[0].binds[0].describe();
    assert_eq!(bind, "127.0.0.1:8181", "listens where matrix_authentication_service.endpoint points");
    assert!(c.account.password_registration_enabled);
    assert!(c.account.password_registration_email_required);
    assert!(c.account.registration_token_required);
    assert_eq!(c.email.transport, EmailTransportKind::Smtp);
    assert_eq!(c.email.mode, Some(SmtpMode::Tls));
    assert_eq!(c.email.hostname.as_deref(), Some("mail.example.net"));
    assert_eq!(c.email.port, Some(465));
    assert_eq!(c.email.username.as_deref(), Some("synapse"));
    assert_eq!(c.email.password.as_ref().map(|p| p.expose()), Some("smtp-secret"));
    assert_eq!(c.email.from, "Your Friendly Example Chat homeserver <noreply@example.net>");
    // The pepper is explained, not silently dropped.
    assert!(text.contains("password_config.pepper"), "{text}");
    assert!(text.contains("https://matrix.example.net/"), "names the homeserver's public URL:\n{text}");
}

#[test]
fn generate_merges_several_homeserver_files_and_reads_the_legacy_section() {
    let dir = tempdir();
    let base = dir.path().join("homeserver.yaml");
    std::fs::write(&base, "server_name: example.com\nenable_registration: false\nlisteners: [{port: 8008, type: http, resources: [{names: [client]}]}]\n").expect("write");
    let extra = dir.path().join("conf.d.yaml");
    std::fs::write(
        &extra,
        "experimental_features:\n  msc3861:\n    enabled: true\n    issuer: \"http://127.0.0.1:8282/\"\n    client_id: 0000000000000000000SYNAPSE\n    client_secret: \"legacy-client-secret\"\n    admin_token: \"legacy-admin-token\"\nserver_name: example.org\n",
    )
    .expect("write");
    let (_, c) = generate(dir.path(), &[base.to_str().expect("utf-8"), extra.to_str().expect("utf-8")]);
    assert_eq!(c.matrix.homeserver, "example.org", "the later file wins");
    assert_eq!(c.matrix.kind, HomeserverKind::SynapseLegacy);
    assert_eq!(c.matrix.secret(), "legacy-admin-token");
    let synapse = c.clients.iter().find(|c| c.client_id == "0000000000000000000SYNAPSE").expect("client");
    assert_eq!(synapse.client_secret.as_ref().map(|s| s.expose()), Some("legacy-client-secret"));
    assert_eq!(c.http.listeners[0].binds[0].describe(), "127.0.0.1:8282");
    assert!(!c.account.password_registration_enabled);
    assert_eq!(c.email.transport, EmailTransportKind::Blackhole, "no email section: nothing invented");
}

#[test]
fn generate_without_synapse_config_is_unchanged_and_a_missing_file_is_named() {
    let dir = tempdir();
    let (_, c) = generate(dir.path(), &[]);
    assert_eq!(c.matrix.homeserver, "example.org");
    let out = run_cli(
        &dir.path().join("x.yaml"),
        &["config", "generate", "--synapse-config", "/nonexistent/homeserver.yaml"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/homeserver.yaml"));
}
