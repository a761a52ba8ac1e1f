use serde::{Deserialize, Serialize};

use super::ConfigError;

/// A token bucket: `burst` attempts at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: f64,
}

/// `rate_limiting`: per-process limits on credential endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    #[serde(default)]
    pub login: LoginLimits,
    #[serde(default = "default_registration")]
    pub registration: RateLimit,
    /// Password-recovery requests (`/recover`), per client IP and per email address.
    #[serde(default)]
    pub account_recovery: AddressLimits,
    /// Verification emails sent (account emails, registration), per client IP and per address.
    #[serde(default)]
    pub email_authentication: AddressLimits,
    /// Authorization requests (`/authorize`) per client IP: each one stores a grant.
    #[serde(default = "default_authorization")]
    pub authorization: RateLimit,
    /// Device authorizations started (`/oauth2/device`) per client IP.
    #[serde(default = "default_device_authorization")]
    pub device_authorization: RateLimit,
    /// Dynamic client registrations (`/oauth2/registration`) per client IP.
    #[serde(default = "default_client_registration")]
    pub client_registration: RateLimit,
    /// Legacy SSO logins started (`/_matrix/client/*/login/sso/redirect`) per client IP.
    #[serde(default = "default_authorization")]
    pub compat_sso: RateLimit,
}

fn default_authorization() -> RateLimit {
    RateLimit { burst: 30, per_second: 0.5 }
}
fn default_device_authorization() -> RateLimit {
    RateLimit { burst: 10, per_second: 0.1 }
}
fn default_client_registration() -> RateLimit {
    RateLimit { burst: 20, per_second: 1.0 / 60.0 }
}

/// A limit per client IP and one per email address (MAS's defaults: 3 at once, then one every
/// 20 minutes per IP and one an hour per address).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddressLimits {
    #[serde(default = "default_address_ip")]
    pub per_ip: RateLimit,
    #[serde(default = "default_address_address")]
    pub per_address: RateLimit,
}

fn default_address_ip() -> RateLimit {
    RateLimit { burst: 3, per_second: 0.000_833_3 }
}
fn default_address_address() -> RateLimit {
    RateLimit { burst: 3, per_second: 0.000_277_8 }
}

impl Default for AddressLimits {
    fn default() -> Self {
        Self { per_ip: default_address_ip(), per_address: default_address_address() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimits {
    /// Every attempt from one client IP.
    #[serde(default = "default_login_ip")]
    pub per_ip: RateLimit,
    /// Failed attempts against one account.
    #[serde(default = "default_login_account")]
    pub per_account: RateLimit,
}

fn default_login_ip() -> RateLimit {
    RateLimit { burst: 10, per_second: 0.1 }
}
fn default_login_account() -> RateLimit {
    RateLimit { burst: 10, per_second: 0.05 }
}
fn default_registration() -> RateLimit {
    RateLimit { burst: 3, per_second: 0.001 }
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self { per_ip: default_login_ip(), per_account: default_login_account() }
    }
}

impl Default for RateLimitingConfig {
    fn default() -> Self {
        Self {
            login: LoginLimits::default(),
            registration: default_registration(),
            account_recovery: AddressLimits::default(),
            email_authentication: AddressLimits::default(),
            authorization: default_authorization(),
            device_authorization: default_device_authorization(),
            client_registration: default_client_registration(),
            compat_sso: default_authorization(),
        }
    }
}

impl RateLimitingConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (path, l) in [
            ("rate_limiting.login.per_ip", self.login.per_ip),
            ("rate_limiting.login.per_account", self.login.per_account),
            ("rate_limiting.registration", self.registration),
            ("rate_limiting.account_recovery.per_ip", self.account_recovery.per_ip),
            ("rate_limiting.account_recovery.per_address", self.account_recovery.per_address),
            ("rate_limiting.email_authentication.per_ip", self.email_authentication.per_ip),
            ("rate_limiting.email_authentication.per_address", self.email_authentication.per_address),
            ("rate_limiting.authorization", self.authorization),
            ("rate_limiting.device_authorization", self.device_authorization),
            ("rate_limiting.client_registration", self.client_registration),
            ("rate_limiting.compat_sso", self.compat_sso),
        ] {
            if l.burst == 0 || l.per_second.is_nan() || l.per_second < 0.0 {
                return Err(ConfigError::new(path, "burst must be at least 1 and per_second not negative"));
            }
        }
        Ok(())
    }
}
