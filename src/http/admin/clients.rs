//! `/oauth2-clients`: the registered and configured OAuth clients (never their secrets).

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use serde_json::Value;

use super::openapi::{Answer, Filter, Op, Routes};
use super::params::Query;
use super::{AdminError, IdPath, Resource};
use crate::http::AppState;
use crate::model::Client;
use crate::store::clients as client_store;
use crate::store::page::{CountFn, PageFn};

const FILTERS: &[Filter] =
    &[Filter::OneOf("client-kind", &["static", "dynamic"], "Declared in the config, or registered dynamically")];

pub fn routes() -> Routes {
    Routes::new("oauth2-client")
        .route(
            Op::get("/oauth2-clients", "listOAuth2Clients", "List OAuth 2.0 clients", Answer::List("OAuth2Client"))
                .filters(FILTERS),
            list,
        )
        .route(
            Op::get("/oauth2-clients/{id}", "getOAuth2Client", "Get an OAuth 2.0 client", Answer::One("OAuth2Client")),
            get_one,
        )
}

#[derive(Serialize)]
pub struct ClientResource {
    #[serde(skip)]
    id: String,
    client_id: String,
    /// Declared in the config file (rather than registered through `/oauth2/registration`).
    is_static: bool,
    created_at: String,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    policy_uri: Option<String>,
    tos_uri: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    token_endpoint_auth_method: String,
    application_type: Option<String>,
    contacts: Vec<String>,
}

impl From<Client> for ClientResource {
    fn from(c: Client) -> Self {
        let m = c.metadata;
        Self {
            client_id: c.id.clone(),
            id: c.id,
            is_static: c.is_static,
            created_at: super::rfc3339(c.created_at),
            client_name: m.client_name,
            client_uri: m.client_uri,
            logo_uri: m.logo_uri,
            policy_uri: m.policy_uri,
            tos_uri: m.tos_uri,
            redirect_uris: m.redirect_uris,
            grant_types: m.grant_types,
            response_types: m.response_types,
            token_endpoint_auth_method: m.token_endpoint_auth_method,
            application_type: m.application_type,
            contacts: m.contacts,
        }
    }
}

impl Resource for ClientResource {
    const KIND: &'static str = "oauth2-client";
    const PATH: &'static str = "/api/admin/v1/oauth2-clients";
    fn id(&self) -> &str {
        &self.id
    }
}

#[tracing::instrument(name = "http.admin.oauth2_clients.list", skip_all)]
async fn list(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let mut q = Query::parse(raw.as_deref())?;
    let is_static = q.choice("filter[client-kind]", &[("static", true), ("dynamic", false)])?;
    let page: PageFn<_, _> = |c, f, p| client_store::page(c, *f, p);
    let count: CountFn<_> = |c, f| client_store::count(c, *f);
    super::list_filtered(&state, q, is_static, page, count, ClientResource::from).await
}

#[tracing::instrument(name = "http.admin.oauth2_clients.get", skip_all)]
async fn get_one(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Json<Value>, AdminError> {
    super::get_by_id(&state, &id, client_store::by_id, "OAuth 2.0 client with ID", ClientResource::from).await
}
