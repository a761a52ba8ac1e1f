//! A fresh second factor for sensitive account actions (issue 16 item 4): changing the password
//! or the email addresses, deactivating the account, allowing a cross-signing reset, adding or
//! removing a factor.
//!
//! For a user with a second factor, each of these asks for the factor again unless it was
//! confirmed on this browser session in the last [`FRESH_SECS`] seconds: a TOTP or recovery code
//! in the action's own form, or the confirmation page `/account/confirm` (a code, or a passkey).
//! A confirmation (and the second step of a sign-in) leaves a private (AEAD) cookie naming the
//! browser session and the time; it is worth nothing in another session. Users without a factor
//! keep the password check alone.
//!
//! [`confirm_identity`] is the one call every sensitive action makes.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::PrivateCookieJar;
use serde::Deserialize;

use super::{Reauth, has_password, reauthenticate, signed_in};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::pages::context::{Browser, PageContext, Session, cookie};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::{ReturnTo, SignedIn};
use crate::http::pages::mfa::{self as factors, Check};
use crate::http::pages::passkeys::{self, Refused};
use crate::store::{mfa as mfa_store, passkeys as passkey_store};

pub const FACTOR_COOKIE: &str = "appliance-factor";
/// How long a confirmed factor covers sensitive actions on its browser session.
pub const FRESH_SECS: i64 = 300;
pub const CONFIRM_URL: &str = "/account/confirm";

/// Signed-out posts of the confirmation page come back to it.
pub struct ToConfirm;

impl ReturnTo for ToConfirm {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        CONFIRM_URL.into()
    }
}

/// What a sensitive form asks of its user beyond the password.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactorAsk {
    /// The user has a factor and has not confirmed it lately: the action needs it.
    pub needed: bool,
    /// A code from the authenticator app (or a recovery code) can confirm it.
    pub totp: bool,
    /// A passkey can confirm it (on the confirmation page).
    pub passkey: bool,
}

/// The stamp of a factor confirmed now on the browser session `session_id`.
pub(crate) fn stamp(state: &AppState, jar: PrivateCookieJar, session_id: &str) -> PrivateCookieJar {
    jar.add(cookie(state, FACTOR_COOKIE, format!("{session_id}\n{}", state.now())))
}

/// Whether this browser confirmed a factor for `session` in the last `FRESH_SECS` seconds.
fn fresh(state: &AppState, browser: &Browser, session: &Session) -> bool {
    let Some(c) = browser.jar.get(FACTOR_COOKIE) else { return false };
    let mut parts = c.value().splitn(2, '\n');
    let (Some(id), Some(at)) = (parts.next(), parts.next().and_then(|a| a.parse::<i64>().ok())) else {
        return false;
    };
    let now = state.now();
    id == session.id && at <= now && now - at <= FRESH_SECS
}

/// What the sensitive forms of `session`'s user ask for.
pub(crate) async fn factor_ask(state: &AppState, browser: &Browser, session: &Session) -> Result<FactorAsk, PageError> {
    let id = session.user.id.clone();
    let (totp, passkeys) = state
        .store
        .read(move |c| Ok((mfa_store::has_totp(c, &id)?, passkey_store::count(c, &id)? > 0)))
        .await
        .map_err(PageError::internal)?;
    // A passkey can be offered only where WebAuthn works (a domain, not an IP address).
    let passkey = passkeys && passkeys::webauthn(state).is_some();
    let needed = (totp || passkeys) && !fresh(state, browser, session);
    Ok(FactorAsk { needed, totp, passkey })
}

/// Which password a sensitive action checks.
pub(crate) enum PasswordCheck<'a> {
    /// This one, always (a password change: the current password).
    Always(&'a str),
    /// This one when the account has a password (signed up through a provider: none is asked).
    IfTheAccountHasOne(&'a str),
    /// None: the action never asked for the password (email addresses, factors).
    No,
}

/// The one check of every sensitive account action: the password as `password` says, and for a
/// user with a second factor a fresh one — confirmed on this browser session in the last five
/// minutes, or `code` (a TOTP or recovery code, spent here; a right one confirms the factor for
/// the next five minutes). Rate-limited per account with sign-in's budget.
///
/// A missing code is reported before the password is tried, so no attempt is spent on it.
pub(crate) async fn confirm_identity(
    state: &AppState,
    browser: &mut Browser,
    session: &Session,
    password: PasswordCheck<'_>,
    code: &str,
) -> Result<(), Reauth> {
    let ask = factor_ask(state, browser, session).await.map_err(Reauth::Internal)?;
    let code = code.trim();
    if ask.needed && (code.is_empty() || !ask.totp) {
        return Err(Reauth::FactorMissing { totp: ask.totp });
    }
    let password = match password {
        PasswordCheck::Always(p) => Some(p),
        PasswordCheck::IfTheAccountHasOne(p) => {
            has_password(state, &session.user.id).await.map_err(Reauth::Internal)?.then_some(p)
        }
        PasswordCheck::No => None,
    };
    if let Some(p) = password {
        reauthenticate(state, &session.user.username, p.to_string()).await?;
    }
    if ask.needed {
        match factors::check_code(state, &session.user, code).await.map_err(Reauth::Internal)? {
            Check::Accepted => browser.jar = stamp(state, browser.jar.clone(), &session.id),
            Check::Wrong => return Err(Reauth::WrongCode),
            Check::RateLimited => return Err(Reauth::RateLimited),
        }
    }
    Ok(())
}

#[derive(Template)]
#[template(path = "pages/account_confirm.html")]
struct ConfirmPage {
    ctx: PageContext,
    next: String,
    totp: bool,
    error: Option<String>,
    passkey_options: Option<String>,
    passkey_error: Option<String>,
    passkey_js: String,
}

/// The confirmation page, coming back to `next`.
pub fn confirm_url(next: &str) -> String {
    format!("{CONFIRM_URL}?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
}

/// Where to go after confirming: a path of this site (the account pages by default).
fn next_of(next: Option<&str>) -> String {
    crate::http::pages::login::safe_next(next).unwrap_or_else(|| "/account/".into())
}

async fn confirm_page(
    state: &AppState,
    mut browser: Browser,
    session: &Session,
    next: String,
    status: StatusCode,
    error: Option<String>,
    passkey_error: Option<String>,
) -> Response {
    let ask = match factor_ask(state, &browser, session).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if !ask.totp && !ask.passkey {
        // Nothing to confirm with (no factor, or passkeys only where none can be used).
        return (browser.jar, Redirect::to(&next)).into_response();
    }
    let passkey_options = if ask.passkey {
        match passkeys::authentication_options(state, &mut browser, Some(&session.user)).await {
            Ok(o) => o,
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let page = ConfirmPage {
        ctx: browser.context(state),
        next,
        totp: ask.totp,
        error,
        passkey_options,
        passkey_error,
        passkey_js: state.assets.path("passkey.js"),
    };
    (status, browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /account/confirm?next=…`: confirm a second factor for the sensitive actions.
pub async fn get(State(state): State<AppState>, browser: Browser, Query(q): Query<NextQuery>) -> Response {
    let next = next_of(q.next.as_deref());
    let session = match signed_in(&browser, &confirm_url(&next)) {
        Ok(s) => s,
        Err(r) => return (browser.jar, *r).into_response(),
    };
    confirm_page(&state, browser, &session, next, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    credential: String,
    next: Option<String>,
}

/// `POST /account/confirm`: a TOTP or recovery code.
#[tracing::instrument(name = "http.pages.account.confirm", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    SignedIn { browser, session, form, .. }: SignedIn<ToConfirm, ConfirmForm>,
) -> Response {
    let next = next_of(form.next.as_deref());
    let refused = |why: Reauth| (why.status(), Some(why.message().to_string()));
    let (status, error) = if form.code.trim().is_empty() {
        refused(Reauth::WrongCode)
    } else {
        match factors::check_code(&state, &session.user, &form.code).await {
            Ok(Check::Accepted) => {
                tracing::info!(user = %session.user.username, "second factor confirmed (code)");
                let jar = stamp(&state, browser.jar, &session.id);
                return (jar, Redirect::to(&next)).into_response();
            }
            Ok(Check::Wrong) => refused(Reauth::WrongCode),
            Ok(Check::RateLimited) => refused(Reauth::RateLimited),
            Err(e) => return e.into_response(),
        }
    };
    confirm_page(&state, browser, &session, next, status, error, None).await
}

/// `POST /account/confirm/passkey`: a passkey's answer (posted by assets/passkey.js).
#[tracing::instrument(name = "http.pages.account.confirm.passkey", skip_all)]
pub async fn passkey_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToConfirm, ConfirmForm>,
) -> Response {
    let next = next_of(form.next.as_deref());
    match passkeys::finish_authentication(&state, &mut browser, ip, Some(&session.user), &form.credential).await {
        Ok(_) => {
            tracing::info!(user = %session.user.username, "second factor confirmed (passkey)");
            let jar = stamp(&state, browser.jar, &session.id);
            (jar, Redirect::to(&next)).into_response()
        }
        Err(Refused::Internal(e)) => e.into_response(),
        Err(why) => confirm_page(&state, browser, &session, next, why.status(), None, Some(why.message().into())).await,
    }
}
