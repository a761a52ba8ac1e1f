//! Server-rendered pages (askama): login, consent, device link, error pages.

pub mod account;
pub mod consent;
pub mod context;
pub mod error;
pub mod link;
pub mod login;

use axum::Router;
use axum::routing::get;

use super::{AppState, compat};

/// Whether pages offer self-registration. The registration pages are not part of this build
/// yet, so `account.password_registration_enabled` has no effect (a warning says so at start).
pub fn registration_offered(_state: &AppState) -> bool {
    false
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(login::index))
        .route("/login", get(login::get).post(login::post))
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
        .route("/complete-compat-sso/{id}", get(compat::sso::confirm_get).post(compat::sso::confirm_post))
}
