//! `site_secrets` and `signing_keys`: secrets generated on first start.

use rusqlite::{Connection, params};

use super::StoreResult;

/// Stores `value` unless a value exists; returns the value that is now stored.
pub fn get_or_insert_secret(conn: &Connection, name: &str, value: &str, now: i64) -> StoreResult<String> {
    conn.execute(
        "INSERT INTO site_secrets (name, value, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
        params![name, value, now],
    )?;
    Ok(conn.query_row("SELECT value FROM site_secrets WHERE name = ?1", [name], |r| r.get(0))?)
}

pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub pem: String,
}

pub fn list_signing_keys(conn: &Connection) -> StoreResult<Vec<StoredKey>> {
    let mut stmt = conn.prepare("SELECT kid, alg, pem FROM signing_keys ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| Ok(StoredKey { kid: r.get(0)?, alg: r.get(1)?, pem: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_signing_key(conn: &Connection, key: &StoredKey, now: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO signing_keys (kid, alg, pem, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (kid) DO NOTHING",
        params![key.kid, key.alg, key.pem, now],
    )?;
    Ok(())
}
