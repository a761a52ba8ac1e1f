//! `POST /oauth2/token`: authorization_code, refresh_token, client_credentials, device_code.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client_auth;
use super::id_token::{self, IdTokenInput};
use super::params::Params;
use crate::crypto::{b64url, constant_time_eq};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::OAuthError;
use crate::lifecycle::oauth_sessions::{self, IssuedTokens, NewSession, RefreshOutcome};
use crate::lifecycle::policy::{self, GrantKind};
use crate::model::client::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN,
};
use crate::model::{Client, Scope, User};
use crate::store::{grants as grant_store, sessions as session_store, users as user_store};
use crate::tokens::hash_token;

/// How long a code stays exchangeable after consent.
const CODE_TTL: i64 = 600;

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
            axum::http::StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("the {grant_type} grant is not supported"),
        )),
        other => Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
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

/// RFC 7636 §4.6.
fn verify_pkce(challenge: &str, method: &str, verifier: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = match method {
        "S256" => b64url(&Sha256::digest(verifier.as_bytes())),
        _ => verifier.to_string(),
    };
    constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// The browser session that approved a grant and its user, both still valid; or why not.
fn approver(
    c: &rusqlite::Connection,
    user_session_id: Option<&str>,
) -> crate::store::StoreResult<Result<(session_store::BrowserSession, User), &'static str>> {
    let Some(browser) = user_session_id.map(|id| session_store::browser_by_id(c, id)).transpose()?.flatten() else {
        return Ok(Err("the authorization was not completed"));
    };
    if browser.finished_at.is_some() {
        return Ok(Err("the browser session has ended"));
    }
    match user_store::by_id(c, &browser.user_id)?.filter(User::is_valid) {
        Some(user) => Ok(Ok((browser, user))),
        None => Ok(Err("the user can no longer sign in")),
    }
}

/// The session a code or device grant issued.
struct Approved {
    tokens: IssuedTokens,
    scope: Scope,
    user: User,
    /// When the user last signed in to the browser session that approved the grant.
    auth_time: i64,
}

/// Starts the session that a code or device grant issues: for the user who approved it in the
/// browser session `user_session_id` (see `approver`), with the grant's `scope`. `Err` says why it
/// cannot be issued.
fn start_approved(
    c: &rusqlite::Connection,
    client_id: &str,
    user_session_id: Option<&str>,
    scope: &str,
    with_refresh: bool,
    ttl: i64,
    now: i64,
) -> crate::store::StoreResult<Result<Approved, &'static str>> {
    let (browser, user) = match approver(c, user_session_id)? {
        Ok(found) => found,
        Err(why) => return Ok(Err(why)),
    };
    let scope = Scope::parse(scope).unwrap_or_default();
    let tokens = oauth_sessions::start(
        c,
        NewSession {
            client_id,
            user_id: Some(&user.id),
            user_session_id: Some(&browser.id),
            scope: &scope,
            user_agent: None,
        },
        with_refresh,
        ttl,
        now,
    )?;
    Ok(Ok(Approved { tokens, scope, user, auth_time: browser.authenticated_at }))
}

enum CodeOutcome {
    Issued {
        approved: Box<Approved>,
        nonce: Option<String>,
    },
    /// The code was used before; the session it issued (of this user, if any) was ended.
    Replayed {
        ended_for: Option<String>,
    },
}

async fn authorization_code(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let code = params.require("code")?.to_string();
    let redirect_uri = params.get("redirect_uri").map(String::from);
    let verifier = params.get("code_verifier").map(String::from);
    let now = state.now();
    let ttl = state.config.experimental.access_token_ttl;
    let client_id = client.id.clone();
    let with_refresh = client.allows_grant(GRANT_REFRESH_TOKEN);
    let code_hash = hash_token(&code);

    let outcome = state
        .store
        .write(move |c| -> crate::store::StoreResult<Result<CodeOutcome, OAuthError>> {
            let Some(grant) = grant_store::grant_by_code(c, &code_hash)? else {
                return Ok(Err(OAuthError::invalid_grant("unknown authorization code")));
            };
            if grant.client_id != client_id {
                return Ok(Err(OAuthError::invalid_grant("the code was issued to another client")));
            }
            if grant.exchanged_at.is_some() {
                // RFC 6749 §4.1.2: a reused code revokes what it granted.
                let mut ended_for = None;
                if let Some(session_id) = &grant.oauth2_session_id {
                    ended_for = oauth_sessions::end(c, session_id, now)?.and_then(|s| s.user_id);
                }
                return Ok(Ok(CodeOutcome::Replayed { ended_for }));
            }
            let fulfilled_at = grant.fulfilled_at.unwrap_or(grant.created_at);
            if now > fulfilled_at + CODE_TTL {
                return Ok(Err(OAuthError::invalid_grant("the authorization code has expired")));
            }
            // RFC 6749 §4.1.3: when the authorization request carried redirect_uri, the token
            // request must carry the same one; when it did not, a given one must still match.
            match redirect_uri.as_deref() {
                Some(r) if r != grant.redirect_uri => {
                    return Ok(Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request")));
                }
                None if grant.redirect_uri_given => {
                    return Ok(Err(OAuthError::invalid_grant(
                        "redirect_uri is required: the authorization request carried one",
                    )));
                }
                _ => {}
            }
            match (&grant.code_challenge, &verifier) {
                (Some(challenge), Some(v)) => {
                    let method = grant.code_challenge_method.as_deref().unwrap_or("plain");
                    if !verify_pkce(challenge, method, v) {
                        return Ok(Err(OAuthError::invalid_grant("PKCE verification failed")));
                    }
                }
                (Some(_), None) => {
                    return Ok(Err(OAuthError::invalid_request("missing code_verifier")));
                }
                (None, Some(_)) => {
                    return Ok(Err(OAuthError::invalid_request("code_verifier given but no code_challenge was sent")));
                }
                (None, None) => {}
            }
            let approved = match start_approved(
                c,
                &client_id,
                grant.user_session_id.as_deref(),
                &grant.scope,
                with_refresh,
                ttl,
                now,
            )? {
                Ok(approved) => approved,
                Err(why) => return Ok(Err(OAuthError::invalid_grant(why))),
            };
            if !grant_store::exchange_grant(c, &grant.id, &approved.tokens.session_id, now)? {
                // Cannot happen inside the single writer; roll everything back if it does.
                return Err(crate::store::StoreError::Conflict("authorization code exchange"));
            }
            Ok(Ok(CodeOutcome::Issued { approved: Box::new(approved), nonce: grant.nonce }))
        })
        .await??;

    let (Approved { tokens, scope, user, auth_time }, nonce) = match outcome {
        CodeOutcome::Replayed { ended_for } => {
            // The ended session's device goes from the homeserver, as after a logout.
            if let Some(user_id) = ended_for {
                state.lifecycle.sync_devices(&user_id).await;
            }
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used; its session has been ended",
            ));
        }
        CodeOutcome::Issued { approved, nonce } => (*approved, nonce),
    };
    provision_device(state, client, &user, &scope).await;
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
    let now = state.now();
    let ttl = state.config.experimental.access_token_ttl;
    let client_id = client.id.clone();
    let outcome = state.store.write(move |c| oauth_sessions::rotate(c, &client_id, &token, ttl, now)).await?;
    let rotated = match outcome {
        RefreshOutcome::Rotated(r) => {
            state.lifecycle.activity.record_oauth2(&r.session.id, Some(ip));
            r
        }
        RefreshOutcome::Invalid(why) => return Err(OAuthError::invalid_grant(why)),
        RefreshOutcome::Reused { user_id } => {
            if let Some(user_id) = user_id {
                state.lifecycle.sync_devices(&user_id).await;
            }
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

/// The device must exist on the homeserver before its token is handed out.
async fn provision_device(state: &AppState, client: &Client, user: &User, scope: &Scope) {
    if let Some(device) = scope.device_id() {
        state.lifecycle.ensure_device(user, device, Some(client.display_name().to_string())).await;
    }
}

enum DeviceOutcome {
    Issued(Box<Approved>),
    Error(OAuthError),
}

async fn device_code(state: &AppState, client: &Client, params: &Params) -> Result<Value, OAuthError> {
    let device_code = params.require("device_code")?.to_string();
    let now = state.now();
    let ttl = state.config.experimental.access_token_ttl;
    let client_id = client.id.clone();
    let with_refresh = client.allows_grant(GRANT_REFRESH_TOKEN);
    let outcome = state
        .store
        .write(move |c| {
            let err = |e: &'static str, d: &str| {
                Ok(DeviceOutcome::Error(OAuthError::new(axum::http::StatusCode::BAD_REQUEST, e, d.to_string())))
            };
            let Some(grant) = grant_store::device_by_code(c, &hash_token(&device_code))? else {
                return err("invalid_grant", "unknown device code");
            };
            if grant.client_id != client_id {
                return err("invalid_grant", "the device code was issued to another client");
            }
            if grant.exchanged_at.is_some() {
                return err("invalid_grant", "the device code was already used");
            }
            if grant.rejected_at.is_some() {
                return err("access_denied", "the user denied the request");
            }
            if grant.fulfilled_at.is_none() {
                if now >= grant.expires_at {
                    return err("expired_token", "the device code has expired");
                }
                let too_fast = grant.last_polled_at.is_some_and(|t| now - t < super::device::POLL_INTERVAL);
                grant_store::touch_device_poll(c, &grant.id, now)?;
                return if too_fast {
                    err("slow_down", "polling too fast")
                } else {
                    err("authorization_pending", "waiting for the user")
                };
            }
            let approved = match start_approved(
                c,
                &client_id,
                grant.user_session_id.as_deref(),
                &grant.scope,
                with_refresh,
                ttl,
                now,
            )? {
                Ok(approved) => approved,
                Err(why) => return err("invalid_grant", why),
            };
            if !grant_store::exchange_device(c, &grant.id, &approved.tokens.session_id, now)? {
                return Err(crate::store::StoreError::Conflict("device code exchange"));
            }
            Ok(DeviceOutcome::Issued(Box::new(approved)))
        })
        .await?;
    match outcome {
        DeviceOutcome::Issued(approved) => {
            let Approved { tokens, scope, user, .. } = *approved;
            provision_device(state, client, &user, &scope).await;
            Ok(base_response(&tokens, &scope))
        }
        DeviceOutcome::Error(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::verify_pkce;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verify_pkce("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256", verifier));
        assert!(!verify_pkce(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "S256",
            "wrong-verifier-wrong-verifier-wrong-verifier"
        ));
        assert!(!verify_pkce("short", "plain", "short"));
    }
}
