//! `oauth2_access_tokens` and `oauth2_refresh_tokens`. Only SHA-256 hashes of tokens are stored.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, opt};

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub id: String,
    pub session_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub first_used_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: String,
    pub session_id: String,
    pub access_token_id: Option<String>,
    pub created_at: i64,
    pub consumed_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub next_refresh_token_id: Option<String>,
    /// The token whose rotation issued this one.
    pub parent_refresh_token_id: Option<String>,
}

pub fn insert_access(conn: &Connection, t: &AccessToken, hash: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO oauth2_access_tokens (access_token_id, oauth2_session_id, token_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![t.id, t.session_id, hash, t.created_at, t.expires_at],
    )?;
    Ok(())
}

pub fn insert_refresh(conn: &Connection, t: &RefreshToken, hash: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO oauth2_refresh_tokens (refresh_token_id, oauth2_session_id, token_hash, access_token_id, created_at,
             parent_refresh_token_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![t.id, t.session_id, hash, t.access_token_id, t.created_at, t.parent_refresh_token_id],
    )?;
    Ok(())
}

const ACCESS_COLUMNS: &str = "access_token_id, oauth2_session_id, created_at, expires_at, revoked_at, first_used_at";

fn access_from_row(r: &rusqlite::Row) -> rusqlite::Result<AccessToken> {
    Ok(AccessToken {
        id: r.get(0)?,
        session_id: r.get(1)?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        revoked_at: r.get(4)?,
        first_used_at: r.get(5)?,
    })
}

pub fn access_by_hash(conn: &Connection, hash: &str) -> StoreResult<Option<AccessToken>> {
    let sql = format!("SELECT {ACCESS_COLUMNS} FROM oauth2_access_tokens WHERE token_hash = ?1");
    opt(conn.query_row(&sql, [hash], access_from_row))
}

pub fn access_by_id(conn: &Connection, id: &str) -> StoreResult<Option<AccessToken>> {
    let sql = format!("SELECT {ACCESS_COLUMNS} FROM oauth2_access_tokens WHERE access_token_id = ?1");
    opt(conn.query_row(&sql, [id], access_from_row))
}

const REFRESH_COLUMNS: &str =
    "refresh_token_id, oauth2_session_id, access_token_id, created_at, consumed_at, revoked_at,
    next_refresh_token_id, parent_refresh_token_id";

fn refresh_from_row(r: &rusqlite::Row) -> rusqlite::Result<RefreshToken> {
    Ok(RefreshToken {
        id: r.get(0)?,
        session_id: r.get(1)?,
        access_token_id: r.get(2)?,
        created_at: r.get(3)?,
        consumed_at: r.get(4)?,
        revoked_at: r.get(5)?,
        next_refresh_token_id: r.get(6)?,
        parent_refresh_token_id: r.get(7)?,
    })
}

pub fn refresh_by_hash(conn: &Connection, hash: &str) -> StoreResult<Option<RefreshToken>> {
    let sql = format!("SELECT {REFRESH_COLUMNS} FROM oauth2_refresh_tokens WHERE token_hash = ?1");
    opt(conn.query_row(&sql, [hash], refresh_from_row))
}

/// The tokens issued by rotating `parent` (more than one when the client refreshed concurrently
/// or retried), plus its recorded successor for tokens issued before parents were recorded.
pub fn successors(conn: &Connection, parent: &RefreshToken) -> StoreResult<Vec<RefreshToken>> {
    let sql = format!(
        "SELECT {REFRESH_COLUMNS} FROM oauth2_refresh_tokens
         WHERE parent_refresh_token_id = ?1 OR refresh_token_id = ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![parent.id, parent.next_refresh_token_id], refresh_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks `id` consumed and points it at its successor; false when it was consumed meanwhile.
pub fn consume_refresh(conn: &Connection, id: &str, next_id: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE oauth2_refresh_tokens SET consumed_at = ?2, next_refresh_token_id = ?3 WHERE refresh_token_id = ?1 AND consumed_at IS NULL",
        params![id, now, next_id],
    )?;
    Ok(n == 1)
}

pub fn set_next_refresh(conn: &Connection, id: &str, next_id: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE oauth2_refresh_tokens SET next_refresh_token_id = ?2 WHERE refresh_token_id = ?1",
        params![id, next_id],
    )?;
    Ok(())
}

pub fn revoke_access(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE oauth2_access_tokens SET revoked_at = ?2 WHERE access_token_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Records the first successful use (introspection) of an access token; cheap when already set.
pub fn mark_access_used(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE oauth2_access_tokens SET first_used_at = ?2 WHERE access_token_id = ?1 AND first_used_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Everything introspection needs about an access or refresh token, in one query.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub token_id: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub dead: bool,
    pub first_used_at: Option<i64>,
    pub session_id: String,
    pub session_finished: bool,
    pub scope: String,
    /// The session's OAuth client (`None` for a personal session a user owns).
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub user_valid: bool,
    /// The user's `can_request_admin` flag right now (false without a user).
    pub user_can_request_admin: bool,
    /// A personal session whose `urn:synapse:admin:*` the operator granted explicitly.
    pub synapse_admin_by_operator: bool,
}

pub fn introspect_access(conn: &Connection, hash: &str) -> StoreResult<Option<TokenInfo>> {
    Ok(conn
        .prepare_cached(
            "SELECT t.access_token_id, t.created_at, t.expires_at, t.revoked_at IS NOT NULL, t.first_used_at,
                    s.oauth2_session_id, s.finished_at IS NOT NULL, s.scope, s.client_id,
                    u.user_id, u.username, (u.user_id IS NULL OR (u.locked_at IS NULL AND u.deactivated_at IS NULL)),
                    COALESCE(u.can_request_admin, 0), 0
             FROM oauth2_access_tokens t
             JOIN oauth2_sessions s ON s.oauth2_session_id = t.oauth2_session_id
             LEFT JOIN users u ON u.user_id = s.user_id
             WHERE t.token_hash = ?1",
        )?
        .query_row([hash], info_from_row)
        .optional()?)
}

pub fn introspect_refresh(conn: &Connection, hash: &str) -> StoreResult<Option<TokenInfo>> {
    Ok(conn
        .prepare_cached(
            "SELECT t.refresh_token_id, t.created_at, NULL, (t.revoked_at IS NOT NULL OR t.consumed_at IS NOT NULL), NULL,
                    s.oauth2_session_id, s.finished_at IS NOT NULL, s.scope, s.client_id,
                    u.user_id, u.username, (u.user_id IS NULL OR (u.locked_at IS NULL AND u.deactivated_at IS NULL)),
                    COALESCE(u.can_request_admin, 0), 0
             FROM oauth2_refresh_tokens t
             JOIN oauth2_sessions s ON s.oauth2_session_id = t.oauth2_session_id
             LEFT JOIN users u ON u.user_id = s.user_id
             WHERE t.token_hash = ?1",
        )?
        .query_row([hash], info_from_row)
        .optional()?)
}

pub(crate) fn info_from_row(r: &rusqlite::Row) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        token_id: r.get(0)?,
        created_at: r.get(1)?,
        expires_at: r.get(2)?,
        dead: r.get(3)?,
        first_used_at: r.get(4)?,
        session_id: r.get(5)?,
        session_finished: r.get(6)?,
        scope: r.get(7)?,
        client_id: r.get(8)?,
        user_id: r.get(9)?,
        username: r.get(10)?,
        user_valid: r.get(11)?,
        user_can_request_admin: r.get(12)?,
        synapse_admin_by_operator: r.get(13)?,
    })
}

/// How long a consumed refresh token is remembered (seconds).
pub const REUSE_DETECTION_WINDOW: i64 = 7 * 24 * 3600;

/// Deletes expired and long-dead rows; returns how many went.
pub fn cleanup(conn: &Connection, now: i64) -> StoreResult<usize> {
    let hour_ago = now - 3600;
    let mut n = conn.execute(
        "DELETE FROM oauth2_access_tokens WHERE (expires_at IS NOT NULL AND expires_at < ?1) OR revoked_at < ?1",
        [hour_ago],
    )?;
    // Consumed refresh tokens are kept a week, so a stolen one presented late still ends its
    // session (reuse detection) instead of being merely unknown.
    n += conn.execute(
        "DELETE FROM oauth2_refresh_tokens WHERE revoked_at < ?1 OR consumed_at < ?2",
        [hour_ago, now - REUSE_DETECTION_WINDOW],
    )?;
    n += conn.execute("DELETE FROM client_assertion_jtis WHERE expires_at < ?1", [now])?;
    Ok(n)
}
