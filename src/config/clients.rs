use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, secrets::Secret};

/// An OAuth client declared in the config (the homeserver's own client among them).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// A ULID, e.g. `0000000000000000000SYNAPSE`.
    pub client_id: String,
    #[serde(default)]
    pub client_auth_method: ClientAuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<Url>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<Url>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    #[default]
    None,
    ClientSecretBasic,
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub const ALL: [ClientAuthMethod; 5] = [
        ClientAuthMethod::ClientSecretBasic,
        ClientAuthMethod::ClientSecretPost,
        ClientAuthMethod::ClientSecretJwt,
        ClientAuthMethod::PrivateKeyJwt,
        ClientAuthMethod::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "none",
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::ClientSecretJwt => "client_secret_jwt",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn needs_secret(self) -> bool {
        matches!(
            self,
            ClientAuthMethod::ClientSecretBasic
                | ClientAuthMethod::ClientSecretPost
                | ClientAuthMethod::ClientSecretJwt
        )
    }
}

impl ClientConfig {
    pub(super) fn resolve_files(&mut self, base: &Path, path: &str) -> Result<(), ConfigError> {
        if self.client_secret.is_some() && self.client_secret_file.is_some() {
            return Err(ConfigError::new(path, "set only one of `client_secret` and `client_secret_file`"));
        }
        if let Some(f) = &self.client_secret_file {
            let secret = super::read_secret_file(base, f, &format!("{path}.client_secret_file"))?;
            self.client_secret = Some(Secret::new(secret));
        }
        Ok(())
    }

    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if ulid::Ulid::from_string(&self.client_id).is_err() {
            return Err(ConfigError::new(
                format!("{path}.client_id"),
                format!("expected a ULID (26 characters of Crockford base32), got {:?}", self.client_id),
            ));
        }
        let method = self.client_auth_method;
        match (method.needs_secret(), &self.client_secret) {
            (true, None) => {
                return Err(ConfigError::new(
                    format!("{path}.client_secret"),
                    format!("missing: `{}` needs `client_secret` or `client_secret_file`", method.as_str()),
                ));
            }
            (false, Some(_)) => {
                return Err(ConfigError::new(
                    format!("{path}.client_secret"),
                    format!("not allowed with client_auth_method `{}`", method.as_str()),
                ));
            }
            _ => {}
        }
        if let Some(s) = &self.client_secret {
            if s.expose().is_empty() {
                return Err(ConfigError::new(format!("{path}.client_secret"), "must not be empty"));
            }
        }
        if method == ClientAuthMethod::PrivateKeyJwt {
            if self.jwks.is_some() == self.jwks_uri.is_some() {
                return Err(ConfigError::new(
                    path,
                    "private_key_jwt needs exactly one of `jwks` (a JWK set) and `jwks_uri`",
                ));
            }
        } else if self.jwks.is_some() || self.jwks_uri.is_some() {
            return Err(ConfigError::new(path, "`jwks`/`jwks_uri` only apply to private_key_jwt"));
        }
        if let Some(jwks) = &self.jwks {
            if !jwks.get("keys").is_some_and(|k| k.is_array()) {
                return Err(ConfigError::new(format!("{path}.jwks"), "expected a JWK set: {keys: [...]}"));
            }
        }
        for (i, uri) in self.redirect_uris.iter().enumerate() {
            if uri.fragment().is_some() {
                return Err(ConfigError::new(format!("{path}.redirect_uris[{i}]"), "must not have a fragment"));
            }
        }
        Ok(())
    }
}
