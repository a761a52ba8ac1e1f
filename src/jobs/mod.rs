//! The durable job queue and its worker. Jobs carry only ids: each run reads the current state
//! and pushes it whole to the homeserver, so retries are idempotent and converge.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::clock::BoxClock;
use crate::homeserver::{BoxHomeserver, HomeserverError, ProvisionRequest};
use crate::model::Scope;
use crate::rng::BoxRng;
use crate::store::{Store, StoreError, compat, grants, jobs as job_store, sessions, tokens, upstream, users};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Push the user (display name, emails, lock) to the homeserver.
    ProvisionUser {
        user_id: String,
    },
    /// Make the homeserver's devices of the user exactly those of its active sessions.
    SyncDevices {
        user_id: String,
    },
    DeactivateUser {
        user_id: String,
        erase: bool,
    },
    ReactivateUser {
        user_id: String,
    },
}

impl Job {
    fn kind(&self) -> &'static str {
        match self {
            Job::ProvisionUser { .. } => "provision_user",
            Job::SyncDevices { .. } => "sync_devices",
            Job::DeactivateUser { .. } => "deactivate_user",
            Job::ReactivateUser { .. } => "reactivate_user",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JobError {
    fn is_transient(&self) -> bool {
        match self {
            JobError::Homeserver(e) => e.is_transient(),
            JobError::Store(_) => true,
        }
    }
}

/// Enqueues jobs and wakes the worker.
#[derive(Clone)]
pub struct JobQueue {
    store: Store,
    clock: BoxClock,
    rng: BoxRng,
    wake: Arc<Notify>,
}

impl JobQueue {
    pub fn new(store: Store, clock: BoxClock, rng: BoxRng) -> Self {
        Self { store, clock, rng, wake: Arc::new(Notify::new()) }
    }

    pub async fn enqueue(&self, job: Job) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&job).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = self.clock.now();
        let kind = job.kind();
        let id = self.rng.ulid(self.clock.as_ref()).to_string();
        self.store.write(move |c| job_store::enqueue(c, &id, kind, &payload, now, now)).await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// The desired homeserver state of a user.
pub fn desired_user(store: &Store, user_id: &str) -> Result<Option<ProvisionRequest>, StoreError> {
    store.read_blocking(|c| {
        let Some(u) = users::by_id(c, user_id)? else { return Ok(None) };
        let emails = users::emails(c, user_id)?;
        Ok(Some(ProvisionRequest {
            localpart: u.username.clone(),
            user_id: u.id.clone(),
            display_name: u.display_name.clone(),
            emails,
            locked: u.locked_at.is_some(),
        }))
    })
}

/// The devices a user should have: one per active compat session that has a device and per
/// active OAuth session that carries a device scope.
pub fn desired_devices(store: &Store, user_id: &str) -> Result<Vec<String>, StoreError> {
    store.read_blocking(|c| {
        let mut ids: Vec<String> =
            compat::active_for_user(c, user_id)?.into_iter().filter_map(|s| s.device_id).collect();
        ids.dedup();
        for s in sessions::active_oauth_for_user(c, user_id)? {
            let scope = Scope::parse(&s.scope).unwrap_or_default();
            for d in scope.device_ids() {
                if !ids.iter().any(|x| x == d) {
                    ids.push(d.to_string());
                }
            }
        }
        for d in crate::store::personal::active_device_ids(c, user_id)? {
            if !ids.contains(&d) {
                ids.push(d);
            }
        }
        Ok(ids)
    })
}

/// Runs one job against the homeserver (blocking).
pub fn execute(store: &Store, hs: &BoxHomeserver, job: &Job) -> Result<(), JobError> {
    match job {
        Job::ProvisionUser { user_id } => {
            if let Some(req) = desired_user(store, user_id)? {
                hs.provision_user(&req)?;
            }
        }
        Job::SyncDevices { user_id } => {
            let Some(req) = desired_user(store, user_id)? else { return Ok(()) };
            let devices = desired_devices(store, user_id)?;
            match hs.sync_devices(&req.localpart, &devices) {
                Err(HomeserverError::UserNotFound) => {
                    hs.provision_user(&req)?;
                    hs.sync_devices(&req.localpart, &devices)?;
                }
                other => other?,
            }
        }
        Job::DeactivateUser { user_id, erase } => {
            if let Some(req) = desired_user(store, user_id)? {
                match hs.delete_user(&req.localpart, *erase) {
                    Err(HomeserverError::UserNotFound) => {}
                    other => other?,
                }
            }
        }
        Job::ReactivateUser { user_id } => {
            if let Some(req) = desired_user(store, user_id)? {
                hs.reactivate_user(&req.localpart)?;
                hs.provision_user(&req)?;
            }
        }
    }
    Ok(())
}

/// Seconds before retry `attempt` (0-based): quick at first, then every 10 minutes.
fn backoff(attempt: u32) -> i64 {
    if attempt < 20 { (1i64 << attempt.min(5)).min(30) } else { 600 }
}

const PERMANENT_FAILURE_ATTEMPTS: u32 = 5;
const CLEANUP_EVERY: i64 = 3600;
const RECONCILE_EVERY: i64 = 6 * 3600;
/// Reconciliation also covers users whose sessions ended this recently (two full periods).
const RECONCILE_ENDED_WITHIN: i64 = 2 * RECONCILE_EVERY;
/// How long a legacy SSO login row is kept (its confirmation page lasts 30 minutes).
const SSO_KEPT_FOR: i64 = 3600;
/// How long what an abandoned upstream sign-in leaves behind is kept (its link page lasts an hour).
const UPSTREAM_SESSION_KEPT_FOR: i64 = 86_400;
/// A session's last IP is forgotten after this long without activity (as MAS).
const FORGET_IP_AFTER: i64 = 30 * 86_400;

/// What a periodic task returns to the worker.
pub type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work above this layer (e.g. `lifecycle::expiry`) that the worker runs every `every` seconds of
/// the injected clock, between jobs; the first run is one period after start.
pub struct Periodic {
    pub name: &'static str,
    pub every: i64,
    pub run: Box<dyn Fn() -> TaskFuture + Send + Sync>,
}

/// The background worker: runs due jobs, cleans up expired rows hourly, reconciles devices and
/// runs the `periodic` tasks.
pub async fn run_worker(
    store: Store,
    hs: BoxHomeserver,
    queue: JobQueue,
    clock: BoxClock,
    periodic: Vec<Periodic>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_cleanup = 0;
    let mut last_reconcile = clock.now();
    let mut last_periodic = vec![clock.now(); periodic.len()];
    loop {
        if *stop.borrow() {
            return;
        }
        let now = clock.now();
        if now - last_cleanup >= CLEANUP_EVERY {
            last_cleanup = now;
            let result = store
                .write(move |c| {
                    let stale = now - FORGET_IP_AFTER;
                    Ok(tokens::cleanup(c, now)?
                        + grants::cleanup(c, now)?
                        + compat::prune_sso(c, now - SSO_KEPT_FOR)?
                        + upstream::prune_sessions(c, now - UPSTREAM_SESSION_KEPT_FOR)?
                        + job_store::cleanup(c, now)?
                        + sessions::clear_stale_ips(c, stale)?
                        + compat::clear_stale_ips(c, stale)?)
                })
                .await;
            match result {
                Ok(n) if n > 0 => tracing::info!(rows = n, "cleaned up expired rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cleanup failed"),
            }
        }
        if now - last_reconcile >= RECONCILE_EVERY {
            last_reconcile = now;
            // Users whose last session ended recently count too: a crash between ending it and
            // the device sync would otherwise leave that device on the homeserver for good.
            let since = now - RECONCILE_ENDED_WITHIN;
            if let Ok(users) = store.read(move |c| sessions::users_with_sessions(c, since)).await {
                for user_id in users {
                    let _ = queue.enqueue(Job::SyncDevices { user_id }).await;
                }
            }
        }
        for (task, last) in periodic.iter().zip(&mut last_periodic) {
            if now - *last >= task.every {
                *last = now;
                tracing::debug!(task = task.name, "periodic task");
                (task.run)().await;
            }
        }
        let due = store.read(move |c| job_store::due(c, now, 20)).await.unwrap_or_default();
        for stored in due {
            let job: Job = match serde_json::from_str(&stored.payload) {
                Ok(j) => j,
                Err(e) => {
                    let (id, msg) = (stored.id.clone(), format!("unreadable job: {e}"));
                    let _ = store.write(move |c| job_store::give_up(c, &id, &msg, now)).await;
                    continue;
                }
            };
            let (s, h, j) = (store.clone(), hs.clone(), job.clone());
            let outcome = tokio::task::spawn_blocking(move || execute(&s, &h, &j)).await;
            let now = clock.now();
            let id = stored.id.clone();
            let write = match outcome {
                Ok(Ok(())) => {
                    tracing::info!(job = stored.kind, attempts = stored.attempts + 1, "job done");
                    store.write(move |c| job_store::complete(c, &id, now)).await
                }
                Ok(Err(e)) if e.is_transient() || stored.attempts + 1 < PERMANENT_FAILURE_ATTEMPTS => {
                    let delay = backoff(stored.attempts);
                    tracing::warn!(job = stored.kind, attempt = stored.attempts + 1, retry_in = delay, error = %e, "job failed; will retry");
                    let msg = e.to_string();
                    store.write(move |c| job_store::retry_later(c, &id, &msg, now + delay)).await
                }
                Ok(Err(e)) => {
                    tracing::error!(job = stored.kind, error = %e, "job failed permanently");
                    let msg = e.to_string();
                    store.write(move |c| job_store::give_up(c, &id, &msg, now)).await
                }
                Err(e) => {
                    let msg = format!("job panicked: {e}");
                    store.write(move |c| job_store::retry_later(c, &id, &msg, now + 60)).await
                }
            };
            if let Err(e) = write {
                tracing::warn!(error = %e, "cannot record job outcome");
            }
        }
        tokio::select! {
            _ = queue.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;
    use crate::rng::SeededRng;

    /// Clock and randomness pinned: the same jobs get the same IDs in two fresh databases.
    #[tokio::test]
    async fn a_pinned_clock_and_rng_give_the_same_job_ids() {
        async fn ids() -> Vec<String> {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("t.db"), 1).unwrap();
            let clock = MockClock::new(1_700_000_000);
            let queue = JobQueue::new(store.clone(), clock.clone(), SeededRng::new(42));
            queue.enqueue(Job::ProvisionUser { user_id: "u1".into() }).await.unwrap();
            clock.advance(5);
            queue.enqueue(Job::SyncDevices { user_id: "u1".into() }).await.unwrap();
            store
                .read(|c| {
                    let mut q = c.prepare("SELECT job_id FROM queue_jobs ORDER BY job_id")?;
                    let rows = q.query_map([], |r| r.get::<_, String>(0))?;
                    Ok(rows.collect::<Result<Vec<_>, _>>()?)
                })
                .await
                .unwrap()
        }
        let (first, second) = (ids().await, ids().await);
        assert_eq!(first.len(), 2);
        assert_eq!(first, second, "the same IDs with the same clock and seed");
        assert_eq!(ulid::Ulid::from_string(&first[0]).unwrap().timestamp_ms(), 1_700_000_000_000);
        assert_eq!(ulid::Ulid::from_string(&first[1]).unwrap().timestamp_ms(), 1_700_000_005_000);
    }
}
