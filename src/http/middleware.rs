//! Security headers on every response, branded error pages, and a metrics count of response codes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::pages::context::page_context;
use super::pages::error::ErrorPageContent;

/// The CSP for HTML pages: no inline script or style; forms post only to us.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The CSP for pages whose forms end an authorization: their POST answers with a redirect to the
/// client's redirect URI (any origin, or an app's own scheme like `io.element:/callback`), and
/// browsers apply `form-action` to every redirect after a form submission.
pub const FLOW_PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Pages with a form that may lead back to a client: sign-in, sign-up, consent, the form_post
/// response, and the legacy SSO confirmation.
fn is_flow_page(path: &str) -> bool {
    path == "/login"
        || path == "/authorize"
        || path.starts_with("/register")
        || path.starts_with("/consent/")
        || path.starts_with("/complete-compat-sso/")
}

pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let flow_page = is_flow_page(req.uri().path());
    let mut res = next.run(req).await;
    if let Some(content) = res.extensions_mut().remove::<ErrorPageContent>() {
        // Error pages carry the service's name, logo and links like every other page.
        if let Some(html) = content.render(page_context(&state, String::new(), None)) {
            *res.body_mut() = Body::from(html);
            res.headers_mut().remove(header::CONTENT_LENGTH);
        }
    }
    state.metrics.responses.get_or_create(&super::metrics::StatusLabels { status: res.status().as_u16() }).inc();
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let is_html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            let csp = if flow_page { FLOW_PAGE_CSP } else { PAGE_CSP };
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
        }
        h.insert(
            "permissions-policy",
            HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
        );
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    if state.config.http.is_https() {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    res
}
