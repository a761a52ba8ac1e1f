//! `POST /oauth2/token`: authorization_code, refresh_token, client_credentials, device_code.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::client_auth;
use super::id_token::{self, IdTokenInput};
use super::params::Params;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::OAuthError;
use crate::lifecycle::grants::{self, Approved, CodeRequest, GrantError};
use crate::lifecycle::oauth_sessions::{self, IssuedTokens, NewSession, RefreshOutcome};
use crate::lifecycle::policy::{self, GrantKind};
use crate::model::client::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
};
use crate::model::{Client, Scope};

#[tracing::instrument(name = "http.oauth2.token", skip_all, fields(client_id, grant_type))]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let params = match Params::from_bytes(&body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let grant_type = params.get("grant_type").unwrap_or("").to_string();
    tracing::Span::current().record("grant_type", grant_type.as_str());
    let result = handle(&state, ip, &headers, &params, &grant_type).await;
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.error,
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
) -> Result<Value, OAuthError> {
    if grant_type.is_empty() {
        return Err(OAuthError::invalid_request("missing grant_type"));
    }
    let client = client_auth::authenticate(state, headers, params).await?;
    tracing::Span::current().record("client_id", client.id.as_str());
    let allowed = |g: &str| -> Result<(), OAuthError> {
        if client.allows_grant(g) {
            Ok(())
        } else {
            Err(OAuthError::unauthorized_client(format!("client may not use the {g} grant")))
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
        "password" | "implicit" => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("the {grant_type} grant is not supported"),
        )),
        other => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("unknown grant_type {other}"),
        )),
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

async fn authorization_code(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let req = CodeRequest {
        code: params.require("code")?.to_string(),
        redirect_uri: params.get("redirect_uri").map(String::from),
        code_verifier: params.get("code_verifier").map(String::from),
    };
    let code = req.code.clone();
    let ttl = state.config.experimental.access_token_ttl;
    let Approved { tokens, scope, user, auth_time, nonce } =
        grants::exchange_code(&state.lifecycle, client, req, ttl).await.map_err(grant_error)?;
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

async fn refresh_token(state: &AppState, client: &Client, params: &Params, ip: IpAddr) -> Result<Value, OAuthError> {
    let token = params.require("refresh_token")?.to_string();
    let requested =
        params.get("scope").map(Scope::parse).transpose().map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    let ttl = state.config.experimental.access_token_ttl;
    let outcome = oauth_sessions::refresh(&state.lifecycle, &client.id, &token, ttl, Some(ip)).await?;
    let rotated = match outcome {
        RefreshOutcome::Rotated(r) => r,
        RefreshOutcome::Invalid(why) => return Err(OAuthError::invalid_grant(why)),
        RefreshOutcome::Reused { .. } => {
            return Err(OAuthError::invalid_grant(
                "refresh token reused after its successor was used; the session has been ended",
            ));
        }
        RefreshOutcome::WrongClient => {
            return Err(OAuthError::invalid_grant("the refresh token belongs to another client"));
        }
    };
    let scope = Scope::parse(&rotated.session.scope).unwrap_or_default();
    if let Some(req) = requested {
        if req.iter().any(|t| !scope.contains(t)) {
            return Err(OAuthError::invalid_scope("a refresh cannot widen the scope"));
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

async fn client_credentials(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client("public clients cannot use client_credentials"));
    }
    let scope =
        Scope::parse(params.get("scope").unwrap_or("")).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    policy::check(&scope, GrantKind::ClientCredentials, None, &client.id, &state.config.policy.data)
        .map_err(OAuthError::invalid_scope)?;
    let now = state.now();
    let ttl = state.config.experimental.access_token_ttl;
    let client_id = client.id.clone();
    let s = scope.clone();
    let tokens = state
        .store
        .write(move |c| {
            oauth_sessions::start(
                c,
                NewSession { client_id: &client_id, user_id: None, user_session_id: None, scope: &s, user_agent: None },
                false,
                ttl,
                now,
            )
        })
        .await?;
    Ok(base_response(&tokens, &scope))
}

async fn device_code(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let device_code = params.require("device_code")?;
    let ttl = state.config.experimental.access_token_ttl;
    let approved =
        grants::exchange_device_code(&state.lifecycle, client, device_code, ttl).await.map_err(grant_error)?;
    Ok(base_response(&approved.tokens, &approved.scope))
}

/// A refused grant as RFC 6749 §5.2 (RFC 8628 §3.5 for the device flow's codes).
fn grant_error(e: GrantError) -> OAuthError {
    let code = match &e {
        GrantError::Invalid(_) | GrantError::CodeReplayed => "invalid_grant",
        GrantError::BadRequest(_) => "invalid_request",
        GrantError::AccessDenied => "access_denied",
        GrantError::ExpiredToken => "expired_token",
        GrantError::SlowDown => "slow_down",
        GrantError::AuthorizationPending => "authorization_pending",
        GrantError::Store(e) => return OAuthError::internal(e),
    };
    OAuthError::new(StatusCode::BAD_REQUEST, code, e.to_string())
}
