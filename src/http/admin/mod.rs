//! The admin REST API at `/api/admin/v1` (listener resource `adminapi`), shaped as MAS's: JSON:API
//! like envelopes (`{data: {type, id, attributes, links}, links}`), cursor pagination and
//! `{errors: [{title}]}`. Every route needs `Authorization: Bearer <access token>` (an OAuth access
//! token or a personal access token) whose session is active and carries `urn:mas:admin`. Handlers
//! read through the store and change state only through lifecycle functions, the ones the CLI and
//! the pages use.

mod clients;
mod emails;
mod factors;
pub mod openapi;
mod params;
mod personal_sessions;
mod registration_tokens;
mod sessions;
mod site;
mod upstream;
mod users;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::client_ip::ClientIp;
use crate::lifecycle::emails::EmailError;
use crate::lifecycle::personal_sessions::PersonalError;
use crate::lifecycle::registration_tokens::TokenError;
use crate::lifecycle::tokens;
use crate::lifecycle::users::UserError;
use crate::model::scope::MAS_ADMIN;
use crate::store::StoreError;
use crate::store::page::{ByIdFn, CountFn, CountRead, PageFn, PageRead, PageRequest};
use crate::store::sessions::SessionKind;
use params::{IncludeCount, Pagination, Query, link, rfc3339};

/// Where the API is mounted.
pub const PREFIX: &str = "/api/admin/v1";

/// Every operation of the API, routed and documented (see `openapi`).
pub fn routes() -> openapi::Routes {
    site::routes()
        .merge(users::routes())
        .merge(factors::routes())
        .merge(emails::routes())
        .merge(sessions::routes())
        .merge(clients::routes())
        .merge(registration_tokens::routes())
        .merge(personal_sessions::routes())
        .merge(upstream::routes())
}

/// The admin API, every route behind the bearer-token check, and its OpenAPI document at
/// `/api/spec.json` (public, as MAS's).
pub fn router(state: &AppState) -> Router<AppState> {
    let (api, ops) = routes().into_parts();
    let spec = Arc::new(openapi::document(&ops, state.config.http.public_base.as_str()));
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .fallback(unknown_route)
        .layer(axum::middleware::map_response(no_store));
    Router::new().nest(PREFIX, api).route("/api/spec.json", get(move || async move { Json(spec.as_ref().clone()) }))
}

/// Answers carry accounts and invite codes: no cache keeps them.
async fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn unknown_route() -> AdminError {
    AdminError::not_found("Not found")
}

/// Who calls: the session of the bearer token (for the audit log, and as the owner of the
/// personal sessions it creates).
#[derive(Debug, Clone)]
pub struct Caller {
    /// An OAuth 2.0 session, or a personal session (personal access token).
    pub kind: SessionKind,
    pub session_id: String,
    /// The OAuth client of the session (for a personal session, the client that owns it, if any).
    pub client_id: Option<String>,
    /// The session's user (for a personal session, the user it acts as).
    pub user_id: Option<String>,
}

async fn authenticate(State(state): State<AppState>, ClientIp(ip): ClientIp, mut req: Request, next: Next) -> Response {
    match caller(&state, req.headers()).await {
        Ok(caller) => {
            state.lifecycle.activity().record(caller.kind, &caller.session_id, Some(ip));
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Checks the bearer token. Every failure reads the same whatever the reason (unknown, expired,
/// revoked, finished session, locked user), and the token is never logged. A personal access
/// token's user must still be allowed to request administration (it may have been demoted since
/// the token was issued).
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, AdminError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AdminError::unauthorized("Missing authorization header", "Bearer"));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AdminError::unauthorized("Invalid authorization header", "Bearer error=\"invalid_request\""))?;
    let Some((kind, info)) = tokens::active_access_token(&state.store, token, state.now()).await? else {
        return Err(AdminError::unauthorized("Invalid access token", "Bearer error=\"invalid_token\""));
    };
    let missing_scope = || {
        let mut e = AdminError::new(StatusCode::FORBIDDEN, "Missing urn:mas:admin scope");
        e.challenge = Some("Bearer error=\"insufficient_scope\", scope=\"urn:mas:admin\"");
        e
    };
    // Re-checked at every request: a demoted user or a client removed from admin_clients has
    // lost urn:mas:admin, for OAuth sessions and personal tokens alike.
    if !tokens::effective_scope(&info, &state.config.policy.data).contains(MAS_ADMIN) {
        return Err(missing_scope());
    }
    Ok(Caller { kind, session_id: info.session_id, client_id: info.client_id, user_id: info.user_id })
}

/// An admin API error: `{"errors": [{"title": …}]}` with its status.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub title: String,
    /// `WWW-Authenticate` value for 401 and 403.
    challenge: Option<&'static str>,
}

impl AdminError {
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        Self { status, title: title.into(), challenge: None }
    }
    pub fn bad_request(title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, title)
    }
    pub fn not_found(title: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, title)
    }
    pub fn conflict(title: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, title)
    }
    fn unauthorized(title: &str, challenge: &'static str) -> Self {
        Self { challenge: Some(challenge), ..Self::new(StatusCode::UNAUTHORIZED, title) }
    }
    /// Logs the cause; the caller learns nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "admin API: internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "errors": [{ "title": self.title }] }))).into_response();
        if let Some(c) = self.challenge {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::internal(e)
    }
}

impl From<UserError> for AdminError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::InvalidUsername(why) => AdminError::bad_request(format!("Username is not valid: {why}")),
            UserError::Taken => AdminError::conflict("User already exists"),
            UserError::NotFound(id) => AdminError::not_found(format!("User ID {id} not found")),
            UserError::HomeserverRefused(_) => AdminError::conflict("Username is reserved by the homeserver"),
            UserError::HomeserverUnreachable(why) => {
                tracing::warn!(error = %why, "admin API: homeserver availability check failed");
                AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Cannot ask the homeserver whether the username is free (skip_homeserver_check skips the check)",
                )
            }
            UserError::Password(e) => AdminError::internal(e),
            UserError::Store(e) => AdminError::internal(e),
        }
    }
}

impl From<EmailError> for AdminError {
    fn from(e: EmailError) -> Self {
        match e {
            EmailError::Invalid(email) => AdminError::bad_request(format!("Email {email:?} is not valid")),
            EmailError::InUse(email) => AdminError::conflict(format!("User email {email:?} already in use")),
            EmailError::UserNotFound(id) => AdminError::not_found(format!("User ID {id} not found")),
            EmailError::NotFound(id) => AdminError::not_found(format!("User email ID {id} not found")),
            EmailError::Store(e) => AdminError::internal(e),
        }
    }
}

impl From<TokenError> for AdminError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(why) => AdminError::bad_request(why),
            TokenError::Taken(t) => AdminError::conflict(format!("A registration token {t:?} already exists")),
            TokenError::NotFound(id) => AdminError::not_found(format!("Registration token with ID {id} not found")),
            TokenError::AlreadyRevoked(id) => {
                AdminError::bad_request(format!("Registration token with ID {id} is already revoked"))
            }
            TokenError::NotRevoked(id) => {
                AdminError::bad_request(format!("Registration token with ID {id} is not revoked"))
            }
            TokenError::Store(e) => AdminError::internal(e),
        }
    }
}

impl From<PersonalError> for AdminError {
    fn from(e: PersonalError) -> Self {
        match e {
            PersonalError::ActorNotFound(id) => AdminError::not_found(format!("User ID {id} not found")),
            PersonalError::ActorDeactivated(_) => AdminError::new(StatusCode::GONE, "User is not active"),
            PersonalError::InvalidName => AdminError::bad_request("human_name must be 1 to 255 characters"),
            PersonalError::InvalidScope(why) => AdminError::bad_request(format!("Invalid scope: {why}")),
            PersonalError::NotFound(id) => AdminError::not_found(format!("Personal session with ID {id} not found")),
            PersonalError::AlreadyRevoked(id) => {
                AdminError::conflict(format!("Personal session with ID {id} is already revoked"))
            }
            PersonalError::Revoked(id) => {
                AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("Personal session with ID {id} is revoked"))
            }
            PersonalError::NotOwner => AdminError::new(StatusCode::FORBIDDEN, "Session does not belong to you"),
            PersonalError::Store(e) => AdminError::internal(e),
        }
    }
}

/// The `{id}` of a path, which must be a ULID (returned in canonical form).
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AdminError::bad_request("Invalid ULID in path"))?;
        params::parse_ulid(&raw).map(IdPath).ok_or_else(|| AdminError::bad_request("Invalid ULID in path"))
    }
}

/// A path segment as text (e.g. a username), with a JSON error when it is not UTF-8.
pub struct TextPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TextPath {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AdminError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AdminError::bad_request("Invalid path parameter"))?;
        Ok(TextPath(raw))
    }
}

/// A resource as the API presents it: its attributes, type and canonical path.
pub trait Resource: Serialize {
    const KIND: &'static str;
    /// The collection, e.g. `/api/admin/v1/users`.
    const PATH: &'static str;
    fn id(&self) -> &str;

    fn path(&self) -> String {
        format!("{}/{}", Self::PATH, self.id())
    }
}

fn resource_json<T: Resource>(r: &T, with_cursor: bool) -> Value {
    let mut v = json!({ "type": T::KIND, "id": r.id(), "attributes": r, "links": { "self": r.path() } });
    if with_cursor {
        v["meta"] = json!({ "page": { "cursor": r.id() } });
    }
    v
}

/// `{data, links: {self}}` with the resource's canonical path as `self`.
pub fn single<T: Resource>(r: &T) -> Json<Value> {
    single_at(r, r.path())
}

/// `{data, links: {self}}` answering at `self_link` (e.g. `…/users/{id}/lock`).
pub fn single_at<T: Resource>(r: &T, self_link: String) -> Json<Value> {
    Json(json!({ "data": resource_json(r, false), "links": { "self": self_link } }))
}

/// 201 Created with the new resource.
pub fn created<T: Resource>(r: &T) -> Response {
    (StatusCode::CREATED, single(r)).into_response()
}

/// Lists `T` whose rows match `filter` (which the caller took from `q`): the rest of `q` is the
/// pagination, and a parameter left over is refused. `page` and `count` are the table's reads.
pub async fn list_filtered<T, R, Fl>(
    state: &AppState,
    mut q: Query,
    filter: Fl,
    page: PageFn<Fl, R>,
    count: CountFn<Fl>,
    convert: impl Fn(R) -> T,
) -> Result<Json<Value>, AdminError>
where
    T: Resource,
    R: Send + 'static,
    Fl: Clone + Send + 'static,
{
    let pagination = q.pagination()?;
    let filters = q.finish()?;
    let f = filter.clone();
    list(state, pagination, filters, move |c, p| page(c, &filter, p), move |c| count(c, &f), convert).await
}

/// One `T` by `id`: `read` finds the row; a missing one answers 404 `{what} {id} not found`.
pub async fn get_by_id<T: Resource, R: Send + 'static>(
    state: &AppState,
    id: &str,
    read: ByIdFn<R>,
    what: &str,
    convert: impl FnOnce(R) -> T,
) -> Result<Json<Value>, AdminError> {
    let key = id.to_string();
    let found = state.store.read(move |c| read(c, &key)).await?;
    let row = found.ok_or_else(|| AdminError::not_found(format!("{what} {id} not found")))?;
    Ok(single(&convert(row)))
}

/// Lists `T`: runs `fetch` and `count` in one read (as `count=` asks), converts the rows with
/// `convert`, and answers MAS's `{meta: {count}, data, links: {self, first, last, next?, prev?}}`.
async fn list<T, R, F, C>(
    state: &AppState,
    pagination: Pagination,
    filters: Vec<(String, String)>,
    fetch: F,
    count: C,
    convert: impl Fn(R) -> T,
) -> Result<Json<Value>, AdminError>
where
    T: Resource,
    R: Send + 'static,
    F: PageRead<R>,
    C: CountRead,
{
    let Pagination { request, include_count } = pagination;
    let req = request.clone();
    let (page, total) = state
        .store
        .read(move |c| {
            let total = if include_count == IncludeCount::False { None } else { Some(count(c)?) };
            let page = if include_count == IncludeCount::Only { None } else { Some(fetch(c, &req)?) };
            Ok((page, total))
        })
        .await?;
    let path = T::PATH;
    let Some(page) = page else {
        let self_link = link(path, &filters, include_count, None);
        return Ok(Json(json!({ "meta": { "count": total }, "links": { "self": self_link } })));
    };
    let page = page.map(convert);
    let n = request.count;
    let mut links = json!({
        "self": link(path, &filters, include_count, Some(&request)),
        "first": link(path, &filters, include_count, Some(&PageRequest::first(n))),
        "last": link(path, &filters, include_count, Some(&PageRequest::last(n))),
    });
    if let (true, Some(last)) = (page.has_next, page.items.last()) {
        let next = PageRequest { after: Some(last.id().to_string()), ..PageRequest::first(n) };
        links["next"] = json!(link(path, &filters, include_count, Some(&next)));
    }
    if let (true, Some(first)) = (page.has_previous, page.items.first()) {
        let prev = PageRequest { before: Some(first.id().to_string()), ..PageRequest::last(n) };
        links["prev"] = json!(link(path, &filters, include_count, Some(&prev)));
    }
    let mut body = serde_json::Map::new();
    if let Some(total) = total {
        body.insert("meta".into(), json!({ "count": total }));
    }
    body.insert("data".into(), page.items.iter().map(|r| resource_json(r, true)).collect());
    body.insert("links".into(), links);
    Ok(Json(Value::Object(body)))
}

/// `Option<i64>` unix seconds as RFC 3339.
fn time(t: Option<i64>) -> Option<String> {
    t.map(rfc3339)
}
