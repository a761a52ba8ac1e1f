//! The YAML configuration: one struct per top-level section, each validated with errors that name
//! the YAML path of the offending key.

mod account;
mod client_auth;
mod clients;
mod database;
mod email;
mod experimental;
pub mod http;
mod mas_compat;
mod matrix;
mod passwords;
mod policy;
mod rate_limiting;
mod secrets;
mod upstream;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use account::{AccountConfig, BrandingConfig, MfaPolicy};
pub use client_auth::{ClientAuthConfig, Network};
pub use clients::{ClientAuthMethod, ClientConfig};
pub use database::DatabaseConfig;
pub use email::{EmailConfig, EmailTransportKind, SmtpMode};
pub use experimental::{ExperimentalConfig, InactiveSessionExpirationConfig};
pub use http::{BindConfig, HttpConfig, ListenerConfig, Resource};
pub use matrix::{HomeserverKind, MatrixConfig};
pub use passwords::{PasswordAlgorithm, PasswordScheme, PasswordsConfig};
pub use policy::{ClientRegistrationPolicy, PolicyConfig, PolicyData};
pub use rate_limiting::{RateLimit, RateLimitingConfig};
pub use secrets::{KeyConfig, Secret, SecretsConfig};
pub use upstream::{CLAIM_ROOTS, DEFAULT_DISPLAYNAME, DEFAULT_EMAIL, DEFAULT_LOCALPART, DEFAULT_SUBJECT, PARAM_ROOTS};
pub use upstream::{
    ClaimImport, ClaimsImports, DiscoveryMode, ImportAction, OnBackchannelLogout, OnConflict, PkceMethod, ResponseMode,
    UpstreamAuthMethod, UpstreamOAuth2Config, UpstreamProviderConfig,
};

/// A configuration problem, always naming where in the YAML it is.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    pub matrix: MatrixConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsConfig>,
    #[serde(default)]
    pub passwords: PasswordsConfig,
    #[serde(default)]
    pub account: AccountConfig,
    #[serde(default)]
    pub branding: BrandingConfig,
    #[serde(default)]
    pub experimental: ExperimentalConfig,
    #[serde(default)]
    pub rate_limiting: RateLimitingConfig,
    #[serde(default)]
    pub email: EmailConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub upstream_oauth2: UpstreamOAuth2Config,
    #[serde(default)]
    pub client_auth: ClientAuthConfig,
    /// Directory of the config file: relative paths (database, `*_file` secrets) resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// One line for each MAS key that was accepted and ignored (already logged as warnings).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads, parses and validates a config file; `*_file` secrets are read here.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::load_all(&[path.to_path_buf()])
    }

    /// Reads several config files and merges them in order, as MAS merges its `-c` files
    /// (mappings key by key, the later file winning). Relative paths resolve against the first
    /// file's directory. MAS keys this service does not use are dropped with a warning each.
    pub fn load_all(paths: &[PathBuf]) -> anyhow::Result<Self> {
        let first = paths.first().ok_or_else(|| anyhow::anyhow!("no config file given"))?;
        let base_dir = first
            .parent()
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let names = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ");
        let mut texts = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
            texts.push((path, text));
        }
        let config = if let [(_, text)] = texts.as_slice() {
            Self::parse(text, &base_dir)
        } else {
            let mut merged = mas_compat::empty();
            for (path, text) in &texts {
                let value: serde_yaml::Value = serde_yaml::from_str(text)
                    .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
                if !value.is_null() {
                    mas_compat::merge(&mut merged, value);
                }
            }
            Self::parse_value(merged, None, &base_dir)
        }
        .map_err(|e| anyhow::anyhow!("invalid config file {names}: {e}"))?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        Ok(config)
    }

    /// Parses YAML text; errors are `ConfigError`s naming the YAML path.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(yaml_error)?;
        Self::parse_value(value, Some(text), base_dir)
    }

    /// The typed parse of a YAML value, after MAS's unused keys are dropped. `text` is the
    /// source when the value is one file's, whose line numbers errors then name.
    fn parse_value(mut value: serde_yaml::Value, text: Option<&str>, base_dir: &Path) -> Result<Self, ConfigError> {
        let warnings = mas_compat::strip(&mut value);
        // Through YAML text, not `from_value`: serde_yaml's text parser names the path of a bad key.
        let mut config: Config = match text {
            Some(text) if warnings.is_empty() => serde_yaml::from_str(text).map_err(yaml_error)?,
            _ => {
                let text = serde_yaml::to_string(&value).map_err(|e| ConfigError::new("(root)", e.to_string()))?;
                serde_yaml::from_str(&text).map_err(|e| without_position(yaml_error(e)))?
            }
        };
        config.base_dir = base_dir.to_path_buf();
        config.warnings = warnings;
        config.resolve_files()?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_files(&mut self) -> Result<(), ConfigError> {
        let base = self.base_dir.clone();
        self.matrix.resolve_files(&base)?;
        for (i, client) in self.clients.iter_mut().enumerate() {
            client.resolve_files(&base, &format!("clients[{i}]"))?;
        }
        if let Some(secrets) = &mut self.secrets {
            secrets.resolve_files(&base)?;
        }
        self.email.resolve_files(&base)?;
        self.upstream_oauth2.resolve_files(&base)?;
        self.passwords.resolve_files(&base)?;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.database.validate()?;
        self.matrix.validate()?;
        let mut seen = std::collections::HashSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            client.validate(&format!("clients[{i}]"))?;
            if !seen.insert(client.client_id.to_uppercase()) {
                return Err(ConfigError::new(
                    format!("clients[{i}].client_id"),
                    format!("duplicate client id {}", client.client_id),
                ));
            }
        }
        if let Some(secrets) = &self.secrets {
            secrets.validate()?;
        }
        self.passwords.validate()?;
        self.account.validate()?;
        self.branding.validate()?;
        self.experimental.validate()?;
        self.rate_limiting.validate()?;
        self.email.validate()?;
        self.policy.validate()?;
        self.upstream_oauth2.validate()?;
        self.client_auth.validate()?;
        Ok(())
    }

    /// The database file, resolved against the config file's directory.
    pub fn database_path(&self) -> PathBuf {
        resolve_path(&self.base_dir, &self.database.path)
    }

    /// The effective config as YAML with every secret replaced by a placeholder.
    pub fn redacted_yaml(&self) -> String {
        let mut copy = self.clone();
        copy.matrix.secret = Some(secrets::Secret::redacted());
        copy.matrix.secret_file = None;
        for client in &mut copy.clients {
            if client.client_secret.is_some() || client.client_secret_file.is_some() {
                client.client_secret = Some(secrets::Secret::redacted());
                client.client_secret_file = None;
            }
        }
        for p in &mut copy.upstream_oauth2.providers {
            if p.client_secret.is_some() || p.client_secret_file.is_some() {
                p.client_secret = Some(secrets::Secret::redacted());
                p.client_secret_file = None;
            }
            if let Some(apple) = &mut p.sign_in_with_apple {
                apple.private_key = Some(secrets::Secret::redacted());
                apple.private_key_file = None;
            }
        }
        if let Some(s) = &mut copy.secrets {
            s.redact();
        }
        for scheme in &mut copy.passwords.schemes {
            if scheme.secret.is_some() || scheme.secret_file.is_some() {
                scheme.secret = Some(secrets::Secret::redacted());
                scheme.secret_file = None;
            }
        }
        if copy.email.password.is_some() || copy.email.password_file.is_some() {
            copy.email.password = Some(secrets::Secret::redacted());
            copy.email.password_file = None;
        }
        serde_yaml::to_string(&copy).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

pub(crate) fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

/// Reads a `*_file` secret; the content is trimmed like Synapse's `secret_path`.
pub(crate) fn read_secret_file(base: &Path, file: &Path, yaml_path: &str) -> Result<String, ConfigError> {
    let full = resolve_path(base, file);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| ConfigError::new(yaml_path, format!("cannot read {}: {e}", full.display())))?;
    let trimmed = text.trim().to_string();
    if trimmed.is_empty() {
        return Err(ConfigError::new(yaml_path, format!("{} is empty", full.display())));
    }
    Ok(trimmed)
}

/// Drops " at line L column C": after a merge, positions are in text the operator never saw.
fn without_position(mut e: ConfigError) -> ConfigError {
    if let Some(at) = e.message.rfind(" at line ") {
        e.message.truncate(at);
    }
    e
}

fn yaml_error(e: serde_yaml::Error) -> ConfigError {
    // serde_yaml renders "path.to.key: message at line L column C"; split the path off when present.
    let text = e.to_string();
    match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => ConfigError::new(path, message),
        _ => ConfigError::new("(root)", text),
    }
}

#[cfg(test)]
mod tests;
