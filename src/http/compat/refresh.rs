//! `POST /_matrix/client/{v}/refresh` (MSC2918): rotates a compat refresh token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::MatrixError;
use crate::lifecycle::compat_sessions;
use crate::tokens::TokenKind;

#[tracing::instrument(name = "http.compat.refresh", skip_all)]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, body: Bytes) -> Response {
    let unknown =
        || MatrixError::new(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Invalid refresh token").into_response();
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return MatrixError::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Body is not JSON").into_response(),
    };
    let Some(token) = req.get("refresh_token").and_then(Value::as_str).map(String::from) else {
        return MatrixError::new(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", "Missing refresh_token").into_response();
    };
    if TokenKind::check(&token) != Some(TokenKind::CompatRefreshToken) {
        return unknown();
    }
    let (now, ttl, rng) = (state.now(), state.config.experimental.compat_token_ttl, state.rng.clone());
    let rotated = state.store.write(move |c| compat_sessions::refresh(c, &token, ttl, now, rng.as_ref())).await;
    match rotated {
        Ok(Some(t)) => {
            state.lifecycle.activity().record_compat(&t.session.id, Some(ip));
            let body = json!({
                "access_token": t.access_token,
                "refresh_token": t.refresh_token,
                "expires_in_ms": t.expires_in.unwrap_or(ttl) * 1000,
            });
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        Ok(None) => unknown(),
        Err(e) => MatrixError::internal(e).into_response(),
    }
}
