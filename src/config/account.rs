use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;

/// `account`: what users may do with their own account (MAS's keys and defaults).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    #[serde(default = "yes")]
    pub email_change_allowed: bool,
    #[serde(default = "yes")]
    pub displayname_change_allowed: bool,
    #[serde(default)]
    pub password_registration_enabled: bool,
    #[serde(default = "yes")]
    pub password_registration_email_required: bool,
    #[serde(default = "yes")]
    pub password_change_allowed: bool,
    #[serde(default)]
    pub password_recovery_enabled: bool,
    #[serde(default = "yes")]
    pub account_deactivation_allowed: bool,
    #[serde(default)]
    pub login_with_email_allowed: bool,
    #[serde(default, alias = "password_registration_token_required")]
    pub registration_token_required: bool,
}

impl Default for AccountConfig {
    fn default() -> Self {
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("all fields have defaults"))
    }
}

fn yes() -> bool {
    true
}

impl AccountConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// `branding`: how pages present the service.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imprint: Option<String>,
}
