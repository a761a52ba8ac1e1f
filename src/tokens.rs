//! Opaque tokens in MAS's format: `<prefix>_<30 random [A-Za-z0-9]>_<6-char base62 CRC-32>`.
//! The CRC lets garbage be rejected without touching the database; only SHA-256 hashes are stored.

use crate::crypto::sha256_hex;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    AccessToken,
    RefreshToken,
    CompatAccessToken,
    CompatRefreshToken,
    PersonalAccessToken,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "mat",
            TokenKind::RefreshToken => "mar",
            TokenKind::CompatAccessToken => "mct",
            TokenKind::CompatRefreshToken => "mcr",
            TokenKind::PersonalAccessToken => "mpt",
        }
    }

    fn from_prefix(p: &str) -> Option<Self> {
        Some(match p {
            "mat" => TokenKind::AccessToken,
            "mar" => TokenKind::RefreshToken,
            "mct" => TokenKind::CompatAccessToken,
            "mcr" => TokenKind::CompatRefreshToken,
            "mpt" => TokenKind::PersonalAccessToken,
            _ => return None,
        })
    }

    /// A fresh token of this kind, drawn from `rng` (the app's injected one).
    pub fn generate(self, rng: &dyn Rng) -> String {
        let body = format!("{}_{}", self.prefix(), rng.alnum(30));
        let crc = base62_crc(crc32fast::hash(body.as_bytes()));
        format!("{body}_{crc}")
    }

    /// Which kind a well-formed token is; `None` for anything malformed or with a wrong CRC.
    /// Tokens imported from Synapse are compat tokens (see `synapse_token_kind`).
    pub fn check(token: &str) -> Option<Self> {
        if let Some(kind) = synapse_token_kind(token) {
            return Some(kind);
        }
        let mut parts = token.split('_');
        let (prefix, random, crc) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || random.len() != 30 || crc.len() != 6 {
            return None;
        }
        if !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let kind = Self::from_prefix(prefix)?;
        let expected = base62_crc(crc32fast::hash(&token.as_bytes()[..prefix.len() + 1 + random.len()]));
        (expected == crc).then_some(kind)
    }
}

/// Tokens that `syn2mas migrate` imported from Synapse, as MAS recognises them: `syt_…` access
/// and `syr_…` refresh tokens, and the macaroon access tokens of Synapse before 1.34. They carry
/// no CRC of ours (and, like MAS, Synapse's own checksum is not relied on), so they are accepted
/// on their shape and then looked up by hash like every other token.
fn synapse_token_kind(token: &str) -> Option<TokenKind> {
    if token.len() > 2048 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    if token.strip_prefix("syt_").is_some_and(|rest| !rest.is_empty()) {
        return Some(TokenKind::CompatAccessToken);
    }
    if token.strip_prefix("syr_").is_some_and(|rest| !rest.is_empty()) {
        return Some(TokenKind::CompatRefreshToken);
    }
    is_synapse_macaroon(token).then_some(TokenKind::CompatAccessToken)
}

/// A serialised macaroon starts with its `location` packet: four hex digits of length, then
/// `location ` (base64url, so the token starts `MDAx…`).
fn is_synapse_macaroon(token: &str) -> bool {
    use base64::Engine;
    let Some(head) = token.get(..16) else { return false };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .is_ok_and(|b| b.len() == 12 && b[..4].iter().all(u8::is_ascii_hexdigit) && &b[4..12] == b"location")
}

/// What the database keeps instead of the token.
pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Base62 (`0-9A-Za-z`), least-significant digit first, padded with `0` to 6 characters.
fn base62_crc(mut n: u32) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(6);
    while n > 0 {
        out.push(ALPHABET[(n % 62) as usize] as char);
        n /= 62;
    }
    while out.len() < 6 {
        out.push('0');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_check() {
        for kind in [TokenKind::AccessToken, TokenKind::RefreshToken, TokenKind::CompatAccessToken] {
            let t = kind.generate(&crate::rng::OsRng);
            assert_eq!(t.len(), 3 + 1 + 30 + 1 + 6);
            assert_eq!(TokenKind::check(&t), Some(kind));
        }
    }

    #[test]
    fn mas_token_is_accepted() {
        // The CRC of a token as MAS generates it (digits least-significant first).
        let body = "mat_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let crc = crc32fast::hash(body.as_bytes());
        let mut digits = Vec::new();
        let mut n = crc;
        while n > 0 {
            digits.push(n % 62);
            n /= 62;
        }
        assert_eq!(base62_crc(crc).len(), 6);
        assert_eq!(TokenKind::check(&format!("{body}_{}", base62_crc(crc))), Some(TokenKind::AccessToken));
        assert!(digits.len() <= 6);
    }

    #[test]
    fn synapse_tokens_are_compat_tokens() {
        // Shaped as Synapse 1.163.2 issues them, and a macaroon of older Synapse.
        let access = "syt_YWxpY2U_ZpQxNkDvLdaRbWqnWsGh_0xHtFh";
        let refresh = "syr_YWxpY2U_fOzgsMAyXBCVuKSiWkNT_3g1Jcq";
        let macaroon =
            "MDAxN2xvY2F0aW9uIGxvY2FsaG9zdAowMDEzaWRlbnRpZmllciBrZXkKMDAxMGNpZCBnZW4gPSAxCjAwMmZzaWduYXR1cmUg";
        assert_eq!(TokenKind::check(access), Some(TokenKind::CompatAccessToken));
        assert_eq!(TokenKind::check(refresh), Some(TokenKind::CompatRefreshToken));
        assert_eq!(TokenKind::check(macaroon), Some(TokenKind::CompatAccessToken));
        for bad in ["syt_", "syr_", "syt_a b", "MDAxN2xvY2F0aW9", "bG9jYXRpb24gbG9jYWxob3N0", "syx_abc"] {
            assert_eq!(TokenKind::check(bad), None, "{bad}");
        }
    }

    #[test]
    fn garbage_is_rejected() {
        let t = TokenKind::AccessToken.generate(&crate::rng::OsRng);
        let mut tampered = t.clone();
        tampered.replace_range(5..6, if &t[5..6] == "a" { "b" } else { "a" });
        for bad in ["", "mat_", "xyz_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_000000", &tampered, &format!("{t}_x"), "syt_"] {
            assert_eq!(TokenKind::check(bad), None, "{bad}");
        }
    }
}
