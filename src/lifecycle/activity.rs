//! Session activity (`last_active_at` / `last_active_ip`), as MAS's activity tracker does it:
//! introspection and every page view only insert into an in-memory map; the map is written in
//! one store write every minute, when many records are pending, and at shutdown. A lost write
//! costs at most a minute of "last seen", never a request's latency.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, watch};

use crate::clock::BoxClock;
use crate::store::Store;
use crate::store::sessions::{self as session_store, ActivityRecord, SessionActivity, SessionKind};

/// How often pending activity is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);
/// Pending records that trigger a write before the minute is up.
pub const FLUSH_AT: usize = 1000;

/// When a session was last seen, and from where if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub at: i64,
    pub ip: Option<IpAddr>,
}

impl Seen {
    /// `later` arrived after `self`: the newest time wins, and its IP unless it has none.
    fn merge(&mut self, later: Seen) {
        self.at = self.at.max(later.at);
        if later.ip.is_some() {
            self.ip = later.ip;
        }
    }

    /// `earlier` arrived before `self` (a batch put back after a failed write).
    fn merge_earlier(&mut self, earlier: Seen) {
        self.at = self.at.max(earlier.at);
        self.ip = self.ip.or(earlier.ip);
    }
}

/// Pending records per session table, keyed by session id.
#[derive(Default)]
struct Pending {
    oauth2: HashMap<String, Seen>,
    compat: HashMap<String, Seen>,
    browser: HashMap<String, Seen>,
    personal: HashMap<String, Seen>,
}

impl Pending {
    fn map(&mut self, kind: SessionKind) -> &mut HashMap<String, Seen> {
        match kind {
            SessionKind::OAuth2 => &mut self.oauth2,
            SessionKind::Compat => &mut self.compat,
            SessionKind::Browser => &mut self.browser,
            SessionKind::Personal => &mut self.personal,
        }
    }

    fn len(&self) -> usize {
        self.oauth2.len() + self.compat.len() + self.browser.len() + self.personal.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&mut self, kind: SessionKind, id: &str, seen: Seen) {
        let map = self.map(kind);
        // Look up by &str first: the common case (a known session) allocates nothing.
        match map.get_mut(id) {
            Some(existing) => existing.merge(seen),
            None => {
                map.insert(id.to_string(), seen);
            }
        }
    }

    /// Puts back a batch whose write failed; what arrived since is newer.
    fn put_back(&mut self, earlier: Pending) {
        let maps = [
            (SessionKind::OAuth2, earlier.oauth2),
            (SessionKind::Compat, earlier.compat),
            (SessionKind::Browser, earlier.browser),
            (SessionKind::Personal, earlier.personal),
        ];
        for (kind, map) in maps {
            let into = self.map(kind);
            for (id, seen) in map {
                into.entry(id).and_modify(|newer| newer.merge_earlier(seen)).or_insert(seen);
            }
        }
    }

    fn records(&self) -> Vec<ActivityRecord> {
        let all = [
            (SessionKind::OAuth2, &self.oauth2),
            (SessionKind::Compat, &self.compat),
            (SessionKind::Browser, &self.browser),
            (SessionKind::Personal, &self.personal),
        ];
        all.into_iter()
            .flat_map(|(kind, map)| {
                map.iter().map(move |(id, seen)| ActivityRecord {
                    kind,
                    session_id: id.clone(),
                    at: seen.at,
                    ip: seen.ip.map(|ip| ip.to_string()),
                })
            })
            .collect()
    }
}

/// The tracker; cheap to clone.
#[derive(Clone)]
pub struct ActivityTracker(Arc<Inner>);

struct Inner {
    store: Store,
    clock: BoxClock,
    pending: Mutex<Pending>,
    /// Wakes the flush task when `FLUSH_AT` records are pending.
    full: Notify,
    /// One flush at a time, so an older batch never lands after a newer one.
    flushing: tokio::sync::Mutex<()>,
    flushed: Counter,
}

impl ActivityTracker {
    pub fn new(store: Store, clock: BoxClock) -> Self {
        Self(Arc::new(Inner {
            store,
            clock,
            pending: Mutex::new(Pending::default()),
            full: Notify::new(),
            flushing: tokio::sync::Mutex::new(()),
            flushed: Counter::default(),
        }))
    }

    /// Records written so far (for the metrics registry).
    pub fn flushed_counter(&self) -> Counter {
        self.0.flushed.clone()
    }

    /// An OAuth 2.0 session was used (introspection passes no IP: the caller is the homeserver).
    pub fn record_oauth2(&self, session_id: &str, ip: Option<IpAddr>) {
        self.record(SessionKind::OAuth2, session_id, ip);
    }

    /// A compat (legacy login) session was used.
    pub fn record_compat(&self, session_id: &str, ip: Option<IpAddr>) {
        self.record(SessionKind::Compat, session_id, ip);
    }

    /// A browser session was used.
    pub fn record_browser(&self, session_id: &str, ip: Option<IpAddr>) {
        self.record(SessionKind::Browser, session_id, ip);
    }

    /// A personal access token's session was used.
    pub fn record_personal(&self, session_id: &str, ip: Option<IpAddr>) {
        self.record(SessionKind::Personal, session_id, ip);
    }

    pub fn record(&self, kind: SessionKind, session_id: &str, ip: Option<IpAddr>) {
        let seen = Seen { at: self.0.clock.now(), ip };
        let len = {
            let mut pending = self.lock();
            pending.insert(kind, session_id, seen);
            pending.len()
        };
        if len >= FLUSH_AT {
            self.0.full.notify_one();
        }
    }

    /// What is pending for a session and not yet in the database.
    pub fn pending_for(&self, kind: SessionKind, session_id: &str) -> Option<Seen> {
        self.lock().map(kind).get(session_id).copied()
    }

    /// The stored activity of a session with what is pending for it (the newest time wins, and
    /// a pending IP replaces the stored one).
    pub fn merged(&self, kind: SessionKind, session_id: &str, mut stored: SessionActivity) -> SessionActivity {
        if let Some(seen) = self.pending_for(kind, session_id) {
            stored.last_active_at = Some(stored.last_active_at.map_or(seen.at, |t| t.max(seen.at)));
            if let Some(ip) = seen.ip {
                stored.last_active_ip = Some(ip.to_string());
            }
        }
        stored
    }

    // A poisoned lock still holds a consistent map (inserts do not unwind half-way).
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.0.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes everything pending in one store write; returns how many records were written.
    /// When the write fails the batch goes back into the map for the next flush.
    pub async fn flush(&self) -> usize {
        let _one = self.0.flushing.lock().await;
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            return 0;
        }
        let records = batch.records();
        let n = records.len();
        match self.0.store.write(move |c| session_store::record_activity(c, &records)).await {
            Ok(()) => {
                self.0.flushed.inc_by(n as u64);
                tracing::debug!(records = n, "session activity recorded");
                n
            }
            Err(e) => {
                tracing::warn!(records = n, error = %e, "cannot record session activity; retrying at the next flush");
                self.lock().put_back(batch);
                0
            }
        }
    }

    /// Flushes every `FLUSH_EVERY` and whenever `FLUSH_AT` records are pending, until `stop`.
    /// The final flush is the caller's, once nothing records any more.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.0.full.notified() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            self.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn newest_time_wins_and_a_known_ip_is_kept() {
        let mut p = Pending::default();
        p.insert(SessionKind::OAuth2, "s1", Seen { at: 100, ip: ip(1) });
        // Introspection: later, no IP.
        p.insert(SessionKind::OAuth2, "s1", Seen { at: 160, ip: None });
        assert_eq!(p.oauth2["s1"], Seen { at: 160, ip: ip(1) });
        // An out-of-order older record does not move the time back, but its IP is the latest seen.
        p.insert(SessionKind::OAuth2, "s1", Seen { at: 120, ip: ip(2) });
        assert_eq!(p.oauth2["s1"], Seen { at: 160, ip: ip(2) });
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn kinds_are_kept_apart() {
        let mut p = Pending::default();
        p.insert(SessionKind::OAuth2, "same", Seen { at: 1, ip: None });
        p.insert(SessionKind::Compat, "same", Seen { at: 2, ip: ip(3) });
        p.insert(SessionKind::Browser, "same", Seen { at: 3, ip: ip(4) });
        p.insert(SessionKind::Personal, "same", Seen { at: 4, ip: None });
        assert_eq!(p.len(), 4);
        let mut records = p.records();
        records.sort_by_key(|r| r.at);
        assert_eq!(
            records,
            vec![
                ActivityRecord { kind: SessionKind::OAuth2, session_id: "same".into(), at: 1, ip: None },
                ActivityRecord {
                    kind: SessionKind::Compat,
                    session_id: "same".into(),
                    at: 2,
                    ip: Some("192.0.2.3".into())
                },
                ActivityRecord {
                    kind: SessionKind::Browser,
                    session_id: "same".into(),
                    at: 3,
                    ip: Some("192.0.2.4".into())
                },
                ActivityRecord { kind: SessionKind::Personal, session_id: "same".into(), at: 4, ip: None },
            ]
        );
    }

    #[test]
    fn a_failed_batch_put_back_does_not_override_newer_records() {
        let mut failed = Pending::default();
        failed.insert(SessionKind::Compat, "a", Seen { at: 100, ip: ip(1) });
        failed.insert(SessionKind::Compat, "b", Seen { at: 100, ip: ip(1) });
        failed.insert(SessionKind::Browser, "c", Seen { at: 100, ip: ip(1) });
        let mut since = Pending::default();
        since.insert(SessionKind::Compat, "a", Seen { at: 200, ip: ip(9) });
        since.insert(SessionKind::Compat, "b", Seen { at: 200, ip: None });
        since.put_back(failed);
        assert_eq!(since.compat["a"], Seen { at: 200, ip: ip(9) });
        assert_eq!(since.compat["b"], Seen { at: 200, ip: ip(1) });
        assert_eq!(since.browser["c"], Seen { at: 100, ip: ip(1) });
        assert_eq!(since.len(), 3);
    }
}
