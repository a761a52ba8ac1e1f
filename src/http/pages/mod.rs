//! Server-rendered pages (askama): login, consent, device link, error pages.

pub mod consent;
pub mod context;
pub mod error;
pub mod link;
pub mod login;

use axum::Router;
use axum::routing::get;

use super::{AppState, compat};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(login::index))
        .route("/login", get(login::get).post(login::post))
        .route("/logout", axum::routing::post(login::logout))
        .route("/consent/{grant_id}", get(consent::get).post(consent::post))
        .route("/link", get(link::get).post(link::post))
        .route("/device/{grant_id}", get(link::consent_get).post(link::consent_post))
        .route("/complete-compat-sso/{id}", get(compat::sso::confirm_get).post(compat::sso::confirm_post))
}
