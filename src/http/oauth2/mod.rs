//! The OAuth 2.0 / OpenID Connect endpoints.

pub mod authorize;
pub mod client_auth;
pub mod device;
pub mod id_token;
pub mod introspect;
pub mod jwks_uri;
pub mod params;
pub mod registration;
pub mod revoke;
pub mod token;
pub mod userinfo;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;

/// The endpoints a client calls directly (from a browser app too: see `http::cors`).
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/token", post(token::post))
        .route("/oauth2/introspect", post(introspect::post))
        .route("/oauth2/revoke", post(revoke::post))
        .route("/oauth2/userinfo", get(userinfo::handler).post(userinfo::handler))
        .route("/oauth2/device", post(device::post))
        .route("/oauth2/registration", post(registration::post))
}

/// The authorization endpoint, which the user's browser navigates to (no CORS: it leads to pages).
pub fn authorize_router() -> Router<AppState> {
    Router::new().route("/authorize", get(authorize::get))
}
