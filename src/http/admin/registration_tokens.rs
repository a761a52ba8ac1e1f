//! `/user-registration-tokens`: list, add, get, update, revoke, unrevoke — the lifecycle functions
//! `appliance manage issue-user-registration-token` uses.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::openapi::{Answer, Body, Filter, Op, Routes};
use super::params::{NoFields, Query, json_body, optional_json_body, parse_rfc3339};
use super::{AdminError, Caller, IdPath, Resource, created, single, single_at, time};
use crate::http::AppState;
use crate::lifecycle::registration_tokens as tokens;
use crate::store::registration_tokens::{self as token_store, RegistrationToken, TokenFilter};

const FILTERS: &[Filter] = &[
    Filter::Bool("used", "Used at least once"),
    Filter::Bool("revoked", "Revoked"),
    Filter::Bool("expired", "Past its expiry"),
    Filter::Bool("valid", "Usable now"),
];

pub fn routes() -> Routes {
    let token = Answer::One("UserRegistrationToken");
    Routes::new("user-registration-token")
        .route(
            Op::get(
                "/user-registration-tokens",
                "listUserRegistrationTokens",
                "List registration tokens",
                Answer::List("UserRegistrationToken"),
            )
            .filters(FILTERS),
            list,
        )
        .route(
            Op::post(
                "/user-registration-tokens",
                "addUserRegistrationToken",
                "Create a registration token",
                Answer::Created("UserRegistrationToken"),
            )
            .body(Body::Required("AddUserRegistrationTokenRequest")),
            add,
        )
        .route(
            Op::get("/user-registration-tokens/{id}", "getUserRegistrationToken", "Get a registration token", token),
            get_one,
        )
        .route(
            Op::put(
                "/user-registration-tokens/{id}",
                "updateUserRegistrationToken",
                "Change expiry or usage limit",
                token,
            )
            .body(Body::Required("UpdateUserRegistrationTokenRequest")),
            update,
        )
        .route(
            Op::post(
                "/user-registration-tokens/{id}/revoke",
                "revokeUserRegistrationToken",
                "Revoke a registration token",
                token,
            )
            .body(Body::Optional("Empty")),
            revoke,
        )
        .route(
            Op::post(
                "/user-registration-tokens/{id}/unrevoke",
                "unrevokeUserRegistrationToken",
                "Undo a revocation",
                token,
            )
            .body(Body::Optional("Empty")),
            unrevoke,
        )
}

#[derive(Serialize)]
pub struct TokenResource {
    #[serde(skip)]
    id: String,
    token: String,
    /// Usable right now.
    valid: bool,
    usage_limit: Option<u32>,
    times_used: u32,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

impl TokenResource {
    fn new(t: RegistrationToken, now: i64) -> Self {
        Self {
            valid: t.check(now).is_ok(),
            id: t.id,
            token: t.token,
            usage_limit: t.usage_limit,
            times_used: t.times_used,
            created_at: super::rfc3339(t.created_at),
            last_used_at: time(t.last_used_at),
            expires_at: time(t.expires_at),
            revoked_at: time(t.revoked_at),
        }
    }
}

impl Resource for TokenResource {
    // MAS's spelling.
    const KIND: &'static str = "user-registration_token";
    const PATH: &'static str = "/api/admin/v1/user-registration-tokens";
    fn id(&self) -> &str {
        &self.id
    }
}

#[tracing::instrument(name = "http.admin.registration_tokens.list", skip_all)]
async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let now = state.now();
    let filter = TokenFilter {
        used: q.bool_filter("filter[used]")?,
        revoked: q.bool_filter("filter[revoked]")?,
        expired: q.bool_filter("filter[expired]")?,
        valid: q.bool_filter("filter[valid]")?,
        now,
    };
    let convert = move |t| TokenResource::new(t, now);
    super::list_filtered(&state, q, filter, token_store::page, token_store::count, convert).await
}

#[tracing::instrument(name = "http.admin.registration_tokens.get", skip_all)]
async fn get_one(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    let t = tokens::get(&state.store, &id).await?;
    Ok(single(&TokenResource::new(t, state.now())))
}

fn time_field(name: &str, value: &str) -> Result<i64, AdminError> {
    parse_rfc3339(value).ok_or_else(|| {
        AdminError::bad_request(format!("{name} must be an RFC 3339 date-time such as 2030-01-31T12:00:00Z"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddToken {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    usage_limit: Option<u32>,
    #[serde(default)]
    expires_at: Option<String>,
}

#[tracing::instrument(name = "http.admin.registration_tokens.add", skip_all)]
async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: AddToken = json_body(&body)?;
    let expires_at = req.expires_at.as_deref().map(|v| time_field("expires_at", v)).transpose()?;
    let t =
        tokens::create(&state.store, state.clock.as_ref(), state.rng.as_ref(), req.token, req.usage_limit, expires_at)
            .await?;
    tracing::info!(admin_session = %caller.session_id, token_id = %t.id, "admin API: registration token issued");
    Ok(created(&TokenResource::new(t, state.now())))
}

/// A present field is `Some`, even when it is `null` (which clears the value).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpdateToken {
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    usage_limit: Option<Option<u32>>,
}

#[tracing::instrument(name = "http.admin.registration_tokens.update", skip_all)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: UpdateToken = json_body(&body)?;
    let expires_at = match req.expires_at {
        Some(Some(v)) => Some(Some(time_field("expires_at", &v)?)),
        Some(None) => Some(None),
        None => None,
    };
    let t = tokens::update(&state.store, &id, expires_at, req.usage_limit).await?;
    tracing::info!(admin_session = %caller.session_id, token_id = %id, "admin API: registration token changed");
    Ok(single(&TokenResource::new(t, state.now())))
}

#[tracing::instrument(name = "http.admin.registration_tokens.revoke", skip_all)]
async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let t = tokens::revoke(&state.store, state.clock.as_ref(), &id).await?;
    tracing::info!(admin_session = %caller.session_id, token_id = %id, "admin API: registration token revoked");
    let r = TokenResource::new(t, state.now());
    let at = format!("{}/revoke", r.path());
    Ok(single_at(&r, at))
}

#[tracing::instrument(name = "http.admin.registration_tokens.unrevoke", skip_all)]
async fn unrevoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let t = tokens::unrevoke(&state.store, &id).await?;
    tracing::info!(admin_session = %caller.session_id, token_id = %id, "admin API: registration token unrevoked");
    let r = TokenResource::new(t, state.now());
    let at = format!("{}/unrevoke", r.path());
    Ok(single_at(&r, at))
}
