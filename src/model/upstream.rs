//! Upstream OAuth 2.0 / OIDC providers and the links between their accounts and local users.

use crate::config::UpstreamProviderConfig;

/// A provider as stored: its config block (secrets removed; the client secret is kept encrypted).
#[derive(Debug, Clone)]
pub struct UpstreamProvider {
    pub id: String,
    pub config: UpstreamProviderConfig,
    pub encrypted_client_secret: Option<String>,
    pub ui_order: i64,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// An upstream account `(provider, subject)`, linked to a local user or not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLink {
    pub id: String,
    pub provider_id: String,
    pub user_id: Option<String>,
    pub subject: String,
    pub human_account_name: Option<String>,
    pub created_at: i64,
}
