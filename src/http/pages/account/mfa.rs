//! `/account/mfa`: the user's second factors: enrol an authenticator app (QR code and text
//! secret, confirmed with a first code, then ten recovery codes shown once), see how many
//! recovery codes are left, regenerate them or turn the factor off after re-authentication.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::recheck::{FactorAsk, PasswordCheck, confirm_identity, factor_ask};
use super::{Reauth, has_password, signed_in};
use crate::http::AppState;
use crate::http::pages::context::{Browser, NoticeQuery, PageContext, Session};
use crate::http::pages::error::{PageError, render};
use crate::http::pages::extract::{ReturnTo, SignedIn};
use crate::http::pages::mfa as factors;
use crate::http::pages::passkeys;
use crate::store::mfa as mfa_store;

const HERE: &str = "/account/mfa";
const CONFIRM: &str = "/account/mfa/totp/confirm";

/// Signed-out posts come back to the factors page.
pub struct ToMfa;

impl ReturnTo for ToMfa {
    async fn url(_: &mut axum::http::request::Parts) -> String {
        HERE.into()
    }
}

#[derive(Template)]
#[template(path = "pages/account_mfa.html")]
struct MfaPage {
    ctx: PageContext,
    enrolled: bool,
    codes_left: usize,
    needs_password: bool,
    /// Whether changes here need the second factor again (and how it can be given).
    factor: FactorAsk,
    notice: Option<&'static str>,
    /// Which form failed ("totp", "disable", "regenerate" or "passkey") and why.
    failed: &'static str,
    error: Option<String>,
    passkeys: Vec<passkeys::PasskeyView>,
    /// The options of "Add a passkey" (JSON), when passkeys can be offered.
    register_options: Option<String>,
    passkey_js: String,
}

/// A form of the page that failed: the status to answer, which form, and why.
pub(crate) struct Failed {
    pub status: StatusCode,
    pub form: &'static str,
    pub message: Option<String>,
}

impl Failed {
    fn none() -> Self {
        Self { status: StatusCode::OK, form: "", message: None }
    }
}

fn notice_text(n: Option<&str>) -> Option<&'static str> {
    match n? {
        "disabled" => Some("Two-step verification is turned off."),
        "passkey_added" => Some("The passkey was added."),
        "passkey_renamed" => Some("The passkey was renamed."),
        "passkey_removed" => Some("The passkey was removed."),
        _ => None,
    }
}

async fn status(state: &AppState, user_id: &str) -> Result<(bool, usize), PageError> {
    let id = user_id.to_string();
    state
        .store
        .read(move |c| Ok((mfa_store::has_totp(c, &id)?, mfa_store::recovery_codes_left(c, &id)?)))
        .await
        .map_err(PageError::internal)
}

pub(crate) async fn mfa_page(
    state: &AppState,
    mut browser: Browser,
    session: &Session,
    notice: Option<&'static str>,
    failed: Failed,
) -> Response {
    let ((enrolled, codes_left), needs_password, list) = match tokio::try_join!(
        status(state, &session.user.id),
        has_password(state, &session.user.id),
        passkeys::list(state, &session.user.id)
    ) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let factor = match factor_ask(state, &browser, session).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    // Adding a passkey when a factor exists needs that factor first (confirmed on
    // /account/confirm), before the authenticator makes a credential.
    let register_options = if factor.needed {
        None
    } else {
        match passkeys::registration_options(state, &mut browser, &session.user).await {
            Ok(o) => o,
            Err(e) => return e.into_response(),
        }
    };
    let page = MfaPage {
        ctx: browser.context(state),
        enrolled,
        codes_left,
        needs_password,
        factor,
        notice,
        failed: failed.form,
        error: failed.message,
        passkeys: list,
        register_options,
        passkey_js: state.assets.path("passkey.js"),
    };
    (failed.status, browser.jar, render(&page)).into_response()
}

pub async fn get(State(state): State<AppState>, browser: Browser, Query(q): Query<NoticeQuery>) -> Response {
    let session = match signed_in(&browser, HERE) {
        Ok(s) => s,
        Err(r) => return (browser.jar, *r).into_response(),
    };
    mfa_page(&state, browser, &session, notice_text(q.notice.as_deref()), Failed::none()).await
}

#[derive(Deserialize)]
pub struct MfaForm {
    #[serde(default, alias = "regenerate-password", alias = "disable-password")]
    password: String,
    #[serde(default, alias = "regenerate-code", alias = "disable-code")]
    code: String,
}

/// `POST /account/mfa/totp`: a new secret, waiting for its first code.
pub async fn enrol_start(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToMfa, MfaForm>,
) -> Response {
    // The first factor needs nothing more; another one needs the one there is (a passkey).
    if let Err((status, message)) = recheck(&state, &mut browser, &session, PasswordCheck::No, &form.code).await {
        let failed = Failed { status, form: "totp", message: Some(message) };
        return mfa_page(&state, browser, &session, None, failed).await;
    }
    let secret = state.encrypter.encrypt(&factors::new_secret(state.rng.as_ref()));
    let (id, now) = (session.user.id.clone(), state.now());
    match state.store.write(move |c| mfa_store::start_totp(c, &id, &secret, now)).await {
        Ok(true) => (browser.jar, Redirect::to("/account/mfa/totp")).into_response(),
        Ok(false) => (browser.jar, Redirect::to(HERE)).into_response(),
        Err(e) => PageError::internal(e).into_response(),
    }
}

/// The secret waiting for its first code, decrypted.
async fn pending_secret(state: &AppState, user_id: &str) -> Result<Option<Vec<u8>>, PageError> {
    let id = user_id.to_string();
    let t = state.store.read(move |c| mfa_store::totp(c, &id)).await.map_err(PageError::internal)?;
    match t.filter(|t| t.confirmed_at.is_none()) {
        Some(t) => Ok(Some(state.encrypter.decrypt(&t.secret).map_err(PageError::internal)?)),
        None => Ok(None),
    }
}

pub async fn enrol_get(State(state): State<AppState>, browser: Browser) -> Response {
    let session = match signed_in(&browser, HERE) {
        Ok(s) => s,
        Err(r) => return (browser.jar, *r).into_response(),
    };
    match pending_secret(&state, &session.user.id).await {
        Ok(Some(secret)) => factors::enrol_page(&state, browser, &session.user, &secret, None, CONFIRM),
        Ok(None) => (browser.jar, Redirect::to(HERE)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /account/mfa/totp/confirm`: the first code turns the factor on; the recovery codes are
/// shown once, in this response.
#[tracing::instrument(name = "http.pages.account.mfa.confirm", skip_all)]
pub async fn confirm_post(
    State(state): State<AppState>,
    SignedIn { browser, session, form, .. }: SignedIn<ToMfa, MfaForm>,
) -> Response {
    let secret = match pending_secret(&state, &session.user.id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to(HERE).into_response(),
        Err(e) => return e.into_response(),
    };
    if state.limiters.login_per_account.check(&session.user.username).is_err() {
        return factors::enrol_page(
            &state,
            browser,
            &session.user,
            &secret,
            Some("Too many attempts. Wait a minute and try again."),
            CONFIRM,
        );
    }
    match factors::confirm_enrolment(&state, &session.user, &secret, &form.code).await {
        Ok(Some(codes)) => {
            let page = factors::CodesPage { ctx: browser.context(&state), codes, first: true, next: HERE.into() };
            (browser.jar, render(&page)).into_response()
        }
        Ok(None) => {
            factors::enrol_page(&state, browser, &session.user, &secret, Some(factors::WRONG_FIRST_CODE), CONFIRM)
        }
        Err(e) => e.into_response(),
    }
}

/// `confirm_identity` for the forms of this page: the status and message of a refusal.
pub(crate) async fn recheck(
    state: &AppState,
    browser: &mut Browser,
    session: &Session,
    password: PasswordCheck<'_>,
    code: &str,
) -> Result<(), (StatusCode, String)> {
    confirm_identity(state, browser, session, password, code).await.map_err(|why| match why {
        Reauth::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.".to_string()),
        why => (why.status(), why.message().to_string()),
    })
}

/// `POST /account/mfa/disable`: after re-authentication, the factor and its recovery codes go.
#[tracing::instrument(name = "http.pages.account.mfa.disable", skip_all)]
pub async fn disable_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToMfa, MfaForm>,
) -> Response {
    let password = PasswordCheck::IfTheAccountHasOne(&form.password);
    if let Err((status, message)) = recheck(&state, &mut browser, &session, password, &form.code).await {
        let failed = Failed { status, form: "disable", message: Some(message) };
        return mfa_page(&state, browser, &session, None, failed).await;
    }
    let id = session.user.id.clone();
    match state.store.write(move |c| mfa_store::delete_totp(c, &id)).await {
        Ok(_) => {
            tracing::info!(user = %session.user.username, "second factor turned off by its owner");
            (browser.jar, Redirect::to("/account/mfa?notice=disabled")).into_response()
        }
        Err(e) => PageError::internal(e).into_response(),
    }
}

/// `POST /account/mfa/recovery-codes`: after re-authentication, ten new codes replace the old.
#[tracing::instrument(name = "http.pages.account.mfa.recovery_codes", skip_all)]
pub async fn regenerate_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToMfa, MfaForm>,
) -> Response {
    let password = PasswordCheck::IfTheAccountHasOne(&form.password);
    if let Err((status, message)) = recheck(&state, &mut browser, &session, password, &form.code).await {
        let failed = Failed { status, form: "regenerate", message: Some(message) };
        return mfa_page(&state, browser, &session, None, failed).await;
    }
    let (codes, hashes) = factors::new_recovery_codes(state.rng.as_ref());
    let (id, now) = (session.user.id.clone(), state.now());
    match state.store.write(move |c| mfa_store::replace_recovery_codes(c, &id, &hashes, now)).await {
        Ok(()) => {
            tracing::info!(user = %session.user.username, "recovery codes regenerated");
            let page = factors::CodesPage { ctx: browser.context(&state), codes, first: false, next: HERE.into() };
            (browser.jar, render(&page)).into_response()
        }
        Err(e) => PageError::internal(e).into_response(),
    }
}
