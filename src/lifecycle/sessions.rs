//! Ending one session of any kind by its id (admin API), through the same steps as the surfaces
//! that end their own: `oauth_sessions::finish` (revoke, logout), `compat_sessions::finish`
//! (compat logout), `personal_sessions::finish` (personal token revoked), then the homeserver's
//! devices reconciled so the device goes at once.

use rusqlite::Connection;

use super::Lifecycle;
use super::{compat_sessions, oauth_sessions, personal_sessions};
use crate::store::StoreResult;
use crate::store::sessions::{self as session_store, SessionKind};

/// Ends the session; `false` when it had already ended or does not exist. Its tokens stop
/// working at once; an OAuth, compat or personal session's device is deleted on the homeserver
/// (or the deletion is queued when the homeserver is down).
pub async fn end(lc: &Lifecycle, kind: SessionKind, id: &str) -> StoreResult<bool> {
    let now = lc.clock.now();
    let user_id = match kind {
        SessionKind::OAuth2 => oauth_sessions::finish(&lc.store, id, now).await?.map(|s| s.user_id),
        SessionKind::Compat => compat_sessions::finish(&lc.store, id, now).await?.map(|s| Some(s.user_id)),
        SessionKind::Personal => personal_sessions::finish(&lc.store, id, now).await?.map(|s| Some(s.actor_user_id)),
        SessionKind::Browser => {
            let key = id.to_string();
            // A browser session has no device.
            return lc.store.write(move |c| end_browser(c, &key, now)).await;
        }
    };
    match user_id {
        None => Ok(false),
        Some(user) => {
            if let Some(user) = user {
                lc.sync_devices(&user).await;
            }
            Ok(true)
        }
    }
}

/// Ends a browser session inside the caller's write (the user is signed out of the pages);
/// `false` when it had already ended or does not exist.
pub fn end_browser(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    let active = session_store::browser_by_id(conn, id)?.is_some_and(|s| s.finished_at.is_none());
    if active {
        session_store::finish_browser(conn, id, now)?;
    }
    Ok(active)
}
