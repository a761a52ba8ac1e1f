//! Injected randomness, beside the injected clock (`clock.rs`): IDs, codes and secrets are drawn
//! from a `BoxRng` handed down the same way as the `BoxClock`, so a test can pin both and get
//! the same IDs every run.
//!
//! Production uses [`OsRng`]: every byte comes from the operating system's CSPRNG (getrandom).
//! [`SeededRng`] is for tests only: deterministic, and not secret.

use std::sync::{Arc, Mutex};

use rand::{RngCore, SeedableRng};

use crate::clock::Clock;

pub trait Rng: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A new ULID at `ms`. The default draws 80 fresh random bits; [`Monotonic`] keeps the IDs it
    /// hands out increasing even when the clock does not move (a `MockClock`, or one millisecond).
    fn ulid_at(&self, ms: u64) -> ulid::Ulid {
        let mut random = [0u8; 16];
        self.fill(&mut random[6..]);
        ulid::Ulid::from_parts(ms, u128::from_be_bytes(random))
    }
}

pub type BoxRng = Arc<dyn Rng>;

/// The operating system's CSPRNG.
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&self, buf: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// A deterministic generator for tests (ChaCha from a fixed seed).
pub struct SeededRng(Mutex<rand::rngs::StdRng>);

impl SeededRng {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed))))
    }
}

impl Rng for SeededRng {
    fn fill(&self, buf: &mut [u8]) {
        // A poisoned lock only means another test thread panicked; the state is still usable.
        let mut rng = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rng.fill_bytes(buf);
    }
}

/// Wraps an rng so that the ULIDs it mints strictly increase: a new ID whose timestamp is not
/// later than the last one's continues from the last one (plus a random step of up to 2^64), so
/// rows created in one clock tick still sort in creation order, as `Ulid::new()`'s did at the
/// millisecond. The app wraps its rng once (`App::build_with`); everything shares that one.
pub struct Monotonic {
    inner: BoxRng,
    last: Mutex<ulid::Ulid>,
}

impl Monotonic {
    pub fn wrap(inner: BoxRng) -> Arc<Self> {
        Arc::new(Self { inner, last: Mutex::new(ulid::Ulid::nil()) })
    }
}

impl Rng for Monotonic {
    fn fill(&self, buf: &mut [u8]) {
        self.inner.fill(buf);
    }

    fn ulid_at(&self, ms: u64) -> ulid::Ulid {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = self.inner.ulid_at(ms);
        let next = if ms > last.timestamp_ms() {
            fresh
        } else {
            let step = u128::from(u64::from_be_bytes(self.inner.bytes::<8>())) + 1;
            // 2^80 random values per timestamp: overflowing them is practically impossible; if
            // it happens, the next millisecond of the last ID starts afresh.
            let random = last.random().checked_add(step).filter(|r| *r < 1 << 80);
            match random {
                Some(r) => ulid::Ulid::from_parts(last.timestamp_ms(), r),
                None => self.inner.ulid_at(last.timestamp_ms() + 1),
            }
        };
        *last = next;
        next
    }
}

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl dyn Rng + '_ {
    pub fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        self.fill(&mut b);
        b
    }

    /// A uniform number in `0..n` (`n` > 0), without modulo bias.
    pub fn below(&self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let n = n.max(1);
        // The largest multiple of n that fits: values at or above it are drawn again.
        let zone = u32::MAX - (u32::MAX - n + 1) % n;
        loop {
            let v = u32::from_le_bytes(self.bytes::<4>());
            if v <= zone {
                return v % n;
            }
        }
    }

    /// `n` characters of `alphabet` (1 to 256 ASCII characters), uniformly: bytes at or above
    /// the largest multiple of its length are drawn again. One fill per 64 bytes used.
    pub fn string_of(&self, alphabet: &[u8], n: usize) -> String {
        let len = alphabet.len().clamp(1, 256);
        let zone = 256 - 256 % len;
        let mut out = String::with_capacity(n);
        let mut buf = [0u8; 64];
        while out.len() < n {
            self.fill(&mut buf);
            for &b in buf.iter().filter(|b| usize::from(**b) < zone).take(n - out.len()) {
                out.push(char::from(alphabet[usize::from(b) % len]));
            }
        }
        out
    }

    /// `n` random characters of `[A-Za-z0-9]`.
    pub fn alnum(&self, n: usize) -> String {
        self.string_of(ALNUM, n)
    }

    /// A new ULID: the clock's time and 80 random bits.
    pub fn ulid(&self, clock: &dyn Clock) -> ulid::Ulid {
        self.ulid_at(u64::try_from(clock.now_ms()).unwrap_or(0))
    }

    /// A new ULID as a row ID, at the clock's time.
    pub fn id(&self, clock: &dyn Clock) -> String {
        self.ulid(clock).to_string()
    }

    /// A new ULID as a row ID, at `now` (Unix seconds, the time a store step was given).
    pub fn id_at(&self, now: i64) -> String {
        self.ulid_at(u64::try_from(now).unwrap_or(0).saturating_mul(1000)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[test]
    fn a_pinned_clock_and_rng_give_the_same_ids_every_time() {
        let ids = || {
            let (clock, rng) = (MockClock::new(1_700_000_000), SeededRng::new(7));
            let rng: BoxRng = rng;
            let a = rng.ulid(clock.as_ref());
            clock.advance(1);
            (a, rng.ulid(clock.as_ref()), rng.alnum(30), rng.bytes::<8>())
        };
        let (first, again) = (ids(), ids());
        assert_eq!(first, again);
        assert_eq!(first.0.timestamp_ms(), 1_700_000_000_000);
        assert_eq!(first.1.timestamp_ms(), 1_700_000_001_000);
        assert!(first.0 < first.1, "later IDs sort later");
        assert_ne!(first.0.random(), first.1.random());
        assert_eq!(first.2.len(), 30);
        assert!(first.2.bytes().all(|b| b.is_ascii_alphanumeric()));
        // Another seed, other IDs.
        let other: BoxRng = SeededRng::new(8);
        assert_ne!(other.ulid(MockClock::new(1_700_000_000).as_ref()).random(), first.0.random());
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let rng: BoxRng = SeededRng::new(1);
        let mut seen = [false; 7];
        for _ in 0..500 {
            let v = rng.below(7) as usize;
            assert!(v < 7);
            seen[v] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn strings_use_the_whole_alphabet_and_nothing_else() {
        let rng: BoxRng = SeededRng::new(3);
        let s = rng.string_of(b"abc", 3000);
        assert_eq!(s.len(), 3000);
        for c in ['a', 'b', 'c'] {
            let share = s.chars().filter(|x| *x == c).count();
            assert!((800..1200).contains(&share), "{c}: {share} of 3000");
        }
        assert_eq!(rng.alnum(0), "");
    }

    #[test]
    fn the_os_rng_draws_distinct_secrets() {
        let rng: BoxRng = Arc::new(OsRng);
        assert_ne!(rng.alnum(32), rng.alnum(32));
        assert_ne!(rng.bytes::<16>(), rng.bytes::<16>());
    }
}
