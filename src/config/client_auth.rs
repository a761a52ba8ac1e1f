//! `client_auth`: limits on how OAuth clients authenticate with signed assertions
//! (`client_secret_jwt`, `private_key_jwt`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// The furthest ahead, in seconds, a client assertion's `exp` may be (60–86400). The default
    /// accepts what Synapse's legacy mode sends: Authlib signs assertions valid for 3600 s.
    #[serde(default = "default_max_lifetime")]
    pub assertion_max_lifetime: i64,
    /// Networks (CIDR, e.g. `10.0.0.0/8`, `fd00::/8`) a dynamically registered client's
    /// `jwks_uri` may resolve to besides public addresses. Loopback, private, link-local and
    /// unique-local addresses are refused unless listed here. Config-file clients are exempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwks_uri_allowed_networks: Vec<String>,
}

fn default_max_lifetime() -> i64 {
    3600
}

impl Default for ClientAuthConfig {
    fn default() -> Self {
        Self { assertion_max_lifetime: default_max_lifetime(), jwks_uri_allowed_networks: Vec::new() }
    }
}

/// An address block: `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.trim().parse::<IpAddr>().ok()?, p.trim().parse::<u8>().ok()?),
            None => {
                let a = s.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (ip, ip_width)) = (bits(self.addr), bits(ip));
        if width != ip_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

impl ClientAuthConfig {
    pub const MAX_LIFETIME_RANGE: std::ops::RangeInclusive<i64> = 60..=86_400;

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !Self::MAX_LIFETIME_RANGE.contains(&self.assertion_max_lifetime) {
            return Err(ConfigError::new("client_auth.assertion_max_lifetime", "must be between 60 and 86400 seconds"));
        }
        for (i, n) in self.jwks_uri_allowed_networks.iter().enumerate() {
            if Network::parse(n).is_none() {
                return Err(ConfigError::new(
                    format!("client_auth.jwks_uri_allowed_networks[{i}]"),
                    format!("{n:?} is not a network such as 10.0.0.0/8 or fd00::/8"),
                ));
            }
        }
        Ok(())
    }

    /// The parsed `jwks_uri_allowed_networks` (validated at load).
    pub fn allowed_networks(&self) -> Vec<Network> {
        self.jwks_uri_allowed_networks.iter().filter_map(|n| Network::parse(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Network::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()) && !n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::ffff:10.0.0.1".parse().unwrap()));
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let one = Network::parse("fd00::1").unwrap();
        assert!(one.contains("fd00::1".parse().unwrap()) && !one.contains("fd00::2".parse().unwrap()));
        assert!(Network::parse("fd00::/8").unwrap().contains("fdab::9".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "::/129", ""] {
            assert!(Network::parse(bad).is_none(), "{bad}");
        }
    }
}
