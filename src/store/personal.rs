//! `personal_sessions` and `personal_access_tokens` (personal access tokens, `mpt_`). Only the
//! SHA-256 of a token is stored.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::page::{self, Filter, Page, PageRequest, Table};
use super::sessions::SessionActivity;
use super::tokens::{TokenInfo, info_from_row};
use super::{StoreResult, opt};
use crate::model::Scope;

/// Who created a personal session (and may regenerate its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    User(String),
    Client(String),
}

#[derive(Debug, Clone)]
pub struct PersonalSession {
    pub id: String,
    pub owner: Owner,
    /// The user the token acts as.
    pub actor_user_id: String,
    pub human_name: String,
    pub scope: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl PersonalSession {
    /// The Matrix device of the session, from its scope.
    pub fn device_id(&self) -> Option<String> {
        Scope::parse(&self.scope).ok()?.device_id().map(String::from)
    }
}

const COLUMNS: &str = "personal_session_id, owner_user_id, owner_oauth2_client_id, actor_user_id, human_name, scope, \
                       created_at, revoked_at";

fn session_from_row(r: &Row) -> rusqlite::Result<PersonalSession> {
    let owner = match (r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?) {
        (Some(user), _) => Owner::User(user),
        (None, Some(client)) => Owner::Client(client),
        // The table's CHECK makes this unreachable; read it as an owner nobody matches.
        (None, None) => Owner::Client(String::new()),
    };
    Ok(PersonalSession {
        id: r.get(0)?,
        owner,
        actor_user_id: r.get(3)?,
        human_name: r.get(4)?,
        scope: r.get(5)?,
        created_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

/// `synapse_admin_by_operator`: the operator granted `urn:synapse:admin:*` explicitly (kept
/// whatever the actor's admin flag later says).
pub fn insert_session(conn: &Connection, s: &PersonalSession, synapse_admin_by_operator: bool) -> StoreResult<()> {
    let (owner_user, owner_client) = match &s.owner {
        Owner::User(u) => (Some(u), None),
        Owner::Client(c) => (None, Some(c)),
    };
    conn.execute(
        "INSERT INTO personal_sessions (personal_session_id, owner_user_id, owner_oauth2_client_id, actor_user_id,
                                        human_name, scope, created_at, synapse_admin_by_operator)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            s.id,
            owner_user,
            owner_client,
            s.actor_user_id,
            s.human_name,
            s.scope,
            s.created_at,
            synapse_admin_by_operator
        ],
    )?;
    Ok(())
}

pub fn session_by_id(conn: &Connection, id: &str) -> StoreResult<Option<PersonalSession>> {
    let sql = format!("SELECT {COLUMNS} FROM personal_sessions WHERE personal_session_id = ?1");
    opt(conn.query_row(&sql, [id], session_from_row))
}

/// Adds a token to a session; the caller has revoked the previous one (one live token each).
pub fn insert_token(
    conn: &Connection,
    id: &str,
    session_id: &str,
    hash: &str,
    now: i64,
    expires_at: Option<i64>,
) -> StoreResult<String> {
    conn.execute(
        "INSERT INTO personal_access_tokens (personal_access_token_id, personal_session_id, access_token_sha256,
                                             created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, session_id, hash, now, expires_at],
    )?;
    Ok(id.to_string())
}

/// Revokes the session's live token, if it has one.
pub fn revoke_token(conn: &Connection, session_id: &str, now: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE personal_access_tokens SET revoked_at = ?2 WHERE personal_session_id = ?1 AND revoked_at IS NULL",
        params![session_id, now],
    )?;
    Ok(())
}

/// Revokes a session and its token; false when it was already revoked (or does not exist).
pub fn revoke_session(conn: &Connection, id: &str, now: i64) -> StoreResult<bool> {
    let n = conn.execute(
        "UPDATE personal_sessions SET revoked_at = ?2 WHERE personal_session_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    revoke_token(conn, id, now)?;
    Ok(n > 0)
}

/// Revokes every live session the user acts as or owns (deactivation); returns them.
pub fn revoke_all_for_user(conn: &Connection, user_id: &str, now: i64) -> StoreResult<Vec<PersonalSession>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM personal_sessions
         WHERE (actor_user_id = ?1 OR owner_user_id = ?1) AND revoked_at IS NULL ORDER BY personal_session_id"
    );
    let sessions: Vec<PersonalSession> =
        conn.prepare(&sql)?.query_map([user_id], session_from_row)?.collect::<Result<_, _>>()?;
    for s in &sessions {
        revoke_session(conn, &s.id, now)?;
    }
    Ok(sessions)
}

/// The Matrix devices of the user's live personal sessions (for device reconciliation).
pub fn active_device_ids(conn: &Connection, user_id: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT scope FROM personal_sessions WHERE actor_user_id = ?1 AND revoked_at IS NULL
         ORDER BY personal_session_id",
    )?;
    let scopes = stmt.query_map([user_id], |r| r.get::<_, String>(0))?;
    let mut ids: Vec<String> = Vec::new();
    for scope in scopes {
        for id in Scope::parse(&scope?).unwrap_or_default().device_ids() {
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
    }
    Ok(ids)
}

/// Introspection view of a token: the actor as the user; valid only while the actor and a user
/// owner are neither locked nor deactivated. `client_id` is the owner client, if client-owned.
pub fn introspect(conn: &Connection, hash: &str) -> StoreResult<Option<TokenInfo>> {
    Ok(conn
        .prepare_cached(
            "SELECT t.personal_access_token_id, t.created_at, t.expires_at, t.revoked_at IS NOT NULL, NULL,
                    s.personal_session_id, s.revoked_at IS NOT NULL, s.scope, s.owner_oauth2_client_id,
                    a.user_id, a.username,
                    (a.locked_at IS NULL AND a.deactivated_at IS NULL
                     AND (o.user_id IS NULL OR (o.locked_at IS NULL AND o.deactivated_at IS NULL))),
                    a.can_request_admin, s.synapse_admin_by_operator
             FROM personal_access_tokens t
             JOIN personal_sessions s ON s.personal_session_id = t.personal_session_id
             JOIN users a ON a.user_id = s.actor_user_id
             LEFT JOIN users o ON o.user_id = s.owner_user_id
             WHERE t.access_token_sha256 = ?1",
        )?
        .query_row([hash], info_from_row)
        .optional()?)
}

/// A session as the admin API and the CLI show it: with its activity and the expiry of its
/// live token (`None`: the token never expires, or the session is revoked).
#[derive(Debug, Clone)]
pub struct DetailedPersonal {
    pub session: PersonalSession,
    pub activity: SessionActivity,
    pub expires_at: Option<i64>,
}

const DETAILED: Table = Table {
    name: "personal_sessions",
    key: "personal_session_id",
    columns: "personal_session_id, owner_user_id, owner_oauth2_client_id, actor_user_id, human_name, scope, \
              created_at, revoked_at, last_active_at, last_active_ip, \
              (SELECT t.expires_at FROM personal_access_tokens t \
               WHERE t.personal_session_id = personal_sessions.personal_session_id AND t.revoked_at IS NULL)",
};

fn detailed_from_row(r: &Row) -> rusqlite::Result<DetailedPersonal> {
    Ok(DetailedPersonal {
        session: session_from_row(r)?,
        activity: SessionActivity { user_agent: None, last_active_at: r.get(8)?, last_active_ip: r.get(9)? },
        expires_at: r.get(10)?,
    })
}

/// Which personal sessions to list.
#[derive(Debug, Clone, Default)]
pub struct PersonalFilter {
    pub owner_user_id: Option<String>,
    pub owner_client_id: Option<String>,
    pub actor_user_id: Option<String>,
    /// `true`: not revoked; `false`: revoked.
    pub active: Option<bool>,
}

fn filter_of(f: &PersonalFilter) -> Filter {
    let mut filter = Filter::new();
    filter
        .and_eq("owner_user_id = ?", f.owner_user_id.clone())
        .and_eq("owner_oauth2_client_id = ?", f.owner_client_id.clone())
        .and_eq("actor_user_id = ?", f.actor_user_id.clone())
        .and_flag(f.active, "revoked_at IS NULL", "revoked_at IS NOT NULL");
    filter
}

pub fn page(conn: &Connection, f: &PersonalFilter, request: &PageRequest) -> StoreResult<Page<DetailedPersonal>> {
    page::fetch(conn, &DETAILED, &filter_of(f), request, detailed_from_row, |d| &d.session.id)
}

pub fn count(conn: &Connection, f: &PersonalFilter) -> StoreResult<usize> {
    page::count(conn, &DETAILED, &filter_of(f))
}

pub fn detailed_by_id(conn: &Connection, id: &str) -> StoreResult<Option<DetailedPersonal>> {
    let mut filter = Filter::new();
    filter.and("personal_session_id = ?", [id.to_string().into()]);
    let page = page::fetch(conn, &DETAILED, &filter, &PageRequest::first(1), detailed_from_row, |d| &d.session.id)?;
    Ok(page.items.into_iter().next())
}

/// Every session matching `f`, oldest first (the CLI's list).
pub fn all(conn: &Connection, f: &PersonalFilter) -> StoreResult<Vec<DetailedPersonal>> {
    let mut out = Vec::new();
    let mut request = PageRequest::first(page::MAX_PAGE_SIZE);
    loop {
        let p = page(conn, f, &request)?;
        let next = p.items.last().map(|d| d.session.id.clone());
        out.extend(p.items);
        match next {
            Some(after) if p.has_next => request.after = Some(after),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        crate::store::test_support::memory_db()
    }

    fn user(conn: &Connection, name: &str) -> String {
        crate::store::test_support::insert_user(conn, name)
    }

    fn session(conn: &Connection, owner: Owner, actor: &str, scope: &str) -> PersonalSession {
        let s = PersonalSession {
            id: ulid::Ulid::new().to_string(),
            owner,
            actor_user_id: actor.into(),
            human_name: "bot".into(),
            scope: scope.into(),
            created_at: 10,
            revoked_at: None,
        };
        insert_session(conn, &s, false).unwrap();
        s
    }

    #[test]
    fn one_live_token_per_session_and_revocation() {
        let conn = db();
        let alice = user(&conn, "alice");
        let s = session(&conn, Owner::User(alice.clone()), &alice, "urn:matrix:client:api:*");
        insert_token(&conn, "T1", &s.id, "hash-1", 10, None).unwrap();
        assert!(insert_token(&conn, "T2", &s.id, "hash-2", 11, None).is_err(), "a second live token");
        revoke_token(&conn, &s.id, 12).unwrap();
        insert_token(&conn, "T3", &s.id, "hash-2", 12, Some(100)).unwrap();
        let old = introspect(&conn, "hash-1").unwrap().unwrap();
        assert!(old.dead);
        let new = introspect(&conn, "hash-2").unwrap().unwrap();
        assert!(!new.dead && !new.session_finished && new.user_valid);
        assert_eq!((new.username.as_deref(), new.client_id.as_deref()), (Some("alice"), None));
        assert_eq!(detailed_by_id(&conn, &s.id).unwrap().unwrap().expires_at, Some(100));

        assert!(revoke_session(&conn, &s.id, 13).unwrap());
        assert!(!revoke_session(&conn, &s.id, 14).unwrap(), "already revoked");
        let after = introspect(&conn, "hash-2").unwrap().unwrap();
        assert!(after.dead && after.session_finished);
        assert_eq!(detailed_by_id(&conn, &s.id).unwrap().unwrap().expires_at, None);
        assert!(introspect(&conn, "unknown").unwrap().is_none());
    }

    #[test]
    fn owners_actors_and_devices() {
        let conn = db();
        conn.execute("INSERT INTO oauth2_clients (client_id, metadata, created_at) VALUES ('client', '{}', 0)", [])
            .unwrap();
        let (alice, bob) = (user(&conn, "alice"), user(&conn, "bob"));
        let bot = session(
            &conn,
            Owner::Client("client".into()),
            &alice,
            "urn:matrix:client:api:* urn:matrix:client:device:BOTDEVICE01",
        );
        insert_token(&conn, "T4", &bot.id, "bot", 10, None).unwrap();
        let owned = session(
            &conn,
            Owner::User(bob.clone()),
            &alice,
            "urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:BOTDEVICE02",
        );
        insert_token(&conn, "T5", &owned.id, "owned", 10, None).unwrap();
        session(&conn, Owner::User(alice.clone()), &alice, "urn:mas:admin");
        assert_eq!(session_by_id(&conn, &bot.id).unwrap().unwrap().owner, Owner::Client("client".into()));
        let mut devices = active_device_ids(&conn, &alice).unwrap();
        devices.sort();
        assert_eq!(devices, vec!["BOTDEVICE01", "BOTDEVICE02"]);
        assert_eq!(introspect(&conn, "bot").unwrap().unwrap().client_id.as_deref(), Some("client"));

        // A locked owner stops the tokens it owns, not the others.
        conn.execute("UPDATE users SET locked_at = 1 WHERE user_id = ?1", [&bob]).unwrap();
        assert!(!introspect(&conn, "owned").unwrap().unwrap().user_valid);
        assert!(introspect(&conn, "bot").unwrap().unwrap().user_valid);

        let filter = PersonalFilter { owner_user_id: Some(bob.clone()), ..PersonalFilter::default() };
        assert_eq!(count(&conn, &filter).unwrap(), 1);
        let filter = PersonalFilter { actor_user_id: Some(alice.clone()), active: Some(true), ..Default::default() };
        assert_eq!(all(&conn, &filter).unwrap().len(), 3);

        // Deactivating bob revokes what he owns.
        let revoked = revoke_all_for_user(&conn, &bob, 20).unwrap();
        assert_eq!(revoked.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![owned.id.as_str()]);
        assert_eq!(active_device_ids(&conn, &alice).unwrap(), vec!["BOTDEVICE01"]);
        let filter = PersonalFilter { active: Some(false), ..PersonalFilter::default() };
        assert_eq!(count(&conn, &filter).unwrap(), 1);
    }

    #[test]
    fn exactly_one_owner() {
        let conn = db();
        let alice = user(&conn, "alice");
        let r = conn.execute(
            "INSERT INTO personal_sessions (personal_session_id, actor_user_id, human_name, scope, created_at)
             VALUES ('x', ?1, 'n', '', 0)",
            [&alice],
        );
        assert!(r.is_err(), "no owner");
    }
}
