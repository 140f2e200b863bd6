//! Throttling of credential checks (password logins, API-key exchanges), so
//! guessing is slow: after `limit` attempts for one key within `window` that
//! did not succeed, that key is refused with 429 until the window has passed.
//!
//! A password attempt is counted before its password is checked, in the same
//! step as the test against the limit ([`Throttle::attempt`]): concurrent
//! guesses cannot all pass the test before any of them is counted. Key
//! exchanges, which one right key may run many of at once, count failures
//! after the check ([`Throttle::check`], [`Throttle::failed`]). Logins and key
//! exchanges have a throttle each, so keys made up for one cannot crowd out
//! the other's. Keys are kept as SHA-256 digests, and
//! at most [`MAX_KEYS`] of them (the oldest go first), so memory stays bounded
//! whatever names clients send.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ApiError;

/// Most keys remembered at once (about 5 MB).
pub const MAX_KEYS: usize = 100_000;

type Key = [u8; 32];

pub struct Throttle {
    limit: u32,
    window: Duration,
    attempts: Mutex<HashMap<Key, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn key(key: &str) -> Key {
        Sha256::digest(key.as_bytes()).into()
    }

    /// Count an attempt for `key`, or refuse it while the key has used up its
    /// attempts in the current window.
    pub fn attempt(&self, key: &str) -> Result<(), ApiError> {
        let key = Self::key(key);
        let mut attempts = self.attempts.lock().expect("throttle lock poisoned");
        let now = Instant::now();
        if let Some((count, since)) = attempts.get_mut(&key) {
            let elapsed = now.duration_since(*since);
            if elapsed >= self.window {
                *count = 0;
                *since = now;
            }
            if *count >= self.limit {
                let wait = self.window.saturating_sub(elapsed).as_secs().max(1);
                return Err(ApiError::new(
                    429,
                    format!("Too many failed attempts; try again in {wait} seconds"),
                ));
            }
            *count += 1;
            return Ok(());
        }
        if attempts.len() >= MAX_KEYS {
            attempts.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        if attempts.len() >= MAX_KEYS {
            // The oldest key still under its limit goes; a locked key stays
            // locked, so flooding with new keys cannot unlock one.
            let oldest = attempts
                .iter()
                .filter(|(_, (count, _))| *count < self.limit)
                .min_by_key(|(_, (_, since))| *since)
                .map(|(key, _)| *key);
            match oldest {
                Some(oldest) => {
                    attempts.remove(&oldest);
                }
                None => {
                    return Err(ApiError::new(
                        429,
                        "Too many clients are failing to log in at once; try again later",
                    ));
                }
            }
        }
        attempts.insert(key, (1, now));
        Ok(())
    }

    /// Refuse `key` while it has used up its attempts, without counting one:
    /// for checks a right credential may run many of at once (one API key
    /// shared by a hundred workers), counted by [`Throttle::failed`] after.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let attempts = self.attempts.lock().expect("throttle lock poisoned");
        match attempts.get(&Self::key(key)) {
            Some((count, since)) if *count >= self.limit && since.elapsed() < self.window => {
                let wait = self.window.saturating_sub(since.elapsed()).as_secs().max(1);
                Err(ApiError::new(
                    429,
                    format!("Too many failed attempts; try again in {wait} seconds"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Count a failed check of `key` (see [`Throttle::check`]).
    pub fn failed(&self, key: &str) {
        // At the limit already, the refusal simply stands until the window ends.
        let _ = self.attempt(key);
    }

    /// The credential was right: forget the key's attempts.
    pub fn succeeded(&self, key: &str) {
        self.attempts
            .lock()
            .expect("throttle lock poisoned")
            .remove(&Self::key(key));
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.attempts.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_past_the_limit_are_refused_until_the_window_ends() {
        let throttle = Throttle::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(throttle.attempt("alice").is_ok());
        }
        assert_eq!(throttle.attempt("alice").unwrap_err().status.as_u16(), 429);
        assert!(
            throttle.attempt("bob").is_ok(),
            "other keys are not affected"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(throttle.attempt("alice").is_ok());
        throttle.succeeded("alice");
        for _ in 0..3 {
            assert!(throttle.check("carol").is_ok());
            throttle.failed("carol");
        }
        assert!(throttle.check("carol").is_err());
    }

    #[test]
    fn concurrent_attempts_are_counted_before_any_is_checked() {
        let throttle = std::sync::Arc::new(Throttle::new(10, Duration::from_secs(60)));
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..300)
                .map(|_| {
                    let throttle = throttle.clone();
                    scope.spawn(move || throttle.attempt("alice").is_ok())
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
        let throttle = Throttle::new(3, Duration::from_secs(60));
        let long = "x".repeat(1 << 20);
        for i in 0..MAX_KEYS + 50 {
            let _ = throttle.attempt(&format!("{i}{}", if i == 0 { &long } else { "" }));
        }
        assert_eq!(throttle.remembered(), MAX_KEYS);
    }
}
