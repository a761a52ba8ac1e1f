use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ClientAuthMethod;

/// RFC 7591 client metadata, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub metadata: ClientMetadata,
    /// Encrypted with the site encryption key (needed in clear for `client_secret_jwt`).
    pub encrypted_secret: Option<String>,
    /// Declared in the config file (managed by `config sync`).
    pub is_static: bool,
    pub created_at: i64,
}

pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

impl Client {
    pub fn auth_method(&self) -> ClientAuthMethod {
        ClientAuthMethod::parse(&self.metadata.token_endpoint_auth_method).unwrap_or(ClientAuthMethod::None)
    }

    pub fn is_public(&self) -> bool {
        self.auth_method() == ClientAuthMethod::None
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant)
    }

    pub fn display_name(&self) -> &str {
        self.metadata.client_name.as_deref().unwrap_or(&self.id)
    }
}
