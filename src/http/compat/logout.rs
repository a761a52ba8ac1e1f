//! `POST /logout` and `/logout/all` for compat sessions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::access_token;
use crate::http::AppState;
use crate::http::error::MatrixError;
use crate::lifecycle::sessions::{Ending, end_session};
use crate::store::compat::{self, CompatSession};
use crate::store::sessions::SessionKind;
use crate::tokens::{TokenKind, hash_token};

async fn session_of_request(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<CompatSession, MatrixError> {
    let token = access_token(headers, query)
        .ok_or_else(|| MatrixError::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing access token"))?;
    let unknown = || MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Invalid access token passed.");
    if TokenKind::check(&token) != Some(TokenKind::CompatAccessToken) {
        return Err(unknown());
    }
    let (hash, now) = (hash_token(&token), state.now());
    state
        .store
        .read(move |c| compat::session_of_access(c, &hash, now))
        .await
        .map_err(MatrixError::internal)?
        .ok_or_else(unknown)
}

#[tracing::instrument(name = "http.compat.logout", skip_all)]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let session = match session_of_request(&state, &headers, query.as_deref()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = end_session(&state.lifecycle, Ending::One(SessionKind::Compat, &session.id)).await {
        return MatrixError::internal(e).into_response();
    }
    Json(json!({})).into_response()
}

/// Ends every compat session of the user — only when the client says that is all it expects
/// (OAuth sessions are ended from the account page).
#[tracing::instrument(name = "http.compat.logout_all", skip_all)]
pub async fn logout_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let session = match session_of_request(&state, &headers, query.as_deref()).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    if body.get("io.element.only_compat_is_fine").and_then(Value::as_bool) != Some(true) {
        return MatrixError::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request").into_response();
    }
    if let Err(e) = end_session(&state.lifecycle, Ending::CompatOf(&session.user_id)).await {
        return MatrixError::internal(e).into_response();
    }
    Json(json!({})).into_response()
}
