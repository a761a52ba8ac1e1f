//! Passkeys (WebAuthn credentials) and the WebAuthn challenges already answered.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreResult;

pub struct Passkey {
    pub id: String,
    pub user_id: String,
    pub credential_id: String,
    pub name: String,
    /// webauthn-rs's `Passkey` as JSON.
    pub credential: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "passkey_id, user_id, credential_id, name, credential, created_at, last_used_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Passkey> {
    Ok(Passkey {
        id: r.get(0)?,
        user_id: r.get(1)?,
        credential_id: r.get(2)?,
        name: r.get(3)?,
        credential: r.get(4)?,
        created_at: r.get(5)?,
        last_used_at: r.get(6)?,
    })
}

/// The user's passkeys, oldest first.
pub fn of_user(c: &Connection, user_id: &str) -> StoreResult<Vec<Passkey>> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {COLUMNS} FROM user_passkeys WHERE user_id = ?1 ORDER BY passkey_id"))?;
    let rows = stmt.query_map([user_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn by_credential_id(c: &Connection, credential_id: &str) -> StoreResult<Option<Passkey>> {
    Ok(c.query_row(&format!("SELECT {COLUMNS} FROM user_passkeys WHERE credential_id = ?1"), [credential_id], row)
        .optional()?)
}

pub fn count(c: &Connection, user_id: &str) -> StoreResult<usize> {
    Ok(c.query_row("SELECT COUNT(*) FROM user_passkeys WHERE user_id = ?1", [user_id], |r| r.get::<_, i64>(0))?
        as usize)
}

/// Adds a passkey; false when the credential is already registered (to anyone).
pub fn insert(c: &Connection, p: &Passkey) -> StoreResult<bool> {
    let n = c.execute(
        "INSERT INTO user_passkeys (passkey_id, user_id, credential_id, name, credential, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (credential_id) DO NOTHING",
        params![p.id, p.user_id, p.credential_id, p.name, p.credential, p.created_at],
    )?;
    Ok(n == 1)
}

/// After a sign-in: the credential's new counter and flags, and when it was used.
pub fn used(c: &Connection, passkey_id: &str, credential: &str, now: i64) -> StoreResult<()> {
    c.execute(
        "UPDATE user_passkeys SET credential = ?2, last_used_at = ?3 WHERE passkey_id = ?1",
        params![passkey_id, credential, now],
    )?;
    Ok(())
}

pub fn rename(c: &Connection, user_id: &str, passkey_id: &str, name: &str) -> StoreResult<bool> {
    let n = c.execute(
        "UPDATE user_passkeys SET name = ?3 WHERE passkey_id = ?2 AND user_id = ?1",
        params![user_id, passkey_id, name],
    )?;
    Ok(n == 1)
}

pub fn delete(c: &Connection, user_id: &str, passkey_id: &str) -> StoreResult<bool> {
    let n =
        c.execute("DELETE FROM user_passkeys WHERE passkey_id = ?2 AND user_id = ?1", params![user_id, passkey_id])?;
    Ok(n == 1)
}

/// Deletes every passkey of the user; how many there were.
pub fn delete_all(c: &Connection, user_id: &str) -> StoreResult<usize> {
    Ok(c.execute("DELETE FROM user_passkeys WHERE user_id = ?1", [user_id])?)
}

/// Marks a challenge answered; false when it already was. Expired entries are pruned.
pub fn use_challenge(c: &Connection, challenge: &str, expires_at: i64, now: i64) -> StoreResult<bool> {
    c.execute("DELETE FROM webauthn_used_challenges WHERE expires_at < ?1", [now])?;
    let n = c.execute(
        "INSERT INTO webauthn_used_challenges (challenge, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![challenge, expires_at],
    )?;
    Ok(n == 1)
}
