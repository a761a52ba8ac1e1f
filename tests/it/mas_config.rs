//! An operator's MAS configuration loads: keys MAS knows and this service does not use are
//! accepted with one warning each naming them; a key neither knows is still an error naming it;
//! `-c` repeats and the files merge in order, as MAS merges them.

use crate::helpers::{run_cli, tempdir, write_test_config};

/// Keys from MAS's documented configuration that this service has no use for.
const MAS_EXTRAS: &str = r#"
http:
  listeners:
    - name: web
      resources:
        - name: discovery
        - name: human
        - name: oauth
        - name: compat
        - name: graphql
          playground: true
        - name: assets
      binds:
        - address: "127.0.0.1:9"
database:
  uri: "postgresql://mas:secret@localhost/mas"
  max_connections: 10
telemetry:
  tracing:
    exporter: none
  metrics:
    exporter: prometheus
templates:
  path: "/usr/local/share/mas-cli/templates/"
  translations_path: "/usr/local/share/mas-cli/translations/"
policy:
  wasm_module: "/usr/local/share/mas-cli/policy.wasm"
"#;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn mas_only_keys_load_with_one_warning_each() {
    let dir = tempdir();
    let config = write_test_config(dir.path(), MAS_EXTRAS);
    let out = run_cli(&config, &["config", "check"]);
    let err = stderr(&out);
    assert!(out.status.success(), "a MAS config with keys this service does not use must load:\n{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    for key in [
        "`http.listeners[0].resources[4]`",
        "`database.uri`",
        "`database.max_connections`",
        "`telemetry`",
        "`templates`",
        "`policy.wasm_module`",
    ] {
        let hits = warnings.iter().filter(|w| w.contains(key)).count();
        assert_eq!(hits, 1, "one warning naming {key}, got:\n{}", warnings.join("\n"));
    }
    assert!(warnings.iter().any(|w| w.contains("graphql")), "{err}");
    assert_eq!(warnings.len(), 6, "{}", warnings.join("\n"));
}

#[test]
fn an_older_mas_provider_block_with_set_email_verification_loads_with_a_warning() {
    let dir = tempdir();
    let config = write_test_config(
        dir.path(),
        r#"
upstream_oauth2:
  providers:
    - id: 01JAYS74TCG3BTWKADN5Q4518C
      human_name: Keycloak
      issuer: https://id.example.com/realms/matrix
      client_id: matrix
      client_secret: keycloak-client-secret
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile email"
      discovery_mode: disabled
      authorization_endpoint: https://id.example.com/auth
      token_endpoint: https://id.example.com/token
      jwks_uri: https://id.example.com/jwks
      claims_imports:
        localpart:
          action: require
          template: "{{ user.preferred_username }}"
        email:
          action: suggest
          template: "{{ user.email }}"
          set_email_verification: always
"#,
    );
    let out = run_cli(&config, &["config", "check"]);
    let err = stderr(&out);
    assert!(out.status.success(), "a provider block from MAS's older guides must load:\n{err}");
    let key = "`upstream_oauth2.providers[0].claims_imports.email.set_email_verification`";
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN") && l.contains(key)).collect();
    assert_eq!(warnings.len(), 1, "one warning naming {key}:\n{err}");
}

#[test]
fn a_key_neither_knows_is_an_error_naming_it() {
    let dir = tempdir();
    // Next to MAS's extras, so the stripping does not hide a typo.
    let config = write_test_config(dir.path(), &format!("{MAS_EXTRAS}\nmatrix:\n  secrte: typo\n"));
    let out = run_cli(&config, &["config", "check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("matrix") && err.contains("unknown field `secrte`"), "{err}");

    let config = write_test_config(dir.path(), "telemetri: {}\n");
    let err = stderr(&run_cli(&config, &["config", "check"]));
    assert!(err.contains("unknown field `telemetri`"), "{err}");
}

#[test]
fn several_config_files_merge_in_order() {
    let dir = tempdir();
    let base = write_test_config(dir.path(), "");
    let secrets = dir.path().join("secrets.yaml");
    std::fs::write(&secrets, "matrix:\n  homeserver: merged.example\n  secret: \"from-the-second-file\"\n")
        .expect("write");
    let out = crate::helpers::run_cli_multi(&[&base, &secrets], &["config", "dump"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dump = String::from_utf8_lossy(&out.stdout);
    let value: serde_yaml::Value = serde_yaml::from_str(&dump).expect("dump is YAML");
    assert_eq!(value["matrix"]["homeserver"].as_str(), Some("merged.example"), "the later file wins");
    assert!(value["matrix"]["endpoint"].as_str().is_some(), "keys of the first file stay");
    assert!(value["clients"].as_sequence().is_some_and(|c| !c.is_empty()), "sections of the first file stay");

    // APPLIANCE_CONFIG takes several files separated by `:`, as MAS_CONFIG does.
    let joined = format!("{}:{}", base.display(), secrets.display());
    let out = std::process::Command::new(crate::helpers::appliance_bin())
        .args(["config", "check"])
        .env("APPLIANCE_CONFIG", joined)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("homeserver merged.example"), "{out:?}");

    // A syntax error names the file it is in.
    std::fs::write(&secrets, "matrix: [unclosed\n").expect("write");
    let err = stderr(&crate::helpers::run_cli_multi(&[&base, &secrets], &["config", "check"]));
    assert!(err.contains(&secrets.display().to_string()), "{err}");
}
