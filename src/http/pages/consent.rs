//! `/consent/{grant_id}`: the signed-in user approves or denies an authorization request.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::context::{Browser, PageContext, ScopeView, describe_scopes};
use super::error::{PageError, render};
use super::extract::CsrfForm;
use super::login::login_url;
use crate::http::AppState;
use crate::http::error::ErrorCode;
use crate::http::oauth2::authorize::ClientRedirect;
use crate::lifecycle::policy::{self, GrantKind};
use crate::model::{Client, Scope};
use crate::store::clients as client_store;
use crate::store::grants::{self as grant_store, AuthorizationGrant};
use crate::tokens::hash_token;

#[derive(Template)]
#[template(path = "pages/consent.html")]
struct ConsentPage {
    ctx: PageContext,
    client_name: String,
    client_uri: Option<String>,
    #[allow(dead_code)]
    logo_uri: Option<String>,
    redirect_host: String,
    scopes: Vec<ScopeView>,
    action: String,
    device_id: Option<String>,
    switch_account_url: String,
}

/// Grants stay answerable this long after `/authorize`.
const GRANT_TTL: i64 = 3600;

enum Loaded {
    Ready(Box<(AuthorizationGrant, Client)>),
    Respond(Response),
}

async fn load(state: &AppState, browser: &Browser, grant_id: &str) -> Loaded {
    let id = grant_id.to_string();
    let found = state
        .store
        .read(move |c| {
            let Some(g) = grant_store::grant_by_id(c, &id)? else {
                return Ok(None);
            };
            Ok(client_store::by_id(c, &g.client_id)?.map(|client| (g, client)))
        })
        .await;
    let (grant, client) = match found {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Loaded::Respond(PageError::not_found("This sign-in request does not exist.").into_response());
        }
        Err(e) => return Loaded::Respond(PageError::internal(e).into_response()),
    };
    if grant.fulfilled_at.is_some() || grant.cancelled_at.is_some() || state.now() > grant.created_at + GRANT_TTL {
        return Loaded::Respond(
            PageError::bad_request(
                "This sign-in request was already answered or has expired. Start again from the app.",
            )
            .into_response(),
        );
    }
    let here = format!("/consent/{}", grant.id);
    let Some(session) = &browser.session else {
        return Loaded::Respond(Redirect::to(&login_url(&here)).into_response());
    };
    // prompt=login: the user must have signed in after the request was made.
    let wants_login = grant.prompt.as_deref().is_some_and(|p| p.split(' ').any(|x| x == "login"));
    if wants_login && session.authenticated_at < grant.created_at {
        return Loaded::Respond(Redirect::to(&login_url(&format!("{here}?reauth=1"))).into_response());
    }
    Loaded::Ready(Box::new((grant, client)))
}

fn target(grant: &AuthorizationGrant) -> ClientRedirect {
    ClientRedirect { uri: grant.redirect_uri.clone(), mode: grant.response_mode.clone(), state: grant.state.clone() }
}

#[tracing::instrument(name = "http.pages.consent.get", skip_all)]
pub async fn get(State(state): State<AppState>, browser: Browser, Path(grant_id): Path<String>) -> Response {
    let (grant, client) = match load(&state, &browser, &grant_id).await {
        Loaded::Ready(v) => *v,
        Loaded::Respond(r) => return r,
    };
    let scope = Scope::parse(&grant.scope).unwrap_or_default();
    let user = browser.session.as_ref().map(|s| &s.user);
    if let Err(violation) = policy::check(&scope, GrantKind::Interactive, user, &client.id, &state.config.policy.data) {
        return PageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "This request is not allowed",
            format!("{} asked for something your account may not grant: {violation}.", client.display_name()),
        )
        .into_response();
    }
    let redirect_host = url::Url::parse(&grant.redirect_uri)
        .ok()
        .map(|u| u.host_str().map(String::from).unwrap_or_else(|| format!("{}:", u.scheme())))
        .unwrap_or_default();
    let page = ConsentPage {
        ctx: browser.context(&state),
        client_name: client.display_name().to_string(),
        client_uri: client.metadata.client_uri.clone(),
        logo_uri: client.metadata.logo_uri.clone(),
        redirect_host,
        scopes: describe_scopes(&scope),
        action: format!("/consent/{}", grant.id),
        device_id: scope.device_id().map(String::from),
        switch_account_url: login_url(&format!("/consent/{}?reauth=1", grant.id)),
    };
    (browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct ConsentForm {
    decision: Option<String>,
}

#[tracing::instrument(name = "http.pages.consent.post", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    Path(grant_id): Path<String>,
    CsrfForm(form): CsrfForm<ConsentForm>,
) -> Response {
    let (grant, _client) = match load(&state, &browser, &grant_id).await {
        Loaded::Ready(v) => *v,
        Loaded::Respond(r) => return r,
    };
    let Some(session) = &browser.session else {
        return Redirect::to("/login").into_response();
    };
    let now = state.now();
    let to_client = target(&grant);
    if form.decision.as_deref() != Some("allow") {
        let id = grant.id.clone();
        if let Err(e) = state.store.write(move |c| grant_store::cancel_grant(c, &id, now)).await {
            return PageError::internal(e).into_response();
        }
        return to_client.error(&state, ErrorCode::AccessDenied, "the user denied the request");
    }
    let scope = Scope::parse(&grant.scope).unwrap_or_default();
    if let Err(violation) =
        policy::check(&scope, GrantKind::Interactive, Some(&session.user), &grant.client_id, &state.config.policy.data)
    {
        return to_client.error(&state, ErrorCode::AccessDenied, &violation);
    }
    let code = state.rng.alnum(32);
    let (id, session_id, code_hash) = (grant.id.clone(), session.id.clone(), hash_token(&code));
    match state.store.write(move |c| grant_store::fulfill_grant(c, &id, &session_id, &code_hash, now)).await {
        Ok(true) => to_client.respond(&state, vec![("code".into(), code)]),
        Ok(false) => PageError::bad_request("This sign-in request was already answered.").into_response(),
        Err(e) => PageError::internal(e).into_response(),
    }
}
