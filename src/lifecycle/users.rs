//! Creating users and changing their state (the homeserver side arrives with provisioning).

use crate::clock::Clock;
use crate::crypto::password::{PasswordError, PasswordManager};
use crate::model::User;
use crate::model::user::check_localpart;
use crate::store::{Store, StoreError, users as user_store};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid username: {0}")]
    InvalidUsername(&'static str),
    #[error("the username is already taken")]
    Taken,
    #[error("no such user: {0}")]
    NotFound(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for UserError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict("user") => UserError::Taken,
            other => UserError::Store(other),
        }
    }
}

pub struct NewUser {
    pub username: String,
    pub password: Option<String>,
    pub emails: Vec<String>,
    pub display_name: Option<String>,
    pub admin: bool,
}

pub async fn register(
    store: &Store,
    passwords: &PasswordManager,
    clock: &dyn Clock,
    new: NewUser,
) -> Result<User, UserError> {
    check_localpart(&new.username).map_err(UserError::InvalidUsername)?;
    let hash = match new.password {
        Some(p) => Some(passwords.hash(p).await?),
        None => None,
    };
    let now = clock.now();
    let user = User {
        id: ulid::Ulid::new().to_string(),
        username: new.username,
        display_name: new.display_name,
        created_at: now,
        locked_at: None,
        deactivated_at: None,
        can_request_admin: new.admin,
    };
    let row = user.clone();
    let emails = new.emails;
    store
        .write(move |c| {
            user_store::insert(c, &row)?;
            if let Some((version, hash)) = &hash {
                user_store::add_password(c, &row.id, hash, *version, None, now)?;
            }
            for e in &emails {
                user_store::add_email(c, &row.id, e, now)?;
            }
            Ok(())
        })
        .await?;
    Ok(user)
}

pub async fn find(store: &Store, username: &str) -> Result<User, UserError> {
    let name = username.to_string();
    store.read(move |c| user_store::by_username(c, &name)).await?.ok_or_else(|| UserError::NotFound(username.into()))
}

pub async fn set_password(
    store: &Store,
    passwords: &PasswordManager,
    clock: &dyn Clock,
    username: &str,
    password: String,
) -> Result<(), UserError> {
    let user = find(store, username).await?;
    let (version, hash) = passwords.hash(password).await?;
    let now = clock.now();
    store.write(move |c| user_store::add_password(c, &user.id, &hash, version, None, now)).await?;
    Ok(())
}

pub async fn set_locked(store: &Store, clock: &dyn Clock, username: &str, locked: bool) -> Result<User, UserError> {
    let user = find(store, username).await?;
    let at = locked.then(|| clock.now());
    let id = user.id.clone();
    store.write(move |c| user_store::set_locked(c, &id, at)).await?;
    Ok(User { locked_at: at, ..user })
}

pub async fn set_deactivated(
    store: &Store,
    clock: &dyn Clock,
    username: &str,
    deactivated: bool,
) -> Result<User, UserError> {
    let user = find(store, username).await?;
    let at = deactivated.then(|| clock.now());
    let id = user.id.clone();
    store.write(move |c| user_store::set_deactivated(c, &id, at)).await?;
    Ok(User { deactivated_at: at, ..user })
}
