//! `POST /oauth2/token`: authorization_code, refresh_token, client_credentials, device_code.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::client_auth::{self, ClientAuthError};
use super::id_token::{self, IdTokenError, IdTokenInput};
use super::params::{ParamError, Params};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::{BoxError, ErrorCode, OAuthError, internal_error_from, respond_with_answer};
use crate::lifecycle::grants::{self, Approved, CodeRequest, GrantError};
use crate::lifecycle::oauth_sessions::{self, IssuedTokens, NewSession, RefreshOutcome};
use crate::lifecycle::policy::{self, GrantKind};
use crate::model::client::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
};
use crate::model::{Client, Scope};
use crate::store::StoreError;

/// Why the token endpoint refused a request (RFC 6749 §5.2, RFC 8628 §3.5).
#[derive(Debug)]
pub enum TokenError {
    /// 400: a malformed request (a parameter repeated or missing).
    BadRequest(ParamError),
    /// The client could not be authenticated.
    ClientAuth(ClientAuthError),
    /// 400 `invalid_request`.
    MissingGrantType,
    /// 400: the client may not use this grant.
    UnauthorizedClient(String),
    /// 400: a grant this server does not offer.
    UnsupportedGrantType(String),
    /// 400: the scope is malformed, refused by policy, or wider than the session's.
    InvalidScope(String),
    /// 400 `invalid_grant`: the refresh token is unknown, used up, or another client's.
    InvalidRefreshToken(&'static str),
    /// 400: an authorization code or device code exchange was refused.
    Grant(GrantError),
    /// 500 `server_error`; the cause is logged.
    Internal(BoxError),
}

internal_error_from!(TokenError: StoreError, IdTokenError);

impl From<ParamError> for TokenError {
    fn from(r: ParamError) -> Self {
        Self::BadRequest(r)
    }
}

impl From<ClientAuthError> for TokenError {
    fn from(e: ClientAuthError) -> Self {
        Self::ClientAuth(e)
    }
}

impl From<GrantError> for TokenError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Store(e) => Self::Internal(e.into()),
            refused => Self::Grant(refused),
        }
    }
}

impl TokenError {
    pub fn answer(self) -> OAuthError {
        let bad = |code, d: String| OAuthError::new(StatusCode::BAD_REQUEST, code, d);
        match self {
            Self::BadRequest(r) => r.answer(),
            Self::ClientAuth(e) => e.answer(),
            Self::MissingGrantType => OAuthError::invalid_request("missing grant_type"),
            Self::UnauthorizedClient(d) => bad(ErrorCode::UnauthorizedClient, d),
            Self::UnsupportedGrantType(d) => bad(ErrorCode::UnsupportedGrantType, d),
            Self::InvalidScope(d) => bad(ErrorCode::InvalidScope, d),
            Self::InvalidRefreshToken(d) => bad(ErrorCode::InvalidGrant, d.to_string()),
            Self::Grant(e) => {
                let code = match &e {
                    GrantError::Invalid(_) | GrantError::CodeReplayed => ErrorCode::InvalidGrant,
                    GrantError::BadRequest(_) => ErrorCode::InvalidRequest,
                    GrantError::AccessDenied => ErrorCode::AccessDenied,
                    GrantError::ExpiredToken => ErrorCode::ExpiredToken,
                    GrantError::SlowDown => ErrorCode::SlowDown,
                    GrantError::AuthorizationPending => ErrorCode::AuthorizationPending,
                    // Taken apart by `From<GrantError>`; kept a 500 should one arrive here.
                    GrantError::Store(e) => return OAuthError::internal(e),
                };
                bad(code, e.to_string())
            }
            Self::Internal(e) => OAuthError::internal(&*e),
        }
    }
}

respond_with_answer!(TokenError);

#[tracing::instrument(name = "http.oauth2.token", skip_all, fields(client_id, grant_type))]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let params = match Params::from_bytes(&body) {
        Ok(p) => p,
        Err(e) => return TokenError::from(e).into_response(),
    };
    let grant_type = params.get("grant_type").unwrap_or("").to_string();
    tracing::Span::current().record("grant_type", grant_type.as_str());
    let result = handle(&state, ip, &headers, &params, &grant_type).await.map_err(TokenError::answer);
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.error.as_str(),
    };
    state.metrics.token(if grant_type.is_empty() { "none" } else { &grant_type }, label);
    match result {
        Ok(body) => token_response(body),
        Err(e) => e.into_response(),
    }
}

fn token_response(body: Value) -> Response {
    let mut res = Json(body).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

async fn handle(
    state: &AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    params: &Params,
    grant_type: &str,
) -> Result<Value, TokenError> {
    if grant_type.is_empty() {
        return Err(TokenError::MissingGrantType);
    }
    let client = client_auth::authenticate(state, headers, params).await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    let allowed = |g: &str| -> Result<(), TokenError> {
        if client.allows_grant(g) {
            Ok(())
        } else {
            Err(TokenError::UnauthorizedClient(format!("client may not use the {g} grant")))
        }
    };
    match grant_type {
        GRANT_AUTHORIZATION_CODE => {
            allowed(GRANT_AUTHORIZATION_CODE)?;
            authorization_code(state, &client, params).await
        }
        GRANT_REFRESH_TOKEN => {
            allowed(GRANT_REFRESH_TOKEN)?;
            refresh_token(state, &client, params, ip).await
        }
        GRANT_CLIENT_CREDENTIALS => {
            allowed(GRANT_CLIENT_CREDENTIALS)?;
            client_credentials(state, &client, params).await
        }
        GRANT_DEVICE_CODE => {
            allowed(GRANT_DEVICE_CODE)?;
            device_code(state, &client, params).await
        }
        "password" | "implicit" => {
            Err(TokenError::UnsupportedGrantType(format!("the {grant_type} grant is not supported")))
        }
        other => Err(TokenError::UnsupportedGrantType(format!("unknown grant_type {other}"))),
    }
}

fn base_response(tokens: &IssuedTokens, scope: &Scope) -> Value {
    let mut body = json!({
        "access_token": tokens.access_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
    });
    if let Some(r) = &tokens.refresh_token {
        body["refresh_token"] = json!(r);
    }
    if !scope.is_empty() {
        body["scope"] = json!(scope.to_string());
    }
    body
}

async fn authorization_code(state: &AppState, client: &Client, params: &Params) -> Result<Value, TokenError> {
    let req = CodeRequest {
        code: params.require("code")?.to_string(),
        redirect_uri: params.get("redirect_uri").map(String::from),
        code_verifier: params.get("code_verifier").map(String::from),
    };
    let code = req.code.clone();
    let ttl = state.config.experimental.access_token_ttl;
    let Approved { tokens, scope, user, auth_time, nonce } =
        grants::exchange_code(&state.lifecycle, client, req, ttl).await?;
    let mut body = base_response(&tokens, &scope);
    if scope.contains(crate::model::scope::OPENID) {
        let id_token = id_token::sign(
            state,
            IdTokenInput {
                client,
                subject: &user.id,
                nonce: nonce.as_deref(),
                auth_time: Some(auth_time),
                access_token: Some(&tokens.access_token),
                code: Some(&code),
            },
        )?;
        body["id_token"] = json!(id_token);
    }
    Ok(body)
}

async fn refresh_token(state: &AppState, client: &Client, params: &Params, ip: IpAddr) -> Result<Value, TokenError> {
    let token = params.require("refresh_token")?.to_string();
    let requested =
        params.get("scope").map(Scope::parse).transpose().map_err(|e| TokenError::InvalidScope(e.to_string()))?;
    let ttl = state.config.experimental.access_token_ttl;
    let outcome = oauth_sessions::refresh(&state.lifecycle, &client.id, &token, ttl, Some(ip)).await?;
    let rotated = match outcome {
        RefreshOutcome::Rotated(r) => r,
        RefreshOutcome::Invalid(why) => return Err(TokenError::InvalidRefreshToken(why)),
        RefreshOutcome::Reused { .. } => {
            return Err(TokenError::InvalidRefreshToken(
                "refresh token reused after its successor was used; the session has been ended",
            ));
        }
        RefreshOutcome::WrongClient => {
            return Err(TokenError::InvalidRefreshToken("the refresh token belongs to another client"));
        }
    };
    let scope = Scope::parse(&rotated.session.scope).unwrap_or_default();
    if let Some(req) = requested {
        if req.iter().any(|t| !scope.contains(t)) {
            return Err(TokenError::InvalidScope("a refresh cannot widen the scope".into()));
        }
    }
    let mut body = json!({
        "access_token": rotated.access_token,
        "token_type": "Bearer",
        "expires_in": rotated.expires_in,
        "refresh_token": rotated.refresh_token,
    });
    if !scope.is_empty() {
        body["scope"] = json!(scope.to_string());
    }
    Ok(body)
}

async fn client_credentials(state: &AppState, client: &Client, params: &Params) -> Result<Value, TokenError> {
    if client.is_public() {
        return Err(TokenError::UnauthorizedClient("public clients cannot use client_credentials".into()));
    }
    let scope = Scope::parse(params.get("scope").unwrap_or("")).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
    policy::check(&scope, GrantKind::ClientCredentials, None, &client.id, &state.config.policy.data)
        .map_err(TokenError::InvalidScope)?;
    let now = state.now();
    let ttl = state.config.experimental.access_token_ttl;
    let client_id = client.id.clone();
    let (s, rng) = (scope.clone(), state.rng.clone());
    let tokens = state
        .store
        .write(move |c| {
            oauth_sessions::start(
                c,
                NewSession { client_id: &client_id, user_id: None, user_session_id: None, scope: &s, user_agent: None },
                false,
                ttl,
                now,
                rng.as_ref(),
            )
        })
        .await?;
    Ok(base_response(&tokens, &scope))
}

async fn device_code(state: &AppState, client: &Client, params: &Params) -> Result<Value, TokenError> {
    let device_code = params.require("device_code")?;
    let ttl = state.config.experimental.access_token_ttl;
    let approved = grants::exchange_device_code(&state.lifecycle, client, device_code, ttl).await?;
    Ok(base_response(&approved.tokens, &approved.scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::assert_answers;

    #[test]
    fn each_refusal_has_its_status_and_code() {
        let corrupt = || StoreError::Corrupt("x".into());
        assert_answers(
            vec![
                (TokenError::BadRequest(Params::parse(b"token=1&token=2").unwrap_err()), 400, "invalid_request"),
                (ClientAuthError::InvalidClient("unknown client".into()).into(), 401, "invalid_client"),
                (ClientAuthError::InvalidRequest("two client ids").into(), 400, "invalid_request"),
                (ClientAuthError::Internal(corrupt().into()).into(), 500, "server_error"),
                (TokenError::MissingGrantType, 400, "invalid_request"),
                (TokenError::UnauthorizedClient("no".into()), 400, "unauthorized_client"),
                (TokenError::UnsupportedGrantType("password".into()), 400, "unsupported_grant_type"),
                (TokenError::InvalidScope("wider".into()), 400, "invalid_scope"),
                (TokenError::InvalidRefreshToken("unknown refresh token"), 400, "invalid_grant"),
                (GrantError::Invalid("unknown code").into(), 400, "invalid_grant"),
                (GrantError::CodeReplayed.into(), 400, "invalid_grant"),
                (GrantError::BadRequest("bad verifier").into(), 400, "invalid_request"),
                (GrantError::AccessDenied.into(), 400, "access_denied"),
                (GrantError::ExpiredToken.into(), 400, "expired_token"),
                (GrantError::SlowDown.into(), 400, "slow_down"),
                (GrantError::AuthorizationPending.into(), 400, "authorization_pending"),
                (GrantError::Store(corrupt()).into(), 500, "server_error"),
                (TokenError::Grant(GrantError::Store(corrupt())), 500, "server_error"),
                (corrupt().into(), 500, "server_error"),
                (IdTokenError::NoKey("RS256".into()).into(), 500, "server_error"),
            ],
            TokenError::answer,
        );
    }
}
