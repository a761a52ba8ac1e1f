//! `/account/passkeys/*`: add (the WebAuthn answer posted by assets/passkey.js), rename and
//! remove the signed-in user's passkeys. The list and the "Add a passkey" form are on
//! `/account/mfa`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::mfa::{Failed, ToMfa, mfa_page, recheck};
use super::recheck::PasswordCheck;
use crate::http::AppState;
use crate::http::pages::error::PageError;
use crate::http::pages::extract::SignedIn;
use crate::http::pages::passkeys::{self, clean_name};
use crate::store::passkeys as passkey_store;

#[derive(Deserialize)]
pub struct PasskeyForm {
    #[serde(default)]
    id: String,
    #[serde(default, alias = "passkey-name")]
    name: String,
    #[serde(default)]
    credential: String,
    /// A TOTP or recovery code, for a user with a second factor not confirmed lately.
    #[serde(default)]
    code: String,
}

/// `POST /account/passkeys/add`: the authenticator's answer to the page's registration options.
#[tracing::instrument(name = "http.pages.account.passkeys.add", skip_all)]
pub async fn add_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToMfa, PasskeyForm>,
) -> Response {
    // The first factor needs nothing more; another one needs the one there is.
    if let Err((status, message)) = recheck(&state, &mut browser, &session, PasswordCheck::No, &form.code).await {
        let failed = Failed { status, form: "passkey", message: Some(message) };
        return mfa_page(&state, browser, &session, None, failed).await;
    }
    match passkeys::finish_registration(&state, &mut browser, &session.user, &form.credential, &form.name).await {
        Ok(_) => (browser.jar, Redirect::to("/account/mfa?notice=passkey_added")).into_response(),
        Err(passkeys::Refused::Internal(e)) => e.into_response(),
        Err(why) => {
            let failed = Failed { status: why.status(), form: "passkey", message: Some(why.message().into()) };
            mfa_page(&state, browser, &session, None, failed).await
        }
    }
}

/// `POST /account/passkeys/rename`.
#[tracing::instrument(name = "http.pages.account.passkeys.rename", skip_all)]
pub async fn rename_post(
    State(state): State<AppState>,
    SignedIn { browser, session, form, .. }: SignedIn<ToMfa, PasskeyForm>,
) -> Response {
    let (user_id, id, name) = (session.user.id.clone(), form.id.clone(), clean_name(&form.name));
    match state.store.write(move |c| passkey_store::rename(c, &user_id, &id, &name)).await {
        Ok(true) => (browser.jar, Redirect::to("/account/mfa?notice=passkey_renamed")).into_response(),
        Ok(false) => PageError::not_found("There is no such passkey.").into_response(),
        Err(e) => PageError::internal(e).into_response(),
    }
}

/// `POST /account/passkeys/remove`.
#[tracing::instrument(name = "http.pages.account.passkeys.remove", skip_all)]
pub async fn remove_post(
    State(state): State<AppState>,
    SignedIn { mut browser, session, form, .. }: SignedIn<ToMfa, PasskeyForm>,
) -> Response {
    if let Err((status, message)) = recheck(&state, &mut browser, &session, PasswordCheck::No, &form.code).await {
        let failed = Failed { status, form: "passkey", message: Some(message) };
        return mfa_page(&state, browser, &session, None, failed).await;
    }
    let (user_id, id) = (session.user.id.clone(), form.id.clone());
    match state.store.write(move |c| passkey_store::delete(c, &user_id, &id)).await {
        Ok(true) => {
            tracing::info!(user = %session.user.username, passkey = %form.id, "passkey removed by its owner");
            (browser.jar, Redirect::to("/account/mfa?notice=passkey_removed")).into_response()
        }
        Ok(false) => {
            let failed = Failed {
                status: StatusCode::NOT_FOUND,
                form: "passkey",
                message: Some("There is no such passkey.".into()),
            };
            mfa_page(&state, browser, &session, None, failed).await
        }
        Err(e) => PageError::internal(e).into_response(),
    }
}
