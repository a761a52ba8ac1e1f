//! ChaCha20-Poly1305 for secrets at rest (client secrets): base64(nonce || ciphertext).

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

#[derive(Clone)]
pub struct Encrypter {
    cipher: ChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot decrypt a stored secret (was secrets.encryption changed?)")]
pub struct DecryptError;

impl Encrypter {
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: ChaCha20Poly1305::new(Key::from_slice(key)) }
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        // Not the injected rng: a nonce must never repeat under one key, and a pinned test rng would repeat it.
        let nonce_bytes = (&crate::rng::OsRng as &dyn crate::rng::Rng).bytes::<12>();
        let nonce = Nonce::from_slice(&nonce_bytes);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = self.cipher.encrypt(nonce, plaintext).unwrap_or_default();
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn decrypt(&self, encoded: &str) -> Result<Vec<u8>, DecryptError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| DecryptError)?;
        if raw.len() < 12 {
            return Err(DecryptError);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| DecryptError)
    }

    pub fn decrypt_string(&self, encoded: &str) -> Result<String, DecryptError> {
        String::from_utf8(self.decrypt(encoded)?).map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let e = Encrypter::new(&[7u8; 32]);
        let c = e.encrypt(b"hunter2");
        assert_eq!(e.decrypt_string(&c).unwrap(), "hunter2");
        assert_ne!(c, e.encrypt(b"hunter2"), "nonces are random");
        let other = Encrypter::new(&[8u8; 32]);
        assert!(other.decrypt(&c).is_err());
        assert!(e.decrypt("not base64!").is_err());
    }
}
