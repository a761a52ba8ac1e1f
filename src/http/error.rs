//! Error answers: RFC 6749 JSON on OAuth endpoints, `{errcode, error}` on Matrix endpoints.
//! Internal causes are logged, never sent.
//!
//! Each OAuth endpoint has its own error enum (`TokenError`, `RevokeError`, …) whose variants
//! say which answer each failure gets; the enum turns into an [`OAuthError`], the one renderer.
//! Library and store errors reach an enum only through an explicit `From` into its `Internal`
//! variant ([`internal_error_from!`]), so a 500 is always a deliberate choice.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The cause of an internal error, logged and never sent.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The `error` codes of RFC 6749 §4.1.2.1 / §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1, RFC 7591 §3.2.2,
/// RFC 8628 §3.5 and OpenID Connect Core §3.1.2.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
    InvalidToken,
    InsufficientScope,
    UnsupportedTokenType,
    InvalidRedirectUri,
    InvalidClientMetadata,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    LoginRequired,
    ConsentRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    RegistrationNotSupported,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::RegistrationNotSupported => "registration_not_supported",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How the answer is framed besides its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Token-style endpoints: `Cache-Control: no-store`, `Pragma: no-cache`, and a Basic challenge
    /// on a 401 `invalid_client` (RFC 6749 §5.2).
    Client,
    /// A protected resource (RFC 6750 §3): a Bearer challenge on a 401, no cache headers.
    Resource,
}

/// An OAuth error as it goes on the wire (RFC 6749 §5.2): the one renderer of every OAuth
/// endpoint's error enum.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: ErrorCode,
    pub description: Option<String>,
    retry_after_ms: Option<u64>,
    framing: Framing,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: ErrorCode, description: impl Into<String>) -> Self {
        Self { status, error, description: Some(description.into()), retry_after_ms: None, framing: Framing::Client }
    }
    /// 400 with `error` and, if there is one, a description.
    pub fn bad_request(error: ErrorCode, description: Option<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error, description, retry_after_ms: None, framing: Framing::Client }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, d)
    }
    /// 401 with a Basic challenge.
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidClient, d)
    }
    /// 429 `temporarily_unavailable` for a client over its rate limit (`Retry-After` in seconds).
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::TemporarilyUnavailable, "too many requests")
        }
    }
    /// An error of a protected resource such as userinfo (RFC 6750 §3).
    pub fn resource(status: StatusCode, error: ErrorCode, description: &'static str) -> Self {
        Self { framing: Framing::Resource, ..Self::new(status, error, description) }
    }
    /// Logs the cause with its chain and answers a bare 500 `server_error`.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        Self {
            status,
            error: ErrorCode::ServerError,
            description: None,
            retry_after_ms: None,
            framing: Framing::Client,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let code = self.error.as_str();
        let body = match &self.description {
            Some(d) => json!({ "error": code, "error_description": d }),
            None => json!({ "error": code }),
        };
        let mut res = (self.status, Json(body)).into_response();
        let h = res.headers_mut();
        match self.framing {
            Framing::Client => {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                if self.status == StatusCode::UNAUTHORIZED && self.error == ErrorCode::InvalidClient {
                    h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"appliance\""));
                }
            }
            Framing::Resource if self.status == StatusCode::UNAUTHORIZED => {
                let d = self.description.as_deref().unwrap_or_default();
                let challenge = format!("Bearer error=\"{code}\", error_description=\"{d}\"");
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Framing::Resource => {}
        }
        if let Some(ms) = self.retry_after_ms {
            h.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
        }
        res
    }
}

/// `From<E>` into the `Internal(BoxError)` variant of an endpoint's error enum, one explicit
/// impl per cause type: `internal_error_from!(TokenError: StoreError, IdTokenError);`.
macro_rules! internal_error_from {
    ($route:ty: $($cause:ty),+ $(,)?) => {
        $(
            impl From<$cause> for $route {
                fn from(e: $cause) -> Self {
                    Self::Internal(e.into())
                }
            }
        )+
    };
}
pub(crate) use internal_error_from;

/// `IntoResponse` for an endpoint's error enum through its `fn answer(self) -> OAuthError`.
macro_rules! respond_with_answer {
    ($($route:ty),+ $(,)?) => {
        $(
            impl axum::response::IntoResponse for $route {
                fn into_response(self) -> axum::response::Response {
                    self.answer().into_response()
                }
            }
        )+
    };
}
pub(crate) use respond_with_answer;

/// A Matrix client-server API error.
#[derive(Debug)]
pub struct MatrixError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub error: String,
    pub retry_after_ms: Option<u64>,
}

impl MatrixError {
    pub fn new(status: StatusCode, errcode: &'static str, error: impl Into<String>) -> Self {
        Self { status, errcode, error: error.into(), retry_after_ms: None }
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Internal server error")
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let mut body = json!({ "errcode": self.errcode, "error": self.error });
        if let Some(ms) = self.retry_after_ms {
            body["retry_after_ms"] = json!(ms);
        }
        let mut res = (self.status, Json(body)).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Checks an endpoint enum's table: each variant's status and code, as rendered.
#[cfg(test)]
pub(crate) fn assert_answers<E: std::fmt::Debug>(cases: Vec<(E, u16, &str)>, answer: impl Fn(E) -> OAuthError) {
    for (e, status, code) in cases {
        let label = format!("{e:?}");
        let a = answer(e);
        assert_eq!((a.status.as_u16(), a.error.as_str()), (status, code), "{label}");
        // A server error tells the client nothing more.
        assert_eq!(a.description.is_none(), code == "server_error", "{label}");
        assert_eq!(a.into_response().status().as_u16(), status, "{label}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn wire(e: OAuthError) -> (u16, Vec<(String, String)>, String) {
        let res = e.into_response();
        let status = res.status().as_u16();
        let headers = res.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const JSON: (&str, &str) = ("content-type", "application/json");
    const NO_STORE: [(&str, &str); 2] = [("cache-control", "no-store"), ("pragma", "no-cache")];

    #[tokio::test]
    async fn the_renderer_frames_each_kind_of_answer() {
        let [cc, pragma] = NO_STORE;
        let cases = [
            (
                OAuthError::invalid_request("missing token"),
                400,
                h(&[JSON, cc, pragma]),
                r#"{"error":"invalid_request","error_description":"missing token"}"#,
            ),
            (
                OAuthError::invalid_client("unknown client"),
                401,
                h(&[JSON, cc, pragma, ("www-authenticate", "Basic realm=\"appliance\"")]),
                r#"{"error":"invalid_client","error_description":"unknown client"}"#,
            ),
            (
                // Only a 401 invalid_client carries the Basic challenge.
                OAuthError::new(StatusCode::UNAUTHORIZED, ErrorCode::AccessDenied, "no"),
                401,
                h(&[JSON, cc, pragma]),
                r#"{"error":"access_denied","error_description":"no"}"#,
            ),
            (
                OAuthError::rate_limited(1500),
                429,
                h(&[JSON, cc, pragma, ("retry-after", "2")]),
                r#"{"error":"temporarily_unavailable","error_description":"too many requests"}"#,
            ),
            (
                OAuthError::resource(StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken, "unknown token"),
                401,
                h(&[JSON, ("www-authenticate", "Bearer error=\"invalid_token\", error_description=\"unknown token\"")]),
                r#"{"error":"invalid_token","error_description":"unknown token"}"#,
            ),
            (
                OAuthError::resource(StatusCode::FORBIDDEN, ErrorCode::InsufficientScope, "openid"),
                403,
                h(&[JSON]),
                r#"{"error":"insufficient_scope","error_description":"openid"}"#,
            ),
            (
                OAuthError::internal(&std::io::Error::other("disk on fire")),
                500,
                h(&[JSON, cc, pragma]),
                r#"{"error":"server_error"}"#,
            ),
        ];
        for (e, status, headers, body) in cases {
            assert_eq!(wire(e).await, (status, headers, body.to_string()));
        }
    }

    #[test]
    fn codes_are_their_rfc_names() {
        assert_eq!(ErrorCode::InvalidClientMetadata.as_str(), "invalid_client_metadata");
        assert_eq!(ErrorCode::AuthorizationPending.to_string(), "authorization_pending");
        assert_eq!(ErrorCode::SlowDown, "slow_down");
    }

    /// No catch-all: an OAuth or compat handler reaches a 500 only through an explicit `From`
    /// or `internal`, and none of them answers with an `anyhow::Error`.
    #[test]
    fn no_blanket_from_and_no_anyhow_in_oauth_handlers() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut files = vec![root.join("error.rs")];
        for dir in ["oauth2", "compat"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let generic_from = code.lines().any(|l| l.trim_start().starts_with("impl<") && l.contains("From<"));
            assert!(!generic_from, "{} has a generic From impl", file.display());
            if file.parent().is_some_and(|d| d.ends_with("oauth2")) {
                assert!(!code.contains("anyhow"), "{} uses anyhow", file.display());
            }
        }
    }
}
