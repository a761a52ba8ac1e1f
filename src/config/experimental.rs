use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `experimental`: token lifetimes and inactive-session expiry (MAS's keys and defaults).
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
    /// Sessions unused for a while are ended (MAS's key); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_session_expiration: Option<InactiveSessionExpirationConfig>,
    /// Seconds after which a dynamically registered client that never completed a grant is
    /// deleted (anyone may register one; an application that is still in use registers again).
    #[serde(default = "default_dynamic_client_ttl")]
    pub dynamic_client_ttl: i64,
}

fn default_dynamic_client_ttl() -> i64 {
    86400
}

/// `experimental.inactive_session_expiration`: sessions whose last activity is older than `ttl`
/// are ended and their devices deleted, per kind (MAS's keys and defaults).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InactiveSessionExpirationConfig {
    /// Seconds without activity after which a session ends (600–7776000, ten minutes to 90 days).
    pub ttl: i64,
    /// End idle sessions of the Matrix legacy login API.
    #[serde(default = "yes")]
    pub expire_compat_sessions: bool,
    /// End idle OAuth 2.0 sessions of users (not the clients' own `client_credentials` sessions).
    #[serde(default = "yes")]
    pub expire_oauth_sessions: bool,
    /// End idle browser sign-ins.
    #[serde(default = "yes")]
    pub expire_user_sessions: bool,
}

fn yes() -> bool {
    true
}

impl InactiveSessionExpirationConfig {
    /// The bounds MAS puts on `ttl`.
    pub const TTL_RANGE: std::ops::RangeInclusive<i64> = 600..=7_776_000;

    /// Expiry for every kind of session after `ttl` seconds.
    pub fn all(ttl: i64) -> Self {
        Self { ttl, expire_compat_sessions: true, expire_oauth_sessions: true, expire_user_sessions: true }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !Self::TTL_RANGE.contains(&self.ttl) {
            return Err(ConfigError::new(
                "experimental.inactive_session_expiration.ttl",
                "must be between 600 seconds (ten minutes) and 7776000 seconds (90 days)",
            ));
        }
        Ok(())
    }
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
            inactive_session_expiration: None,
            dynamic_client_ttl: default_dynamic_client_ttl(),
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
        if !(600..=365 * 86400).contains(&self.dynamic_client_ttl) {
            return Err(ConfigError::new("experimental.dynamic_client_ttl", "must be between 600 seconds and a year"));
        }
        if let Some(expiry) = &self.inactive_session_expiration {
            expiry.validate()?;
        }
        Ok(())
    }
}
