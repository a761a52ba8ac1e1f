//! `/account/emails`: the user's email addresses. Adding one sends a 6-digit code to it (10
//! minutes, 5 attempts, resend rate-limited); the right code stores the address and pushes it to
//! the homeserver as a verified threepid. Removing one pushes the shorter list. Honours
//! `account.email_change_allowed`.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::recheck::{FactorAsk, PasswordCheck, confirm_identity, factor_ask};
use super::{Reauth, ReauthErrors, error_page, signed_in};
use crate::email;
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::http::pages::context::{Browser, NoticeQuery, PageContext, Session};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::{ReturnTo, SignedIn};
use crate::http::pages::login::login_url;
use crate::lifecycle::emails::{self as verification, CodeCheck, NotResent};
use crate::store::email_codes::{self, EmailVerification};
use crate::store::{StoreError, users as user_store};

pub const EMAILS_URL: &str = "/account/emails";

#[derive(Template)]
#[template(path = "pages/account_emails.html")]
struct EmailsPage {
    ctx: PageContext,
    notice: Option<&'static str>,
    emails: Vec<String>,
    change_allowed: bool,
    new_email: String,
    email_error: Option<String>,
    /// What changing the addresses asks beyond the address: a fresh second factor.
    factor: FactorAsk,
    /// Why the second factor was not accepted (the code field; `form` above the forms).
    factor_errors: ReauthErrors,
}

#[derive(Template)]
#[template(path = "pages/account_emails_verify.html")]
struct VerifyPage {
    ctx: PageContext,
    id: String,
    email: String,
    minutes: i64,
    error: Option<String>,
    notice: Option<&'static str>,
}

fn notice_text(notice: Option<&str>) -> Option<&'static str> {
    match notice? {
        "added" => Some("The email address was verified and added to your account."),
        "removed" => Some("The email address was removed from your account."),
        "resent" => Some("A new code was sent."),
        _ => None,
    }
}

/// The status of the page when a new code was not sent.
pub(crate) fn not_resent_status(why: NotResent) -> StatusCode {
    match why {
        NotResent::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        NotResent::Failed => StatusCode::BAD_GATEWAY,
    }
}

fn not_allowed() -> Response {
    PageError::new(StatusCode::FORBIDDEN, "Not allowed", "Email addresses cannot be changed on this server.")
        .into_response()
}

/// Signed-out posts of the emails page come back to it.
pub struct ToEmails;

impl ReturnTo for ToEmails {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        EMAILS_URL.into()
    }
}

/// Signed-out posts of a verification (`…/verify/{id}`, `…/resend/{id}`) come back to its code form.
pub struct ToVerification;

impl ReturnTo for ToVerification {
    async fn url(parts: &mut axum::http::request::Parts) -> String {
        let id = Path::<String>::from_request_parts(parts, &()).await.map(|Path(id)| id).unwrap_or_default();
        format!("{EMAILS_URL}/verify/{id}")
    }
}

/// What to answer a form post that changes the addresses when this server does not let them
/// change ("not allowed").
fn changing(state: &AppState) -> Result<(), Box<Response>> {
    if !state.config.account.email_change_allowed {
        return Err(Box::new(not_allowed()));
    }
    Ok(())
}

async fn list_page(
    state: &AppState,
    browser: Browser,
    status: StatusCode,
    notice: Option<&'static str>,
    new_email: String,
    error: Option<String>,
) -> Response {
    list_page_with(state, browser, status, notice, new_email, error, ReauthErrors::default()).await
}

async fn list_page_with(
    state: &AppState,
    browser: Browser,
    status: StatusCode,
    notice: Option<&'static str>,
    new_email: String,
    error: Option<String>,
    factor_errors: ReauthErrors,
) -> Response {
    let Some(session) = &browser.session else { return Redirect::to(&login_url(EMAILS_URL)).into_response() };
    let user_id = session.user.id.clone();
    let emails = match state.store.read(move |c| user_store::emails(c, &user_id)).await {
        Ok(e) => e,
        Err(e) => return PageError::internal(e).into_response(),
    };
    let factor = match factor_ask(state, &browser, session).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let page = EmailsPage {
        ctx: browser.context(state),
        notice,
        emails,
        change_allowed: state.config.account.email_change_allowed,
        new_email,
        email_error: error,
        factor,
        factor_errors,
    };
    (status, browser.jar, render(&page)).into_response()
}

/// `GET /account/emails`.
#[tracing::instrument(name = "http.pages.account.emails", skip_all)]
pub async fn get(State(state): State<AppState>, browser: Browser, Query(q): Query<NoticeQuery>) -> Response {
    if browser.session.is_none() {
        return (browser.jar, Redirect::to(&login_url(EMAILS_URL))).into_response();
    }
    list_page(&state, browser, StatusCode::OK, notice_text(q.notice.as_deref()), String::new(), None).await
}

#[derive(Deserialize)]
pub struct AddForm {
    #[serde(default)]
    email: String,
    /// A TOTP or recovery code, for a user with a second factor.
    #[serde(default)]
    code: String,
}

/// A fresh second factor for a user who has one (no password: changing addresses never asked
/// for it); what to answer when it is missing or wrong.
async fn confirm_factor(
    state: &AppState,
    browser: &mut Browser,
    session: &Session,
    code: &str,
    new_email: &str,
) -> Result<(), Box<Response>> {
    match confirm_identity(state, browser, session, PasswordCheck::No, code).await {
        Ok(()) => Ok(()),
        Err(Reauth::Internal(e)) => Err(Box::new(e.into_response())),
        Err(why) => {
            let browser =
                Browser { jar: browser.jar.clone(), session: browser.session.take(), csrf: browser.csrf.clone() };
            let page =
                list_page_with(state, browser, why.status(), None, new_email.to_string(), None, why.errors()).await;
            Err(Box::new(page))
        }
    }
}

/// `POST /account/emails/add`: emails a code, then shows where to enter it.
#[tracing::instrument(name = "http.pages.account.emails_add", skip_all)]
pub async fn add_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToEmails, AddForm>,
) -> Response {
    if let Err(r) = changing(&state) {
        return *r;
    }
    let address = form.email.trim().to_string();
    let fail = |browser: Browser, status: StatusCode, message: &str| {
        let (state, address, message) = (state.clone(), address.clone(), message.to_string());
        async move { list_page(&state, browser, status, None, address, Some(message)).await }
    };
    if !email::valid_address(&address) {
        return fail(browser, StatusCode::BAD_REQUEST, "Enter an email address, like alice@example.org.").await;
    }
    let user_id = session.user.id.clone();
    let existing = match state.store.read(move |c| user_store::emails(c, &user_id)).await {
        Ok(e) => e,
        Err(e) => return PageError::internal(e).into_response(),
    };
    if existing.iter().any(|e| e.eq_ignore_ascii_case(&address)) {
        return fail(browser, StatusCode::BAD_REQUEST, "This address is already on your account.").await;
    }
    if let Err(r) = confirm_factor(&state, &mut browser, &session, &form.code, &address).await {
        return *r;
    }
    if !verification::may_send_code(&state.limiters, ip, &address) {
        return fail(browser, StatusCode::TOO_MANY_REQUESTS, verification::TOO_MANY_CODES).await;
    }
    match verification::start_verification(&state.lifecycle, &state.mailer, Some(&session.user.id), &address).await {
        Ok(id) => (browser.jar, Redirect::to(&format!("{EMAILS_URL}/verify/{id}"))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot start email verification");
            fail(browser, StatusCode::BAD_GATEWAY, verification::FIRST_CODE_NOT_SENT).await
        }
    }
}

/// The signed-in user's own unfinished verification `id`.
async fn own_verification(state: &AppState, user_id: &str, id: &str) -> Result<Option<EmailVerification>, PageError> {
    let id = id.to_string();
    let found = state.store.read(move |c| email_codes::verification_by_id(c, &id)).await?;
    Ok(found.filter(|v| v.user_id.as_deref() == Some(user_id)))
}

fn verify_page(
    state: &AppState,
    browser: Browser,
    status: StatusCode,
    v: &EmailVerification,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let page = VerifyPage {
        ctx: browser.context(state),
        id: v.id.clone(),
        email: v.email.clone(),
        minutes: verification::CODE_TTL_SECS / 60,
        error,
        notice,
    };
    (status, browser.jar, render(&page)).into_response()
}

fn unknown_verification(state: &AppState, browser: Browser) -> Response {
    error_page(
        state,
        browser,
        StatusCode::NOT_FOUND,
        "Nothing to verify here",
        "This verification does not exist or belongs to another account. Add the address again.",
        EMAILS_URL,
    )
}

/// `GET /account/emails/verify/{id}`: the code form.
#[tracing::instrument(name = "http.pages.account.emails_verify_get", skip_all)]
pub async fn verify_get(
    State(state): State<AppState>,
    browser: Browser,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let here = format!("{EMAILS_URL}/verify/{id}");
    let session = match signed_in(&browser, &here) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match own_verification(&state, &session.user.id, &id).await {
        Err(e) => e.into_response(),
        Ok(None) => unknown_verification(&state, browser),
        Ok(Some(v)) if v.verified_at.is_some() => (browser.jar, Redirect::to(EMAILS_URL)).into_response(),
        Ok(Some(v)) => verify_page(&state, browser, StatusCode::OK, &v, None, notice_text(q.notice.as_deref())),
    }
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// `POST /account/emails/verify/{id}`: checks the code; the right one adds the address.
#[tracing::instrument(name = "http.pages.account.emails_verify_post", skip_all)]
pub async fn verify_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedIn { browser, session, form, .. }: SignedIn<ToVerification, CodeForm>,
) -> Response {
    if let Err(r) = changing(&state) {
        return *r;
    }
    let v = match own_verification(&state, &session.user.id, &id).await {
        Err(e) => return e.into_response(),
        Ok(None) => return unknown_verification(&state, browser),
        Ok(Some(v)) => v,
    };
    let check = match verification::check_code(&state.lifecycle, &v, &form.code).await {
        Ok(c) => c,
        Err(e) => return PageError::internal(e).into_response(),
    };
    if check == CodeCheck::AlreadyVerified {
        return (browser.jar, Redirect::to(EMAILS_URL)).into_response();
    }
    if let Some(message) = check.problem() {
        return verify_page(&state, browser, StatusCode::BAD_REQUEST, &v, Some(message), None);
    }
    let (user_id, address, now, id) =
        (session.user.id.clone(), v.email.clone(), state.now(), state.rng.id(state.clock.as_ref()));
    let added = state
        .store
        .write(move |c| {
            // Whoever proves an address that another account uses learns nothing new, but the
            // homeserver keeps each threepid on one account only.
            if email_codes::email_used_by_other(c, &user_id, &address)? {
                return Ok(false);
            }
            match user_store::add_email(c, &id, &user_id, &address, now) {
                Ok(()) | Err(StoreError::Conflict(_)) => Ok(true),
                Err(e) => Err(e),
            }
        })
        .await;
    match added {
        Err(e) => PageError::internal(e).into_response(),
        Ok(false) => error_page(
            &state,
            browser,
            StatusCode::CONFLICT,
            "Address in use",
            "Another account on this server already uses this email address.",
            EMAILS_URL,
        ),
        Ok(true) => {
            state.lifecycle.provision_user(&session.user.id).await;
            (browser.jar, Redirect::to(&format!("{EMAILS_URL}?notice=added"))).into_response()
        }
    }
}

/// `POST /account/emails/resend/{id}`: a new code (the old one stops working), rate-limited.
#[tracing::instrument(name = "http.pages.account.emails_resend", skip_all)]
pub async fn resend_post(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    SignedIn { browser, session, .. }: SignedIn<ToVerification, CodeForm>,
) -> Response {
    if let Err(r) = changing(&state) {
        return *r;
    }
    let here = format!("{EMAILS_URL}/verify/{id}");
    let v = match own_verification(&state, &session.user.id, &id).await {
        Err(e) => return e.into_response(),
        Ok(None) => return unknown_verification(&state, browser),
        Ok(Some(v)) if v.verified_at.is_some() => return (browser.jar, Redirect::to(EMAILS_URL)).into_response(),
        Ok(Some(v)) => v,
    };
    if let Err(why) = verification::resend_code(&state.lifecycle, &state.mailer, &state.limiters, ip, &v).await {
        return verify_page(&state, browser, not_resent_status(why), &v, Some(why.message().to_string()), None);
    }
    (browser.jar, Redirect::to(&format!("{here}?notice=resent"))).into_response()
}

/// `POST /account/emails/remove`.
#[tracing::instrument(name = "http.pages.account.emails_remove", skip_all)]
pub async fn remove_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToEmails, AddForm>,
) -> Response {
    if let Err(r) = changing(&state) {
        return *r;
    }
    if let Err(r) = confirm_factor(&state, &mut browser, &session, &form.code, "").await {
        return *r;
    }
    let (user_id, address) = (session.user.id.clone(), form.email.trim().to_string());
    match state.store.write(move |c| email_codes::remove_email(c, &user_id, &address)).await {
        Err(e) => PageError::internal(e).into_response(),
        Ok(false) => (browser.jar, Redirect::to(EMAILS_URL)).into_response(),
        Ok(true) => {
            state.lifecycle.provision_user(&session.user.id).await;
            (browser.jar, Redirect::to(&format!("{EMAILS_URL}?notice=removed"))).into_response()
        }
    }
}
