//! `/oauth2/userinfo` (GET and POST): `{sub, username}` for an access token with `openid`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::AppState;
use crate::model::Scope;
use crate::store::tokens as token_store;
use crate::tokens::{TokenKind, hash_token};

fn unauthorized(error: &'static str, description: &str) -> Response {
    let challenge = format!("Bearer error=\"{error}\", error_description=\"{description}\"");
    let mut res =
        (StatusCode::UNAUTHORIZED, Json(json!({"error": error, "error_description": description}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

#[tracing::instrument(name = "http.oauth2.userinfo", skip_all)]
pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return unauthorized("invalid_request", "missing bearer token");
    };
    if TokenKind::check(token) != Some(TokenKind::AccessToken) {
        return unauthorized("invalid_token", "unknown token");
    }
    let hash = hash_token(token);
    let info = match state.store.read(move |c| token_store::introspect_access(c, &hash)).await {
        Ok(i) => i,
        Err(e) => return crate::http::error::OAuthError::internal(e).into_response(),
    };
    let now = state.now();
    let Some(info) =
        info.filter(|i| !i.dead && !i.session_finished && i.user_valid && i.expires_at.is_none_or(|e| e > now))
    else {
        return unauthorized("invalid_token", "the token is not active");
    };
    let scope = Scope::parse(&info.scope).unwrap_or_default();
    if !scope.contains(crate::model::scope::OPENID) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "insufficient_scope", "error_description": "the openid scope is required"})),
        )
            .into_response();
    }
    let (Some(sub), Some(username)) = (info.user_id, info.username) else {
        return unauthorized("invalid_token", "the token has no user");
    };
    let mut res = Json(json!({ "sub": sub, "username": username })).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
