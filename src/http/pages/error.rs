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

/// Rendered with a minimal context: error pages must not depend on the failing request's state.
impl IntoResponse for PageError {
    fn into_response(self) -> Response {
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
        match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => {
                (self.status, Html(format!("<!doctype html><title>Error</title><p>{}</p>", html_escape(&self.message))))
                    .into_response()
            }
        }
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
