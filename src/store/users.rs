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

/// The user's password (one row per user; the newest wins should older rows remain).
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

/// Sets a user's password, replacing any earlier one.
pub fn set_password(conn: &Connection, id: &str, user_id: &str, hash: &str, version: u16, now: i64) -> StoreResult<()> {
    conn.execute("DELETE FROM user_passwords WHERE user_id = ?1", [user_id])?;
    conn.execute(
        "INSERT INTO user_passwords (user_password_id, user_id, hashed_password, version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, user_id, hash, version, now],
    )?;
    Ok(())
}

/// Replaces a verified hash by its re-hash under the current scheme, in place. Does nothing when
/// the password changed meanwhile (the newer password wins); returns whether it replaced it.
pub fn upgrade_password(conn: &Connection, stored: &StoredPassword, hash: &str, version: u16) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE user_passwords SET hashed_password = ?3, version = ?4
         WHERE user_password_id = ?1 AND hashed_password = ?2",
        params![stored.id, stored.hash, hash, version],
    )?;
    Ok(changed == 1)
}

pub fn add_email(conn: &Connection, id: &str, user_id: &str, email: &str, now: i64) -> StoreResult<()> {
    insert_email(conn, id, user_id, email, now).map(|_| ())
}

/// Adds an address to a user; returns the new row.
pub fn insert_email(conn: &Connection, id: &str, user_id: &str, email: &str, now: i64) -> StoreResult<UserEmail> {
    let row = UserEmail { id: id.to_string(), user_id: user_id.to_string(), email: email.to_string(), created_at: now };
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

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::*;
    use crate::store::test_support::{insert_user, memory_db};

    fn rows(conn: &Connection, user_id: &str) -> Vec<String> {
        let mut stmt =
            conn.prepare("SELECT hashed_password FROM user_passwords WHERE user_id = ?1 ORDER BY created_at").unwrap();
        stmt.query_map([user_id], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn setting_a_password_replaces_the_earlier_one() {
        let conn = memory_db();
        let id = insert_user(&conn, "bob");
        set_password(&conn, "P1", &id, "first", 1, 10).unwrap();
        set_password(&conn, "P2", &id, "second", 1, 20).unwrap();
        assert_eq!(rows(&conn, &id), ["second"]);
    }

    #[test]
    fn an_upgrade_replaces_in_place_unless_the_password_changed_meanwhile() {
        let conn = memory_db();
        let id = insert_user(&conn, "bob");
        set_password(&conn, "P3", &id, "old", 1, 10).unwrap();
        let stored = current_password(&conn, &id).unwrap().unwrap();
        assert!(upgrade_password(&conn, &stored, "rehashed", 2).unwrap());
        assert_eq!(rows(&conn, &id), ["rehashed"]);
        assert_eq!(current_password(&conn, &id).unwrap().unwrap().version, 2);

        // A password change that lands between verification and upgrade wins.
        set_password(&conn, "P4", &id, "changed", 2, 30).unwrap();
        assert!(!upgrade_password(&conn, &stored, "stale", 2).unwrap());
        assert_eq!(rows(&conn, &id), ["changed"]);
    }

    #[test]
    fn the_migration_keeps_only_the_newest_password_of_each_user() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate_to(&mut conn, 9).unwrap();
        let bob = crate::store::test_support::insert_user(&conn, "bob");
        let eve = crate::store::test_support::insert_user(&conn, "eve");
        // What logins used to leave: a chain of re-hashes, each pointing at the one before.
        let mut previous: Option<String> = None;
        for (i, hash) in ["h1", "h2", "h3", "h4"].iter().enumerate() {
            let id = format!("01PW{i}");
            conn.execute(
                "INSERT INTO user_passwords (user_password_id, user_id, hashed_password, version, upgraded_from_id, created_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                params![id, bob, hash, previous, 100 + i as i64],
            )
            .unwrap();
            previous = Some(id);
        }
        conn.execute(
            "INSERT INTO user_passwords (user_password_id, user_id, hashed_password, version, created_at)
             VALUES ('01PWEVE', ?1, 'only', 1, 5)",
            [&eve],
        )
        .unwrap();
        crate::store::migrate(&mut conn).unwrap();
        assert_eq!(rows(&conn, &bob), ["h4"]);
        assert_eq!(current_password(&conn, &bob).unwrap().unwrap().hash, "h4");
        assert_eq!(rows(&conn, &eve), ["only"]);
        conn.execute_batch("PRAGMA foreign_key_check").unwrap();
    }
}
