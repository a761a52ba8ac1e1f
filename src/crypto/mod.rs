//! Keys and primitives: signing keys and JWKS, AEAD for cookies and secrets at rest, password hashing.

pub mod encrypter;
pub mod keys;
pub mod password;

use base64::Engine;
use sha2::{Digest, Sha256};

/// Constant-time equality for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Hash first so lengths leak nothing and the comparison is fixed-size.
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.ct_eq(&hb).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}
