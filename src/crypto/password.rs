//! Password hashing: argon2id in PHC strings, on a fixed set of hashing threads that each keep
//! one memory arena while they are busy. A login storm then costs a bounded, constant amount of
//! memory (one arena per thread) instead of a fresh 19 MiB per hash that the allocator keeps,
//! gives it back once the storm is over, and cannot starve the async workers that serve
//! introspection.

use std::sync::Arc;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

use crate::config::{PasswordAlgorithm, PasswordScheme, PasswordsConfig};

/// Jobs waiting for a hashing thread; beyond this, callers wait (asynchronously) for a slot.
const QUEUE_DEPTH: usize = 256;

/// A hashing thread idle this long gives its arena back: a storm's memory is returned once it
/// ends, while back-to-back logins keep reusing it.
const ARENA_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone)]
pub struct PasswordManager {
    schemes: Arc<Vec<PasswordScheme>>,
    current_version: u16,
    pool: HashPool,
}

/// Outcome of a verification: when the stored hash is of an older scheme, a fresh hash to store.
#[derive(Debug)]
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
        Self::with_threads(config, default_threads())
    }

    /// Like `new`, with an explicit number of hashing threads (benchmarks compare them).
    pub fn with_threads(config: &PasswordsConfig, threads: usize) -> Self {
        Self {
            schemes: Arc::new(config.schemes.clone()),
            current_version: config.current().version,
            pool: HashPool::start(threads.max(1)),
        }
    }

    pub fn current_version(&self) -> u16 {
        self.current_version
    }

    fn scheme(&self, version: u16) -> Result<&PasswordScheme, PasswordError> {
        self.schemes.iter().find(|s| s.version == version).ok_or(PasswordError::UnknownScheme(version))
    }

    fn params(&self, version: u16) -> Result<Params, PasswordError> {
        scheme_params(self.scheme(version)?)
    }

    /// Hashes with the current scheme; returns (version, PHC string).
    pub async fn hash(&self, password: String) -> Result<(u16, String), PasswordError> {
        let params = self.params(self.current_version)?;
        let version = self.current_version;
        let hash = self.pool.run(move |arena| hash_phc(arena, password.as_bytes(), &params)).await??;
        Ok((version, hash))
    }

    /// Verifies against a stored hash. Re-hashes only when the stored hash is of another scheme
    /// version, or one of its costs (memory, iterations, parallelism) differs from the current
    /// scheme's: never for anything else in the PHC string. A bcrypt hash imported from Synapse
    /// is never of the current scheme (that is always argon2id), so it is re-hashed at once.
    pub async fn verify(&self, password: String, version: u16, stored: String) -> Result<Verified, PasswordError> {
        let scheme = self.scheme(version)?.clone();
        let current = self.params(self.current_version)?;
        let current_version = self.current_version;
        self.pool
            .run(move |arena| {
                let rehash = match scheme.algorithm {
                    PasswordAlgorithm::Bcrypt => {
                        verify_synapse_bcrypt(&scheme, &password, &stored)?;
                        version != current_version
                    }
                    PasswordAlgorithm::Argon2id => {
                        let parsed = PasswordHash::new(&stored).map_err(|e| PasswordError::Internal(e.to_string()))?;
                        let stored_params = verify_phc(arena, password.as_bytes(), &parsed)?;
                        needs_rehash(version, &stored_params, current_version, &current)
                    }
                };
                let upgraded = if rehash {
                    Some((current_version, hash_phc(arena, password.as_bytes(), &current)?))
                } else {
                    None
                };
                Ok(Verified { upgraded })
            })
            .await?
    }

    /// Burns the same time as a real verification, so unknown users are not told apart by timing.
    pub async fn dummy_verify(&self, password: String) {
        let Ok(params) = self.params(self.current_version) else { return };
        let _ = self.pool.run(move |arena| hash_phc(arena, password.as_bytes(), &params)).await;
    }
}

fn default_threads() -> usize {
    // Two at most: a small machine keeps cores for introspection, and memory is one arena each.
    std::thread::available_parallelism().map(|n| n.get().clamp(1, 2)).unwrap_or(1)
}

fn scheme_params(scheme: &PasswordScheme) -> Result<Params, PasswordError> {
    Params::new(
        scheme.memory_kib.unwrap_or(Params::DEFAULT_M_COST),
        scheme.iterations.unwrap_or(Params::DEFAULT_T_COST),
        Params::DEFAULT_P_COST,
        None,
    )
    .map_err(|e| PasswordError::Internal(e.to_string()))
}

/// The hashing costs alone decide; output length, key id and associated data do not.
fn needs_rehash(version: u16, stored: &Params, current_version: u16, current: &Params) -> bool {
    version != current_version
        || stored.m_cost() != current.m_cost()
        || stored.t_cost() != current.t_cost()
        || stored.p_cost() != current.p_cost()
}

/// Synapse's password check (`synapse/handlers/auth.py`): the password NFKC-normalised (when
/// the scheme says so; Synapse always does), the pepper appended, at most 72 bytes, bcrypt.
fn verify_synapse_bcrypt(scheme: &PasswordScheme, password: &str, stored: &str) -> Result<(), PasswordError> {
    use unicode_normalization::UnicodeNormalization;
    let mut input: String = if scheme.unicode_normalization { password.nfkc().collect() } else { password.to_string() };
    if let Some(pepper) = &scheme.secret {
        input.push_str(pepper.expose());
    }
    let bytes = &input.as_bytes()[..input.len().min(72)];
    match bcrypt::verify(bytes, stored) {
        Ok(true) => Ok(()),
        Ok(false) => Err(PasswordError::Mismatch),
        Err(e) => Err(PasswordError::Internal(format!("stored bcrypt hash: {e}"))),
    }
}

/// A thread's reusable argon2 memory: grown to the largest cost it has seen, freed when idle.
struct Arena(Vec<Block>);

impl Arena {
    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.0.len() < needed {
            self.0.resize(needed, Block::default());
        }
        &mut self.0[..needed]
    }
}

fn hash_phc(arena: &mut Arena, password: &[u8], params: &Params) -> Result<String, PasswordError> {
    let internal = |e: &dyn std::fmt::Display| PasswordError::Internal(e.to_string());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| internal(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password_into_with_memory(password, salt_raw, &mut out, arena.blocks(params))
        .map_err(|e| internal(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| internal(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| internal(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a parsed argon2 PHC hash in the arena; returns the hash's costs.
fn verify_phc(arena: &mut Arena, password: &[u8], parsed: &PasswordHash<'_>) -> Result<Params, PasswordError> {
    let internal = |e: &dyn std::fmt::Display| PasswordError::Internal(e.to_string());
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| internal(&e))?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(|e| internal(&e))?.unwrap_or_default();
    let params = Params::try_from(parsed).map_err(|e| internal(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(PasswordError::Internal("stored hash has no salt or output".into()));
    };
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| internal(&e))?;
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    argon
        .hash_password_into_with_memory(password, salt_raw, &mut out, arena.blocks(&params))
        .map_err(|e| internal(&e))?;
    if bool::from(out.as_slice().ct_eq(expected.as_bytes())) { Ok(params) } else { Err(PasswordError::Mismatch) }
}

type Job = Box<dyn FnOnce(&mut Arena) + Send>;

/// glibc keeps freed blocks in its arenas; trimming hands the unused pages back to the system.
fn return_free_memory_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds unused; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Fixed hashing threads fed by a bounded queue; they stop when the last handle is dropped.
#[derive(Clone)]
struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    fn start(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // A private timer, so the thread works whether or not it was started inside
                    // a runtime (the CLI hashes too).
                    let Ok(timer) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
                        return;
                    };
                    let mut arena = Arena(Vec::new());
                    loop {
                        // One thread waits on the queue at a time; the others wait for the lock.
                        let next = timer.block_on(async {
                            tokio::time::timeout(ARENA_IDLE, async { queue.lock().await.recv().await }).await
                        });
                        match next {
                            Ok(Some(job)) => job(&mut arena),
                            Ok(None) => break,
                            Err(_idle) if !arena.0.is_empty() => {
                                arena = Arena(Vec::new());
                                return_free_memory_to_the_system();
                            }
                            Err(_idle) => {}
                        }
                    }
                })
                .expect("spawning a hashing thread");
        }
        Self { jobs }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Arena) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |arena| {
            let _ = tx.send(f(arena));
        });
        self.jobs.send(job).await.map_err(|_| PasswordError::Internal("hashing threads are gone".into()))?;
        rx.await.map_err(|_| PasswordError::Internal("a hashing job was dropped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordAlgorithm;

    fn scheme(version: u16, memory_kib: u32, iterations: u32) -> PasswordScheme {
        PasswordScheme {
            memory_kib: Some(memory_kib),
            iterations: Some(iterations),
            ..PasswordScheme::argon2id(version)
        }
    }

    fn synapse_scheme(version: u16, pepper: &str) -> PasswordScheme {
        PasswordScheme {
            algorithm: PasswordAlgorithm::Bcrypt,
            secret: Some(crate::config::Secret::new(pepper)),
            unicode_normalization: true,
            ..PasswordScheme::argon2id(version)
        }
    }

    /// Made with Python's bcrypt 5.0 as Synapse 1.163.2 hashes: the NFKC form of
    /// "\u{fb01}sh \u{2168}" ("fish IX") with the pepper "pep" appended, cost 4.
    const SYNAPSE_HASH: &str = "$2b$04$ijUnlSf2HBdvHwTaEAdCdu/kGw1HGvb6iHIXpUIsoLUBiUpfW9r6.";
    /// 72 "x": what Synapse hashes for any password of 72 "x" and more (the pepper falls past 72).
    const SYNAPSE_LONG_HASH: &str = "$2b$04$SSBj/isqI71kF82SpmVGa.zuuT283XPHDWKBX7/bkflg3Opwj998O";

    #[tokio::test]
    async fn synapse_bcrypt_hashes_verify_as_synapse_checks_them_and_upgrade_to_argon2id() {
        let m = manager(vec![synapse_scheme(1, "pep"), scheme(2, 64, 1)]);
        let verified = m.verify("\u{fb01}sh \u{2168}".into(), 1, SYNAPSE_HASH.into()).await.unwrap();
        let (version, fresh) = verified.upgraded.expect("a bcrypt hash is upgraded at once");
        assert_eq!(version, 2);
        assert!(fresh.starts_with("$argon2id$"), "{fresh}");
        assert!(m.verify("fish IX".into(), 1, SYNAPSE_HASH.into()).await.is_ok(), "NFKC applies");
        for wrong in ["fish ix", "\u{fb01}sh \u{2168}pep", ""] {
            let e = m.verify(wrong.into(), 1, SYNAPSE_HASH.into()).await.unwrap_err();
            assert!(matches!(e, PasswordError::Mismatch), "{wrong}: {e}");
        }
        let without_pepper = manager(vec![synapse_scheme(1, ""), scheme(2, 64, 1)]);
        assert!(without_pepper.verify("fish IX".into(), 1, SYNAPSE_HASH.into()).await.is_err(), "the pepper counts");
        assert!(m.verify("x".repeat(72), 1, SYNAPSE_LONG_HASH.into()).await.is_ok());
        let other_tail = format!("{}yz", "x".repeat(72));
        assert!(m.verify(other_tail, 1, SYNAPSE_LONG_HASH.into()).await.is_ok(), "bytes past 72 are ignored");
        assert!(m.verify("x".repeat(71), 1, SYNAPSE_LONG_HASH.into()).await.is_err());
    }

    fn manager(schemes: Vec<PasswordScheme>) -> PasswordManager {
        let config = PasswordsConfig { schemes, ..PasswordsConfig::default() };
        PasswordManager::with_threads(&config, 1)
    }

    #[tokio::test]
    async fn the_same_scheme_is_never_rehashed() {
        let m = manager(vec![scheme(1, 64, 1)]);
        let (version, stored) = m.hash("correct horse".into()).await.unwrap();
        let verified = m.verify("correct horse".into(), version, stored.clone()).await.unwrap();
        assert!(verified.upgraded.is_none(), "re-hashed a hash of the current scheme: {stored}");
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_mismatch() {
        let m = manager(vec![scheme(1, 64, 1)]);
        let (version, stored) = m.hash("correct horse".into()).await.unwrap();
        let err = m.verify("battery staple".into(), version, stored).await.unwrap_err();
        assert!(matches!(err, PasswordError::Mismatch), "{err:?}");
    }

    #[tokio::test]
    async fn an_older_version_is_rehashed_with_the_current_one() {
        let old = manager(vec![scheme(1, 64, 1)]);
        let (_, stored) = old.hash("pw".into()).await.unwrap();
        let m = manager(vec![scheme(1, 64, 1), scheme(2, 64, 1)]);
        let verified = m.verify("pw".into(), 1, stored).await.unwrap();
        let (version, fresh) = verified.upgraded.expect("a version-1 hash must be upgraded");
        assert_eq!(version, 2);
        assert!(m.verify("pw".into(), 2, fresh).await.unwrap().upgraded.is_none());
    }

    #[tokio::test]
    async fn a_changed_memory_or_iteration_cost_is_rehashed() {
        let (_, stored) = manager(vec![scheme(1, 64, 1)]).hash("pw".into()).await.unwrap();
        for changed in [scheme(1, 128, 1), scheme(1, 64, 2)] {
            let m = manager(vec![changed.clone()]);
            let (_, fresh) = m.verify("pw".into(), 1, stored.clone()).await.unwrap().upgraded.expect("re-hash");
            let parsed = PasswordHash::new(&fresh).unwrap();
            let params = Params::try_from(&parsed).unwrap();
            assert_eq!((params.m_cost(), params.t_cost()), (changed.memory_kib.unwrap(), changed.iterations.unwrap()));
        }
    }

    #[tokio::test]
    async fn hashes_from_the_argon2_crate_verify_and_are_not_rehashed() {
        use argon2::password_hash::PasswordHasher;
        let params = Params::new(64, 1, 1, None).unwrap();
        let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let m = manager(vec![scheme(1, 64, 1)]);
        assert!(m.verify("pw".into(), 1, stored.clone()).await.unwrap().upgraded.is_none());
        assert!(matches!(m.verify("nope".into(), 1, stored).await, Err(PasswordError::Mismatch)));
    }

    #[tokio::test]
    async fn an_unknown_version_or_garbage_hash_is_an_error_not_a_panic() {
        let m = manager(vec![scheme(1, 64, 1)]);
        assert!(matches!(m.verify("pw".into(), 9, "x".into()).await, Err(PasswordError::UnknownScheme(9))));
        for garbage in ["", "$argon2id$", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$", "$bcrypt$x"] {
            assert!(m.verify("pw".into(), 1, garbage.into()).await.is_err(), "{garbage}");
        }
    }
}
