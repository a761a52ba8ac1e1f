//! `upstream_oauth_providers`, `upstream_oauth_links`.

use rusqlite::{Connection, Row, params};

use super::{StoreError, StoreResult, on_conflict, opt};
use crate::model::upstream::{UpstreamLink, UpstreamProvider};

const PROVIDER_COLUMNS: &str =
    "upstream_oauth_provider_id, metadata, encrypted_client_secret, ui_order, created_at, disabled_at";

type ProviderRow = (String, String, Option<String>, i64, i64, Option<i64>);

fn provider_row(r: &Row) -> rusqlite::Result<ProviderRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn to_provider(row: ProviderRow) -> StoreResult<UpstreamProvider> {
    let (id, metadata, encrypted_client_secret, ui_order, created_at, disabled_at) = row;
    let config = serde_json::from_str(&metadata)
        .map_err(|e| StoreError::Corrupt(format!("upstream provider {id} metadata: {e}")))?;
    Ok(UpstreamProvider { id, config, encrypted_client_secret, ui_order, created_at, disabled_at })
}

/// Every stored provider (enabled or not), in button order.
pub fn list_providers(conn: &Connection) -> StoreResult<Vec<UpstreamProvider>> {
    let sql = format!(
        "SELECT {PROVIDER_COLUMNS} FROM upstream_oauth_providers ORDER BY ui_order, upstream_oauth_provider_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], provider_row)?;
    rows.map(|r| to_provider(r?)).collect()
}

pub fn provider_by_id(conn: &Connection, id: &str) -> StoreResult<Option<UpstreamProvider>> {
    let sql = format!("SELECT {PROVIDER_COLUMNS} FROM upstream_oauth_providers WHERE upstream_oauth_provider_id = ?1");
    opt(conn.query_row(&sql, [id], provider_row))?.map(to_provider).transpose()
}

/// Inserts or replaces a provider (config sync); `disabled_at` is written as given.
pub fn upsert_provider(conn: &Connection, p: &UpstreamProvider) -> StoreResult<()> {
    let metadata = serde_json::to_string(&p.config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO upstream_oauth_providers
             (upstream_oauth_provider_id, metadata, encrypted_client_secret, ui_order, created_at, disabled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (upstream_oauth_provider_id) DO UPDATE SET metadata = excluded.metadata,
             encrypted_client_secret = excluded.encrypted_client_secret, ui_order = excluded.ui_order,
             disabled_at = excluded.disabled_at",
        params![p.id, metadata, p.encrypted_client_secret, p.ui_order, p.created_at, p.disabled_at],
    )?;
    Ok(())
}

pub fn set_provider_disabled(conn: &Connection, id: &str, disabled_at: Option<i64>) -> StoreResult<()> {
    conn.execute(
        "UPDATE upstream_oauth_providers SET disabled_at = ?2 WHERE upstream_oauth_provider_id = ?1",
        params![id, disabled_at],
    )?;
    Ok(())
}

/// Deletes a provider with its links and authorization sessions.
pub fn delete_provider(conn: &Connection, id: &str) -> StoreResult<()> {
    conn.execute("DELETE FROM upstream_oauth_providers WHERE upstream_oauth_provider_id = ?1", [id])?;
    Ok(())
}

const LINK_COLUMNS: &str =
    "upstream_oauth_link_id, upstream_oauth_provider_id, user_id, subject, human_account_name, created_at";

fn link_row(r: &Row) -> rusqlite::Result<UpstreamLink> {
    Ok(UpstreamLink {
        id: r.get(0)?,
        provider_id: r.get(1)?,
        user_id: r.get(2)?,
        subject: r.get(3)?,
        human_account_name: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// Adds a link; `Conflict("upstream link")` when the provider already knows this subject.
pub fn insert_link(conn: &Connection, link: &UpstreamLink) -> StoreResult<()> {
    on_conflict(
        conn.execute(
            "INSERT INTO upstream_oauth_links
                 (upstream_oauth_link_id, upstream_oauth_provider_id, user_id, subject, human_account_name, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![link.id, link.provider_id, link.user_id, link.subject, link.human_account_name, link.created_at],
        ),
        "upstream link",
    )?;
    Ok(())
}

pub fn link_by_id(conn: &Connection, id: &str) -> StoreResult<Option<UpstreamLink>> {
    let sql = format!("SELECT {LINK_COLUMNS} FROM upstream_oauth_links WHERE upstream_oauth_link_id = ?1");
    opt(conn.query_row(&sql, [id], link_row))
}

pub fn link_by_subject(conn: &Connection, provider_id: &str, subject: &str) -> StoreResult<Option<UpstreamLink>> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM upstream_oauth_links WHERE upstream_oauth_provider_id = ?1 AND subject = ?2"
    );
    opt(conn.query_row(&sql, [provider_id, subject], link_row))
}

/// The links of a user, oldest first.
pub fn links_of_user(conn: &Connection, user_id: &str) -> StoreResult<Vec<UpstreamLink>> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM upstream_oauth_links WHERE user_id = ?1 ORDER BY created_at, upstream_oauth_link_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([user_id], link_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Attaches (or detaches, with `None`) a link to a user.
pub fn set_link_user(
    conn: &Connection,
    link_id: &str,
    user_id: Option<&str>,
    human_account_name: Option<&str>,
) -> StoreResult<()> {
    conn.execute(
        "UPDATE upstream_oauth_links SET user_id = ?2, human_account_name = COALESCE(?3, human_account_name)
         WHERE upstream_oauth_link_id = ?1",
        params![link_id, user_id, human_account_name],
    )?;
    Ok(())
}

pub fn delete_link(conn: &Connection, link_id: &str) -> StoreResult<bool> {
    Ok(conn.execute("DELETE FROM upstream_oauth_links WHERE upstream_oauth_link_id = ?1", [link_id])? > 0)
}

/// One trip to an upstream provider (`upstream_oauth_authorization_sessions`).
#[derive(Debug, Clone)]
pub struct AuthorizationSession {
    pub id: String,
    pub provider_id: String,
    pub link_id: Option<String>,
    pub state: String,
    pub nonce: String,
    pub code_challenge_verifier: Option<String>,
    pub next: Option<String>,
    pub id_token_claims: Option<String>,
    pub userinfo: Option<String>,
    pub sid: Option<String>,
    pub subject: Option<String>,
    pub user_session_id: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub consumed_at: Option<i64>,
    /// What else the provider sent to the callback (a JSON object of strings), e.g. Apple's `user`.
    pub extra_callback_parameters: Option<String>,
}

const SESSION_COLUMNS: &str =
    "upstream_oauth_authorization_session_id, upstream_oauth_provider_id, upstream_oauth_link_id,
    state, nonce, code_challenge_verifier, next, id_token_claims, userinfo, sid, subject, user_session_id, created_at,
    completed_at, consumed_at, extra_callback_parameters";

fn session_row(r: &Row) -> rusqlite::Result<AuthorizationSession> {
    Ok(AuthorizationSession {
        id: r.get(0)?,
        provider_id: r.get(1)?,
        link_id: r.get(2)?,
        state: r.get(3)?,
        nonce: r.get(4)?,
        code_challenge_verifier: r.get(5)?,
        next: r.get(6)?,
        id_token_claims: r.get(7)?,
        userinfo: r.get(8)?,
        sid: r.get(9)?,
        subject: r.get(10)?,
        user_session_id: r.get(11)?,
        created_at: r.get(12)?,
        completed_at: r.get(13)?,
        consumed_at: r.get(14)?,
        extra_callback_parameters: r.get(15)?,
    })
}

pub fn insert_session(conn: &Connection, s: &AuthorizationSession) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO upstream_oauth_authorization_sessions
             (upstream_oauth_authorization_session_id, upstream_oauth_provider_id, state, nonce, code_challenge_verifier,
              next, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![s.id, s.provider_id, s.state, s.nonce, s.code_challenge_verifier, s.next, s.created_at],
    )?;
    Ok(())
}

pub fn session_by_id(conn: &Connection, id: &str) -> StoreResult<Option<AuthorizationSession>> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM upstream_oauth_authorization_sessions WHERE upstream_oauth_authorization_session_id = ?1"
    );
    opt(conn.query_row(&sql, [id], session_row))
}

/// What came back from the provider: the session is completed and names its link.
#[allow(clippy::too_many_arguments)]
pub fn complete_session(
    conn: &Connection,
    id: &str,
    link_id: &str,
    id_token: Option<&str>,
    id_token_claims: Option<&str>,
    userinfo: Option<&str>,
    sid: Option<&str>,
    subject: &str,
    extra_callback_parameters: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    conn.execute(
        "UPDATE upstream_oauth_authorization_sessions SET upstream_oauth_link_id = ?2, id_token = ?3,
             id_token_claims = ?4, userinfo = ?5, sid = ?6, subject = ?7, completed_at = ?8,
             extra_callback_parameters = ?9
         WHERE upstream_oauth_authorization_session_id = ?1",
        params![id, link_id, id_token, id_token_claims, userinfo, sid, subject, now, extra_callback_parameters],
    )?;
    Ok(())
}

/// `response_mode: form_post`: keeps the extra fields the provider posted (Apple's `user`) with the
/// not yet completed session of `state`, for the callback the browser is sent on to.
pub fn set_callback_parameters(conn: &Connection, provider_id: &str, state: &str, json: &str) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE upstream_oauth_authorization_sessions SET extra_callback_parameters = ?3
         WHERE upstream_oauth_provider_id = ?1 AND state = ?2 AND completed_at IS NULL",
        params![provider_id, state, json],
    )? > 0)
}

/// The session was used to sign in (or link) the browser session `user_session_id`.
pub fn consume_session(conn: &Connection, id: &str, user_session_id: &str, now: i64) -> StoreResult<bool> {
    Ok(conn.execute(
        "UPDATE upstream_oauth_authorization_sessions SET consumed_at = ?3, user_session_id = ?2
         WHERE upstream_oauth_authorization_session_id = ?1 AND consumed_at IS NULL",
        params![id, user_session_id, now],
    )? > 0)
}

/// Browser sessions started through this provider for an upstream `sid` or `sub` (back-channel logout).
pub fn browser_sessions_for(
    conn: &Connection,
    provider_id: &str,
    sid: Option<&str>,
    sub: Option<&str>,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT user_session_id FROM upstream_oauth_authorization_sessions
         WHERE upstream_oauth_provider_id = ?1 AND user_session_id IS NOT NULL
           AND (?2 IS NULL OR sid = ?2) AND (?3 IS NULL OR subject = ?3)",
    )?;
    let rows = stmt.query_map(params![provider_id, sid, sub], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The active OAuth and compat sessions started from a browser session (ids), for
/// `on_backchannel_logout: logout_all`.
pub fn sessions_of_browser(conn: &Connection, user_session_id: &str) -> StoreResult<(Vec<String>, Vec<String>)> {
    let ids = |sql: &str| -> StoreResult<Vec<String>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([user_session_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    Ok((
        ids("SELECT oauth2_session_id FROM oauth2_sessions WHERE user_session_id = ?1 AND finished_at IS NULL")?,
        ids("SELECT compat_session_id FROM compat_sessions WHERE user_session_id = ?1 AND finished_at IS NULL")?,
    ))
}

const PROVIDERS: super::page::Table = super::page::Table {
    name: "upstream_oauth_providers",
    key: "upstream_oauth_provider_id",
    columns: PROVIDER_COLUMNS,
};
const LINKS: super::page::Table =
    super::page::Table { name: "upstream_oauth_links", key: "upstream_oauth_link_id", columns: LINK_COLUMNS };

fn enabled_filter(enabled: Option<bool>) -> super::page::Filter {
    let mut f = super::page::Filter::new();
    f.and_flag(enabled, "disabled_at IS NULL", "disabled_at IS NOT NULL");
    f
}

/// Providers for the admin API; `enabled` filters on `disabled_at`.
pub fn page_providers(
    conn: &Connection,
    enabled: Option<bool>,
    request: &super::page::PageRequest,
) -> StoreResult<super::page::Page<UpstreamProvider>> {
    let rows = super::page::fetch(conn, &PROVIDERS, &enabled_filter(enabled), request, provider_row, |r| &r.0)?;
    let super::page::Page { items, has_previous, has_next } = rows;
    Ok(super::page::Page {
        items: items.into_iter().map(to_provider).collect::<StoreResult<_>>()?,
        has_previous,
        has_next,
    })
}

pub fn count_providers(conn: &Connection, enabled: Option<bool>) -> StoreResult<usize> {
    super::page::count(conn, &PROVIDERS, &enabled_filter(enabled))
}

/// `filter[user]`, `filter[provider]`, `filter[subject]`, `filter[human-account-name]`.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    pub user_id: Option<String>,
    pub provider_id: Option<String>,
    pub subject: Option<String>,
    pub human_account_name: Option<String>,
}

impl LinkFilter {
    fn sql(&self) -> super::page::Filter {
        let mut f = super::page::Filter::new();
        f.and_eq("user_id = ?", self.user_id.clone())
            .and_eq("upstream_oauth_provider_id = ?", self.provider_id.clone())
            .and_eq("subject = ?", self.subject.clone())
            .and_eq("human_account_name = ?", self.human_account_name.clone());
        f
    }
}

pub fn page_links(
    conn: &Connection,
    filter: &LinkFilter,
    request: &super::page::PageRequest,
) -> StoreResult<super::page::Page<UpstreamLink>> {
    super::page::fetch(conn, &LINKS, &filter.sql(), request, link_row, |l| &l.id)
}

pub fn count_links(conn: &Connection, filter: &LinkFilter) -> StoreResult<usize> {
    super::page::count(conn, &LINKS, &filter.sql())
}

/// Deletes what abandoned sign-ins leave behind, started before `created_before`: authorization
/// sessions never used to sign in (the link page takes them for an hour), sessions whose browser
/// session has ended (nothing left for a back-channel logout to end), and links never attached
/// to a user that no remaining session names. Returns the rows deleted.
pub fn prune_sessions(conn: &Connection, created_before: i64) -> StoreResult<usize> {
    let sessions = conn.execute(
        "DELETE FROM upstream_oauth_authorization_sessions
         WHERE created_at < ?1
           AND (consumed_at IS NULL
                OR user_session_id IS NULL
                OR user_session_id IN (SELECT user_session_id FROM user_sessions WHERE finished_at IS NOT NULL))",
        [created_before],
    )?;
    let links = conn.execute(
        "DELETE FROM upstream_oauth_links
         WHERE user_id IS NULL AND created_at < ?1
           AND upstream_oauth_link_id NOT IN
               (SELECT upstream_oauth_link_id FROM upstream_oauth_authorization_sessions
                WHERE upstream_oauth_link_id IS NOT NULL)",
        [created_before],
    )?;
    Ok(sessions + links)
}
