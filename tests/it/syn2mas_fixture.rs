//! A small Synapse database written by hand (the import tables of Synapse 1.163.2, as in the
//! bench), for `syn2mas` tests that need exact rows rather than a running Synapse: external ids of
//! several providers, tokens without a device, a bcrypt hash made as Synapse makes it.

use std::path::{Path, PathBuf};
use std::process::Output;

use rusqlite::{Connection, params};
use unicode_normalization::UnicodeNormalization;

const SCHEMA: &str = include_str!("../fixtures/synapse_schema.sql");

/// Synapse's `password_config.pepper` in these fixtures.
pub(crate) const PEPPER: &str = "pepper-of-the-fixture";

/// A ULID for the upstream provider that takes over Synapse's `oidc-github` logins.
pub(crate) const GITHUB: &str = "01J5SYNAPSEGTHB00000000001";

/// The appliance config of an import: the bcrypt scheme with the pepper below argon2id, and an
/// upstream provider with `synapse_idp_id: oidc-github`.
pub(crate) fn appliance_patch() -> String {
    format!(
        r#"
passwords:
  schemes:
    - version: 1
      algorithm: bcrypt
      secret: "{PEPPER}"
      unicode_normalization: true
    - version: 2
      algorithm: argon2id
      memory_kib: 64
      iterations: 1
upstream_oauth2:
  providers:
    - id: {GITHUB}
      synapse_idp_id: oidc-github
      human_name: GitHub
      issuer: "https://github.example/"
      client_id: matrix
      client_secret: "github-client-secret"
      token_endpoint_auth_method: client_secret_basic
      scope: "openid profile"
"#
    )
}

/// A Synapse SQLite database and the homeserver.yaml naming it (server_name `localhost`, as the
/// test config's `matrix.homeserver`).
pub(crate) struct SynapseDb {
    pub(crate) conn: Connection,
    pub(crate) homeserver_yaml: PathBuf,
    next_token: i64,
}

impl SynapseDb {
    pub(crate) fn create(dir: &Path) -> SynapseDb {
        let db = dir.join("homeserver.db");
        let conn = Connection::open(&db).expect("create the Synapse database");
        conn.execute_batch(SCHEMA).expect("Synapse's schema");
        let homeserver_yaml = dir.join("homeserver.yaml");
        std::fs::write(
            &homeserver_yaml,
            format!(
                "server_name: localhost\ndatabase:\n  name: sqlite3\n  args:\n    database: {}\n\
                 password_config:\n  pepper: {PEPPER}\n",
                db.display()
            ),
        )
        .expect("write homeserver.yaml");
        SynapseDb { conn, homeserver_yaml, next_token: 0 }
    }

    /// A user as Synapse registers one; `password` is hashed as Synapse 1.163.2 does (NFKC, pepper
    /// appended, bcrypt; cost 4 to keep the test fast).
    pub(crate) fn user(&self, localpart: &str, password: Option<&str>, admin: bool) {
        let hash = password.map(|p| {
            let peppered = format!("{}{PEPPER}", p.nfkc().collect::<String>());
            bcrypt::hash(peppered, 4).expect("bcrypt")
        });
        self.conn
            .execute(
                "INSERT INTO users (name, password_hash, creation_ts, admin) VALUES (?1, ?2, 1700000000, ?3)",
                params![format!("@{localpart}:localhost"), hash, admin],
            )
            .expect("insert user");
    }

    pub(crate) fn deactivate(&self, localpart: &str) {
        self.conn
            .execute(
                "UPDATE users SET deactivated = 1, password_hash = NULL WHERE name = ?1",
                [format!("@{localpart}:localhost")],
            )
            .expect("deactivate");
    }

    pub(crate) fn external_id(&self, localpart: &str, auth_provider: &str, external_id: &str) {
        self.conn
            .execute(
                "INSERT INTO user_external_ids (auth_provider, external_id, user_id) VALUES (?1, ?2, ?3)",
                params![auth_provider, external_id, format!("@{localpart}:localhost")],
            )
            .expect("insert external id");
    }

    pub(crate) fn device(&self, localpart: &str, device_id: &str) {
        self.conn
            .execute(
                "INSERT INTO devices (user_id, device_id, display_name, last_seen, ip, user_agent)
                 VALUES (?1, ?2, 'Element', 1700000100000, '192.0.2.7', 'Mozilla/5.0')",
                params![format!("@{localpart}:localhost"), device_id],
            )
            .expect("insert device");
    }

    /// An access token of `device_id`, or one without a device (`None`, as Synapse's admin API
    /// and very old clients left them).
    pub(crate) fn access_token(&mut self, localpart: &str, device_id: Option<&str>, token: &str) {
        self.next_token += 1;
        self.conn
            .execute(
                "INSERT INTO access_tokens (id, user_id, device_id, token, last_validated)
                 VALUES (?1, ?2, ?3, ?4, 1700000100000)",
                params![self.next_token, format!("@{localpart}:localhost"), device_id, token],
            )
            .expect("insert access token");
    }

    /// `appliance syn2mas --synapse-config homeserver.yaml ARGS…` with the appliance `config`.
    pub(crate) fn syn2mas(&self, config: &Path, args: &[&str]) -> Output {
        let mut all = vec!["syn2mas", "--synapse-config", self.homeserver_yaml.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        tokio::task::block_in_place(|| crate::helpers::run_cli(config, &all))
    }
}

/// Exit code, stdout and stderr of a CLI run, for assertions' messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
