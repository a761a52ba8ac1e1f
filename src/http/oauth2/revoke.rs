//! `POST /oauth2/revoke` (RFC 7009): revoking any token of a session ends the whole session.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_auth;
use super::params::Params;
use crate::http::AppState;
use crate::http::error::OAuthError;
use crate::lifecycle::sessions::{Ending, end_session};
use crate::store::sessions::SessionKind;
use crate::store::tokens as token_store;
use crate::tokens::{TokenKind, hash_token};

#[tracing::instrument(name = "http.oauth2.revoke", skip_all, fields(client_id))]
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        // Element X requires exactly 200 (not 204).
        Ok(()) => {
            (StatusCode::OK, [(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(serde_json::json!({})))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(), OAuthError> {
    let params = Params::from_bytes(body)?;
    let client = client_auth::authenticate(state, headers, &params).await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    let token = params.require("token")?.to_string();
    // Unknown or malformed tokens are not an error (RFC 7009 §2.2).
    let Some(kind) = TokenKind::check(&token) else {
        return Ok(());
    };
    let hash = hash_token(&token);
    let session_id = state
        .store
        .read(move |c| {
            Ok(match kind {
                TokenKind::AccessToken => token_store::access_by_hash(c, &hash)?.map(|t| t.session_id),
                TokenKind::RefreshToken => token_store::refresh_by_hash(c, &hash)?.map(|t| t.session_id),
                _ => None,
            })
        })
        .await?;
    let Some(session_id) = session_id else {
        return Ok(());
    };
    let session = {
        let id = session_id.clone();
        state.store.read(move |c| crate::store::sessions::oauth_by_id(c, &id)).await?
    };
    if session.as_ref().is_some_and(|s| s.client_id != client.id) {
        // Only the session's own client may end it; say nothing about the token.
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token belongs to another client",
        ));
    }
    // The device goes at once, so the homeserver drops its cached token too.
    end_session(&state.lifecycle, Ending::One(SessionKind::OAuth2, &session_id)).await?;
    Ok(())
}
