//! A user's second factors as operators see them (admin API, `manage`): what the user has, and
//! the reset that removes them all when the user lost their phone or key.

use super::users::UserError;
use crate::store::{Store, mfa as mfa_store, passkeys as passkey_store, users as user_store};

/// What second factors a user has (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factors {
    pub user_id: String,
    /// A confirmed authenticator app (TOTP).
    pub totp: bool,
    pub recovery_codes_left: usize,
    pub passkeys: usize,
}

impl Factors {
    /// Whether signing in asks this user for a second factor.
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

fn read(c: &rusqlite::Connection, user_id: &str) -> crate::store::StoreResult<Factors> {
    Ok(Factors {
        user_id: user_id.to_string(),
        totp: mfa_store::has_totp(c, user_id)?,
        recovery_codes_left: mfa_store::recovery_codes_left(c, user_id)?,
        passkeys: passkey_store::count(c, user_id)?,
    })
}

/// The second factors of the user `user_id`.
pub async fn of(store: &Store, user_id: &str) -> Result<Factors, UserError> {
    let id = user_id.to_string();
    let found = store
        .read(move |c| match user_store::by_id(c, &id)? {
            Some(_) => read(c, &id).map(Some),
            None => Ok(None),
        })
        .await?;
    found.ok_or_else(|| UserError::NotFound(user_id.into()))
}

/// Removes every second factor of the user (TOTP secret, recovery codes, passkeys): their next
/// sign-in is by password alone (or, under `account.mfa: required`, sets a factor up again).
/// Logged with who asked (`by`); returns what the user had.
pub async fn reset(store: &Store, user_id: &str, by: &str) -> Result<Factors, UserError> {
    let id = user_id.to_string();
    let before = store
        .write(move |c| {
            let Some(_) = user_store::by_id(c, &id)? else { return Ok(None) };
            let before = read(c, &id)?;
            mfa_store::delete_totp(c, &id)?;
            passkey_store::delete_all(c, &id)?;
            Ok(Some(before))
        })
        .await?
        .ok_or_else(|| UserError::NotFound(user_id.into()))?;
    tracing::warn!(
        user_id = %user_id,
        by = %by,
        totp = before.totp,
        recovery_codes_left = before.recovery_codes_left,
        passkeys = before.passkeys,
        "second factors reset"
    );
    Ok(before)
}
