use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::secrets::Secret;

/// `passwords`: local password authentication.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// zxcvbn score (0–4) a new password must reach.
    #[serde(default = "default_complexity")]
    pub minimum_complexity: u8,
    /// Hashing schemes; the highest version hashes new passwords, older ones are upgraded on login.
    #[serde(default = "default_schemes")]
    pub schemes: Vec<PasswordScheme>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordScheme {
    pub version: u16,
    pub algorithm: PasswordAlgorithm,
    /// argon2 memory in KiB (default 19456, OWASP's recommendation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_kib: Option<u32>,
    /// argon2 passes (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// bcrypt: the pepper appended to each password (Synapse's `password_config.pepper`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// bcrypt: NFKC-normalise the password before hashing, as Synapse does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unicode_normalization: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordAlgorithm {
    Argon2id,
    /// Verifies password hashes imported from Synapse (`syn2mas`); never hashes new passwords.
    Bcrypt,
}

impl PasswordScheme {
    /// An argon2id scheme with default costs.
    pub fn argon2id(version: u16) -> Self {
        Self {
            version,
            algorithm: PasswordAlgorithm::Argon2id,
            memory_kib: None,
            iterations: None,
            secret: None,
            secret_file: None,
            unicode_normalization: false,
        }
    }
}

impl Default for PasswordsConfig {
    fn default() -> Self {
        Self { enabled: true, minimum_complexity: default_complexity(), schemes: default_schemes() }
    }
}

fn yes() -> bool {
    true
}
fn default_complexity() -> u8 {
    3
}
fn default_schemes() -> Vec<PasswordScheme> {
    vec![PasswordScheme::argon2id(1)]
}

impl PasswordsConfig {
    pub(super) fn resolve_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        for (i, s) in self.schemes.iter_mut().enumerate() {
            let path = format!("passwords.schemes[{i}]");
            if s.secret.is_some() && s.secret_file.is_some() {
                return Err(ConfigError::new(path, "set only one of `secret` and `secret_file`"));
            }
            if let Some(file) = &s.secret_file {
                s.secret = Some(Secret::new(super::read_secret_file(base, file, &format!("{path}.secret_file"))?));
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.minimum_complexity > 4 {
            return Err(ConfigError::new("passwords.minimum_complexity", "must be between 0 and 4"));
        }
        if self.schemes.is_empty() {
            return Err(ConfigError::new("passwords.schemes", "at least one scheme is required"));
        }
        let mut versions = std::collections::HashSet::new();
        for (i, s) in self.schemes.iter().enumerate() {
            if !versions.insert(s.version) {
                return Err(ConfigError::new(format!("passwords.schemes[{i}].version"), "versions must be unique"));
            }
            if s.memory_kib.is_some_and(|m| !(8..=4_194_304).contains(&m)) {
                return Err(ConfigError::new(format!("passwords.schemes[{i}].memory_kib"), "must be 8..=4194304"));
            }
            if s.iterations.is_some_and(|t| !(1..=100).contains(&t)) {
                return Err(ConfigError::new(format!("passwords.schemes[{i}].iterations"), "must be 1..=100"));
            }
            match s.algorithm {
                PasswordAlgorithm::Argon2id if s.secret.is_some() || s.unicode_normalization => {
                    return Err(ConfigError::new(
                        format!("passwords.schemes[{i}]"),
                        "`secret` and `unicode_normalization` apply to bcrypt schemes only",
                    ));
                }
                PasswordAlgorithm::Bcrypt if s.memory_kib.is_some() || s.iterations.is_some() => {
                    return Err(ConfigError::new(
                        format!("passwords.schemes[{i}]"),
                        "`memory_kib` and `iterations` apply to argon2id schemes only",
                    ));
                }
                _ => {}
            }
        }
        if self.current().algorithm == PasswordAlgorithm::Bcrypt {
            return Err(ConfigError::new(
                "passwords.schemes",
                "the highest version hashes new passwords and must be argon2id; bcrypt only verifies hashes imported \
                 from Synapse (add an argon2id scheme with a higher version)",
            ));
        }
        Ok(())
    }

    /// The bcrypt scheme that verifies Synapse's hashes, if one is configured.
    pub fn synapse_bcrypt(&self) -> Option<&PasswordScheme> {
        self.schemes.iter().filter(|s| s.algorithm == PasswordAlgorithm::Bcrypt).max_by_key(|s| s.version)
    }

    /// The scheme new hashes use.
    pub fn current(&self) -> &PasswordScheme {
        self.schemes.iter().max_by_key(|s| s.version).unwrap_or(&self.schemes[0])
    }
}
