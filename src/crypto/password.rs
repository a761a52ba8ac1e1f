//! Password hashing: argon2id in PHC strings, run on a bounded blocking pool so a login storm
//! cannot starve the async workers that serve introspection.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{PasswordScheme, PasswordsConfig};

#[derive(Clone)]
pub struct PasswordManager {
    schemes: Arc<Vec<PasswordScheme>>,
    current_version: u16,
    permits: Arc<Semaphore>,
}

/// Outcome of a verification: when the stored hash is of an older scheme, a fresh hash to store.
pub struct Verified {
    pub upgraded: Option<(u16, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("wrong password")]
    Mismatch,
    #[error("unknown password scheme version {0}")]
    UnknownScheme(u16),
    #[error("password hashing failed: {0}")]
    Internal(String),
}

impl PasswordManager {
    pub fn new(config: &PasswordsConfig) -> Self {
        // Two hashes at once on a small machine: bounded memory (19 MiB each) and CPU.
        let permits = std::thread::available_parallelism().map(|n| n.get().clamp(1, 2)).unwrap_or(1);
        Self {
            schemes: Arc::new(config.schemes.clone()),
            current_version: config.current().version,
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    pub fn current_version(&self) -> u16 {
        self.current_version
    }

    fn argon(&self, version: u16) -> Result<Argon2<'static>, PasswordError> {
        let scheme = self.schemes.iter().find(|s| s.version == version).ok_or(PasswordError::UnknownScheme(version))?;
        let params = Params::new(
            scheme.memory_kib.unwrap_or(Params::DEFAULT_M_COST),
            scheme.iterations.unwrap_or(Params::DEFAULT_T_COST),
            Params::DEFAULT_P_COST,
            None,
        )
        .map_err(|e| PasswordError::Internal(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes with the current scheme; returns (version, PHC string).
    pub async fn hash(&self, password: String) -> Result<(u16, String), PasswordError> {
        let argon = self.argon(self.current_version)?;
        let version = self.current_version;
        let hash = self
            .run(move || {
                let salt = SaltString::generate(&mut OsRng);
                argon.hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
            })
            .await?
            .map_err(|e| PasswordError::Internal(e.to_string()))?;
        Ok((version, hash))
    }

    /// Verifies against a stored hash; re-hashes when the scheme or its parameters changed.
    pub async fn verify(&self, password: String, version: u16, stored: String) -> Result<Verified, PasswordError> {
        let argon = self.argon(version)?;
        let current = self.argon(self.current_version)?;
        let current_version = self.current_version;
        self.run(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| PasswordError::Internal(e.to_string()))?;
            argon.verify_password(password.as_bytes(), &parsed).map_err(|_| PasswordError::Mismatch)?;
            let outdated =
                version != current_version || Params::try_from(&parsed).ok().as_ref() != Some(current.params());
            let upgraded = if outdated {
                let salt = SaltString::generate(&mut OsRng);
                let fresh = current
                    .hash_password(password.as_bytes(), &salt)
                    .map_err(|e| PasswordError::Internal(e.to_string()))?;
                Some((current_version, fresh.to_string()))
            } else {
                None
            };
            Ok(Verified { upgraded })
        })
        .await?
    }

    /// Burns the same time as a real verification, so unknown users are not told apart by timing.
    pub async fn dummy_verify(&self, password: String) {
        let argon = match self.argon(self.current_version) {
            Ok(a) => a,
            Err(_) => return,
        };
        let _ = self
            .run(move || {
                let salt = SaltString::generate(&mut OsRng);
                let _ = argon.hash_password(password.as_bytes(), &salt);
            })
            .await;
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(|e| PasswordError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| PasswordError::Internal(e.to_string()))
    }
}
