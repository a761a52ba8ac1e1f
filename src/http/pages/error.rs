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

/// The response carries what the page says; the page middleware (on every router) renders it
/// with the service's branding, so an error never depends on the failing handler's state. The
/// body here is only the plain fallback for when that rendering fails.
impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let fallback = format!(
            "<!doctype html><html lang=\"en\"><title>{}</title><h1>{}</h1><p>{}</p></html>",
            html_escape(&self.title),
            html_escape(&self.title),
            html_escape(&self.message)
        );
        let mut res = (self.status, Html(fallback)).into_response();
        res.extensions_mut().insert(ErrorPageContent {
            title: self.title,
            message: self.message,
            details: self.details,
        });
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
