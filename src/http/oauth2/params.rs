//! Form parameters per RFC 6749: parameters must not repeat; an empty value counts as absent.

use axum::body::Bytes;

use crate::http::error::OAuthError;

#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(out))
    }

    pub fn from_query(query: Option<&str>) -> Result<Self, OAuthError> {
        Self::parse(query.unwrap_or_default().as_bytes())
    }

    pub fn from_bytes(body: &Bytes) -> Result<Self, OAuthError> {
        Self::parse(body)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("missing {name}")))
    }
}
