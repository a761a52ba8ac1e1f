//! `pending_registrations`: sign-ups waiting for the email code (the user is created when the
//! code is entered; see `lifecycle::registration::complete_pending`).

use rusqlite::{Connection, Row, params};

use super::{StoreResult, opt};

#[derive(Debug, Clone)]
pub struct PendingRegistration {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub password_version: u16,
    pub display_name: Option<String>,
    pub accepted_terms: Option<String>,
    pub registration_token_id: Option<String>,
    pub email_verification_id: String,
    /// Where to continue after sign-up (already checked with `safe_next`).
    pub next: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

const COLUMNS: &str = "pending_registration_id, username, password_hash, password_version, display_name, \
     accepted_terms, registration_token_id, email_verification_id, next, created_at, completed_at";

fn from_row(r: &Row) -> rusqlite::Result<PendingRegistration> {
    Ok(PendingRegistration {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        password_version: r.get(3)?,
        display_name: r.get(4)?,
        accepted_terms: r.get(5)?,
        registration_token_id: r.get(6)?,
        email_verification_id: r.get(7)?,
        next: r.get(8)?,
        created_at: r.get(9)?,
        completed_at: r.get(10)?,
    })
}

pub fn insert(conn: &Connection, p: &PendingRegistration) -> StoreResult<()> {
    conn.execute(
        &format!("INSERT INTO pending_registrations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            p.id,
            p.username,
            p.password_hash,
            p.password_version,
            p.display_name,
            p.accepted_terms,
            p.registration_token_id,
            p.email_verification_id,
            p.next,
            p.created_at,
            p.completed_at
        ],
    )?;
    Ok(())
}

pub fn by_id(conn: &Connection, id: &str) -> StoreResult<Option<PendingRegistration>> {
    let sql = format!("SELECT {COLUMNS} FROM pending_registrations WHERE pending_registration_id = ?1");
    opt(conn.query_row(&sql, [id], from_row))
}

/// Marks it done; `false` when it already was (a concurrent submission).
pub fn complete(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE pending_registrations SET completed_at = ?2 WHERE pending_registration_id = ?1 AND completed_at IS NULL",
        params![id, now],
    )? == 1)
}

/// The token string of a registration token id (to consume it).
pub fn token_of(conn: &Connection, token_id: &str) -> StoreResult<Option<String>> {
    opt(conn.query_row(
        "SELECT token FROM user_registration_tokens WHERE user_registration_token_id = ?1",
        [token_id],
        |r| r.get(0),
    ))
}

/// Forgets pending registrations created before `older_than`.
pub fn prune(conn: &Connection, older_than: i64) -> StoreResult<usize> {
    Ok(conn.execute("DELETE FROM pending_registrations WHERE created_at < ?1", [older_than])?)
}
