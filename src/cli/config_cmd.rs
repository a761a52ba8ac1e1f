use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::crypto::keys::SigningKey;
use crate::crypto::{random_alnum, random_bytes};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print a complete, commented configuration with fresh random secrets.
    Generate {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Validate the configuration; exits non-zero with the offending key on error.
    Check,
    /// Print the effective configuration with secrets redacted.
    Dump,
    /// Print the homeserver.yaml section and reverse-proxy rules for this config.
    Synapse,
    /// Sync the clients of the config file into the database.
    Sync {
        /// Delete config-managed clients that are no longer in the file.
        #[arg(long)]
        prune: bool,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a hardened systemd service unit running `serve` with this config (`--config`).
    Systemd {
        /// The binary ExecStart runs; defaults to this executable.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The user (and group) the service runs as.
        #[arg(long, default_value = "appliance")]
        user: String,
    },
}

pub fn run(config_path: &Path, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Generate { output } => {
            let text = generate()?;
            match output {
                Some(path) => {
                    anyhow::ensure!(!path.exists(), "{} already exists", path.display());
                    std::fs::write(&path, text)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Check => {
            let config = Config::load(config_path)?;
            // Files the server reads at start are part of a valid configuration.
            config.branding.load_logo()?;
            println!(
                "{} is valid: issuer {}, homeserver {} ({:?}), database {}",
                config_path.display(),
                config.http.issuer(),
                config.matrix.homeserver,
                config.matrix.kind,
                config.database_path().display()
            );
            Ok(())
        }
        Command::Synapse => {
            let config = Config::load(config_path)?;
            print!("{}", super::synapse_config::render(&config));
            Ok(())
        }
        Command::Dump => {
            let config = Config::load(config_path)?;
            print!("{}", config.redacted_yaml());
            Ok(())
        }
        Command::Sync { prune, dry_run } => {
            let config = Config::load(config_path)?;
            super::runtime()?.block_on(sync(config, prune, dry_run))
        }
        Command::Systemd { binary, user } => {
            let binary = match binary {
                Some(b) => std::path::absolute(b)?,
                None => std::env::current_exe()?,
            };
            let config = std::path::absolute(config_path)?;
            print!("{}", super::systemd::unit(&binary.display().to_string(), &config.display().to_string(), &user));
            Ok(())
        }
    }
}

async fn sync(config: Config, prune: bool, dry_run: bool) -> anyhow::Result<()> {
    use crate::clock::{Clock, SystemClock};
    let path = config.database_path();
    let readers = config.database.read_connections;
    let store = tokio::task::spawn_blocking(move || crate::store::Store::open(&path, readers)).await??;
    let keys = {
        let (config, store) = (config.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            crate::lifecycle::site_keys::load_or_generate(&config, &store, &SystemClock)
        })
        .await??
    };
    let encrypter = crate::crypto::encrypter::Encrypter::new(&keys.encryption);
    let plan = crate::lifecycle::clients::sync(&config, &store, &encrypter, prune, dry_run, SystemClock.now()).await?;
    let verb = |now: &str, later: &str| {
        if dry_run { later.to_string() } else { now.to_string() }
    };
    for id in &plan.added {
        println!("{} client {id}", verb("added", "would add"));
    }
    for id in &plan.updated {
        println!("{} client {id}", verb("updated", "would update"));
    }
    for id in &plan.stale {
        if prune {
            println!("{} client {id}", verb("deleted", "would delete"));
        } else {
            println!("client {id} is no longer in the config (use --prune to delete it)");
        }
    }
    println!(
        "{} added, {} updated, {} unchanged, {} {}{}",
        plan.added.len(),
        plan.updated.len(),
        plan.unchanged.len(),
        plan.stale.len(),
        if prune { "deleted" } else { "stale" },
        if dry_run { " (dry run: nothing changed)" } else { "" }
    );
    let plan =
        crate::lifecycle::upstream_providers::sync(&config, &store, &encrypter, prune, dry_run, SystemClock.now())
            .await?;
    for (ids, now, later) in [
        (&plan.added, "added", "would add"),
        (&plan.updated, "updated", "would update"),
        (&plan.stale, if prune { "deleted" } else { "disabled" }, if prune { "would delete" } else { "would disable" }),
    ] {
        for id in ids {
            println!("{} upstream provider {id}", verb(now, later));
        }
    }
    if !config.upstream_oauth2.providers.is_empty() || !plan.stale.is_empty() {
        println!(
            "upstream providers: {} added, {} updated, {} unchanged, {} {}",
            plan.added.len(),
            plan.updated.len(),
            plan.unchanged.len(),
            plan.stale.len(),
            if prune { "deleted" } else { "disabled" },
        );
    }
    Ok(())
}

fn indent(pem: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    pem.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A complete config with fresh secrets; every section is commented.
pub fn generate() -> anyhow::Result<String> {
    let rsa = SigningKey::generate_rsa()?;
    let ec = SigningKey::generate_p256();
    let synapse_client_secret = random_alnum(40);
    let matrix_secret = random_alnum(40);
    let encryption = hex::encode(random_bytes::<32>());
    Ok(format!(
        r#"# appliance configuration. Paths are relative to this file.

http:
  # The public URL of this service, as browsers and Matrix clients reach it (through your reverse proxy).
  public_base: "https://auth.example.org/"
  # The OpenID issuer; defaults to public_base.
  # issuer: "https://auth.example.org/"
  # Proxies whose X-Forwarded-For header is believed.
  trusted_proxies: ["127.0.0.0/8", "::1/128"]
  listeners:
    # The public listener, behind the reverse proxy.
    - name: web
      resources:
        - name: discovery
        - name: human
        - name: oauth
        - name: compat
        - name: assets
        - name: health
      binds:
        - address: "127.0.0.1:8080"
    # Internal listener: health checks and Prometheus metrics; keep it off the internet.
    - name: internal
      resources:
        - name: health
        - name: prometheus
        # The admin REST API (/api/admin/v1, MAS-compatible); needs a token with urn:mas:admin.
        # - name: adminapi
      binds:
        - address: "127.0.0.1:8081"

database:
  # The one SQLite file holding all state (the systemd unit allows writes under /var/lib/appliance).
  # Back it up with `appliance database backup FILE`.
  path: "/var/lib/appliance/appliance.db"

matrix:
  # `synapse` for Synapse >= 1.136 (matrix_authentication_service section);
  # `synapse_legacy` for Synapse <= 1.156 with experimental_features.msc3861.
  kind: synapse
  # The homeserver's server name: user IDs are @name:<homeserver>.
  homeserver: "example.org"
  # Shared with Synapse (matrix_authentication_service.secret, or admin_token in legacy mode).
  secret: "{matrix_secret}"
  # How this service reaches Synapse.
  endpoint: "http://127.0.0.1:8008/"

# OAuth clients managed by this file. Legacy Synapse (msc3861) introspects as this client;
# modern Synapse uses matrix.secret instead and does not need it.
clients:
  - client_id: 0000000000000000000SYNAPSE
    client_auth_method: client_secret_basic
    client_secret: "{synapse_client_secret}"

# Optional: without this section, keys are generated on first start and kept in the database.
secrets:
  # 32 bytes, hex. Encrypts cookies and stored client secrets: never change it.
  encryption: "{encryption}"
  keys:
    - kid: "{rsa_kid}"
      key: |
{rsa_pem}    - kid: "{ec_kid}"
      key: |
{ec_pem}
passwords:
  enabled: true
  # zxcvbn strength (0-4) new passwords must reach.
  minimum_complexity: 3
  schemes:
    - version: 1
      algorithm: argon2id

account:
  password_registration_enabled: false
  password_registration_email_required: true
  registration_token_required: false
  password_recovery_enabled: false
  email_change_allowed: true
  displayname_change_allowed: true
  password_change_allowed: true
  account_deactivation_allowed: true
  login_with_email_allowed: false

branding:
  service_name: "example.org accounts"
  # tos_uri: "https://example.org/terms"
  # policy_uri: "https://example.org/privacy"
  # logo_path: "/etc/appliance/logo.svg"

# Who may administer (MAS's policy.data keys).
# policy:
#   data:
#     # Clients that may get urn:mas:admin (the admin API) with the client_credentials grant.
#     admin_clients: ["01J0000000000000000000ADM1"]
#     # Users who may request urn:synapse:admin:* and urn:mas:admin without `manage promote-admin`.
#     admin_users: ["alice"]

# Clients authenticating with signed assertions (client_secret_jwt, private_key_jwt).
# client_auth:
#   # Furthest ahead an assertion's exp may be, in seconds (Synapse's legacy mode sends 3600).
#   assertion_max_lifetime: 3600
#   # Networks a dynamically registered client's jwks_uri may resolve to besides public
#   # addresses (loopback, private, link-local and unique-local ones are refused by default).
#   jwks_uri_allowed_networks: ["10.0.0.0/8"]

# Sessions not used for `ttl` seconds (600 to 7776000) are ended and their devices deleted from
# the homeserver (MAS's experimental key). Off unless set; each kind can be kept.
# experimental:
#   inactive_session_expiration:
#     ttl: 7776000
#     expire_oauth_sessions: true
#     expire_compat_sessions: true
#     expire_user_sessions: true
"#,
        rsa_kid = rsa.kid,
        rsa_pem = indent(&rsa.to_pem(), 8),
        ec_kid = ec.kid,
        ec_pem = indent(&ec.to_pem(), 8),
    ))
}
