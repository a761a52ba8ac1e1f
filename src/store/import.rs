//! Bulk inserts for `syn2mas migrate`: a whole Synapse user base written in one transaction on a
//! connection of its own (the server is not running, as for `database migrate`). Statements are
//! prepared once and reused for every row.

use std::path::Path;

use rusqlite::{Connection, Transaction, params};

use super::StoreResult;

/// Opens the database at `path` for an offline bulk import, migrated to the newest schema.
pub fn open(path: &Path) -> StoreResult<Connection> {
    let mut conn = super::open_write_connection(path)?;
    super::migrate(&mut conn)?;
    super::restrict_permissions(path);
    Ok(conn)
}

/// The tables an import fills; it refuses to run unless they are all empty.
const IMPORT_TABLES: [&str; 9] = [
    "users",
    "user_passwords",
    "user_emails",
    "user_unsupported_third_party_ids",
    "user_synapse_external_ids",
    "upstream_oauth_links",
    "compat_sessions",
    "compat_access_tokens",
    "compat_refresh_tokens",
];

/// The first import table that already holds rows, if any (tables an older schema lacks are empty).
pub fn first_non_empty_table(conn: &Connection) -> StoreResult<Option<&'static str>> {
    for table in IMPORT_TABLES {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            continue;
        }
        let any: bool = conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| r.get(0))?;
        if any {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// Starts the one transaction of an import (`BEGIN IMMEDIATE`: a concurrent writer fails now, not
/// at commit).
pub fn begin(conn: &mut Connection) -> StoreResult<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
}

pub struct ImportedUser<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub created_at: i64,
    pub locked_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub can_request_admin: bool,
    pub is_guest: bool,
}

pub fn insert_user(conn: &Connection, u: &ImportedUser<'_>) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO users (user_id, username, created_at, locked_at, deactivated_at, can_request_admin, is_guest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        u.id,
        u.username,
        u.created_at,
        u.locked_at,
        u.deactivated_at,
        u.can_request_admin,
        u.is_guest
    ])?;
    Ok(())
}

/// A hash kept verbatim, tagged with the scheme version that verifies it.
pub fn insert_password(
    conn: &Connection,
    id: &str,
    user_id: &str,
    hash: &str,
    version: u16,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO user_passwords (user_password_id, user_id, hashed_password, version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, user_id, hash, version, now])?;
    Ok(())
}

/// Returns false when the user already has this address (Synapse compares case-sensitively).
pub fn insert_email(conn: &Connection, id: &str, user_id: &str, email: &str, created_at: i64) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO user_emails (user_email_id, user_id, email, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![id, user_id, email, created_at])?
        == 1)
}

pub fn insert_unsupported_threepid(
    conn: &Connection,
    user_id: &str,
    medium: &str,
    address: &str,
    created_at: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO user_unsupported_third_party_ids (user_id, medium, address, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![user_id, medium, address, created_at])?;
    Ok(())
}

pub fn insert_external_id(
    conn: &Connection,
    user_id: &str,
    auth_provider: &str,
    external_id: &str,
    created_at: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO user_synapse_external_ids (user_id, auth_provider, external_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, auth_provider, external_id, created_at])?;
    Ok(())
}

pub struct ImportedSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    /// `None`: a session of its own for a Synapse access token without a device.
    pub device_id: Option<&'a str>,
    pub is_synapse_admin: bool,
    pub human_name: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub created_at: i64,
    pub last_active_at: Option<i64>,
    pub last_active_ip: Option<&'a str>,
}

pub fn insert_compat_session(conn: &Connection, s: &ImportedSession<'_>) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO compat_sessions (compat_session_id, user_id, device_id, is_synapse_admin, human_name, user_agent,
                                      created_at, last_active_at, last_active_ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        s.id,
        s.user_id,
        s.device_id,
        s.is_synapse_admin,
        s.human_name,
        s.user_agent,
        s.created_at,
        s.last_active_at,
        s.last_active_ip
    ])?;
    Ok(())
}

/// An access token by its hash (as every token here is kept).
pub fn insert_compat_access(
    conn: &Connection,
    id: &str,
    session_id: &str,
    token_hash: &str,
    created_at: i64,
    expires_at: Option<i64>,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, token_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, session_id, token_hash, created_at, expires_at])?;
    Ok(())
}

pub fn insert_compat_refresh(
    conn: &Connection,
    id: &str,
    session_id: &str,
    access_id: Option<&str>,
    token_hash: &str,
    created_at: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO compat_refresh_tokens (compat_refresh_token_id, compat_session_id, compat_access_token_id, token_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, session_id, access_id, token_hash, created_at])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{insert_user as fixture_user, memory_db};

    #[test]
    fn an_empty_database_is_empty_and_one_user_is_not() {
        let conn = memory_db();
        assert_eq!(first_non_empty_table(&conn).unwrap(), None);
        fixture_user(&conn, "alice");
        assert_eq!(first_non_empty_table(&conn).unwrap(), Some("users"));
    }
}
