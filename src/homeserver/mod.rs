//! The homeserver side of every lifecycle step: users and devices must exist in Synapse before a
//! token is used, and disappear when sessions end. Two implementations: the modern
//! `/_synapse/mas/*` API and the legacy admin API. Calls are blocking (ureq); callers run them
//! off the async workers. Every call is idempotent so the job queue can retry it.

mod synapse;
mod synapse_legacy;

use std::sync::Arc;

use serde::Deserialize;

use crate::config::{HomeserverKind, MatrixConfig};

pub use synapse::Synapse;
pub use synapse_legacy::SynapseLegacy;

#[derive(Debug, thiserror::Error)]
pub enum HomeserverError {
    #[error("the homeserver is unreachable: {0}")]
    Unreachable(String),
    #[error("the homeserver refused the shared secret (HTTP {0}); check matrix.secret")]
    Unauthorized(u16),
    #[error("the user does not exist on the homeserver")]
    UserNotFound,
    #[error("the homeserver answered HTTP {status}: {body}")]
    Unexpected { status: u16, body: String },
}

impl HomeserverError {
    /// Worth retrying later (the homeserver is down or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            HomeserverError::Unreachable(_) => true,
            HomeserverError::Unexpected { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

pub type HsResult<T> = Result<T, HomeserverError>;

/// The desired state of a user, pushed as a whole (so a retry converges).
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub localpart: String,
    /// The service's user id (legacy mode records it as the `oauth-delegated` external id).
    pub user_id: String,
    pub display_name: Option<String>,
    pub emails: Vec<String>,
    pub locked: bool,
}

/// Why a username cannot be registered on the homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    Taken,
    Invalid,
    /// Reserved by an application service.
    Exclusive,
}

pub trait HomeserverConnection: Send + Sync {
    fn is_localpart_available(&self, localpart: &str) -> HsResult<Availability>;
    /// Creates or updates the user; `true` when it was created.
    fn provision_user(&self, req: &ProvisionRequest) -> HsResult<bool>;
    fn upsert_device(&self, localpart: &str, device_id: &str, display_name: Option<&str>) -> HsResult<()>;
    /// Makes the user's devices exactly `devices`.
    fn sync_devices(&self, localpart: &str, devices: &[String]) -> HsResult<()>;
    fn delete_user(&self, localpart: &str, erase: bool) -> HsResult<()>;
    fn reactivate_user(&self, localpart: &str) -> HsResult<()>;
    fn set_displayname(&self, localpart: &str, name: Option<&str>) -> HsResult<()>;
    fn allow_cross_signing_reset(&self, localpart: &str) -> HsResult<()>;
    /// The homeserver's version string, for `doctor`.
    fn server_version(&self) -> HsResult<String>;
    /// Checks that the shared secret is accepted, for `doctor`.
    fn check_secret(&self) -> HsResult<()>;
}

pub type BoxHomeserver = Arc<dyn HomeserverConnection>;

pub fn connect(config: &MatrixConfig) -> BoxHomeserver {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .http_status_as_error(false)
        .user_agent(concat!("appliance/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let base = Client { agent, config: config.clone() };
    match config.kind {
        HomeserverKind::Synapse => Arc::new(Synapse(base)),
        HomeserverKind::SynapseLegacy => Arc::new(SynapseLegacy(base)),
    }
}

/// Shared HTTP plumbing: base URL, bearer secret, JSON, error mapping.
pub(crate) struct Client {
    agent: ureq::Agent,
    config: MatrixConfig,
}

pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> HsResult<T> {
        serde_json::from_str(&self.body)
            .map_err(|_| HomeserverError::Unexpected { status: self.status, body: truncate(&self.body) })
    }
    pub fn errcode(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body).ok()?.get("errcode")?.as_str().map(String::from)
    }
    pub fn unexpected(&self) -> HomeserverError {
        match self.status {
            401 | 403 => HomeserverError::Unauthorized(self.status),
            _ => HomeserverError::Unexpected { status: self.status, body: truncate(&self.body) },
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

impl Client {
    fn url(&self, path: &str) -> String {
        self.config.endpoint_url(path)
    }

    pub fn mxid(&self, localpart: &str) -> String {
        self.config.mxid(localpart)
    }

    pub fn mxid_path(&self, localpart: &str) -> String {
        url::form_urlencoded::byte_serialize(self.mxid(localpart).as_bytes()).collect()
    }

    pub fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> HsResult<Answer> {
        let url = self.url(path);
        let auth = format!("Bearer {}", self.config.secret());
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", &auth).call(),
            ("PUT", Some(b)) => self.agent.put(&url).header("Authorization", &auth).send_json(b),
            ("PUT", None) => self.agent.put(&url).header("Authorization", &auth).send_json(serde_json::json!({})),
            (_, Some(b)) => self.agent.post(&url).header("Authorization", &auth).send_json(b),
            (_, None) => self.agent.post(&url).header("Authorization", &auth).send_json(serde_json::json!({})),
        };
        let mut res = result.map_err(|e| HomeserverError::Unreachable(e.to_string()))?;
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_string().unwrap_or_default();
        tracing::debug!(method, path, status, "homeserver call");
        Ok(Answer { status, body })
    }

    pub fn server_version(&self) -> HsResult<String> {
        let a = self.call("GET", "_synapse/admin/v1/server_version", None)?;
        if a.status != 200 {
            return Err(a.unexpected());
        }
        let v: serde_json::Value = a.json()?;
        Ok(v.get("server_version").and_then(|s| s.as_str()).unwrap_or("unknown").to_string())
    }
}
