//! `/user-sessions` (browser), `/compat-sessions`, `/oauth2-sessions`: list, get, finish. Finishing
//! goes through `lifecycle::sessions::end_session`, the steps of logout and `/oauth2/revoke`: the tokens
//! stop working at once and the device is deleted on the homeserver.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;

use super::openapi::{Answer, Body, Filter, Op, Routes};
use super::params::{NoFields, Query, optional_json_body};
use super::{AdminError, Caller, IdPath, Resource, single, single_at, time};
use crate::http::AppState;
use crate::lifecycle::sessions::{Ending, end_session};
use crate::store::compat::CompatSession;
use crate::store::sessions::{
    BrowserSession, Detailed, Listed, OAuthSession, SessionActivity, SessionFilter, SessionKind,
};

const USER: Filter = Filter::Id("user", "Sessions of this user");
const STATUS: Filter = Filter::OneOf("status", &["active", "finished"], "Active or finished");

pub fn routes() -> Routes {
    let finishing =
        |path, id, summary, schema| Op::post(path, id, summary, Answer::One(schema)).body(Body::Optional("Empty"));
    Routes::new("user-session")
        .route(
            Op::get("/user-sessions", "listUserSessions", "List browser sessions", Answer::List("UserSession"))
                .filters(&[USER, STATUS]),
            list::<UserSessionResource>,
        )
        .route(
            Op::get("/user-sessions/{id}", "getUserSession", "Get a browser session", Answer::One("UserSession")),
            get_one::<UserSessionResource>,
        )
        .route(
            finishing("/user-sessions/{id}/finish", "finishUserSession", "End a browser session", "UserSession"),
            finish::<UserSessionResource>,
        )
        .merge(
            Routes::new("compat-session")
                .route(
                    Op::get(
                        "/compat-sessions",
                        "listCompatSessions",
                        "List legacy (compat) sessions",
                        Answer::List("CompatSession"),
                    )
                    .filters(&[USER, STATUS]),
                    list::<CompatSessionResource>,
                )
                .route(
                    Op::get(
                        "/compat-sessions/{id}",
                        "getCompatSession",
                        "Get a compat session",
                        Answer::One("CompatSession"),
                    ),
                    get_one::<CompatSessionResource>,
                )
                .route(
                    finishing(
                        "/compat-sessions/{id}/finish",
                        "finishCompatSession",
                        "End a compat session",
                        "CompatSession",
                    ),
                    finish::<CompatSessionResource>,
                ),
        )
        .merge(
            Routes::new("oauth2-session")
                .route(
                    Op::get(
                        "/oauth2-sessions",
                        "listOAuth2Sessions",
                        "List OAuth 2.0 sessions",
                        Answer::List("OAuth2Session"),
                    )
                    .filters(&[USER, Filter::Id("client", "Sessions of this client"), STATUS]),
                    list::<OAuth2SessionResource>,
                )
                .route(
                    Op::get(
                        "/oauth2-sessions/{id}",
                        "getOAuth2Session",
                        "Get an OAuth 2.0 session",
                        Answer::One("OAuth2Session"),
                    ),
                    get_one::<OAuth2SessionResource>,
                )
                .route(
                    finishing(
                        "/oauth2-sessions/{id}/finish",
                        "finishOAuth2Session",
                        "End an OAuth 2.0 session",
                        "OAuth2Session",
                    ),
                    finish::<OAuth2SessionResource>,
                ),
        )
}

/// What differs between the three kinds of session.
trait SessionResource: Resource + Sized {
    type Session: Listed;
    const KIND_OF: SessionKind;
    /// Offers `filter[client]`.
    const BY_CLIENT: bool;
    fn finished_at(s: &Self::Session) -> Option<i64>;
    fn session_id(s: &Self::Session) -> &str;
    fn new(s: Self::Session, activity: SessionActivity, human_name: Option<String>) -> Self;
}

/// The stored activity merged with what the tracker holds and has not written yet.
fn build<T: SessionResource>(state: &AppState, d: Detailed<T::Session>, id: &str) -> T {
    let activity = state.lifecycle.activity().merged(T::KIND_OF, id, d.activity);
    T::new(d.session, activity, d.human_name)
}

#[derive(Serialize)]
pub struct UserSessionResource {
    #[serde(skip)]
    id: String,
    created_at: String,
    finished_at: Option<String>,
    user_id: String,
    user_agent: Option<String>,
    last_active_at: Option<String>,
    last_active_ip: Option<String>,
}

impl Resource for UserSessionResource {
    const KIND: &'static str = "user-session";
    const PATH: &'static str = "/api/admin/v1/user-sessions";
    fn id(&self) -> &str {
        &self.id
    }
}

impl SessionResource for UserSessionResource {
    type Session = BrowserSession;
    const KIND_OF: SessionKind = SessionKind::Browser;
    const BY_CLIENT: bool = false;
    fn finished_at(s: &BrowserSession) -> Option<i64> {
        s.finished_at
    }
    fn session_id(s: &BrowserSession) -> &str {
        &s.id
    }
    fn new(s: BrowserSession, a: SessionActivity, _: Option<String>) -> Self {
        Self {
            id: s.id,
            created_at: super::rfc3339(s.created_at),
            finished_at: time(s.finished_at),
            user_id: s.user_id,
            user_agent: a.user_agent,
            last_active_at: time(a.last_active_at),
            last_active_ip: a.last_active_ip,
        }
    }
}

#[derive(Serialize)]
pub struct CompatSessionResource {
    #[serde(skip)]
    id: String,
    user_id: String,
    device_id: Option<String>,
    user_session_id: Option<String>,
    redirect_uri: Option<String>,
    created_at: String,
    user_agent: Option<String>,
    last_active_at: Option<String>,
    last_active_ip: Option<String>,
    finished_at: Option<String>,
    human_name: Option<String>,
}

impl Resource for CompatSessionResource {
    const KIND: &'static str = "compat-session";
    const PATH: &'static str = "/api/admin/v1/compat-sessions";
    fn id(&self) -> &str {
        &self.id
    }
}

impl SessionResource for CompatSessionResource {
    type Session = CompatSession;
    const KIND_OF: SessionKind = SessionKind::Compat;
    const BY_CLIENT: bool = false;
    fn finished_at(s: &CompatSession) -> Option<i64> {
        s.finished_at
    }
    fn session_id(s: &CompatSession) -> &str {
        &s.id
    }
    fn new(s: CompatSession, a: SessionActivity, human_name: Option<String>) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            device_id: s.device_id,
            user_session_id: s.user_session_id,
            redirect_uri: None,
            created_at: super::rfc3339(s.created_at),
            user_agent: a.user_agent,
            last_active_at: time(a.last_active_at),
            last_active_ip: a.last_active_ip,
            finished_at: time(s.finished_at),
            human_name,
        }
    }
}

#[derive(Serialize)]
pub struct OAuth2SessionResource {
    #[serde(skip)]
    id: String,
    created_at: String,
    finished_at: Option<String>,
    user_id: Option<String>,
    user_session_id: Option<String>,
    client_id: String,
    scope: String,
    user_agent: Option<String>,
    last_active_at: Option<String>,
    last_active_ip: Option<String>,
    human_name: Option<String>,
}

impl Resource for OAuth2SessionResource {
    const KIND: &'static str = "oauth2-session";
    const PATH: &'static str = "/api/admin/v1/oauth2-sessions";
    fn id(&self) -> &str {
        &self.id
    }
}

impl SessionResource for OAuth2SessionResource {
    type Session = OAuthSession;
    const KIND_OF: SessionKind = SessionKind::OAuth2;
    const BY_CLIENT: bool = true;
    fn finished_at(s: &OAuthSession) -> Option<i64> {
        s.finished_at
    }
    fn session_id(s: &OAuthSession) -> &str {
        &s.id
    }
    fn new(s: OAuthSession, a: SessionActivity, human_name: Option<String>) -> Self {
        Self {
            id: s.id,
            created_at: super::rfc3339(s.created_at),
            finished_at: time(s.finished_at),
            user_id: s.user_id,
            user_session_id: s.user_session_id,
            client_id: s.client_id,
            scope: s.scope,
            user_agent: a.user_agent,
            last_active_at: time(a.last_active_at),
            last_active_ip: a.last_active_ip,
            human_name,
        }
    }
}

#[tracing::instrument(name = "http.admin.sessions.list", skip_all, fields(kind = T::KIND))]
async fn list<T: SessionResource>(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let user_id = q.id_filter("filter[user]")?;
    let client_id = if T::BY_CLIENT { q.id_filter("filter[client]")? } else { None };
    let active = q.choice("filter[status]", &[("active", true), ("finished", false)])?;
    let filter = SessionFilter { user_id, active, client_id };
    let tracker = state.clone();
    let convert = move |d: Detailed<T::Session>| {
        let id = T::session_id(&d.session).to_string();
        build::<T>(&tracker, d, &id)
    };
    super::list_filtered(&state, q, filter, T::Session::page, T::Session::count, convert).await
}

async fn load<T: SessionResource>(state: &AppState, id: &str) -> Result<T, AdminError> {
    let key = id.to_string();
    let found = state.store.read(move |c| T::Session::detailed_by_id(c, &key)).await?;
    let d = found.ok_or_else(|| AdminError::not_found(format!("Session with ID {id} not found")))?;
    Ok(build::<T>(state, d, id))
}

#[tracing::instrument(name = "http.admin.sessions.get", skip_all, fields(kind = T::KIND))]
async fn get_one<T: SessionResource>(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Value>, AdminError> {
    Ok(single(&load::<T>(&state, &id).await?))
}

#[tracing::instrument(name = "http.admin.sessions.finish", skip_all, fields(kind = T::KIND))]
async fn finish<T: SessionResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let key = id.clone();
    let found = state.store.read(move |c| T::Session::detailed_by_id(c, &key)).await?;
    let d = found.ok_or_else(|| AdminError::not_found(format!("Session with ID {id} not found")))?;
    let already = || AdminError::bad_request(format!("Session with ID {id} is already finished"));
    if T::finished_at(&d.session).is_some() {
        return Err(already());
    }
    if end_session(&state.lifecycle, Ending::One(T::KIND_OF, &id)).await? == 0 {
        return Err(already());
    }
    tracing::info!(admin_session = %caller.session_id, session = %id, kind = T::KIND, "admin API: session finished");
    let r = load::<T>(&state, &id).await?;
    let at = format!("{}/finish", r.path());
    Ok(single_at(&r, at))
}
