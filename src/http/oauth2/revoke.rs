//! `POST /oauth2/revoke` (RFC 7009): revoking any token of a session ends the whole session.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_auth::{self, ClientAuthError};
use super::params::{ParamError, Params};
use crate::http::AppState;
use crate::http::error::{BoxError, ErrorCode, OAuthError, internal_error_from, respond_with_answer};
use crate::lifecycle::sessions::{Ending, end_session};
use crate::store::StoreError;
use crate::store::sessions::SessionKind;
use crate::store::tokens as token_store;
use crate::tokens::{TokenKind, hash_token};

/// Why the revocation endpoint refused (RFC 7009 §2.2.1).
#[derive(Debug)]
pub enum RevokeError {
    /// 400: a malformed request (a parameter repeated or missing).
    BadRequest(ParamError),
    /// The client could not be authenticated.
    ClientAuth(ClientAuthError),
    /// 400 `unauthorized_client`: the token belongs to another client's session.
    NotTheClientsToken,
    /// 500 `server_error`; the cause is logged.
    Internal(BoxError),
}

internal_error_from!(RevokeError: StoreError);

impl From<ParamError> for RevokeError {
    fn from(r: ParamError) -> Self {
        Self::BadRequest(r)
    }
}

impl From<ClientAuthError> for RevokeError {
    fn from(e: ClientAuthError) -> Self {
        Self::ClientAuth(e)
    }
}

impl RevokeError {
    pub fn answer(self) -> OAuthError {
        match self {
            Self::BadRequest(r) => r.answer(),
            Self::ClientAuth(e) => e.answer(),
            Self::NotTheClientsToken => OAuthError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnauthorizedClient,
                "the token belongs to another client",
            ),
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

respond_with_answer!(RevokeError);

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

async fn handle(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(), RevokeError> {
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
        return Err(RevokeError::NotTheClientsToken);
    }
    // The device goes at once, so the homeserver drops its cached token too.
    end_session(&state.lifecycle, Ending::One(SessionKind::OAuth2, &session_id)).await?;
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
                (ClientAuthError::InvalidClient("bad client credentials".into()).into(), 401, "invalid_client"),
                (RevokeError::NotTheClientsToken, 400, "unauthorized_client"),
                (StoreError::Corrupt("x".into()).into(), 500, "server_error"),
            ],
            RevokeError::answer,
        );
    }
}
