//! `/upstream-oauth-providers` (read-only: providers come from the config) and
//! `/upstream-oauth-links` (list, get, add, delete), MAS's shapes.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::openapi::{Answer, Body, Filter, Op, Routes};
use super::params::{Query, json_body, parse_ulid};
use super::{AdminError, Caller, IdPath, Resource, created, single};
use crate::http::AppState;
use crate::lifecycle::upstream::AddLink;
use crate::model::upstream::{UpstreamLink, UpstreamProvider};
use crate::store::page::{CountFn, PageFn};
use crate::store::upstream::{self as upstream_store, LinkFilter};

const PROVIDER_FILTERS: &[Filter] = &[Filter::Bool("enabled", "Only enabled (or only disabled) providers")];
const LINK_FILTERS: &[Filter] = &[
    Filter::Id("user", "Links of this user"),
    Filter::Id("provider", "Links to this provider"),
    Filter::Text("subject", "This subject at the provider"),
    Filter::Text("human-account-name", "This account name"),
];

pub fn routes() -> Routes {
    Routes::new("upstream-oauth")
        .route(
            Op::get(
                "/upstream-oauth-providers",
                "listUpstreamOAuthProviders",
                "List upstream OAuth 2.0 providers",
                Answer::List("UpstreamOAuthProvider"),
            )
            .filters(PROVIDER_FILTERS),
            list_providers,
        )
        .route(
            Op::get(
                "/upstream-oauth-providers/{id}",
                "getUpstreamOAuthProvider",
                "Get an upstream OAuth 2.0 provider",
                Answer::One("UpstreamOAuthProvider"),
            ),
            get_provider,
        )
        .route(
            Op::get(
                "/upstream-oauth-links",
                "listUpstreamOAuthLinks",
                "List upstream OAuth 2.0 links",
                Answer::List("UpstreamOAuthLink"),
            )
            .filters(LINK_FILTERS),
            list_links,
        )
        .route(
            Op::post(
                "/upstream-oauth-links",
                "addUpstreamOAuthLink",
                "Link an upstream account to a user",
                Answer::Created("UpstreamOAuthLink"),
            )
            .body(Body::Required("AddUpstreamOAuthLinkRequest")),
            add_link,
        )
        .route(
            Op::get(
                "/upstream-oauth-links/{id}",
                "getUpstreamOAuthLink",
                "Get an upstream OAuth 2.0 link",
                Answer::One("UpstreamOAuthLink"),
            ),
            get_link,
        )
        .route(
            Op::delete("/upstream-oauth-links/{id}", "deleteUpstreamOAuthLink", "Remove an upstream link"),
            delete_link,
        )
}

#[derive(Serialize)]
pub struct ProviderResource {
    #[serde(skip)]
    id: String,
    issuer: Option<String>,
    human_name: Option<String>,
    brand_name: Option<String>,
    created_at: String,
    disabled_at: Option<String>,
    registration_token_required: bool,
}

impl From<UpstreamProvider> for ProviderResource {
    fn from(p: UpstreamProvider) -> Self {
        Self {
            id: p.id,
            issuer: p.config.issuer,
            human_name: p.config.human_name,
            brand_name: p.config.brand_name,
            created_at: super::rfc3339(p.created_at),
            disabled_at: p.disabled_at.map(super::rfc3339),
            registration_token_required: p.config.registration_token_required,
        }
    }
}

impl Resource for ProviderResource {
    const KIND: &'static str = "upstream-oauth-provider";
    const PATH: &'static str = "/api/admin/v1/upstream-oauth-providers";
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Serialize)]
pub struct LinkResource {
    #[serde(skip)]
    id: String,
    created_at: String,
    provider_id: String,
    subject: String,
    user_id: Option<String>,
    human_account_name: Option<String>,
}

impl From<UpstreamLink> for LinkResource {
    fn from(l: UpstreamLink) -> Self {
        Self {
            id: l.id,
            created_at: super::rfc3339(l.created_at),
            provider_id: l.provider_id,
            subject: l.subject,
            user_id: l.user_id,
            human_account_name: l.human_account_name,
        }
    }
}

impl Resource for LinkResource {
    const KIND: &'static str = "upstream-oauth-link";
    const PATH: &'static str = "/api/admin/v1/upstream-oauth-links";
    fn id(&self) -> &str {
        &self.id
    }
}

#[tracing::instrument(name = "http.admin.upstream_providers.list", skip_all)]
async fn list_providers(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let enabled = q.bool_filter("filter[enabled]")?;
    let page: PageFn<_, _> = |c, f, p| upstream_store::page_providers(c, *f, p);
    let count: CountFn<_> = |c, f| upstream_store::count_providers(c, *f);
    super::list_filtered(&state, q, enabled, page, count, ProviderResource::from).await
}

#[tracing::instrument(name = "http.admin.upstream_providers.get", skip_all)]
async fn get_provider(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    let read = upstream_store::provider_by_id;
    super::get_by_id(&state, &id, read, "Upstream OAuth 2.0 provider ID", ProviderResource::from).await
}

#[tracing::instrument(name = "http.admin.upstream_links.list", skip_all)]
async fn list_links(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let filter = LinkFilter {
        user_id: q.id_filter("filter[user]")?,
        provider_id: q.id_filter("filter[provider]")?,
        subject: q.filter("filter[subject]")?,
        human_account_name: q.filter("filter[human-account-name]")?,
    };
    let (page, count) = (upstream_store::page_links, upstream_store::count_links);
    super::list_filtered(&state, q, filter, page, count, LinkResource::from).await
}

#[tracing::instrument(name = "http.admin.upstream_links.get", skip_all)]
async fn get_link(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    super::get_by_id(&state, &id, upstream_store::link_by_id, "Upstream OAuth 2.0 Link ID", LinkResource::from).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddLinkBody {
    user_id: String,
    provider_id: String,
    subject: String,
    human_account_name: Option<String>,
}

#[tracing::instrument(name = "http.admin.upstream_links.add", skip_all)]
async fn add_link(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: AddLinkBody = json_body(&body)?;
    let user_id = parse_ulid(&req.user_id).ok_or_else(|| AdminError::bad_request("user_id must be a ULID"))?;
    let provider_id =
        parse_ulid(&req.provider_id).ok_or_else(|| AdminError::bad_request("provider_id must be a ULID"))?;
    let outcome = crate::lifecycle::upstream::add_link(
        &state.store,
        &user_id,
        &provider_id,
        &req.subject,
        req.human_account_name,
        state.now(),
        state.rng.as_ref(),
    )
    .await?;
    match outcome {
        AddLink::Created(l) => {
            tracing::info!(admin_session = %caller.session_id, provider_id = %l.provider_id, "admin API: upstream link added");
            Ok(created(&LinkResource::from(l)))
        }
        AddLink::Existing(l) => Ok(single(&LinkResource::from(l)).into_response()),
        AddLink::Conflict => Err(AdminError::conflict("This subject is already linked to another user")),
        AddLink::NoUser => Err(AdminError::not_found(format!("User ID {user_id} not found"))),
        AddLink::NoProvider => {
            Err(AdminError::not_found(format!("Upstream OAuth 2.0 provider ID {provider_id} not found")))
        }
    }
}

#[tracing::instrument(name = "http.admin.upstream_links.delete", skip_all)]
async fn delete_link(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
) -> Result<Response, AdminError> {
    let key = id.clone();
    if !state.store.write(move |c| upstream_store::delete_link(c, &key)).await? {
        return Err(AdminError::not_found(format!("Upstream OAuth 2.0 Link ID {id} not found")));
    }
    tracing::info!(admin_session = %caller.session_id, link_id = %id, "admin API: upstream link removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}
