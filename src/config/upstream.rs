//! `upstream_oauth2`: upstream OAuth 2.0 / OpenID Connect providers people can sign in with,
//! with MAS's keys, defaults and meanings, so a MAS provider block works unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, secrets::Secret};
use crate::model::template::Template;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth2Config {
    #[serde(default)]
    pub providers: Vec<UpstreamProviderConfig>,
}

/// One `upstream_oauth2.providers[]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamProviderConfig {
    /// A ULID; stable key between the config and the database, part of the callback URL.
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Synapse's `idp_id` for this provider (only used to map imported Synapse users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synapse_idp_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_name: Option<String>,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    pub token_endpoint_auth_method: UpstreamAuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_with_apple: Option<SignInWithAppleConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_signing_alg: Option<String>,
    #[serde(default = "rs256")]
    pub id_token_signed_response_alg: String,
    pub scope: String,
    #[serde(default)]
    pub discovery_mode: DiscoveryMode,
    #[serde(default)]
    pub pkce_method: PkceMethod,
    #[serde(default)]
    pub fetch_userinfo: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<ResponseMode>,
    #[serde(default)]
    pub claims_imports: ClaimsImports,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_authorization_parameters: BTreeMap<String, String>,
    /// Deprecated alias for `additional_authorization_parameters.login_hint: "{{ params.login_hint }}"`.
    #[serde(default)]
    pub forward_login_hint: bool,
    #[serde(default)]
    pub on_backchannel_logout: OnBackchannelLogout,
    #[serde(default)]
    pub registration_token_required: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignInWithAppleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    pub team_id: String,
    pub key_id: String,
}

impl SignInWithAppleConfig {
    /// Team and key ids present, and the key (after `private_key_file` was read) an ES256 key:
    /// P-256 in PKCS#8 PEM, as Apple's `.p8` file is. The errors never quote the key.
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        for (key, value) in [("team_id", &self.team_id), ("key_id", &self.key_id)] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.{key}"),
                    "must not be empty (see Apple's developer portal)",
                ));
            }
        }
        let Some(key) = &self.private_key else {
            return Err(ConfigError::new(
                format!("{path}.private_key"),
                "missing: set `private_key` or `private_key_file`",
            ));
        };
        let at = match &self.private_key_file {
            Some(f) => format!("{path}.private_key_file ({})", f.display()),
            None => format!("{path}.private_key"),
        };
        if !key.expose().contains("-----BEGIN PRIVATE KEY-----") {
            return Err(ConfigError::new(
                at,
                "not a PEM private key: expected the text of the `.p8` file from Apple's developer portal",
            ));
        }
        jwt_simple::prelude::ES256KeyPair::from_pem(key.expose()).map_err(|_| {
            ConfigError::new(at, "not an ES256 key: Sign in with Apple needs a P-256 (prime256v1) key in PKCS#8 form, as in Apple's `.p8` file")
        })?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
    SignInWithApple,
}

impl UpstreamAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretJwt => "client_secret_jwt",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::SignInWithApple => "sign_in_with_apple",
        }
    }
    fn needs_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost | Self::ClientSecretJwt)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    #[default]
    Oidc,
    Insecure,
    Disabled,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PkceMethod {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    #[default]
    Query,
    FormPost,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackchannelLogout {
    #[default]
    DoNothing,
    LogoutBrowserOnly,
    LogoutAll,
}

impl OnBackchannelLogout {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DoNothing => "do_nothing",
            Self::LogoutBrowserOnly => "logout_browser_only",
            Self::LogoutAll => "logout_all",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsImports {
    #[serde(default)]
    pub subject: SubjectImport,
    #[serde(default)]
    pub skip_confirmation: bool,
    #[serde(default)]
    pub localpart: LocalpartImport,
    #[serde(default)]
    pub displayname: ClaimImport,
    #[serde(default)]
    pub email: ClaimImport,
    #[serde(default)]
    pub account_name: AccountNameImport,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectImport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountNameImport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalpartImport {
    #[serde(default)]
    pub action: ImportAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default)]
    pub on_conflict: OnConflict,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimImport {
    #[serde(default)]
    pub action: ImportAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportAction {
    #[default]
    Ignore,
    Suggest,
    Force,
    Require,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    #[default]
    Fail,
    Add,
    Replace,
    Set,
}

/// The variables claim templates may use.
pub const CLAIM_ROOTS: &[&str] = &["user", "id_token_claims", "userinfo_claims", "extra_callback_parameters"];
/// The variables `additional_authorization_parameters` templates may use.
pub const PARAM_ROOTS: &[&str] = &["params", "logged_out"];

pub const DEFAULT_SUBJECT: &str = "{{ user.sub }}";
pub const DEFAULT_LOCALPART: &str = "{{ user.preferred_username }}";
pub const DEFAULT_DISPLAYNAME: &str = "{{ user.name }}";
pub const DEFAULT_EMAIL: &str = "{{ user.email }}";

const BRANDS: &[&str] = &["apple", "google", "facebook", "github", "gitlab", "twitter"];
const SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES256K", "EdDSA", "HS256", "HS384",
    "HS512",
];

fn yes() -> bool {
    true
}
fn rs256() -> String {
    "RS256".into()
}

impl UpstreamOAuth2Config {
    pub(super) fn resolve_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        for (i, p) in self.providers.iter_mut().enumerate() {
            let path = format!("upstream_oauth2.providers[{i}]");
            if p.client_secret.is_some() && p.client_secret_file.is_some() {
                return Err(ConfigError::new(path, "set only one of `client_secret` and `client_secret_file`"));
            }
            if let Some(f) = &p.client_secret_file {
                let s = super::read_secret_file(base, f, &format!("{path}.client_secret_file"))?;
                p.client_secret = Some(Secret::new(s));
            }
            if let Some(apple) = &mut p.sign_in_with_apple {
                let path = format!("{path}.sign_in_with_apple");
                if apple.private_key.is_some() && apple.private_key_file.is_some() {
                    return Err(ConfigError::new(path, "set only one of `private_key` and `private_key_file`"));
                }
                if let Some(f) = &apple.private_key_file {
                    let s = super::read_secret_file(base, f, &format!("{path}.private_key_file"))?;
                    apple.private_key = Some(Secret::new(s));
                }
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let path = format!("upstream_oauth2.providers[{i}]");
            p.validate(&path)?;
            if !seen.insert(p.id.to_uppercase()) {
                return Err(ConfigError::new(format!("{path}.id"), format!("duplicate provider id {}", p.id)));
            }
        }
        Ok(())
    }

    /// The enabled providers, in config order (the order of the buttons).
    pub fn enabled(&self) -> impl Iterator<Item = &UpstreamProviderConfig> {
        self.providers.iter().filter(|p| p.enabled)
    }
}

fn template(path: &str, text: &str, roots: &[&str]) -> Result<(), ConfigError> {
    Template::parse(text, roots).map(|_| ()).map_err(|e| ConfigError::new(path, e))
}

impl UpstreamProviderConfig {
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let at = |key: &str| format!("{path}.{key}");
        if ulid::Ulid::from_string(&self.id).is_err() {
            return Err(ConfigError::new(
                at("id"),
                format!("expected a ULID (26 characters of Crockford base32), got {:?}", self.id),
            ));
        }
        if self.client_id.is_empty() {
            return Err(ConfigError::new(at("client_id"), "must not be empty"));
        }
        let method = self.token_endpoint_auth_method;
        match (method.needs_secret(), &self.client_secret) {
            (true, None) => {
                return Err(ConfigError::new(
                    at("client_secret"),
                    format!("missing: `{}` needs `client_secret` or `client_secret_file`", method.as_str()),
                ));
            }
            (false, Some(_)) => {
                return Err(ConfigError::new(
                    at("client_secret"),
                    format!("not allowed with token_endpoint_auth_method `{}`", method.as_str()),
                ));
            }
            _ => {}
        }
        if self.client_secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
            return Err(ConfigError::new(at("client_secret"), "must not be empty"));
        }
        match (method, &self.sign_in_with_apple) {
            (UpstreamAuthMethod::SignInWithApple, None) => {
                return Err(ConfigError::new(at("sign_in_with_apple"), "missing: needed by `sign_in_with_apple`"));
            }
            (UpstreamAuthMethod::SignInWithApple, Some(apple)) if apple.private_key.is_none() => {
                return Err(ConfigError::new(
                    at("sign_in_with_apple.private_key"),
                    "missing: set `private_key` or `private_key_file`",
                ));
            }
            (UpstreamAuthMethod::SignInWithApple, Some(apple)) => apple.validate(&at("sign_in_with_apple"))?,
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    at("sign_in_with_apple"),
                    "only applies to token_endpoint_auth_method `sign_in_with_apple`",
                ));
            }
            _ => {}
        }
        if let Some(alg) = &self.token_endpoint_auth_signing_alg {
            if !matches!(method, UpstreamAuthMethod::ClientSecretJwt | UpstreamAuthMethod::PrivateKeyJwt) {
                return Err(ConfigError::new(
                    at("token_endpoint_auth_signing_alg"),
                    "only applies to `client_secret_jwt` and `private_key_jwt`",
                ));
            }
            let ok = match method {
                UpstreamAuthMethod::ClientSecretJwt => alg.starts_with("HS"),
                _ => SIGNING_ALGS.contains(&alg.as_str()) && !alg.starts_with("HS"),
            };
            if !ok {
                return Err(ConfigError::new(
                    at("token_endpoint_auth_signing_alg"),
                    format!("unsupported here: {alg}"),
                ));
            }
        }
        for (key, alg) in [
            ("id_token_signed_response_alg", Some(&self.id_token_signed_response_alg)),
            ("userinfo_signed_response_alg", self.userinfo_signed_response_alg.as_ref()),
        ] {
            if let Some(alg) = alg {
                if !SIGNING_ALGS.contains(&alg.as_str()) {
                    return Err(ConfigError::new(at(key), format!("unsupported signing algorithm {alg:?}")));
                }
            }
        }
        if let Some(brand) = &self.brand_name {
            if !BRANDS.contains(&brand.as_str()) {
                tracing::debug!("{path}.brand_name {brand:?} has no logo; the button shows the name only");
            }
        }
        if self.scope.split(' ').all(|s| s.is_empty()) {
            return Err(ConfigError::new(at("scope"), "must not be empty (e.g. \"openid profile email\")"));
        }
        match self.discovery_mode {
            DiscoveryMode::Oidc | DiscoveryMode::Insecure => match &self.issuer {
                None => {
                    return Err(ConfigError::new(
                        at("issuer"),
                        "missing: discovery needs the issuer (or set discovery_mode: disabled and the endpoints)",
                    ));
                }
                Some(issuer) => {
                    let url =
                        Url::parse(issuer).map_err(|e| ConfigError::new(at("issuer"), format!("not a URL: {e}")))?;
                    if self.discovery_mode == DiscoveryMode::Oidc && url.scheme() != "https" && !is_loopback(&url) {
                        return Err(ConfigError::new(
                            at("issuer"),
                            "must be https with discovery_mode: oidc (use `insecure` to skip the checks)",
                        ));
                    }
                }
            },
            DiscoveryMode::Disabled => {
                for (key, value) in [
                    ("authorization_endpoint", self.authorization_endpoint.is_some()),
                    ("token_endpoint", self.token_endpoint.is_some()),
                ] {
                    if !value {
                        return Err(ConfigError::new(at(key), "missing: required with discovery_mode: disabled"));
                    }
                }
                if self.has_openid() && self.jwks_uri.is_none() {
                    return Err(ConfigError::new(
                        at("jwks_uri"),
                        "missing: required with discovery_mode: disabled and the `openid` scope",
                    ));
                }
                if self.fetch_userinfo && self.userinfo_endpoint.is_none() {
                    return Err(ConfigError::new(
                        at("userinfo_endpoint"),
                        "missing: required with discovery_mode: disabled and fetch_userinfo",
                    ));
                }
            }
        }
        if !self.has_openid() && !self.fetch_userinfo {
            return Err(ConfigError::new(
                at("scope"),
                "without the `openid` scope there is no ID token: set fetch_userinfo: true",
            ));
        }
        let c = &self.claims_imports;
        let ci = |key: &str| format!("{path}.claims_imports.{key}");
        if let Some(t) = &c.subject.template {
            template(&ci("subject.template"), t, CLAIM_ROOTS)?;
        }
        if let Some(t) = &c.account_name.template {
            template(&ci("account_name.template"), t, CLAIM_ROOTS)?;
        }
        for (key, t) in [
            ("localpart", &c.localpart.template),
            ("displayname", &c.displayname.template),
            ("email", &c.email.template),
        ] {
            if let Some(t) = t {
                template(&ci(&format!("{key}.template")), t, CLAIM_ROOTS)?;
            }
        }
        // MAS's rule: skipping the page needs a username that cannot be asked for, and nothing
        // offered for the person to opt out of.
        if c.skip_confirmation {
            if c.localpart.action != ImportAction::Require {
                return Err(ConfigError::new(
                    ci("localpart.action"),
                    "must be `require` when `skip_confirmation` is set to `true`",
                ));
            }
            for (key, action) in [("email", c.email.action), ("displayname", c.displayname.action)] {
                if action == ImportAction::Suggest {
                    return Err(ConfigError::new(
                        ci(&format!("{key}.action")),
                        "must not be `suggest` when `skip_confirmation` is set to `true`",
                    ));
                }
            }
        }
        if c.localpart.on_conflict != OnConflict::Fail
            && !matches!(c.localpart.action, ImportAction::Force | ImportAction::Require)
        {
            return Err(ConfigError::new(
                ci("localpart.on_conflict"),
                "only applies when localpart.action is `force` or `require`",
            ));
        }
        for (name, t) in &self.additional_authorization_parameters {
            template(&at(&format!("additional_authorization_parameters.{name}")), t, PARAM_ROOTS)?;
        }
        Ok(())
    }

    pub fn has_openid(&self) -> bool {
        self.scope.split(' ').any(|s| s == "openid")
    }

    pub fn response_mode(&self) -> ResponseMode {
        self.response_mode.unwrap_or_default()
    }

    /// The label of the button.
    pub fn display_name(&self) -> String {
        self.human_name.clone().or_else(|| self.issuer.clone()).unwrap_or_else(|| self.id.clone())
    }
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}
