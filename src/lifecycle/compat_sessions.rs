//! Sessions of the Matrix legacy login API: start (device upserted first) and refresh; they end
//! through `sessions::end_session`.

use crate::model::scope::{self, Scope};
use crate::model::{DeviceId, User};
use crate::rng::Rng;
use crate::store::compat::{self, CompatSession};
use crate::store::{StoreResult, sessions};
use crate::tokens::{TokenKind, hash_token};
use rusqlite::Connection;

pub struct CompatTokens {
    pub session: CompatSession,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds; `None` for a non-expiring access token.
    pub expires_in: Option<i64>,
}

/// A session a login started: it always has a device.
pub struct StartedCompat {
    pub device_id: String,
    pub tokens: CompatTokens,
}

pub struct NewCompatSession<'a> {
    pub user: &'a User,
    /// Checked with the one device-ID grammar by whoever took it in; a new one when absent.
    pub device_id: Option<DeviceId>,
    pub display_name: Option<String>,
    pub user_session_id: Option<String>,
    pub is_synapse_admin: bool,
    pub user_agent: Option<String>,
}

/// A device id as Synapse makes them: 10 random letters.
pub fn generate_device_id(rng: &dyn Rng) -> String {
    DeviceId::generate(rng).into_string()
}

/// Creates the session, with a device, and its tokens. A login that reuses a device id ends the
/// sessions that held that device (compat and OAuth alike), as Synapse would.
pub fn start(
    conn: &Connection,
    new: &NewCompatSession<'_>,
    with_refresh: bool,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<StartedCompat> {
    let device_id = new.device_id.clone().map_or_else(|| generate_device_id(rng), DeviceId::into_string);
    for s in compat::active_for_user(conn, &new.user.id)? {
        if s.device_id.as_deref() == Some(device_id.as_str()) {
            compat::finish(conn, &s.id, now)?;
        }
    }
    for s in sessions::active_oauth_for_user(conn, &new.user.id)? {
        if Scope::parse(&s.scope).unwrap_or_default().device_ids().contains(&device_id.as_str()) {
            sessions::finish_oauth(conn, &s.id, now)?;
        }
    }
    let session = CompatSession {
        id: rng.id_at(now),
        user_id: new.user.id.clone(),
        device_id: Some(device_id.clone()),
        user_session_id: new.user_session_id.clone(),
        is_synapse_admin: new.is_synapse_admin,
        human_name: new.display_name.clone(),
        created_at: now,
        finished_at: None,
    };
    compat::insert_session(conn, &session, new.user_agent.as_deref())?;
    let (access_token, refresh_token, expires_in) = issue(conn, &session.id, with_refresh, ttl, now, rng)?;
    Ok(StartedCompat { device_id, tokens: CompatTokens { session, access_token, refresh_token, expires_in } })
}

fn issue(
    conn: &Connection,
    session_id: &str,
    with_refresh: bool,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<(String, Option<String>, Option<i64>)> {
    let access = TokenKind::CompatAccessToken.generate(rng);
    let expires_at = with_refresh.then_some(now + ttl);
    let access_id = compat::insert_access(conn, &rng.id_at(now), session_id, &hash_token(&access), now, expires_at)?;
    let refresh = if with_refresh {
        let r = TokenKind::CompatRefreshToken.generate(rng);
        compat::insert_refresh(conn, &rng.id_at(now), session_id, &access_id, &hash_token(&r), now)?;
        Some(r)
    } else {
        None
    };
    Ok((access, refresh, expires_at.map(|_| ttl)))
}

/// Rotates a refresh token; the previous access token stops working at once.
/// A locked or deactivated user gets nothing, and the token is not spent.
pub fn refresh(
    conn: &Connection,
    refresh_token: &str,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<Option<CompatTokens>> {
    let hash = hash_token(refresh_token);
    if !compat::introspect(conn, &hash, true)?.is_some_and(|(info, _, _)| info.user_valid) {
        return Ok(None);
    }
    let Some((session, old_access)) = compat::consume_refresh(conn, &hash, now)? else {
        return Ok(None);
    };
    if let Some(id) = old_access {
        compat::expire_access(conn, &id, now)?;
    }
    let (access_token, refresh_token, expires_in) = issue(conn, &session.id, true, ttl, now, rng)?;
    Ok(Some(CompatTokens { session, access_token, refresh_token, expires_in }))
}

/// How introspection presents a compat session's scope: built from constants and a device ID
/// that passed the grammar (a row stored before the grammar was enforced is the caller's to
/// refuse). A session without a device has no device scope (MAS's answer).
pub fn scope_of(device_id: Option<&DeviceId>, is_synapse_admin: bool, with_device_scope: bool) -> Scope {
    let mut tokens = vec![scope::MATRIX_API.to_string(), scope::MATRIX_API_UNSTABLE.to_string()];
    if let Some(device_id) = device_id.filter(|_| with_device_scope) {
        tokens.push(format!("{}{device_id}", scope::MATRIX_DEVICE_PREFIX));
        tokens.push(format!("{}{device_id}", scope::MATRIX_DEVICE_PREFIX_UNSTABLE));
    }
    if is_synapse_admin {
        tokens.push(scope::SYNAPSE_ADMIN.to_string());
    }
    tokens.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{insert_user, memory_db};

    /// `refresh` drawing from the OS.
    fn refresh(conn: &Connection, token: &str, ttl: i64, now: i64) -> StoreResult<Option<CompatTokens>> {
        super::refresh(conn, token, ttl, now, &crate::rng::OsRng)
    }

    #[test]
    fn a_session_without_a_device_has_no_device_scope() {
        let device = DeviceId::parse_stored("ABCDEFGHIJ").unwrap();
        let with = scope_of(Some(&device), false, true).to_string();
        assert!(with.contains(&format!("{}ABCDEFGHIJ", scope::MATRIX_DEVICE_PREFIX_UNSTABLE)), "{with}");
        for admin in [false, true] {
            let without = scope_of(None, admin, true);
            assert!(without.device_ids().is_empty(), "{without}");
            let text = without.to_string();
            assert!(text.contains(scope::MATRIX_API) && text.contains(scope::MATRIX_API_UNSTABLE), "{text}");
            assert!(!text.contains(":device:"), "{text}");
            assert_eq!(text.contains(scope::SYNAPSE_ADMIN), admin, "{text}");
        }
    }

    /// Synapse keeps no refresh token without a device, but a device-less session with one
    /// (written by hand, or by a later import rule) rotates like any other and stays device-less.
    #[test]
    fn a_session_without_a_device_refreshes_and_stays_without_one() {
        let conn = memory_db();
        let bob = insert_user(&conn, "bob");
        let session = CompatSession {
            id: "CS1".into(),
            user_id: bob,
            device_id: None,
            user_session_id: None,
            is_synapse_admin: false,
            human_name: None,
            created_at: 10,
            finished_at: None,
        };
        compat::insert_session(&conn, &session, None).unwrap();
        let access_id =
            compat::insert_access(&conn, "AT1", "CS1", &hash_token("syt_Ym9i_old_access"), 10, Some(100)).unwrap();
        compat::insert_refresh(&conn, "RT1", "CS1", &access_id, &hash_token("syr_Ym9i_old_refresh"), 10).unwrap();

        let rotated = refresh(&conn, "syr_Ym9i_old_refresh", 300, 20).unwrap().expect("rotated");
        assert_eq!((rotated.session.id.as_str(), rotated.session.device_id.as_deref()), ("CS1", None));
        let (info, device, _) = compat::introspect(&conn, &hash_token(&rotated.access_token), false).unwrap().unwrap();
        assert_eq!((info.session_id.as_str(), device), ("CS1", None));
        let old = compat::introspect(&conn, &hash_token("syt_Ym9i_old_access"), false).unwrap().unwrap().0;
        assert!(old.dead, "the old access token ended with the refresh");
        assert!(refresh(&conn, "syr_Ym9i_old_refresh", 300, 21).unwrap().is_none(), "spent");
    }
}
