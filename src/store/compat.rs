//! `compat_sessions`, `compat_access_tokens`, `compat_refresh_tokens`, `compat_sso_logins`.

use rusqlite::{Connection, OptionalExtension, params};

use super::page::{self, Filter, Page, PageRequest, Table};
use super::sessions::{Detailed, SessionActivity, SessionFilter};
use super::{StoreResult, opt};
use crate::store::tokens::TokenInfo;

#[derive(Debug, Clone)]
pub struct CompatSession {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    pub user_session_id: Option<String>,
    pub is_synapse_admin: bool,
    pub human_name: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str =
    "compat_session_id, user_id, device_id, user_session_id, is_synapse_admin, human_name, created_at, finished_at";

fn session_from_row(r: &rusqlite::Row) -> rusqlite::Result<CompatSession> {
    Ok(CompatSession {
        id: r.get(0)?,
        user_id: r.get(1)?,
        device_id: r.get(2)?,
        user_session_id: r.get(3)?,
        is_synapse_admin: r.get(4)?,
        human_name: r.get(5)?,
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
    })
}

pub fn insert_session(conn: &Connection, s: &CompatSession, user_agent: Option<&str>) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO compat_sessions (compat_session_id, user_id, device_id, user_session_id, is_synapse_admin, human_name, user_agent, created_at, last_active_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![s.id, s.user_id, s.device_id, s.user_session_id, s.is_synapse_admin, s.human_name, user_agent, s.created_at],
    )?;
    Ok(())
}

pub fn session_by_id(conn: &Connection, id: &str) -> StoreResult<Option<CompatSession>> {
    let sql = format!("SELECT {COLUMNS} FROM compat_sessions WHERE compat_session_id = ?1");
    opt(conn.query_row(&sql, [id], session_from_row))
}

pub fn active_for_user(conn: &Connection, user_id: &str) -> StoreResult<Vec<CompatSession>> {
    let sql =
        format!("SELECT {COLUMNS} FROM compat_sessions WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], session_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ends a session and its access tokens; false when it had already ended (or does not exist).
pub fn finish(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE compat_sessions SET finished_at = ?2 WHERE compat_session_id = ?1 AND finished_at IS NULL",
        params![id, now],
    )?;
    conn.execute(
        "UPDATE compat_access_tokens SET revoked_at = ?2 WHERE compat_session_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(n > 0)
}

pub fn insert_access(
    conn: &Connection,
    session_id: &str,
    hash: &str,
    now: i64,
    expires_at: Option<i64>,
) -> StoreResult<String> {
    let id = ulid::Ulid::new().to_string();
    conn.execute(
        "INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, session_id, hash, now, expires_at],
    )?;
    Ok(id)
}

pub fn insert_refresh(conn: &Connection, session_id: &str, access_id: &str, hash: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO compat_refresh_tokens (compat_refresh_token_id, compat_session_id, compat_access_token_id, token_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![ulid::Ulid::new().to_string(), session_id, access_id, hash, now],
    )?;
    Ok(())
}

/// The session of an access token (for logout): (session, token revoked or expired?).
pub fn session_of_access(conn: &Connection, hash: &str, now: i64) -> StoreResult<Option<CompatSession>> {
    let sql = format!(
        "SELECT {} FROM compat_access_tokens t JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
         WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2) AND s.finished_at IS NULL",
        COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
    );
    Ok(conn.query_row(&sql, params![hash, now], session_from_row).optional()?)
}

/// Consumes a refresh token: returns its session and the access token it belonged to.
pub fn consume_refresh(
    conn: &Connection,
    hash: &str,
    now: i64,
) -> StoreResult<Option<(CompatSession, Option<String>)>> {
    let row: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT compat_refresh_token_id, compat_session_id, compat_access_token_id FROM compat_refresh_tokens
             WHERE token_hash = ?1 AND consumed_at IS NULL",
            [hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((id, session_id, access_id)) = row else { return Ok(None) };
    let Some(session) = session_by_id(conn, &session_id)?.filter(|s| s.finished_at.is_none()) else { return Ok(None) };
    conn.execute(
        "UPDATE compat_refresh_tokens SET consumed_at = ?2 WHERE compat_refresh_token_id = ?1",
        params![id, now],
    )?;
    Ok(Some((session, access_id)))
}

pub fn expire_access(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE compat_access_tokens SET revoked_at = ?2 WHERE compat_access_token_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Introspection view of a compat access or refresh token.
pub fn introspect(conn: &Connection, hash: &str, refresh: bool) -> StoreResult<Option<(TokenInfo, String, bool)>> {
    let sql = if refresh {
        "SELECT t.compat_refresh_token_id, t.created_at, NULL, t.consumed_at IS NOT NULL,
                s.compat_session_id, s.finished_at IS NOT NULL, u.user_id, u.username,
                (u.locked_at IS NULL AND u.deactivated_at IS NULL), s.device_id, s.is_synapse_admin
         FROM compat_refresh_tokens t JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
         JOIN users u ON u.user_id = s.user_id WHERE t.token_hash = ?1"
    } else {
        "SELECT t.compat_access_token_id, t.created_at, t.expires_at, t.revoked_at IS NOT NULL,
                s.compat_session_id, s.finished_at IS NOT NULL, u.user_id, u.username,
                (u.locked_at IS NULL AND u.deactivated_at IS NULL), s.device_id, s.is_synapse_admin
         FROM compat_access_tokens t JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
         JOIN users u ON u.user_id = s.user_id WHERE t.token_hash = ?1"
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row([hash], |r| {
            Ok((
                TokenInfo {
                    token_id: r.get(0)?,
                    created_at: r.get(1)?,
                    expires_at: r.get(2)?,
                    dead: r.get(3)?,
                    first_used_at: None,
                    session_id: r.get(4)?,
                    session_finished: r.get(5)?,
                    scope: String::new(),
                    client_id: Some("legacy".into()),
                    user_id: r.get(6)?,
                    username: r.get(7)?,
                    user_valid: r.get(8)?,
                    user_can_request_admin: false,
                    synapse_admin_by_operator: false,
                },
                r.get::<_, String>(9)?,
                r.get::<_, bool>(10)?,
            ))
        })
        .optional()?)
}

pub struct SsoLogin {
    pub id: String,
    pub redirect_uri: String,
    pub user_session_id: Option<String>,
    pub created_at: i64,
    pub fulfilled_at: Option<i64>,
    pub exchanged_at: Option<i64>,
}

fn sso_from_row(r: &rusqlite::Row) -> rusqlite::Result<SsoLogin> {
    Ok(SsoLogin {
        id: r.get(0)?,
        redirect_uri: r.get(1)?,
        user_session_id: r.get(2)?,
        created_at: r.get(3)?,
        fulfilled_at: r.get(4)?,
        exchanged_at: r.get(5)?,
    })
}

const SSO_COLUMNS: &str = "compat_sso_login_id, redirect_uri, user_session_id, created_at, fulfilled_at, exchanged_at";

pub fn insert_sso(conn: &Connection, id: &str, redirect_uri: &str, now: i64) -> StoreResult<()> {
    // The login token is chosen at confirmation; until then the column holds an unguessable filler.
    let filler = format!("pending-{}", crate::crypto::random_alnum(32));
    conn.execute(
        "INSERT INTO compat_sso_logins (compat_sso_login_id, redirect_uri, login_token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, redirect_uri, filler, now],
    )?;
    Ok(())
}

/// Deletes SSO logins started before `created_before`: the confirmation page and the login token
/// are long expired by then, and anyone can start one without signing in.
pub fn prune_sso(conn: &Connection, created_before: i64) -> StoreResult<usize> {
    Ok(conn.execute("DELETE FROM compat_sso_logins WHERE created_at < ?1", [created_before])?)
}

pub fn sso_by_id(conn: &Connection, id: &str) -> StoreResult<Option<SsoLogin>> {
    let sql = format!("SELECT {SSO_COLUMNS} FROM compat_sso_logins WHERE compat_sso_login_id = ?1");
    opt(conn.query_row(&sql, [id], sso_from_row))
}

pub fn sso_by_token(conn: &Connection, token_hash: &str) -> StoreResult<Option<SsoLogin>> {
    let sql = format!("SELECT {SSO_COLUMNS} FROM compat_sso_logins WHERE login_token_hash = ?1");
    opt(conn.query_row(&sql, [token_hash], sso_from_row))
}

/// The user confirmed: binds the browser session and sets the login token (known only now).
pub fn fulfill_sso(
    conn: &Connection,
    id: &str,
    user_session_id: &str,
    token_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE compat_sso_logins SET fulfilled_at = ?2, user_session_id = ?3, login_token_hash = ?4
         WHERE compat_sso_login_id = ?1 AND fulfilled_at IS NULL",
        params![id, now, user_session_id, token_hash],
    )? == 1)
}

pub fn exchange_sso(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE compat_sso_logins SET exchanged_at = ?2 WHERE compat_sso_login_id = ?1 AND exchanged_at IS NULL",
        params![id, now],
    )? == 1)
}

/// Active compat sessions of a user with their user agent and last activity (account page).
pub fn active_with_activity(
    conn: &Connection,
    user_id: &str,
) -> StoreResult<Vec<(CompatSession, super::sessions::SessionActivity)>> {
    let sql = format!(
        "SELECT {COLUMNS}, user_agent, last_active_at, last_active_ip FROM compat_sessions
         WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            session_from_row(r)?,
            super::sessions::SessionActivity {
                user_agent: r.get(8)?,
                last_active_at: r.get(9)?,
                last_active_ip: r.get(10)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets where compat sessions were seen from once inactive since `before`. Returns how many.
pub fn clear_stale_ips(conn: &Connection, before: i64) -> StoreResult<usize> {
    Ok(conn.execute(
        "UPDATE compat_sessions SET last_active_ip = NULL
         WHERE last_active_ip IS NOT NULL AND coalesce(last_active_at, created_at) < ?1",
        [before],
    )?)
}

const DETAILED: Table = Table {
    name: "compat_sessions",
    key: "compat_session_id",
    columns: "compat_session_id, user_id, device_id, user_session_id, is_synapse_admin, human_name, created_at, \
              finished_at, user_agent, last_active_at, last_active_ip",
};

fn detailed_from_row(r: &rusqlite::Row) -> rusqlite::Result<Detailed<CompatSession>> {
    let session = session_from_row(r)?;
    let human_name = session.human_name.clone();
    Ok(Detailed {
        session,
        activity: SessionActivity { user_agent: r.get(8)?, last_active_at: r.get(9)?, last_active_ip: r.get(10)? },
        human_name,
    })
}

fn filter_of(f: &SessionFilter) -> Filter {
    let mut filter = Filter::new();
    filter.and_eq("user_id = ?", f.user_id.clone()).and_flag(
        f.active,
        "finished_at IS NULL",
        "finished_at IS NOT NULL",
    );
    filter
}

/// Compat sessions for the admin API (`SessionFilter::client_id` does not apply).
pub fn page(conn: &Connection, f: &SessionFilter, request: &PageRequest) -> StoreResult<Page<Detailed<CompatSession>>> {
    page::fetch(conn, &DETAILED, &filter_of(f), request, detailed_from_row, |d| &d.session.id)
}

pub fn count(conn: &Connection, f: &SessionFilter) -> StoreResult<usize> {
    page::count(conn, &DETAILED, &filter_of(f))
}

pub fn detailed_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Detailed<CompatSession>>> {
    let mut filter = Filter::new();
    filter.and("compat_session_id = ?", [id.to_string().into()]);
    let page = page::fetch(conn, &DETAILED, &filter, &PageRequest::first(1), detailed_from_row, |d| &d.session.id)?;
    Ok(page.items.into_iter().next())
}

/// Active compat sessions last seen before `before`, least recently seen first, after `after`;
/// at most `limit` (inactive-session expiry).
pub fn idle_sessions(
    conn: &Connection,
    before: i64,
    after: Option<&super::sessions::IdleCursor>,
    limit: usize,
) -> StoreResult<Vec<super::sessions::IdleSession>> {
    super::sessions::idle_in(conn, "compat_sessions", "compat_session_id", before, after, limit)
}
