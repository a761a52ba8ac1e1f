//! `config generate --synapse-config homeserver.yaml` (MAS's flag): the settings an existing
//! Synapse already has, carried into the generated config. Several files are merged in order,
//! as Synapse does with `-c a.yaml -c b.yaml`.

use std::path::PathBuf;

use serde_yaml::Value;

/// What the generated config takes from homeserver.yaml; every field optional.
#[derive(Default, Debug)]
pub struct Imported {
    /// `server_name` → `matrix.homeserver`.
    pub server_name: Option<String>,
    /// `public_baseurl`: the homeserver's public URL (comments, `config synapse --homeserver-url`).
    pub public_baseurl: Option<String>,
    /// Synapse's client listener → `matrix.endpoint` (else `public_baseurl`).
    pub endpoint: Option<String>,
    /// `matrix_authentication_service.endpoint`'s port → this service's listener.
    pub listen_port: Option<u16>,
    /// `matrix_authentication_service.secret` (or msc3861's `admin_token`) → `matrix.secret`.
    pub secret: Option<String>,
    /// `matrix_authentication_service.secret_path` → `matrix.secret_file`.
    pub secret_file: Option<String>,
    /// `experimental_features.msc3861` enabled: `matrix.kind: synapse_legacy`.
    pub legacy: bool,
    /// msc3861's `client_secret` → the `0000000000000000000SYNAPSE` client's secret.
    pub legacy_client_secret: Option<String>,
    /// `password_config.pepper`.
    pub pepper: Option<String>,
    /// `enable_registration`, `registrations_require_3pid` has email, `registration_requires_token`.
    pub registration: Option<bool>,
    pub registration_email_required: Option<bool>,
    pub registration_token_required: Option<bool>,
    /// `email`: SMTP settings and the From address.
    pub email: Option<ImportedEmail>,
    /// The files read, for the header comment.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Default)]
pub struct ImportedEmail {
    pub from: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// plain | tls | starttls
    pub mode: &'static str,
}

/// Deep merge, later files winning (mappings merge, everything else is replaced).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    match cur {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_bool()
}

pub fn read(paths: &[PathBuf]) -> anyhow::Result<Imported> {
    let mut hs = Value::Mapping(Default::default());
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let value: Value =
            serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not YAML: {e}", path.display()))?;
        merge(&mut hs, value);
    }
    let mut out = Imported { files: paths.to_vec(), ..Default::default() };
    out.server_name = str_at(&hs, &["server_name"]);
    out.public_baseurl = str_at(&hs, &["public_baseurl"]);
    out.endpoint = client_listener(&hs).or_else(|| out.public_baseurl.clone());

    if bool_at(&hs, &["matrix_authentication_service", "enabled"]).unwrap_or(false) {
        out.secret = str_at(&hs, &["matrix_authentication_service", "secret"]);
        out.secret_file = str_at(&hs, &["matrix_authentication_service", "secret_path"]);
        out.listen_port = str_at(&hs, &["matrix_authentication_service", "endpoint"])
            .and_then(|e| url::Url::parse(&e).ok())
            .and_then(|u| u.port_or_known_default());
    } else if bool_at(&hs, &["experimental_features", "msc3861", "enabled"]).unwrap_or(false) {
        out.legacy = true;
        out.secret = str_at(&hs, &["experimental_features", "msc3861", "admin_token"]);
        out.legacy_client_secret = str_at(&hs, &["experimental_features", "msc3861", "client_secret"]);
        out.listen_port = str_at(&hs, &["experimental_features", "msc3861", "issuer"])
            .and_then(|e| url::Url::parse(&e).ok())
            .and_then(|u| u.port());
    }

    out.pepper = str_at(&hs, &["password_config", "pepper"]);

    if let Some(enabled) = bool_at(&hs, &["enable_registration"]) {
        out.registration = Some(enabled);
        let threepids = hs.get("registrations_require_3pid").and_then(Value::as_sequence);
        out.registration_email_required =
            Some(threepids.is_some_and(|s| s.iter().any(|m| m.as_str() == Some("email"))));
        out.registration_token_required = Some(bool_at(&hs, &["registration_requires_token"]).unwrap_or(false));
    }

    if let Some(email) = hs.get("email").filter(|e| e.is_mapping()) {
        let app = str_at(email, &["app_name"]).unwrap_or_else(|| "Matrix".into());
        let mode = if bool_at(email, &["force_tls"]).unwrap_or(false) {
            "tls"
        } else if bool_at(email, &["enable_tls"]) == Some(false) {
            "plain"
        } else {
            "starttls"
        };
        out.email = Some(ImportedEmail {
            from: str_at(email, &["notif_from"]).map(|f| f.replace("%(app)s", &app)),
            hostname: str_at(email, &["smtp_host"]),
            port: str_at(email, &["smtp_port"]).and_then(|p| p.parse().ok()),
            username: str_at(email, &["smtp_user"]),
            password: str_at(email, &["smtp_pass"]),
            mode,
        });
    }
    Ok(out)
}

/// `http://127.0.0.1:PORT/` of Synapse's first plain-http listener serving `client`.
fn client_listener(hs: &Value) -> Option<String> {
    let listeners = hs.get("listeners")?.as_sequence()?;
    listeners.iter().find_map(|l| {
        let http = l.get("type").and_then(Value::as_str) == Some("http");
        let tls = l.get("tls").and_then(Value::as_bool).unwrap_or(false);
        let client = l.get("resources")?.as_sequence()?.iter().any(|r| {
            r.get("names").and_then(Value::as_sequence).is_some_and(|n| n.iter().any(|n| n.as_str() == Some("client")))
        });
        let port = l.get("port")?.as_u64()?;
        (http && !tls && client).then(|| format!("http://127.0.0.1:{port}/"))
    })
}

/// A YAML double-quoted string.
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
