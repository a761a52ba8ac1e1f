//! The SSO-redirect login of legacy clients: `/login/sso/redirect?redirectUrl=…` → sign in →
//! "Continue to <host>?" → back to `redirectUrl?loginToken=…`, exchanged once at `/login`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use url::Url;

use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::error::MatrixError;
use crate::http::pages::context::{Browser, PageContext};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::{CsrfForm, NoFields};
use crate::http::pages::login::login_url;
use crate::model::client::is_allowed_redirect;
use crate::store::compat;
use crate::tokens::hash_token;

/// The confirmation page stays valid this long after the redirect.
const SSO_TTL: i64 = 1800;

#[derive(Deserialize)]
pub struct RedirectQuery {
    #[serde(rename = "redirectUrl")]
    redirect_url: Option<String>,
}

/// Single-label app schemes of legacy clients still in use, accepted besides RFC 8252's
/// reverse-DNS ones: Element Android and iOS (classic) come back through `element://connect`.
const LEGACY_APP_SCHEMES: [&str; 1] = ["element"];

/// Where the login token may be sent: https, loopback http, or an app's private-use scheme —
/// never `javascript:`, `data:`, `vbscript:`, `file:`, plain http elsewhere or user info (MAS
/// accepts any scheme).
fn valid_redirect(s: &str) -> Option<Url> {
    let u = Url::parse(s).ok()?;
    let legacy_app = LEGACY_APP_SCHEMES.contains(&u.scheme()) && u.username().is_empty() && u.password().is_none();
    (is_allowed_redirect(&u) || legacy_app).then_some(u)
}

pub async fn redirect_idp(
    state: State<AppState>,
    ip: ClientIp,
    Path((_v, _idp)): Path<(String, String)>,
    q: Query<RedirectQuery>,
) -> Response {
    start(state, ip, q).await
}

pub async fn redirect(state: State<AppState>, ip: ClientIp, q: Query<RedirectQuery>) -> Response {
    start(state, ip, q).await
}

/// The longest `redirectUrl` stored.
const MAX_REDIRECT_URL_LENGTH: usize = 2048;

async fn start(State(state): State<AppState>, ClientIp(ip): ClientIp, Query(q): Query<RedirectQuery>) -> Response {
    // Each start stores a row before anyone signed in: bounded per client IP and in size.
    if let Err(ms) = state.limiters.compat_sso.check_ip(ip) {
        return MatrixError {
            retry_after_ms: Some(ms),
            ..MatrixError::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many requests")
        }
        .into_response();
    }
    let redirect_url = q.redirect_url.as_deref().filter(|u| u.len() <= MAX_REDIRECT_URL_LENGTH);
    let Some(url) = redirect_url.and_then(valid_redirect) else {
        return MatrixError::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", "Missing or invalid redirectUrl")
            .into_response();
    };
    let id = state.rng.id(state.clock.as_ref());
    let (sid, now, target, rng) = (id.clone(), state.now(), url.to_string(), state.rng.clone());
    if let Err(e) = state.store.write(move |c| compat::insert_sso(c, &sid, &target, now, rng.as_ref())).await {
        return MatrixError::internal(e).into_response();
    }
    Redirect::to(&format!("{}complete-compat-sso/{id}", state.config.http.public_base)).into_response()
}

#[derive(Template)]
#[template(path = "pages/sso_confirm.html")]
struct ConfirmPage {
    ctx: PageContext,
    redirect_host: String,
    action: String,
    cancel_url: String,
}

async fn load(state: &AppState, id: &str) -> Result<compat::SsoLogin, Response> {
    let lookup = id.to_string();
    let login = state
        .store
        .read(move |c| compat::sso_by_id(c, &lookup))
        .await
        .map_err(|e| PageError::internal(e).into_response())?
        .ok_or_else(|| PageError::not_found("This sign-in request does not exist.").into_response())?;
    if login.fulfilled_at.is_some() || state.now() > login.created_at + SSO_TTL {
        return Err(PageError::bad_request(
            "This sign-in request was already used or has expired. Start again from the app.",
        )
        .into_response());
    }
    Ok(login)
}

fn host_of(uri: &str) -> String {
    Url::parse(uri)
        .ok()
        .map(|u| u.host_str().map(String::from).unwrap_or_else(|| format!("{}:", u.scheme())))
        .unwrap_or_default()
}

pub async fn confirm_get(State(state): State<AppState>, browser: Browser, Path(id): Path<String>) -> Response {
    let here = format!("/complete-compat-sso/{id}");
    if browser.session.is_none() {
        return (browser.jar, Redirect::to(&login_url(&here))).into_response();
    }
    let login = match load(&state, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let mut cancel = Url::parse(&login.redirect_uri).ok();
    if let Some(u) = cancel.as_mut() {
        u.query_pairs_mut().append_pair("error", "access_denied");
    }
    let page = ConfirmPage {
        ctx: browser.context(&state),
        redirect_host: host_of(&login.redirect_uri),
        action: here,
        cancel_url: cancel.map(|u| u.to_string()).unwrap_or_else(|| "/".into()),
    };
    (browser.jar, render(&page)).into_response()
}

pub async fn confirm_post(
    State(state): State<AppState>,
    browser: Browser,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Response {
    let Some(session) = &browser.session else {
        return Redirect::to(&login_url(&format!("/complete-compat-sso/{id}"))).into_response();
    };
    let login = match load(&state, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let token = state.rng.alnum(32);
    let (lid, sid, hash, now) = (login.id.clone(), session.id.clone(), hash_token(&token), state.now());
    match state.store.write(move |c| compat::fulfill_sso(c, &lid, &sid, &hash, now)).await {
        Ok(true) => {}
        Ok(false) => return PageError::bad_request("This sign-in request was already used.").into_response(),
        Err(e) => return PageError::internal(e).into_response(),
    }
    let Ok(mut url) = Url::parse(&login.redirect_uri) else {
        return PageError::bad_request("The app's address is invalid.").into_response();
    };
    url.query_pairs_mut().append_pair("loginToken", &token);
    Redirect::to(url.as_str()).into_response()
}
