//! `user_registration_tokens` (invite codes for self-registration) and `user_terms`.
//!
//! Tokens are stored as issued: like MAS, the administrator lists and hands them out again.

use rusqlite::{Connection, Row, params};

use super::page::{self, Filter, Page, PageRequest, Table};
use super::{StoreResult, on_conflict, opt};

#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationToken {
    pub id: String,
    pub token: String,
    /// `None`: unlimited.
    pub usage_limit: Option<u32>,
    pub times_used: u32,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Why a token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    Revoked,
    Expired,
    Exhausted,
}

impl RegistrationToken {
    /// `Ok` when the token may be used at `now`.
    pub fn check(&self, now: i64) -> Result<(), TokenProblem> {
        if self.revoked_at.is_some() {
            Err(TokenProblem::Revoked)
        } else if self.expires_at.is_some_and(|e| e <= now) {
            Err(TokenProblem::Expired)
        } else if self.usage_limit.is_some_and(|l| self.times_used >= l) {
            Err(TokenProblem::Exhausted)
        } else {
            Ok(())
        }
    }
}

const COLUMNS: &str =
    "user_registration_token_id, token, usage_limit, times_used, created_at, last_used_at, expires_at, revoked_at";

fn from_row(r: &Row) -> rusqlite::Result<RegistrationToken> {
    Ok(RegistrationToken {
        id: r.get(0)?,
        token: r.get(1)?,
        usage_limit: r.get(2)?,
        times_used: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

pub fn insert(conn: &Connection, t: &RegistrationToken) -> StoreResult<()> {
    on_conflict(
        conn.execute(
            "INSERT INTO user_registration_tokens
               (user_registration_token_id, token, usage_limit, times_used, created_at, last_used_at, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![t.id, t.token, t.usage_limit, t.times_used, t.created_at, t.last_used_at, t.expires_at, t.revoked_at],
        ),
        "registration token",
    )?;
    Ok(())
}

pub fn by_token(conn: &Connection, token: &str) -> StoreResult<Option<RegistrationToken>> {
    let sql = format!("SELECT {COLUMNS} FROM user_registration_tokens WHERE token = ?1");
    opt(conn.query_row(&sql, [token], from_row))
}

pub fn list(conn: &Connection) -> StoreResult<Vec<RegistrationToken>> {
    let sql = format!("SELECT {COLUMNS} FROM user_registration_tokens ORDER BY created_at, token");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a token; `false` when there is no such token (revoking twice keeps the first time).
pub fn revoke(conn: &Connection, token: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE user_registration_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE token = ?1",
        params![token, now],
    )?;
    Ok(n > 0)
}

pub fn by_id(conn: &Connection, id: &str) -> StoreResult<Option<RegistrationToken>> {
    let sql = format!("SELECT {COLUMNS} FROM user_registration_tokens WHERE user_registration_token_id = ?1");
    opt(conn.query_row(&sql, [id], from_row))
}

/// Sets or clears `revoked_at`; `false` when there is no such token.
pub fn set_revoked(conn: &Connection, id: &str, revoked_at: Option<i64>) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE user_registration_tokens SET revoked_at = ?2 WHERE user_registration_token_id = ?1",
        params![id, revoked_at],
    )?;
    Ok(n > 0)
}

pub fn set_expiry(conn: &Connection, id: &str, expires_at: Option<i64>) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE user_registration_tokens SET expires_at = ?2 WHERE user_registration_token_id = ?1",
        params![id, expires_at],
    )?;
    Ok(n > 0)
}

pub fn set_usage_limit(conn: &Connection, id: &str, usage_limit: Option<u32>) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE user_registration_tokens SET usage_limit = ?2 WHERE user_registration_token_id = ?1",
        params![id, usage_limit],
    )?;
    Ok(n > 0)
}

/// Which tokens to list (admin API); each condition is evaluated at `now`.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    /// Used at least once.
    pub used: Option<bool>,
    pub revoked: Option<bool>,
    pub expired: Option<bool>,
    /// Usable right now: not revoked, not expired, not used up.
    pub valid: Option<bool>,
    pub now: i64,
}

const TOKENS: Table = Table { name: "user_registration_tokens", key: "user_registration_token_id", columns: COLUMNS };

fn token_filter(f: &TokenFilter) -> Filter {
    let now = || [f.now.into()];
    let mut filter = Filter::new();
    filter.and_flag(f.used, "times_used > 0", "times_used = 0").and_flag(
        f.revoked,
        "revoked_at IS NOT NULL",
        "revoked_at IS NULL",
    );
    match f.expired {
        Some(true) => filter.and("expires_at IS NOT NULL AND expires_at <= ?", now()),
        Some(false) => filter.and("expires_at IS NULL OR expires_at > ?", now()),
        None => &mut filter,
    };
    // The same condition as `RegistrationToken::check`, written once for both polarities.
    macro_rules! valid {
        () => {
            "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) \
             AND (usage_limit IS NULL OR times_used < usage_limit)"
        };
    }
    match f.valid {
        Some(true) => filter.and(valid!(), now()),
        Some(false) => filter.and(concat!("NOT (", valid!(), ")"), now()),
        None => &mut filter,
    };
    filter
}

pub fn page(conn: &Connection, f: &TokenFilter, request: &PageRequest) -> StoreResult<Page<RegistrationToken>> {
    page::fetch(conn, &TOKENS, &token_filter(f), request, from_row, |t| &t.id)
}

pub fn count(conn: &Connection, f: &TokenFilter) -> StoreResult<usize> {
    page::count(conn, &TOKENS, &token_filter(f))
}

/// Uses the token once: checks and counts in one statement, so two registrations racing for the
/// last use cannot both get it. Call it in the same write as the user creation.
pub fn consume(conn: &Connection, token: &str, now: i64) -> StoreResult<Result<String, TokenProblem>> {
    let n = conn.execute(
        "UPDATE user_registration_tokens SET times_used = times_used + 1, last_used_at = ?2
         WHERE token = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)
           AND (usage_limit IS NULL OR times_used < usage_limit)",
        params![token, now],
    )?;
    let found = by_token(conn, token)?;
    Ok(match (n, found) {
        (_, None) => Err(TokenProblem::Unknown),
        (1, Some(t)) => Ok(t.id),
        (_, Some(t)) => Err(t.check(now).err().unwrap_or(TokenProblem::Exhausted)),
    })
}

/// Records that the user accepted the terms at `url` (idempotent).
pub fn accept_terms(conn: &Connection, id: &str, user_id: &str, url: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "INSERT OR IGNORE INTO user_terms (user_terms_id, user_id, terms_url, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, user_id, url, now],
    )?;
    Ok(())
}

/// The terms URLs a user accepted.
pub fn accepted_terms(conn: &Connection, user_id: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare("SELECT terms_url FROM user_terms WHERE user_id = ?1 ORDER BY created_at")?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
