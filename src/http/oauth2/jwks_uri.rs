//! Fetching a client's JWK set from its `jwks_uri` (for `private_key_jwt`) without letting a
//! dynamically registered client turn the server into a proxy into the operator's network.
//!
//! For a client registered at runtime: https only (plain http only to a loopback host while the
//! issuer itself is loopback, i.e. a development setup); the host is resolved and every address
//! must be public — loopback (unless the issuer is loopback), private, link-local, unique-local,
//! CGNAT, multicast and reserved ones are refused unless `client_auth.jwks_uri_allowed_networks`
//! lists them — and the connection goes to exactly the addresses checked (the resolver is the
//! check, so a DNS answer cannot change in between). No redirects, no proxy, a short timeout, a
//! size cap, at most a few fetches at once, and answers (failures too) cached for a while, so
//! assertions cannot be used to make the server fetch at will. Clients from the config file are
//! the operator's own and may point anywhere (same limits otherwise).
//!
//! Callers learn nothing of the outcome: every failure is the same `invalid_client` answer; the
//! reason goes to the log at debug level.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use url::Url;

use crate::config::{Config, Network};
use crate::model::client::is_loopback_host;

/// Largest JWK set read.
pub const MAX_JWKS_BYTES: u64 = 64 * 1024;
/// Whole-request timeout.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A fetched set is reused this long (seconds).
const CACHE_TTL: i64 = 300;
/// A failed fetch is not retried for this long (seconds).
const FAILURE_TTL: i64 = 60;
/// Fetches running at once; more are refused at once rather than queued.
const MAX_CONCURRENT_FETCHES: usize = 4;
/// Cached URLs kept at most.
const MAX_CACHED: usize = 1024;

/// Why a fetch failed (logged, never shown to the client).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("jwks_uri is not an allowed URL for a registered client: {0}")]
    NotAllowed(&'static str),
    #[error("too many jwks_uri fetches at once")]
    Busy,
    #[error("fetch failed: {0}")]
    Fetch(String),
    #[error("fetch failed recently; not retried yet")]
    RecentlyFailed,
}

/// Whether a client's `jwks_uri` is acceptable at all, before any fetch (also checked at
/// registration): https, or http to a loopback host when the issuer is loopback.
pub fn check_registered_jwks_uri(uri: &Url, issuer_is_loopback: bool) -> Result<(), &'static str> {
    if !uri.username().is_empty() || uri.password().is_some() {
        return Err("jwks_uri must not carry credentials");
    }
    match uri.scheme() {
        "https" if uri.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "http" if issuer_is_loopback && is_loopback_host(uri) => Ok(()),
        "http" => Err("jwks_uri must use https"),
        _ => Err("jwks_uri must be an https URL"),
    }
}

/// Whether a registered client's `jwks_uri` may connect to `ip`.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool, allowed: &[Network]) -> bool {
    if allowed.iter().any(|n| n.contains(ip)) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => v6_allowed(v6, allow_loopback),
    }
}

fn v4_allowed(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let o = ip.octets();
    if ip.is_loopback() {
        return allow_loopback;
    }
    !(ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (18..20).contains(&o[1])))
}

fn v6_allowed(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_allowed(v4, allow_loopback);
    }
    if ip.is_loopback() {
        return allow_loopback;
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach IPv4 addresses: judge those.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_allowed(embedded_v4(s[6], s[7]), false);
    }
    if s[0] == 0x2002 {
        return v4_allowed(embedded_v4(s[1], s[2]), false);
    }
    !(ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other ::/96
}

/// A resolver that refuses a host if any of its addresses is not allowed.
#[derive(Debug)]
struct GuardedResolver {
    allow_loopback: bool,
    allowed: Vec<Network>,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        if addrs.iter().any(|a| !address_allowed(a.ip(), self.allow_loopback, &self.allowed)) {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the host resolves to an address that is not allowed",
            )));
        }
        Ok(addrs)
    }
}

#[derive(Clone)]
enum Cached {
    Keys(Arc<Value>),
    Failed,
}

/// Fetches and caches client JWK sets.
pub struct JwksFetcher {
    /// For clients registered at runtime.
    guarded: ureq::Agent,
    /// For clients from the config file.
    open: ureq::Agent,
    issuer_is_loopback: bool,
    cache: Mutex<HashMap<String, (i64, Cached)>>,
    permits: Arc<Semaphore>,
}

impl JwksFetcher {
    pub fn new(config: &Config) -> Self {
        let issuer_is_loopback = is_loopback_host(&config.http.issuer());
        let agent_config = || {
            ureq::Agent::config_builder()
                .timeout_global(Some(FETCH_TIMEOUT))
                .http_status_as_error(false)
                .max_redirects(0)
                .max_response_header_size(16 * 1024)
        };
        let guarded = ureq::Agent::with_parts(
            agent_config().proxy(None).build(),
            DefaultConnector::default(),
            GuardedResolver { allow_loopback: issuer_is_loopback, allowed: config.client_auth.allowed_networks() },
        );
        Self {
            guarded,
            open: agent_config().build().new_agent(),
            issuer_is_loopback,
            cache: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_FETCHES)),
        }
    }

    /// The JWK set at `uri`, from the cache or fetched. `registered`: the client was registered
    /// at runtime (dynamic client registration), so the URL is untrusted.
    pub async fn get(&self, uri: &str, registered: bool, now: i64) -> Result<Arc<Value>, FetchError> {
        let url = Url::parse(uri).map_err(|_| FetchError::NotAllowed("not a URL"))?;
        if registered {
            check_registered_jwks_uri(&url, self.issuer_is_loopback).map_err(FetchError::NotAllowed)?;
        }
        let key = format!("{}{uri}", if registered { "r:" } else { "s:" });
        if let Some(hit) = self.cached(&key, now) {
            return match hit {
                Cached::Keys(v) => Ok(v),
                Cached::Failed => Err(FetchError::RecentlyFailed),
            };
        }
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| FetchError::Busy)?;
        let agent = if registered { self.guarded.clone() } else { self.open.clone() };
        let target = url.to_string();
        let fetched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            fetch(&agent, &target)
        })
        .await
        .map_err(|e| FetchError::Fetch(e.to_string()))
        .and_then(|r| r);
        let entry = match &fetched {
            Ok(v) => Cached::Keys(Arc::new(v.clone())),
            Err(_) => Cached::Failed,
        };
        self.store(key, now, entry.clone());
        match entry {
            Cached::Keys(v) => Ok(v),
            Cached::Failed => Err(fetched.err().unwrap_or(FetchError::RecentlyFailed)),
        }
    }

    fn cached(&self, key: &str, now: i64) -> Option<Cached> {
        let cache = self.cache.lock().ok()?;
        let (at, entry) = cache.get(key)?;
        let ttl = if matches!(entry, Cached::Keys(_)) { CACHE_TTL } else { FAILURE_TTL };
        (now < at + ttl && now >= *at).then(|| entry.clone())
    }

    fn store(&self, key: String, now: i64, entry: Cached) {
        let Ok(mut cache) = self.cache.lock() else { return };
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| now < *at + CACHE_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (now, entry));
    }
}

fn fetch(agent: &ureq::Agent, url: &str) -> Result<Value, FetchError> {
    let mut res =
        agent.get(url).header("Accept", "application/json").call().map_err(|e| FetchError::Fetch(e.to_string()))?;
    if !res.status().is_success() {
        return Err(FetchError::Fetch(format!("status {}", res.status())));
    }
    res.body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_json::<Value>()
        .map_err(|e| FetchError::Fetch(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = |s: &str| address_allowed(s.parse().unwrap(), false, &[]);
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(ok(public), "{public}");
        }
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(!ok(refused), "{refused}");
        }
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true, &[]), "loopback issuer");
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), true, &[]), "only loopback for a loopback issuer");
        let lan = [Network::parse("10.0.0.0/8").unwrap()];
        assert!(address_allowed("10.1.1.1".parse().unwrap(), false, &lan));
        assert!(!address_allowed("192.168.1.1".parse().unwrap(), false, &lan));
    }

    #[test]
    fn urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(check_registered_jwks_uri(&u("https://client.example/jwks"), false).is_ok());
        assert!(check_registered_jwks_uri(&u("http://client.example/jwks"), false).is_err());
        assert!(check_registered_jwks_uri(&u("http://127.0.0.1:8080/jwks"), false).is_err());
        assert!(check_registered_jwks_uri(&u("http://127.0.0.1:8080/jwks"), true).is_ok());
        assert!(check_registered_jwks_uri(&u("http://10.0.0.1/jwks"), true).is_err());
        assert!(check_registered_jwks_uri(&u("file:///etc/passwd"), true).is_err());
        assert!(check_registered_jwks_uri(&u("https://u:p@client.example/jwks"), false).is_err());
    }
}
