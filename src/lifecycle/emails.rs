//! Adding and removing a user's email addresses by an administrator. The homeserver gets the
//! user's whole address list again (provisioning), as when the user changes it on the account page.

use super::Lifecycle;
use crate::store::StoreError;
use crate::store::users::{self as user_store, UserEmail};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("email {0:?} is not valid")]
    Invalid(String),
    #[error("user email {0:?} already in use")]
    InUse(String),
    #[error("user ID {0} not found")]
    UserNotFound(String),
    #[error("user email ID {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds `email` to the user. Refused when another account (or this one) already has it.
pub async fn add(lc: &Lifecycle, user_id: &str, email: &str) -> Result<UserEmail, EmailError> {
    let email = email.trim().to_string();
    if !crate::email::valid_address(&email) {
        return Err(EmailError::Invalid(email));
    }
    let (id, address, now) = (user_id.to_string(), email.clone(), lc.clock.now());
    let added = lc
        .store
        .write(move |c| {
            if user_store::by_id(c, &id)?.is_none() {
                return Ok(Err(EmailError::UserNotFound(id)));
            }
            if user_store::by_email(c, &address)?.is_some() {
                return Ok(Err(EmailError::InUse(address)));
            }
            match user_store::insert_email(c, &id, &address, now) {
                Ok(row) => Ok(Ok(row)),
                Err(StoreError::Conflict(_)) => Ok(Err(EmailError::InUse(address))),
                Err(e) => Err(e),
            }
        })
        .await??;
    lc.provision_user(&added.user_id).await;
    Ok(added)
}

/// Removes the address with this id from its user.
pub async fn remove(lc: &Lifecycle, email_id: &str) -> Result<UserEmail, EmailError> {
    let id = email_id.to_string();
    let removed = lc
        .store
        .write(move |c| {
            let Some(row) = user_store::email_by_id(c, &id)? else { return Ok(None) };
            Ok(user_store::delete_email(c, &id)?.then_some(row))
        })
        .await?
        .ok_or_else(|| EmailError::NotFound(email_id.to_string()))?;
    lc.provision_user(&removed.user_id).await;
    Ok(removed)
}
