use std::path::PathBuf;

use super::synapse_import::{Imported, quoted};
use crate::config::Config;
use crate::crypto::keys::SigningKey;
use crate::rng::{OsRng, Rng};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print a complete, commented configuration with fresh random secrets.
    Generate {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Take the server name, URLs, shared secret, email and registration settings from
        /// Synapse's homeserver.yaml (repeatable: merged in order).
        #[arg(short, long = "synapse-config", value_name = "homeserver.yaml")]
        synapse_config: Vec<PathBuf>,
    },
    /// Validate the configuration; exits non-zero with the offending key on error.
    Check,
    /// Print the effective configuration with secrets redacted.
    Dump,
    /// Print the homeserver.yaml section and reverse-proxy rules (nginx, Caddy) for this config.
    Synapse {
        /// The homeserver's public URL, where clients reach /_matrix (default https://<matrix.homeserver>/).
        #[arg(long)]
        homeserver_url: Option<url::Url>,
        /// Print only this part.
        #[arg(long, value_enum)]
        part: Option<super::synapse_config::Part>,
    },
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

pub fn run(config_path: &[PathBuf], cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Generate { output, synapse_config } => {
            let imported = super::synapse_import::read(&synapse_config)?;
            let text = generate_from(&imported)?;
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
            let config = Config::load_all(config_path)?;
            // Files the server reads at start are part of a valid configuration.
            config.branding.load_logo()?;
            println!(
                "{} is valid: issuer {}, homeserver {} ({:?}), database {}",
                config_path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + "),
                config.http.issuer(),
                config.matrix.homeserver,
                config.matrix.kind,
                config.database_path().display()
            );
            Ok(())
        }
        Command::Synapse { homeserver_url, part } => {
            let config = Config::load_all(config_path)?;
            print!("{}", super::synapse_config::render(&config, homeserver_url.as_ref(), part));
            Ok(())
        }
        Command::Dump => {
            let config = Config::load_all(config_path)?;
            print!("{}", config.redacted_yaml());
            Ok(())
        }
        Command::Sync { prune, dry_run } => {
            let config = Config::load_all(config_path)?;
            super::runtime()?.block_on(sync(config, prune, dry_run))
        }
        Command::Systemd { binary, user } => {
            let binary = match binary {
                Some(b) => std::path::absolute(b)?,
                None => std::env::current_exe()?,
            };
            // Several files: `--config a.yaml --config b.yaml`, merged in the same order.
            let config = config_path
                .iter()
                .map(|p| std::path::absolute(p).map(|p| p.display().to_string()))
                .collect::<Result<Vec<_>, _>>()?
                .join(" --config ");
            print!("{}", super::systemd::unit(&binary.display().to_string(), &config, &user));
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
            crate::lifecycle::site_keys::load_or_generate(&config, &store, &SystemClock, &crate::rng::OsRng)
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
    generate_from(&Imported::default())
}

/// Like `generate`, with what `imported` took from Synapse's homeserver.yaml.
pub fn generate_from(imported: &Imported) -> anyhow::Result<String> {
    // The operator's new secrets come from the OS (a command, no app state to inject from).
    let rng: &dyn Rng = &OsRng;
    let random_alnum = |n| rng.alnum(n);
    let rsa = SigningKey::generate_rsa()?;
    let ec = SigningKey::generate_p256();
    let synapse_client_secret = imported.legacy_client_secret.clone().unwrap_or_else(|| random_alnum(40));
    let encryption = hex::encode(rng.bytes::<32>());
    let server_name = imported.server_name.clone().unwrap_or_else(|| "example.org".into());
    let domain = server_name.split(':').next().unwrap_or(&server_name).to_string();
    let port = imported.listen_port.unwrap_or(8080);
    let kind = if imported.legacy { "synapse_legacy" } else { "synapse" };
    let secret = match (&imported.secret, &imported.secret_file) {
        (_, Some(file)) => format!("secret_file: {}", quoted(file)),
        (Some(secret), None) => format!("secret: {}", quoted(secret)),
        (None, None) => format!("secret: {}", quoted(&random_alnum(40))),
    };
    let endpoint = imported.endpoint.clone().unwrap_or_else(|| "http://127.0.0.1:8008/".into());
    let header = if imported.files.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = imported.files.iter().map(|f| f.display().to_string()).collect();
        format!(
            "# Settings marked (homeserver.yaml) come from {}.\n# The homeserver's public URL there: {}\n",
            names.join(" + "),
            imported.public_baseurl.as_deref().unwrap_or("(public_baseurl not set)")
        )
    };
    let from_hs = |taken: bool| if taken { " (homeserver.yaml)" } else { "" };
    let registration = format!(
        "  password_registration_enabled: {}{}\n  password_registration_email_required: {}\n  registration_token_required: {}\n",
        imported.registration.unwrap_or(false),
        if imported.registration.is_some() {
            "  # (homeserver.yaml: enable_registration, registrations_require_3pid, registration_requires_token)"
        } else {
            ""
        },
        imported.registration_email_required.unwrap_or(true),
        imported.registration_token_required.unwrap_or(false),
    );
    let email = match &imported.email {
        None => "# email:\n#   from: '\"example.org accounts\" <accounts@example.org>'\n#   transport: smtp\n#   mode: starttls\n#   hostname: smtp.example.org\n#   username: accounts\n#   password: \"…\"\n".to_string(),
        Some(e) => {
            let mut s = "# (homeserver.yaml: email)\nemail:\n".to_string();
            if let Some(from) = &e.from {
                s += &format!("  from: {}\n  reply_to: {}\n", quoted(from), quoted(from));
            }
            s += &format!("  transport: smtp\n  mode: {}\n", e.mode);
            if let Some(h) = &e.hostname {
                s += &format!("  hostname: {}\n", quoted(h));
            }
            if let Some(p) = e.port {
                s += &format!("  port: {p}\n");
            }
            if let Some(u) = &e.username {
                s += &format!("  username: {}\n", quoted(u));
            }
            if let Some(p) = &e.password {
                s += &format!("  password: {}\n", quoted(p));
            }
            s
        }
    };
    let pepper = match &imported.pepper {
        None => String::new(),
        Some(_) => "# (homeserver.yaml: password_config.pepper) Synapse peppers its bcrypt hashes. This service\n\
                    # hashes with argon2id and does not import Synapse's hashes, so the pepper is not used: users\n\
                    # set a password here (`manage set-password`, or /recover with email).\n"
            .to_string(),
    };
    Ok(format!(
        r#"# appliance configuration. Paths are relative to this file.
{header}
http:
  # The public URL of this service, as browsers and Matrix clients reach it (through your reverse proxy).
  public_base: "https://auth.{domain}/"
  # The OpenID issuer; defaults to public_base.
  # issuer: "https://auth.{domain}/"
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
        - address: "127.0.0.1:{port}"
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
  kind: {kind}
  # The homeserver's server name: user IDs are @name:<homeserver>.{hs_server}
  homeserver: {server_name_q}
  # Shared with Synapse (matrix_authentication_service.secret, or admin_token in legacy mode).{hs_secret}
  {secret}
  # How this service reaches Synapse.{hs_endpoint}
  endpoint: {endpoint_q}

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
{pepper}passwords:
  enabled: true
  # zxcvbn strength (0-4) new passwords must reach.
  minimum_complexity: 3
  schemes:
    - version: 1
      algorithm: argon2id

account:
{registration}  password_recovery_enabled: false
  email_change_allowed: true
  displayname_change_allowed: true
  password_change_allowed: true
  account_deactivation_allowed: true
  login_with_email_allowed: false

{email}
branding:
  service_name: "{domain} accounts"
  # tos_uri: "https://{domain}/terms"
  # policy_uri: "https://{domain}/privacy"
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
        server_name_q = quoted(&server_name),
        endpoint_q = quoted(&endpoint),
        hs_server = from_hs(imported.server_name.is_some()),
        hs_secret = from_hs(imported.secret.is_some() || imported.secret_file.is_some()),
        hs_endpoint = from_hs(imported.endpoint.is_some()),
        rsa_kid = rsa.kid,
        rsa_pem = indent(&rsa.to_pem(), 8),
        ec_kid = ec.kid,
        ec_pem = indent(&ec.to_pem(), 8),
    ))
}
