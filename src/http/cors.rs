//! CORS for the APIs a browser app calls from its own origin (Element Web, element-admin, any web
//! client): discovery and webfinger, the OAuth 2.0 endpoints, the legacy Matrix login API and the
//! admin API. As MAS does: answers are readable from any origin and never with credentials —
//! these APIs take bearer tokens and client credentials, not cookies, so no origin can act with
//! someone else's authority. The HTML pages (sign-in, consent, account, `/authorize`) get no CORS
//! headers at all: only their own origin may read them.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use tower_http::cors::{Any, CorsLayer};

use super::AppState;

/// Methods a preflight allows: every method these APIs route (the admin API uses PUT and DELETE).
pub const ALLOWED_METHODS: [Method; 5] = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE];

/// Request headers a preflight allows: MAS's list (`Authorization`, `Accept`, `Accept-Language`,
/// `Content-Language`, `Content-Type`) and `X-Requested-With`, which the Matrix client-server spec
/// lists for its CORS answers.
pub const ALLOWED_HEADERS: [HeaderName; 6] = [
    header::AUTHORIZATION,
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_TYPE,
    HeaderName::from_static("x-requested-with"),
];

/// How long a browser may cache a preflight answer (MAS: one hour).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The layer for every API route a browser app calls.
pub fn layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(ALLOWED_METHODS)
        .allow_headers(ALLOWED_HEADERS)
        // Lets an app read the reason of a 401/403 (`error="invalid_token"`, `insufficient_scope`).
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(MAX_AGE)
}

/// `routes` with the CORS layer: preflights (`OPTIONS` with `Access-Control-Request-Method`) are
/// answered here, before any route's own checks, and every answer carries
/// `Access-Control-Allow-Origin: *`.
pub fn api(routes: Router<AppState>) -> Router<AppState> {
    routes.layer(layer())
}
