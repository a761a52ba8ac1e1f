//! HTML error pages. "Login required" is a redirect, not an error.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::context::PageContext;

#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub details: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/error.html")]
pub struct ErrorPage {
    pub ctx: PageContext,
    pub title: String,
    pub message: String,
    pub details: Option<String>,
    pub back_url: Option<String>,
}

impl PageError {
    pub fn new(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        Self { status, title: title.into(), message: message.into(), details: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Something is wrong with this request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", message)
    }
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }
    /// Logs the cause; the page says only that something went wrong.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error on a page");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again in a moment.")
    }
}

impl<E: Into<anyhow::Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError::internal(format!("{:#}", e.into()))
    }
}

/// What an error page says, kept on its response so the page middleware can render it again with
/// the service's branding (`PageError` itself has no access to the app state).
#[derive(Clone, Debug)]
pub struct ErrorPageContent {
    title: String,
    message: String,
    details: Option<String>,
}

impl ErrorPageContent {
    /// The page with `ctx` (the service's name, logo, links), or `None` if it cannot be rendered.
    pub fn render(self, ctx: PageContext) -> Option<String> {
        let page = ErrorPage { ctx, title: self.title, message: self.message, details: self.details, back_url: None };
        page.render().ok()
    }
}

/// Rendered with a minimal context, so an error page never depends on the failing request's
/// state; the page middleware then re-renders it with the branding (see `ErrorPageContent`).
impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let content = ErrorPageContent {
            title: self.title.clone(),
            message: self.message.clone(),
            details: self.details.clone(),
        };
        let ctx = PageContext {
            service_name: "Account".into(),
            css_url: "/assets/app.css".into(),
            js_url: "/assets/app.js".into(),
            logo_url: "/assets/logo.svg".into(),
            favicon_url: "/assets/favicon.svg".into(),
            csrf_token: String::new(),
            user: None,
            tos_uri: None,
            policy_uri: None,
            imprint: None,
            server_name: String::new(),
        };
        let page = ErrorPage {
            ctx,
            title: self.title.clone(),
            message: self.message.clone(),
            details: self.details,
            back_url: None,
        };
        let mut res = match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => {
                (self.status, Html(format!("<!doctype html><title>Error</title><p>{}</p>", html_escape(&self.message))))
                    .into_response()
            }
        };
        res.extensions_mut().insert(content);
        res
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders a template into a response (500 page on a rendering failure).
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError::internal(e).into_response(),
    }
}
