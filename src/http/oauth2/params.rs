//! Form parameters per RFC 6749: parameters must not repeat; an empty value counts as absent.
//! A malformed request is a [`ParamError`]; each endpoint's error enum wraps it.
//!
//! Parsing runs before the caller is authenticated, so its cost must not grow faster than the
//! body: one pass, a hash set for the repeat check, and a cap on the number of parameters (no
//! OAuth request needs more than a couple of dozen). Past the cap parsing stops at once.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use axum::body::Bytes;

use axum::http::StatusCode;

use crate::http::error::{ErrorCode, OAuthError};

/// The most parameters one request may carry (an authorization request uses about 15).
pub const MAX_PARAMS: usize = 64;

/// Lengths of parameters that are stored before anyone signed in (an authorization or device
/// grant), so one request cannot park kilobytes in the database.
pub const MAX_STATE_LENGTH: usize = 2048;
pub const MAX_NONCE_LENGTH: usize = 512;
pub const MAX_LOGIN_HINT_LENGTH: usize = 512;
pub const MAX_SCOPE_LENGTH: usize = 4096;
pub const MAX_PROMPT_LENGTH: usize = 64;
pub const MAX_REDIRECT_URI_LENGTH: usize = 2048;

/// A malformed request: always 400 `invalid_request`, kept in its wire form (status, code,
/// description) so callers read it like any answer.
#[derive(Debug)]
pub struct ParamError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: Option<String>,
}

fn invalid_request(description: String) -> ParamError {
    let code = ErrorCode::InvalidRequest;
    ParamError { status: StatusCode::BAD_REQUEST, error: code.as_str(), description: Some(description) }
}

impl ParamError {
    pub fn answer(self) -> OAuthError {
        OAuthError::bad_request(ErrorCode::InvalidRequest, self.description)
    }
}

#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(body: &[u8]) -> Result<Self, ParamError> {
        let mut out: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if out.len() >= MAX_PARAMS {
                return Err(invalid_request(format!("more than {MAX_PARAMS} parameters")));
            }
            match out.entry(k.into_owned()) {
                Entry::Occupied(seen) => {
                    let name: String = seen.key().chars().take(64).collect();
                    return Err(invalid_request(format!("parameter {name} is repeated")));
                }
                Entry::Vacant(slot) => {
                    slot.insert(v.into_owned());
                }
            }
        }
        Ok(Self(out))
    }

    pub fn from_query(query: Option<&str>) -> Result<Self, ParamError> {
        Self::parse(query.unwrap_or_default().as_bytes())
    }

    pub fn from_bytes(body: &Bytes) -> Result<Self, ParamError> {
        Self::parse(body)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `invalid_request` naming the first parameter longer than its limit.
    pub fn check_lengths(&self, limits: &[(&str, usize)]) -> Result<(), ParamError> {
        for (name, max) in limits {
            if self.0.get(*name).is_some_and(|v| v.len() > *max) {
                return Err(invalid_request(format!("{name} is longer than {max} bytes")));
            }
        }
        Ok(())
    }

    pub fn require(&self, name: &str) -> Result<&str, ParamError> {
        self.get(name).ok_or_else(|| invalid_request(format!("missing {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_caps() {
        let p = Params::parse(b"a=1&b=&c=3").unwrap();
        assert_eq!((p.get("a"), p.get("b"), p.get("c"), p.get("d")), (Some("1"), None, Some("3"), None));
        let e = Params::parse(b"a=1&b=2&a=3").unwrap_err();
        assert_eq!(e.description.as_deref(), Some("parameter a is repeated"));
        let many: String = (0..MAX_PARAMS).map(|i| format!("k{i}=v&")).collect();
        assert!(Params::parse(many.as_bytes()).is_ok());
        let e = Params::parse(format!("{many}one=more").as_bytes()).unwrap_err();
        assert_eq!(e.error, "invalid_request");
    }

    #[test]
    fn lengths_are_checked() {
        let p = Params::parse(format!("state={}&nonce=n", "s".repeat(MAX_STATE_LENGTH + 1)).as_bytes()).unwrap();
        assert!(p.check_lengths(&[("nonce", 1)]).is_ok());
        let e = p.check_lengths(&[("nonce", 1), ("state", MAX_STATE_LENGTH)]).unwrap_err();
        assert_eq!(e.description.as_deref(), Some("state is longer than 2048 bytes"));
    }

    #[test]
    fn a_worst_case_body_is_refused_in_linear_time() {
        // 256 KiB of distinct keys: quadratic before (about 50k² comparisons), now it stops at the cap.
        let body: String = (0..50_000).map(|i| format!("{i:x}&")).collect();
        let e = Params::parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.description.as_deref(), Some("more than 64 parameters"));
    }
}
