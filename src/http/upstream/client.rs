//! Talking to an upstream provider: discovery, the authorization URL, the code exchange (with
//! each client authentication method), ID-token verification against its JWKS, and userinfo.
//! Blocking (ureq): callers run these off the async workers.

use std::collections::HashSet;

use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{Map, Value};
use url::Url;

use crate::config::{DiscoveryMode, PkceMethod, UpstreamAuthMethod, UpstreamProviderConfig};
use crate::crypto::keys::Keystore;

/// What went wrong with the provider, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the provider's metadata is not usable: {0}")]
    BadMetadata(String),
    #[error("the provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the provider's token endpoint failed: {0}")]
    TokenEndpoint(String),
    #[error("the ID token from the provider is not valid: {0}")]
    BadIdToken(String),
    #[error("the provider's userinfo endpoint failed: {0}")]
    Userinfo(String),
}

/// The endpoints in use: from discovery, with the config's overrides on top.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub issuer: Option<String>,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub s256_supported: bool,
}

fn get_json(agent: &ureq::Agent, url: &str, bearer: Option<&str>) -> Result<Value, String> {
    let mut req = agent.get(url).header("accept", "application/json");
    if let Some(t) = bearer {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let mut res = req.call().map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("{url} answered {}", res.status()));
    }
    res.body_mut().read_json::<Value>().map_err(|e| format!("{url}: {e}"))
}

fn url_field(doc: &Value, name: &str) -> Result<Option<Url>, UpstreamError> {
    match doc.get(name).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => Url::parse(s).map(Some).map_err(|e| UpstreamError::BadMetadata(format!("{name}: {e}"))),
    }
}

pub fn metadata(agent: &ureq::Agent, p: &UpstreamProviderConfig) -> Result<Metadata, UpstreamError> {
    let doc = match (p.discovery_mode, &p.issuer) {
        (DiscoveryMode::Disabled, _) | (_, None) => Value::Object(Map::new()),
        (mode, Some(issuer)) => {
            let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
            let doc = get_json(agent, &url, None).map_err(UpstreamError::Unreachable)?;
            if mode == DiscoveryMode::Oidc {
                let got = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
                if got != issuer {
                    return Err(UpstreamError::BadMetadata(format!("issuer is {got:?}, expected {issuer:?}")));
                }
            }
            doc
        }
    };
    let need = |over: &Option<Url>, name: &str| -> Result<Url, UpstreamError> {
        match over {
            Some(u) => Ok(u.clone()),
            None => url_field(&doc, name)?.ok_or_else(|| UpstreamError::BadMetadata(format!("no {name}"))),
        }
    };
    let s256_supported = doc
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|m| m == "S256"));
    Ok(Metadata {
        issuer: p.issuer.clone(),
        authorization_endpoint: need(&p.authorization_endpoint, "authorization_endpoint")?,
        token_endpoint: need(&p.token_endpoint, "token_endpoint")?,
        userinfo_endpoint: match &p.userinfo_endpoint {
            Some(u) => Some(u.clone()),
            None => url_field(&doc, "userinfo_endpoint")?,
        },
        jwks_uri: match &p.jwks_uri {
            Some(u) => Some(u.clone()),
            None => url_field(&doc, "jwks_uri")?,
        },
        s256_supported,
    })
}

/// Whether this trip uses PKCE (S256).
pub fn uses_pkce(p: &UpstreamProviderConfig, meta: &Metadata) -> bool {
    match p.pkce_method {
        PkceMethod::Always => true,
        PkceMethod::Never => false,
        PkceMethod::Auto => meta.s256_supported,
    }
}

pub fn s256(verifier: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// The URL the browser is sent to.
#[allow(clippy::too_many_arguments)]
pub fn authorization_url(
    p: &UpstreamProviderConfig,
    meta: &Metadata,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    verifier: Option<&str>,
    extra: &[(String, String)],
) -> Url {
    let mut url = meta.authorization_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &p.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &p.scope)
            .append_pair("state", state);
        if p.has_openid() {
            q.append_pair("nonce", nonce);
        }
        if p.response_mode() == crate::config::ResponseMode::FormPost {
            q.append_pair("response_mode", "form_post");
        }
        if let Some(v) = verifier {
            q.append_pair("code_challenge", &s256(v)).append_pair("code_challenge_method", "S256");
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url
}

pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
}

/// The client assertion for `private_key_jwt` (signed with the site's keys, published at
/// `/oauth2/keys.json`) or `client_secret_jwt` (HMAC with the client secret).
fn client_assertion(
    p: &UpstreamProviderConfig,
    secret: Option<&str>,
    keys: &Keystore,
    rng: &dyn crate::rng::Rng,
    audience: &str,
) -> Result<String, UpstreamError> {
    // The token endpoint (RFC 7523) and the issuer (what newer providers ask for).
    let mut audiences = HashSet::from([audience.to_string()]);
    if let Some(issuer) = &p.issuer {
        audiences.insert(issuer.clone());
    }
    let claims = Claims::create(Duration::from_mins(5))
        .with_issuer(&p.client_id)
        .with_subject(&p.client_id)
        .with_audiences(audiences)
        .with_jwt_id(crate::crypto::b64url(&rng.bytes::<16>()));
    let err = |e: jwt_simple::Error| UpstreamError::TokenEndpoint(format!("cannot sign the client assertion: {e}"));
    match p.token_endpoint_auth_method {
        UpstreamAuthMethod::ClientSecretJwt => {
            let s = secret.unwrap_or_default().as_bytes();
            match p.token_endpoint_auth_signing_alg.as_deref().unwrap_or("HS256") {
                "HS384" => HS384Key::from_bytes(s).authenticate(claims).map_err(err),
                "HS512" => HS512Key::from_bytes(s).authenticate(claims).map_err(err),
                _ => HS256Key::from_bytes(s).authenticate(claims).map_err(err),
            }
        }
        _ => {
            let alg = p.token_endpoint_auth_signing_alg.as_deref().unwrap_or("RS256");
            let key = keys
                .for_alg(alg)
                .ok_or_else(|| UpstreamError::TokenEndpoint(format!("no site signing key for {alg}")))?;
            key.sign(claims).map_err(err)
        }
    }
}

/// Apple's audience for the client secret.
pub const APPLE_AUDIENCE: &str = "https://appleid.apple.com";

/// Sign in with Apple's client secret: a short-lived ES256 JWT made for each token request with
/// the `.p8` key (`private_key` is the key's PKCS#8 PEM, kept encrypted in the database):
/// header `kid` = key_id, `iss` = team_id, `sub` = client_id, `aud` = Apple, `iat`/`exp`.
/// Nothing about the key itself reaches the error.
fn apple_client_secret(p: &UpstreamProviderConfig, private_key: Option<&str>) -> Result<String, UpstreamError> {
    let apple = p
        .sign_in_with_apple
        .as_ref()
        .ok_or_else(|| UpstreamError::TokenEndpoint("sign_in_with_apple is not configured".into()))?;
    let pem =
        private_key.ok_or_else(|| UpstreamError::TokenEndpoint("the Sign in with Apple key is missing".into()))?;
    let key = ES256KeyPair::from_pem(pem)
        .map_err(|_| UpstreamError::TokenEndpoint("the Sign in with Apple key is not a P-256 PKCS#8 key".into()))?
        .with_key_id(&apple.key_id);
    let claims = Claims::create(Duration::from_mins(5))
        .with_issuer(&apple.team_id)
        .with_subject(&p.client_id)
        .with_audience(APPLE_AUDIENCE);
    key.sign(claims)
        .map_err(|_| UpstreamError::TokenEndpoint("cannot sign the Sign in with Apple client secret".into()))
}

#[allow(clippy::too_many_arguments)]
pub fn exchange_code(
    agent: &ureq::Agent,
    p: &UpstreamProviderConfig,
    meta: &Metadata,
    secret: Option<&str>,
    keys: &Keystore,
    rng: &dyn crate::rng::Rng,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<Tokens, UpstreamError> {
    let mut form: Vec<(String, String)> = vec![
        ("grant_type".into(), "authorization_code".into()),
        ("code".into(), code.into()),
        ("redirect_uri".into(), redirect_uri.into()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier".into(), v.into()));
    }
    let mut req = agent.post(meta.token_endpoint.as_str()).header("accept", "application/json");
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    match p.token_endpoint_auth_method {
        UpstreamAuthMethod::None => form.push(("client_id".into(), p.client_id.clone())),
        UpstreamAuthMethod::ClientSecretBasic => {
            let pair = format!("{}:{}", enc(&p.client_id), enc(secret.unwrap_or_default()));
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            req = req.header("authorization", &format!("Basic {basic}"));
        }
        UpstreamAuthMethod::ClientSecretPost => {
            form.push(("client_id".into(), p.client_id.clone()));
            form.push(("client_secret".into(), secret.unwrap_or_default().into()));
        }
        UpstreamAuthMethod::ClientSecretJwt | UpstreamAuthMethod::PrivateKeyJwt => {
            let assertion = client_assertion(p, secret, keys, rng, meta.token_endpoint.as_str())?;
            form.push(("client_id".into(), p.client_id.clone()));
            form.push((
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion".into(), assertion));
        }
        UpstreamAuthMethod::SignInWithApple => {
            form.push(("client_id".into(), p.client_id.clone()));
            form.push(("client_secret".into(), apple_client_secret(p, secret)?));
        }
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut res = req
        .config()
        .http_status_as_error(false)
        .build()
        .send_form(pairs)
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    let status = res.status();
    let body: Value = res.body_mut().read_json().map_err(|e| UpstreamError::TokenEndpoint(e.to_string()))?;
    if !status.is_success() {
        let error = body.get("error").and_then(Value::as_str).unwrap_or("unknown error");
        let desc = body.get("error_description").and_then(Value::as_str).unwrap_or("");
        return Err(UpstreamError::TokenEndpoint(format!("{status}: {error} {desc}")));
    }
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::TokenEndpoint("no access_token in the response".into()))?
        .to_string();
    let id_token = body.get("id_token").and_then(Value::as_str).map(String::from);
    Ok(Tokens { access_token, id_token })
}

/// Verifies the ID token: signature against the provider's JWKS with the configured algorithm
/// (never `none`), `iss`, `aud` = our client id, `nonce`, `exp`. Returns its claims.
pub fn verify_id_token(
    agent: &ureq::Agent,
    p: &UpstreamProviderConfig,
    meta: &Metadata,
    id_token: &str,
    nonce: &str,
) -> Result<Map<String, Value>, UpstreamError> {
    let bad = UpstreamError::BadIdToken;
    let header = id_token.split('.').next().unwrap_or_default();
    let header: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("not a JWT".into()))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if alg != p.id_token_signed_response_alg {
        return Err(bad(format!("signed with {alg:?}, expected {}", p.id_token_signed_response_alg)));
    }
    let jwks_uri = meta.jwks_uri.as_ref().ok_or_else(|| UpstreamError::BadMetadata("no jwks_uri".into()))?;
    let jwks = get_json(agent, jwks_uri.as_str(), None).map_err(UpstreamError::Unreachable)?;
    let mut options = VerificationOptions {
        allowed_audiences: Some(HashSet::from([p.client_id.clone()])),
        required_nonce: Some(nonce.to_string()),
        time_tolerance: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    if let Some(issuer) = &meta.issuer {
        options.allowed_issuers = Some(HashSet::from([issuer.clone()]));
    }
    let claims: JWTClaims<Map<String, Value>> =
        crate::http::oauth2::client_auth::verify_with_jwks(&jwks, id_token, alg, options).map_err(bad)?;
    if claims.expires_at.is_none() {
        return Err(bad("no exp".into()));
    }
    let mut out = claims.custom;
    out.insert("sub".into(), claims.subject.map(Value::String).ok_or_else(|| bad("no sub".into()))?);
    if let Some(iss) = claims.issuer {
        out.insert("iss".into(), Value::String(iss));
    }
    if let Some(n) = claims.nonce {
        out.insert("nonce".into(), Value::String(n));
    }
    Ok(out)
}

pub fn userinfo(agent: &ureq::Agent, meta: &Metadata, access_token: &str) -> Result<Value, UpstreamError> {
    let url =
        meta.userinfo_endpoint.as_ref().ok_or_else(|| UpstreamError::BadMetadata("no userinfo_endpoint".into()))?;
    get_json(agent, url.as_str(), Some(access_token)).map_err(UpstreamError::Userinfo)
}
