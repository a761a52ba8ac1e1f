//! `appliance doctor`: checks each link of the chain from the config and says what to fix.

use std::path::Path;

use crate::config::{Config, HomeserverKind};
use crate::homeserver::HomeserverError;

struct Report {
    failures: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("✓ {what}");
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.failures += 1;
        println!("✗ {what}\n    → {fix}");
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let mut r = Report { failures: 0 };
    r.ok(&format!("config {} is valid", config_path.display()));
    let config2 = config.clone();
    let report = tokio::task::spawn_blocking(move || check_blocking(&config2)).await?;
    for (ok, what, fix) in report {
        if ok { r.ok(&what) } else { r.fail(&what, &fix) }
    }
    if r.failures == 0 {
        println!("everything looks right");
        Ok(())
    } else {
        anyhow::bail!("{} problem(s) found", r.failures)
    }
}

fn check_blocking(config: &Config) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    let db = config.database_path();
    match crate::store::Store::open(&db, 1) {
        Ok(store) => {
            out.push((true, format!("database {} opens and is migrated", db.display()), String::new()));
            match crate::lifecycle::site_keys::load_or_generate(config, &store, &crate::clock::SystemClock) {
                Ok(k) => out.push((true, format!("signing keys: {}", k.keystore.algs().join(", ")), String::new())),
                Err(e) => out.push((false, format!("signing keys: {e}"), "check secrets.keys in the config".into())),
            }
        }
        Err(e) => out.push((
            false,
            format!("database {}: {e}", db.display()),
            "check database.path and the directory's permissions".into(),
        )),
    }

    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let discovery = config.http.url(".well-known/openid-configuration");
    match agent.get(&discovery).call() {
        Ok(mut res) if res.status() == 200 => {
            let doc: serde_json::Value = res.body_mut().read_json().unwrap_or_default();
            let issuer = config.http.issuer().to_string();
            if doc.get("issuer").and_then(|i| i.as_str()) == Some(issuer.as_str()) {
                out.push((true, format!("discovery reachable at {discovery}"), String::new()));
            } else {
                out.push((
                    false,
                    format!("{discovery} answers with another issuer"),
                    format!("http.public_base must be the URL of this service; expected issuer {issuer}"),
                ));
            }
        }
        Ok(res) => out.push((
            false,
            format!("{discovery} answered {}", res.status()),
            "is the reverse proxy forwarding to appliance?".into(),
        )),
        Err(e) => out.push((
            false,
            format!("cannot reach {discovery}: {e}"),
            "start `appliance serve`, and check http.public_base and the reverse proxy".into(),
        )),
    }

    let versions = config.matrix.endpoint_url("_matrix/client/versions");
    match agent.get(&versions).call() {
        Ok(res) if res.status() == 200 => {
            out.push((true, format!("homeserver reachable at {}", config.matrix.endpoint), String::new()))
        }
        Ok(res) => out.push((
            false,
            format!("{versions} answered {}", res.status()),
            "matrix.endpoint must point at Synapse's client listener".into(),
        )),
        Err(e) => {
            out.push((
                false,
                format!("cannot reach the homeserver at {}: {e}", config.matrix.endpoint),
                "start Synapse, or fix matrix.endpoint".into(),
            ));
            return out;
        }
    }

    let hs = crate::homeserver::connect(&config.matrix);
    let (mode, fix) = match config.matrix.kind {
        HomeserverKind::Synapse => (
            "modern (/_synapse/mas)",
            "matrix.secret must equal matrix_authentication_service.secret in homeserver.yaml",
        ),
        HomeserverKind::SynapseLegacy => (
            "legacy (admin API)",
            "matrix.secret must equal experimental_features.msc3861.admin_token in homeserver.yaml",
        ),
    };
    match hs.check_secret() {
        Ok(()) => out.push((true, format!("the homeserver accepts matrix.secret ({mode})"), String::new())),
        Err(HomeserverError::Unauthorized(code)) => out.push((false, format!("the homeserver refuses matrix.secret (HTTP {code})"), fix.into())),
        Err(HomeserverError::Unexpected { status: 404, .. }) => out.push((
            false,
            format!("the homeserver does not serve the {mode} API"),
            "enable delegation in homeserver.yaml (`appliance config synapse` prints the section), or set matrix.kind to match".into(),
        )),
        Err(e) => out.push((false, format!("secret check failed: {e}"), fix.into())),
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
                out.push((true, format!("Synapse {v} suits matrix.kind {:?}", config.matrix.kind), String::new()));
            } else {
                let want = match config.matrix.kind {
                    HomeserverKind::Synapse => {
                        "synapse needs Synapse 1.136 or newer: upgrade Synapse or use kind synapse_legacy"
                    }
                    HomeserverKind::SynapseLegacy => {
                        "synapse_legacy needs Synapse 1.156 or older: use matrix.kind synapse with matrix_authentication_service"
                    }
                };
                out.push((
                    false,
                    format!("Synapse {v} does not suit matrix.kind {:?}", config.matrix.kind),
                    want.into(),
                ));
            }
        }
        Err(e) => out.push((
            false,
            format!("cannot read Synapse's version: {e}"),
            "is /_synapse/admin reachable at matrix.endpoint?".into(),
        )),
    }
    out
}
