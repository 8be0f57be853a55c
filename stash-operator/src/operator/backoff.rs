//! How long a controller waits before retrying an object whose reconcile failed: exponential
//! per object (a failing object does not slow the others), reset by its next success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Failures in a row per object, and the waits they lead to.
#[derive(Debug)]
pub struct ErrorBackoff {
    first: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl ErrorBackoff {
    /// Waits `first`, then twice as long after each further failure, never more than `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        ErrorBackoff {
            first,
            max: max.max(first),
            failures: Mutex::default(),
        }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let in_a_row = match self.failures.lock() {
            Ok(mut failures) => {
                let n = failures.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        let factor = 2u32.saturating_pow(in_a_row.saturating_sub(1).min(31));
        self.first.saturating_mul(factor).min(self.max)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_up_to_the_cap_and_resets_on_success() {
        let b = ErrorBackoff::new(Duration::from_secs(2), Duration::from_secs(20));
        let waits: Vec<u64> = (0..6).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 20, 20]);
        // Another object starts from the beginning.
        assert_eq!(b.failed("b"), Duration::from_secs(2));
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_secs(2));
        assert_eq!(b.failed("b"), Duration::from_secs(4));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let b = ErrorBackoff::new(Duration::from_secs(2), Duration::from_secs(300));
        for _ in 0..100 {
            assert!(b.failed("a") <= Duration::from_secs(300));
        }
    }
}
