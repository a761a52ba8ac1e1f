//! Signing keys (RS256 and ES256) and the public JWKS.

use jwt_simple::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::b64url;

pub enum KeyMaterial {
    Rsa(Box<RS256KeyPair>),
    P256(Box<ES256KeyPair>),
}

/// One signing key with its stable `kid`.
pub struct SigningKey {
    pub kid: String,
    pub material: KeyMaterial,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM RSA (PKCS#1/PKCS#8) or P-256 (SEC1/PKCS#8) private key")]
    Unrecognised,
    #[error("RSA keys must have at least 2048 bits")]
    TooSmall,
    #[error("cannot generate key: {0}")]
    Generate(String),
}

impl SigningKey {
    /// Parses a PEM private key; the `kid` defaults to the RFC 7638 thumbprint, so it is stable.
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<Self, KeyError> {
        let material = if let Ok(k) = RS256KeyPair::from_pem(pem) {
            if k.public_key().to_components().n.len() < 256 {
                return Err(KeyError::TooSmall);
            }
            KeyMaterial::Rsa(Box::new(k))
        } else if let Ok(k) = ES256KeyPair::from_pem(pem) {
            KeyMaterial::P256(Box::new(k))
        } else {
            return Err(KeyError::Unrecognised);
        };
        Ok(Self::with_material(material, kid))
    }

    fn with_material(material: KeyMaterial, kid: Option<String>) -> Self {
        let mut key = Self { kid: String::new(), material };
        key.kid = kid.unwrap_or_else(|| key.thumbprint());
        key.material = match key.material {
            KeyMaterial::Rsa(k) => KeyMaterial::Rsa(Box::new(k.with_key_id(&key.kid))),
            KeyMaterial::P256(k) => KeyMaterial::P256(Box::new(k.with_key_id(&key.kid))),
        };
        key
    }

    pub fn generate_rsa() -> Result<Self, KeyError> {
        let k = RS256KeyPair::generate(2048).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(Self::with_material(KeyMaterial::Rsa(Box::new(k)), None))
    }

    pub fn generate_p256() -> Self {
        Self::with_material(KeyMaterial::P256(Box::new(ES256KeyPair::generate())), None)
    }

    pub fn alg(&self) -> &'static str {
        match self.material {
            KeyMaterial::Rsa(_) => "RS256",
            KeyMaterial::P256(_) => "ES256",
        }
    }

    pub fn to_pem(&self) -> String {
        match &self.material {
            KeyMaterial::Rsa(k) => k.to_pem().unwrap_or_default(),
            KeyMaterial::P256(k) => k.to_pem().unwrap_or_default(),
        }
    }

    /// The public JWK; members in the order RFC 7638 hashes them for the thumbprint.
    pub fn public_jwk(&self) -> Value {
        match &self.material {
            KeyMaterial::Rsa(k) => {
                let c = k.public_key().to_components();
                json!({"kty": "RSA", "n": b64url(&c.n), "e": b64url(&c.e),
                       "kid": self.kid, "use": "sig", "alg": "RS256"})
            }
            KeyMaterial::P256(k) => {
                let (x, y) = p256_xy(k);
                json!({"kty": "EC", "crv": "P-256", "x": b64url(&x), "y": b64url(&y),
                       "kid": self.kid, "use": "sig", "alg": "ES256"})
            }
        }
    }

    fn thumbprint(&self) -> String {
        let canonical = match &self.material {
            KeyMaterial::Rsa(k) => {
                let c = k.public_key().to_components();
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(&c.e), b64url(&c.n))
            }
            KeyMaterial::P256(k) => {
                let (x, y) = p256_xy(k);
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64url(&x), b64url(&y))
            }
        };
        b64url(&Sha256::digest(canonical.as_bytes()))[..16].to_string()
    }

    /// Signs `claims` as a JWT with this key.
    pub fn sign<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        claims: JWTClaims<T>,
    ) -> Result<String, jwt_simple::Error> {
        match &self.material {
            KeyMaterial::Rsa(k) => k.sign(claims),
            KeyMaterial::P256(k) => k.sign(claims),
        }
    }
}

fn p256_xy(k: &ES256KeyPair) -> (Vec<u8>, Vec<u8>) {
    let raw = k.key_pair().public_key().to_bytes_uncompressed();
    // 0x04 || X (32) || Y (32)
    let x = raw.get(1..33).unwrap_or_default().to_vec();
    let y = raw.get(33..65).unwrap_or_default().to_vec();
    (x, y)
}

/// All signing keys; the first RSA key is the default for ID tokens.
pub struct Keystore {
    keys: Vec<SigningKey>,
}

impl Keystore {
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Self { keys }
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>() })
    }

    pub fn algs(&self) -> Vec<&'static str> {
        let mut algs: Vec<_> = self.keys.iter().map(SigningKey::alg).collect();
        algs.sort();
        algs.dedup();
        algs
    }

    pub fn for_alg(&self, alg: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg() == alg)
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_kid() {
        let k = SigningKey::generate_p256();
        let again = SigningKey::from_pem(&k.to_pem(), None).unwrap();
        assert_eq!(k.kid, again.kid);
        assert_eq!(again.alg(), "ES256");
        let jwk = again.public_jwk();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(SigningKey::from_pem("nope", None), Err(KeyError::Unrecognised)));
    }
}
