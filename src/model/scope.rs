//! OAuth scopes and the Matrix scope grammar (stable and MSC2967 unstable forms).

use std::collections::HashSet;
use std::fmt;

pub const OPENID: &str = "openid";
pub const EMAIL: &str = "email";
pub const MATRIX_API: &str = "urn:matrix:client:api:*";
pub const MATRIX_API_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
pub const MATRIX_DEVICE_PREFIX: &str = "urn:matrix:client:device:";
pub const MATRIX_DEVICE_PREFIX_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:device:";
pub const SYNAPSE_ADMIN: &str = "urn:synapse:admin:*";
pub const MAS_ADMIN: &str = "urn:mas:admin";

/// The most tokens one scope may hold: a Matrix client asks for about five. Scopes arrive before
/// the caller is authenticated, so parsing stops at the cap.
pub const MAX_SCOPE_TOKENS: usize = 64;

/// An ordered set of scope tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

#[derive(Debug, thiserror::Error)]
pub enum ScopeParseError {
    #[error("invalid scope token {0:?}")]
    Token(String),
    #[error("more than {MAX_SCOPE_TOKENS} scope tokens")]
    TooMany,
}

impl Scope {
    /// Parses a space-separated scope string (RFC 6749 §3.3).
    /// Linear in the input: a hash set finds repeats, and parsing stops past `MAX_SCOPE_TOKENS`.
    pub fn parse(s: &str) -> Result<Self, ScopeParseError> {
        let mut tokens: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for t in s.split(' ').filter(|t| !t.is_empty()) {
            let ok = t.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !ok {
                return Err(ScopeParseError::Token(t.chars().take(64).collect()));
            }
            if seen.insert(t) {
                if tokens.len() == MAX_SCOPE_TOKENS {
                    return Err(ScopeParseError::TooMany);
                }
                tokens.push(t.to_string());
            }
        }
        Ok(Self(tokens))
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.iter().any(|t| t == token)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_matrix_api(&self) -> bool {
        self.contains(MATRIX_API) || self.contains(MATRIX_API_UNSTABLE)
    }

    /// The device IDs this scope asks for, in either form.
    pub fn device_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.iter().filter_map(device_id_of).collect();
        ids.dedup();
        ids
    }

    /// The single Matrix device of this scope, if any.
    pub fn device_id(&self) -> Option<&str> {
        self.iter().find_map(device_id_of)
    }

    /// The scope with every Matrix api/device token present in both stable and unstable forms
    /// (how introspection reports it, so either kind of homeserver understands it).
    pub fn normalised(&self) -> Scope {
        let mut out = self.0.clone();
        let mut seen: HashSet<String> = self.0.iter().cloned().collect();
        let mut add = |t: String| {
            if seen.insert(t.clone()) {
                out.push(t);
            }
        };
        for t in &self.0 {
            if t == MATRIX_API || t == MATRIX_API_UNSTABLE {
                add(MATRIX_API.into());
                add(MATRIX_API_UNSTABLE.into());
            } else if let Some(id) = device_id_of(t).filter(|id| is_valid_device_id(id)) {
                add(format!("{MATRIX_DEVICE_PREFIX}{id}"));
                add(format!("{MATRIX_DEVICE_PREFIX_UNSTABLE}{id}"));
            }
        }
        Scope(out)
    }
}

pub fn device_id_of(token: &str) -> Option<&str> {
    token.strip_prefix(MATRIX_DEVICE_PREFIX).or_else(|| token.strip_prefix(MATRIX_DEVICE_PREFIX_UNSTABLE))
}

/// The device-ID grammar (`model::device`), which MAS applies to a device scope.
pub fn is_valid_device_id(id: &str) -> bool {
    super::device::DeviceId::is_valid(id)
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl FromIterator<String> for Scope {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut s = Scope::default();
        let mut seen = HashSet::new();
        for t in iter {
            if seen.insert(t.clone()) {
                s.0.push(t);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        let s = Scope::parse(
            "openid urn:matrix:org.matrix.msc2967.client:api:* urn:matrix:org.matrix.msc2967.client:device:ABCDEFGHIJ",
        )
        .unwrap();
        assert_eq!(s.device_id(), Some("ABCDEFGHIJ"));
        let n = s.normalised();
        assert!(n.contains(MATRIX_API) && n.contains("urn:matrix:client:device:ABCDEFGHIJ"));
        assert!(Scope::parse("bad\"quote").is_err());
        assert_eq!(Scope::parse("a  a b").unwrap().to_string(), "a b");
        let at_cap: Vec<String> = (0..MAX_SCOPE_TOKENS).map(|i| format!("t{i}")).collect();
        assert_eq!(Scope::parse(&at_cap.join(" ")).unwrap().iter().count(), MAX_SCOPE_TOKENS);
        // Repeats do not count towards the cap; one more distinct token does.
        assert!(Scope::parse(&format!("{} t0 t1", at_cap.join(" "))).is_ok());
        assert!(matches!(Scope::parse(&format!("{} more", at_cap.join(" "))), Err(ScopeParseError::TooMany)));
    }
}
