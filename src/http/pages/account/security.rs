//! Re-authenticated actions: allowing a cross-signing reset, deactivating the account.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::recheck::{FactorAsk, PasswordCheck, confirm_identity, factor_ask};
use super::{Reauth, ReauthErrors, has_password};
use crate::http::AppState;
use crate::http::pages::context::{Browser, PageContext, Session, page_context};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::{ReturnTo, SignedIn};
use crate::http::pages::link::MessagePage;
use crate::lifecycle::users as user_lifecycle;

const RESET_URL: &str = "/account/?action=org.matrix.cross_signing_reset";
const DEACTIVATE_URL: &str = "/account/?action=org.matrix.account_deactivate";

/// Signed-out posts come back to the reset page.
pub struct ToReset;

impl ReturnTo for ToReset {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        RESET_URL.into()
    }
}

/// Signed-out posts come back to the deactivation page.
pub struct ToDeactivate;

impl ReturnTo for ToDeactivate {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        DEACTIVATE_URL.into()
    }
}

#[derive(Template)]
#[template(path = "pages/account_reset.html")]
struct ResetPage {
    ctx: PageContext,
    needs_password: bool,
    factor: FactorAsk,
    errors: ReauthErrors,
}

#[derive(Template)]
#[template(path = "pages/account_deactivate.html")]
struct DeactivatePage {
    ctx: PageContext,
    needs_password: bool,
    factor: FactorAsk,
    errors: ReauthErrors,
    confirm_error: Option<String>,
}

/// Whether the account has a password, and what else its sensitive forms ask.
async fn asks(state: &AppState, browser: &Browser, session: &Session) -> Result<(bool, FactorAsk), PageError> {
    Ok((has_password(state, &session.user.id).await?, factor_ask(state, browser, session).await?))
}

pub(super) async fn reset_page(state: &AppState, browser: Browser) -> Response {
    let Some(session) = &browser.session else { return PageError::internal("no session").into_response() };
    let (needs_password, factor) = match asks(state, &browser, session).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let page = ResetPage { ctx: browser.context(state), needs_password, factor, errors: ReauthErrors::default() };
    (browser.jar, render(&page)).into_response()
}

#[derive(Deserialize)]
pub struct ReauthForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: Option<String>,
    /// A TOTP or recovery code, for a user with a second factor.
    #[serde(default)]
    code: String,
}

/// `POST /account/cross-signing-reset`: after the password, the homeserver lets the user's app
/// replace its cross-signing keys without interactive auth for 10 minutes.
#[tracing::instrument(name = "http.pages.account.cross_signing_reset", skip_all)]
pub async fn cross_signing_reset_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToReset, ReauthForm>,
) -> Response {
    let fail = async |browser: Browser, status: StatusCode, errors: ReauthErrors| {
        let (needs_password, factor) = match asks(&state, &browser, &session).await {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        };
        let page = ResetPage { ctx: browser.context(&state), needs_password, factor, errors };
        (status, browser.jar, render(&page)).into_response()
    };
    let check = PasswordCheck::IfTheAccountHasOne(&form.password);
    if let Err(why) = confirm_identity(&state, &mut browser, &session, check, &form.code).await {
        return match why {
            Reauth::Internal(e) => e.into_response(),
            other => fail(browser, other.status(), other.errors()).await,
        };
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
            let message = "Your homeserver could not be reached, so the reset was not allowed. Try again in a moment.";
            fail(browser, StatusCode::BAD_GATEWAY, ReauthErrors { form: Some(message.into()), ..Default::default() })
                .await
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
    let (needs_password, factor) = match asks(state, &browser, session).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let page = DeactivatePage {
        ctx: browser.context(state),
        needs_password,
        factor,
        errors: ReauthErrors::default(),
        confirm_error: None,
    };
    (browser.jar, render(&page)).into_response()
}

/// `POST /account/deactivate`: password and confirmation, then the account is deactivated here,
/// every session ended and the user deactivated in the homeserver (queued if it is down).
#[tracing::instrument(name = "http.pages.account.deactivate", skip_all)]
pub async fn deactivate_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToDeactivate, ReauthForm>,
) -> Response {
    if !state.config.account.account_deactivation_allowed {
        return PageError::new(StatusCode::FORBIDDEN, "Not allowed", "Accounts cannot be deleted on this server.")
            .into_response();
    }
    let fail = async |browser: Browser, status: StatusCode, errors: ReauthErrors, confirm_error: Option<&str>| {
        let (needs_password, factor) = match asks(&state, &browser, &session).await {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        };
        let page = DeactivatePage {
            ctx: browser.context(&state),
            needs_password,
            factor,
            errors,
            confirm_error: confirm_error.map(String::from),
        };
        (status, browser.jar, render(&page)).into_response()
    };
    if form.confirm.is_none() {
        return fail(browser, StatusCode::BAD_REQUEST, ReauthErrors::default(), Some("Tick this box to confirm."))
            .await;
    }
    let check = PasswordCheck::IfTheAccountHasOne(&form.password);
    if let Err(why) = confirm_identity(&state, &mut browser, &session, check, &form.code).await {
        return match why {
            Reauth::Internal(e) => e.into_response(),
            other => fail(browser, other.status(), other.errors(), None).await,
        };
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
