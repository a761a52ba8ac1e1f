//! `users`, `user_passwords`, `user_emails`.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::page::{self, Filter, Page, PageRequest, Table};
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
    insert_email(conn, user_id, email, now).map(|_| ())
}

/// Adds an address to a user; returns the new row.
pub fn insert_email(conn: &Connection, user_id: &str, email: &str, now: i64) -> StoreResult<UserEmail> {
    let row = UserEmail {
        id: ulid::Ulid::new().to_string(),
        user_id: user_id.to_string(),
        email: email.to_string(),
        created_at: now,
    };
    on_conflict(
        conn.execute(
            "INSERT INTO user_emails (user_email_id, user_id, email, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![row.id, row.user_id, row.email, row.created_at],
        ),
        "email",
    )?;
    Ok(row)
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

/// A user's state, as the admin API filters by it (MAS's `filter[status]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// Neither locked nor deactivated.
    Active,
    Locked,
    Deactivated,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// `can_request_admin`.
    pub admin: Option<bool>,
    pub status: Option<UserStatus>,
    /// A case-insensitive substring of the username.
    pub search: Option<String>,
}

const USERS: Table = Table { name: "users", key: "user_id", columns: USER_COLUMNS };

fn user_filter(f: &UserFilter) -> Filter {
    let mut filter = Filter::new();
    filter.and_flag(f.admin, "can_request_admin = 1", "can_request_admin = 0");
    match f.status {
        Some(UserStatus::Active) => filter.and("locked_at IS NULL AND deactivated_at IS NULL", []),
        Some(UserStatus::Locked) => filter.and("locked_at IS NOT NULL", []),
        Some(UserStatus::Deactivated) => filter.and("deactivated_at IS NOT NULL", []),
        None => &mut filter,
    };
    filter.and_eq("instr(lower(username), lower(?)) > 0", f.search.clone());
    filter
}

pub fn page(conn: &Connection, f: &UserFilter, request: &PageRequest) -> StoreResult<Page<User>> {
    page::fetch(conn, &USERS, &user_filter(f), request, user_from_row, |u| &u.id)
}

pub fn count(conn: &Connection, f: &UserFilter) -> StoreResult<usize> {
    page::count(conn, &USERS, &user_filter(f))
}

/// A row of `user_emails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEmail {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub created_at: i64,
}

const EMAIL_COLUMNS: &str = "user_email_id, user_id, email, created_at";
const EMAILS: Table = Table { name: "user_emails", key: "user_email_id", columns: EMAIL_COLUMNS };

fn email_from_row(r: &Row) -> rusqlite::Result<UserEmail> {
    Ok(UserEmail { id: r.get(0)?, user_id: r.get(1)?, email: r.get(2)?, created_at: r.get(3)? })
}

pub fn email_by_id(conn: &Connection, id: &str) -> StoreResult<Option<UserEmail>> {
    let sql = format!("SELECT {EMAIL_COLUMNS} FROM user_emails WHERE user_email_id = ?1");
    opt(conn.query_row(&sql, [id], email_from_row))
}

/// Deletes an address by its id; `false` when there was none.
pub fn delete_email(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM user_emails WHERE user_email_id = ?1", [id])? > 0)
}

#[derive(Debug, Clone, Default)]
pub struct EmailFilter {
    pub user_id: Option<String>,
    /// The whole address, compared case-insensitively.
    pub email: Option<String>,
}

fn email_filter(f: &EmailFilter) -> Filter {
    let mut filter = Filter::new();
    filter.and_eq("user_id = ?", f.user_id.clone()).and_eq("lower(email) = lower(?)", f.email.clone());
    filter
}

pub fn page_emails(conn: &Connection, f: &EmailFilter, request: &PageRequest) -> StoreResult<Page<UserEmail>> {
    page::fetch(conn, &EMAILS, &email_filter(f), request, email_from_row, |e| &e.id)
}

pub fn count_emails(conn: &Connection, f: &EmailFilter) -> StoreResult<usize> {
    page::count(conn, &EMAILS, &email_filter(f))
}
