//! `/personal-sessions`: personal access tokens (`mpt_`) for bots and admin tools, as MAS's — list,
//! add (the token is in the answer, this once), get, revoke, regenerate (a new token, shown once).
//! The caller owns what it creates: its user, or its client for a client_credentials token. The
//! steps are `lifecycle::personal_sessions`', the ones `manage issue-personal-token` uses.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openapi::{Answer, Body, Filter, Op, Routes};
use super::params::{NoFields, Query, json_body, optional_json_body};
use super::{AdminError, Caller, IdPath, Resource, created, single, time};
use crate::http::AppState;
use crate::lifecycle::personal_sessions::{self as personal, IssuedToken, NewPersonalSession, PersonalError};
use crate::lifecycle::sessions::{Ending, end_session};
use crate::model::Scope;
use crate::store::personal::{self as personal_store, DetailedPersonal, Owner, PersonalFilter};
use crate::store::sessions::SessionKind;

const FILTERS: &[Filter] = &[
    Filter::Id("owner_user", "Owned by this user"),
    Filter::Id("owner_client", "Owned by this client"),
    Filter::Id("actor_user", "Acting as this user"),
    Filter::OneOf("status", &["active", "revoked"], "Active or revoked"),
];

pub fn routes() -> Routes {
    Routes::new("personal-session")
        .route(
            Op::get(
                "/personal-sessions",
                "listPersonalSessions",
                "List personal sessions",
                Answer::List("PersonalSession"),
            )
            .filters(FILTERS),
            list,
        )
        .route(
            Op::post(
                "/personal-sessions",
                "createPersonalSession",
                "Issue a personal access token",
                Answer::Created("PersonalSession"),
            )
            .body(Body::Required("AddPersonalSessionRequest")),
            add,
        )
        .route(
            Op::get(
                "/personal-sessions/{id}",
                "getPersonalSession",
                "Get a personal session",
                Answer::One("PersonalSession"),
            ),
            get_one,
        )
        .route(
            Op::post(
                "/personal-sessions/{id}/revoke",
                "revokePersonalSession",
                "Revoke a personal session",
                Answer::One("PersonalSession"),
            )
            .body(Body::Optional("Empty")),
            revoke,
        )
        .route(
            Op::post(
                "/personal-sessions/{id}/regenerate",
                "regeneratePersonalSession",
                "Replace the token of a personal session",
                Answer::Created("PersonalSession"),
            )
            .body(Body::Optional("RegeneratePersonalSessionRequest")),
            regenerate,
        )
}

#[derive(Serialize)]
pub struct PersonalSessionResource {
    #[serde(skip)]
    id: String,
    created_at: String,
    revoked_at: Option<String>,
    owner_user_id: Option<String>,
    owner_client_id: Option<String>,
    actor_user_id: String,
    human_name: String,
    scope: String,
    last_active_at: Option<String>,
    last_active_ip: Option<String>,
    /// When the live token expires (`null`: never, or the session is revoked).
    expires_at: Option<String>,
    /// Only in the answer that created the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
}

impl Resource for PersonalSessionResource {
    const KIND: &'static str = "personal-session";
    const PATH: &'static str = "/api/admin/v1/personal-sessions";
    fn id(&self) -> &str {
        &self.id
    }
}

impl PersonalSessionResource {
    /// The stored session with the activity the tracker has not written yet.
    fn new(state: &AppState, d: DetailedPersonal) -> Self {
        let activity = state.lifecycle.activity().merged(SessionKind::Personal, &d.session.id, d.activity);
        let s = d.session;
        let (owner_user_id, owner_client_id) = match s.owner {
            Owner::User(u) => (Some(u), None),
            Owner::Client(c) => (None, Some(c)),
        };
        Self {
            id: s.id,
            created_at: super::rfc3339(s.created_at),
            revoked_at: time(s.revoked_at),
            owner_user_id,
            owner_client_id,
            actor_user_id: s.actor_user_id,
            human_name: s.human_name,
            scope: s.scope,
            last_active_at: time(activity.last_active_at),
            last_active_ip: activity.last_active_ip,
            expires_at: time(d.expires_at),
            access_token: None,
        }
    }

    /// A freshly issued token: the session as stored, and the token itself.
    async fn issued(state: &AppState, issued: IssuedToken) -> Result<Self, AdminError> {
        let mut r = load(state, &issued.session.id).await?;
        r.access_token = Some(issued.access_token);
        Ok(r)
    }
}

async fn load(state: &AppState, id: &str) -> Result<PersonalSessionResource, AdminError> {
    let key = id.to_string();
    let found = state.store.read(move |c| personal_store::detailed_by_id(c, &key)).await?;
    let d = found.ok_or_else(|| AdminError::not_found(format!("Personal session with ID {id} not found")))?;
    Ok(PersonalSessionResource::new(state, d))
}

/// The owner of what `caller` creates: its user, else its client (as MAS).
fn owner_of(caller: &Caller) -> Result<Owner, AdminError> {
    match (&caller.user_id, &caller.client_id) {
        (Some(user), _) => Ok(Owner::User(user.clone())),
        (None, Some(client)) => Ok(Owner::Client(client.clone())),
        (None, None) => Err(AdminError::internal("admin caller has neither a user nor a client")),
    }
}

fn check_expires_in(expires_in: Option<u32>) -> Result<Option<u32>, AdminError> {
    if expires_in == Some(0) {
        return Err(AdminError::bad_request("expires_in must be at least 1 second"));
    }
    Ok(expires_in)
}

#[tracing::instrument(name = "http.admin.personal_sessions.list", skip_all)]
async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let filter = PersonalFilter {
        owner_user_id: q.id_filter("filter[owner_user]")?,
        owner_client_id: q.id_filter("filter[owner_client]")?,
        actor_user_id: q.id_filter("filter[actor_user]")?,
        active: q.choice("filter[status]", &[("active", true), ("revoked", false)])?,
    };
    let tracker = state.clone();
    let convert = move |d| PersonalSessionResource::new(&tracker, d);
    super::list_filtered(&state, q, filter, personal_store::page, personal_store::count, convert).await
}

#[tracing::instrument(name = "http.admin.personal_sessions.get", skip_all)]
async fn get_one(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    Ok(single(&load(&state, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddSession {
    actor_user_id: String,
    human_name: String,
    scope: String,
    #[serde(default)]
    expires_in: Option<u32>,
}

#[tracing::instrument(name = "http.admin.personal_sessions.add", skip_all)]
async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: AddSession = json_body(&body)?;
    let actor_user_id = super::params::parse_ulid(&req.actor_user_id)
        .ok_or_else(|| AdminError::bad_request("actor_user_id must be a ULID"))?;
    let scope = Scope::parse(&req.scope).map_err(|e| AdminError::bad_request(format!("Invalid scope: {e}")))?;
    let new = NewPersonalSession {
        owner: owner_of(&caller)?,
        actor_user_id,
        human_name: req.human_name,
        scope,
        expires_in: check_expires_in(req.expires_in)?,
        operator_grants_synapse_admin: false,
    };
    let issued = personal::create(&state.lifecycle, &state.config.policy.data, new).await?;
    tracing::info!(
        admin_session = %caller.session_id,
        personal_session = %issued.session.id,
        actor = %issued.session.actor_user_id,
        "admin API: personal access token issued"
    );
    let r = PersonalSessionResource::issued(&state, issued).await?;
    Ok(created(&r))
}

#[tracing::instrument(name = "http.admin.personal_sessions.revoke", skip_all)]
async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let session = personal::get(&state.store, &id).await?;
    let ending = Ending::One(SessionKind::Personal, &session.id);
    if session.revoked_at.is_some() || end_session(&state.lifecycle, ending).await? == 0 {
        return Err(PersonalError::AlreadyRevoked(session.id).into());
    }
    tracing::info!(admin_session = %caller.session_id, personal_session = %id, "admin API: personal access token revoked");
    Ok(single(&load(&state, &id).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Regenerate {
    #[serde(default)]
    expires_in: Option<u32>,
}

#[tracing::instrument(name = "http.admin.personal_sessions.regenerate", skip_all)]
async fn regenerate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: Regenerate = optional_json_body(&body)?;
    let owner = owner_of(&caller)?;
    let issued = personal::regenerate(&state.lifecycle, &id, Some(&owner), check_expires_in(req.expires_in)?).await?;
    tracing::info!(admin_session = %caller.session_id, personal_session = %id, "admin API: personal access token regenerated");
    let r = PersonalSessionResource::issued(&state, issued).await?;
    Ok(created(&r))
}
