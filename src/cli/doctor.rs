//! `appliance doctor`: checks each link of the chain from the config and says what to fix.
//!
//! First this service's own links (config, database, keys, discovery, the homeserver's admin
//! side), then the path a Matrix client follows (`doctor_client.rs`): the server name's
//! `.well-known/matrix/client`, the homeserver's `auth_metadata`, the legacy login API through
//! the public URL, the issuer's scheme and the clocks. Every failure names the file and line to change.

use std::path::PathBuf;

use super::yaml_lines::YamlFile;
use crate::config::{Config, HomeserverKind};
use crate::homeserver::HomeserverError;

#[derive(clap::Args)]
pub struct Args {
    /// Synapse's homeserver.yaml, so that failures name its lines.
    #[arg(long, value_name = "homeserver.yaml")]
    pub synapse_config: Option<PathBuf>,
    /// Where to fetch /.well-known/matrix/client (default https://<matrix.homeserver>/, or http
    /// for a loopback server name); e.g. to check a setup before its DNS points at it.
    #[arg(long, value_name = "URL")]
    pub server_url: Option<url::Url>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report: what was seen and, unless all is well, what to change where.
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: String,
}

impl Finding {
    pub fn ok(what: impl Into<String>) -> Finding {
        Finding { level: Level::Ok, what: what.into(), fix: String::new() }
    }
    pub fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { level: Level::Warn, what: what.into(), fix: fix.into() }
    }
    pub fn fail(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { level: Level::Fail, what: what.into(), fix: fix.into() }
    }
}

/// What the checks know about the files an operator edits.
pub struct Files {
    /// The config file(s), last one first: a key is reported where it is set.
    configs: Vec<YamlFile>,
    /// homeserver.yaml, when given.
    homeserver: Option<YamlFile>,
}

impl Files {
    /// Where to change a key of this service's config: the last file that sets it, else the last file.
    pub fn config(&self, dotted: &str) -> String {
        let file = self.configs.iter().find(|f| f.has(dotted)).or(self.configs.first());
        file.map(|f| f.locate(dotted)).unwrap_or_else(|| format!("config.yaml ({dotted})"))
    }

    /// Where to change a key of Synapse's homeserver.yaml.
    pub fn homeserver(&self, dotted: &str) -> String {
        match &self.homeserver {
            Some(f) => f.locate(dotted),
            None => format!("homeserver.yaml ({dotted}; pass --synapse-config to get its line)"),
        }
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub async fn run(config_paths: &[PathBuf], args: Args) -> anyhow::Result<()> {
    let last = config_paths.last().ok_or_else(|| anyhow::anyhow!("no config file"))?;
    let config = Config::load(last)?;
    let names: Vec<String> = config_paths.iter().map(|p| p.display().to_string()).collect();
    println!("✓ config {} is valid", names.join(" + "));
    let files = Files {
        configs: config_paths.iter().rev().map(|p| YamlFile::read(p)).collect(),
        homeserver: args.synapse_config.as_deref().map(YamlFile::read),
    };
    let server_url = args.server_url;
    let findings = tokio::task::spawn_blocking(move || {
        let mut out = check_blocking(&config, &files);
        out.extend(super::doctor_client::check(&config, &files, server_url.as_ref()));
        out
    })
    .await?;
    let (mut failures, mut warnings) = (0, 0);
    for f in &findings {
        match f.level {
            Level::Ok => println!("✓ {}", f.what),
            Level::Warn => {
                warnings += 1;
                println!("⚠ {}\n    → {}", f.what, f.fix)
            }
            Level::Fail => {
                failures += 1;
                println!("✗ {}\n    → {}", f.what, f.fix)
            }
        }
    }
    if failures == 0 {
        if warnings == 0 {
            println!("everything looks right");
        } else {
            println!("everything works; {warnings} warning(s) above");
        }
        Ok(())
    } else {
        anyhow::bail!("{failures} problem(s) found")
    }
}

/// A blocking HTTP client that returns every status as a response.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn check_blocking(config: &Config, files: &Files) -> Vec<Finding> {
    let mut out = Vec::new();
    let db = config.database_path();
    match crate::store::Store::open(&db, 1) {
        Ok(store) => {
            out.push(Finding::ok(format!("database {} opens and is migrated", db.display())));
            match crate::lifecycle::site_keys::load_or_generate(
                config,
                &store,
                &crate::clock::SystemClock,
                &crate::rng::OsRng,
            ) {
                Ok(k) => out.push(Finding::ok(format!("signing keys: {}", k.keystore.algs().join(", ")))),
                Err(e) => out.push(Finding::fail(
                    format!("signing keys: {e}"),
                    format!("check {}", files.config("secrets.keys")),
                )),
            }
        }
        Err(e) => out.push(Finding::fail(
            format!("database {}: {e}", db.display()),
            format!("check {} and the directory's permissions", files.config("database.path")),
        )),
    }

    let agent = agent();
    let discovery = config.http.url(".well-known/openid-configuration");
    match agent.get(&discovery).call() {
        Ok(mut res) if res.status() == 200 => {
            let doc: serde_json::Value = res.body_mut().read_json().unwrap_or_default();
            let issuer = config.http.issuer().to_string();
            if doc.get("issuer").and_then(|i| i.as_str()) == Some(issuer.as_str()) {
                out.push(Finding::ok(format!("discovery reachable at {discovery}")));
            } else {
                let theirs = doc.get("issuer").and_then(|i| i.as_str()).unwrap_or("(none)");
                let fix = if config.http.issuer.is_some() {
                    format!(
                        "{} says {issuer}, but the service at {} announces {theirs}: set http.issuer to the \
                         issuer this service announces, or fix {} if it points at another service",
                        files.config("http.issuer"),
                        config.http.public_base,
                        files.config("http.public_base")
                    )
                } else {
                    format!(
                        "{} must be the URL of this service; expected issuer {issuer}",
                        files.config("http.public_base")
                    )
                };
                out.push(Finding::fail(format!("{discovery} answers with the issuer {theirs}, not {issuer}"), fix));
            }
        }
        Ok(res) => out.push(Finding::fail(
            format!("{discovery} answered {}", res.status()),
            format!(
                "is the reverse proxy forwarding {} to this service? (`appliance config synapse --part nginx-service`)",
                config.http.public_base
            ),
        )),
        Err(e) => out.push(Finding::fail(
            format!("cannot reach {discovery}: {e}"),
            format!("start `appliance serve`, and check {} and the reverse proxy", files.config("http.public_base")),
        )),
    }

    let versions = config.matrix.endpoint_url("_matrix/client/versions");
    match agent.get(&versions).call() {
        Ok(res) if res.status() == 200 => {
            out.push(Finding::ok(format!("homeserver reachable at {}", config.matrix.endpoint)))
        }
        Ok(res) => out.push(Finding::fail(
            format!("{versions} answered {}", res.status()),
            format!("{} must point at Synapse's client listener", files.config("matrix.endpoint")),
        )),
        Err(e) => {
            out.push(Finding::fail(
                format!("cannot reach the homeserver at {}: {e}", config.matrix.endpoint),
                format!("start Synapse, or fix {}", files.config("matrix.endpoint")),
            ));
            return out;
        }
    }

    let hs = crate::homeserver::connect(&config.matrix);
    let (mode, fix) = match config.matrix.kind {
        HomeserverKind::Synapse => (
            "modern (/_synapse/mas)",
            format!(
                "matrix.secret must equal matrix_authentication_service.secret: {} or {}",
                files.config("matrix.secret"),
                files.homeserver("matrix_authentication_service.secret")
            ),
        ),
        HomeserverKind::SynapseLegacy => (
            "legacy (admin API)",
            format!(
                "matrix.secret must equal experimental_features.msc3861.admin_token: {} or {}",
                files.config("matrix.secret"),
                files.homeserver("experimental_features.msc3861.admin_token")
            ),
        ),
    };
    match hs.check_secret() {
        Ok(()) => out.push(Finding::ok(format!("the homeserver accepts matrix.secret ({mode})"))),
        Err(HomeserverError::Unauthorized(code)) => {
            out.push(Finding::fail(format!("the homeserver refuses matrix.secret (HTTP {code})"), fix))
        }
        Err(HomeserverError::Unexpected { status: 404, .. }) => out.push(Finding::fail(
            format!("the homeserver does not serve the {mode} API"),
            format!(
                "enable delegation in {} (`appliance config synapse --part synapse` prints the section), or set {} to match",
                files.homeserver(match config.matrix.kind {
                    HomeserverKind::Synapse => "matrix_authentication_service",
                    HomeserverKind::SynapseLegacy => "experimental_features.msc3861",
                }),
                files.config("matrix.kind")
            ),
        )),
        Err(e) => out.push(Finding::fail(format!("secret check failed: {e}"), fix)),
    }

    match hs.server_version() {
        Ok(v) => {
            let parsed = parse_version(&v);
            let fits = match (config.matrix.kind, parsed) {
                (HomeserverKind::Synapse, Some(ver)) => ver >= (1, 136),
                (HomeserverKind::SynapseLegacy, Some(ver)) => ver <= (1, 156),
                (_, None) => true,
            };
            if fits {
                out.push(Finding::ok(format!("Synapse {v} suits matrix.kind {:?}", config.matrix.kind)));
            } else {
                let want = match config.matrix.kind {
                    HomeserverKind::Synapse => format!(
                        "synapse needs Synapse 1.136 or newer: upgrade Synapse or set {} to synapse_legacy",
                        files.config("matrix.kind")
                    ),
                    HomeserverKind::SynapseLegacy => format!(
                        "synapse_legacy needs Synapse 1.156 or older: set {} to synapse and use matrix_authentication_service",
                        files.config("matrix.kind")
                    ),
                };
                out.push(Finding::fail(
                    format!("Synapse {v} does not suit matrix.kind {:?}", config.matrix.kind),
                    want,
                ));
            }
        }
        Err(e) => out.push(Finding::fail(
            format!("cannot read Synapse's version: {e}"),
            format!("is /_synapse/admin reachable at {}?", files.config("matrix.endpoint")),
        )),
    }
    out
}

/// The config key the issuer comes from: `http.issuer` when the config sets it, else `http.public_base`.
pub fn our_issuer_key(config: &Config) -> &'static str {
    if config.http.issuer.is_some() { "http.issuer" } else { "http.public_base" }
}

/// Whether a host name is the local machine (plain http is fine there, for testing).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
