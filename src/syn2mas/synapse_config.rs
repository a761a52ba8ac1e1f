//! The parts of Synapse's homeserver.yaml the importer needs. Read leniently (Synapse's config has
//! hundreds of keys): only what is named here is looked at. Several files merge as Synapse merges
//! its `--config-path`s: top-level keys of later files win.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone)]
pub struct SynapseConfig {
    pub server_name: String,
    pub database: SynapseDatabase,
    pub password_enabled: bool,
    pub password_localdb: bool,
    /// `password_config.pepper` ("" when unset, as Synapse does).
    pub pepper: String,
    pub allow_guest_access: bool,
    pub enable_registration: bool,
    /// `enable_3pid_changes` when set explicitly.
    pub enable_3pid_changes: Option<bool>,
    pub login_via_existing_session: bool,
    pub user_consent: bool,
    pub registration_captcha: bool,
    pub cas: bool,
    pub saml: bool,
    pub jwt: bool,
    pub password_providers: bool,
    /// `auth_provider` values of the configured OIDC providers (`oidc`, `oidc-<idp_id>`).
    pub oidc_auth_providers: Vec<String>,
    /// (address, port) of each listener, for "is Synapse still running?".
    pub listeners: Vec<(String, u16)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SynapseDatabase {
    Sqlite(PathBuf),
    /// libpq keywords from `database.args` (`user`, `password`, `dbname`/`database`, `host`, `port`, …).
    Postgres(Vec<(String, String)>),
}

impl SynapseConfig {
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let mut merged = Mapping::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read Synapse config {}", path.display()))?;
            let value: Value =
                serde_yaml::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?;
            match value {
                Value::Mapping(m) => merged.extend(m),
                Value::Null => {}
                _ => bail!("{}: the top level is not a mapping", path.display()),
            }
        }
        let base = paths.first().and_then(|p| p.parent()).unwrap_or(Path::new("."));
        Self::from_mapping(&merged, base)
    }

    fn from_mapping(m: &Mapping, base: &Path) -> anyhow::Result<Self> {
        let root = Value::Mapping(m.clone());
        let server_name = str_at(&root, &["server_name"]).context("homeserver.yaml has no `server_name`")?.to_string();
        let database = database(&root, base)?;
        let oidc_auth_providers = oidc_providers(&root);
        let listeners = root
            .get("listeners")
            .and_then(Value::as_sequence)
            .map(|ls| ls.iter().flat_map(listener_addresses).collect())
            .unwrap_or_default();
        Ok(SynapseConfig {
            server_name,
            database,
            password_enabled: bool_at(&root, &["password_config", "enabled"]).unwrap_or(true),
            password_localdb: bool_at(&root, &["password_config", "localdb_enabled"]).unwrap_or(true),
            pepper: str_at(&root, &["password_config", "pepper"]).unwrap_or("").to_string(),
            allow_guest_access: bool_at(&root, &["allow_guest_access"]).unwrap_or(false),
            enable_registration: bool_at(&root, &["enable_registration"]).unwrap_or(false),
            enable_3pid_changes: bool_at(&root, &["enable_3pid_changes"]),
            login_via_existing_session: bool_at(&root, &["login_via_existing_session", "enabled"]).unwrap_or(false),
            user_consent: root.get("user_consent").is_some_and(|v| !v.is_null()),
            registration_captcha: bool_at(&root, &["enable_registration_captcha"]).unwrap_or(false),
            cas: bool_at(&root, &["cas_config", "enabled"]).unwrap_or(false),
            saml: root.get("saml2_config").is_some_and(|v| {
                bool_at(v, &["enabled"]).unwrap_or_else(|| v.get("sp_config").is_some_and(|s| !s.is_null()))
            }),
            jwt: bool_at(&root, &["jwt_config", "enabled"]).unwrap_or(false),
            password_providers: root
                .get("password_providers")
                .and_then(Value::as_sequence)
                .is_some_and(|s| !s.is_empty()),
            oidc_auth_providers,
            listeners,
        })
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn database(root: &Value, base: &Path) -> anyhow::Result<SynapseDatabase> {
    let Some(db) = root.get("database") else {
        // Synapse's default: sqlite3 `homeserver.db` in the working directory.
        return Ok(SynapseDatabase::Sqlite(base.join("homeserver.db")));
    };
    let name = str_at(db, &["name"]).unwrap_or("sqlite3");
    let args = db.get("args").and_then(Value::as_mapping).cloned().unwrap_or_default();
    match name {
        "sqlite3" => {
            let file = args
                .get("database")
                .and_then(Value::as_str)
                .context("homeserver.yaml: database.args.database (the SQLite file) is missing")?;
            if file == ":memory:" {
                bail!("homeserver.yaml: database.args.database is `:memory:`; there is nothing to import");
            }
            let path = PathBuf::from(file);
            Ok(SynapseDatabase::Sqlite(if path.is_absolute() { path } else { base.join(path) }))
        }
        "psycopg2" | "psycopg" => {
            let mut out = Vec::new();
            for (k, v) in &args {
                let (Some(k), Some(v)) = (k.as_str(), scalar_text(v)) else { continue };
                // Synapse's own pool settings, not connection keywords.
                if matches!(k, "cp_min" | "cp_max" | "cp_reconnect") {
                    continue;
                }
                out.push((if k == "database" { "dbname".to_string() } else { k.to_string() }, v));
            }
            Ok(SynapseDatabase::Postgres(out))
        }
        other => bail!("homeserver.yaml: database.name `{other}` is neither sqlite3 nor psycopg2"),
    }
}

/// `auth_provider` strings Synapse stores for its OIDC providers.
fn oidc_providers(root: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if root.get("oidc_config").is_some_and(|c| bool_at(c, &["enabled"]).unwrap_or(true) && !c.is_null()) {
        out.push("oidc".to_string());
    }
    for p in root.get("oidc_providers").and_then(Value::as_sequence).into_iter().flatten() {
        if let Some(id) = str_at(p, &["idp_id"]) {
            out.push(if id == "oidc" || id.starts_with("oidc-") { id.to_string() } else { format!("oidc-{id}") });
        }
    }
    out
}

fn listener_addresses(l: &Value) -> Vec<(String, u16)> {
    let Some(port) = l.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()) else {
        return Vec::new();
    };
    let binds: Vec<String> = match l.get("bind_addresses").and_then(Value::as_sequence) {
        Some(seq) => seq.iter().filter_map(Value::as_str).map(String::from).collect(),
        None => vec!["::".into(), "0.0.0.0".into()],
    };
    binds
        .into_iter()
        .map(|a| match a.as_str() {
            "" | "0.0.0.0" => ("127.0.0.1".to_string(), port),
            "::" => ("::1".to_string(), port),
            _ => (a, port),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> anyhow::Result<SynapseConfig> {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        SynapseConfig::from_mapping(v.as_mapping().unwrap(), Path::new("/srv/synapse"))
    }

    #[test]
    fn sqlite_and_postgres_sections() {
        let c = parse("server_name: example.org\ndatabase: {name: sqlite3, args: {database: hs.db}}").unwrap();
        assert_eq!(c.database, SynapseDatabase::Sqlite("/srv/synapse/hs.db".into()));
        assert_eq!(c.pepper, "");
        assert!(c.password_enabled && c.password_localdb && !c.allow_guest_access);

        let c = parse(
            "server_name: example.org\ndatabase:\n  name: psycopg2\n  args: {user: synapse, password: s3cret, database: synapse, host: /run/postgresql, port: 5432, cp_min: 5}\n\
             password_config: {pepper: pep}\nallow_guest_access: true\noidc_providers: [{idp_id: github}, {idp_id: oidc-x}]\n\
             listeners: [{port: 8008, bind_addresses: ['127.0.0.1']}, {port: 9000}]",
        )
        .unwrap();
        let SynapseDatabase::Postgres(args) = &c.database else { panic!("{:?}", c.database) };
        assert!(args.contains(&("dbname".into(), "synapse".into())));
        assert!(args.contains(&("port".into(), "5432".into())));
        assert!(!args.iter().any(|(k, _)| k == "cp_min"));
        assert_eq!(c.pepper, "pep");
        assert!(c.allow_guest_access);
        assert_eq!(c.oidc_auth_providers, ["oidc-github", "oidc-x"]);
        assert_eq!(
            c.listeners,
            [("127.0.0.1".to_string(), 8008), ("::1".to_string(), 9000), ("127.0.0.1".to_string(), 9000)]
        );
    }

    #[test]
    fn bad_sections_are_named() {
        assert!(
            parse("database: {name: sqlite3, args: {database: x}}").unwrap_err().to_string().contains("server_name")
        );
        let e = parse("server_name: x\ndatabase: {name: sqlite3, args: {database: ':memory:'}}").unwrap_err();
        assert!(e.to_string().contains(":memory:"), "{e}");
        let e = parse("server_name: x\ndatabase: {name: mysql}").unwrap_err();
        assert!(e.to_string().contains("mysql"), "{e}");
    }
}
