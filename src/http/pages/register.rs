//! `/register`: self-registration with a password (and `prompt=create` from `/authorize`).
//!
//! One form: username, password twice (strength checked server-side with zxcvbn and shown as a
//! meter when the form comes back), optional display name, registration token when the server
//! requires one, terms of service when configured. The username is checked against the Matrix
//! grammar, the local database and the homeserver; the user is then created (the token use and
//! the accepted terms in the same write), provisioned in the homeserver (queued when it is down),
//! and signed in.
//!
//! Email at registration is not supported yet: servers that require it do not offer registration
//! (see `registration_offered`).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::context::{Browser, PageContext};
use super::error::{PageError, render};
use super::login::{localpart_of, login_url, safe_next, start_browser_session};
use crate::homeserver::Availability;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::lifecycle::registration::{self, NewRegistration, RegistrationError, Strength};
use crate::lifecycle::users::UserError;
use crate::model::user::check_localpart;
use crate::store::users as user_store;

/// Longest display name accepted (Synapse's limit).
const MAX_DISPLAY_NAME: usize = 256;
/// Longest password accepted (bounds the hashing work a request can cause).
const MAX_PASSWORD: usize = 1024;

#[derive(Default)]
struct FieldErrors {
    username: Option<String>,
    password: Option<String>,
    password_confirm: Option<String>,
    display_name: Option<String>,
    token: Option<String>,
    tos: Option<String>,
}

impl FieldErrors {
    fn any(&self) -> bool {
        self.first().is_some()
    }

    /// The first field with an error, in page order (it gets the focus).
    fn first(&self) -> Option<&'static str> {
        [
            ("username", &self.username),
            ("password", &self.password),
            ("password_confirm", &self.password_confirm),
            ("display_name", &self.display_name),
            ("token", &self.token),
            ("tos", &self.tos),
        ]
        .into_iter()
        .find(|(_, e)| e.is_some())
        .map(|(n, _)| n)
    }
}

#[derive(Template)]
#[template(path = "pages/register.html")]
struct RegisterPage {
    ctx: PageContext,
    next: Option<String>,
    login_link: String,
    username: String,
    display_name: String,
    token: String,
    token_required: bool,
    tos_accepted: bool,
    errors: FieldErrors,
    form_error: Option<String>,
    strength: Option<Strength>,
    /// The field that gets the focus ("" for the first).
    focus: &'static str,
}

#[derive(Deserialize)]
pub struct RegisterQuery {
    next: Option<String>,
    token: Option<String>,
}

fn disabled() -> Response {
    PageError::not_found("This server does not offer sign-up. Ask its administrator for an account.").into_response()
}

fn page(state: &AppState, browser: &Browser, next: Option<String>) -> RegisterPage {
    RegisterPage {
        ctx: browser.context(state),
        login_link: next.as_deref().map(login_url).unwrap_or_else(|| "/login".into()),
        next,
        username: String::new(),
        display_name: String::new(),
        token: String::new(),
        token_required: state.config.account.registration_token_required,
        tos_accepted: false,
        errors: FieldErrors::default(),
        form_error: None,
        strength: None,
        focus: "",
    }
}

#[tracing::instrument(name = "http.pages.register.get", skip_all)]
pub async fn get(State(state): State<AppState>, browser: Browser, Query(q): Query<RegisterQuery>) -> Response {
    if !super::registration_offered(&state) {
        return disabled();
    }
    let mut p = page(&state, &browser, safe_next(q.next.as_deref()));
    // Invite links may carry the token (`/register?token=…`).
    p.token = q.token.unwrap_or_default();
    (browser.jar, render(&p)).into_response()
}

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    token: String,
    tos: Option<String>,
    next: Option<String>,
}

#[tracing::instrument(name = "http.pages.register.post", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<RegisterForm>,
) -> Response {
    if !super::registration_offered(&state) {
        return disabled();
    }
    if let Err(e) = browser.check_csrf(form.csrf.as_deref()) {
        return e.into_response();
    }
    let config = &state.config;
    let next = safe_next(form.next.as_deref());
    let mut p = page(&state, &browser, next.clone());
    p.username = form.username.trim().to_string();
    p.display_name = form.display_name.trim().to_string();
    p.token = form.token.trim().to_string();
    p.tos_accepted = form.tos.is_some();

    // 1. What can be checked without the database or the homeserver.
    let server_name = &config.matrix.homeserver;
    let localpart = match localpart_of(&form.username, server_name) {
        Some(l) if !l.is_empty() => match check_localpart(&l) {
            Ok(()) if config.matrix.mxid(&l).len() > 255 => {
                p.errors.username = Some("This username is too long.".into());
                None
            }
            Ok(()) => Some(l),
            Err(why) => {
                p.errors.username = Some(format!("{why}."));
                None
            }
        },
        Some(_) => {
            p.errors.username = Some("Choose a username.".into());
            None
        }
        None => {
            p.errors.username =
                Some(format!("Choose a username on {server_name}, like alice or @alice:{server_name}."));
            None
        }
    };
    if let Some(l) = &localpart {
        p.username = l.clone();
    }
    let display_name = Some(p.display_name.clone()).filter(|n| !n.is_empty());
    if p.display_name.chars().any(char::is_control) {
        p.errors.display_name = Some("The display name contains characters that cannot be shown.".into());
    } else if p.display_name.chars().count() > MAX_DISPLAY_NAME {
        p.errors.display_name = Some(format!("Use at most {MAX_DISPLAY_NAME} characters."));
    }

    if form.password.is_empty() {
        p.errors.password = Some("Choose a password.".into());
    } else if form.password.chars().count() > MAX_PASSWORD {
        p.errors.password = Some(format!("Use at most {MAX_PASSWORD} characters."));
    } else {
        let service = config.branding.service_name.clone().unwrap_or_default();
        let inputs = [p.username.as_str(), p.display_name.as_str(), server_name.as_str(), service.as_str()];
        let s = registration::strength(&form.password, config.passwords.minimum_complexity, &inputs);
        if !s.acceptable() {
            p.errors.password = Some(match &s.warning {
                Some(w) => format!("This password is too easy to guess. {w}"),
                None => "This password is too easy to guess.".into(),
            });
        }
        p.strength = Some(s);
        if form.password_confirm != form.password {
            p.errors.password_confirm = Some("The passwords do not match.".into());
        }
    }

    let token = if p.token_required {
        if p.token.is_empty() {
            p.errors.token = Some("Enter the registration token you were given.".into());
        }
        Some(p.token.clone())
    } else {
        None
    };
    let terms = p.ctx.tos_uri.clone();
    if terms.is_some() && !p.tos_accepted {
        p.errors.tos = Some("Accept the terms of service to create an account.".into());
    }
    if p.errors.any() {
        return refuse(browser, p, StatusCode::BAD_REQUEST);
    }
    let Some(localpart) = localpart else {
        return refuse(browser, p, StatusCode::BAD_REQUEST);
    };

    // 2. Attempts that reach the database and the homeserver are rate limited per client IP.
    if state.limiters.registration.check(&ip.to_string()).is_err() {
        p.form_error = Some("Too many sign-ups from your network. Wait a while and try again.".into());
        return refuse(browser, p, StatusCode::TOO_MANY_REQUESTS);
    }

    let name = localpart.clone();
    match state.store.read(move |c| user_store::by_username(c, &name)).await {
        Ok(Some(_)) => {
            p.errors.username = Some("This username is taken. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Ok(None) => {}
        Err(e) => return PageError::internal(e).into_response(),
    }
    if let Some(t) = &token {
        match registration::check_token(&state.store, t, state.now()).await {
            Ok(()) => {}
            Err(RegistrationError::Token(problem)) => {
                p.errors.token = Some(problem.message().into());
                return refuse(browser, p, StatusCode::BAD_REQUEST);
            }
            Err(e) => return PageError::internal(e).into_response(),
        }
    }
    let (hs, name) = (state.lifecycle.homeserver.clone(), localpart.clone());
    match tokio::task::spawn_blocking(move || hs.is_localpart_available(&name)).await {
        Ok(Ok(Availability::Available)) => {}
        Ok(Ok(Availability::Taken)) => {
            p.errors.username = Some("This username is taken. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Ok(Ok(Availability::Exclusive)) => {
            p.errors.username = Some("This username is reserved. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Ok(Ok(Availability::Invalid)) => {
            p.errors.username = Some("The homeserver does not accept this username. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        outcome => {
            tracing::warn!(error = ?outcome.map(|r| r.err().map(|e| e.to_string())).ok(), "cannot check username availability");
            p.form_error =
                Some("We cannot reach the homeserver to check whether this username is free. Try again later.".into());
            return refuse(browser, p, StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    // 3. Create, provision, sign in.
    let new =
        NewRegistration { username: localpart, password: form.password, display_name, token, accepted_terms: terms };
    let user = match registration::register(&state.store, &state.passwords, state.clock.as_ref(), new).await {
        Ok(u) => u,
        Err(RegistrationError::Token(problem)) => {
            p.errors.token = Some(problem.message().into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(RegistrationError::User(UserError::Taken)) => {
            p.errors.username = Some("This username is taken. Choose another one.".into());
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(RegistrationError::User(UserError::InvalidUsername(why))) => {
            p.errors.username = Some(format!("{why}."));
            return refuse(browser, p, StatusCode::BAD_REQUEST);
        }
        Err(e) => return PageError::internal(e).into_response(),
    };
    tracing::info!(user_id = %user.id, username = %user.username, "user registered");
    if !state.lifecycle.provision_user(&user.id).await {
        tracing::warn!(user_id = %user.id, "homeserver unreachable after registration; provisioning queued");
    }
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);
    let existing = browser.session.as_ref().map(|s| s.id.clone());
    match start_browser_session(&state, &user, existing, user_agent, ip.to_string()).await {
        Ok(session_id) => {
            let jar = browser.with_session(&state, &session_id);
            (jar, Redirect::to(next.as_deref().unwrap_or("/account/"))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The form again, with its errors; the password fields are never filled back in.
fn refuse(browser: Browser, mut p: RegisterPage, status: StatusCode) -> Response {
    p.focus = p.errors.first().unwrap_or("");
    (status, browser.jar, render(&p)).into_response()
}
