//! `/user-emails`: list, add, get, delete. Changes reach the homeserver as the account page's do.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openapi::{Answer, Body, Filter, Op, Routes};
use super::params::{Query, json_body, parse_ulid};
use super::{AdminError, Caller, IdPath, Resource, created};
use crate::http::AppState;
use crate::lifecycle::emails;
use crate::store::users::{self as user_store, EmailFilter, UserEmail};

const FILTERS: &[Filter] = &[Filter::Id("user", "Emails of this user"), Filter::Text("email", "This address")];

pub fn routes() -> Routes {
    Routes::new("user-email")
        .route(
            Op::get("/user-emails", "listUserEmails", "List emails", Answer::List("UserEmail")).filters(FILTERS),
            list,
        )
        .route(
            Op::post("/user-emails", "addUserEmail", "Add an email to a user", Answer::Created("UserEmail"))
                .body(Body::Required("AddUserEmailRequest")),
            add,
        )
        .route(Op::get("/user-emails/{id}", "getUserEmail", "Get an email", Answer::One("UserEmail")), get_one)
        .route(Op::delete("/user-emails/{id}", "deleteUserEmail", "Remove an email"), delete)
}

#[derive(Serialize)]
pub struct EmailResource {
    #[serde(skip)]
    id: String,
    created_at: String,
    user_id: String,
    email: String,
}

impl From<UserEmail> for EmailResource {
    fn from(e: UserEmail) -> Self {
        Self { id: e.id, created_at: super::rfc3339(e.created_at), user_id: e.user_id, email: e.email }
    }
}

impl Resource for EmailResource {
    const KIND: &'static str = "user-email";
    const PATH: &'static str = "/api/admin/v1/user-emails";
    fn id(&self) -> &str {
        &self.id
    }
}

#[tracing::instrument(name = "http.admin.user_emails.list", skip_all)]
async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let filter = EmailFilter { user_id: q.id_filter("filter[user]")?, email: q.filter("filter[email]")? };
    let (page, count) = (user_store::page_emails, user_store::count_emails);
    super::list_filtered(&state, q, filter, page, count, EmailResource::from).await
}

#[tracing::instrument(name = "http.admin.user_emails.get", skip_all)]
async fn get_one(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    super::get_by_id(&state, &id, user_store::email_by_id, "User email ID", EmailResource::from).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddEmail {
    user_id: String,
    email: String,
}

#[tracing::instrument(name = "http.admin.user_emails.add", skip_all)]
async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: AddEmail = json_body(&body)?;
    let user_id = parse_ulid(&req.user_id).ok_or_else(|| AdminError::bad_request("user_id must be a ULID"))?;
    let added = emails::add(&state.lifecycle, &user_id, &req.email).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %user_id, "admin API: email added");
    Ok(created(&EmailResource::from(added)))
}

#[tracing::instrument(name = "http.admin.user_emails.delete", skip_all)]
async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
) -> Result<Response, AdminError> {
    let removed = emails::remove(&state.lifecycle, &id).await?;
    tracing::info!(admin_session = %caller.session_id, user_id = %removed.user_id, "admin API: email removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}
