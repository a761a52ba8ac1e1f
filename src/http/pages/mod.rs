//! Server-rendered pages (askama): login, consent, device link, error pages.

pub mod account;
pub mod consent;
pub mod context;
pub mod error;
pub mod extract;
pub mod link;
pub mod login;
pub mod mfa;
pub mod passkeys;
pub mod recover;
pub mod register;

use axum::Router;
use axum::routing::get;

use super::{AppState, compat};

/// Whether pages offer self-registration (`/register`, `prompt=create`, the link on `/login`).
/// When `account.password_registration_email_required` (MAS's default), the address is verified
/// with an emailed code before the account is created. Password registration also needs
/// `passwords.enabled`.
pub fn registration_offered(state: &AppState) -> bool {
    let account = &state.config.account;
    state.config.passwords.enabled && account.password_registration_enabled
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(login::index))
        .route("/login", get(login::get).post(login::post))
        .route("/login/mfa", get(mfa::get).post(mfa::post))
        .route("/account/mfa", get(account::mfa::get))
        .route("/account/mfa/totp", get(account::mfa::enrol_get).post(account::mfa::enrol_start))
        .route("/account/mfa/totp/confirm", axum::routing::post(account::mfa::confirm_post))
        .route("/account/mfa/disable", axum::routing::post(account::mfa::disable_post))
        .route("/account/mfa/recovery-codes", axum::routing::post(account::mfa::regenerate_post))
        .route("/account/passkeys/add", axum::routing::post(account::passkeys::add_post))
        .route("/account/passkeys/rename", axum::routing::post(account::passkeys::rename_post))
        .route("/account/passkeys/remove", axum::routing::post(account::passkeys::remove_post))
        .route("/account/confirm", get(account::recheck::get).post(account::recheck::post))
        .route("/account/confirm/passkey", axum::routing::post(account::recheck::passkey_post))
        .route("/login/passkey", axum::routing::post(passkeys::login_post))
        .route("/login/mfa/passkey", axum::routing::post(passkeys::second_step_post))
        .route("/register", get(register::get).post(register::post))
        .route("/register/verify/{id}", get(register::verify_get).post(register::verify_post))
        .route("/register/resend/{id}", axum::routing::post(register::resend_post))
        .route("/logout", axum::routing::post(login::logout))
        .route("/consent/{grant_id}", get(consent::get).post(consent::post))
        .route("/link", get(link::get).post(link::post))
        .route("/device/{grant_id}", get(link::consent_get).post(link::consent_post))
        .route("/account", get(account::get))
        .route("/account/", get(account::get))
        .route("/account/profile", axum::routing::post(account::profile_post))
        .route("/account/password", axum::routing::post(account::password_post))
        .route("/account/sessions/end", axum::routing::post(account::end_post))
        .route("/account/cross-signing-reset", axum::routing::post(account::cross_signing_reset_post))
        .route("/account/deactivate", axum::routing::post(account::deactivate_post))
        .route("/account/emails", get(account::emails::get))
        .route("/account/emails/add", axum::routing::post(account::emails::add_post))
        .route("/account/emails/verify/{id}", get(account::emails::verify_get).post(account::emails::verify_post))
        .route("/account/emails/resend/{id}", axum::routing::post(account::emails::resend_post))
        .route("/account/emails/remove", axum::routing::post(account::emails::remove_post))
        .route("/recover", get(recover::get).post(recover::post))
        .route("/recover/{ticket}", get(recover::ticket_get).post(recover::ticket_post))
        .route("/complete-compat-sso/{id}", get(compat::sso::confirm_get).post(compat::sso::confirm_post))
        .merge(super::upstream::router())
}
