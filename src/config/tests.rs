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
        ("matrix: {secret: s}\nhttp: {public_base: 'https://x/auth'}", "must be the root of a host"),
        ("matrix: {secret: s}\nhttp: {public_base: 'https://x/auth/'}", "must be the root of a host"),
        ("matrix: {secret: s}\nhttp: {public_base: 'https://x/?a=b'}", "must not have a query"),
        ("matrix: {secret: s}\nhttp: {public_base: 'https://x/#top'}", "must not have a query or fragment"),
        ("matrix: {secret: s}\nhttp: {issuer: 'https://x/auth'}", "http.issuer"),
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
        ("matrix: {secret: s}\npolicy: {wasm_modul: x}", "unknown field `wasm_modul`"),
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

/// A MAS provider block as operators' guides write it (Keycloak-style), verbatim.
const MAS_PROVIDER: &str = r#"
upstream_oauth2:
  providers:
    - id: 01H8PKNWKKRPCBW4YGH1RWV279
      synapse_idp_id: oidc-keycloak
      issuer: "https://sso.example.com/realms/matrix"
      human_name: Keycloak
      client_id: matrix-auth
      client_secret: "abc123"
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile email"
      discovery_mode: oidc
      pkce_method: auto
      fetch_userinfo: false
      response_mode: form_post
      on_backchannel_logout: logout_all
      additional_authorization_parameters:
        prompt: "{% if logged_out %}login{% endif %}"
        login_hint: "{{ params.login_hint }}"
      claims_imports:
        subject:
          template: "{{ user.sub }}"
        localpart:
          action: require
          template: "{{ user.preferred_username | lower }}"
          on_conflict: add
        displayname:
          action: suggest
          template: "{{ user.name }}"
        email:
          action: force
          template: "{{ user.email }}"
        account_name:
          template: "@{{ user.preferred_username }}"
"#;

#[test]
fn upstream_provider_blocks() {
    let good: &[&str] = &[
        MAS_PROVIDER,
        // GitHub: plain OAuth 2.0 with userinfo and explicit endpoints.
        r#"
upstream_oauth2:
  providers:
    - id: 01JSHPZHAXC50QBKH67MH33TNF
      human_name: GitHub
      brand_name: github
      discovery_mode: disabled
      fetch_userinfo: true
      token_endpoint_auth_method: client_secret_post
      client_id: x
      client_secret: s
      authorization_endpoint: "https://github.com/login/oauth/authorize"
      token_endpoint: "https://github.com/login/oauth/access_token"
      userinfo_endpoint: "https://api.github.com/user"
      scope: "read:user"
      claims_imports:
        subject: {template: "{{ userinfo_claims.id }}"}
        localpart: {action: suggest, template: "{{ user.login }}"}
        account_name: {template: "@{{ userinfo_claims.login }}"}
"#,
        // private_key_jwt needs no secret; insecure discovery over plain http.
        r#"
upstream_oauth2:
  providers:
    - id: 01JSHPZHAXC50QBKH67MH33TNG
      issuer: "http://idp.internal:9000/"
      discovery_mode: insecure
      client_id: x
      token_endpoint_auth_method: private_key_jwt
      token_endpoint_auth_signing_alg: ES256
      scope: openid
      enabled: false
"#,
    ];
    for (i, yaml) in good.iter().enumerate() {
        let yaml = format!("{SEED}{yaml}");
        let c = Config::parse(&yaml, Path::new(".")).unwrap_or_else(|e| panic!("good block {i}: {e}"));
        assert_eq!(c.upstream_oauth2.providers.len(), 1);
    }
    let c = Config::parse(&format!("{SEED}{MAS_PROVIDER}"), Path::new(".")).unwrap();
    let p = &c.upstream_oauth2.providers[0];
    assert_eq!(p.response_mode(), ResponseMode::FormPost);
    assert_eq!(p.on_backchannel_logout, OnBackchannelLogout::LogoutAll);
    assert_eq!(p.claims_imports.localpart.on_conflict, OnConflict::Add);
    assert_eq!(p.id_token_signed_response_alg, "RS256");
    assert!(!c.redacted_yaml().contains("abc123"));

    let base = "upstream_oauth2:\n  providers:\n    - {id: 01H8PKNWKKRPCBW4YGH1RWV279, client_id: c, issuer: 'https://i.example/', scope: openid, ";
    let bad: &[(&str, &str)] = &[
        ("token_endpoint_auth_method: none, bogus: 1}", "unknown field `bogus`"),
        ("token_endpoint_auth_method: client_secret_basic}", "upstream_oauth2.providers[0].client_secret"),
        ("token_endpoint_auth_method: private_key_jwt, client_secret: s}", "providers[0].client_secret"),
        ("token_endpoint_auth_method: magic}", "token_endpoint_auth_method"),
        ("token_endpoint_auth_method: sign_in_with_apple}", "providers[0].sign_in_with_apple"),
        ("token_endpoint_auth_method: none, discovery_mode: maybe}", "discovery_mode"),
        ("token_endpoint_auth_method: none, discovery_mode: disabled}", "providers[0].authorization_endpoint"),
        (
            "token_endpoint_auth_method: none, discovery_mode: disabled, authorization_endpoint: 'https://a/', token_endpoint: 'https://t/'}",
            "providers[0].jwks_uri",
        ),
        ("token_endpoint_auth_method: none, pkce_method: sometimes}", "pkce_method"),
        ("token_endpoint_auth_method: none, response_mode: fragment}", "response_mode"),
        ("token_endpoint_auth_method: none, on_backchannel_logout: explode}", "on_backchannel_logout"),
        ("token_endpoint_auth_method: none, id_token_signed_response_alg: none}", "id_token_signed_response_alg"),
        (
            "token_endpoint_auth_method: client_secret_post, client_secret: s, token_endpoint_auth_signing_alg: RS256}",
            "token_endpoint_auth_signing_alg",
        ),
        ("token_endpoint_auth_method: none, claims_imports: {localpart: {action: sometimes}}}", "action"),
        (
            "token_endpoint_auth_method: none, claims_imports: {localpart: {action: suggest, on_conflict: add}}}",
            "providers[0].claims_imports.localpart.on_conflict",
        ),
        (
            "token_endpoint_auth_method: none, claims_imports: {displayname: {template: '{{ user.name'}}}",
            "providers[0].claims_imports.displayname.template",
        ),
        (
            "token_endpoint_auth_method: none, claims_imports: {subject: {template: '{{ env.HOME }}'}}}",
            "providers[0].claims_imports.subject.template",
        ),
        (
            "token_endpoint_auth_method: none, additional_authorization_parameters: {prompt: '{{ user.sub }}'}}",
            "providers[0].additional_authorization_parameters.prompt",
        ),
    ];
    for (rest, expected) in bad {
        let yaml = format!("{SEED}{base}{rest}\n");
        let err = Config::parse(&yaml, Path::new(".")).expect_err(rest).to_string();
        assert!(err.contains(expected), "block {rest:?}: error {err:?} does not mention {expected:?}");
    }
    let dup = format!(
        "{SEED}upstream_oauth2:\n  providers:\n{0}{0}",
        "    - {id: 01H8PKNWKKRPCBW4YGH1RWV279, client_id: c, issuer: 'https://i.example/', scope: openid, token_endpoint_auth_method: none}\n"
    );
    let err = Config::parse(&dup, Path::new(".")).unwrap_err().to_string();
    assert!(err.contains("upstream_oauth2.providers[1].id"), "{err}");
    for (from, to, expected) in [
        ("scope: openid", "scope: profile", "upstream_oauth2.providers[0].scope"),
        ("https://i.example/", "http://i.example/", "upstream_oauth2.providers[0].issuer"),
    ] {
        let yaml = format!("{SEED}{}token_endpoint_auth_method: none}}\n", base.replace(from, to));
        let err = Config::parse(&yaml, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains(expected), "{to}: {err}");
    }
    let bad_id = format!(
        "{SEED}{}",
        base.replace("01H8PKNWKKRPCBW4YGH1RWV279", "keycloak") + "token_endpoint_auth_method: none}\n"
    );
    let err = Config::parse(&bad_id, Path::new(".")).unwrap_err().to_string();
    assert!(err.contains("upstream_oauth2.providers[0].id"), "{err}");
}

/// MAS's documented Sign in with Apple block (docs/setup/sso.md), with its blanks filled in.
fn apple_block(key_lines: &str, more: &str) -> String {
    format!(
        r#"
upstream_oauth2:
  providers:
    - id: 01JAYS74TCG3BTWKADN5Q4518C
      issuer: "https://appleid.apple.com"
      human_name: "Apple"
      brand_name: "apple"
      client_id: "org.example.matrix"
      scope: "openid name email"
      response_mode: "form_post"
      token_endpoint_auth_method: "sign_in_with_apple"
      sign_in_with_apple:
{key_lines}
        team_id: "TEAM123456"
        key_id: "KEY1234567"
{more}      claims_imports:
        localpart:
          action: ignore
        displayname:
          action: suggest
          # SiWA passes down the user infos as query parameters in the callback
          # which is available in the extra_callback_parameters variable
          template: |
            {{%- set u = extra_callback_parameters["user"] | from_json -%}}
            {{{{- u.name.firstName }}}} {{{{ u.name.lastName -}}}}
        email:
          action: suggest
        account_name:
          template: |
            {{%- set u = extra_callback_parameters["user"] | from_json -%}}
            {{{{- u.name.firstName }}}} {{{{ u.name.lastName -}}}}
"#
    )
}

fn inline_key(pem: &str) -> String {
    let mut s = "        private_key: |\n".to_string();
    for line in pem.trim().lines() {
        s.push_str(&format!("          {line}\n"));
    }
    s
}

#[test]
fn sign_in_with_apple_blocks() {
    use jwt_simple::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let p256 = ES256KeyPair::generate().to_pem().unwrap();
    let p384 = ES384KeyPair::generate().to_pem().unwrap();
    let rsa = crate::crypto::keys::SigningKey::generate_rsa().unwrap().to_pem();
    std::fs::write(dir.path().join("AuthKey.p8"), &p256).unwrap();
    std::fs::write(dir.path().join("p384.p8"), &p384).unwrap();
    std::fs::write(dir.path().join("rsa.p8"), &rsa).unwrap();
    let parse = |yaml: &str| Config::parse(&format!("{SEED}{yaml}"), dir.path());

    // Good: the key inline, or from a file (relative to the config).
    for key in [inline_key(&p256), "        private_key_file: AuthKey.p8".to_string()] {
        let c = parse(&apple_block(&key, "")).unwrap_or_else(|e| panic!("{key}: {e}"));
        let p = &c.upstream_oauth2.providers[0];
        assert_eq!(p.token_endpoint_auth_method, UpstreamAuthMethod::SignInWithApple);
        assert_eq!(p.response_mode(), ResponseMode::FormPost);
        let apple = p.sign_in_with_apple.as_ref().unwrap();
        assert_eq!((apple.team_id.as_str(), apple.key_id.as_str()), ("TEAM123456", "KEY1234567"));
        assert_eq!(apple.private_key.as_ref().unwrap().expose().trim(), p256.trim());
        // The dump never shows the key.
        let dump = c.redacted_yaml();
        let body = p256.lines().nth(1).unwrap();
        assert!(!dump.contains(body) && !dump.contains("BEGIN PRIVATE KEY"), "{dump}");
    }

    let key_body = p256.lines().nth(1).unwrap().to_string();
    let bad: Vec<(String, String, &str)> = vec![
        (String::new(), String::new(), "sign_in_with_apple.private_key"),
        (inline_key(&p256) + "        private_key_file: AuthKey.p8\n", String::new(), "set only one of"),
        ("        private_key_file: missing.p8".into(), String::new(), "sign_in_with_apple.private_key_file"),
        ("        private_key_file: p384.p8".into(), String::new(), "P-256"),
        (inline_key(&p384), String::new(), "sign_in_with_apple.private_key"),
        ("        private_key_file: rsa.p8".into(), String::new(), "sign_in_with_apple.private_key_file (rsa.p8)"),
        (inline_key("not a key at all"), String::new(), "not a PEM private key"),
        (inline_key(&p256), "      client_secret: s\n".into(), "providers[0].client_secret"),
        (inline_key(&p256), "      token_endpoint_auth_signing_alg: ES256\n".into(), "token_endpoint_auth_signing_alg"),
    ];
    for (key, more, expected) in &bad {
        let err = parse(&apple_block(key, more)).expect_err(expected).to_string();
        assert!(err.contains(expected), "{key}{more}: error {err:?} does not mention {expected:?}");
        assert!(!err.contains(&key_body) && !err.contains("BEGIN PRIVATE KEY"), "the key is in the error: {err}");
    }
    for (field, expected) in [("team_id", "sign_in_with_apple.team_id"), ("key_id", "sign_in_with_apple.key_id")] {
        let yaml = apple_block(&inline_key(&p256), "").replace(&format!("{field}: \""), &format!("{field}: \"\" #"));
        let err = parse(&yaml).expect_err(field).to_string();
        assert!(err.contains(expected), "{err}");
        let yaml =
            apple_block(&inline_key(&p256), "").lines().filter(|l| !l.contains(field)).collect::<Vec<_>>().join("\n");
        let err = parse(&yaml).expect_err(field).to_string();
        assert!(err.contains(field), "{err}");
    }
    // sign_in_with_apple with another method.
    let yaml = apple_block(&inline_key(&p256), "")
        .replace("token_endpoint_auth_method: \"sign_in_with_apple\"", "token_endpoint_auth_method: none");
    let err = parse(&yaml).unwrap_err().to_string();
    assert!(err.contains("providers[0].sign_in_with_apple"), "{err}");
}

#[test]
fn skip_confirmation_needs_what_mas_needs() {
    let base = "upstream_oauth2:\n  providers:\n    - {id: 01H8PKNWKKRPCBW4YGH1RWV279, client_id: c, issuer: 'https://i.example/', scope: openid, token_endpoint_auth_method: none, claims_imports: ";
    let good = "{skip_confirmation: true, localpart: {action: require}, displayname: {action: force}, email: {action: ignore}}}";
    Config::parse(&format!("{SEED}{base}{good}\n"), Path::new(".")).unwrap();
    for (imports, expected) in [
        ("{skip_confirmation: true}}", "claims_imports.localpart.action"),
        ("{skip_confirmation: true, localpart: {action: force}}}", "claims_imports.localpart.action"),
        (
            "{skip_confirmation: true, localpart: {action: require}, email: {action: suggest}}}",
            "claims_imports.email.action",
        ),
        (
            "{skip_confirmation: true, localpart: {action: require}, displayname: {action: suggest}}}",
            "claims_imports.displayname.action",
        ),
    ] {
        let err = Config::parse(&format!("{SEED}{base}{imports}\n"), Path::new(".")).unwrap_err().to_string();
        assert!(err.contains(expected), "{imports}: {err}");
    }
}
