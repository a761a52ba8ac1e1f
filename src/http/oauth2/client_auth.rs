//! Client authentication at the token, revocation, device and introspection endpoints:
//! `none`, `client_secret_basic`, `client_secret_post`, `client_secret_jwt`, `private_key_jwt`.

use axum::http::HeaderMap;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::Value;

use super::params::Params;
use crate::config::ClientAuthMethod;
use crate::crypto::constant_time_eq;
use crate::crypto::encrypter::DecryptError;
use crate::http::AppState;
use crate::http::error::{BoxError, OAuthError, internal_error_from};
use crate::model::Client;
use crate::store::{StoreError, clients as client_store, grants as grant_store};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The one answer to an assertion whose keys or signature do not check out.
const ASSERTION_REJECTED: &str = "client assertion rejected";
/// Clock skew allowed on an assertion's times (seconds).
const ASSERTION_LEEWAY: i64 = 30;

/// Why a client could not be authenticated.
#[derive(Debug)]
pub enum ClientAuthError {
    /// 401 `invalid_client` with a Basic challenge: the credentials do not identify a client.
    InvalidClient(String),
    /// 400 `invalid_request`: the credentials contradict each other.
    InvalidRequest(&'static str),
    /// 500: the client's record or the assertion's `jti` could not be read or stored.
    Internal(BoxError),
}

internal_error_from!(ClientAuthError: StoreError, DecryptError);

impl ClientAuthError {
    fn invalid_client(d: impl Into<String>) -> Self {
        Self::InvalidClient(d.into())
    }

    /// The answer at the token, revocation, device and introspection endpoints.
    pub fn answer(self) -> OAuthError {
        match self {
            Self::InvalidClient(d) => OAuthError::invalid_client(d),
            Self::InvalidRequest(d) => OAuthError::invalid_request(d),
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

/// What the request presented.
enum Presented {
    Basic { id: String, secret: String },
    Post { id: String, secret: String },
    Assertion { id: String, jwt: String },
    None { id: String },
}

/// `Authorization: Basic` credentials, form-urldecoded per RFC 6749 §2.3.1.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ClientAuthError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let Some(encoded) = value.to_str().ok().and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
    else {
        return Ok(None);
    };
    let bad = || ClientAuthError::invalid_client("malformed Basic credentials");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape =
        |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Ok(Some((unescape(id).ok_or_else(bad)?, unescape(secret).ok_or_else(bad)?)))
}

fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, ClientAuthError> {
    let form_id = params.get("client_id");
    if let Some((id, secret)) = basic_credentials(headers)? {
        if form_id.is_some_and(|f| f != id) {
            return Err(ClientAuthError::InvalidRequest("client_id differs from the Basic credentials"));
        }
        return Ok(Presented::Basic { id, secret });
    }
    if let Some(assertion) = params.get("client_assertion") {
        if params.get("client_assertion_type") != Some(JWT_BEARER) {
            return Err(ClientAuthError::InvalidRequest("unsupported client_assertion_type"));
        }
        let id = assertion_subject(assertion)?;
        if form_id.is_some_and(|f| f != id) {
            return Err(ClientAuthError::invalid_client("client_id differs from the assertion subject"));
        }
        return Ok(Presented::Assertion { id, jwt: assertion.to_string() });
    }
    let id = form_id.ok_or_else(|| ClientAuthError::invalid_client("missing client credentials"))?.to_string();
    Ok(match params.get("client_secret") {
        Some(secret) => Presented::Post { id, secret: secret.to_string() },
        None => Presented::None { id },
    })
}

/// The unverified `sub` of an assertion, to find the client whose key verifies it.
fn assertion_subject(jwt: &str) -> Result<String, ClientAuthError> {
    let bad = || ClientAuthError::invalid_client("malformed client assertion");
    let payload = jwt.split('.').nth(1).ok_or_else(bad)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|_| bad())?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    claims.get("sub").and_then(Value::as_str).map(String::from).ok_or_else(bad)
}

/// Authenticates the calling client; every failure is `invalid_client` (401).
pub async fn authenticate(state: &AppState, headers: &HeaderMap, params: &Params) -> Result<Client, ClientAuthError> {
    let presented = presented(headers, params)?;
    let (id, method) = match &presented {
        Presented::Basic { id, .. } => (id.clone(), ClientAuthMethod::ClientSecretBasic),
        Presented::Post { id, .. } => (id.clone(), ClientAuthMethod::ClientSecretPost),
        Presented::Assertion { id, .. } => (id.clone(), ClientAuthMethod::PrivateKeyJwt),
        Presented::None { id } => (id.clone(), ClientAuthMethod::None),
    };
    let lookup = id.clone();
    let client = state
        .store
        .read(move |c| client_store::by_id(c, &lookup))
        .await?
        .ok_or_else(|| ClientAuthError::invalid_client("unknown client"))?;
    // Fail closed: a method that cannot be read must not turn a confidential client public.
    let Some(registered) = client.auth_method() else {
        tracing::warn!(client_id = %client.id, "client has an unreadable token_endpoint_auth_method; refused");
        return Err(ClientAuthError::invalid_client("the client cannot authenticate"));
    };
    let matches = registered == method
        || (method == ClientAuthMethod::PrivateKeyJwt && registered == ClientAuthMethod::ClientSecretJwt);
    if !matches {
        return Err(ClientAuthError::invalid_client(format!("client must authenticate with {}", registered.as_str())));
    }
    match presented {
        Presented::None { .. } => {}
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            let stored = stored_secret(state, &client)?;
            if !constant_time_eq(stored.as_bytes(), secret.as_bytes()) {
                return Err(ClientAuthError::invalid_client("bad client credentials"));
            }
        }
        Presented::Assertion { jwt, .. } => verify_assertion(state, &client, &jwt).await?,
    }
    Ok(client)
}

fn stored_secret(state: &AppState, client: &Client) -> Result<String, ClientAuthError> {
    let enc =
        client.encrypted_secret.as_deref().ok_or_else(|| ClientAuthError::invalid_client("client has no secret"))?;
    Ok(state.encrypter.decrypt_string(enc)?)
}

/// Checks a client assertion (RFC 7523): signature, `iss` = `sub` = client, `aud` names us, a
/// future `exp`, and a `jti` never seen before.
async fn verify_assertion(state: &AppState, client: &Client, jwt: &str) -> Result<(), ClientAuthError> {
    let audiences: HashSet<String> = [
        state.url("oauth2/token"),
        state.url("oauth2/introspect"),
        state.url("oauth2/revoke"),
        state.url("oauth2/device"),
        state.config.http.issuer().to_string(),
        state.config.http.issuer().as_str().trim_end_matches('/').to_string(),
    ]
    .into_iter()
    .collect();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([client.id.clone()])),
        allowed_audiences: Some(audiences),
        required_subject: Some(client.id.clone()),
        time_tolerance: Some(Duration::from_secs(ASSERTION_LEEWAY as u64)),
        max_validity: Some(Duration::from_hours(1)),
        ..Default::default()
    };
    let bad = |e: jwt_simple::Error| ClientAuthError::invalid_client(format!("client assertion rejected: {e}"));
    let alg = header_alg(jwt).ok_or_else(|| ClientAuthError::invalid_client("malformed client assertion"))?;
    let claims: JWTClaims<NoCustomClaims> = match client.auth_method() {
        Some(ClientAuthMethod::ClientSecretJwt) => {
            let secret = stored_secret(state, client)?;
            match alg.as_str() {
                "HS256" => HS256Key::from_bytes(secret.as_bytes()).verify_token(jwt, Some(options)),
                "HS384" => HS384Key::from_bytes(secret.as_bytes()).verify_token(jwt, Some(options)),
                "HS512" => HS512Key::from_bytes(secret.as_bytes()).verify_token(jwt, Some(options)),
                _ => {
                    return Err(ClientAuthError::invalid_client("client_secret_jwt needs an HS256/384/512 assertion"));
                }
            }
            .map_err(bad)?
        }
        Some(ClientAuthMethod::PrivateKeyJwt) => {
            let jwks = client_jwks(state, client).await?;
            // The reason stays in the log: with a jwks_uri it could tell what the fetch found.
            verify_with_jwks(&jwks, jwt, &alg, options).map_err(|e| {
                tracing::debug!(client_id = %client.id, error = %e, "client assertion rejected");
                ClientAuthError::invalid_client(ASSERTION_REJECTED)
            })?
        }
        _ => return Err(ClientAuthError::invalid_client("the client does not authenticate with assertions")),
    };
    let jti = claims.jwt_id.ok_or_else(|| ClientAuthError::invalid_client("client assertion has no jti"))?;
    // An `exp` is required (so the jti is remembered for as long as the assertion is valid) and
    // may not be further ahead than the configured maximum: a long-lived assertion is a
    // long-lived password.
    let exp = claims.expires_at.ok_or_else(|| ClientAuthError::invalid_client("client assertion has no exp"))?;
    let exp = i64::try_from(exp.as_secs()).unwrap_or(i64::MAX);
    if exp - state.now() > state.config.client_auth.assertion_max_lifetime + ASSERTION_LEEWAY {
        return Err(ClientAuthError::invalid_client("client assertion expires too far in the future"));
    }
    let client_id = client.id.clone();
    let remember_until = exp.saturating_add(ASSERTION_LEEWAY);
    let fresh = state.store.write(move |c| grant_store::remember_jti(c, &client_id, &jti, remember_until)).await?;
    if !fresh {
        return Err(ClientAuthError::invalid_client("client assertion was already used"));
    }
    Ok(())
}

fn header_alg(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(String::from)
}

fn header_kid(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("kid")?.as_str().map(String::from)
}

/// The client's key set: inline, or fetched from its `jwks_uri` (see `jwks_uri`). A fetch that
/// fails answers exactly like a bad signature, so the error tells nothing about the fetch.
async fn client_jwks(state: &AppState, client: &Client) -> Result<std::sync::Arc<Value>, ClientAuthError> {
    if let Some(jwks) = &client.metadata.jwks {
        return Ok(std::sync::Arc::new(jwks.clone()));
    }
    let uri =
        client.metadata.jwks_uri.as_deref().ok_or_else(|| ClientAuthError::invalid_client("client has no keys"))?;
    state.jwks.get(uri, !client.is_static, state.now()).await.map_err(|e| {
        tracing::debug!(client_id = %client.id, error = %e, "client jwks_uri not usable");
        ClientAuthError::invalid_client(ASSERTION_REJECTED)
    })
}

fn b64(v: &Value, name: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v.get(name)?.as_str()?.trim_end_matches('=')).ok()
}

/// Verifies `jwt` with the first key of `jwks` that fits its `kid` and `alg`.
pub fn verify_with_jwks<T: Serialize + serde::de::DeserializeOwned>(
    jwks: &Value,
    jwt: &str,
    alg: &str,
    options: VerificationOptions,
) -> Result<JWTClaims<T>, String> {
    let kid = header_kid(jwt);
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or("the client's JWK set has no keys")?;
    let candidates = keys.iter().filter(|k| {
        kid.as_deref().is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid))
            && k.get("alg").and_then(Value::as_str).is_none_or(|a| a == alg)
    });
    let mut last_error = String::from("no key of the client's JWK set fits the assertion");
    for key in candidates {
        let result =
            match (key.get("kty").and_then(Value::as_str), alg) {
                (Some("RSA"), "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
                    let (Some(n), Some(e)) = (b64(key, "n"), b64(key, "e")) else {
                        continue;
                    };
                    match alg {
                        "RS256" => RS256PublicKey::from_components(&n, &e)
                            .and_then(|k| k.verify_token(jwt, Some(options.clone()))),
                        "RS384" => RS384PublicKey::from_components(&n, &e)
                            .and_then(|k| k.verify_token(jwt, Some(options.clone()))),
                        "RS512" => RS512PublicKey::from_components(&n, &e)
                            .and_then(|k| k.verify_token(jwt, Some(options.clone()))),
                        "PS256" => PS256PublicKey::from_components(&n, &e)
                            .and_then(|k| k.verify_token(jwt, Some(options.clone()))),
                        "PS384" => PS384PublicKey::from_components(&n, &e)
                            .and_then(|k| k.verify_token(jwt, Some(options.clone()))),
                        _ => PS512PublicKey::from_components(&n, &e)
                            .and_then(|k| k.verify_token(jwt, Some(options.clone()))),
                    }
                }
                (Some("EC"), "ES256") => {
                    let (Some(x), Some(y)) = (b64(key, "x"), b64(key, "y")) else {
                        continue;
                    };
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    ES256PublicKey::from_bytes(&point).and_then(|k| k.verify_token(jwt, Some(options.clone())))
                }
                (Some("EC"), "ES384") => {
                    let (Some(x), Some(y)) = (b64(key, "x"), b64(key, "y")) else {
                        continue;
                    };
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    ES384PublicKey::from_bytes(&point).and_then(|k| k.verify_token(jwt, Some(options.clone())))
                }
                _ => continue,
            };
        match result {
            Ok(claims) => return Ok(claims),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}
