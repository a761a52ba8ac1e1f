//! Second factors: a TOTP secret per user (stored encrypted) and hashed recovery codes.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreResult;

pub struct Totp {
    /// The secret, encrypted with the site key.
    pub secret: String,
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
}

pub fn totp(c: &Connection, user_id: &str) -> StoreResult<Option<Totp>> {
    Ok(c.query_row("SELECT secret, confirmed_at, last_step FROM user_totp WHERE user_id = ?1", [user_id], |r| {
        Ok(Totp { secret: r.get(0)?, confirmed_at: r.get(1)?, last_step: r.get(2)? })
    })
    .optional()?)
}

/// Whether the user has a confirmed TOTP secret.
pub fn has_totp(c: &Connection, user_id: &str) -> StoreResult<bool> {
    Ok(totp(c, user_id)?.is_some_and(|t| t.confirmed_at.is_some()))
}

/// Whether the user has a second factor: a confirmed TOTP secret or a passkey.
pub fn has_factor(c: &Connection, user_id: &str) -> StoreResult<bool> {
    Ok(has_totp(c, user_id)? || super::passkeys::count(c, user_id)? > 0)
}

/// Starts an enrolment: replaces an unconfirmed secret; a confirmed one is kept (returns false).
pub fn start_totp(c: &Connection, user_id: &str, secret: &str, now: i64) -> StoreResult<bool> {
    c.execute("DELETE FROM user_totp WHERE user_id = ?1 AND confirmed_at IS NULL", [user_id])?;
    let n = c.execute(
        "INSERT INTO user_totp (user_id, secret, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (user_id) DO NOTHING",
        params![user_id, secret, now],
    )?;
    Ok(n == 1)
}

pub fn confirm_totp(c: &Connection, user_id: &str, step: i64, now: i64) -> StoreResult<bool> {
    let n = c.execute(
        "UPDATE user_totp SET confirmed_at = ?2, last_step = ?3 WHERE user_id = ?1 AND confirmed_at IS NULL",
        params![user_id, now, step],
    )?;
    Ok(n == 1)
}

/// Accepts a code of `step` once: false when that step (or a later one) was already used.
pub fn use_step(c: &Connection, user_id: &str, step: i64) -> StoreResult<bool> {
    let n = c.execute(
        "UPDATE user_totp SET last_step = ?2 WHERE user_id = ?1 AND confirmed_at IS NOT NULL AND last_step < ?2",
        params![user_id, step],
    )?;
    Ok(n == 1)
}

/// Replaces every recovery code of the user with these hashes.
pub fn replace_recovery_codes(c: &Connection, user_id: &str, hashes: &[String], now: i64) -> StoreResult<()> {
    c.execute("DELETE FROM user_recovery_codes WHERE user_id = ?1", [user_id])?;
    for h in hashes {
        c.execute(
            "INSERT INTO user_recovery_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3)",
            params![user_id, h, now],
        )?;
    }
    Ok(())
}

/// Uses an unused recovery code; false when there is none with this hash.
pub fn use_recovery_code(c: &Connection, user_id: &str, hash: &str, now: i64) -> StoreResult<bool> {
    let n = c.execute(
        "UPDATE user_recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
        params![user_id, hash, now],
    )?;
    Ok(n == 1)
}

pub fn recovery_codes_left(c: &Connection, user_id: &str) -> StoreResult<usize> {
    Ok(c.query_row("SELECT COUNT(*) FROM user_recovery_codes WHERE user_id = ?1 AND used_at IS NULL", [user_id], |r| {
        r.get::<_, i64>(0)
    })? as usize)
}

/// Removes the user's TOTP secret and recovery codes; true when there was a secret.
pub fn delete_totp(c: &Connection, user_id: &str) -> StoreResult<bool> {
    let n = c.execute("DELETE FROM user_totp WHERE user_id = ?1", [user_id])?;
    c.execute("DELETE FROM user_recovery_codes WHERE user_id = ?1", [user_id])?;
    Ok(n > 0)
}
