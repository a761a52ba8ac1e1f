use serde::{Deserialize, Serialize};

use super::ConfigError;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordAlgorithm {
    Argon2id,
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
    vec![PasswordScheme { version: 1, algorithm: PasswordAlgorithm::Argon2id, memory_kib: None, iterations: None }]
}

impl PasswordsConfig {
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
        }
        Ok(())
    }

    /// The scheme new hashes use.
    pub fn current(&self) -> &PasswordScheme {
        self.schemes.iter().max_by_key(|s| s.version).unwrap_or(&self.schemes[0])
    }
}
