//! Registration tokens (invite codes) as an administrator manages them: issue, change, revoke.
//! Using a token at registration is `registration::register`'s.

use super::registration::new_token;
use crate::clock::Clock;
use crate::store::registration_tokens::{self as token_store, RegistrationToken};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("a registration token {0:?} already exists")]
    Taken(String),
    #[error("registration token with ID {0} not found")]
    NotFound(String),
    #[error("registration token with ID {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("registration token with ID {0} is not revoked")]
    NotRevoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a chosen token text cannot be used, if it cannot.
pub fn check_text(token: &str) -> Result<(), TokenError> {
    if token.is_empty() || token.len() > 255 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Invalid("the token must be 1 to 255 printable ASCII characters without spaces"));
    }
    Ok(())
}

fn check_limit(usage_limit: Option<u32>) -> Result<(), TokenError> {
    if usage_limit == Some(0) {
        return Err(TokenError::Invalid("the usage limit must be at least 1"));
    }
    Ok(())
}

/// Issues a token: `token` as given (else 20 random letters and digits), `usage_limit` accounts
/// at most (`None`: any number), valid until `expires_at` (`None`: forever).
pub async fn create(
    store: &Store,
    clock: &dyn Clock,
    rng: &dyn crate::rng::Rng,
    token: Option<String>,
    usage_limit: Option<u32>,
    expires_at: Option<i64>,
) -> Result<RegistrationToken, TokenError> {
    if let Some(t) = &token {
        check_text(t)?;
    }
    check_limit(usage_limit)?;
    let now = clock.now();
    let mut t = new_token(token, usage_limit, None, now, rng);
    t.expires_at = expires_at;
    let row = t.clone();
    match store.write(move |c| token_store::insert(c, &row)).await {
        Ok(()) => Ok(t),
        Err(StoreError::Conflict(_)) => Err(TokenError::Taken(t.token)),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(store: &Store, id: &str) -> Result<RegistrationToken, TokenError> {
    let key = id.to_string();
    store.read(move |c| token_store::by_id(c, &key)).await?.ok_or_else(|| TokenError::NotFound(id.to_string()))
}

/// Changes a token: each `Some` replaces the value (`Some(None)` removes the limit or expiry).
pub async fn update(
    store: &Store,
    id: &str,
    expires_at: Option<Option<i64>>,
    usage_limit: Option<Option<u32>>,
) -> Result<RegistrationToken, TokenError> {
    check_limit(usage_limit.flatten())?;
    let key = id.to_string();
    let found = store
        .write(move |c| {
            if token_store::by_id(c, &key)?.is_none() {
                return Ok(None);
            }
            if let Some(e) = expires_at {
                token_store::set_expiry(c, &key, e)?;
            }
            if let Some(l) = usage_limit {
                token_store::set_usage_limit(c, &key, l)?;
            }
            token_store::by_id(c, &key)
        })
        .await?;
    found.ok_or_else(|| TokenError::NotFound(id.to_string()))
}

/// Revokes a token: it creates no more accounts.
pub async fn revoke(store: &Store, clock: &dyn Clock, id: &str) -> Result<RegistrationToken, TokenError> {
    set_revoked(store, id, Some(clock.now())).await
}

/// Makes a revoked token usable again.
pub async fn unrevoke(store: &Store, id: &str) -> Result<RegistrationToken, TokenError> {
    set_revoked(store, id, None).await
}

async fn set_revoked(store: &Store, id: &str, at: Option<i64>) -> Result<RegistrationToken, TokenError> {
    let key = id.to_string();
    store
        .write(move |c| {
            let Some(t) = token_store::by_id(c, &key)? else { return Ok(Err(TokenError::NotFound(key))) };
            match (t.revoked_at, at) {
                (Some(_), Some(_)) => return Ok(Err(TokenError::AlreadyRevoked(key))),
                (None, None) => return Ok(Err(TokenError::NotRevoked(key))),
                _ => {}
            }
            token_store::set_revoked(c, &key, at)?;
            Ok(Ok(RegistrationToken { revoked_at: at, ..t }))
        })
        .await?
}
