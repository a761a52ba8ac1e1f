//! Creating users and changing their state. The functions taking a `Lifecycle` carry the change
//! to the homeserver too (at once, or through the job queue when it is down); the CLI and the
//! admin API both use them.

use super::Lifecycle;
use super::sessions::Ending;
use crate::clock::Clock;
use crate::crypto::password::{PasswordError, PasswordManager};
pub use crate::homeserver::Availability;
use crate::jobs::Job;
use crate::model::User;
use crate::model::user::check_localpart;
use crate::rng::Rng;
use crate::store::{Store, StoreError, users as user_store};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid username: {0}")]
    InvalidUsername(&'static str),
    #[error("the username is already taken")]
    Taken,
    #[error("no such user: {0}")]
    NotFound(String),
    #[error("the homeserver refuses the username: {0:?}")]
    HomeserverRefused(Availability),
    #[error("cannot ask the homeserver whether the username is free: {0}")]
    HomeserverUnreachable(String),
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
    rng: &dyn Rng,
    new: NewUser,
) -> Result<User, UserError> {
    check_localpart(&new.username).map_err(UserError::InvalidUsername)?;
    let hash = match new.password {
        Some(p) => Some(passwords.hash(p).await?),
        None => None,
    };
    let now = clock.now();
    let user = User {
        id: rng.id(clock),
        username: new.username,
        display_name: new.display_name,
        created_at: now,
        locked_at: None,
        deactivated_at: None,
        can_request_admin: new.admin,
    };
    let row = user.clone();
    let password_id = rng.id(clock);
    let emails: Vec<_> = new.emails.into_iter().map(|e| (rng.id(clock), e)).collect();
    store
        .write(move |c| {
            user_store::insert(c, &row)?;
            if let Some((version, hash)) = &hash {
                user_store::set_password(c, &password_id, &row.id, hash, *version, now)?;
            }
            for (id, e) in &emails {
                user_store::add_email(c, id, &row.id, e, now)?;
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
    rng: &dyn Rng,
    username: &str,
    password: String,
) -> Result<(), UserError> {
    let user = find(store, username).await?;
    let (version, hash) = passwords.hash(password).await?;
    let (now, id) = (clock.now(), rng.id(clock));
    store.write(move |c| user_store::set_password(c, &id, &user.id, &hash, version, now)).await?;
    Ok(())
}

pub async fn set_locked(store: &Store, clock: &dyn Clock, username: &str, locked: bool) -> Result<User, UserError> {
    let user = find(store, username).await?;
    let at = locked.then(|| clock.now());
    let id = user.id.clone();
    store.write(move |c| user_store::set_locked(c, &id, at)).await?;
    Ok(User { locked_at: at, ..user })
}

/// The user with this id.
pub async fn get(store: &Store, user_id: &str) -> Result<User, UserError> {
    let id = user_id.to_string();
    store.read(move |c| user_store::by_id(c, &id)).await?.ok_or_else(|| UserError::NotFound(user_id.into()))
}

/// Whether `username` may be created: well-formed, not taken here, and free on the homeserver.
pub async fn check_available(lc: &Lifecycle, username: &str) -> Result<(), UserError> {
    check_localpart(username).map_err(UserError::InvalidUsername)?;
    check_free_here(lc, username).await?;
    check_free_on_homeserver(lc, username).await
}

/// The local half of `check_available`: no user here has `username`.
pub async fn check_free_here(lc: &Lifecycle, username: &str) -> Result<(), UserError> {
    let name = username.to_string();
    if lc.store.read(move |c| user_store::by_username(c, &name)).await?.is_some() {
        return Err(UserError::Taken);
    }
    Ok(())
}

/// The homeserver half of `check_available` (registration asks it last, after the cheaper checks).
pub async fn check_free_on_homeserver(lc: &Lifecycle, username: &str) -> Result<(), UserError> {
    let (hs, name) = (lc.homeserver.clone(), username.to_string());
    match tokio::task::spawn_blocking(move || hs.is_localpart_available(&name)).await {
        Ok(Ok(Availability::Available)) => Ok(()),
        Ok(Ok(other)) => Err(UserError::HomeserverRefused(other)),
        Ok(Err(e)) => Err(UserError::HomeserverUnreachable(e.to_string())),
        Err(e) => Err(UserError::HomeserverUnreachable(e.to_string())),
    }
}

/// Longest display name accepted (Synapse's limit).
pub const MAX_DISPLAY_NAME: usize = 256;

/// Why `name` (trimmed) cannot be a display name, in words for the form; `None` when it can.
pub fn display_name_problem(name: &str) -> Option<String> {
    if name.chars().any(char::is_control) {
        Some("The display name contains characters that cannot be shown.".into())
    } else if name.chars().count() > MAX_DISPLAY_NAME {
        Some(crate::i18n::current().s1("form.too-long", "n", MAX_DISPLAY_NAME))
    } else {
        None
    }
}

/// Stores the user's display name (`None` removes it) and pushes it to the homeserver at once;
/// when the homeserver cannot take it, a provisioning job carries it over later.
pub async fn set_display_name(lc: &Lifecycle, user: &User, name: Option<String>) -> Result<(), UserError> {
    let (user_id, stored) = (user.id.clone(), name.clone());
    lc.store.write(move |c| user_store::set_display_name(c, &user_id, stored.as_deref())).await?;
    let (hs, localpart) = (lc.homeserver.clone(), user.username.clone());
    let pushed = tokio::task::spawn_blocking(move || hs.set_displayname(&localpart, name.as_deref())).await;
    if !matches!(pushed, Ok(Ok(()))) {
        tracing::warn!(error = ?pushed.map(|r| r.err().map(|e| e.to_string())).ok(), "display name not pushed; provisioning");
        lc.provision_user(&user.id).await;
    }
    Ok(())
}

/// Lets the user's app replace its cross-signing keys without interactive auth for a while (the
/// homeserver decides how long). Not queued: the user waits for it, and retries when it fails.
pub async fn allow_cross_signing_reset(lc: &Lifecycle, user: &User) -> Result<(), UserError> {
    let (hs, localpart) = (lc.homeserver.clone(), user.username.clone());
    match tokio::task::spawn_blocking(move || hs.allow_cross_signing_reset(&localpart)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(UserError::HomeserverUnreachable(e.to_string())),
        Err(e) => Err(UserError::HomeserverUnreachable(e.to_string())),
    }
}

/// Creates the user (`register`) and provisions it on the homeserver. The second value is
/// `false` when the homeserver was unreachable and provisioning was queued.
pub async fn create(lc: &Lifecycle, passwords: &PasswordManager, new: NewUser) -> Result<(User, bool), UserError> {
    let user = register(&lc.store, passwords, lc.clock.as_ref(), lc.rng.as_ref(), new).await?;
    let provisioned = lc.provision_user(&user.id).await;
    Ok((user, provisioned))
}

/// Sets a user's password (a new row; older ones stay as history).
pub async fn set_password_of(
    store: &Store,
    passwords: &PasswordManager,
    clock: &dyn Clock,
    rng: &dyn Rng,
    user_id: &str,
    password: String,
) -> Result<(), UserError> {
    let user = get(store, user_id).await?;
    let (version, hash) = passwords.hash(password).await?;
    let (now, id) = (clock.now(), rng.id(clock));
    store.write(move |c| user_store::set_password(c, &id, &user.id, &hash, version, now)).await?;
    Ok(())
}

/// Allows or forbids the user to request administration (`can_request_admin`).
pub async fn set_admin(store: &Store, user_id: &str, admin: bool) -> Result<User, UserError> {
    let user = get(store, user_id).await?;
    let id = user.id.clone();
    store.write(move |c| user_store::set_can_request_admin(c, &id, admin)).await?;
    Ok(User { can_request_admin: admin, ..user })
}

/// Locks a user (sign-in refused, tokens inactive) and pushes the lock to the homeserver. A
/// locked user keeps the time it was first locked.
pub async fn lock(lc: &Lifecycle, user_id: &str) -> Result<User, UserError> {
    let user = get(&lc.store, user_id).await?;
    let at = user.locked_at.unwrap_or_else(|| lc.clock.now());
    let id = user.id.clone();
    lc.store.write(move |c| user_store::set_locked(c, &id, Some(at))).await?;
    lc.provision_user(&user.id).await;
    Ok(User { locked_at: Some(at), ..user })
}

/// Unlocks a user and pushes that to the homeserver.
pub async fn unlock(lc: &Lifecycle, user_id: &str) -> Result<User, UserError> {
    let user = get(&lc.store, user_id).await?;
    let id = user.id.clone();
    lc.store.write(move |c| user_store::set_locked(c, &id, None)).await?;
    lc.provision_user(&user.id).await;
    Ok(User { locked_at: None, ..user })
}

/// Ends every session of a user (OAuth, compat, browser) and deletes their devices on the
/// homeserver. Returns how many OAuth and compat sessions ended.
pub async fn end_all_sessions(lc: &Lifecycle, user_id: &str) -> Result<usize, UserError> {
    Ok(super::sessions::end_session(lc, Ending::AllOf(user_id)).await?)
}

/// Deactivates a user: marked deactivated (keeping the first time), every session ended, the
/// personal access tokens it acts as or owns revoked (as MAS), and the account deactivated on the
/// homeserver (`erase`: its data erased too). Returns the user and how many sessions ended.
pub async fn deactivate(lc: &Lifecycle, user_id: &str, erase: bool) -> Result<(User, usize), UserError> {
    let user = get(&lc.store, user_id).await?;
    let at = user.deactivated_at.unwrap_or_else(|| lc.clock.now());
    let id = user.id.clone();
    lc.store.write(move |c| user_store::set_deactivated(c, &id, Some(at))).await?;
    super::personal_sessions::revoke_all_for_user(lc, &user.id).await?;
    let ended = end_all_sessions(lc, &user.id).await?;
    lc.run_or_queue(Job::DeactivateUser { user_id: user.id.clone(), erase }).await;
    Ok((User { deactivated_at: Some(at), ..user }, ended))
}

/// Reactivates a deactivated user, here and on the homeserver (a lock stays).
pub async fn reactivate(lc: &Lifecycle, user_id: &str) -> Result<User, UserError> {
    let user = get(&lc.store, user_id).await?;
    let id = user.id.clone();
    lc.store.write(move |c| user_store::set_deactivated(c, &id, None)).await?;
    lc.run_or_queue(Job::ReactivateUser { user_id: user.id.clone() }).await;
    Ok(User { deactivated_at: None, ..user })
}
