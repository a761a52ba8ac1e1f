use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `experimental`: token lifetimes (MAS's keys and defaults).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentalConfig {
    /// Lifetime of OAuth access tokens, in seconds (60–86400).
    #[serde(default = "default_ttl")]
    pub access_token_ttl: i64,
    /// Lifetime of refreshable compatibility access tokens, in seconds.
    #[serde(default = "default_ttl")]
    pub compat_token_ttl: i64,
}

fn default_ttl() -> i64 {
    300
}

impl Default for ExperimentalConfig {
    fn default() -> Self {
        Self { access_token_ttl: default_ttl(), compat_token_ttl: default_ttl() }
    }
}

impl ExperimentalConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=86400).contains(&self.access_token_ttl) {
            return Err(ConfigError::new("experimental.access_token_ttl", "must be between 60 and 86400 seconds"));
        }
        if !(60..=86400).contains(&self.compat_token_ttl) {
            return Err(ConfigError::new("experimental.compat_token_ttl", "must be between 60 and 86400 seconds"));
        }
        Ok(())
    }
}
