//! Request bodies over the limit: a 413 in the error shape of the endpoint that was asked —
//! `{"errcode": "M_TOO_LARGE"}` on Matrix routes, RFC 6749 JSON on OAuth routes, the admin API's
//! `{"errors": [...]}`, an error page elsewhere — instead of the limit layer's plain text.
//!
//! The body is not read; the server loop closes such a connection with a lingering close
//! (`server.rs`), so the client (or a proxy still sending the body) reads this answer.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{MatrixError, OAuthError};
use super::pages::error::PageError;

/// The largest request body any endpoint accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub async fn in_endpoint_shape(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json(&res) {
        return res;
    }
    let mut res = answer(&path);
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn is_json(res: &Response) -> bool {
    res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

const MESSAGE: &str = "The request body is too large";

fn answer(path: &str) -> Response {
    if path.starts_with("/_matrix/") {
        MatrixError::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", MESSAGE).into_response()
    } else if path.starts_with("/oauth2/") || path == "/authorize" {
        OAuthError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", MESSAGE).into_response()
    } else if path.starts_with("/api/admin/") {
        let body = serde_json::json!({ "errors": [{ "title": MESSAGE }] });
        (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
    } else {
        PageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too much data",
            "The form sent more data than this server accepts.",
        )
        .into_response()
    }
}
