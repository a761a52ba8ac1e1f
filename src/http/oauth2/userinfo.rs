//! `/oauth2/userinfo` (GET and POST): `{sub, username}` for an access token with `openid`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::AppState;
use crate::http::error::{BoxError, ErrorCode, OAuthError, internal_error_from, respond_with_answer};
use crate::model::Scope;
use crate::store::StoreError;
use crate::store::tokens as token_store;
use crate::tokens::{TokenKind, hash_token};

/// Why userinfo refused (RFC 6750 §3.1): a 401 carries a Bearer challenge.
#[derive(Debug)]
pub enum UserinfoError {
    /// 401 `invalid_request`: no bearer token.
    MissingToken,
    /// 401 `invalid_token`: not an access token at all.
    UnknownToken,
    /// 401 `invalid_token`: expired, revoked, or its session or user ended.
    Inactive,
    /// 401 `invalid_token`: a token that acts for no user.
    NoUser,
    /// 403 `insufficient_scope`: the token lacks `openid`.
    NoOpenidScope,
    /// 500 `server_error`; the cause is logged.
    Internal(BoxError),
}

internal_error_from!(UserinfoError: StoreError);

impl UserinfoError {
    pub fn answer(self) -> OAuthError {
        let unauthorized = |code, d| OAuthError::resource(StatusCode::UNAUTHORIZED, code, d);
        match self {
            Self::MissingToken => unauthorized(ErrorCode::InvalidRequest, "missing bearer token"),
            Self::UnknownToken => unauthorized(ErrorCode::InvalidToken, "unknown token"),
            Self::Inactive => unauthorized(ErrorCode::InvalidToken, "the token is not active"),
            Self::NoUser => unauthorized(ErrorCode::InvalidToken, "the token has no user"),
            Self::NoOpenidScope => OAuthError::resource(
                StatusCode::FORBIDDEN,
                ErrorCode::InsufficientScope,
                "the openid scope is required",
            ),
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

respond_with_answer!(UserinfoError);

#[tracing::instrument(name = "http.oauth2.userinfo", skip_all)]
pub async fn handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match handle(&state, &headers).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap) -> Result<Response, UserinfoError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return Err(UserinfoError::MissingToken);
    };
    if TokenKind::check(token) != Some(TokenKind::AccessToken) {
        return Err(UserinfoError::UnknownToken);
    }
    let hash = hash_token(token);
    let info = state.store.read(move |c| token_store::introspect_access(c, &hash)).await?;
    let now = state.now();
    let Some(info) =
        info.filter(|i| !i.dead && !i.session_finished && i.user_valid && i.expires_at.is_none_or(|e| e > now))
    else {
        return Err(UserinfoError::Inactive);
    };
    let scope = Scope::parse(&info.scope).unwrap_or_default();
    if !scope.contains(crate::model::scope::OPENID) {
        return Err(UserinfoError::NoOpenidScope);
    }
    let (Some(sub), Some(username)) = (info.user_id, info.username) else {
        return Err(UserinfoError::NoUser);
    };
    let mut res = Json(json!({ "sub": sub, "username": username })).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::assert_answers;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        assert_answers(
            vec![
                (UserinfoError::MissingToken, 401, "invalid_request"),
                (UserinfoError::UnknownToken, 401, "invalid_token"),
                (UserinfoError::Inactive, 401, "invalid_token"),
                (UserinfoError::NoUser, 401, "invalid_token"),
                (UserinfoError::NoOpenidScope, 403, "insufficient_scope"),
                (StoreError::Corrupt("x".into()).into(), 500, "server_error"),
            ],
            UserinfoError::answer,
        );
    }
}
