//! `user_sessions` (browser) and `oauth2_sessions`.

use rusqlite::{Connection, Row, params};

use super::page::{self, Filter, Page, PageRequest, Table};
use super::{StoreResult, opt};

/// Which table a session lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    OAuth2,
    Compat,
    Browser,
    /// A personal access token's session (`personal_sessions`).
    Personal,
}

/// A session seen at `at` (unix seconds), from `ip` when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRecord {
    pub kind: SessionKind,
    pub session_id: String,
    pub at: i64,
    pub ip: Option<String>,
}

/// Writes batched activity: the time only moves forward, a known IP replaces the stored one.
pub fn record_activity(conn: &Connection, records: &[ActivityRecord]) -> StoreResult<()> {
    for r in records {
        let sql = match r.kind {
            SessionKind::OAuth2 => {
                "UPDATE oauth2_sessions SET last_active_at = max(coalesce(last_active_at, 0), ?2),
                 last_active_ip = coalesce(?3, last_active_ip) WHERE oauth2_session_id = ?1"
            }
            SessionKind::Compat => {
                "UPDATE compat_sessions SET last_active_at = max(coalesce(last_active_at, 0), ?2),
                 last_active_ip = coalesce(?3, last_active_ip) WHERE compat_session_id = ?1"
            }
            SessionKind::Browser => {
                "UPDATE user_sessions SET last_active_at = max(coalesce(last_active_at, 0), ?2),
                 last_active_ip = coalesce(?3, last_active_ip) WHERE user_session_id = ?1"
            }
            SessionKind::Personal => {
                "UPDATE personal_sessions SET last_active_at = max(coalesce(last_active_at, 0), ?2),
                 last_active_ip = coalesce(?3, last_active_ip) WHERE personal_session_id = ?1"
            }
        };
        conn.prepare_cached(sql)?.execute(params![r.session_id, r.at, r.ip])?;
    }
    Ok(())
}

/// Forgets where OAuth, browser and personal sessions were seen from once they have been inactive
/// since `before` (an IP is personal data, kept only as long as it helps the user). Returns how many.
pub fn clear_stale_ips(conn: &Connection, before: i64) -> StoreResult<usize> {
    let mut n = 0;
    for table in ["oauth2_sessions", "user_sessions", "personal_sessions"] {
        n += conn.execute(
            &format!(
                "UPDATE {table} SET last_active_ip = NULL
                 WHERE last_active_ip IS NOT NULL AND coalesce(last_active_at, created_at) < ?1"
            ),
            [before],
        )?;
    }
    Ok(n)
}

#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
    pub authenticated_at: i64,
    pub finished_at: Option<i64>,
}

pub fn insert_browser(
    conn: &Connection,
    s: &BrowserSession,
    user_agent: Option<&str>,
    ip: Option<&str>,
) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO user_sessions (user_session_id, user_id, created_at, authenticated_at, user_agent, last_active_at, last_active_ip)
         VALUES (?1, ?2, ?3, ?4, ?5, ?3, ?6)",
        params![s.id, s.user_id, s.created_at, s.authenticated_at, user_agent, ip],
    )?;
    Ok(())
}

pub fn browser_by_id(conn: &Connection, id: &str) -> StoreResult<Option<BrowserSession>> {
    opt(conn.query_row(
        "SELECT user_session_id, user_id, created_at, authenticated_at, finished_at FROM user_sessions WHERE user_session_id = ?1",
        [id],
        |r| {
            Ok(BrowserSession {
                id: r.get(0)?,
                user_id: r.get(1)?,
                created_at: r.get(2)?,
                authenticated_at: r.get(3)?,
                finished_at: r.get(4)?,
            })
        },
    ))
}

pub fn reauthenticate_browser(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE user_sessions SET authenticated_at = ?2, last_active_at = ?2 WHERE user_session_id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn finish_browser(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE user_sessions SET finished_at = ?2 WHERE user_session_id = ?1 AND finished_at IS NULL",
        params![id, now],
    )?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct OAuthSession {
    pub id: String,
    pub user_id: Option<String>,
    pub user_session_id: Option<String>,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const OAUTH_COLUMNS: &str = "oauth2_session_id, user_id, user_session_id, client_id, scope, created_at, finished_at";

fn oauth_from_row(r: &Row) -> rusqlite::Result<OAuthSession> {
    Ok(OAuthSession {
        id: r.get(0)?,
        user_id: r.get(1)?,
        user_session_id: r.get(2)?,
        client_id: r.get(3)?,
        scope: r.get(4)?,
        created_at: r.get(5)?,
        finished_at: r.get(6)?,
    })
}

pub fn insert_oauth(conn: &Connection, s: &OAuthSession, user_agent: Option<&str>) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO oauth2_sessions (oauth2_session_id, user_id, user_session_id, client_id, scope, created_at, last_active_at, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![s.id, s.user_id, s.user_session_id, s.client_id, s.scope, s.created_at, user_agent],
    )?;
    Ok(())
}

pub fn oauth_by_id(conn: &Connection, id: &str) -> StoreResult<Option<OAuthSession>> {
    let sql = format!("SELECT {OAUTH_COLUMNS} FROM oauth2_sessions WHERE oauth2_session_id = ?1");
    opt(conn.query_row(&sql, [id], oauth_from_row))
}

/// Active OAuth sessions of a user (for device reconciliation and the account page).
pub fn active_oauth_for_user(conn: &Connection, user_id: &str) -> StoreResult<Vec<OAuthSession>> {
    let sql = format!(
        "SELECT {OAUTH_COLUMNS} FROM oauth2_sessions WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], oauth_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ends a session and revokes its tokens; returns false when it had already ended.
pub fn finish_oauth(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    let changed = conn.execute(
        "UPDATE oauth2_sessions SET finished_at = ?2 WHERE oauth2_session_id = ?1 AND finished_at IS NULL",
        params![id, now],
    )?;
    conn.execute(
        "UPDATE oauth2_access_tokens SET revoked_at = ?2 WHERE oauth2_session_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    conn.execute(
        "UPDATE oauth2_refresh_tokens SET revoked_at = ?2 WHERE oauth2_session_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(changed > 0)
}

/// Users (not deactivated: deactivation removes their devices) with an OAuth, compat or personal
/// session that is active or ended at or after `ended_since`, for the device reconciliation.
pub fn users_with_sessions(conn: &Connection, ended_since: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT user_id FROM (
             SELECT user_id FROM oauth2_sessions WHERE user_id IS NOT NULL AND (finished_at IS NULL OR finished_at >= ?1)
             UNION SELECT user_id FROM compat_sessions WHERE finished_at IS NULL OR finished_at >= ?1
             UNION SELECT actor_user_id FROM personal_sessions WHERE revoked_at IS NULL OR revoked_at >= ?1
         ) WHERE user_id IN (SELECT user_id FROM users WHERE deactivated_at IS NULL)",
    )?;
    let rows = stmt.query_map([ended_since], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Active sessions of a user, ended (user deactivation, `manage kill-sessions`). Returns how many.
pub fn finish_all_for_user(conn: &Connection, user_id: &str, now: i64) -> StoreResult<usize> {
    let sessions = active_oauth_for_user(conn, user_id)?;
    for s in &sessions {
        finish_oauth(conn, &s.id, now)?;
    }
    let compat = super::compat::active_for_user(conn, user_id)?;
    for s in &compat {
        super::compat::finish(conn, &s.id, now)?;
    }
    conn.execute(
        "UPDATE user_sessions SET finished_at = ?2 WHERE user_id = ?1 AND finished_at IS NULL",
        params![user_id, now],
    )?;
    Ok(sessions.len() + compat.len())
}

/// What the admin API reads of each kind of session: a page, a count, one row by id.
pub trait Listed: Sized + Send + 'static {
    fn page(c: &Connection, f: &SessionFilter, p: &PageRequest) -> StoreResult<Page<Detailed<Self>>>;
    fn count(c: &Connection, f: &SessionFilter) -> StoreResult<usize>;
    fn detailed_by_id(c: &Connection, id: &str) -> StoreResult<Option<Detailed<Self>>>;
}

impl Listed for BrowserSession {
    fn page(c: &Connection, f: &SessionFilter, p: &PageRequest) -> StoreResult<Page<Detailed<Self>>> {
        page_browser(c, f, p)
    }
    fn count(c: &Connection, f: &SessionFilter) -> StoreResult<usize> {
        count_browser(c, f)
    }
    fn detailed_by_id(c: &Connection, id: &str) -> StoreResult<Option<Detailed<Self>>> {
        browser_detailed_by_id(c, id)
    }
}

impl Listed for OAuthSession {
    fn page(c: &Connection, f: &SessionFilter, p: &PageRequest) -> StoreResult<Page<Detailed<Self>>> {
        page_oauth(c, f, p)
    }
    fn count(c: &Connection, f: &SessionFilter) -> StoreResult<usize> {
        count_oauth(c, f)
    }
    fn detailed_by_id(c: &Connection, id: &str) -> StoreResult<Option<Detailed<Self>>> {
        oauth_detailed_by_id(c, id)
    }
}

impl Listed for super::compat::CompatSession {
    fn page(c: &Connection, f: &SessionFilter, p: &PageRequest) -> StoreResult<Page<Detailed<Self>>> {
        super::compat::page(c, f, p)
    }
    fn count(c: &Connection, f: &SessionFilter) -> StoreResult<usize> {
        super::compat::count(c, f)
    }
    fn detailed_by_id(c: &Connection, id: &str) -> StoreResult<Option<Detailed<Self>>> {
        super::compat::detailed_by_id(c, id)
    }
}

/// When and from where a session was last seen (for the account page).
#[derive(Debug, Clone, Default)]
pub struct SessionActivity {
    pub user_agent: Option<String>,
    pub last_active_at: Option<i64>,
    pub last_active_ip: Option<String>,
}

/// Active OAuth sessions of a user with their activity (account page).
pub fn active_oauth_with_activity(
    conn: &Connection,
    user_id: &str,
) -> StoreResult<Vec<(OAuthSession, SessionActivity)>> {
    let sql = format!(
        "SELECT {OAUTH_COLUMNS}, user_agent, last_active_at, last_active_ip FROM oauth2_sessions
         WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            oauth_from_row(r)?,
            SessionActivity { user_agent: r.get(7)?, last_active_at: r.get(8)?, last_active_ip: r.get(9)? },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Active browser sessions of a user with their activity (account page).
pub fn active_browser_with_activity(
    conn: &Connection,
    user_id: &str,
) -> StoreResult<Vec<(BrowserSession, SessionActivity)>> {
    let mut stmt = conn.prepare(
        "SELECT user_session_id, user_id, created_at, authenticated_at, finished_at, user_agent, last_active_at, last_active_ip
         FROM user_sessions WHERE user_id = ?1 AND finished_at IS NULL ORDER BY created_at DESC",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        Ok((
            BrowserSession {
                id: r.get(0)?,
                user_id: r.get(1)?,
                created_at: r.get(2)?,
                authenticated_at: r.get(3)?,
                finished_at: r.get(4)?,
            },
            SessionActivity { user_agent: r.get(5)?, last_active_at: r.get(6)?, last_active_ip: r.get(7)? },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A session as the admin API shows it: with its activity and its name, if it has one.
#[derive(Debug, Clone)]
pub struct Detailed<S> {
    pub session: S,
    pub activity: SessionActivity,
    pub human_name: Option<String>,
}

/// Which sessions to list (admin API); `client_id` applies to OAuth sessions only.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub user_id: Option<String>,
    /// `true`: not finished; `false`: finished.
    pub active: Option<bool>,
    pub client_id: Option<String>,
}

const OAUTH_DETAILED: Table = Table {
    name: "oauth2_sessions",
    key: "oauth2_session_id",
    columns: "oauth2_session_id, user_id, user_session_id, client_id, scope, created_at, finished_at, \
              user_agent, last_active_at, last_active_ip, human_name",
};

fn oauth_detailed_from_row(r: &Row) -> rusqlite::Result<Detailed<OAuthSession>> {
    Ok(Detailed {
        session: oauth_from_row(r)?,
        activity: SessionActivity { user_agent: r.get(7)?, last_active_at: r.get(8)?, last_active_ip: r.get(9)? },
        human_name: r.get(10)?,
    })
}

fn oauth_filter(f: &SessionFilter) -> Filter {
    let mut filter = Filter::new();
    filter.and_eq("user_id = ?", f.user_id.clone()).and_eq("client_id = ?", f.client_id.clone()).and_flag(
        f.active,
        "finished_at IS NULL",
        "finished_at IS NOT NULL",
    );
    filter
}

pub fn page_oauth(
    conn: &Connection,
    f: &SessionFilter,
    request: &PageRequest,
) -> StoreResult<Page<Detailed<OAuthSession>>> {
    page::fetch(conn, &OAUTH_DETAILED, &oauth_filter(f), request, oauth_detailed_from_row, |d| &d.session.id)
}

pub fn count_oauth(conn: &Connection, f: &SessionFilter) -> StoreResult<usize> {
    page::count(conn, &OAUTH_DETAILED, &oauth_filter(f))
}

pub fn oauth_detailed_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Detailed<OAuthSession>>> {
    let mut filter = Filter::new();
    filter.and("oauth2_session_id = ?", [id.to_string().into()]);
    let page = page::fetch(conn, &OAUTH_DETAILED, &filter, &PageRequest::first(1), oauth_detailed_from_row, |d| {
        &d.session.id
    })?;
    Ok(page.items.into_iter().next())
}

const BROWSER_DETAILED: Table = Table {
    name: "user_sessions",
    key: "user_session_id",
    columns: "user_session_id, user_id, created_at, authenticated_at, finished_at, user_agent, last_active_at, \
              last_active_ip",
};

fn browser_detailed_from_row(r: &Row) -> rusqlite::Result<Detailed<BrowserSession>> {
    Ok(Detailed {
        session: BrowserSession {
            id: r.get(0)?,
            user_id: r.get(1)?,
            created_at: r.get(2)?,
            authenticated_at: r.get(3)?,
            finished_at: r.get(4)?,
        },
        activity: SessionActivity { user_agent: r.get(5)?, last_active_at: r.get(6)?, last_active_ip: r.get(7)? },
        human_name: None,
    })
}

fn browser_filter(f: &SessionFilter) -> Filter {
    let mut filter = Filter::new();
    filter.and_eq("user_id = ?", f.user_id.clone()).and_flag(
        f.active,
        "finished_at IS NULL",
        "finished_at IS NOT NULL",
    );
    filter
}

pub fn page_browser(
    conn: &Connection,
    f: &SessionFilter,
    request: &PageRequest,
) -> StoreResult<Page<Detailed<BrowserSession>>> {
    page::fetch(conn, &BROWSER_DETAILED, &browser_filter(f), request, browser_detailed_from_row, |d| &d.session.id)
}

pub fn count_browser(conn: &Connection, f: &SessionFilter) -> StoreResult<usize> {
    page::count(conn, &BROWSER_DETAILED, &browser_filter(f))
}

pub fn browser_detailed_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Detailed<BrowserSession>>> {
    let mut filter = Filter::new();
    filter.and("user_session_id = ?", [id.to_string().into()]);
    let page = page::fetch(conn, &BROWSER_DETAILED, &filter, &PageRequest::first(1), browser_detailed_from_row, |d| {
        &d.session.id
    })?;
    Ok(page.items.into_iter().next())
}

/// An active session not seen since before some time (inactive-session expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleSession {
    pub id: String,
    pub user_id: String,
    /// `last_active_at`, or `created_at` when the session was never seen.
    pub last_seen: i64,
}

impl IdleSession {
    /// Where the next page of a listing resumes: after this session.
    pub fn cursor(&self) -> IdleCursor {
        (self.last_seen, self.id.clone())
    }
}

/// `(last_seen, id)` of the last session of a page of idle sessions.
pub type IdleCursor = (i64, String);

/// Active OAuth sessions of users last seen before `before`, least recently seen first, after
/// `after`; at most `limit`. Sessions without a user (`client_credentials`) are not listed.
pub fn idle_oauth(
    conn: &Connection,
    before: i64,
    after: Option<&IdleCursor>,
    limit: usize,
) -> StoreResult<Vec<IdleSession>> {
    idle_in(conn, "oauth2_sessions", "oauth2_session_id", before, after, limit)
}

/// Active browser sessions last seen before `before`, as `idle_oauth`.
pub fn idle_browser(
    conn: &Connection,
    before: i64,
    after: Option<&IdleCursor>,
    limit: usize,
) -> StoreResult<Vec<IdleSession>> {
    idle_in(conn, "user_sessions", "user_session_id", before, after, limit)
}

/// Idle active sessions of one session table (`table` and `key` are constants, never input).
pub(super) fn idle_in(
    conn: &Connection,
    table: &str,
    key: &str,
    before: i64,
    after: Option<&IdleCursor>,
    limit: usize,
) -> StoreResult<Vec<IdleSession>> {
    let (after_seen, after_id) = after.map_or((i64::MIN, ""), |(seen, id)| (*seen, id.as_str()));
    let mut stmt = conn.prepare_cached(&idle_sql(table, key))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![before, after_seen, after_id, limit], |r| {
        Ok(IdleSession { id: r.get(0)?, user_id: r.get(1)?, last_seen: r.get(2)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The listing of `idle_in`: it walks the `*_last_seen` index of active sessions (V9).
pub(crate) fn idle_sql(table: &str, key: &str) -> String {
    format!(
        "SELECT {key}, user_id, coalesce(last_active_at, created_at) FROM {table}
         WHERE finished_at IS NULL AND user_id IS NOT NULL
           AND coalesce(last_active_at, created_at) < ?1
           AND (coalesce(last_active_at, created_at), {key}) > (?2, ?3)
         ORDER BY coalesce(last_active_at, created_at), {key} LIMIT ?4"
    )
}
