//! In-memory rate limits (token buckets per key): login, registration, recovery, email.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::RateLimit;

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, f64)>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    fn now() -> f64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    /// Takes one token for `key`; `Err(retry_after_ms)` when none is left.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Self::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > 100_000 {
            // Forget full buckets so memory stays bounded under a spray of keys.
            let (burst, rate) = (self.limit.burst as f64, self.limit.per_second);
            buckets.retain(|_, (tokens, at)| *tokens + (now - *at) * rate < burst);
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.limit.burst as f64, now));
        let refilled = (*tokens + (now - *at) * self.limit.per_second).min(self.limit.burst as f64);
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            *at = now;
            Ok(())
        } else {
            let wait = if self.limit.per_second > 0.0 { (1.0 - refilled) / self.limit.per_second } else { 3600.0 };
            Err((wait * 1000.0).ceil() as u64)
        }
    }

    /// Peeks without taking a token.
    pub fn would_allow(&self, key: &str) -> bool {
        let now = Self::now();
        let Ok(buckets) = self.buckets.lock() else {
            return true;
        };
        match buckets.get(key) {
            None => true,
            Some((tokens, at)) => (*tokens + (now - *at) * self.limit.per_second).min(self.limit.burst as f64) >= 1.0,
        }
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
        }
    }
}
