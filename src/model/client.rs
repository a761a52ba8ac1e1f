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
    /// The stored authentication method; `None` when it cannot be read (a damaged row or one
    /// from a later version), which no request can then satisfy — never "public".
    pub fn auth_method(&self) -> Option<ClientAuthMethod> {
        ClientAuthMethod::parse(&self.metadata.token_endpoint_auth_method)
    }

    /// Only a client whose stored method is exactly `none`.
    pub fn is_public(&self) -> bool {
        self.auth_method() == Some(ClientAuthMethod::None)
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant)
    }

    pub fn display_name(&self) -> &str {
        self.metadata.client_name.as_deref().unwrap_or(&self.id)
    }
}

/// Schemes that never name an app: a browser acts on them itself.
const BROWSER_SCHEMES: [&str; 9] =
    ["javascript", "data", "vbscript", "file", "blob", "about", "filesystem", "view-source", "jar"];

/// An RFC 8252 §7.1 private-use URI scheme: a reverse domain name (`io.element.app`, two labels
/// at least), never one a browser handles itself (`javascript:`, `data:`, `vbscript:`, `file:`…).
pub fn is_private_use_scheme(scheme: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    !BROWSER_SCHEMES.contains(&scheme.as_str())
        && scheme.contains('.')
        && scheme.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// A loopback host: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Where a client may send a user back to: https with a host, http on a loopback host, or a
/// private-use scheme. No user info in any of them.
pub fn is_allowed_redirect(url: &url::Url) -> bool {
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => url.host_str().is_some_and(|h| !h.is_empty()),
        "http" => is_loopback_host(url),
        scheme => is_private_use_scheme(scheme),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_schemes() {
        let ok = |s: &str| is_allowed_redirect(&url::Url::parse(s).unwrap());
        for good in [
            "https://app.example/cb",
            "http://127.0.0.1:8080/cb",
            "http://[::1]/",
            "http://localhost/x",
            "io.element.app:/callback",
            "com.example.app://cb",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:/x",
            "data:text/html,x",
            "vbscript:x",
            "file:///etc/passwd",
            "blob:https://x/1",
            "http://evil.example/",
            "ftp://x/",
            "io:/cb",
            "element://connect",
            "https://user:pw@x.example/",
            "about:blank",
            "a..b:/x",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
