//! ID tokens (OpenID Connect Core §2) signed with the client's chosen algorithm (RS256 by default).

use jwt_simple::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::b64url;
use crate::http::AppState;
use crate::model::Client;

#[derive(Serialize, Deserialize)]
struct IdClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    c_hash: Option<String>,
}

/// Left half of the SHA-256 of `value`, base64url (at_hash / c_hash for *256 algorithms).
fn half_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    b64url(&digest[..16])
}

pub struct IdTokenInput<'a> {
    pub client: &'a Client,
    pub subject: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: Option<i64>,
    pub access_token: Option<&'a str>,
    pub code: Option<&'a str>,
}

/// Why an ID token could not be signed: a server fault, never the client's.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("no signing key for {0}")]
    NoKey(String),
    #[error("cannot sign the ID token: {0:#}")]
    Sign(jwt_simple::Error),
}

pub fn sign(state: &AppState, input: IdTokenInput<'_>) -> Result<String, IdTokenError> {
    let alg = input.client.metadata.id_token_signed_response_alg.as_deref().unwrap_or("RS256");
    let key = state
        .keys
        .for_alg(alg)
        .or_else(|| state.keys.for_alg("RS256"))
        .ok_or_else(|| IdTokenError::NoKey(alg.to_string()))?;
    let now = state.now();
    let custom = IdClaims {
        auth_time: input.auth_time,
        at_hash: input.access_token.map(half_hash),
        c_hash: input.code.map(half_hash),
    };
    let mut claims = Claims::with_custom_claims(custom, Duration::from_hours(1))
        .with_issuer(state.config.http.issuer().as_str())
        .with_subject(input.subject)
        .with_audience(&input.client.id);
    claims.issued_at = Some(UnixTimeStamp::from_secs(now as u64));
    claims.invalid_before = None;
    claims.expires_at = Some(UnixTimeStamp::from_secs((now + 3600) as u64));
    if let Some(nonce) = input.nonce {
        claims = claims.with_nonce(nonce);
    }
    key.sign(claims).map_err(IdTokenError::Sign)
}
