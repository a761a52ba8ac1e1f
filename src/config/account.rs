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
    /// Second factors: `optional` (default) or `required` (users without one set it up when they
    /// next sign in).
    #[serde(default)]
    pub mfa: MfaPolicy,
    /// Whether compat `m.login.password` (which cannot carry a second factor) works for a user
    /// with one. Refused with `M_FORBIDDEN` pointing to SSO by default.
    #[serde(default)]
    pub mfa_compat_password_login_allowed: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    #[default]
    Optional,
    Required,
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
    /// An image file (SVG, PNG, JPEG, WebP or GIF, at most 512 KiB) shown on every page instead of
    /// the built-in logo; read once at start and served from `/assets/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_path: Option<std::path::PathBuf>,
    /// The pages' language for browsers asking for none this service has (`en` or `de`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_language: Option<crate::i18n::Locale>,
}

/// Largest logo file accepted: it is kept in memory and sent with every first page view.
pub const MAX_LOGO_BYTES: u64 = 512 * 1024;

impl BrandingConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.logo_path {
            if logo_content_type(path).is_none() {
                return Err(ConfigError::new(
                    "branding.logo_path",
                    "must name a .svg, .png, .jpg, .jpeg, .webp or .gif file",
                ));
            }
        }
        Ok(())
    }

    /// Reads the configured logo: its content type and bytes.
    pub fn load_logo(&self) -> Result<Option<(&'static str, Vec<u8>)>, ConfigError> {
        let Some(path) = &self.logo_path else { return Ok(None) };
        let content_type = logo_content_type(path).ok_or_else(|| {
            ConfigError::new("branding.logo_path", "must name a .svg, .png, .jpg, .jpeg, .webp or .gif file")
        })?;
        let fail = |why: String| ConfigError::new("branding.logo_path", format!("{}: {why}", path.display()));
        let size = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?.len();
        if size > MAX_LOGO_BYTES {
            return Err(fail(format!("{size} bytes; at most {MAX_LOGO_BYTES} are allowed")));
        }
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        Ok(Some((content_type, bytes)))
    }
}

fn logo_content_type(path: &std::path::Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        _ => return None,
    })
}
