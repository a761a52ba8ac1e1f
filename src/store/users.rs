//! `users`, `user_passwords`, `user_emails`.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{StoreResult, on_conflict, opt};
use crate::model::User;

const USER_COLUMNS: &str = "user_id, username, display_name, created_at, locked_at, deactivated_at, can_request_admin";

fn user_from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        display_name: r.get(2)?,
        created_at: r.get(3)?,
        locked_at: r.get(4)?,
        deactivated_at: r.get(5)?,
        can_request_admin: r.get(6)?,
    })
}

pub fn insert(conn: &Connection, user: &User) -> StoreResult<()> {
    on_conflict(
        conn.execute(
            "INSERT INTO users (user_id, username, display_name, created_at, can_request_admin) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.id, user.username, user.display_name, user.created_at, user.can_request_admin],
        ),
        "user",
    )?;
    Ok(())
}

pub fn by_username(conn: &Connection, username: &str) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower(?1)");
    opt(conn.query_row(&sql, [username], user_from_row))
}

pub fn by_id(conn: &Connection, id: &str) -> StoreResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1");
    opt(conn.query_row(&sql, [id], user_from_row))
}

pub fn list(conn: &Connection) -> StoreResult<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], user_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_locked(conn: &Connection, user_id: &str, locked_at: Option<i64>) -> StoreResult<()> {
    conn.execute("UPDATE users SET locked_at = ?2 WHERE user_id = ?1", params![user_id, locked_at])?;
    Ok(())
}

pub fn set_deactivated(conn: &Connection, user_id: &str, deactivated_at: Option<i64>) -> StoreResult<()> {
    conn.execute("UPDATE users SET deactivated_at = ?2 WHERE user_id = ?1", params![user_id, deactivated_at])?;
    Ok(())
}

pub fn set_can_request_admin(conn: &Connection, user_id: &str, admin: bool) -> StoreResult<()> {
    conn.execute("UPDATE users SET can_request_admin = ?2 WHERE user_id = ?1", params![user_id, admin])?;
    Ok(())
}

pub fn set_display_name(conn: &Connection, user_id: &str, name: Option<&str>) -> StoreResult<()> {
    conn.execute("UPDATE users SET display_name = ?2 WHERE user_id = ?1", params![user_id, name])?;
    Ok(())
}

pub struct StoredPassword {
    pub id: String,
    pub hash: String,
    pub version: u16,
}

/// The newest password of a user (older rows are kept as history).
pub fn current_password(conn: &Connection, user_id: &str) -> StoreResult<Option<StoredPassword>> {
    Ok(conn
        .query_row(
            "SELECT user_password_id, hashed_password, version FROM user_passwords
             WHERE user_id = ?1 ORDER BY created_at DESC, user_password_id DESC LIMIT 1",
            [user_id],
            |r| Ok(StoredPassword { id: r.get(0)?, hash: r.get(1)?, version: r.get(2)? }),
        )
        .optional()?)
}

pub fn add_password(
    conn: &Connection,
    user_id: &str,
    hash: &str,
    version: u16,
    upgraded_from: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO user_passwords (user_password_id, user_id, hashed_password, version, upgraded_from_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![ulid::Ulid::new().to_string(), user_id, hash, version, upgraded_from, now],
    )?;
    Ok(())
}

pub fn add_email(conn: &Connection, user_id: &str, email: &str, now: i64) -> StoreResult<()> {
    on_conflict(
        conn.execute(
            "INSERT INTO user_emails (user_email_id, user_id, email, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![ulid::Ulid::new().to_string(), user_id, email, now],
        ),
        "email",
    )?;
    Ok(())
}

pub fn emails(conn: &Connection, user_id: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare("SELECT email FROM user_emails WHERE user_id = ?1 ORDER BY created_at, email")?;
    let rows = stmt.query_map([user_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The user owning a (verified) email address.
pub fn by_email(conn: &Connection, email: &str) -> StoreResult<Option<User>> {
    let sql = format!(
        "SELECT {} FROM users u JOIN user_emails e ON e.user_id = u.user_id WHERE lower(e.email) = lower(?1) LIMIT 1",
        USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
    );
    opt(conn.query_row(&sql, [email], user_from_row))
}
