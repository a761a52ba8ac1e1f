//! The homeserver side of lifecycle steps: tried at once, queued for retry when it fails.

pub use super::Lifecycle;
use crate::homeserver::HomeserverError;
use crate::jobs::{self, Job};
use crate::model::User;

impl Lifecycle {
    /// Runs `job` now; when the homeserver cannot take it, queues it. `true` when done now.
    pub async fn run_or_queue(&self, job: Job) -> bool {
        let (store, hs, j) = (self.store.clone(), self.homeserver.clone(), job.clone());
        match tokio::task::spawn_blocking(move || jobs::execute(&store, &hs, &j)).await {
            Ok(Ok(())) => true,
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(())) => String::new(),
                };
                tracing::warn!(?job, error = %why, "homeserver call failed; queued for retry");
                if let Err(e) = self.jobs.enqueue(job).await {
                    tracing::error!(error = %e, "cannot queue the homeserver job");
                }
                false
            }
        }
    }

    pub async fn provision_user(&self, user_id: &str) -> bool {
        self.run_or_queue(Job::ProvisionUser { user_id: user_id.into() }).await
    }

    pub async fn sync_devices(&self, user_id: &str) -> bool {
        self.run_or_queue(Job::SyncDevices { user_id: user_id.into() }).await
    }

    /// Makes sure the device exists before a token for it is handed out (creating the user first
    /// if the homeserver does not know it). When the homeserver is down, provisioning is queued.
    pub async fn ensure_device(&self, user: &User, device_id: &str, display_name: Option<String>) -> bool {
        let (hs, localpart, device, store, user_id) = (
            self.homeserver.clone(),
            user.username.clone(),
            device_id.to_string(),
            self.store.clone(),
            user.id.clone(),
        );
        let done = tokio::task::spawn_blocking(move || -> Result<(), jobs::JobError> {
            match hs.upsert_device(&localpart, &device, display_name.as_deref()) {
                Err(HomeserverError::UserNotFound) => {
                    if let Some(req) = jobs::desired_user(&store, &user_id)? {
                        hs.provision_user(&req)?;
                    }
                    hs.upsert_device(&localpart, &device, display_name.as_deref())?;
                    Ok(())
                }
                other => Ok(other?),
            }
        })
        .await;
        match done {
            Ok(Ok(())) => true,
            other => {
                tracing::warn!(device_id, error = ?other.err().map(|e| e.to_string()), "device provisioning failed; queued for retry");
                let _ = self.jobs.enqueue(Job::ProvisionUser { user_id: user.id.clone() }).await;
                let _ = self.jobs.enqueue(Job::SyncDevices { user_id: user.id.clone() }).await;
                false
            }
        }
    }
}
