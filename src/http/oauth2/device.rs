//! `POST /oauth2/device` (RFC 8628 §3.1): starts a device authorization.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::client_auth::{self, ClientAuthError};
use super::params::{MAX_SCOPE_LENGTH, ParamError, Params};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::{BoxError, ErrorCode, OAuthError, internal_error_from, respond_with_answer};
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

pub fn generate_user_code(rng: &dyn crate::rng::Rng) -> String {
    rng.string_of(USER_CODE_ALPHABET, 8)
}

/// `bcdf-ghjk` / `BCDF GHJK` → `BCDFGHJK`.
pub fn normalise_user_code(input: &str) -> String {
    input.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub fn display_user_code(code: &str) -> String {
    if code.len() == 8 { format!("{}-{}", &code[..4], &code[4..]) } else { code.to_string() }
}

/// Why the device authorization endpoint refused (RFC 8628 §3.2, RFC 6749 §5.2).
#[derive(Debug)]
pub enum DeviceAuthorizationError {
    /// 429 `temporarily_unavailable` with `Retry-After`: too many requests from this address.
    RateLimited { retry_after_ms: u64 },
    /// 400: a malformed request (a parameter repeated or too long).
    BadRequest(ParamError),
    /// The client could not be authenticated.
    ClientAuth(ClientAuthError),
    /// 400 `unauthorized_client`: the client is not registered for the device code grant.
    GrantNotAllowed,
    /// 400 `invalid_scope`.
    InvalidScope(String),
    /// 500 `server_error`; the cause is logged.
    Internal(BoxError),
}

internal_error_from!(DeviceAuthorizationError: StoreError);

impl From<ParamError> for DeviceAuthorizationError {
    fn from(r: ParamError) -> Self {
        Self::BadRequest(r)
    }
}

impl From<ClientAuthError> for DeviceAuthorizationError {
    fn from(e: ClientAuthError) -> Self {
        Self::ClientAuth(e)
    }
}

impl DeviceAuthorizationError {
    pub fn answer(self) -> OAuthError {
        let bad = |code, d: String| OAuthError::new(StatusCode::BAD_REQUEST, code, d);
        match self {
            Self::RateLimited { retry_after_ms } => OAuthError::rate_limited(retry_after_ms),
            Self::BadRequest(r) => r.answer(),
            Self::ClientAuth(e) => e.answer(),
            Self::GrantNotAllowed => {
                bad(ErrorCode::UnauthorizedClient, "client may not use the device code grant".into())
            }
            Self::InvalidScope(d) => bad(ErrorCode::InvalidScope, d),
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

respond_with_answer!(DeviceAuthorizationError);

#[tracing::instrument(name = "http.oauth2.device", skip_all, fields(client_id))]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(ms) = state.limiters.device_authorization.check_ip(ip) {
        return DeviceAuthorizationError::RateLimited { retry_after_ms: ms }.into_response();
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

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Value, DeviceAuthorizationError> {
    let params = Params::from_bytes(body)?;
    let client = client_auth::authenticate(state, headers, &params).await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    if !client.allows_grant(GRANT_DEVICE_CODE) {
        return Err(DeviceAuthorizationError::GrantNotAllowed);
    }
    params.check_lengths(&[("scope", MAX_SCOPE_LENGTH)])?;
    let scope = Scope::parse(params.get("scope").unwrap_or(""))
        .map_err(|e| DeviceAuthorizationError::InvalidScope(e.to_string()))?;
    policy::check_shape(&scope).map_err(DeviceAuthorizationError::InvalidScope)?;
    let now = state.now();
    let device_code = state.rng.alnum(32);
    let mut attempt = 0;
    let user_code = loop {
        let grant = DeviceGrant {
            id: state.rng.id(state.clock.as_ref()),
            client_id: client.id.clone(),
            scope: scope.to_string(),
            user_code: generate_user_code(state.rng.as_ref()),
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
            Err(e) => return Err(e.into()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::assert_answers;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        assert_answers(
            vec![
                (DeviceAuthorizationError::RateLimited { retry_after_ms: 500 }, 429, "temporarily_unavailable"),
                (Params::parse(b"token=1&token=2").unwrap_err().into(), 400, "invalid_request"),
                (ClientAuthError::InvalidClient("unknown client".into()).into(), 401, "invalid_client"),
                (DeviceAuthorizationError::GrantNotAllowed, 400, "unauthorized_client"),
                (DeviceAuthorizationError::InvalidScope("bad".into()), 400, "invalid_scope"),
                (StoreError::Conflict("device grant").into(), 500, "server_error"),
            ],
            DeviceAuthorizationError::answer,
        );
    }
}
