//! In-memory rate limits, keyed by client IP, account or address (the `governor` crate: GCRA on a
//! monotonic clock).
//!
//! Memory stays bounded: keys whose allowance is full again are pruned every `PRUNE_EVERY`
//! checks, and a limiter that still tracks `MAX_KEYS` active keys refuses new requests instead of
//! growing. Every doubt fails closed: a request the limiter cannot account for is refused.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;

/// Active keys one limiter tracks at most (about 100 bytes each).
pub const MAX_KEYS: usize = 100_000;
/// How often (in checks) keys that are back to a full allowance are forgotten.
const PRUNE_EVERY: u64 = 1024;
/// What a refusal tells the client to wait when the limiter itself refused (full, or a rate of 0).
const FALLBACK_RETRY_MS: u64 = 60_000;

pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// The key of a client IP: an IPv4 address as is, an IPv6 client by its /64 (one subscriber's
/// network; a host picks any address inside it), an IPv4-mapped IPv6 address as IPv4.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let net = std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
                format!("{net}/64")
            }
        },
    }
}

/// The quota of a configured limit: `burst` at once, one more every `1 / per_second`.
fn quota(limit: RateLimit) -> Quota {
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    // A rate of 0 (or close to it) refills once every 30 days; the product of burst and period
    // stays far below what governor's nanosecond arithmetic holds.
    let longest = Duration::from_secs(30 * 86_400).min(Duration::from_secs(100 * 365 * 86_400) / burst.get());
    let period = if limit.per_second > 0.0 && limit.per_second.is_finite() {
        Duration::try_from_secs_f64(1.0 / limit.per_second).unwrap_or(longest).min(longest)
    } else {
        longest
    };
    let period = period.max(Duration::from_nanos(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        let clock = DefaultClock::default();
        Self {
            limiter: governor::RateLimiter::dashmap_with_clock(quota(limit), clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request for `key`; `Err(retry_after_ms)` when none is left.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        if n % PRUNE_EVERY == 0 || self.limiter.len() >= MAX_KEYS {
            self.prune();
            if self.limiter.len() >= MAX_KEYS {
                // Still full of active keys after pruning: refuse rather than grow or forget.
                tracing::warn!(keys = MAX_KEYS, "rate limiter full; refusing requests until keys expire");
                return Err(FALLBACK_RETRY_MS);
            }
        }
        match self.limiter.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
            }
        }
    }

    /// Takes one request for the client at `ip` (IPv6 by /64).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        self.check(&ip_key(ip))
    }

    /// Forgets keys that are indistinguishable from new ones.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}

pub struct Limiters {
    pub login_per_ip: RateLimiter,
    pub login_per_account: RateLimiter,
    pub registration: RateLimiter,
    pub recovery_per_ip: RateLimiter,
    pub recovery_per_address: RateLimiter,
    pub email_per_ip: RateLimiter,
    pub email_per_address: RateLimiter,
    pub authorization: RateLimiter,
    pub device_authorization: RateLimiter,
    pub client_registration: RateLimiter,
    pub compat_sso: RateLimiter,
}

/// The email-verification workflow's sending limits.
impl crate::lifecycle::emails::SendLimits for Limiters {
    fn per_ip(&self, ip: IpAddr) -> bool {
        self.email_per_ip.check_ip(ip).is_ok()
    }

    fn per_address(&self, address: &str) -> bool {
        self.email_per_address.check(address).is_ok()
    }
}

impl Limiters {
    pub fn new(config: &crate::config::RateLimitingConfig) -> Self {
        Self {
            login_per_ip: RateLimiter::new(config.login.per_ip),
            login_per_account: RateLimiter::new(config.login.per_account),
            registration: RateLimiter::new(config.registration),
            recovery_per_ip: RateLimiter::new(config.account_recovery.per_ip),
            recovery_per_address: RateLimiter::new(config.account_recovery.per_address),
            email_per_ip: RateLimiter::new(config.email_authentication.per_ip),
            email_per_address: RateLimiter::new(config.email_authentication.per_address),
            authorization: RateLimiter::new(config.authorization),
            device_authorization: RateLimiter::new(config.device_authorization),
            client_registration: RateLimiter::new(config.client_registration),
            compat_sso: RateLimiter::new(config.compat_sso),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(burst: u32, per_second: f64) -> RateLimit {
        RateLimit { burst, per_second }
    }

    #[test]
    fn burst_then_refused_with_a_wait() {
        let l = RateLimiter::new(limit(2, 0.001));
        assert!(l.check("a").is_ok() && l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(wait > 900_000 && wait <= 1_000_000, "{wait}");
        assert!(l.check("b").is_ok(), "keys are independent");
    }

    #[test]
    fn a_zero_rate_never_refills_and_huge_bursts_do_not_overflow() {
        let l = RateLimiter::new(limit(1, 0.0));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").unwrap_err() >= 86_400_000);
        let l = RateLimiter::new(limit(u32::MAX, 0.0));
        assert!(l.check("a").is_ok());
        let l = RateLimiter::new(limit(3, f64::INFINITY));
        assert!(l.check("a").is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key(a), "2001:db8:1:2::/64");
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        let l = RateLimiter::new(limit(1, 0.001));
        assert!(l.check_ip(a).is_ok());
        assert!(l.check_ip(b).is_err(), "another address in the same /64 shares the allowance");
        assert!(l.check_ip(c).is_ok());
    }

    #[test]
    fn keys_back_to_a_full_allowance_are_pruned() {
        let l = RateLimiter::new(limit(1, 1_000_000.0));
        for i in 0..5000 {
            let _ = l.check(&format!("k{i}"));
        }
        std::thread::sleep(Duration::from_millis(5));
        l.prune();
        assert_eq!(l.tracked_keys(), 0);
    }

    #[test]
    fn a_full_limiter_fails_closed() {
        let l = RateLimiter::new(limit(1, 0.000_001));
        for i in 0..MAX_KEYS {
            let _ = l.check(&format!("k{i}"));
        }
        assert!(l.tracked_keys() >= MAX_KEYS);
        assert!(l.check("a-new-client").is_err(), "no room: refused, not waved through");
    }
}
