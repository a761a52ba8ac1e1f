//! The Matrix client-server legacy login API, which the reverse proxy sends here:
//! `/_matrix/client/{v}/login`, `/logout`, `/logout/all`, `/refresh`, `/login/sso/redirect`.

mod login;
mod logout;
mod refresh;
pub mod sso;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};

use super::AppState;

/// The API a legacy client calls (from a browser app too: see `http::cors`).
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/{version}/login", get(login::flows).post(login::post))
        .route("/_matrix/client/{version}/logout", post(logout::logout))
        .route("/_matrix/client/{version}/logout/all", post(logout::logout_all))
        .route("/_matrix/client/{version}/refresh", post(refresh::post))
}

/// The legacy SSO redirect, which the user's browser navigates to (no CORS: it leads to pages).
pub fn sso_router() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/{version}/login/sso/redirect", get(sso::redirect))
        .route("/_matrix/client/{version}/login/sso/redirect/", get(sso::redirect))
        .route("/_matrix/client/{version}/login/sso/redirect/{idp}", get(sso::redirect_idp))
}

/// The access token of a Matrix request: `Authorization: Bearer` or `?access_token=`.
pub fn access_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}
