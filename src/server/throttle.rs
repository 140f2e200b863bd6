//! Throttling of failed credential checks (password logins, API-key
//! exchanges), so guessing is slow: after `limit` failures for one key within
//! `window`, that key is refused with 429 until the window has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ApiError;

pub struct Throttle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuse `key` while it has used up its failures in the current window.
    pub fn check(&self, key: &str) -> Result<(), ApiError> {
        let mut failures = self.failures.lock().expect("throttle lock poisoned");
        let now = Instant::now();
        failures.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        match failures.get(key) {
            Some((count, since)) if *count >= self.limit => {
                let wait = self
                    .window
                    .saturating_sub(now.duration_since(*since))
                    .as_secs()
                    .max(1);
                Err(ApiError::new(
                    429,
                    format!("Too many failed attempts; try again in {wait} seconds"),
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, key: &str) {
        let mut failures = self.failures.lock().expect("throttle lock poisoned");
        let entry = failures
            .entry(key.to_string())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .expect("throttle lock poisoned")
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_limit_are_refused_until_the_window_ends() {
        let throttle = Throttle::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(throttle.check("alice").is_ok());
            throttle.failed("alice");
        }
        assert_eq!(throttle.check("alice").unwrap_err().status.as_u16(), 429);
        assert!(throttle.check("bob").is_ok(), "other keys are not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(throttle.check("alice").is_ok());
    }
}
