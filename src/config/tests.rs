use std::path::Path;

use super::*;

const SEED: &str = r#"
clients:
  - client_id: 0000000000000000000SYNAPSE
    client_auth_method: client_secret_basic
    client_secret: "SomeRandomSecret"
matrix:
  homeserver: localhost:8008
  secret: "AnotherRandomSecret"
  endpoint: "http://localhost:8008"
"#;

#[test]
fn seed_snippet_parses_verbatim() {
    let c = Config::parse(SEED, Path::new(".")).unwrap();
    assert_eq!(c.clients[0].client_auth_method, ClientAuthMethod::ClientSecretBasic);
    assert_eq!(c.matrix.secret(), "AnotherRandomSecret");
    assert_eq!(c.matrix.kind, HomeserverKind::Synapse);
    assert_eq!(c.http.issuer().as_str(), "http://127.0.0.1:8080/");
}

#[test]
fn bad_configs_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("matrix: {homeserver: x}", "matrix.secret"),
        ("matrix: {secret: s}\nbogus: 1", "unknown field `bogus`"),
        ("matrix: {secret: s, kind: dendrite}", "matrix.kind"),
        ("matrix: {secret: s}\nclients: [{client_id: nope}]", "clients[0].client_id"),
        (
            "matrix: {secret: s}\nclients: [{client_id: 01HZZZZZZZZZZZZZZZZZZZZZZZ, client_auth_method: client_secret_post}]",
            "clients[0].client_secret",
        ),
        (
            "matrix: {secret: s}\nclients: [{client_id: 01HZZZZZZZZZZZZZZZZZZZZZZZ, client_auth_method: private_key_jwt}]",
            "clients[0]",
        ),
        ("matrix: {secret: s}\nclients: [{client_id: 01HZZZZZZZZZZZZZZZZZZZZZZZ, client_secret: x}]", "not allowed"),
        ("matrix: {secret: s}\nhttp: {public_base: 'ftp://x/'}", "http.public_base"),
        ("matrix: {secret: s}\nhttp: {public_base: 'https://x/auth'}", "must end with a slash"),
        (
            "matrix: {secret: s}\nhttp: {listeners: [{resources: [{name: health}], binds: [{address: nope}]}]}",
            "binds[0].address",
        ),
        ("matrix: {secret: s}\nsecrets: {encryption: abc}", "secrets.encryption"),
        ("matrix: {secret: s}\nsecrets: {keys: [{key: 'not a pem'}]}", "secrets.keys[0].key"),
        ("matrix: {secret: s}\npasswords: {minimum_complexity: 9}", "passwords.minimum_complexity"),
        ("matrix: {secret: s}\ndatabase: {path: 3}\nhttp: {public_base: 7}", "http.public_base"),
        ("matrix: {secret: s, secret_file: /nonexistent}", "matrix"),
        ("matrix: {secret_file: /nonexistent/secret}", "matrix.secret_file"),
        ("matrix: {secret: s}\npolicy: {data: {admin_clients: [nope]}}", "policy.data.admin_clients[0]"),
        ("matrix: {secret: s}\npolicy: {data: {admin_users: ['@alice:x']}}", "policy.data.admin_users[0]"),
        ("matrix: {secret: s}\npolicy: {data: {admins: []}}", "unknown field `admins`"),
        ("matrix: {secret: s}\npolicy: {wasm_module: x}", "unknown field `wasm_module`"),
        (
            "matrix: {secret: s}\nexperimental: {inactive_session_expiration: {ttl: 599}}",
            "experimental.inactive_session_expiration.ttl",
        ),
        (
            "matrix: {secret: s}\nexperimental: {inactive_session_expiration: {ttl: 7776001}}",
            "experimental.inactive_session_expiration.ttl",
        ),
        (
            "matrix: {secret: s}\nexperimental: {inactive_session_expiration: {ttl: -1}}",
            "experimental.inactive_session_expiration.ttl",
        ),
        (
            "matrix: {secret: s}\nexperimental: {inactive_session_expiration: {ttl: 30d}}",
            "experimental.inactive_session_expiration.ttl",
        ),
        (
            "matrix: {secret: s}\nexperimental: {inactive_session_expiration: {expire_user_sessions: false}}",
            "missing field `ttl`",
        ),
        (
            "matrix: {secret: s}\nexperimental: {inactive_session_expiration: {ttl: 600, expire_personal_sessions: true}}",
            "unknown field `expire_personal_sessions`",
        ),
    ];
    for (yaml, expected) in cases {
        let err = Config::parse(yaml, Path::new(".")).expect_err(yaml).to_string();
        assert!(err.contains(expected), "config {yaml:?}: error {err:?} does not mention {expected:?}");
    }
}

#[test]
fn generated_config_parses() {
    let text = crate::cli::generate_config().unwrap();
    let c = Config::parse(&text, Path::new(".")).unwrap();
    assert!(text.contains("# - name: adminapi") && text.contains("#     admin_clients:"), "{text}");
    // The commented policy section is valid once uncommented.
    let uncommented = text.replace("# policy:", "policy:").replace("#   data:", "  data:");
    let uncommented = uncommented.replace("#     admin_", "    admin_");
    let p = Config::parse(&uncommented, Path::new(".")).unwrap().policy.data;
    assert!(p.is_admin_client("01J0000000000000000000ADM1") && p.is_admin_user("alice"));
    assert_eq!(c.secrets.as_ref().unwrap().keys.len(), 2);
    assert!(c.secrets.unwrap().encryption_key().is_some());
}

#[test]
fn repo_config_parses() {
    let c = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml")).unwrap();
    assert!(c.http.public_base.as_str().starts_with("http://127.0.0.1"));
}

#[test]
fn dump_redacts_secrets() {
    let c = Config::parse(SEED, Path::new(".")).unwrap();
    let dump = c.redacted_yaml();
    assert!(!dump.contains("SomeRandomSecret") && !dump.contains("AnotherRandomSecret"), "{dump}");
    assert!(format!("{c:?}").find("AnotherRandomSecret").is_none());
}

#[test]
fn inactive_session_expiration_is_off_unless_set_and_takes_the_bounds() {
    let off = Config::parse(SEED, Path::new(".")).unwrap();
    assert_eq!(off.experimental.inactive_session_expiration, None);
    assert!(!off.redacted_yaml().contains("inactive_session_expiration"));
    for ttl in [600, 7_776_000] {
        let yaml = format!(
            "{SEED}experimental:\n  inactive_session_expiration: {{ttl: {ttl}, expire_compat_sessions: false}}\n"
        );
        let c = Config::parse(&yaml, Path::new(".")).unwrap().experimental.inactive_session_expiration.unwrap();
        assert_eq!(
            c,
            InactiveSessionExpirationConfig {
                ttl,
                expire_compat_sessions: false,
                expire_oauth_sessions: true,
                expire_user_sessions: true
            }
        );
    }
}

#[test]
fn generated_config_mentions_inactive_session_expiration() {
    let text = crate::cli::generate_config().unwrap();
    assert!(Config::parse(&text, Path::new(".")).unwrap().experimental.inactive_session_expiration.is_none());
    let uncommented = text
        .replace("# experimental:", "experimental:")
        .replace("#   inactive_session_expiration:", "  inactive_session_expiration:")
        .replace("#     ttl:", "    ttl:")
        .replace("#     expire_", "    expire_");
    let c = Config::parse(&uncommented, Path::new(".")).unwrap();
    assert_eq!(c.experimental.inactive_session_expiration, Some(InactiveSessionExpirationConfig::all(7_776_000)));
}
