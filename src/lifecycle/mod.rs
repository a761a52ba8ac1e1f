//! State changes that several surfaces trigger, written once: the one door between the surfaces
//! (`http`, `cli`) and the store, the homeserver and the job queue.
//!
//! `Lifecycle`'s handles are private so that a handler cannot walk around it: handlers do plain
//! store reads through `AppState::store` at most, and reach the homeserver only through the
//! functions here (user provisioning, availability, display name, cross-signing reset, device
//! sync, session ends, the email-verification workflow, …).

pub mod activity;
pub mod clients;
pub mod compat_sessions;
pub mod emails;
pub mod expiry;
pub mod factors;
pub mod grants;
pub mod oauth_sessions;
pub mod personal_sessions;
pub mod policy;
pub mod provisioning;
pub mod registration;
pub mod registration_tokens;
pub mod sessions;
pub mod site_keys;
pub mod tokens;
pub mod upstream;
pub mod upstream_providers;
pub mod users;

use crate::clock::BoxClock;
use crate::homeserver::BoxHomeserver;
use crate::jobs::{self, Job, JobQueue, Periodic};
use crate::rng::{BoxRng, Monotonic, OsRng};
use crate::store::Store;

/// What lifecycle steps need besides the request: the store, the homeserver and the job queue.
/// Only this module and its children see them (the homeserver side is in `provisioning`).
#[derive(Clone)]
pub struct Lifecycle {
    store: Store,
    homeserver: BoxHomeserver,
    jobs: JobQueue,
    clock: BoxClock,
    rng: BoxRng,
    /// Session `last_active_*`, batched in memory (see `activity()`).
    activity: activity::ActivityTracker,
}

impl Lifecycle {
    pub fn new(store: Store, homeserver: BoxHomeserver, clock: BoxClock) -> Self {
        Self::with_rng(store, homeserver, clock, Monotonic::wrap(std::sync::Arc::new(OsRng)))
    }

    /// As `new`, with the randomness injected (IDs, codes and tokens; tests pin it with the clock).
    /// `rng` is used as given: the app passes the one `Monotonic` its handlers use too.
    pub fn with_rng(store: Store, homeserver: BoxHomeserver, clock: BoxClock, rng: BoxRng) -> Self {
        let jobs = JobQueue::new(store.clone(), clock.clone(), rng.clone());
        let activity = activity::ActivityTracker::new(store.clone(), clock.clone());
        Self { store, homeserver, jobs, clock, rng, activity }
    }

    /// The store, for plain reads by the surfaces (and the lifecycle functions taking a `&Store`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &BoxClock {
        &self.clock
    }

    pub fn rng(&self) -> &BoxRng {
        &self.rng
    }

    /// Session activity, batched in memory: every surface records it (a map insert that reaches
    /// neither the homeserver nor a table directly) and merges it into what it shows.
    pub fn activity(&self) -> &activity::ActivityTracker {
        &self.activity
    }

    /// A new row ID (a ULID at the clock's time).
    pub fn new_id(&self) -> String {
        self.rng.id(self.clock.as_ref())
    }

    /// Queues `job` for the worker without trying it now.
    pub async fn enqueue(&self, job: Job) -> Result<(), crate::store::StoreError> {
        self.jobs.enqueue(job).await
    }

    /// The job worker (retries, device sync, cleanup) with the `periodic` tasks, until `stop`.
    pub fn run_worker(
        &self,
        periodic: Vec<Periodic>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        jobs::run_worker(
            self.store.clone(),
            self.homeserver.clone(),
            self.jobs.clone(),
            self.clock.clone(),
            periodic,
            stop,
        )
    }
}
