use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, secrets::Secret};

/// `matrix`: the homeserver this service authenticates for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    #[serde(default)]
    pub kind: HomeserverKind,
    /// The server name: user IDs are `@localpart:<homeserver>`.
    #[serde(default = "default_homeserver")]
    pub homeserver: String,
    /// Shared secret with the homeserver (both directions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// How this service reaches the homeserver (internal URL).
    #[serde(default = "default_endpoint")]
    pub endpoint: Url,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeserverKind {
    /// Synapse >= 1.136 with `matrix_authentication_service:`; provisioning via `/_synapse/mas/*`.
    #[default]
    #[serde(alias = "synapse_modern")]
    Synapse,
    /// Synapse <= 1.156 with `experimental_features.msc3861`; provisioning via the admin API.
    SynapseLegacy,
}

fn default_homeserver() -> String {
    "localhost:8008".into()
}

fn default_endpoint() -> Url {
    Url::parse("http://localhost:8008/").expect("static URL")
}

impl MatrixConfig {
    pub(super) fn resolve_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        if let (Some(_), Some(_)) = (&self.secret, &self.secret_file) {
            return Err(ConfigError::new("matrix", "set only one of `secret` and `secret_file`"));
        }
        if let Some(file) = &self.secret_file {
            self.secret = Some(Secret::new(super::read_secret_file(base, file, "matrix.secret_file")?));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.secret {
            None => {
                return Err(ConfigError::new(
                    "matrix.secret",
                    "missing: set `secret` (a long random string shared with the homeserver) or `secret_file`",
                ));
            }
            Some(s) if s.expose().is_empty() => {
                return Err(ConfigError::new("matrix.secret", "must not be empty"));
            }
            _ => {}
        }
        if self.homeserver.is_empty() || self.homeserver.contains('/') || self.homeserver.contains('@') {
            return Err(ConfigError::new("matrix.homeserver", "expected a server name such as example.org"));
        }
        if !matches!(self.endpoint.scheme(), "http" | "https") {
            return Err(ConfigError::new("matrix.endpoint", "must be an http:// or https:// URL"));
        }
        Ok(())
    }

    pub fn secret(&self) -> &str {
        self.secret.as_ref().map(|s| s.expose()).unwrap_or_default()
    }

    /// `@localpart:server`
    pub fn mxid(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.homeserver)
    }

    /// Absolute URL of `path` on the homeserver's internal endpoint.
    pub fn endpoint_url(&self, path: &str) -> String {
        let base = self.endpoint.as_str().trim_end_matches('/');
        format!("{base}/{}", path.trim_start_matches('/'))
    }
}
