//! `compat_sessions`, `compat_access_tokens`, `compat_refresh_tokens`, `compat_sso_logins`.

use rusqlite::{Connection, OptionalExtension, params};

use super::page::{self, Filter, Page, PageRequest, Table};
use super::sessions::{Detailed, SessionActivity, SessionFilter};
use super::{StoreResult, opt};
use crate::rng::Rng;
use crate::store::tokens::TokenInfo;

#[derive(Debug, Clone)]
pub struct CompatSession {
    pub id: String,
    pub user_id: String,
    /// `None` for a session without a Matrix device (a device-less Synapse token, imported as MAS
    /// does); every login here makes one with a device.
    pub device_id: Option<String>,
    pub user_session_id: Option<String>,
    pub is_synapse_admin: bool,
    pub human_name: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const COLUMNS: &str =
    "compat_session_id, user_id, device_id, user_session_id, is_synapse_admin, human_name, created_at, finished_at";

fn session_from_row(r: &rusqlite::Row) -> rusqlite::Result<CompatSession> {
    Ok(CompatSession {
        id: r.get(0)?,
        user_id: r.get(1)?,
        device_id: r.get(2)?,
        user_session_id: r.get(3)?,
        is_synapse_admin: r.get(4)?,
        human_name: r.get(5)?,
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
    })
}

pub fn insert_session(conn: &Connection, s: &CompatSession, user_agent: Option<&str>) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO compat_sessions (compat_session_id, user_id, device_id, user_session_id, is_synapse_admin, human_name, user_agent, created_at, last_active_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![s.id, s.user_id, s.device_id, s.user_session_id, s.is_synapse_admin, s.human_name, user_agent, s.created_at],
    )?;
    Ok(())
}

pub fn session_by_id(conn: &Connection, id: &str) -> StoreResult<Option<CompatSession>> {
    let sql = format!("SELECT {COLUMNS} FROM compat_sessions WHERE compat_session_id = ?1");
    opt(conn.query_row(&sql, [id], session_from_row))
}

pub fn active_for_user(conn: &Connection, user_id: &str) -> StoreResult<Vec<CompatSession>> {
    let sql =
        format!("SELECT {COLUMNS} FROM compat_sessions WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], session_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ends a session and its access tokens; false when it had already ended (or does not exist).
pub fn finish(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE compat_sessions SET finished_at = ?2 WHERE compat_session_id = ?1 AND finished_at IS NULL",
        params![id, now],
    )?;
    conn.execute(
        "UPDATE compat_access_tokens SET revoked_at = ?2 WHERE compat_session_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(n > 0)
}

pub fn insert_access(
    conn: &Connection,
    id: &str,
    session_id: &str,
    hash: &str,
    now: i64,
    expires_at: Option<i64>,
) -> StoreResult<String> {
    conn.execute(
        "INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, token_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, session_id, hash, now, expires_at],
    )?;
    Ok(id.to_string())
}

pub fn insert_refresh(
    conn: &Connection,
    id: &str,
    session_id: &str,
    access_id: &str,
    hash: &str,
    now: i64,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO compat_refresh_tokens (compat_refresh_token_id, compat_session_id, compat_access_token_id, token_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, session_id, access_id, hash, now],
    )?;
    Ok(())
}

/// The session of an access token (for logout): (session, token revoked or expired?).
pub fn session_of_access(conn: &Connection, hash: &str, now: i64) -> StoreResult<Option<CompatSession>> {
    let sql = format!(
        "SELECT {} FROM compat_access_tokens t JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
         WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2) AND s.finished_at IS NULL",
        COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
    );
    Ok(conn.query_row(&sql, params![hash, now], session_from_row).optional()?)
}

/// Consumes a refresh token: returns its session and the access token it belonged to.
pub fn consume_refresh(
    conn: &Connection,
    hash: &str,
    now: i64,
) -> StoreResult<Option<(CompatSession, Option<String>)>> {
    let row: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT compat_refresh_token_id, compat_session_id, compat_access_token_id FROM compat_refresh_tokens
             WHERE token_hash = ?1 AND consumed_at IS NULL",
            [hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((id, session_id, access_id)) = row else { return Ok(None) };
    let Some(session) = session_by_id(conn, &session_id)?.filter(|s| s.finished_at.is_none()) else { return Ok(None) };
    conn.execute(
        "UPDATE compat_refresh_tokens SET consumed_at = ?2 WHERE compat_refresh_token_id = ?1",
        params![id, now],
    )?;
    Ok(Some((session, access_id)))
}

pub fn expire_access(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE compat_access_tokens SET revoked_at = ?2 WHERE compat_access_token_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

/// Introspection view of a compat access or refresh token: (token, device id if the session has a
/// device, is_synapse_admin).
pub fn introspect(
    conn: &Connection,
    hash: &str,
    refresh: bool,
) -> StoreResult<Option<(TokenInfo, Option<String>, bool)>> {
    let sql = if refresh {
        "SELECT t.compat_refresh_token_id, t.created_at, NULL, t.consumed_at IS NOT NULL,
                s.compat_session_id, s.finished_at IS NOT NULL, u.user_id, u.username,
                (u.locked_at IS NULL AND u.deactivated_at IS NULL), s.device_id, s.is_synapse_admin
         FROM compat_refresh_tokens t JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
         JOIN users u ON u.user_id = s.user_id WHERE t.token_hash = ?1"
    } else {
        "SELECT t.compat_access_token_id, t.created_at, t.expires_at, t.revoked_at IS NOT NULL,
                s.compat_session_id, s.finished_at IS NOT NULL, u.user_id, u.username,
                (u.locked_at IS NULL AND u.deactivated_at IS NULL), s.device_id, s.is_synapse_admin
         FROM compat_access_tokens t JOIN compat_sessions s ON s.compat_session_id = t.compat_session_id
         JOIN users u ON u.user_id = s.user_id WHERE t.token_hash = ?1"
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row([hash], |r| {
            Ok((
                TokenInfo {
                    token_id: r.get(0)?,
                    created_at: r.get(1)?,
                    expires_at: r.get(2)?,
                    dead: r.get(3)?,
                    first_used_at: None,
                    session_id: r.get(4)?,
                    session_finished: r.get(5)?,
                    scope: String::new(),
                    client_id: Some("legacy".into()),
                    user_id: r.get(6)?,
                    username: r.get(7)?,
                    user_valid: r.get(8)?,
                    user_can_request_admin: false,
                    synapse_admin_by_operator: false,
                },
                r.get::<_, Option<String>>(9)?,
                r.get::<_, bool>(10)?,
            ))
        })
        .optional()?)
}

pub struct SsoLogin {
    pub id: String,
    pub redirect_uri: String,
    pub user_session_id: Option<String>,
    pub created_at: i64,
    pub fulfilled_at: Option<i64>,
    pub exchanged_at: Option<i64>,
}

fn sso_from_row(r: &rusqlite::Row) -> rusqlite::Result<SsoLogin> {
    Ok(SsoLogin {
        id: r.get(0)?,
        redirect_uri: r.get(1)?,
        user_session_id: r.get(2)?,
        created_at: r.get(3)?,
        fulfilled_at: r.get(4)?,
        exchanged_at: r.get(5)?,
    })
}

const SSO_COLUMNS: &str = "compat_sso_login_id, redirect_uri, user_session_id, created_at, fulfilled_at, exchanged_at";

pub fn insert_sso(conn: &Connection, id: &str, redirect_uri: &str, now: i64, rng: &dyn Rng) -> StoreResult<()> {
    // The login token is chosen at confirmation; until then the column holds an unguessable filler.
    let filler = format!("pending-{}", rng.alnum(32));
    conn.execute(
        "INSERT INTO compat_sso_logins (compat_sso_login_id, redirect_uri, login_token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, redirect_uri, filler, now],
    )?;
    Ok(())
}

/// Deletes SSO logins started before `created_before`: the confirmation page and the login token
/// are long expired by then, and anyone can start one without signing in.
pub fn prune_sso(conn: &Connection, created_before: i64) -> StoreResult<usize> {
    Ok(conn.execute("DELETE FROM compat_sso_logins WHERE created_at < ?1", [created_before])?)
}

pub fn sso_by_id(conn: &Connection, id: &str) -> StoreResult<Option<SsoLogin>> {
    let sql = format!("SELECT {SSO_COLUMNS} FROM compat_sso_logins WHERE compat_sso_login_id = ?1");
    opt(conn.query_row(&sql, [id], sso_from_row))
}

pub fn sso_by_token(conn: &Connection, token_hash: &str) -> StoreResult<Option<SsoLogin>> {
    let sql = format!("SELECT {SSO_COLUMNS} FROM compat_sso_logins WHERE login_token_hash = ?1");
    opt(conn.query_row(&sql, [token_hash], sso_from_row))
}

/// The user confirmed: binds the browser session and sets the login token (known only now).
pub fn fulfill_sso(
    conn: &Connection,
    id: &str,
    user_session_id: &str,
    token_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE compat_sso_logins SET fulfilled_at = ?2, user_session_id = ?3, login_token_hash = ?4
         WHERE compat_sso_login_id = ?1 AND fulfilled_at IS NULL",
        params![id, now, user_session_id, token_hash],
    )? == 1)
}

pub fn exchange_sso(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE compat_sso_logins SET exchanged_at = ?2 WHERE compat_sso_login_id = ?1 AND exchanged_at IS NULL",
        params![id, now],
    )? == 1)
}

/// Active compat sessions of a user with their user agent and last activity (account page).
pub fn active_with_activity(
    conn: &Connection,
    user_id: &str,
) -> StoreResult<Vec<(CompatSession, super::sessions::SessionActivity)>> {
    let sql = format!(
        "SELECT {COLUMNS}, user_agent, last_active_at, last_active_ip FROM compat_sessions
         WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            session_from_row(r)?,
            super::sessions::SessionActivity {
                user_agent: r.get(8)?,
                last_active_at: r.get(9)?,
                last_active_ip: r.get(10)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets where compat sessions were seen from once inactive since `before`. Returns how many.
pub fn clear_stale_ips(conn: &Connection, before: i64) -> StoreResult<usize> {
    Ok(conn.execute(
        "UPDATE compat_sessions SET last_active_ip = NULL
         WHERE last_active_ip IS NOT NULL AND coalesce(last_active_at, created_at) < ?1",
        [before],
    )?)
}

const DETAILED: Table = Table {
    name: "compat_sessions",
    key: "compat_session_id",
    columns: "compat_session_id, user_id, device_id, user_session_id, is_synapse_admin, human_name, created_at, \
              finished_at, user_agent, last_active_at, last_active_ip",
};

fn detailed_from_row(r: &rusqlite::Row) -> rusqlite::Result<Detailed<CompatSession>> {
    let session = session_from_row(r)?;
    let human_name = session.human_name.clone();
    Ok(Detailed {
        session,
        activity: SessionActivity { user_agent: r.get(8)?, last_active_at: r.get(9)?, last_active_ip: r.get(10)? },
        human_name,
    })
}

fn filter_of(f: &SessionFilter) -> Filter {
    let mut filter = Filter::new();
    filter.and_eq("user_id = ?", f.user_id.clone()).and_flag(
        f.active,
        "finished_at IS NULL",
        "finished_at IS NOT NULL",
    );
    filter
}

/// Compat sessions for the admin API (`SessionFilter::client_id` does not apply).
pub fn page(conn: &Connection, f: &SessionFilter, request: &PageRequest) -> StoreResult<Page<Detailed<CompatSession>>> {
    page::fetch(conn, &DETAILED, &filter_of(f), request, detailed_from_row, |d| &d.session.id)
}

pub fn count(conn: &Connection, f: &SessionFilter) -> StoreResult<usize> {
    page::count(conn, &DETAILED, &filter_of(f))
}

pub fn detailed_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Detailed<CompatSession>>> {
    let mut filter = Filter::new();
    filter.and("compat_session_id = ?", [id.to_string().into()]);
    let page = page::fetch(conn, &DETAILED, &filter, &PageRequest::first(1), detailed_from_row, |d| &d.session.id)?;
    Ok(page.items.into_iter().next())
}

/// Active compat sessions last seen before `before`, least recently seen first, after `after`;
/// at most `limit` (inactive-session expiry).
pub fn idle_sessions(
    conn: &Connection,
    before: i64,
    after: Option<&super::sessions::IdleCursor>,
    limit: usize,
) -> StoreResult<Vec<super::sessions::IdleSession>> {
    super::sessions::idle_in(conn, "compat_sessions", "compat_session_id", before, after, limit)
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, params};

    use super::*;
    use crate::store::test_support::{insert_user, memory_db};

    /// The schema of the compat tables: (type, name, table, SQL) of each table and index.
    fn schema(conn: &Connection, kind: &str) -> Vec<(String, String, Option<String>)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = ?1 AND tbl_name LIKE 'compat%' ORDER BY name",
            )
            .unwrap();
        stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_migration_lets_compat_sessions_go_without_a_device_and_keeps_every_row_index_and_key() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        crate::store::migrate_to(&mut conn, 15).unwrap();
        let indexes_before = schema(&conn, "index");
        let bob = insert_user(&conn, "bob");
        // What V15 holds: a session with a device, its access and refresh tokens, an SSO login
        // bound to it, and an ended session.
        conn.execute_batch(&format!(
            "INSERT INTO user_sessions (user_session_id, user_id, created_at, authenticated_at) VALUES ('BS1', '{bob}', 5, 5);
             INSERT INTO compat_sessions (compat_session_id, user_id, device_id, user_session_id, is_synapse_admin,
                                          human_name, user_agent, created_at, finished_at, last_active_at, last_active_ip)
                 VALUES ('CS1', '{bob}', 'BOBPHONE', 'BS1', 1, 'Phone', 'Element', 10, NULL, 20, '192.0.2.1'),
                        ('CS2', '{bob}', 'BOBOLD', NULL, 0, NULL, NULL, 1, 2, NULL, NULL);
             INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, token_hash, created_at, expires_at)
                 VALUES ('AT1', 'CS1', 'hash-at1', 10, 99), ('AT2', 'CS2', 'hash-at2', 1, NULL);
             INSERT INTO compat_refresh_tokens (compat_refresh_token_id, compat_session_id, compat_access_token_id,
                                                token_hash, created_at)
                 VALUES ('RT1', 'CS1', 'AT1', 'hash-rt1', 10);
             INSERT INTO compat_sso_logins (compat_sso_login_id, redirect_uri, login_token_hash, user_session_id,
                                            compat_session_id, created_at, fulfilled_at, exchanged_at)
                 VALUES ('SSO1', 'https://client.example/', 'hash-sso1', 'BS1', 'CS1', 10, 11, 12);"
        ))
        .unwrap();
        let refused = conn.execute(
            "INSERT INTO compat_sessions (compat_session_id, user_id, device_id, created_at) VALUES ('CS3', ?1, NULL, 1)",
            [&bob],
        );
        assert!(refused.is_err(), "V15 refuses a session without a device");

        crate::store::migrate(&mut conn).unwrap();

        // Every row and value is kept.
        let s = session_by_id(&conn, "CS1").unwrap().unwrap();
        assert_eq!(s.device_id.as_deref(), Some("BOBPHONE"));
        assert_eq!(s.user_session_id.as_deref(), Some("BS1"));
        assert!(s.is_synapse_admin);
        assert_eq!((s.human_name.as_deref(), s.created_at, s.finished_at), (Some("Phone"), 10, None));
        let activity: (Option<String>, Option<i64>, Option<String>) = conn
            .query_row(
                "SELECT user_agent, last_active_at, last_active_ip FROM compat_sessions WHERE compat_session_id = 'CS1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(activity, (Some("Element".into()), Some(20), Some("192.0.2.1".into())));
        assert_eq!(session_by_id(&conn, "CS2").unwrap().unwrap().finished_at, Some(2));
        let (info, device, admin) = introspect(&conn, "hash-at1", false).unwrap().unwrap();
        assert_eq!(
            (info.session_id.as_str(), info.expires_at, device.as_deref(), admin),
            ("CS1", Some(99), Some("BOBPHONE"), true)
        );
        assert_eq!(introspect(&conn, "hash-rt1", true).unwrap().unwrap().0.session_id, "CS1");
        let sso = sso_by_id(&conn, "SSO1").unwrap().unwrap();
        assert_eq!((sso.user_session_id.as_deref(), sso.exchanged_at), (Some("BS1"), Some(12)));
        conn.execute_batch("PRAGMA foreign_key_check").unwrap();
        let violations: i64 =
            conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(violations, 0);

        // The same indexes (names, columns, partial conditions) and the same unique keys.
        assert_eq!(schema(&conn, "index"), indexes_before);
        assert!(
            schema(&conn, "table").iter().all(|(name, _, _)| !name.ends_with("_new")),
            "{:?}",
            schema(&conn, "table")
        );
        let duplicate = conn.execute(
            "INSERT INTO compat_access_tokens (compat_access_token_id, compat_session_id, token_hash, created_at)
             VALUES ('AT9', 'CS1', 'hash-at1', 1)",
            [],
        );
        assert!(duplicate.is_err(), "token hashes stay unique");

        // A session without a device now fits.
        insert_session(
            &conn,
            &CompatSession {
                id: "CS3".into(),
                user_id: bob.clone(),
                device_id: None,
                user_session_id: None,
                is_synapse_admin: false,
                human_name: None,
                created_at: 30,
                finished_at: None,
            },
            None,
        )
        .unwrap();
        insert_access(&conn, "AT3", "CS3", "hash-at3", 30, None).unwrap();
        let (_, device, _) = introspect(&conn, "hash-at3", false).unwrap().unwrap();
        assert_eq!(device, None);

        // The keys still point at the rebuilt tables: ending the browser session unbinds the
        // compat session; deleting the access token unbinds its refresh token; deleting the
        // user takes sessions and tokens along, and unbinds the SSO login.
        conn.execute("DELETE FROM user_sessions WHERE user_session_id = 'BS1'", []).unwrap();
        assert_eq!(session_by_id(&conn, "CS1").unwrap().unwrap().user_session_id, None);
        assert!(sso_by_id(&conn, "SSO1").unwrap().is_none(), "an SSO login goes with its browser session");
        conn.execute("DELETE FROM compat_access_tokens WHERE compat_access_token_id = 'AT1'", []).unwrap();
        let access: Option<String> = conn
            .query_row(
                "SELECT compat_access_token_id FROM compat_refresh_tokens WHERE compat_refresh_token_id = 'RT1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(access, None);
        conn.execute("DELETE FROM users WHERE user_id = ?1", params![bob]).unwrap();
        for table in ["compat_sessions", "compat_access_tokens", "compat_refresh_tokens"] {
            assert_eq!(count(&conn, table), 0, "{table} kept rows of a deleted user");
        }
    }

    #[test]
    fn a_session_without_a_device_is_listed_and_ends_like_any_other() {
        let conn = memory_db();
        let bob = insert_user(&conn, "bob");
        let session = CompatSession {
            id: "CS1".into(),
            user_id: bob.clone(),
            device_id: None,
            user_session_id: None,
            is_synapse_admin: false,
            human_name: None,
            created_at: 10,
            finished_at: None,
        };
        insert_session(&conn, &session, None).unwrap();
        insert_access(&conn, "AT1", "CS1", "hash", 10, None).unwrap();
        let active = active_for_user(&conn, &bob).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].device_id, None);
        assert_eq!(active_with_activity(&conn, &bob).unwrap()[0].0.device_id, None);
        assert_eq!(detailed_by_id(&conn, "CS1").unwrap().unwrap().session.device_id, None);
        assert_eq!(session_of_access(&conn, "hash", 11).unwrap().unwrap().id, "CS1");
        assert!(finish(&conn, "CS1", 12).unwrap());
        assert!(session_of_access(&conn, "hash", 13).unwrap().is_none());
        let (info, _, _) = introspect(&conn, "hash", false).unwrap().unwrap();
        assert!(info.dead && info.session_finished);
    }
}
