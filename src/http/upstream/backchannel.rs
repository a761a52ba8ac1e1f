//! `POST /upstream/backchannel-logout/{id}`: OpenID Connect Back-Channel Logout 1.0 §2.6. The
//! logout token is verified like an ID token (signature with the provider's keys and configured
//! algorithm, iss, aud, iat/exp), must carry `sub` or `sid` and the back-channel logout event,
//! and no `nonce`; then `on_backchannel_logout` is applied.

use std::collections::HashSet;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jwt_simple::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::client;
use crate::http::AppState;
use crate::store::upstream as upstream_store;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Deserialize)]
pub struct LogoutForm {
    logout_token: Option<String>,
}

fn bad(message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": "invalid_request", "error_description": message.into()});
    (StatusCode::BAD_REQUEST, [(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[tracing::instrument(name = "http.upstream.backchannel_logout", skip_all, fields(provider_id = %id))]
pub async fn post(State(state): State<AppState>, Path(id): Path<String>, Form(form): Form<LogoutForm>) -> Response {
    let key = id.to_uppercase();
    let provider = match state.store.read(move |c| upstream_store::provider_by_id(c, &key)).await {
        Ok(Some(p)) if p.disabled_at.is_none() => p,
        Ok(_) => return (StatusCode::NOT_FOUND, "unknown provider").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout: store");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(token) = form.logout_token else { return bad("logout_token is missing") };
    let (agent, cfg) = (state.http.clone(), provider.config.clone());
    let verified = tokio::task::spawn_blocking(move || verify(&agent, &cfg, &token)).await;
    let claims = match verified {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::warn!(provider_id = %provider.id, error = %e, "back-channel logout token refused");
            return bad(e);
        }
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout: task");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let sid = claims.get("sid").and_then(Value::as_str);
    let sub = claims.get("sub").and_then(Value::as_str);
    let mode = provider.config.on_backchannel_logout;
    match crate::lifecycle::upstream::backchannel_logout(&state.lifecycle, &provider.id, sid, sub, mode).await {
        Ok(n) => {
            tracing::info!(provider_id = %provider.id, mode = mode.as_str(), ended = n, "back-channel logout");
            (StatusCode::OK, [(axum::http::header::CACHE_CONTROL, "no-store")]).into_response()
        }
        Err(e) => {
            tracing::error!(provider_id = %provider.id, error = %e, "back-channel logout failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn verify(
    agent: &ureq::Agent,
    p: &crate::config::UpstreamProviderConfig,
    token: &str,
) -> Result<Map<String, Value>, String> {
    let meta = client::metadata(agent, p).map_err(|e| e.to_string())?;
    let header = token.split('.').next().unwrap_or_default();
    let header: Value = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("not a JWT")?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if alg != p.id_token_signed_response_alg {
        return Err(format!("signed with {alg:?}, expected {}", p.id_token_signed_response_alg));
    }
    let jwks_uri = meta.jwks_uri.as_ref().ok_or("the provider has no jwks_uri")?;
    let mut res = agent.get(jwks_uri.as_str()).call().map_err(|e| e.to_string())?;
    let jwks: Value = res.body_mut().read_json().map_err(|e| e.to_string())?;
    let mut options = VerificationOptions {
        allowed_audiences: Some(HashSet::from([p.client_id.clone()])),
        time_tolerance: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    if let Some(issuer) = &meta.issuer {
        options.allowed_issuers = Some(HashSet::from([issuer.clone()]));
    }
    let claims: JWTClaims<Map<String, Value>> =
        crate::http::oauth2::client_auth::verify_with_jwks(&jwks, token, alg, options)?;
    if claims.issued_at.is_none() {
        return Err("no iat".into());
    }
    if claims.nonce.is_some() || claims.custom.contains_key("nonce") {
        return Err("a logout token must not carry a nonce".into());
    }
    let has_event = claims.custom.get("events").and_then(|e| e.get(EVENT)).is_some_and(Value::is_object);
    if !has_event {
        return Err("the back-channel logout event is missing".into());
    }
    let mut out = claims.custom;
    if let Some(s) = claims.subject {
        out.insert("sub".into(), Value::String(s));
    }
    if !out.contains_key("sub") && !out.contains_key("sid") {
        return Err("neither sub nor sid".into());
    }
    Ok(out)
}
