//! Personal access tokens (`mpt_`) for bots and admin tools, as MAS's personal sessions: a
//! long-lived session acting as a user (the actor), owned by the user or OAuth client that
//! created it. Created (device upserted before the token is handed out), regenerated (the old
//! token dies, a new one is shown once) here, for the admin API and `manage`; revoked (token
//! dead, device deleted) through `sessions::end_session`, as every other kind of session.

use super::Lifecycle;
use super::policy::{self, GrantKind};
use crate::config::PolicyData;
use crate::model::Scope;
use crate::model::scope::SYNAPSE_ADMIN;
use crate::rng::Rng;
use crate::store::personal::{self as personal_store, Owner, PersonalSession};
use crate::store::{Store, StoreError, StoreResult, users as user_store};
use crate::tokens::{TokenKind, hash_token};

#[derive(Debug, thiserror::Error)]
pub enum PersonalError {
    #[error("user {0} not found")]
    ActorNotFound(String),
    #[error("user {0} is deactivated")]
    ActorDeactivated(String),
    #[error("the name must be 1 to 255 characters")]
    InvalidName,
    #[error("{0}")]
    InvalidScope(String),
    #[error("personal session with ID {0} not found")]
    NotFound(String),
    #[error("personal session with ID {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("personal session with ID {0} is revoked")]
    Revoked(String),
    #[error("the session does not belong to the caller")]
    NotOwner,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct NewPersonalSession {
    pub owner: Owner,
    pub actor_user_id: String,
    pub human_name: String,
    pub scope: Scope,
    /// Seconds until the token expires (`None`: never).
    pub expires_in: Option<u32>,
    /// The operator grants `urn:synapse:admin:*` explicitly (`manage issue-personal-token
    /// --yes-i-want-to-grant-synapse-admin-privileges`): it is added to the scope without asking
    /// whether the actor may request administration.
    pub operator_grants_synapse_admin: bool,
}

/// A session with its new token, which is shown this once.
pub struct IssuedToken {
    pub session: PersonalSession,
    pub access_token: String,
    pub expires_at: Option<i64>,
    /// `false` when the homeserver was unreachable: the device is created from the job queue.
    pub device_ready: bool,
}

/// Creates a session and its token. The scope must pass the policy of interactive grants for
/// the actor (`urn:synapse:admin:*` and `urn:mas:admin` only for a user who may request
/// administration); a device scope's device is upserted on the homeserver before the token is
/// returned.
pub async fn create(
    lc: &Lifecycle,
    policy: &PolicyData,
    new: NewPersonalSession,
) -> Result<IssuedToken, PersonalError> {
    let name = new.human_name.trim().to_string();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(PersonalError::InvalidName);
    }
    let id = new.actor_user_id.clone();
    let actor = lc
        .store
        .read(move |c| user_store::by_id(c, &id))
        .await?
        .ok_or_else(|| PersonalError::ActorNotFound(new.actor_user_id.clone()))?;
    if actor.deactivated_at.is_some() {
        return Err(PersonalError::ActorDeactivated(actor.id));
    }
    let mut scope = new.scope;
    if new.operator_grants_synapse_admin {
        scope = scope.iter().filter(|t| *t != SYNAPSE_ADMIN).map(String::from).collect();
    }
    policy::check(&scope, GrantKind::Interactive, Some(&actor), "", policy).map_err(PersonalError::InvalidScope)?;
    if new.operator_grants_synapse_admin {
        scope = scope.iter().map(String::from).chain([SYNAPSE_ADMIN.to_string()]).collect();
    }

    let now = lc.clock.now();
    let session = PersonalSession {
        id: lc.new_id(),
        owner: new.owner,
        actor_user_id: actor.id.clone(),
        human_name: name,
        scope: scope.to_string(),
        created_at: now,
        revoked_at: None,
    };
    let access_token = TokenKind::PersonalAccessToken.generate(lc.rng.as_ref());
    let expires_at = new.expires_in.map(|s| now.saturating_add(i64::from(s)));
    let (row, hash, operator_admin) = (session.clone(), hash_token(&access_token), new.operator_grants_synapse_admin);
    let token_id = lc.new_id();
    lc.store
        .write(move |c| {
            personal_store::insert_session(c, &row, operator_admin)?;
            personal_store::insert_token(c, &token_id, &row.id, &hash, now, expires_at)
        })
        .await?;
    let device_ready = match session.device_id() {
        Some(device) => lc.ensure_device(&actor, &device, Some(session.human_name.clone())).await,
        None => true,
    };
    Ok(IssuedToken { session, access_token, expires_at, device_ready })
}

/// Replaces the token of a live session: the old one stops working at once, the new one
/// (expiring after `expires_in` seconds, or never) is returned. With `caller`, only the session's
/// owner may do this (as MAS).
pub async fn regenerate(
    lc: &Lifecycle,
    id: &str,
    caller: Option<&Owner>,
    expires_in: Option<u32>,
) -> Result<IssuedToken, PersonalError> {
    let session = get(&lc.store, id).await?;
    if session.revoked_at.is_some() {
        return Err(PersonalError::Revoked(session.id));
    }
    if caller.is_some_and(|c| *c != session.owner) {
        return Err(PersonalError::NotOwner);
    }
    let now = lc.clock.now();
    let access_token = TokenKind::PersonalAccessToken.generate(lc.rng.as_ref());
    let expires_at = expires_in.map(|s| now.saturating_add(i64::from(s)));
    let (key, hash, token_id) = (session.id.clone(), hash_token(&access_token), lc.new_id());
    let live = lc
        .store
        .write(move |c| {
            // Read again inside the write: a revoke in between must not be undone.
            if personal_store::session_by_id(c, &key)?.is_none_or(|s| s.revoked_at.is_some()) {
                return Ok(false);
            }
            personal_store::revoke_token(c, &key, now)?;
            personal_store::insert_token(c, &token_id, &key, &hash, now, expires_at)?;
            Ok(true)
        })
        .await?;
    if !live {
        return Err(PersonalError::Revoked(session.id));
    }
    Ok(IssuedToken { session, access_token, expires_at, device_ready: true })
}

/// Revokes every session a user acts as or owns (deactivation, as MAS). Devices of other
/// actors whose sessions the user owned are deleted here; the user's own are left to the
/// caller's device sync. Returns how many were revoked.
pub async fn revoke_all_for_user(lc: &Lifecycle, user_id: &str) -> StoreResult<usize> {
    let (key, now) = (user_id.to_string(), lc.clock.now());
    let revoked = lc.store.write(move |c| personal_store::revoke_all_for_user(c, &key, now)).await?;
    let mut synced: Vec<&str> = Vec::new();
    for s in &revoked {
        let actor = s.actor_user_id.as_str();
        if actor != user_id && s.device_id().is_some() && !synced.contains(&actor) {
            lc.sync_devices(actor).await;
            synced.push(actor);
        }
    }
    Ok(revoked.len())
}

/// The session with this id.
pub async fn get(store: &Store, id: &str) -> Result<PersonalSession, PersonalError> {
    let key = id.to_string();
    store.read(move |c| personal_store::session_by_id(c, &key)).await?.ok_or_else(|| PersonalError::NotFound(id.into()))
}

/// The scope of a token for a Matrix client (a bot): `scope` with a device scope added when it
/// has the Matrix API scope and no device yet — `device`, or a new device id — in the API scope's
/// form (stable or unstable). `device` must match a device already in the scope, and needs the
/// API scope. A new device id is drawn from `rng`.
pub fn with_device(scope: Scope, device: Option<String>, rng: &dyn Rng) -> Result<Scope, PersonalError> {
    use crate::model::scope::{MATRIX_API, MATRIX_DEVICE_PREFIX, MATRIX_DEVICE_PREFIX_UNSTABLE};
    if let Some(d) = device.as_deref().filter(|d| !crate::model::DeviceId::is_valid(d)) {
        return Err(PersonalError::InvalidScope(format!(
            "device '{d}' is invalid: {}",
            crate::model::device::DEVICE_ID_RULE
        )));
    }
    if let Some(existing) = scope.device_id() {
        return match device {
            Some(d) if d != existing => {
                Err(PersonalError::InvalidScope(format!("the scope already names device '{existing}', not '{d}'")))
            }
            _ => Ok(scope),
        };
    }
    if !scope.has_matrix_api() {
        return match device {
            Some(_) => Err(PersonalError::InvalidScope("a device needs the Matrix API scope".into())),
            None => Ok(scope),
        };
    }
    let prefix = if scope.contains(MATRIX_API) { MATRIX_DEVICE_PREFIX } else { MATRIX_DEVICE_PREFIX_UNSTABLE };
    let device = device.unwrap_or_else(|| super::compat_sessions::generate_device_id(rng));
    Ok(scope.iter().map(String::from).chain([format!("{prefix}{device}")]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `with_device` drawing new device ids from the OS.
    fn with_device(scope: Scope, device: Option<String>) -> Result<Scope, PersonalError> {
        super::with_device(scope, device, &crate::rng::OsRng)
    }

    fn s(v: &str) -> Scope {
        Scope::parse(v).unwrap()
    }

    #[test]
    fn a_device_joins_the_matrix_api_scope() {
        let api = "urn:matrix:client:api:*";
        assert_eq!(
            with_device(s(api), Some("BOTDEVICE01".into())).unwrap(),
            s(&format!("{api} urn:matrix:client:device:BOTDEVICE01"))
        );
        let generated = with_device(s(api), None).unwrap();
        assert_eq!(generated.device_id().map(str::len), Some(10));
        let unstable = "urn:matrix:org.matrix.msc2967.client:api:*";
        let d = with_device(s(unstable), Some("BOTDEVICE01".into())).unwrap();
        assert!(d.contains("urn:matrix:org.matrix.msc2967.client:device:BOTDEVICE01"), "{d}");
        // Already there: kept; another one: refused.
        let named = s(&format!("{api} urn:matrix:client:device:BOTDEVICE01"));
        assert_eq!(with_device(named.clone(), None).unwrap(), named);
        assert_eq!(with_device(named.clone(), Some("BOTDEVICE01".into())).unwrap(), named);
        assert!(with_device(named, Some("OTHERDEV01".into())).is_err());
        // No Matrix API: no device.
        assert_eq!(with_device(s("urn:mas:admin"), None).unwrap(), s("urn:mas:admin"));
        assert!(with_device(s("urn:mas:admin"), Some("BOTDEVICE01".into())).is_err());
    }
}
