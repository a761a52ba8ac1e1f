//! Builds the router of one listener from the resources it serves.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use super::{AppState, admin, assets, compat, cors, discovery, health, metrics, middleware, oauth2, pages, too_large};
use crate::config::Resource;

pub fn build(state: AppState, resources: &[Resource]) -> Router {
    let mut router = Router::new();
    for resource in resources {
        router = match resource {
            // APIs a browser app may call from another origin carry CORS; pages do not.
            Resource::Discovery => router.merge(cors::api(discovery::router())),
            Resource::Oauth => router
                .merge(cors::api(discovery::keys_router().merge(oauth2::api_router())))
                .merge(oauth2::authorize_router()),
            Resource::Human => router.merge(pages::router()),
            Resource::Compat => router.merge(cors::api(compat::api_router())).merge(compat::sso_router()),
            Resource::Assets => router.merge(assets::router()),
            Resource::Health => router.merge(health::router()),
            Resource::Prometheus => router.merge(metrics::router()),
            Resource::Adminapi => router.merge(cors::api(admin::router(&state))),
        };
    }
    router
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(too_large::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(too_large::in_endpoint_shape))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::security_headers))
        // Outside the page middleware, so that error pages it renders are in the request's language.
        .layer(axum::middleware::from_fn_with_state(
            state.config.branding.default_language.unwrap_or_default(),
            crate::i18n::negotiate_layer,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }))
        .with_state(state)
}

/// Unknown paths: Matrix clients get `M_UNRECOGNIZED`, browsers a page, everyone else plain text.
async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> axum::response::Response {
    if uri.path().starts_with("/_matrix/") {
        let body = serde_json::json!({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("text/html") {
        return pages::error::PageError::not_found("There is no page at this address.").into_response();
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}
