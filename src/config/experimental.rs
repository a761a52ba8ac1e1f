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
    /// How long a browser sign-in lasts before the password is asked again, in seconds.
    #[serde(default = "default_browser_ttl")]
    pub browser_session_ttl: i64,
}

fn default_browser_ttl() -> i64 {
    30 * 86400
}

fn default_ttl() -> i64 {
    300
}

impl Default for ExperimentalConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: default_ttl(),
            compat_token_ttl: default_ttl(),
            browser_session_ttl: default_browser_ttl(),
        }
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
        if !(300..=365 * 86400).contains(&self.browser_session_ttl) {
            return Err(ConfigError::new("experimental.browser_session_ttl", "must be between 300 seconds and a year"));
        }
        Ok(())
    }
}
