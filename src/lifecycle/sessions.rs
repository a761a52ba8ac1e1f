//! Ending sessions, written once. Every surface ends sessions through `end_session`: the session
//! rows and their tokens in one write (they stop working at once), then the devices of the users
//! who lost one reconciled on the homeserver (`sync_devices`, queued when it is down), so the
//! homeserver drops its cached tokens too. Steps that end sessions inside a larger write (a
//! replayed code, a reused refresh token, expiry, back-channel logout, a password reset) collect
//! them in an `Ended` and hand it to `sync_ended` once the write committed.
//!
//! Devices are reconciled rather than deleted one by one (`delete_device`): another live session
//! may hold the same device id, and a full sync converges after a failure (as MAS does).

use std::collections::BTreeSet;

use rusqlite::Connection;

use super::Lifecycle;
use crate::store::StoreResult;
use crate::store::compat as compat_store;
use crate::store::personal as personal_store;
use crate::store::sessions::{self as session_store, SessionKind};

/// Which sessions `end_session` ends.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// One session of any kind, by id (revoke, compat logout, account page, admin API).
    One(SessionKind, &'a str),
    /// Every compat session of a user (compat `/logout/all`).
    CompatOf(&'a str),
    /// Every OAuth, compat and browser session of a user (password reset, `manage kill-sessions`,
    /// deactivation); personal sessions have their own revocation.
    AllOf(&'a str),
}

/// Sessions ended inside one write, and the users whose devices must then be reconciled.
#[must_use = "hand it to sync_ended once the write committed"]
#[derive(Debug, Default)]
pub struct Ended {
    count: usize,
    users: BTreeSet<String>,
}

impl Ended {
    /// How many sessions ended.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Ends one session inside the caller's write: the session and its tokens. `false` when it had
    /// already ended or does not exist.
    pub fn end(&mut self, conn: &Connection, kind: SessionKind, id: &str, now: i64) -> StoreResult<bool> {
        let user = match kind {
            SessionKind::OAuth2 => {
                let user = session_store::oauth_by_id(conn, id)?.map(|s| s.user_id);
                if !session_store::finish_oauth(conn, id, now)? {
                    return Ok(false);
                }
                user.flatten()
            }
            SessionKind::Compat => {
                let user = compat_store::session_by_id(conn, id)?.map(|s| s.user_id);
                if !compat_store::finish(conn, id, now)? {
                    return Ok(false);
                }
                user
            }
            SessionKind::Personal => {
                let user = personal_store::session_by_id(conn, id)?.map(|s| s.actor_user_id);
                if !personal_store::revoke_session(conn, id, now)? {
                    return Ok(false);
                }
                user
            }
            SessionKind::Browser => {
                // A browser session has no device.
                if session_store::browser_by_id(conn, id)?.is_none_or(|s| s.finished_at.is_some()) {
                    return Ok(false);
                }
                session_store::finish_browser(conn, id, now)?;
                None
            }
        };
        self.count += 1;
        self.users.extend(user);
        Ok(true)
    }

    /// Ends every compat session of a user inside the caller's write.
    pub fn end_compat_of(&mut self, conn: &Connection, user_id: &str, now: i64) -> StoreResult<()> {
        for s in compat_store::active_for_user(conn, user_id)? {
            self.end(conn, SessionKind::Compat, &s.id, now)?;
        }
        self.users.insert(user_id.to_string());
        Ok(())
    }

    /// Ends every OAuth, compat and browser session of a user inside the caller's write; counts
    /// the OAuth and compat ones.
    pub fn end_all_of(&mut self, conn: &Connection, user_id: &str, now: i64) -> StoreResult<()> {
        self.count += session_store::finish_all_for_user(conn, user_id, now)?;
        self.users.insert(user_id.to_string());
        Ok(())
    }

    /// Adds what another write ended.
    pub fn merge(&mut self, other: Ended) {
        self.count += other.count;
        self.users.extend(other.users);
    }

    /// The users whose devices `sync_ended` reconciles.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(String::as_str)
    }
}

/// Ends sessions from any surface: their tokens stop working at once and their devices go from
/// the homeserver. Returns how many ended (for `AllOf`, the OAuth and compat ones).
pub async fn end_session(lc: &Lifecycle, which: Ending<'_>) -> StoreResult<usize> {
    let now = lc.clock.now();
    let ended = match which {
        Ending::One(kind, id) => {
            let id = id.to_string();
            lc.store
                .write(move |c| {
                    let mut ended = Ended::default();
                    ended.end(c, kind, &id, now)?;
                    Ok(ended)
                })
                .await?
        }
        Ending::CompatOf(user_id) | Ending::AllOf(user_id) => {
            let (user_id, all) = (user_id.to_string(), matches!(which, Ending::AllOf(_)));
            lc.store
                .write(move |c| {
                    let mut ended = Ended::default();
                    if all {
                        ended.end_all_of(c, &user_id, now)?
                    } else {
                        ended.end_compat_of(c, &user_id, now)?
                    }
                    Ok(ended)
                })
                .await?
        }
    };
    let count = ended.count();
    sync_ended(lc, ended).await;
    Ok(count)
}

/// After the write that ended them committed: the devices of the ended sessions' users are
/// reconciled on the homeserver (queued when it is down).
pub async fn sync_ended(lc: &Lifecycle, ended: Ended) {
    for user_id in &ended.users {
        lc.sync_devices(user_id).await;
    }
}
