use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;

use super::assets::Assets;
use super::metrics::Metrics;
use crate::clock::BoxClock;
use crate::config::Config;
use crate::crypto::encrypter::Encrypter;
use crate::crypto::keys::Keystore;
use crate::crypto::password::PasswordManager;
use crate::store::Store;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    pub store: Store,
    pub keys: Keystore,
    pub encrypter: Encrypter,
    pub cookie_key: Key,
    pub passwords: PasswordManager,
    pub clock: BoxClock,
    /// Where IDs, codes and secrets come from (the OS CSPRNG in production).
    pub rng: crate::rng::BoxRng,
    pub assets: Assets,
    pub metrics: Metrics,
    /// Outgoing HTTP to operator-configured services (upstream identity providers).
    pub http: ureq::Agent,
    /// Clients' `jwks_uri` key sets (fetched with SSRF guards, cached).
    pub jwks: super::oauth2::jwks_uri::JwksFetcher,
    pub limiters: super::ratelimit::Limiters,
    pub lifecycle: crate::lifecycle::Lifecycle,
    pub mailer: crate::email::Mailer,
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.cookie_key.clone()
    }
}

impl AppInner {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        self.config.http.url(path)
    }
}
