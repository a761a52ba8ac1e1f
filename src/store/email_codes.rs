//! `user_email_verifications` (6-digit codes proving an address) and `user_recovery_tickets`
//! (single-use password-recovery links); plus removing an address from `user_emails`.
//!
//! Only hashes are stored: a code as SHA-256 of `<verification id>:<code>`, a ticket as SHA-256.

use rusqlite::{Connection, Row, params};

use super::{StoreResult, opt};
use crate::crypto::sha256_hex;

/// The stored hash of a verification code (salted with the verification's id).
pub fn code_hash(verification_id: &str, code: &str) -> String {
    sha256_hex(format!("{verification_id}:{code}").as_bytes())
}

#[derive(Debug, Clone)]
pub struct EmailVerification {
    pub id: String,
    pub user_id: Option<String>,
    pub email: String,
    pub code_hash: String,
    pub attempts: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub verified_at: Option<i64>,
}

const VERIFICATION_COLUMNS: &str =
    "verification_id, user_id, email, code_hash, attempts, created_at, expires_at, verified_at";

fn verification_from_row(r: &Row) -> rusqlite::Result<EmailVerification> {
    Ok(EmailVerification {
        id: r.get(0)?,
        user_id: r.get(1)?,
        email: r.get(2)?,
        code_hash: r.get(3)?,
        attempts: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        verified_at: r.get(7)?,
    })
}

pub fn insert_verification(conn: &Connection, v: &EmailVerification) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO user_email_verifications (verification_id, user_id, email, code_hash, attempts, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![v.id, v.user_id, v.email, v.code_hash, v.attempts, v.created_at, v.expires_at],
    )?;
    Ok(())
}

pub fn verification_by_id(conn: &Connection, id: &str) -> StoreResult<Option<EmailVerification>> {
    let sql = format!("SELECT {VERIFICATION_COLUMNS} FROM user_email_verifications WHERE verification_id = ?1");
    opt(conn.query_row(&sql, [id], verification_from_row))
}

/// Counts one attempt; returns the new count.
pub fn count_attempt(conn: &Connection, id: &str) -> StoreResult<u32> {
    Ok(conn.query_row(
        "UPDATE user_email_verifications SET attempts = attempts + 1 WHERE verification_id = ?1 RETURNING attempts",
        [id],
        |r| r.get(0),
    )?)
}

/// Marks the verification done; `false` when it already was (a concurrent submission).
pub fn mark_verified(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE user_email_verifications SET verified_at = ?2 WHERE verification_id = ?1 AND verified_at IS NULL",
        params![id, now],
    )? == 1)
}

/// A new code for the same verification (resend): attempts start over.
pub fn replace_code(conn: &Connection, id: &str, code_hash: &str, now: i64, expires_at: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE user_email_verifications SET code_hash = ?2, attempts = 0, created_at = ?3, expires_at = ?4
         WHERE verification_id = ?1 AND verified_at IS NULL",
        params![id, code_hash, now, expires_at],
    )?;
    Ok(())
}

/// Forgets verifications that ended long ago (`older_than`: a timestamp).
pub fn prune_verifications(conn: &Connection, older_than: i64) -> StoreResult<usize> {
    Ok(conn.execute("DELETE FROM user_email_verifications WHERE expires_at < ?1", [older_than])?)
}

/// Removes an address from a user's account; `false` when it was not there.
pub fn remove_email(conn: &Connection, user_id: &str, email: &str) -> StoreResult<bool> {
    Ok(conn
        .execute("DELETE FROM user_emails WHERE user_id = ?1 AND lower(email) = lower(?2)", params![user_id, email])?
        > 0)
}

/// Whether another account already has this address.
pub fn email_used_by_other(conn: &Connection, user_id: &str, email: &str) -> StoreResult<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM user_emails WHERE lower(email) = lower(?2) AND user_id != ?1)",
        params![user_id, email],
        |r| r.get(0),
    )?)
}

#[derive(Debug, Clone)]
pub struct RecoveryTicket {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub fn insert_ticket(conn: &Connection, t: &RecoveryTicket, ticket: &str) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO user_recovery_tickets (recovery_ticket_id, user_id, email, ticket_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![t.id, t.user_id, t.email, sha256_hex(ticket.as_bytes()), t.created_at, t.expires_at],
    )?;
    Ok(())
}

pub fn ticket_by_secret(conn: &Connection, ticket: &str) -> StoreResult<Option<RecoveryTicket>> {
    opt(conn.query_row(
        "SELECT recovery_ticket_id, user_id, email, created_at, expires_at, used_at
         FROM user_recovery_tickets WHERE ticket_hash = ?1",
        [sha256_hex(ticket.as_bytes())],
        |r| {
            Ok(RecoveryTicket {
                id: r.get(0)?,
                user_id: r.get(1)?,
                email: r.get(2)?,
                created_at: r.get(3)?,
                expires_at: r.get(4)?,
                used_at: r.get(5)?,
            })
        },
    ))
}

/// Uses the ticket; `false` when it was used or expired meanwhile. Every other open ticket of the
/// user ends with it.
pub fn use_ticket(conn: &Connection, id: &str, user_id: &str, now: i64) -> StoreResult<bool> {
    let used = conn.execute(
        "UPDATE user_recovery_tickets SET used_at = ?2 WHERE recovery_ticket_id = ?1 AND used_at IS NULL AND expires_at > ?2",
        params![id, now],
    )? == 1;
    if used {
        conn.execute(
            "UPDATE user_recovery_tickets SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
            params![user_id, now],
        )?;
    }
    Ok(used)
}

/// Forgets tickets that ended long ago.
pub fn prune_tickets(conn: &Connection, older_than: i64) -> StoreResult<usize> {
    Ok(conn.execute("DELETE FROM user_recovery_tickets WHERE expires_at < ?1", [older_than])?)
}
