//! Matrix device IDs: the one grammar every entry point checks (compat login,
//! `manage issue-compatibility-token`, personal tokens, the admin API, OAuth device scopes).
//!
//! It is the grammar MAS applies to the device of an OAuth device scope: 10 to 255 characters,
//! each an RFC 3986 unreserved or sub-delim character or `:` `@` `/` — never a space, a quote or
//! a backslash, so a device ID can never smuggle another token into a scope string.

use std::fmt;

/// The rule, as shown to whoever sent a bad device ID.
pub const DEVICE_ID_RULE: &str = "a device ID is 10 to 255 characters of A-Z, a-z, 0-9 and -._~!$&'()*+,;=:@/";

/// A device ID that passed [`DeviceId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid device ID: {DEVICE_ID_RULE}")]
pub struct InvalidDeviceId;

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

impl DeviceId {
    pub fn parse(id: &str) -> Result<Self, InvalidDeviceId> {
        if Self::is_valid(id) { Ok(Self(id.to_string())) } else { Err(InvalidDeviceId) }
    }

    pub fn is_valid(id: &str) -> bool {
        (10..=255).contains(&id.len()) && id.bytes().all(allowed)
    }

    /// A device ID of a session already stored (imported from Synapse, whose clients may have
    /// named their devices with fewer than 10 characters): the same characters, any length from
    /// 1. Still never a space or a quote, so it cannot smuggle a token into a scope string.
    pub fn parse_stored(id: &str) -> Result<Self, InvalidDeviceId> {
        if (1..=255).contains(&id.len()) && id.bytes().all(allowed) {
            Ok(Self(id.to_string()))
        } else {
            Err(InvalidDeviceId)
        }
    }

    /// A new device ID as Synapse makes them: 10 random capital letters and digits.
    pub fn generate(rng: &dyn crate::rng::Rng) -> Self {
        Self(rng.alnum(10).to_uppercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in ["ABCDEFGHIJ", "abc-._~!$&'()*+,;=:@/0", &"A".repeat(255)] {
            assert!(DeviceId::is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "SHORT",
            "AAAAAAAAAA urn:synapse:admin:*",
            "AAAAAAAAAA\turn:synapse:admin:*",
            "AAAAAAAAAA\"x",
            "AAAAAAAAAA\\x",
            "AAAAAAAAAA%20",
            "AAAAAAAAAAé",
            &"A".repeat(256),
        ] {
            assert!(!DeviceId::is_valid(bad), "{bad:?}");
        }
        assert!(DeviceId::is_valid(DeviceId::generate(&crate::rng::OsRng).as_str()));
    }

    #[test]
    fn stored_ids_may_be_short_but_never_carry_a_separator() {
        for ok in ["BOT1", "x", "ABCDEFGHIJ"] {
            assert!(DeviceId::parse_stored(ok).is_ok(), "{ok}");
        }
        for bad in ["", "AB CD", "A\tB", "A\"B", &"A".repeat(256)] {
            assert!(DeviceId::parse_stored(bad).is_err(), "{bad:?}");
        }
    }
}
