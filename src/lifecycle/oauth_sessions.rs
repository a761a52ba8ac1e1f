//! Starting and rotating OAuth 2.0 sessions; they end through `sessions::end_session`.

use std::net::IpAddr;

use super::Lifecycle;
use crate::model::Scope;
use crate::rng::Rng;
use crate::store::sessions::{self, OAuthSession};
use crate::store::tokens::{self as token_store, AccessToken, RefreshToken};
use crate::store::{StoreError, StoreResult};
use crate::tokens::{TokenKind, hash_token};
use rusqlite::Connection;

pub struct IssuedTokens {
    pub session_id: String,
    pub access_token: String,
    pub access_token_id: String,
    pub refresh_token: Option<String>,
    pub refresh_token_id: Option<String>,
    pub expires_in: i64,
}

pub struct NewSession<'a> {
    pub client_id: &'a str,
    pub user_id: Option<&'a str>,
    pub user_session_id: Option<&'a str>,
    pub scope: &'a Scope,
    pub user_agent: Option<&'a str>,
}

/// Creates the session and its first tokens (inside the caller's write transaction).
pub fn start(
    conn: &Connection,
    new: NewSession<'_>,
    with_refresh: bool,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<IssuedTokens> {
    let session = OAuthSession {
        id: rng.id_at(now),
        user_id: new.user_id.map(String::from),
        user_session_id: new.user_session_id.map(String::from),
        client_id: new.client_id.to_string(),
        scope: new.scope.to_string(),
        created_at: now,
        finished_at: None,
    };
    sessions::insert_oauth(conn, &session, new.user_agent)?;
    issue_after(conn, &session.id, with_refresh, None, ttl, now, rng)
}

/// `issue`, recording the refresh token whose rotation issued the new pair.
fn issue_after(
    conn: &Connection,
    session_id: &str,
    with_refresh: bool,
    parent: Option<&str>,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<IssuedTokens> {
    let access_token = TokenKind::AccessToken.generate(rng);
    let access = AccessToken {
        id: rng.id_at(now),
        session_id: session_id.to_string(),
        created_at: now,
        expires_at: Some(now + ttl),
        revoked_at: None,
        first_used_at: None,
    };
    token_store::insert_access(conn, &access, &hash_token(&access_token))?;
    let refresh_token = if with_refresh {
        let token = TokenKind::RefreshToken.generate(rng);
        let refresh = RefreshToken {
            id: rng.id_at(now),
            session_id: session_id.to_string(),
            access_token_id: Some(access.id.clone()),
            created_at: now,
            consumed_at: None,
            revoked_at: None,
            next_refresh_token_id: None,
            parent_refresh_token_id: parent.map(String::from),
        };
        token_store::insert_refresh(conn, &refresh, &hash_token(&token))?;
        Some((token, refresh.id))
    } else {
        None
    };
    Ok(IssuedTokens {
        session_id: session_id.to_string(),
        access_token,
        access_token_id: access.id,
        refresh_token_id: refresh_token.as_ref().map(|(_, id)| id.clone()),
        refresh_token: refresh_token.map(|(t, _)| t),
        expires_in: ttl,
    })
}

#[derive(Debug)]
pub enum RefreshOutcome {
    Rotated(Box<IssuedTokensSummary>),
    /// Unknown, revoked, consumed (outside the replay tolerance) or its session ended.
    Invalid(&'static str),
    /// Reused after a successor was used: the session was ended now; the caller removes its
    /// device from the homeserver (the user's devices are synced), as after a logout.
    Reused {
        user_id: Option<String>,
    },
    WrongClient,
}

#[derive(Debug)]
pub struct IssuedTokensSummary {
    pub session: OAuthSession,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

/// Whether a token issued by a rotation has been used: rotated itself, or its access token
/// presented. An access token already cleaned up (expired long ago) counts as used.
fn successor_used(conn: &Connection, successor: &RefreshToken) -> StoreResult<bool> {
    if successor.consumed_at.is_some() {
        return Ok(true);
    }
    Ok(match &successor.access_token_id {
        Some(id) => token_store::access_by_id(conn, id)?.is_none_or(|a| a.first_used_at.is_some()),
        None => true,
    })
}

/// Refresh-token rotation (RFC 9700 §4.14.2) with a replay tolerance for the client's own races.
///
/// A consumed token presented again is tolerated while no token its rotations issued has been
/// used (the client lost the response, or refreshed from two tabs at once): a new pair is issued
/// beside the earlier ones, which keep working, so neither racing request logs the client out.
/// Once any successor was used, the consumed token can only be in a thief's (or a victim's) hands:
/// the whole session ends. MAS instead revokes the unused successor and merely refuses reuse.
pub fn rotate(
    conn: &Connection,
    client_id: &str,
    refresh_token: &str,
    ttl: i64,
    now: i64,
    rng: &dyn Rng,
) -> StoreResult<RefreshOutcome> {
    let Some(token) = token_store::refresh_by_hash(conn, &hash_token(refresh_token))? else {
        return Ok(RefreshOutcome::Invalid("unknown refresh token"));
    };
    let Some(session) = sessions::oauth_by_id(conn, &token.session_id)? else {
        return Ok(RefreshOutcome::Invalid("unknown refresh token"));
    };
    if session.client_id != client_id {
        return Ok(RefreshOutcome::WrongClient);
    }
    if session.finished_at.is_some() || token.revoked_at.is_some() {
        return Ok(RefreshOutcome::Invalid("the session has ended"));
    }
    // A locked or deactivated user gets nothing new, and nothing is spent: after an unlock the
    // same refresh token still works.
    if let Some(user_id) = &session.user_id {
        if !crate::store::users::by_id(conn, user_id)?.is_some_and(|u| u.is_valid()) {
            return Ok(RefreshOutcome::Invalid("the user is locked or deactivated"));
        }
    }
    if token.consumed_at.is_some() {
        for successor in token_store::successors(conn, &token)? {
            if successor.revoked_at.is_none() && successor_used(conn, &successor)? {
                sessions::finish_oauth(conn, &session.id, now)?;
                return Ok(RefreshOutcome::Reused { user_id: session.user_id.clone() });
            }
        }
    }
    let issued = issue_after(conn, &session.id, true, Some(&token.id), ttl, now, rng)?;
    let next_id = issued
        .refresh_token_id
        .clone()
        .ok_or_else(|| StoreError::Corrupt("rotation issued no refresh token".into()))?;
    if token.consumed_at.is_none() {
        if !token_store::consume_refresh(conn, &token.id, &next_id, now)? {
            return Err(StoreError::Conflict("refresh token rotation"));
        }
        if let Some(old_access) = &token.access_token_id {
            token_store::revoke_access(conn, old_access, now)?;
        }
    } else {
        token_store::set_next_refresh(conn, &token.id, &next_id)?;
    }
    Ok(RefreshOutcome::Rotated(Box::new(IssuedTokensSummary {
        session,
        access_token: issued.access_token,
        refresh_token: issued.refresh_token.unwrap_or_default(),
        expires_in: ttl,
    })))
}

/// A refresh grant: `rotate` in its own write, then what follows it — the session's activity
/// recorded, or after a reuse the ended session's device removed from the homeserver.
pub async fn refresh(
    lc: &Lifecycle,
    client_id: &str,
    refresh_token: &str,
    ttl: i64,
    ip: Option<IpAddr>,
) -> StoreResult<RefreshOutcome> {
    let (client_id, token, now, rng) =
        (client_id.to_string(), refresh_token.to_string(), lc.clock.now(), lc.rng.clone());
    let outcome = lc.store.write(move |c| rotate(c, &client_id, &token, ttl, now, rng.as_ref())).await?;
    match &outcome {
        RefreshOutcome::Rotated(r) => lc.activity.record_oauth2(&r.session.id, ip),
        RefreshOutcome::Reused { user_id: Some(user_id) } => {
            lc.sync_devices(user_id).await;
        }
        _ => {}
    }
    Ok(outcome)
}
