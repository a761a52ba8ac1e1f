//! `GET/POST /_matrix/client/{v}/login`: password and login-token sign-in for legacy clients and bots.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::MatrixError;
use crate::http::pages::login::{LoginFailure, localpart_of, verify_password};
use crate::lifecycle::compat_sessions::{self, NewCompatSession, StartedCompat};
use crate::model::user::MAX_DISPLAY_NAME_CHARS;
use crate::model::{DeviceId, User};
use crate::store::{compat, sessions as session_store, users as user_store};
use crate::tokens::hash_token;

/// A login token may be exchanged this long after the user confirmed.
const LOGIN_TOKEN_TTL: i64 = 30;

pub async fn flows(State(state): State<AppState>) -> Json<Value> {
    let mut flows = Vec::new();
    if state.config.passwords.enabled {
        flows.push(json!({"type": "m.login.password"}));
    }
    flows.push(json!({"type": "m.login.sso", "oauth_aware_preferred": true, "org.matrix.msc3824.delegated_oidc_compatibility": true}));
    flows.push(json!({"type": "m.login.token"}));
    Json(json!({ "flows": flows }))
}

fn forbidden(msg: &str) -> MatrixError {
    MatrixError::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", msg)
}

fn bad_json(msg: &str) -> MatrixError {
    MatrixError::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", msg)
}

#[tracing::instrument(name = "http.compat.login", skip_all)]
pub async fn post(State(state): State<AppState>, ClientIp(ip): ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, ip, &headers, &body).await {
        Ok(v) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, MatrixError> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|_| MatrixError::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", "Body is not JSON"))?;
    if !req.is_object() {
        return Err(bad_json("Body must be a JSON object"));
    }
    let str_field = |name: &str| req.get(name).and_then(Value::as_str).map(String::from);
    let device_id = match req.get("device_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if d.is_empty() => None,
        Some(Value::String(d)) => Some(
            DeviceId::parse(d)
                .map_err(|e| MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", format!("device_id: {e}")))?,
        ),
        Some(_) => {
            return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "device_id must be a string"));
        }
    };
    let display_name = str_field("initial_device_display_name");
    if display_name.as_ref().is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_CHARS) {
        let why = format!("initial_device_display_name: use at most {MAX_DISPLAY_NAME_CHARS} characters");
        return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", why));
    }
    let with_refresh = req.get("refresh_token").and_then(Value::as_bool).unwrap_or(false);
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);

    let (user, user_session_id) = match req.get("type").and_then(Value::as_str) {
        Some("m.login.password") if state.config.passwords.enabled => (password_login(state, ip, &req).await?, None),
        Some("m.login.token") => {
            token_login(state, &str_field("token").ok_or_else(|| bad_json("Missing token"))?).await?
        }
        Some("m.login.application_service") => {
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_APPSERVICE_LOGIN_UNSUPPORTED",
                "Application service login is not supported; use the appservice's as_token",
            ));
        }
        _ => return Err(MatrixError::new(StatusCode::BAD_REQUEST, "M_UNKNOWN", "Invalid login type")),
    };

    let (now, rng) = (state.now(), state.rng.clone());
    let ttl = state.config.experimental.compat_token_ttl;
    let new = NewCompatSession {
        user: &user,
        device_id,
        display_name: display_name.clone(),
        user_session_id,
        is_synapse_admin: false,
        user_agent,
    };
    let StartedCompat { device_id, tokens } = {
        let owned = (
            new.user.clone(),
            new.device_id.clone(),
            new.display_name.clone(),
            new.user_session_id.clone(),
            new.user_agent.clone(),
        );
        state
            .store
            .write(move |c| {
                let (user, device_id, display_name, user_session_id, user_agent) = owned;
                let new = NewCompatSession {
                    user: &user,
                    device_id,
                    display_name,
                    user_session_id,
                    is_synapse_admin: false,
                    user_agent,
                };
                compat_sessions::start(c, &new, with_refresh, ttl, now, rng.as_ref())
            })
            .await
            .map_err(MatrixError::internal)?
    };
    // The session row has no IP yet: the tracker adds it with the next flush.
    state.lifecycle.activity().record_compat(&tokens.session.id, Some(ip));
    // Sessions that held this device were ended: reconcile, then make sure the device exists.
    state.lifecycle.ensure_device(&user, &device_id, display_name).await;
    let mut v = json!({
        "user_id": state.config.matrix.mxid(&user.username),
        "access_token": tokens.access_token,
        "device_id": device_id,
        "home_server": state.config.matrix.homeserver,
    });
    if let Some(r) = tokens.refresh_token {
        v["refresh_token"] = json!(r);
    }
    if let Some(e) = tokens.expires_in {
        v["expires_in_ms"] = json!(e * 1000);
    }
    Ok(v)
}

async fn password_login(state: &AppState, ip: std::net::IpAddr, req: &Value) -> Result<User, MatrixError> {
    let password = req.get("password").and_then(Value::as_str).ok_or_else(|| bad_json("Missing password"))?.to_string();
    // The legacy top-level `user` wins over `identifier`.
    let localpart = if let Some(u) = req.get("user").and_then(Value::as_str) {
        localpart_of(u, &state.config.matrix.homeserver)
    } else {
        let id = req.get("identifier").ok_or_else(|| bad_json("Missing identifier"))?;
        match id.get("type").and_then(Value::as_str) {
            Some("m.id.user") => {
                let u = id.get("user").and_then(Value::as_str).ok_or_else(|| bad_json("Missing identifier.user"))?;
                localpart_of(u, &state.config.matrix.homeserver)
            }
            Some("m.id.thirdparty") if state.config.account.login_with_email_allowed => {
                let medium = id.get("medium").and_then(Value::as_str);
                let address =
                    id.get("address").and_then(Value::as_str).ok_or_else(|| bad_json("Missing identifier.address"))?;
                if medium != Some("email") {
                    return Err(forbidden("Invalid username/password"));
                }
                let email = address.to_string();
                state
                    .store
                    .read(move |c| user_store::by_email(c, &email))
                    .await
                    .map_err(MatrixError::internal)?
                    .map(|u| u.username)
            }
            _ => return Err(bad_json("Unsupported identifier type")),
        }
    };
    let rate_limited = |ms: u64| MatrixError {
        retry_after_ms: Some(ms),
        ..MatrixError::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many requests")
    };
    state.limiters.login_per_ip.check_ip(ip).map_err(rate_limited)?;
    let Some(localpart) = localpart else {
        state.passwords.dummy_verify(password).await;
        return Err(forbidden("Invalid username/password"));
    };
    // Every attempt against an account counts, as in MAS.
    state.limiters.login_per_account.check(&localpart).map_err(rate_limited)?;
    match verify_password(state, &localpart, password).await {
        Ok(user) if !state.config.account.mfa_compat_password_login_allowed => {
            // A password alone cannot stand in for a user's second factor.
            let id = user.id.clone();
            let has_factor = state
                .store
                .read(move |c| crate::store::mfa::has_factor(c, &id))
                .await
                .map_err(MatrixError::internal)?;
            if has_factor {
                return Err(forbidden(
                    "This account uses two-step verification, which password login cannot carry. Sign in with single sign-on (m.login.sso) instead.",
                ));
            }
            Ok(user)
        }
        Ok(user) => Ok(user),
        Err(LoginFailure::Locked) => {
            let user = state
                .store
                .read(move |c| user_store::by_username(c, &localpart))
                .await
                .map_err(MatrixError::internal)?;
            if user.is_some_and(|u| u.deactivated_at.is_some()) {
                Err(MatrixError::new(StatusCode::FORBIDDEN, "M_USER_DEACTIVATED", "This account has been deactivated"))
            } else {
                Err(MatrixError::new(StatusCode::UNAUTHORIZED, "M_USER_LOCKED", "This account has been locked"))
            }
        }
        Err(LoginFailure::Invalid) => Err(forbidden("Invalid username/password")),
        Err(LoginFailure::Internal(e)) => Err(MatrixError::internal(e.message)),
    }
}

/// `m.login.token`: the token an SSO-redirect login handed to the client, single use.
async fn token_login(state: &AppState, token: &str) -> Result<(User, Option<String>), MatrixError> {
    let hash = hash_token(token);
    let now = state.now();
    let found = state
        .store
        .write(move |c| {
            let Some(login) = compat::sso_by_token(c, &hash)? else { return Ok(None) };
            let (Some(fulfilled), None, Some(bs)) =
                (login.fulfilled_at, login.exchanged_at, login.user_session_id.clone())
            else {
                return Ok(None);
            };
            if now > fulfilled + LOGIN_TOKEN_TTL {
                return Ok(None);
            }
            let Some(browser) = session_store::browser_by_id(c, &bs)?.filter(|b| b.finished_at.is_none()) else {
                return Ok(None);
            };
            let Some(user) = user_store::by_id(c, &browser.user_id)? else { return Ok(None) };
            // Marked exchanged before the session exists: a second use fails even if this one does.
            compat::exchange_sso(c, &login.id, now).map(|ok| ok.then_some((user, bs)))
        })
        .await
        .map_err(MatrixError::internal)?;
    match found {
        Some((user, bs)) if user.is_valid() => Ok((user, Some(bs))),
        Some(_) => Err(MatrixError::new(StatusCode::UNAUTHORIZED, "M_USER_LOCKED", "This account has been locked")),
        None => Err(forbidden("Invalid login token")),
    }
}
