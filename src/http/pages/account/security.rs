//! Re-authenticated actions: allowing a cross-signing reset, deactivating the account.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Reauth, has_password, reauthenticate, signed_in};
use crate::http::AppState;
use crate::http::pages::context::{Browser, PageContext, page_context};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::link::MessagePage;
use crate::lifecycle::users as user_lifecycle;

const RESET_URL: &str = "/account/?action=org.matrix.cross_signing_reset";
const DEACTIVATE_URL: &str = "/account/?action=org.matrix.account_deactivate";

#[derive(Template)]
#[template(path = "pages/account_reset.html")]
struct ResetPage {
    ctx: PageContext,
    needs_password: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/account_deactivate.html")]
struct DeactivatePage {
    ctx: PageContext,
    needs_password: bool,
    password_error: Option<String>,
    confirm_error: Option<String>,
}

pub(super) async fn reset_page(state: &AppState, browser: Browser) -> Response {
    let Some(session) = &browser.session else { return PageError::internal("no session").into_response() };
    let needs_password = match has_password(state, &session.user.id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let page = ResetPage { ctx: browser.context(state), needs_password, error: None };
    (browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct ReauthForm {
    csrf: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /account/cross-signing-reset`: after the password, the homeserver lets the user's app
/// replace its cross-signing keys without interactive auth for 10 minutes.
#[tracing::instrument(name = "http.pages.account.cross_signing_reset", skip_all)]
pub async fn cross_signing_reset_post(
    State(state): State<AppState>,
    browser: Browser,
    Form(form): Form<ReauthForm>,
) -> Response {
    if let Err(e) = browser.check_csrf(form.csrf.as_deref()) {
        return e.into_response();
    }
    let session = match signed_in(&browser, RESET_URL) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let needs_password = match has_password(&state, &session.user.id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let fail = |browser: Browser, status: StatusCode, message: &str| {
        let page = ResetPage { ctx: browser.context(&state), needs_password, error: Some(message.into()) };
        (status, browser.jar, render(&page)).into_response()
    };
    if needs_password {
        if let Err(why) = reauthenticate(&state, &session.user.username, form.password.clone()).await {
            return match why {
                Reauth::Internal(e) => e.into_response(),
                other => fail(browser, other.status(), other.message()),
            };
        }
    }
    match user_lifecycle::allow_cross_signing_reset(&state.lifecycle, &session.user).await {
        Ok(()) => {
            tracing::info!(user = %session.user.username, "cross-signing reset allowed");
            let page = MessagePage {
                ctx: browser.context(&state),
                title: "Identity reset allowed".into(),
                message:
                    "You have 10 minutes to reset your identity in your app. Go back to your app and finish there."
                        .into(),
                link: Some(("/account/".into(), "Back to your account".into())),
            };
            (browser.jar, render(&page)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "allow_cross_signing_reset failed");
            fail(
                browser,
                StatusCode::BAD_GATEWAY,
                "Your homeserver could not be reached, so the reset was not allowed. Try again in a moment.",
            )
        }
    }
}

pub(super) async fn deactivate_page(state: &AppState, browser: Browser) -> Response {
    let Some(session) = &browser.session else { return PageError::internal("no session").into_response() };
    if !state.config.account.account_deactivation_allowed {
        return super::error_page(
            state,
            browser,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Accounts cannot be deleted on this server. Contact its administrator.",
            "/account/",
        );
    }
    let needs_password = match has_password(state, &session.user.id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let page =
        DeactivatePage { ctx: browser.context(state), needs_password, password_error: None, confirm_error: None };
    (browser.jar, render(&page)).into_response()
}

/// `POST /account/deactivate`: password and confirmation, then the account is deactivated here,
/// every session ended and the user deactivated in the homeserver (queued if it is down).
#[tracing::instrument(name = "http.pages.account.deactivate", skip_all)]
pub async fn deactivate_post(
    State(state): State<AppState>,
    browser: Browser,
    Form(form): Form<ReauthForm>,
) -> Response {
    if let Err(e) = browser.check_csrf(form.csrf.as_deref()) {
        return e.into_response();
    }
    let session = match signed_in(&browser, DEACTIVATE_URL) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !state.config.account.account_deactivation_allowed {
        return PageError::new(StatusCode::FORBIDDEN, "Not allowed", "Accounts cannot be deleted on this server.")
            .into_response();
    }
    let needs_password = match has_password(&state, &session.user.id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let fail = |browser: Browser, status: StatusCode, password_error: Option<&str>, confirm_error: Option<&str>| {
        let page = DeactivatePage {
            ctx: browser.context(&state),
            needs_password,
            password_error: password_error.map(String::from),
            confirm_error: confirm_error.map(String::from),
        };
        (status, browser.jar, render(&page)).into_response()
    };
    if form.confirm.is_none() {
        return fail(browser, StatusCode::BAD_REQUEST, None, Some("Tick this box to confirm."));
    }
    if needs_password {
        if let Err(why) = reauthenticate(&state, &session.user.username, form.password.clone()).await {
            return match why {
                Reauth::Internal(e) => e.into_response(),
                other => fail(browser, other.status(), Some(other.message()), None),
            };
        }
    }
    let user = &session.user;
    // The same step as the admin API and the CLI: sessions end, the homeserver deactivates.
    match user_lifecycle::deactivate(&state.lifecycle, &user.id, false).await {
        Ok((_, n)) => tracing::info!(user = %user.username, sessions = n, "account deactivated by its owner"),
        Err(e) => return PageError::internal(e).into_response(),
    }
    let page = MessagePage {
        ctx: page_context(&state, browser.csrf.clone(), None),
        title: "Your account was deleted".into(),
        message: format!(
            "{} is deactivated and signed out everywhere. Thank you for using {}.",
            state.config.matrix.mxid(&user.username),
            state.config.matrix.homeserver
        ),
        link: None,
    };
    (browser.without_session(), render(&page)).into_response()
}
