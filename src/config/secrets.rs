use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;

/// A secret string: never printed by `Debug`, compared only in constant time by its users.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub(super) fn redacted() -> Self {
        Self("[redacted]".into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `secrets`: optional. When absent, keys are generated on first start and kept in the database.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 bytes as 64 hex digits: encrypts cookies and secrets at rest. Never change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_file: Option<PathBuf>,
    /// Signing keys (PEM, PKCS#1/PKCS#8 RSA or SEC1/PKCS#8 P-256).
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl SecretsConfig {
    pub(super) fn resolve_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        if self.encryption.is_some() && self.encryption_file.is_some() {
            return Err(ConfigError::new("secrets", "set only one of `encryption` and `encryption_file`"));
        }
        if let Some(f) = &self.encryption_file {
            self.encryption = Some(Secret::new(super::read_secret_file(base, f, "secrets.encryption_file")?));
        }
        for (i, k) in self.keys.iter_mut().enumerate() {
            let path = format!("secrets.keys[{i}]");
            match (&k.key, &k.key_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(path, "set only one of `key` and `key_file`"));
                }
                (None, None) => {
                    return Err(ConfigError::new(path, "missing `key` (a PEM private key) or `key_file`"));
                }
                (None, Some(f)) => {
                    let full = super::resolve_path(base, f);
                    let pem = std::fs::read_to_string(&full).map_err(|e| {
                        ConfigError::new(format!("{path}.key_file"), format!("cannot read {}: {e}", full.display()))
                    })?;
                    k.key = Some(Secret::new(pem));
                }
                (Some(_), None) => {}
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(enc) = &self.encryption {
            let bytes = hex::decode(enc.expose()).ok().filter(|b| b.len() == 32);
            if bytes.is_none() {
                return Err(ConfigError::new(
                    "secrets.encryption",
                    "expected 32 bytes as 64 hex digits (generate one with `openssl rand -hex 32`)",
                ));
            }
        }
        for (i, k) in self.keys.iter().enumerate() {
            let pem = k.key.as_ref().map(|s| s.expose()).unwrap_or_default();
            if let Err(e) = crate::crypto::keys::SigningKey::from_pem(pem, k.kid.clone()) {
                return Err(ConfigError::new(format!("secrets.keys[{i}].key"), e.to_string()));
            }
        }
        Ok(())
    }

    pub fn encryption_key(&self) -> Option<[u8; 32]> {
        let enc = self.encryption.as_ref()?;
        hex::decode(enc.expose()).ok()?.try_into().ok()
    }

    pub(super) fn redact(&mut self) {
        if self.encryption.is_some() {
            self.encryption = Some(Secret::redacted());
        }
        self.encryption_file = None;
        for k in &mut self.keys {
            k.key = Some(Secret::redacted());
            k.key_file = None;
        }
    }
}
