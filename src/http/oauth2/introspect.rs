//! `POST /oauth2/introspect` (RFC 7662): the hot path — Synapse asks it about every new token.
//! Callers: the homeserver with `Authorization: Bearer <matrix.secret>`, or a confidential client.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::client_auth::{self, ClientAuthError};
use super::params::{ParamError, Params};
use crate::crypto::constant_time_eq;
use crate::http::AppState;
use crate::http::error::{BoxError, ErrorCode, OAuthError, internal_error_from, respond_with_answer};
use crate::lifecycle::tokens;
use crate::model::Scope;
use crate::store::StoreError;
use crate::store::tokens::{self as token_store, TokenInfo};
use crate::tokens::{TokenKind, hash_token};

/// Why the introspection endpoint refused (RFC 7662 §2.3). An unknown or dead token is not an
/// error: it is `{"active": false}`.
#[derive(Debug)]
pub enum IntrospectError {
    /// 400: a malformed request (a parameter repeated or missing).
    BadRequest(ParamError),
    /// The client could not be authenticated.
    ClientAuth(ClientAuthError),
    /// 401 `access_denied`: a bearer secret that is not the homeserver's.
    BadBearer,
    /// 401 `access_denied`: public clients may not introspect.
    PublicClient,
    /// 500 `server_error`; the cause is logged.
    Internal(BoxError),
}

internal_error_from!(IntrospectError: StoreError);

impl From<ParamError> for IntrospectError {
    fn from(r: ParamError) -> Self {
        Self::BadRequest(r)
    }
}

impl From<ClientAuthError> for IntrospectError {
    fn from(e: ClientAuthError) -> Self {
        Self::ClientAuth(e)
    }
}

impl IntrospectError {
    pub fn answer(self) -> OAuthError {
        let denied = |d| OAuthError::new(StatusCode::UNAUTHORIZED, ErrorCode::AccessDenied, d);
        match self {
            Self::BadRequest(r) => r.answer(),
            Self::ClientAuth(e) => e.answer(),
            Self::BadBearer => denied("invalid bearer credentials"),
            Self::PublicClient => denied("public clients cannot introspect"),
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

respond_with_answer!(IntrospectError);

#[tracing::instrument(name = "http.oauth2.introspect", skip_all)]
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(v) => {
            let result = if v.get("active") == Some(&Value::Bool(true)) { "active" } else { "inactive" };
            state
                .metrics
                .introspections
                .get_or_create(&crate::http::metrics::ResultLabels { result: result.into() })
                .inc();
            let mut res = Json(v).into_response();
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => e.into_response(),
    }
}

fn inactive() -> Value {
    json!({ "active": false })
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Value, IntrospectError> {
    let params = Params::from_bytes(body)?;
    authenticate_caller(state, headers, &params).await?;
    let token = params.require("token")?;
    let hint = params.get("token_type_hint");
    // Garbage (bad prefix or CRC) is rejected without a database hit.
    let Some(kind) = TokenKind::check(token) else {
        return Ok(inactive());
    };
    let hint_matches = match (hint, kind) {
        (None, _) => true,
        (
            Some("access_token"),
            TokenKind::AccessToken | TokenKind::CompatAccessToken | TokenKind::PersonalAccessToken,
        ) => true,
        (Some("refresh_token"), TokenKind::RefreshToken | TokenKind::CompatRefreshToken) => true,
        (Some("access_token" | "refresh_token"), _) => false,
        (Some(_), _) => true,
    };
    if !hint_matches {
        return Ok(inactive());
    }
    if matches!(kind, TokenKind::CompatAccessToken | TokenKind::CompatRefreshToken) {
        let supports_device_id = headers.get("x-mas-supports-device-id").is_some_and(|v| v.as_bytes() == b"1");
        return compat_answer(state, hash_token(token), kind, supports_device_id).await;
    }
    let Some(info) = tokens::lookup(&state.store, kind, token).await? else {
        return Ok(inactive());
    };
    let now = state.now();
    if !tokens::is_active(&info, now) {
        return Ok(inactive());
    }
    // No IP: the caller is the homeserver, not the user's device.
    // Administration scopes only while their holder may still have them.
    let info = TokenInfo { scope: tokens::effective_scope(&info, &state.config.policy.data).to_string(), ..info };
    if kind == TokenKind::PersonalAccessToken {
        state.lifecycle.activity().record_personal(&info.session_id, None);
        return Ok(personal_answer(&info, now));
    }
    state.lifecycle.activity().record_oauth2(&info.session_id, None);
    if kind == TokenKind::AccessToken && info.first_used_at.is_none() {
        // First use: the refresh-token replay tolerance ends once a successor token was used.
        let id = info.token_id.clone();
        state.store.write(move |c| token_store::mark_access_used(c, &id, now)).await?;
    }
    Ok(answer(&info, kind, now))
}

fn answer(info: &TokenInfo, kind: TokenKind, now: i64) -> Value {
    let scope = Scope::parse(&info.scope).unwrap_or_default().normalised();
    let mut m = Map::new();
    m.insert("active".into(), json!(true));
    m.insert("scope".into(), json!(scope.to_string()));
    if let Some(client_id) = &info.client_id {
        m.insert("client_id".into(), json!(client_id));
    }
    if let Some(u) = &info.username {
        m.insert("username".into(), json!(u));
    }
    if let Some(sub) = &info.user_id {
        m.insert("sub".into(), json!(sub));
    }
    let token_type = if kind == TokenKind::RefreshToken { "refresh_token" } else { "access_token" };
    m.insert("token_type".into(), json!(token_type));
    if let Some(exp) = info.expires_at {
        m.insert("exp".into(), json!(exp));
        m.insert("expires_in".into(), json!((exp - now).max(0)));
    }
    m.insert("iat".into(), json!(info.created_at));
    m.insert("nbf".into(), json!(info.created_at));
    m.insert("jti".into(), json!(info.token_id));
    Value::Object(m)
}

/// Personal access tokens, as MAS answers them: the user is the one the token acts as, `client_id`
/// the owning client (absent when a user owns it), the device only in the (normalised) scope,
/// and no `jti`.
fn personal_answer(info: &TokenInfo, now: i64) -> Value {
    let mut v = answer(info, TokenKind::PersonalAccessToken, now);
    if let Some(m) = v.as_object_mut() {
        m.remove("jti");
    }
    v
}

/// Compat tokens: `client_id` "legacy", the device as `device_id` when the homeserver says it
/// understands that field, otherwise encoded in the scope; neither for a session without one.
async fn compat_answer(
    state: &AppState,
    hash: String,
    kind: TokenKind,
    supports_device_id: bool,
) -> Result<Value, IntrospectError> {
    let refresh = kind == TokenKind::CompatRefreshToken;
    let found = state.store.read(move |c| crate::store::compat::introspect(c, &hash, refresh)).await?;
    let Some((info, device_id, is_admin)) = found else { return Ok(inactive()) };
    let now = state.now();
    if !tokens::is_active(&info, now) {
        return Ok(inactive());
    }
    // Fail closed on a device ID with characters the grammar refuses (a row from before it was
    // enforced): it must never reach a scope string. Short IDs from Synapse imports stay valid.
    // A session without a device (a device-less Synapse token) names none, as MAS does: Synapse
    // then serves the user without a device.
    let device = match device_id.as_deref().map(crate::model::DeviceId::parse_stored) {
        None => None,
        Some(Ok(device)) => Some(device),
        Some(Err(_)) => return Ok(inactive()),
    };
    state.lifecycle.activity().record_compat(&info.session_id, None);
    let scope = crate::lifecycle::compat_sessions::scope_of(device.as_ref(), is_admin, !supports_device_id);
    let mut v = answer(&TokenInfo { scope: scope.to_string(), ..info }, kind, now);
    if let Some(m) = v.as_object_mut() {
        m.remove("jti");
        m.insert("token_type".into(), json!(if refresh { "refresh_token" } else { "access_token" }));
        if let Some(device_id) = device_id.filter(|_| supports_device_id) {
            m.insert("device_id".into(), json!(device_id));
        }
    }
    Ok(v)
}

/// The homeserver's shared secret, or a confidential client's credentials.
async fn authenticate_caller(state: &AppState, headers: &HeaderMap, params: &Params) -> Result<(), IntrospectError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if let Some(secret) = bearer {
        if constant_time_eq(secret.trim().as_bytes(), state.config.matrix.secret().as_bytes()) {
            return Ok(());
        }
        return Err(IntrospectError::BadBearer);
    }
    let client = client_auth::authenticate(state, headers, params).await?;
    if client.is_public() {
        return Err(IntrospectError::PublicClient);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::assert_answers;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        assert_answers(
            vec![
                (Params::parse(b"token=1&token=2").unwrap_err().into(), 400, "invalid_request"),
                (ClientAuthError::InvalidClient("unknown client".into()).into(), 401, "invalid_client"),
                (IntrospectError::BadBearer, 401, "access_denied"),
                (IntrospectError::PublicClient, 401, "access_denied"),
                (StoreError::Corrupt("x".into()).into(), 500, "server_error"),
            ],
            IntrospectError::answer,
        );
    }
}
