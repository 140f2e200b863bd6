//! Rate limits, keyed, on governor's GCRA limiters: password logins (per
//! user name and per client address, each attempt counted before its
//! password is checked, so concurrent guesses cannot all pass first),
//! failed API-key exchanges (per client address and claimed user, counted
//! after the check: one right key may run many exchanges at once), and
//! refused submissions written to a project's audit trail.
//!
//! A key may use `burst` at once and gets one more every `window / burst`.
//! Keys are kept as SHA-256 digests, and at most [`MAX_KEYS`] of them: past
//! that, keys back to a full allowance are forgotten, and while every one
//! kept is still in use, new keys are refused, so memory stays bounded
//! whatever names clients send.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

use super::ApiError;

/// Most keys remembered at once (a few MB).
pub const MAX_KEYS: usize = 100_000;

type Key = [u8; 32];

pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<Key>,
    clock: DefaultClock,
}

/// Why a use was refused.
#[derive(Debug, PartialEq)]
pub enum Limited {
    /// This key has used its allowance: wait this long.
    Wait(Duration),
    /// Too many keys are in use at once.
    Full,
}

impl RateLimit {
    /// `burst` uses at once, refilled over `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        let burst = std::num::NonZeroU32::new(burst).expect("a burst of at least one");
        let quota = Quota::with_period(window / burst.get())
            .expect("a window longer than zero")
            .allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::dashmap(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Count one use of `key`, or refuse it.
    pub fn take(&self, key: &str) -> Result<(), Limited> {
        if self.limiter.len() >= MAX_KEYS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            if self.limiter.len() >= MAX_KEYS {
                return Err(Limited::Full);
            }
        }
        let key: Key = Sha256::digest(key.as_bytes()).into();
        self.limiter
            .check_key(&key)
            .map_err(|not_until| Limited::Wait(not_until.wait_time_from(self.clock.now())))
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.limiter.len()
    }
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        match limited {
            Limited::Wait(wait) => ApiError::new(
                429,
                format!(
                    "Too many attempts; try again in {} seconds",
                    wait.as_secs().max(1)
                ),
            ),
            Limited::Full => ApiError::new(
                429,
                "Too many clients are failing to log in at once; try again later",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_past_the_burst_wait_for_the_refill() {
        let limit = RateLimit::new(3, Duration::from_millis(300));
        for _ in 0..3 {
            assert!(limit.take("alice").is_ok());
        }
        let Err(Limited::Wait(wait)) = limit.take("alice") else {
            panic!("the fourth use was allowed");
        };
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limit.take("bob").is_ok(), "other keys are not affected");
        std::thread::sleep(Duration::from_millis(110));
        assert!(limit.take("alice").is_ok());
    }

    #[test]
    fn concurrent_uses_get_exactly_the_burst() {
        let limit = std::sync::Arc::new(RateLimit::new(10, Duration::from_secs(60)));
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..300)
                .map(|_| {
                    let limit = limit.clone();
                    scope.spawn(move || limit.take("alice").is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(allowed, 10);
    }

    #[test]
    fn memory_is_bounded_whatever_keys_arrive() {
        let limit = RateLimit::new(3, Duration::from_secs(60));
        let long = "x".repeat(1 << 20);
        let mut full = 0;
        for i in 0..MAX_KEYS + 50 {
            let key = format!("{i}{}", if i == 0 { &long } else { "" });
            if limit.take(&key) == Err(Limited::Full) {
                full += 1;
            }
        }
        assert_eq!(limit.remembered(), MAX_KEYS);
        assert_eq!(full, 50);
    }
}
