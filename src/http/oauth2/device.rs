//! `POST /oauth2/device` (RFC 8628 §3.1): starts a device authorization.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use super::client_auth;
use super::params::{MAX_SCOPE_LENGTH, Params};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::OAuthError;
use crate::lifecycle::grants::POLL_INTERVAL;
use crate::lifecycle::policy;
use crate::model::Scope;
use crate::model::client::GRANT_DEVICE_CODE;
use crate::store::{
    StoreError,
    grants::{self as grant_store, DeviceGrant},
};
use crate::tokens::hash_token;

pub const DEVICE_CODE_TTL: i64 = 1200;

/// Consonants only: no vowels (no words), no look-alikes (RFC 8628 §6.1).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

pub fn generate_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..8).map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char).collect()
}

/// `bcdf-ghjk` / `BCDF GHJK` → `BCDFGHJK`.
pub fn normalise_user_code(input: &str) -> String {
    input.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub fn display_user_code(code: &str) -> String {
    if code.len() == 8 { format!("{}-{}", &code[..4], &code[4..]) } else { code.to_string() }
}

#[tracing::instrument(name = "http.oauth2.device", skip_all, fields(client_id))]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(ms) = state.limiters.device_authorization.check_ip(ip) {
        return OAuthError::rate_limited(ms);
    }
    match handle(&state, &headers, &body).await {
        Ok(v) => {
            let mut res = Json(v).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Value, OAuthError> {
    let params = Params::from_bytes(body)?;
    let client = client_auth::authenticate(state, headers, &params).await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    if !client.allows_grant(GRANT_DEVICE_CODE) {
        return Err(OAuthError::unauthorized_client("client may not use the device code grant"));
    }
    params.check_lengths(&[("scope", MAX_SCOPE_LENGTH)])?;
    let scope =
        Scope::parse(params.get("scope").unwrap_or("")).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    policy::check_shape(&scope).map_err(OAuthError::invalid_scope)?;
    let now = state.now();
    let device_code = crate::crypto::random_alnum(32);
    let mut attempt = 0;
    let user_code = loop {
        let grant = DeviceGrant {
            id: ulid::Ulid::new().to_string(),
            client_id: client.id.clone(),
            scope: scope.to_string(),
            user_code: generate_user_code(),
            created_at: now,
            expires_at: now + DEVICE_CODE_TTL,
            fulfilled_at: None,
            rejected_at: None,
            exchanged_at: None,
            last_polled_at: None,
            user_session_id: None,
        };
        let code = grant.user_code.clone();
        let hash = hash_token(&device_code);
        match state.store.write(move |c| grant_store::insert_device(c, &grant, &hash)).await {
            Ok(()) => break code,
            Err(StoreError::Conflict(_)) if attempt < 5 => attempt += 1,
            Err(e) => return Err(OAuthError::internal(e)),
        }
    };
    let verification_uri = state.url("link");
    Ok(json!({
        "device_code": device_code,
        "user_code": display_user_code(&user_code),
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?code={user_code}"),
        "expires_in": DEVICE_CODE_TTL,
        "interval": POLL_INTERVAL,
    }))
}
