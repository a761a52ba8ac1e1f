//! `POST /oauth2/registration`: dynamic client registration (RFC 7591, MSC2966) with MAS's rules.
//!
//! Order, as in MAS: parse → structural validation and normalisation → public-suffix check →
//! registration policy (MAS `client_registration.rego` defaults) → secret (20 alnum, only for
//! `client_secret_*`) → de-duplication of secret-less clients by a digest of the metadata.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::config::{ClientAuthMethod, ClientRegistrationPolicy};
use crate::crypto::sha256_hex;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::{BoxError, ErrorCode, OAuthError, internal_error_from, respond_with_answer};
use crate::model::Client;
use crate::model::client::{
    ClientMetadata, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
    is_private_use_scheme,
};
use crate::store::{StoreError, clients as client_store};

const SUPPORTED_GRANTS: [&str; 4] =
    [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE];
/// JWS algorithms accepted for client assertions (as advertised in discovery).
const HMAC_ALGS: [&str; 3] = ["HS256", "HS384", "HS512"];
const ASYMMETRIC_ALGS: [&str; 8] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];
/// Common public suffixes (a short built-in list, not the full PSL): not valid client domains.
const PUBLIC_SUFFIXES: &str = "
    com net org edu gov mil int info biz io co me tv app dev xyz online site tech cloud eu
    uk co.uk org.uk ac.uk gov.uk me.uk de fr nl be ch at it es pt se no fi dk pl cz ru ua
    us ca au com.au net.au org.au nz co.nz jp co.jp ne.jp or.jp cn com.cn in co.in br com.br
    za co.za kr co.kr mx com.mx ar com.ar tw com.tw hk com.hk sg com.sg
    github.io gitlab.io pages.dev netlify.app vercel.app herokuapp.com appspot.com web.app
    firebaseapp.com blogspot.com cloudfront.net azurewebsites.net onrender.com fly.dev";
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The request body; unknown (and localised `name#lang`) fields are ignored.
#[derive(Debug, Deserialize)]
struct RawMetadata {
    redirect_uris: Option<Vec<Url>>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    token_endpoint_auth_signing_alg: Option<String>,
    client_name: Option<String>,
    client_uri: Option<Url>,
    logo_uri: Option<Url>,
    policy_uri: Option<Url>,
    tos_uri: Option<Url>,
    jwks: Option<Value>,
    jwks_uri: Option<Url>,
    id_token_signed_response_alg: Option<String>,
    userinfo_signed_response_alg: Option<String>,
    application_type: Option<String>,
    contacts: Option<Vec<String>>,
}

/// Metadata refused: the code (`invalid_request`, `invalid_client_metadata` or
/// `invalid_redirect_uri`) and what was wrong.
#[derive(Debug)]
pub struct Refusal {
    pub error: ErrorCode,
    pub description: Option<String>,
}

impl Refusal {
    fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        Self { error, description: Some(description.into()) }
    }
}

/// Why a registration was refused (RFC 7591 §3.2.2).
#[derive(Debug)]
pub enum RegistrationError {
    /// 429 `temporarily_unavailable` with `Retry-After`: too many registrations from this address.
    RateLimited { retry_after_ms: u64 },
    /// 400 `invalid_client_metadata`: the body is over [`MAX_METADATA_BYTES`].
    TooLarge,
    /// 400: malformed JSON (`invalid_request`), or metadata the rules or the policy refuse
    /// (`invalid_client_metadata`, `invalid_redirect_uri`).
    Invalid(Refusal),
    /// 500 `server_error`; the cause is logged.
    Internal(BoxError),
}

internal_error_from!(RegistrationError: StoreError, serde_json::Error);

impl From<Refusal> for RegistrationError {
    fn from(r: Refusal) -> Self {
        Self::Invalid(r)
    }
}

impl RegistrationError {
    pub fn answer(self) -> OAuthError {
        match self {
            Self::RateLimited { retry_after_ms } => OAuthError::rate_limited(retry_after_ms),
            Self::TooLarge => OAuthError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidClientMetadata,
                format!("client metadata must not exceed {MAX_METADATA_BYTES} bytes"),
            ),
            Self::Invalid(r) => OAuthError::bad_request(r.error, r.description),
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

respond_with_answer!(RegistrationError);

fn invalid_metadata(msg: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidClientMetadata, msg)
}
fn invalid_redirect(msg: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidRedirectUri, msg)
}

#[tracing::instrument(name = "http.oauth2.registration", skip_all, fields(client_id))]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, body: Bytes) -> Response {
    // Anyone may register, and every registration is stored: bounded per client IP and in size
    // (unused registrations are deleted later, `experimental.dynamic_client_ttl`).
    if let Err(ms) = state.limiters.client_registration.check_ip(ip) {
        return RegistrationError::RateLimited { retry_after_ms: ms }.into_response();
    }
    if body.len() > MAX_METADATA_BYTES {
        return RegistrationError::TooLarge.into_response();
    }
    match register(&state, &body).await.map_err(RegistrationError::answer) {
        Ok(res) => res,
        Err(e) => {
            tracing::info!(error = %e.error, description = ?e.description, "client registration refused");
            e.into_response()
        }
    }
}

/// The largest client metadata document accepted (Element's is under 1 KiB).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

async fn register(state: &AppState, body: &[u8]) -> Result<Response, RegistrationError> {
    let metadata = normalise(parse(body)?, &state.keys.algs())?;
    let issuer_is_loopback = crate::model::client::is_loopback_host(&state.config.http.issuer());
    if let Some(uri) = metadata.jwks_uri.as_deref().and_then(|u| Url::parse(u).ok()) {
        super::jwks_uri::check_registered_jwks_uri(&uri, issuer_is_loopback).map_err(invalid_metadata)?;
    }
    check_public_suffixes(&metadata)?;
    let violations = policy_violations(&metadata, state.config.policy.data.client_registration);
    if !violations.is_empty() {
        return Err(policy_error(&violations).into());
    }

    let needs_secret = ClientAuthMethod::parse(&metadata.token_endpoint_auth_method).is_some_and(|m| m.needs_secret());
    let secret = needs_secret.then(|| state.rng.alnum(20));
    let encrypted_secret = secret.as_ref().map(|s| state.encrypter.encrypt(s.as_bytes()));
    // Only clients without a secret are de-duplicated: a secret is handed out once.
    let digest = if secret.is_none() { Some(digest(&metadata)?) } else { None };
    let now = state.now();
    let candidate = Client {
        id: new_client_id(state.rng.as_ref(), now),
        metadata,
        encrypted_secret,
        is_static: false,
        created_at: now,
    };
    let (client, created) = state
        .store
        .write(move |conn| {
            if let Some(d) = digest.as_deref() {
                if let Some(existing) = client_store::by_digest(conn, d)? {
                    return Ok((existing, false));
                }
            }
            client_store::upsert(conn, &candidate, digest.as_deref())?;
            Ok((candidate, true))
        })
        .await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    tracing::info!(created, client_name = ?client.metadata.client_name, "client registration");

    // The normalised metadata (always a JSON object), plus the RFC 7591 §3.2.1 fields.
    let mut body = serde_json::to_value(&client.metadata)?;
    body["client_id"] = json!(client.id);
    body["client_id_issued_at"] = json!(client.created_at);
    if let Some(secret) = secret {
        body["client_secret"] = json!(secret);
        body["client_secret_expires_at"] = json!(0);
    }
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// A new uppercase ULID timestamped by the injected clock.
fn new_client_id(rng: &dyn crate::rng::Rng, now: i64) -> String {
    rng.id_at(now)
}

/// Malformed JSON → `invalid_request`; valid JSON of the wrong shape → `invalid_client_metadata`.
fn parse(body: &[u8]) -> Result<RawMetadata, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::new(ErrorCode::InvalidRequest, format!("malformed JSON body: {e}")))?;
    if !value.is_object() {
        return Err(invalid_metadata("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| invalid_metadata(e.to_string()))
}

/// Sorted and de-duplicated, so equal registrations hash equally.
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Structural validation (MAS `ClientMetadata::validate`), defaults and a stable order.
fn normalise(raw: RawMetadata, signing_algs: &[&str]) -> Result<ClientMetadata, Refusal> {
    let grant_types = sorted(raw.grant_types.unwrap_or_else(|| vec![GRANT_AUTHORIZATION_CODE.into()]));
    if let Some(g) = grant_types.iter().find(|g| !SUPPORTED_GRANTS.contains(&g.as_str())) {
        return Err(invalid_metadata(format!("unsupported grant_type '{g}'")));
    }
    let has_code_grant = grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE);

    let redirect_uris = raw.redirect_uris.unwrap_or_default();
    if has_code_grant && redirect_uris.is_empty() {
        return Err(invalid_redirect("redirect URIs are missing"));
    }
    if let Some(uri) = redirect_uris.iter().find(|u| u.fragment().is_some()) {
        return Err(invalid_redirect(format!("redirect URI with fragment: {uri}")));
    }

    let default_response = if has_code_grant { vec!["code".to_string()] } else { vec![] };
    let response_types = sorted(raw.response_types.unwrap_or(default_response));
    for rt in &response_types {
        if rt != "code" {
            return Err(invalid_metadata(format!("unsupported response_type '{rt}'")));
        }
        if !has_code_grant {
            return Err(invalid_metadata("'code' response type not compatible with grant types"));
        }
    }

    let method_name = raw.token_endpoint_auth_method.unwrap_or_else(|| "client_secret_basic".into());
    let method = ClientAuthMethod::parse(&method_name)
        .ok_or_else(|| invalid_metadata(format!("unsupported token_endpoint_auth_method '{method_name}'")))?;

    if raw.jwks.is_some() && raw.jwks_uri.is_some() {
        return Err(invalid_metadata("jwks_uri and jwks are mutually exclusive"));
    }
    if raw.jwks.as_ref().is_some_and(|j| !j.get("keys").is_some_and(Value::is_array)) {
        return Err(invalid_metadata("jwks must be a JWK Set with a keys array"));
    }
    if method == ClientAuthMethod::PrivateKeyJwt && raw.jwks.is_none() && raw.jwks_uri.is_none() {
        return Err(invalid_metadata("missing JWK Set for token auth method"));
    }

    match (raw.token_endpoint_auth_signing_alg.as_deref(), method) {
        (Some("none"), _) => {
            return Err(invalid_metadata("none signing alg unauthorized for token_endpoint"));
        }
        (Some(alg), _) => {
            let usable = match method {
                ClientAuthMethod::ClientSecretJwt => HMAC_ALGS.contains(&alg),
                ClientAuthMethod::PrivateKeyJwt => ASYMMETRIC_ALGS.contains(&alg),
                _ => HMAC_ALGS.contains(&alg) || ASYMMETRIC_ALGS.contains(&alg),
            };
            if !usable {
                let m = method.as_str();
                return Err(invalid_metadata(format!(
                    "token_endpoint_auth_signing_alg '{alg}' cannot be used with {m}"
                )));
            }
        }
        (None, ClientAuthMethod::ClientSecretJwt | ClientAuthMethod::PrivateKeyJwt) => {
            return Err(invalid_metadata("token_endpoint missing auth signing algorithm"));
        }
        (None, _) => {}
    }

    match raw.id_token_signed_response_alg.as_deref() {
        Some("none") => return Err(invalid_metadata("ID Token signing alg is none")),
        Some(alg) if !signing_algs.contains(&alg) => {
            return Err(invalid_metadata(format!("unsupported id_token_signed_response_alg '{alg}'")));
        }
        _ => {}
    }
    if let Some(alg) = raw.userinfo_signed_response_alg.as_deref().filter(|a| !signing_algs.contains(a)) {
        return Err(invalid_metadata(format!("unsupported userinfo_signed_response_alg '{alg}'")));
    }

    let application_type = raw.application_type.unwrap_or_else(|| "web".into());
    if application_type != "web" && application_type != "native" {
        return Err(invalid_metadata(format!("unsupported application_type '{application_type}'")));
    }

    let url = |u: Option<Url>| u.map(String::from);
    Ok(ClientMetadata {
        redirect_uris: sorted(redirect_uris.into_iter().map(String::from).collect()),
        grant_types,
        response_types,
        token_endpoint_auth_method: method.as_str().into(),
        token_endpoint_auth_signing_alg: raw.token_endpoint_auth_signing_alg,
        client_name: raw.client_name,
        client_uri: url(raw.client_uri),
        logo_uri: url(raw.logo_uri),
        policy_uri: url(raw.policy_uri),
        tos_uri: url(raw.tos_uri),
        jwks: raw.jwks,
        jwks_uri: url(raw.jwks_uri),
        id_token_signed_response_alg: raw.id_token_signed_response_alg,
        userinfo_signed_response_alg: raw.userinfo_signed_response_alg,
        application_type: Some(application_type),
        contacts: sorted(raw.contacts.unwrap_or_default()),
    })
}

/// Whether the host of `url` is a bare public suffix such as `com` or `co.uk` (or `.com`). A
/// single label other than `localhost` counts as one, as in the public suffix list's default
/// rule (`https://javascript/` must not vouch for a `javascript:` redirect).
fn host_is_public_suffix(url: &Url) -> bool {
    let Some(url::Host::Domain(host)) = url.host() else { return false };
    let h = host.trim_matches('.').to_ascii_lowercase();
    (!h.contains('.') && h != "localhost") || PUBLIC_SUFFIXES.split_whitespace().any(|s| s == h)
}

fn check_public_suffixes(m: &ClientMetadata) -> Result<(), Refusal> {
    let fields = [("client_uri", &m.client_uri), ("logo_uri", &m.logo_uri), ("policy_uri", &m.policy_uri)];
    for (name, value) in fields.into_iter().chain([("tos_uri", &m.tos_uri), ("jwks_uri", &m.jwks_uri)]) {
        if value.as_deref().and_then(|u| Url::parse(u).ok()).is_some_and(|u| host_is_public_suffix(&u)) {
            return Err(invalid_metadata(format!("{name} is not using a valid domain")));
        }
    }
    if m.redirect_uris.iter().filter_map(|u| Url::parse(u).ok()).any(|u| host_is_public_suffix(&u)) {
        return Err(invalid_redirect("redirect_uri is not using a valid domain"));
    }
    Ok(())
}

/// https on a non-loopback host; with `insecure`, any http(s) URL with a host.
fn secure_url(url: &Url, insecure: bool) -> bool {
    if insecure {
        return matches!(url.scheme(), "https" | "http") && url.host_str().is_some_and(|h| !h.is_empty());
    }
    url.scheme() == "https" && url.host_str().is_some_and(|h| !LOOPBACK_HOSTS.contains(&h) && h != "0.0.0.0")
}

/// `host` equals `parent` or is a subdomain of it.
fn is_subdomain(parent: &str, host: &str) -> bool {
    host == parent || host.ends_with(&format!(".{parent}"))
}

/// A reverse-DNS scheme (`io.element.app`) names `host` (`element.io`) or a subdomain of it.
fn reverse_dns_match(host: &str, scheme: &str) -> bool {
    let forward: Vec<&str> = scheme.split('.').rev().collect();
    is_subdomain(host, &forward.join("."))
}

/// A redirect URI a native app may use (RFC 8252): loopback http, or a private-use scheme.
fn valid_native_redirect(url: &Url, client_host: Option<&str>) -> bool {
    match url.scheme() {
        "http" => url.host_str().is_some_and(|h| LOOPBACK_HOSTS.contains(&h)),
        "https" => false,
        scheme => {
            is_private_use_scheme(scheme)
                && url.host_str().is_none_or(str::is_empty)
                && (url.path().is_empty() || url.path().starts_with('/'))
                && client_host.is_none_or(|h| reverse_dns_match(h, scheme))
        }
    }
}

/// MAS's `client_registration` policy, with the relaxations `policy.data.client_registration`
/// turns on. Host comparisons are skipped when the client_uri is unusable, which is itself
/// always a violation.
fn policy_violations(m: &ClientMetadata, policy: ClientRegistrationPolicy) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let insecure = policy.allow_insecure_uris;
    let parse = |u: &Option<String>| u.as_deref().and_then(|u| Url::parse(u).ok());
    let client_uri = parse(&m.client_uri);
    let client_host = client_uri.as_ref().and_then(|u| u.host_str().map(str::to_owned));
    let client_host = client_host.as_deref();
    let host_ok = |u: &Url| {
        policy.allow_host_mismatch || client_host.is_none_or(|c| u.host_str().is_some_and(|h| is_subdomain(c, h)))
    };

    match (&m.client_uri, &client_uri) {
        (None, _) if policy.allow_missing_client_uri => {}
        (None, _) => v.push("missing client_uri".into()),
        (Some(_), Some(u)) if secure_url(u, insecure) => {}
        (Some(_), _) => v.push("invalid client_uri".into()),
    }
    for (name, value) in [("tos_uri", &m.tos_uri), ("policy_uri", &m.policy_uri), ("logo_uri", &m.logo_uri)] {
        let Some(raw) = value else { continue };
        let Ok(u) = Url::parse(raw) else {
            v.push(format!("invalid {name}"));
            continue;
        };
        if !secure_url(&u, insecure) {
            v.push(format!("invalid {name}"));
        }
        if !host_ok(&u) {
            v.push(format!("{name} not on the same host as the client_uri"));
        }
    }
    if m.grant_types.iter().any(|g| g == GRANT_CLIENT_CREDENTIALS) && m.token_endpoint_auth_method == "none" {
        v.push("client_credentials grant_type requires some form of client authentication".into());
    }
    let native = m.application_type.as_deref() == Some("native");
    for uri in &m.redirect_uris {
        let ok = Url::parse(uri).is_ok_and(|u| {
            (native && valid_native_redirect(&u, client_host)) || (secure_url(&u, insecure) && host_ok(&u))
        });
        if !ok {
            v.push(format!("invalid redirect_uri: {uri}"));
        }
    }
    v
}

fn policy_error(violations: &[String]) -> Refusal {
    let description = violations.join("; ");
    if violations.iter().any(|m| m.contains("redirect_uri")) {
        invalid_redirect(description)
    } else {
        invalid_metadata(description)
    }
}

/// JSON with every object's keys in sorted order, whatever serde_json's map type.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.into_iter().map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// SHA-256 (hex) of the canonical JSON of the normalised metadata.
fn digest(m: &ClientMetadata) -> Result<String, serde_json::Error> {
    Ok(sha256_hex(canonical_json(&serde_json::to_value(m)?).as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A refusal as the client reads it.
    #[derive(Debug)]
    struct Seen {
        error: &'static str,
        description: Option<String>,
    }

    fn check(body: &Value) -> Result<ClientMetadata, Seen> {
        let refused = |r: Refusal| Seen { error: r.error.as_str(), description: r.description };
        let m =
            normalise(parse(body.to_string().as_bytes()).map_err(refused)?, &["ES256", "RS256"]).map_err(refused)?;
        check_public_suffixes(&m).map_err(refused)?;
        let violations = policy_violations(&m, ClientRegistrationPolicy::default());
        if violations.is_empty() { Ok(m) } else { Err(refused(policy_error(&violations))) }
    }

    const X: &str = r#"{"client_name": "Element X", "client_uri": "https://element.io", "application_type": "native",
        "redirect_uris": ["io.element.app:/callback"], "token_endpoint_auth_method": "none",
        "response_types": ["code"], "grant_types": ["authorization_code", "refresh_token"]}"#;
    const M: &str = r#"{"client_uri": "https://example.com", "grant_types": ["client_credentials"]}"#;
    const W: &str = r#"{"client_uri": "https://app.example.com", "token_endpoint_auth_method": "none"}"#;

    /// `base` with the fields of `changes` replaced.
    fn with(base: &str, changes: &str) -> Value {
        let mut body: Value = serde_json::from_str(base).unwrap();
        let changes: Value = serde_json::from_str(changes).unwrap();
        body.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        body
    }

    const MD: &str = "invalid_client_metadata";
    const RU: &str = "invalid_redirect_uri";
    const PKJ: &str = r#"{"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}"#;

    /// (base, changes, expected `error` or "ok"); `PKJ` cases get a third set of changes.
    const CASES: &[(&str, &str, &str)] = &[
        (X, "{}", "ok"),
        (X, r#"{"grant_types": ["implicit"]}"#, MD),
        (X, r#"{"grant_types": ["password"]}"#, MD),
        (X, r#"{"response_types": ["token"]}"#, MD),
        (X, r#"{"redirect_uris": null}"#, RU),
        (X, r#"{"redirect_uris": []}"#, RU),
        (X, r#"{"redirect_uris": ["io.element.app:/cb#f"]}"#, RU),
        (X, r#"{"id_token_signed_response_alg": "none"}"#, MD),
        (X, r#"{"id_token_signed_response_alg": "PS512"}"#, MD),
        (X, r#"{"application_type": "desktop"}"#, MD),
        (X, r#"{"jwks": {"keys": []}, "jwks_uri": "https://element.io/jwks"}"#, MD),
        (X, r#"{"token_endpoint_auth_method": "private_key_jwt"}"#, MD),
        (X, r#"{"token_endpoint_auth_method": "client_secret_jwt", "token_endpoint_auth_signing_alg": "HS256"}"#, "ok"),
        (PKJ, "{}", MD),
        (PKJ, r#"{"token_endpoint_auth_signing_alg": "none"}"#, MD),
        (PKJ, r#"{"token_endpoint_auth_signing_alg": "HS256"}"#, MD),
        (PKJ, r#"{"token_endpoint_auth_signing_alg": "RS256"}"#, "ok"),
        // Policy: the client's own URIs.
        (M, r#"{"client_uri": null}"#, MD),
        (M, r#"{"client_uri": "http://example.com"}"#, MD),
        (M, r#"{"client_uri": "https://localhost"}"#, MD),
        (M, r#"{"client_uri": "https://127.0.0.1"}"#, MD),
        (M, r#"{"client_uri": "https://co.uk"}"#, MD),
        (M, r#"{"logo_uri": "https://cdn.example.org/logo.png"}"#, MD),
        (M, r#"{"tos_uri": "http://example.com/tos"}"#, MD),
        (M, r#"{"logo_uri": "https://static.example.com/l.png", "policy_uri": "https://example.com/p"}"#, "ok"),
        (M, r#"{"token_endpoint_auth_method": "none"}"#, MD),
        // Policy: native redirect URIs (loopback, or a reverse-DNS scheme of the client_uri host or below).
        (X, r#"{"redirect_uris": ["http://localhost:8080/cb", "http://127.0.0.1/", "http://[::1]:1/x"]}"#, "ok"),
        (X, r#"{"redirect_uris": ["io.element:/cb", "io.element.app.x:/", "https://element.io/cb"]}"#, "ok"),
        (X, r#"{"client_uri": "https://app.element.io"}"#, "ok"),
        (X, r#"{"client_uri": "https://app.element.io", "redirect_uris": ["io.element:/cb"]}"#, RU),
        (X, r#"{"redirect_uris": ["com.example.app:/callback"]}"#, RU),
        (X, r#"{"redirect_uris": ["io.element.app://callback"]}"#, RU),
        (X, r#"{"redirect_uris": ["http://element.io/callback"]}"#, RU),
        // Policy: web redirect URIs (https on the client_uri host or below).
        (W, r#"{"redirect_uris": ["https://app.example.com/?no_universal_links=true"]}"#, "ok"),
        (W, r#"{"redirect_uris": ["https://x.app.example.com:8443/cb?a=b"]}"#, "ok"),
        (W, r#"{"redirect_uris": ["https://example.com/cb"]}"#, RU),
        (W, r#"{"redirect_uris": ["http://app.example.com/cb"]}"#, RU),
        (W, r#"{"redirect_uris": ["http://localhost/cb"]}"#, RU),
        (W, r#"{"redirect_uris": ["com.example.app:/cb"]}"#, RU),
        (W, r#"{"redirect_uris": ["https://com/cb"]}"#, RU),
        // Issue 10: schemes a browser acts on never pass, whatever the client_uri.
        (X, r#"{"client_uri": "https://javascript/", "redirect_uris": ["javascript:/alert(1)"]}"#, MD),
        (X, r#"{"client_uri": "https://data/", "redirect_uris": ["data:/text/html,x"]}"#, MD),
        (X, r#"{"redirect_uris": ["io:/cb"]}"#, RU),
        (X, r#"{"redirect_uris": ["javascript:alert(1)"]}"#, RU),
        (X, r#"{"redirect_uris": ["vbscript:/x"]}"#, RU),
        (X, r#"{"redirect_uris": ["file:///etc/passwd"]}"#, RU),
        (X, r#"{"logo_uri": "javascript:alert(1)"}"#, MD),
        (X, r#"{"tos_uri": "data:text/html,x"}"#, MD),
        (X, r#"{"policy_uri": "file:///etc/passwd"}"#, MD),
        (X, r#"{"client_uri": "vbscript:x"}"#, MD),
    ];

    #[test]
    fn rules_table() {
        for (base, changes, expected) in CASES {
            let body = if *base == PKJ { with(&with(X, PKJ).to_string(), changes) } else { with(base, changes) };
            assert_eq!(check(&body).map_or_else(|e| e.error, |_| "ok"), *expected, "{body}");
        }
    }

    #[test]
    fn the_relaxations_of_policy_data_client_registration() {
        let violations = |body: &str, policy| {
            let m = normalise(parse(with(W, body).to_string().as_bytes()).unwrap(), &["RS256"]).unwrap();
            policy_violations(&m, policy)
        };
        let local = r#"{"client_uri": "http://127.0.0.1:3000/", "redirect_uris": ["http://127.0.0.1:3000/cb"]}"#;
        let other_host = r#"{"redirect_uris": ["https://elsewhere.example.org/cb"]}"#;
        let no_client_uri = r#"{"client_uri": null, "redirect_uris": ["https://app.example.com/cb"]}"#;
        let strict = ClientRegistrationPolicy::default();
        for body in [local, other_host, no_client_uri] {
            assert!(!violations(body, strict).is_empty(), "{body}");
        }
        let insecure = ClientRegistrationPolicy { allow_insecure_uris: true, ..strict };
        assert_eq!(violations(local, insecure), Vec::<String>::new());
        assert!(!violations(r#"{"redirect_uris": ["ftp://app.example.com/cb"]}"#, insecure).is_empty());
        let mismatch = ClientRegistrationPolicy { allow_host_mismatch: true, ..strict };
        assert_eq!(violations(other_host, mismatch), Vec::<String>::new());
        let missing = ClientRegistrationPolicy { allow_missing_client_uri: true, ..strict };
        assert_eq!(violations(no_client_uri, missing), Vec::<String>::new());
    }

    #[test]
    fn each_refusal_has_its_status_and_code() {
        let not_json = serde_json::from_slice::<Value>(b"{").unwrap_err();
        crate::http::error::assert_answers(
            vec![
                (RegistrationError::RateLimited { retry_after_ms: 1000 }, 429, "temporarily_unavailable"),
                (RegistrationError::TooLarge, 400, "invalid_client_metadata"),
                (parse(b"{").unwrap_err().into(), 400, "invalid_request"),
                (invalid_metadata("no").into(), 400, "invalid_client_metadata"),
                (invalid_redirect("no").into(), 400, "invalid_redirect_uri"),
                (StoreError::Corrupt("x".into()).into(), 500, "server_error"),
                (not_json.into(), 500, "server_error"),
            ],
            RegistrationError::answer,
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(b"{not json").unwrap_err().error, "invalid_request");
        for bad in [&b"[1]"[..], br#"{"redirect_uris": "x"}"#, br#"{"client_uri": "not a url"}"#] {
            assert_eq!(parse(bad).unwrap_err().error, "invalid_client_metadata");
        }
        assert!(parse(br#"{"client_name#fr": "Exemple", "software_id": 3}"#).is_ok());
    }

    #[test]
    fn defaults_and_normalisation() {
        let changes = r#"{"token_endpoint_auth_method": null, "client_uri": "https://App.example.com",
            "redirect_uris": ["https://b.app.example.com/", "https://app.example.com/cb"]}"#;
        let m = check(&with(W, changes)).unwrap();
        assert_eq!((m.grant_types.join(" "), m.response_types.join(" ")), ("authorization_code".into(), "code".into()));
        assert_eq!(m.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(m.application_type.as_deref(), Some("web"));
        assert_eq!(m.client_uri.as_deref(), Some("https://app.example.com/"));
        assert_eq!(m.redirect_uris, ["https://app.example.com/cb", "https://b.app.example.com/"]);
        let machine = check(&with(M, "{}")).unwrap();
        assert!(machine.response_types.is_empty() && machine.redirect_uris.is_empty());
    }

    #[test]
    fn messages() {
        let body = with(X, r#"{"logo_uri": "https://evil.example/l.png", "tos_uri": "http://element.io/t"}"#);
        let e = check(&body).unwrap_err().description;
        assert_eq!(e.as_deref(), Some("invalid tos_uri; logo_uri not on the same host as the client_uri"));
        let e = check(&with(M, r#"{"client_uri": "https://github.io"}"#)).unwrap_err();
        assert_eq!(e.description.as_deref(), Some("client_uri is not using a valid domain"));
        let is_ps = |u: &str| host_is_public_suffix(&Url::parse(u).unwrap());
        assert!(is_ps("https://com.") && !is_ps("https://matrix-org.github.io") && !is_ps("org.matrix:/callback"));
    }

    #[test]
    fn digest_and_ids() {
        let a = check(&with(X, "{}")).unwrap();
        let b = check(&with(X, r#"{"grant_types": ["refresh_token", "authorization_code"]}"#)).unwrap();
        let c = check(&with(X, r#"{"client_name": "Element X 2"}"#)).unwrap();
        assert_eq!(digest(&a).unwrap(), digest(&b).unwrap());
        assert_ne!(digest(&a).unwrap(), digest(&c).unwrap());
        let canonical = canonical_json(&json!({"b": [1, {"d": 1, "c": 2}], "a": "x"}));
        assert_eq!(canonical, r#"{"a":"x","b":[1,{"c":2,"d":1}]}"#);
        let id = new_client_id(&crate::rng::OsRng, 1_700_000_000);
        assert_eq!(ulid::Ulid::from_string(&id).unwrap().timestamp_ms(), 1_700_000_000_000);
    }
}
