//! `/users`: list, add, get (by id or username), set-password, set-admin, lock, unlock,
//! deactivate, reactivate — the same lifecycle functions as `appliance manage …`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openapi::{Answer, Body, Filter, Op, Routes};
use super::params::{NoFields, Query, json_body, optional_json_body};
use super::{AdminError, Caller, IdPath, Resource, TextPath, single, single_at, time};
use crate::http::AppState;
use crate::lifecycle::registration::check_new_password;
use crate::lifecycle::users::{self, NewUser};
use crate::model::User;
use crate::store::users::{self as user_store, UserFilter, UserStatus};

const FILTERS: &[Filter] = &[
    Filter::Bool("admin", "Users who may request admin scopes"),
    Filter::OneOf("status", &["active", "locked", "deactivated"], "The user's state"),
    Filter::Text("search", "Part of the username"),
];

pub fn routes() -> Routes {
    let user = Answer::One("User");
    Routes::new("user")
        .route(Op::get("/users", "listUsers", "List users", Answer::List("User")).filters(FILTERS), list)
        .route(
            Op::post("/users", "createUser", "Create a user (and provision it on the homeserver)", user)
                .body(Body::Required("AddUserRequest")),
            add,
        )
        .route(
            Op::get("/users/by-username/{username}", "getUserByUsername", "Get a user by username", user),
            by_username,
        )
        .route(Op::get("/users/{id}", "getUser", "Get a user", user), get_one)
        .route(
            Op::post("/users/{id}/set-password", "setUserPassword", "Set the user's password", Answer::NoContent)
                .body(Body::Required("SetPasswordRequest")),
            set_password,
        )
        .route(
            Op::post("/users/{id}/set-admin", "userSetAdmin", "Allow or forbid admin scopes", user)
                .body(Body::Required("SetAdminRequest")),
            set_admin,
        )
        .route(Op::post("/users/{id}/lock", "lockUser", "Lock the user", user).body(Body::Optional("Empty")), lock)
        .route(
            Op::post("/users/{id}/unlock", "unlockUser", "Unlock the user", user).body(Body::Optional("Empty")),
            unlock,
        )
        .route(
            Op::post("/users/{id}/deactivate", "deactivateUser", "Deactivate the user and end their sessions", user)
                .body(Body::Optional("DeactivateRequest")),
            deactivate,
        )
        .route(
            Op::post("/users/{id}/reactivate", "reactivateUser", "Reactivate the user", user)
                .body(Body::Optional("Empty")),
            reactivate,
        )
}

/// A user (MAS's attributes; there are no guest accounts here).
#[derive(Serialize)]
pub struct UserResource {
    #[serde(skip)]
    id: String,
    username: String,
    created_at: String,
    locked_at: Option<String>,
    deactivated_at: Option<String>,
    admin: bool,
    legacy_guest: bool,
}

impl From<User> for UserResource {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            created_at: super::rfc3339(u.created_at),
            locked_at: time(u.locked_at),
            deactivated_at: time(u.deactivated_at),
            admin: u.can_request_admin,
            legacy_guest: false,
        }
    }
}

impl Resource for UserResource {
    const KIND: &'static str = "user";
    const PATH: &'static str = "/api/admin/v1/users";
    fn id(&self) -> &str {
        &self.id
    }
}

fn answer_at(user: User, action: &str) -> Json<Value> {
    let r = UserResource::from(user);
    let at = format!("{}/{action}", r.path());
    single_at(&r, at)
}

#[tracing::instrument(name = "http.admin.users.list", skip_all)]
async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let statuses =
        [("active", UserStatus::Active), ("locked", UserStatus::Locked), ("deactivated", UserStatus::Deactivated)];
    let filter = UserFilter {
        admin: q.bool_filter("filter[admin]")?,
        status: q.choice("filter[status]", &statuses)?,
        search: q.filter("filter[search]")?,
    };
    super::list_filtered(&state, q, filter, user_store::page, user_store::count, UserResource::from).await
}

#[tracing::instrument(name = "http.admin.users.get", skip_all)]
async fn get_one(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    Ok(single(&UserResource::from(users::get(&state.store, &id).await?)))
}

#[tracing::instrument(name = "http.admin.users.by_username", skip_all)]
async fn by_username(State(state): State<AppState>, TextPath(username): TextPath) -> Result<Json<Value>, AdminError> {
    let name = username.clone();
    let user = state.store.read(move |c| user_store::by_username(c, &name)).await?;
    let user = user.ok_or_else(|| AdminError::not_found(format!("User with username {username:?} not found")))?;
    let r = UserResource::from(user);
    Ok(single_at(&r, format!("{}/by-username/{username}", UserResource::PATH)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUser {
    username: String,
    #[serde(default)]
    skip_homeserver_check: bool,
    #[serde(default)]
    displayname: Option<String>,
}

#[tracing::instrument(name = "http.admin.users.add", skip_all)]
async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: AddUser = json_body(&body)?;
    let lc = &state.lifecycle;
    if !req.skip_homeserver_check {
        users::check_available(lc, &req.username).await?;
    }
    let display_name = req.displayname.map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
    let new = NewUser { username: req.username, password: None, emails: vec![], display_name, admin: false };
    let (user, _) = users::create(lc, &state.passwords, new).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %user.id, "admin API: user created");
    Ok(single(&UserResource::from(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPassword {
    password: String,
    #[serde(default)]
    skip_password_check: Option<bool>,
}

#[tracing::instrument(name = "http.admin.users.set_password", skip_all)]
async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Response, AdminError> {
    if !state.config.passwords.enabled {
        return Err(AdminError::new(StatusCode::FORBIDDEN, "Password auth is disabled"));
    }
    let req: SetPassword = json_body(&body)?;
    let user = users::get(&state.store, &id).await?;
    let minimum = if req.skip_password_check == Some(true) { 0 } else { state.config.passwords.minimum_complexity };
    let inputs = [user.username.as_str(), state.config.matrix.homeserver.as_str()];
    // Even unchecked, a password must not be empty or absurdly long (argon2 work is bounded).
    if let (_, Some(problem)) = check_new_password(&req.password, minimum, &inputs) {
        return Err(AdminError::bad_request(format!("Password is too weak: {problem}")));
    }
    users::set_password_of(
        &state.store,
        &state.passwords,
        state.clock.as_ref(),
        state.rng.as_ref(),
        &user.id,
        req.password,
    )
    .await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %user.id, "admin API: password set");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAdmin {
    admin: bool,
}

#[tracing::instrument(name = "http.admin.users.set_admin", skip_all)]
async fn set_admin(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: SetAdmin = json_body(&body)?;
    let user = users::set_admin(&state.store, &id, req.admin).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %id, admin = req.admin, "admin API: admin flag set");
    Ok(answer_at(user, "set-admin"))
}

#[tracing::instrument(name = "http.admin.users.lock", skip_all)]
async fn lock(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let user = users::lock(&state.lifecycle, &id).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %id, "admin API: user locked");
    Ok(answer_at(user, "lock"))
}

#[tracing::instrument(name = "http.admin.users.unlock", skip_all)]
async fn unlock(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let user = users::unlock(&state.lifecycle, &id).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %id, "admin API: user unlocked");
    Ok(answer_at(user, "unlock"))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Deactivate {
    /// Keep the user's data on the homeserver (MAS erases by default).
    #[serde(default)]
    skip_erase: Option<bool>,
}

#[tracing::instrument(name = "http.admin.users.deactivate", skip_all)]
async fn deactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let req: Deactivate = optional_json_body(&body)?;
    let erase = req.skip_erase != Some(true);
    let (user, ended) = users::deactivate(&state.lifecycle, &id, erase).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %id, erase, sessions = ended, "admin API: user deactivated");
    Ok(answer_at(user, "deactivate"))
}

#[tracing::instrument(name = "http.admin.users.reactivate", skip_all)]
async fn reactivate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let NoFields {} = optional_json_body(&body)?;
    let user = users::reactivate(&state.lifecycle, &id).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %id, "admin API: user reactivated");
    Ok(answer_at(user, "reactivate"))
}
