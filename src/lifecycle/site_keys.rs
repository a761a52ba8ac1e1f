//! Loads the encryption key and signing keys: from config when given, otherwise generated on the
//! first start and kept in the database so later starts reuse them.

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::keys::{Keystore, SigningKey};
use crate::store::keys::{self as key_store, StoredKey};
use crate::store::{Store, StoreError};

pub struct SiteKeys {
    pub encryption: [u8; 32],
    pub keystore: Keystore,
}

#[derive(Debug, thiserror::Error)]
pub enum SiteKeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored key {kid} is unusable: {error}")]
    BadStoredKey { kid: String, error: String },
    #[error("stored encryption key is malformed")]
    BadEncryptionKey,
    #[error("cannot generate keys: {0}")]
    Generate(String),
}

/// Runs off the async workers: RSA key generation takes a moment.
/// The encryption key is drawn from `rng`; the signing keys' own generators use the OS.
pub fn load_or_generate(
    config: &Config,
    store: &Store,
    clock: &dyn Clock,
    rng: &dyn crate::rng::Rng,
) -> Result<SiteKeys, SiteKeysError> {
    let now = clock.now();
    let secrets = config.secrets.as_ref();

    let encryption = match secrets.and_then(|s| s.encryption_key()) {
        Some(key) => key,
        None => {
            let fresh = hex::encode(rng.bytes::<32>());
            let stored =
                store.write_blocking(move |c| key_store::get_or_insert_secret(c, "encryption", &fresh, now))?;
            hex::decode(stored).ok().and_then(|b| b.try_into().ok()).ok_or(SiteKeysError::BadEncryptionKey)?
        }
    };

    let configured: Vec<SigningKey> = secrets
        .map(|s| {
            s.keys.iter().filter_map(|k| SigningKey::from_pem(k.key.as_ref()?.expose(), k.kid.clone()).ok()).collect()
        })
        .unwrap_or_default();

    let keys = if configured.iter().any(|k| k.alg() == "RS256") {
        configured
    } else {
        // Keys given in config win; what they lack (at least one RSA key for RS256) comes from the database.
        let mut keys = configured;
        let stored = store.read_blocking(key_store::list_signing_keys)?;
        let mut from_db = Vec::new();
        for s in &stored {
            let key = SigningKey::from_pem(&s.pem, Some(s.kid.clone()))
                .map_err(|e| SiteKeysError::BadStoredKey { kid: s.kid.clone(), error: e.to_string() })?;
            from_db.push(key);
        }
        if !from_db.iter().any(|k| k.alg() == "RS256") {
            tracing::info!("generating signing keys (RSA-2048 and P-256); they are kept in the database");
            let rsa = SigningKey::generate_rsa().map_err(|e| SiteKeysError::Generate(e.to_string()))?;
            let ec = SigningKey::generate_p256();
            for k in [rsa, ec] {
                let row = StoredKey { kid: k.kid.clone(), alg: k.alg().into(), pem: k.to_pem() };
                store.write_blocking(move |c| key_store::insert_signing_key(c, &row, now))?;
                from_db.push(k);
            }
        }
        let has_es = keys.iter().any(|k| k.alg() == "ES256");
        keys.extend(from_db.into_iter().filter(|k| k.alg() == "RS256" || !has_es));
        keys
    };
    Ok(SiteKeys { encryption, keystore: Keystore::new(keys) })
}
