//! Inactive-session expiry (`experimental.inactive_session_expiration`, MAS's key): sessions
//! whose last activity (`last_active_at`, or `created_at` when never seen) is older than the ttl
//! are ended through the same steps as a logout or a revoke, so their tokens stop working at once,
//! and each affected user's devices are then reconciled once on the homeserver.
//!
//! The job worker runs it every `RUN_EVERY` seconds (`worker_tasks`); tests call `run_once`.
//! Activity lives in memory for up to a minute before it is written (`activity`), so a run
//! flushes it first and, within each write, still skips a session with recent activity pending:
//! a session in use is never ended.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rusqlite::Connection;

use super::Lifecycle;
use super::activity::ActivityTracker;
use super::sessions::{Ended, sync_ended};
use crate::config::InactiveSessionExpirationConfig;
use crate::jobs::{Periodic, TaskFuture};
use crate::store::StoreResult;
use crate::store::compat;
use crate::store::sessions::{self as session_store, IdleCursor, SessionKind};

/// How often the worker looks for idle sessions (seconds of the injected clock).
pub const RUN_EVERY: i64 = 300;
/// Most sessions one write ends, so a backlog never holds the writer for long.
pub const BATCH_SIZE: usize = 200;

/// Sessions ended by one run, by kind, and the users whose devices were reconciled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub oauth2: usize,
    pub compat: usize,
    pub browser: usize,
    pub users_synced: usize,
}

impl Expired {
    pub fn sessions(&self) -> usize {
        self.oauth2 + self.compat + self.browser
    }

    /// Sessions of `kind` ended.
    pub fn of(&self, kind: SessionKind) -> usize {
        match kind {
            SessionKind::OAuth2 => self.oauth2,
            SessionKind::Compat => self.compat,
            SessionKind::Browser => self.browser,
            SessionKind::Personal => 0,
        }
    }

    fn add(&mut self, kind: SessionKind, n: usize) {
        match kind {
            SessionKind::OAuth2 => self.oauth2 += n,
            SessionKind::Compat => self.compat += n,
            SessionKind::Browser => self.browser += n,
            SessionKind::Personal => {}
        }
    }
}

/// The `kind` label of `appliance_sessions_expired_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiredLabels {
    pub kind: String,
}

/// The kinds of session `config` expires.
fn kinds(config: &InactiveSessionExpirationConfig) -> Vec<SessionKind> {
    let wanted = [
        (config.expire_oauth_sessions, SessionKind::OAuth2),
        (config.expire_compat_sessions, SessionKind::Compat),
        (config.expire_user_sessions, SessionKind::Browser),
    ];
    wanted.into_iter().filter(|(on, _)| *on).map(|(_, kind)| kind).collect()
}

fn kind_label(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::OAuth2 => "oauth2",
        SessionKind::Compat => "compat",
        SessionKind::Browser => "browser",
        SessionKind::Personal => "personal",
    }
}

/// Ends every session `config` covers that has been idle for longer than its ttl, in batches of
/// at most `BATCH_SIZE` per write, then reconciles the devices of each affected user once.
pub async fn run_once(lc: &Lifecycle, config: &InactiveSessionExpirationConfig) -> StoreResult<Expired> {
    // What is still in memory lands first, so the database knows every session seen until now.
    lc.activity.flush().await;
    let now = lc.clock.now();
    let cutoff = now - config.ttl;
    let mut expired = Expired::default();
    let mut ended = Ended::default();
    let outcome = end_idle(lc, config, cutoff, now, &mut expired, &mut ended).await;
    let users_synced = ended.users().count();
    // Also after a failed write: the batches committed before it have ended sessions.
    sync_ended(lc, ended).await;
    outcome?;
    expired.users_synced = users_synced;
    if expired.sessions() > 0 {
        tracing::info!(
            oauth2 = expired.oauth2,
            compat = expired.compat,
            browser = expired.browser,
            users = expired.users_synced,
            ttl = config.ttl,
            "inactive sessions expired"
        );
    } else {
        tracing::debug!(ttl = config.ttl, "no inactive sessions to expire");
    }
    Ok(expired)
}

/// The batches of every kind `config` covers; what they ended goes into `expired` and `ended`.
async fn end_idle(
    lc: &Lifecycle,
    config: &InactiveSessionExpirationConfig,
    cutoff: i64,
    now: i64,
    expired: &mut Expired,
    ended: &mut Ended,
) -> StoreResult<()> {
    for kind in kinds(config) {
        let mut after: Option<IdleCursor> = None;
        loop {
            let tracker = lc.activity.clone();
            let from = after.take();
            let batch = lc
                .store
                .write(move |c| {
                    let in_use = |id: &str| recently_seen(&tracker, kind, id, cutoff);
                    expire_batch(c, kind, cutoff, from.as_ref(), now, &in_use)
                })
                .await?;
            expired.add(kind, batch.ended);
            ended.merge(batch.to_sync);
            match batch.last {
                Some(last) if batch.listed == BATCH_SIZE => after = Some(last),
                _ => break,
            }
        }
    }
    Ok(())
}

/// Activity of the session still in memory, at or after `cutoff`.
fn recently_seen(tracker: &ActivityTracker, kind: SessionKind, id: &str, cutoff: i64) -> bool {
    tracker.pending_for(kind, id).is_some_and(|seen| seen.at >= cutoff)
}

/// What one write did.
struct Batch {
    /// Idle sessions listed (`BATCH_SIZE` means there may be more).
    listed: usize,
    ended: usize,
    /// The user of each ended session that had a device (a browser session has none).
    users: Vec<String>,
    /// What `sync_ended` reconciles once the write committed.
    to_sync: Ended,
    /// Where the next batch resumes.
    last: Option<IdleCursor>,
}

/// Lists up to `BATCH_SIZE` idle sessions of `kind` after `after` and ends each one that is not
/// `in_use`, inside the caller's write.
fn expire_batch(
    conn: &Connection,
    kind: SessionKind,
    cutoff: i64,
    after: Option<&IdleCursor>,
    now: i64,
    in_use: &dyn Fn(&str) -> bool,
) -> StoreResult<Batch> {
    let idle = match kind {
        SessionKind::OAuth2 => session_store::idle_oauth(conn, cutoff, after, BATCH_SIZE)?,
        SessionKind::Compat => compat::idle_sessions(conn, cutoff, after, BATCH_SIZE)?,
        SessionKind::Browser => session_store::idle_browser(conn, cutoff, after, BATCH_SIZE)?,
        // Personal access tokens have their own expiry; inactivity does not end them (as MAS).
        SessionKind::Personal => Vec::new(),
    };
    let last = idle.last().map(|s| s.cursor());
    let mut batch = Batch { listed: idle.len(), ended: 0, users: Vec::new(), to_sync: Ended::default(), last };
    for s in idle.iter().filter(|s| !in_use(&s.id)) {
        let mut one = Ended::default();
        if one.end(conn, kind, &s.id, now)? {
            batch.ended += 1;
            batch.users.extend(one.users().map(String::from));
            batch.to_sync.merge(one);
        }
    }
    Ok(batch)
}

/// The worker's periodic task when `experimental.inactive_session_expiration` is set; counts
/// what it ends in `metric`.
pub fn worker_tasks(
    lc: &Lifecycle,
    config: Option<&InactiveSessionExpirationConfig>,
    metric: Family<ExpiredLabels, Counter>,
) -> Vec<Periodic> {
    let Some(config) = config.filter(|c| !kinds(c).is_empty()) else {
        return Vec::new();
    };
    let (lc, config) = (lc.clone(), config.clone());
    let run = move || -> TaskFuture {
        let (lc, config, metric) = (lc.clone(), config.clone(), metric.clone());
        Box::pin(async move {
            match run_once(&lc, &config).await {
                Ok(expired) => {
                    for kind in kinds(&config) {
                        let n = expired.of(kind) as u64;
                        metric.get_or_create(&ExpiredLabels { kind: kind_label(kind).into() }).inc_by(n);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot expire inactive sessions; trying again at the next run"),
            }
        })
    };
    vec![Periodic { name: "expire_inactive_sessions", every: RUN_EVERY, run: Box::new(run) }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sessions::{BrowserSession, OAuthSession};

    const DAY: i64 = 86_400;

    fn db() -> Connection {
        let conn = crate::store::test_support::memory_db();
        conn.execute("INSERT INTO oauth2_clients (client_id, metadata, created_at) VALUES ('client', '{}', 0)", [])
            .unwrap();
        conn
    }

    fn user(conn: &Connection, name: &str) -> String {
        crate::store::test_support::insert_user(conn, name)
    }

    fn oauth(conn: &Connection, user_id: Option<&str>, created_at: i64) -> String {
        let s = OAuthSession {
            id: ulid::Ulid::new().to_string(),
            user_id: user_id.map(String::from),
            user_session_id: None,
            client_id: "client".into(),
            scope: "openid".into(),
            created_at,
            finished_at: None,
        };
        session_store::insert_oauth(conn, &s, None).unwrap();
        s.id
    }

    fn finished(conn: &Connection, table: &str, key: &str, id: &str) -> bool {
        let sql = format!("SELECT finished_at IS NOT NULL FROM {table} WHERE {key} = ?1");
        conn.query_row(&sql, [id], |r| r.get(0)).unwrap()
    }

    #[test]
    fn only_idle_sessions_of_users_not_in_use_are_ended() {
        let conn = db();
        let alice = user(&conn, "alice");
        let idle = oauth(&conn, Some(&alice), 0);
        let in_use = oauth(&conn, Some(&alice), 0);
        let recent = oauth(&conn, Some(&alice), 40 * DAY);
        let no_user = oauth(&conn, None, 0);
        let browser = BrowserSession {
            id: ulid::Ulid::new().to_string(),
            user_id: alice.clone(),
            created_at: 0,
            authenticated_at: 0,
            finished_at: None,
        };
        session_store::insert_browser(&conn, &browser, None, None).unwrap();
        let (now, cutoff) = (41 * DAY, 11 * DAY);

        let skip = |id: &str| id == in_use;
        let batch = expire_batch(&conn, SessionKind::OAuth2, cutoff, None, now, &skip).unwrap();
        assert_eq!((batch.listed, batch.ended), (2, 1));
        assert_eq!(batch.users, vec![alice.clone()]);
        assert!(finished(&conn, "oauth2_sessions", "oauth2_session_id", &idle));
        for id in [&in_use, &recent, &no_user] {
            assert!(!finished(&conn, "oauth2_sessions", "oauth2_session_id", id), "{id}");
        }
        // A browser session has no device to delete.
        let batch = expire_batch(&conn, SessionKind::Browser, cutoff, None, now, &|_| false).unwrap();
        assert_eq!((batch.ended, batch.users.len()), (1, 0));
        assert!(finished(&conn, "user_sessions", "user_session_id", &browser.id));
    }

    #[test]
    fn batches_resume_after_the_cursor() {
        let conn = db();
        let alice = user(&conn, "alice");
        for i in 0..BATCH_SIZE + 5 {
            oauth(&conn, Some(&alice), i as i64);
        }
        // Every session is in use: nothing ends, and the listing still moves on.
        let first = expire_batch(&conn, SessionKind::OAuth2, DAY, None, DAY, &|_| true).unwrap();
        assert_eq!((first.listed, first.ended), (BATCH_SIZE, 0));
        let second = expire_batch(&conn, SessionKind::OAuth2, DAY, first.last.as_ref(), DAY, &|_| true).unwrap();
        assert_eq!(second.listed, 5);
        let third = expire_batch(&conn, SessionKind::OAuth2, DAY, second.last.as_ref(), DAY, &|_| false).unwrap();
        assert_eq!(third.listed, 0);
        // From the start again, every one of them ends.
        let all = expire_batch(&conn, SessionKind::OAuth2, DAY, None, DAY, &|_| false).unwrap();
        assert_eq!((all.listed, all.ended, all.users.len()), (BATCH_SIZE, BATCH_SIZE, BATCH_SIZE));
    }

    #[test]
    fn the_listing_reads_the_index_of_active_sessions() {
        let conn = db();
        let tables = [
            ("oauth2_sessions", "oauth2_session_id"),
            ("compat_sessions", "compat_session_id"),
            ("user_sessions", "user_session_id"),
        ];
        for (table, key) in tables {
            let sql = format!("EXPLAIN QUERY PLAN {}", session_store::idle_sql(table, key));
            let mut stmt = conn.prepare(&sql).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params![0, 0, "", 1], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains(&format!("USING INDEX {table}_last_seen")), "{table}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{table}: {plan}");
        }
    }

    #[test]
    fn flags_pick_the_kinds() {
        let mut c = InactiveSessionExpirationConfig::all(600);
        assert_eq!(kinds(&c), vec![SessionKind::OAuth2, SessionKind::Compat, SessionKind::Browser]);
        c.expire_oauth_sessions = false;
        c.expire_user_sessions = false;
        assert_eq!(kinds(&c), vec![SessionKind::Compat]);
    }
}
