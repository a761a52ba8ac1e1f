//! `oauth2_authorization_grants` and `oauth2_device_code_grants`.

use rusqlite::{Connection, Row, params};

use super::{StoreResult, opt};

#[derive(Debug, Clone)]
pub struct AuthorizationGrant {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request carried `redirect_uri` (then the token request must repeat it).
    pub redirect_uri_given: bool,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub response_mode: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub login_hint: Option<String>,
    pub user_session_id: Option<String>,
    pub oauth2_session_id: Option<String>,
    pub created_at: i64,
    pub fulfilled_at: Option<i64>,
    pub exchanged_at: Option<i64>,
    pub cancelled_at: Option<i64>,
}

const GRANT_COLUMNS: &str = "grant_id, client_id, redirect_uri, scope, state, nonce, response_mode, code_challenge,
    code_challenge_method, prompt, login_hint, user_session_id, oauth2_session_id, created_at, fulfilled_at,
    exchanged_at, cancelled_at, redirect_uri_given";

fn grant_from_row(r: &Row) -> rusqlite::Result<AuthorizationGrant> {
    Ok(AuthorizationGrant {
        id: r.get(0)?,
        client_id: r.get(1)?,
        redirect_uri: r.get(2)?,
        scope: r.get(3)?,
        state: r.get(4)?,
        nonce: r.get(5)?,
        response_mode: r.get(6)?,
        code_challenge: r.get(7)?,
        code_challenge_method: r.get(8)?,
        prompt: r.get(9)?,
        login_hint: r.get(10)?,
        user_session_id: r.get(11)?,
        oauth2_session_id: r.get(12)?,
        created_at: r.get(13)?,
        fulfilled_at: r.get(14)?,
        exchanged_at: r.get(15)?,
        cancelled_at: r.get(16)?,
        redirect_uri_given: r.get(17)?,
    })
}

pub fn insert_grant(conn: &Connection, g: &AuthorizationGrant) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO oauth2_authorization_grants (grant_id, client_id, redirect_uri, scope, state, nonce, response_mode,
             code_challenge, code_challenge_method, prompt, login_hint, created_at, redirect_uri_given)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            g.id,
            g.client_id,
            g.redirect_uri,
            g.scope,
            g.state,
            g.nonce,
            g.response_mode,
            g.code_challenge,
            g.code_challenge_method,
            g.prompt,
            g.login_hint,
            g.created_at,
            g.redirect_uri_given
        ],
    )?;
    Ok(())
}

pub fn grant_by_id(conn: &Connection, id: &str) -> StoreResult<Option<AuthorizationGrant>> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth2_authorization_grants WHERE grant_id = ?1");
    opt(conn.query_row(&sql, [id], grant_from_row))
}

pub fn grant_by_code(conn: &Connection, code_hash: &str) -> StoreResult<Option<AuthorizationGrant>> {
    let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth2_authorization_grants WHERE code_hash = ?1");
    opt(conn.query_row(&sql, [code_hash], grant_from_row))
}

/// Consent given: binds the browser session and the code; false if the grant was not pending.
pub fn fulfill_grant(
    conn: &Connection,
    id: &str,
    user_session_id: &str,
    code_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE oauth2_authorization_grants SET fulfilled_at = ?2, user_session_id = ?3, code_hash = ?4
         WHERE grant_id = ?1 AND fulfilled_at IS NULL AND cancelled_at IS NULL",
        params![id, now, user_session_id, code_hash],
    )?;
    Ok(n == 1)
}

pub fn cancel_grant(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE oauth2_authorization_grants SET cancelled_at = ?2 WHERE grant_id = ?1 AND cancelled_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Marks the code exchanged; false when it already was (a replay).
pub fn exchange_grant(conn: &Connection, id: &str, session_id: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE oauth2_authorization_grants SET exchanged_at = ?2, oauth2_session_id = ?3
         WHERE grant_id = ?1 AND exchanged_at IS NULL",
        params![id, now, session_id],
    )?;
    Ok(n == 1)
}

#[derive(Debug, Clone)]
pub struct DeviceGrant {
    pub id: String,
    pub client_id: String,
    pub scope: String,
    pub user_code: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub fulfilled_at: Option<i64>,
    pub rejected_at: Option<i64>,
    pub exchanged_at: Option<i64>,
    pub last_polled_at: Option<i64>,
    pub user_session_id: Option<String>,
}

const DEVICE_COLUMNS: &str = "device_grant_id, client_id, scope, user_code, created_at, expires_at, fulfilled_at,
    rejected_at, exchanged_at, last_polled_at, user_session_id";

fn device_from_row(r: &Row) -> rusqlite::Result<DeviceGrant> {
    Ok(DeviceGrant {
        id: r.get(0)?,
        client_id: r.get(1)?,
        scope: r.get(2)?,
        user_code: r.get(3)?,
        created_at: r.get(4)?,
        expires_at: r.get(5)?,
        fulfilled_at: r.get(6)?,
        rejected_at: r.get(7)?,
        exchanged_at: r.get(8)?,
        last_polled_at: r.get(9)?,
        user_session_id: r.get(10)?,
    })
}

pub fn insert_device(conn: &Connection, g: &DeviceGrant, device_code_hash: &str) -> StoreResult<()> {
    super::on_conflict(
        conn.execute(
            "INSERT INTO oauth2_device_code_grants (device_grant_id, client_id, scope, user_code, device_code_hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![g.id, g.client_id, g.scope, g.user_code, device_code_hash, g.created_at, g.expires_at],
        ),
        "user code",
    )?;
    Ok(())
}

pub fn device_by_id(conn: &Connection, id: &str) -> StoreResult<Option<DeviceGrant>> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM oauth2_device_code_grants WHERE device_grant_id = ?1");
    opt(conn.query_row(&sql, [id], device_from_row))
}

pub fn device_by_user_code(conn: &Connection, user_code: &str) -> StoreResult<Option<DeviceGrant>> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM oauth2_device_code_grants WHERE user_code = ?1");
    opt(conn.query_row(&sql, [user_code], device_from_row))
}

pub fn device_by_code(conn: &Connection, device_code_hash: &str) -> StoreResult<Option<DeviceGrant>> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM oauth2_device_code_grants WHERE device_code_hash = ?1");
    opt(conn.query_row(&sql, [device_code_hash], device_from_row))
}

pub fn decide_device(conn: &Connection, id: &str, user_session_id: &str, approve: bool, now: i64) -> StoreResult<bool> {
    let column = if approve { "fulfilled_at" } else { "rejected_at" };
    let sql = format!(
        "UPDATE oauth2_device_code_grants SET {column} = ?2, user_session_id = ?3
         WHERE device_grant_id = ?1 AND fulfilled_at IS NULL AND rejected_at IS NULL AND expires_at > ?2"
    );
    Ok(conn.execute(&sql, params![id, now, user_session_id])? == 1)
}

pub fn touch_device_poll(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE oauth2_device_code_grants SET last_polled_at = ?2 WHERE device_grant_id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn exchange_device(conn: &Connection, id: &str, session_id: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE oauth2_device_code_grants SET exchanged_at = ?2, oauth2_session_id = ?3
         WHERE device_grant_id = ?1 AND exchanged_at IS NULL AND fulfilled_at IS NOT NULL",
        params![id, now, session_id],
    )?;
    Ok(n == 1)
}

/// Remembers a client-assertion `jti`; false when it was seen before (a replay).
pub fn remember_jti(conn: &Connection, client_id: &str, jti: &str, expires_at: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![client_id, jti, expires_at],
    )?;
    Ok(n == 1)
}

/// Grants are written before anyone signed in; a day after creation every one of them is long
/// expired (codes last 10 minutes, device codes 20), so they go.
pub fn cleanup(conn: &Connection, now: i64) -> StoreResult<usize> {
    let day_ago = now - 86400;
    let mut n = conn.execute("DELETE FROM oauth2_authorization_grants WHERE created_at < ?1", [day_ago])?;
    n += conn.execute("DELETE FROM oauth2_device_code_grants WHERE created_at < ?1", [day_ago])?;
    Ok(n)
}
