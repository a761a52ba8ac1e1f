//! `/login`, `/logout` and `/`.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::context::{Browser, PageContext};
use super::error::{PageError, render};
use super::extract::{CsrfForm, NoFields};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::model::User;
use crate::store::{sessions as session_store, users as user_store};

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    ctx: PageContext,
    username: String,
    error: Option<String>,
    next: Option<String>,
    client_name: Option<String>,
    registration_enabled: bool,
    recovery_enabled: bool,
    passwords_enabled: bool,
    providers: Vec<ProviderButton>,
    /// "Sign in with a passkey" (JSON options), when passkeys can be offered.
    passkey_options: Option<String>,
    passkey_js: String,
    passkey_error: Option<String>,
}

/// A "Continue with …" button of an upstream provider.
pub struct ProviderButton {
    pub url: String,
    pub name: String,
    pub brand: String,
}

/// The enabled upstream providers (config order), each with its authorize URL carrying `next`.
pub fn provider_buttons(state: &AppState, next: Option<&str>) -> Vec<ProviderButton> {
    state
        .config
        .upstream_oauth2
        .enabled()
        .map(|p| {
            let mut url = format!("/upstream/authorize/{}", p.id.to_uppercase());
            if let Some(n) = next {
                url.push_str("?next=");
                url.extend(url::form_urlencoded::byte_serialize(n.as_bytes()));
            }
            ProviderButton { url, name: p.display_name(), brand: p.brand_name.clone().unwrap_or_default() }
        })
        .collect()
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    login_hint: Option<String>,
}

/// Only local paths are followed after sign-in (no open redirects), and none longer than a
/// redirect URI may be (`next` is stored with a pending sign-up before anyone signed in).
pub fn safe_next(next: Option<&str>) -> Option<String> {
    use crate::http::oauth2::params::MAX_REDIRECT_URI_LENGTH;
    next.filter(|n| n.len() <= MAX_REDIRECT_URI_LENGTH && is_local_path(n)).map(String::from)
}

/// Whether `next` is a path on this site and nothing a browser could read as another origin: it
/// starts with one `/`; it has no control character, space or backslash anywhere (browsers drop
/// TAB/CR/LF and read `\` as `/`, so `/\t/evil` and `/\evil` become `//evil`); its path has no
/// encoded slash, backslash, percent or control character (`/%2F/evil` is `//evil` to a proxy
/// that decodes, `/%252F/evil` to one that decodes twice); and it resolves to this origin.
fn is_local_path(next: &str) -> bool {
    if !next.starts_with('/') || next.starts_with("//") {
        return false;
    }
    if next.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return false;
    }
    let path = next.split(['?', '#']).next().unwrap_or_default().to_ascii_lowercase();
    let encoded = path.match_indices('%').any(|(i, _)| {
        let hex = path.get(i + 1..i + 3).unwrap_or("");
        matches!(hex, "2f" | "5c" | "7f" | "25") || hex.starts_with('0') || hex.starts_with('1')
    });
    if encoded {
        return false;
    }
    let Ok(base) = url::Url::parse("https://appliance.invalid/") else { return false };
    base.join(next).is_ok_and(|u| u.origin() == base.origin())
}

/// A local path as a `next=` query parameter.
pub fn login_url(next: &str) -> String {
    format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
}

fn page(
    state: &AppState,
    browser: &Browser,
    username: String,
    error: Option<String>,
    next: Option<String>,
) -> LoginPage {
    let next_for_buttons = next.clone();
    LoginPage {
        ctx: browser.context(state),
        username,
        error,
        next,
        client_name: None,
        registration_enabled: super::registration_offered(state),
        recovery_enabled: state.config.account.password_recovery_enabled,
        passwords_enabled: state.config.passwords.enabled,
        providers: provider_buttons(state, next_for_buttons.as_deref()),
        passkey_options: None,
        passkey_js: state.assets.path("passkey.js"),
        passkey_error: None,
    }
}

/// The sign-in page after a refused passkey: its error beside a fresh passkey button.
pub(crate) async fn passkey_refused(
    state: &AppState,
    mut browser: Browser,
    next: Option<String>,
    status: axum::http::StatusCode,
    message: &str,
) -> Response {
    let options = match super::passkeys::authentication_options(state, &mut browser, None).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let mut p = page(state, &browser, String::new(), None, next);
    p.passkey_options = options;
    p.passkey_error = Some(message.to_string());
    (status, browser.jar, render(&p)).into_response()
}

pub async fn index(browser: Browser) -> Response {
    match browser.session {
        Some(_) => Redirect::to("/account/").into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

#[tracing::instrument(name = "http.pages.login.get", skip_all)]
pub async fn get(State(state): State<AppState>, mut browser: Browser, Query(q): Query<LoginQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    // A reauthentication request (prompt=login) passes `reauth`; otherwise a signed-in user moves on.
    if browser.session.is_some() && !q.next.as_deref().is_some_and(|n| n.contains("reauth=1")) {
        if let Some(n) = next {
            return Redirect::to(&n).into_response();
        }
    }
    // Passwords off and a single provider: straight to it (as MAS).
    let buttons = provider_buttons(&state, next.as_deref());
    if !state.config.passwords.enabled && buttons.len() == 1 && browser.session.is_none() {
        return (browser.jar, Redirect::to(&buttons[0].url)).into_response();
    }
    let hint = q.login_hint.as_deref().map(|h| h.trim_start_matches("mxid:").to_string()).unwrap_or_default();
    let options = match super::passkeys::authentication_options(&state, &mut browser, None).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let mut p = page(&state, &browser, hint, None, next);
    p.passkey_options = options;
    (browser.jar, render(&p)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `@alice:server` or `alice` → `alice` (the server name must be ours).
pub fn localpart_of(input: &str, server_name: &str) -> Option<String> {
    let input = input.trim();
    match input.strip_prefix('@') {
        Some(rest) => {
            let (local, server) = rest.split_once(':')?;
            (server == server_name).then(|| local.to_lowercase())
        }
        None => Some(input.to_lowercase()),
    }
}

#[tracing::instrument(name = "http.pages.login.post", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let fail = |browser: Browser, message: &str| {
        let p = page(&state, &browser, form.username.clone(), Some(message.to_string()), next.clone());
        (axum::http::StatusCode::UNAUTHORIZED, browser.jar.clone(), render(&p)).into_response()
    };
    let Some(localpart) = localpart_of(&form.username, &state.config.matrix.homeserver) else {
        return fail(browser, "Invalid username or password.");
    };
    // Every attempt against an account counts, as in MAS.
    if state.limiters.login_per_ip.check_ip(ip).is_err() || state.limiters.login_per_account.check(&localpart).is_err()
    {
        state.metrics.logins.get_or_create(&crate::http::metrics::ResultLabels { result: "rate_limited".into() }).inc();
        return fail(browser, "Too many attempts. Wait a minute and try again.");
    }
    match verify_password(&state, &localpart, form.password.clone()).await {
        Ok(user) => {
            state.metrics.logins.get_or_create(&crate::http::metrics::ResultLabels { result: "success".into() }).inc();
            // A user with a second factor is asked for it before the session starts.
            match super::mfa::has_factor(&state, &user.id).await {
                Ok(true) => return super::mfa::start_second_step(&state, browser, &user, next.as_deref()),
                // `account.mfa: required`: the same step sets a factor up first.
                Ok(false) if state.config.account.mfa == crate::config::MfaPolicy::Required => {
                    return super::mfa::start_second_step(&state, browser, &user, next.as_deref());
                }
                Ok(false) => {}
                Err(e) => return e.into_response(),
            }
            sign_in_and_continue(&state, browser, &headers, ip, &user, next.as_deref(), SignedInWith::Password).await
        }
        Err(LoginFailure::Locked) => fail(browser, "This account is locked. Contact the administrator of this server."),
        Err(LoginFailure::Invalid) => {
            state.metrics.logins.get_or_create(&crate::http::metrics::ResultLabels { result: "failure".into() }).inc();
            fail(browser, "Invalid username or password.")
        }
        Err(LoginFailure::Internal(e)) => e.into_response(),
    }
}

pub enum LoginFailure {
    Invalid,
    Locked,
    Internal(PageError),
}

/// Checks a password; unknown users take as long as known ones. Upgrades outdated hashes.
pub async fn verify_password(state: &AppState, localpart: &str, password: String) -> Result<User, LoginFailure> {
    let name = localpart.to_string();
    let found = state
        .store
        .read(move |c| {
            let Some(u) = user_store::by_username(c, &name)? else {
                return Ok(None);
            };
            let p = user_store::current_password(c, &u.id)?;
            Ok(Some((u, p)))
        })
        .await
        .map_err(|e| LoginFailure::Internal(PageError::internal(e)))?;
    let Some((user, Some(stored))) = found else {
        state.passwords.dummy_verify(password).await;
        return Err(LoginFailure::Invalid);
    };
    let verified = match state.passwords.verify(password, stored.version, stored.hash.clone()).await {
        Ok(v) => v,
        Err(crate::crypto::password::PasswordError::Mismatch) => return Err(LoginFailure::Invalid),
        Err(e) => return Err(LoginFailure::Internal(PageError::internal(e))),
    };
    if user.deactivated_at.is_some() || user.locked_at.is_some() {
        return Err(LoginFailure::Locked);
    }
    if let Some((version, hash)) = verified.upgraded {
        state
            .store
            .write(move |c| user_store::upgrade_password(c, &stored, &hash, version))
            .await
            .map_err(|e| LoginFailure::Internal(PageError::internal(e)))?;
    }
    Ok(user)
}

/// Signs `user` in on this browser (`start_browser_session`, with its user agent and `ip`) and
/// sends it on to `next`, or to the account page.
pub(crate) async fn sign_in_and_continue(
    state: &AppState,
    browser: Browser,
    headers: &HeaderMap,
    ip: IpAddr,
    user: &User,
    next: Option<&str>,
    factor: SignedInWith,
) -> Response {
    let user_agent = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(String::from);
    let existing = browser.session.as_ref().map(|s| s.id.clone());
    match start_browser_session(state, user, existing, user_agent, ip.to_string()).await {
        Ok(session_id) => {
            let mut jar = browser.with_session(state, &session_id);
            if factor == SignedInWith::Factor {
                // As after a second step: sensitive account actions need the factor again only later.
                jar = super::account::recheck::stamp(state, jar, &session_id);
            }
            (jar, Redirect::to(next.unwrap_or("/account/"))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// What a sign-in proved: a password alone, or a second factor (a passkey).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignedInWith {
    Password,
    Factor,
}

/// A fresh browser session; a session of the same user is reauthenticated instead.
pub(crate) async fn start_browser_session(
    state: &AppState,
    user: &User,
    existing: Option<String>,
    user_agent: Option<String>,
    ip: String,
) -> Result<String, PageError> {
    let (now, new_id) = (state.now(), state.rng.id(state.clock.as_ref()));
    let user_id = user.id.clone();
    Ok(state
        .store
        .write(move |c| {
            if let Some(id) = existing {
                if let Some(s) = session_store::browser_by_id(c, &id)? {
                    if s.user_id == user_id && s.finished_at.is_none() {
                        session_store::reauthenticate_browser(c, &id, now)?;
                        return Ok(id);
                    }
                    session_store::finish_browser(c, &id, now)?;
                }
            }
            let s = session_store::BrowserSession {
                id: new_id,
                user_id,
                created_at: now,
                authenticated_at: now,
                finished_at: None,
            };
            session_store::insert_browser(c, &s, user_agent.as_deref(), Some(&ip))?;
            Ok(s.id)
        })
        .await?)
}

pub async fn logout(State(state): State<AppState>, browser: Browser, _: CsrfForm<NoFields>) -> Response {
    if let Some(s) = &browser.session {
        let (id, now) = (s.id.clone(), state.now());
        if let Err(e) = state.store.write(move |c| session_store::finish_browser(c, &id, now)).await {
            return PageError::internal(e).into_response();
        }
    }
    (browser.without_session(), Redirect::to("/login")).into_response()
}
