//! Request bodies over the limit: a 413 in the error shape of the endpoint that was asked —
//! `{"errcode": "M_TOO_LARGE"}` on Matrix routes, RFC 6749 JSON on OAuth routes, the admin API's
//! `{"errors": [...]}`, an error page elsewhere — instead of the limit layer's plain text.
//!
//! The body is not read; the server loop closes such a connection with a lingering close
//! (`server.rs`), so the client (or a proxy still sending the body) reads this answer.
//!
//! The same goes for axum's own refusals of a body it cannot extract (a form missing a field, a
//! wrong content type, JSON that does not parse): they are plain text, so they are answered in
//! the endpoint's error shape too, with the same status.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ErrorCode, MatrixError, OAuthError};
use super::pages::error::PageError;

/// The largest request body any endpoint accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub async fn in_endpoint_shape(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&res) {
        let mut res = answer(&path);
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    if is_extractor_rejection(&res) {
        let status = res.status();
        let text = axum::body::to_bytes(res.into_body(), 4096).await.unwrap_or_default();
        return rejection(&path, status, &String::from_utf8_lossy(&text));
    }
    res
}

fn is_json(res: &Response) -> bool {
    res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// A refusal by one of axum's extractors (`Form`, `Json`, `Query`, path parameters): plain text
/// with 400, 415 or 422. The handlers' own errors are JSON or pages and pass untouched.
fn is_extractor_rejection(res: &Response) -> bool {
    matches!(res.status().as_u16(), 400 | 415 | 422)
        && res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
}

fn rejection(path: &str, status: StatusCode, text: &str) -> Response {
    if path.starts_with("/_matrix/") {
        let errcode = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE { "M_NOT_JSON" } else { "M_BAD_JSON" };
        MatrixError::new(status, errcode, text).into_response()
    } else if path.starts_with("/oauth2/") || path == "/authorize" {
        OAuthError::new(status, ErrorCode::InvalidRequest, text).into_response()
    } else if path.starts_with("/api/admin/") {
        let body = serde_json::json!({ "errors": [{ "title": text }] });
        (status, axum::Json(body)).into_response()
    } else {
        PageError::new(status, "Incomplete form", "The form was incomplete or malformed. Go back and try again.")
            .into_response()
    }
}

const MESSAGE: &str = "The request body is too large";

fn answer(path: &str) -> Response {
    if path.starts_with("/_matrix/") {
        MatrixError::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", MESSAGE).into_response()
    } else if path.starts_with("/oauth2/") || path == "/authorize" {
        OAuthError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::InvalidRequest, MESSAGE).into_response()
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
