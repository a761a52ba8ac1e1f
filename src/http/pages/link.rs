//! `/link` and `/device/{id}`: a signed-in user types the code a device shows, then approves it.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::context::{Browser, PageContext, ScopeView, describe_scopes};
use super::error::{PageError, render};
use super::extract::{ReturnTo, SignedIn};
use super::login::login_url;
use crate::http::AppState;
use crate::http::oauth2::device::{display_user_code, normalise_user_code};
use crate::lifecycle::policy::{self, GrantKind};
use crate::model::Scope;
use crate::store::clients as client_store;
use crate::store::grants as grant_store;

#[derive(Template)]
#[template(path = "pages/link.html")]
struct LinkPage {
    ctx: PageContext,
    code: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/device_consent.html")]
struct DeviceConsentPage {
    ctx: PageContext,
    client_name: String,
    client_uri: Option<String>,
    scopes: Vec<ScopeView>,
    action: String,
    user_code: String,
    switch_account_url: String,
}

#[derive(Template)]
#[template(path = "pages/message.html")]
pub struct MessagePage {
    pub ctx: PageContext,
    pub title: String,
    pub message: String,
    pub link: Option<(String, String)>,
}

#[derive(Deserialize)]
pub struct LinkQuery {
    code: Option<String>,
}

pub async fn get(State(state): State<AppState>, browser: Browser, Query(q): Query<LinkQuery>) -> Response {
    let code = q.code.as_deref().map(normalise_user_code).unwrap_or_default();
    if browser.session.is_none() {
        let here = if code.is_empty() { "/link".to_string() } else { format!("/link?code={code}") };
        return (browser.jar, Redirect::to(&login_url(&here))).into_response();
    }
    let page = LinkPage { ctx: browser.context(&state), code: display_user_code(&code), error: None };
    (browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct LinkForm {
    code: String,
}

/// Signed-out posts of the code form come back to it.
pub struct ToLink;

impl ReturnTo for ToLink {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        "/link".into()
    }
}

/// Signed-out posts of a device's consent come back to it.
pub struct ToDevice;

impl ReturnTo for ToDevice {
    async fn url(parts: &mut axum::http::request::Parts) -> String {
        let id = Path::<String>::from_request_parts(parts, &()).await.map(|Path(id)| id).unwrap_or_default();
        format!("/device/{id}")
    }
}

pub async fn post(
    State(state): State<AppState>,
    SignedIn { browser, form, .. }: SignedIn<ToLink, LinkForm>,
) -> Response {
    let code = normalise_user_code(&form.code);
    let lookup = code.clone();
    let grant = match state.store.read(move |c| grant_store::device_by_user_code(c, &lookup)).await {
        Ok(g) => g,
        Err(e) => return PageError::internal(e).into_response(),
    };
    let now = state.now();
    match grant {
        Some(g) if g.expires_at > now && g.fulfilled_at.is_none() && g.rejected_at.is_none() => {
            Redirect::to(&format!("/device/{}", g.id)).into_response()
        }
        _ => {
            let page = LinkPage {
                ctx: browser.context(&state),
                code: form.code.clone(),
                error: Some("This code is not valid or has expired. Check the code on your device.".into()),
            };
            (axum::http::StatusCode::BAD_REQUEST, browser.jar, render(&page)).into_response()
        }
    }
}

async fn load(state: &AppState, id: &str) -> Result<(grant_store::DeviceGrant, crate::model::Client), Response> {
    let id = id.to_string();
    let found = state
        .store
        .read(move |c| {
            let Some(g) = grant_store::device_by_id(c, &id)? else {
                return Ok(None);
            };
            Ok(client_store::by_id(c, &g.client_id)?.map(|cl| (g, cl)))
        })
        .await
        .map_err(|e| PageError::internal(e).into_response())?;
    let Some((grant, client)) = found else {
        return Err(PageError::not_found("This device request does not exist.").into_response());
    };
    if grant.expires_at <= state.now() || grant.fulfilled_at.is_some() || grant.rejected_at.is_some() {
        return Err(PageError::bad_request("This device request was already answered or has expired.").into_response());
    }
    Ok((grant, client))
}

pub async fn consent_get(State(state): State<AppState>, browser: Browser, Path(id): Path<String>) -> Response {
    if browser.session.is_none() {
        return Redirect::to(&login_url(&format!("/device/{id}"))).into_response();
    }
    let (grant, client) = match load(&state, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let scope = Scope::parse(&grant.scope).unwrap_or_default();
    if let Err(v) = policy::check(
        &scope,
        GrantKind::Interactive,
        browser.session.as_ref().map(|s| &s.user),
        &client.id,
        &state.config.policy.data,
    ) {
        return PageError::new(axum::http::StatusCode::FORBIDDEN, "This request is not allowed", v).into_response();
    }
    let page = DeviceConsentPage {
        ctx: browser.context(&state),
        client_name: client.display_name().to_string(),
        client_uri: client.metadata.client_uri.clone(),
        scopes: describe_scopes(&scope),
        action: format!("/device/{}", grant.id),
        user_code: display_user_code(&grant.user_code),
        switch_account_url: login_url(&format!("/device/{}", grant.id)),
    };
    (browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct DecisionForm {
    decision: Option<String>,
}

pub async fn consent_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedIn { browser, session, form, .. }: SignedIn<ToDevice, DecisionForm>,
) -> Response {
    let (grant, client) = match load(&state, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let approve = form.decision.as_deref() == Some("allow");
    let scope = Scope::parse(&grant.scope).unwrap_or_default();
    if approve {
        if let Err(v) =
            policy::check(&scope, GrantKind::Interactive, Some(&session.user), &client.id, &state.config.policy.data)
        {
            return PageError::new(axum::http::StatusCode::FORBIDDEN, "This request is not allowed", v).into_response();
        }
    }
    let (gid, sid, now) = (grant.id.clone(), session.id.clone(), state.now());
    match state.store.write(move |c| grant_store::decide_device(c, &gid, &sid, approve, now)).await {
        Ok(true) => {}
        Ok(false) => {
            return PageError::bad_request("This device request was already answered.").into_response();
        }
        Err(e) => return PageError::internal(e).into_response(),
    }
    let (title, message) = if approve {
        (
            "Device connected".to_string(),
            format!("{} is now signed in. You can return to your device.", client.display_name()),
        )
    } else {
        ("Request denied".to_string(), format!("{} was not given access to your account.", client.display_name()))
    };
    let page = MessagePage { ctx: browser.context(&state), title, message, link: None };
    (browser.jar, render(&page)).into_response()
}
