//! `/recover`: password recovery by email (when `account.password_recovery_enabled`).
//!
//! The request form always answers with the same "check your email" page, whether or not an
//! account uses the address, and the mail goes out from a background task so the answer takes
//! as long either way. The link `/recover/<ticket>` works once, for 10 minutes; it sets a new
//! password and can end every session of the account.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::account::new_password_problem;
use super::context::{Browser, PageContext};
use super::error::{PageError, render};
use super::extract::CsrfForm;
use crate::email::{self, RECOVERY_TTL_SECS};
use crate::http::AppState;
use crate::http::client_ip::ClientIp;
use crate::lifecycle::sessions::{Ended, sync_ended};
use crate::store::email_codes::{self, RecoveryTicket};
use crate::store::users as user_store;

/// Whether `/recover` is offered: recovery on, and passwords in use at all.
pub fn recovery_enabled(state: &AppState) -> bool {
    state.config.account.password_recovery_enabled && state.config.passwords.enabled
}

#[derive(Template)]
#[template(path = "pages/recover.html")]
struct RequestPage {
    ctx: PageContext,
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/recover_sent.html")]
struct SentPage {
    ctx: PageContext,
    email: String,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "pages/recover_password.html")]
struct PasswordPage {
    ctx: PageContext,
    ticket: String,
    mxid: String,
    new_error: Option<String>,
    confirm_error: Option<String>,
    end_sessions: bool,
}

#[derive(Template)]
#[template(path = "pages/recover_done.html")]
struct DonePage {
    ctx: PageContext,
    title: String,
    message: String,
    success: bool,
    link: (String, String),
}

fn disabled() -> Response {
    PageError::not_found("Password recovery is not available on this server. Ask its administrator for help.")
        .into_response()
}

/// `GET /recover`.
#[tracing::instrument(name = "http.pages.recover.get", skip_all)]
pub async fn get(State(state): State<AppState>, browser: Browser) -> Response {
    if !recovery_enabled(&state) {
        return disabled();
    }
    let page = RequestPage { ctx: browser.context(&state), email: String::new(), error: None };
    (browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    email: String,
}

/// `POST /recover`: sends a link when an account uses the address; the page is the same anyway.
#[tracing::instrument(name = "http.pages.recover.post", skip_all)]
pub async fn post(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    CsrfForm(form): CsrfForm<RequestForm>,
) -> Response {
    if !recovery_enabled(&state) {
        return disabled();
    }
    let address = form.email.trim().to_string();
    let fail = |browser: Browser, status: StatusCode, message: &str| {
        let page = RequestPage { ctx: browser.context(&state), email: address.clone(), error: Some(message.into()) };
        (status, browser.jar, render(&page)).into_response()
    };
    if !email::valid_address(&address) {
        return fail(browser, StatusCode::BAD_REQUEST, "Enter an email address, like alice@example.org.");
    }
    if state.limiters.recovery_per_ip.check_ip(ip).is_err() {
        return fail(browser, StatusCode::TOO_MANY_REQUESTS, "Too many requests. Wait a while and try again.");
    }
    // Over the per-address limit nothing is sent, but the page does not tell (it would say
    // nothing about the account either way; it just keeps answers uniform).
    // Each request is counted once it is settled (`appliance_password_recovery_requests_total`).
    if state.limiters.recovery_per_address.check(&address.to_lowercase()).is_ok() {
        let (state, address) = (state.clone(), address.clone());
        // The mail goes out in the language of this page.
        let locale = crate::i18n::current();
        tokio::spawn(crate::i18n::with_locale(locale, async move {
            let result = match send_recovery(&state, &address).await {
                Ok(true) => "sent",
                Ok(false) => "no_account",
                Err(e) => {
                    tracing::error!(error = %e, "password recovery mail not sent");
                    "failed"
                }
            };
            state.metrics.recovery_request(result);
        }));
    } else {
        tracing::info!("password recovery: per-address limit reached; nothing sent");
        state.metrics.recovery_request("limited");
    }
    let page = SentPage { ctx: browser.context(&state), email: address, minutes: RECOVERY_TTL_SECS / 60 };
    (browser.jar, render(&page)).into_response()
}

/// Creates a ticket and mails the link, when an active account with a password uses `address`;
/// `false` when no such account does (nothing sent).
async fn send_recovery(state: &AppState, address: &str) -> anyhow::Result<bool> {
    let lookup = address.to_string();
    let user = state.store.read(move |c| user_store::by_email(c, &lookup)).await?;
    let Some(user) = user.filter(|u| u.deactivated_at.is_none() && u.locked_at.is_none()) else {
        tracing::info!("password recovery requested for an address no active account uses; nothing sent");
        return Ok(false);
    };
    let secret = state.rng.alnum(32);
    let now = state.now();
    let ticket = RecoveryTicket {
        id: state.rng.id(state.clock.as_ref()),
        user_id: user.id.clone(),
        email: address.to_string(),
        created_at: now,
        expires_at: now + RECOVERY_TTL_SECS,
        used_at: None,
    };
    let stored = secret.clone();
    state
        .store
        .write(move |c| {
            email_codes::prune_tickets(c, now - 86_400)?;
            email_codes::insert_ticket(c, &ticket, &stored)
        })
        .await?;
    let link = state.url(&format!("/recover/{secret}"));
    let mxid = state.config.matrix.mxid(&user.username);
    email::send_recovery_link(&state.mailer, address, &mxid, &link).await?;
    Ok(true)
}

/// The ticket and its user while the link still works; `None` when used, expired or unknown.
type TicketState = Option<(RecoveryTicket, crate::model::User)>;

async fn load_ticket(state: &AppState, secret: &str) -> Result<TicketState, PageError> {
    if secret.len() != 32 || !secret.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let secret = secret.to_string();
    let now = state.now();
    let found = state
        .store
        .read(move |c| {
            let Some(t) = email_codes::ticket_by_secret(c, &secret)? else { return Ok(None) };
            Ok(user_store::by_id(c, &t.user_id)?.map(|u| (t, u)))
        })
        .await?;
    Ok(match found {
        Some((t, u))
            if t.used_at.is_none() && t.expires_at > now && u.deactivated_at.is_none() && u.locked_at.is_none() =>
        {
            Some((t, u))
        }
        _ => None,
    })
}

fn gone_page(state: &AppState, browser: Browser) -> Response {
    let page = DonePage {
        ctx: browser.context(state),
        title: "This link no longer works".into(),
        message:
            "Recovery links work once, for 10 minutes. Ask for a new one if you still need to reset your password."
                .into(),
        success: false,
        link: ("/recover".into(), "Get a new link".into()),
    };
    let mut res = render(&page);
    *res.status_mut() = StatusCode::GONE;
    (browser.jar, res).into_response()
}

/// `GET /recover/{ticket}`: the new-password form.
#[tracing::instrument(name = "http.pages.recover.ticket_get", skip_all)]
pub async fn ticket_get(State(state): State<AppState>, browser: Browser, Path(secret): Path<String>) -> Response {
    if !recovery_enabled(&state) {
        return disabled();
    }
    match load_ticket(&state, &secret).await {
        Err(e) => e.into_response(),
        Ok(None) => gone_page(&state, browser),
        Ok(Some((_, user))) => {
            let page = PasswordPage {
                ctx: browser.context(&state),
                ticket: secret,
                mxid: state.config.matrix.mxid(&user.username),
                new_error: None,
                confirm_error: None,
                end_sessions: false,
            };
            (browser.jar, render(&page)).into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirm: String,
    #[serde(default)]
    end_sessions: Option<String>,
}

/// `POST /recover/{ticket}`: sets the new password, uses up the ticket, optionally ends sessions.
#[tracing::instrument(name = "http.pages.recover.ticket_post", skip_all)]
pub async fn ticket_post(
    State(state): State<AppState>,
    browser: Browser,
    Path(secret): Path<String>,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Response {
    if !recovery_enabled(&state) {
        return disabled();
    }
    let (ticket, user) = match load_ticket(&state, &secret).await {
        Err(e) => return e.into_response(),
        Ok(None) => return gone_page(&state, browser),
        Ok(Some((t, u))) => (t, u),
    };
    let end_sessions = form.end_sessions.is_some();
    let mut new_error = None;
    let mut confirm_error = None;
    if let Some(problem) = new_password_problem(&state, &user, &form.new_password) {
        new_error = Some(problem);
    } else if form.new_password != form.new_password_confirm {
        confirm_error = Some("The passwords do not match.".to_string());
    }
    if new_error.is_some() || confirm_error.is_some() {
        let page = PasswordPage {
            ctx: browser.context(&state),
            ticket: secret,
            mxid: state.config.matrix.mxid(&user.username),
            new_error,
            confirm_error,
            end_sessions,
        };
        return (StatusCode::BAD_REQUEST, browser.jar, render(&page)).into_response();
    }
    let (version, hash) = match state.passwords.hash(form.new_password.clone()).await {
        Ok(v) => v,
        Err(e) => return PageError::internal(e).into_response(),
    };
    let (ticket_id, user_id, now, password_id) =
        (ticket.id.clone(), user.id.clone(), state.now(), state.rng.id(state.clock.as_ref()));
    let outcome = state
        .store
        .write(move |c| {
            if !email_codes::use_ticket(c, &ticket_id, &user_id, now)? {
                return Ok(None);
            }
            user_store::set_password(c, &password_id, &user_id, &hash, version, now)?;
            let mut ended = Ended::default();
            if end_sessions {
                ended.end_all_of(c, &user_id, now)?;
            }
            Ok(Some(ended))
        })
        .await;
    let ended = match outcome {
        Err(e) => return PageError::internal(e).into_response(),
        Ok(None) => return gone_page(&state, browser),
        Ok(Some(ended)) => ended,
    };
    let count = ended.count();
    // Their devices go from the homeserver.
    sync_ended(&state.lifecycle, ended).await;
    let ended = end_sessions.then_some(count);
    tracing::info!(user_id = %user.id, sessions_ended = ?ended, "password reset by email");
    let mut jar = browser.jar.clone();
    if ended.is_some() {
        // Every browser session of the user ended too, this browser's included.
        jar = jar.remove(axum_extra::extract::cookie::Cookie::build(super::context::SESSION_COOKIE).path("/"));
    }
    let message = if ended.is_some() {
        "Your password was changed and every session of your account was signed out. Sign in with the new password."
    } else {
        "Your password was changed. Sign in with the new password."
    };
    let page = DonePage {
        ctx: browser.context(&state),
        title: "Password changed".into(),
        message: message.into(),
        success: true,
        link: ("/login".into(), "Sign in".into()),
    };
    (jar, render(&page)).into_response()
}
