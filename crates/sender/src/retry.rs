//! When to try a deferred delivery again, and when to give up.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;

/// The backoff schedule for deferred deliveries: `initial` after the first
/// failure, doubling up to `max_delay`, and no more attempts once a delivery
/// is older than `max_age` (defaults 5 min, 4 h, 4 days, as a mail
/// administrator would expect from a well-behaved sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first deferral.
    pub initial: Duration,
    /// The cap of the doubling delay.
    pub max_delay: Duration,
    /// Age (since enqueue) after which a deferred delivery fails for good.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5 * 60),
            max_delay: Duration::from_secs(4 * 3600),
            max_age: Duration::from_secs(4 * 86400),
        }
    }
}

impl RetryPolicy {
    /// The range of the jitter factor: ±20 %, so that a list deferred at
    /// once by one server does not come back in one burst.
    pub const JITTER: RangeInclusive<f64> = 0.8..=1.2;

    /// A jitter factor drawn from [`RetryPolicy::JITTER`].
    pub fn random_jitter() -> f64 {
        rand::rng().random_range(Self::JITTER)
    }

    /// The delay before the next try after `attempts` attempts (1 = the
    /// first one just failed), scaled by `jitter` (see
    /// [`RetryPolicy::JITTER`]).
    pub fn delay_after(&self, attempts: u32, jitter: f64) -> Duration {
        let base = self.base_delay(attempts);
        base.mul_f64(jitter)
            .min(self.max_delay.mul_f64(*Self::JITTER.end()))
    }

    /// The delay without jitter.
    pub fn base_delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.initial
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// Whether a delivery enqueued `age` ago, deferred once more, should
    /// give up instead of waiting `next_delay` again.
    pub fn gives_up(&self, age: Duration, next_delay: Duration) -> bool {
        age.saturating_add(next_delay) > self.max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.base_delay(1), Duration::from_secs(300));
        assert_eq!(p.base_delay(2), Duration::from_secs(600));
        assert_eq!(p.base_delay(4), Duration::from_secs(2400));
        assert_eq!(p.base_delay(7), Duration::from_secs(4 * 3600));
        assert_eq!(p.base_delay(1000), Duration::from_secs(4 * 3600));
        for n in 1..20 {
            let d = p.delay_after(n, RetryPolicy::random_jitter());
            let b = p.base_delay(n);
            assert!(
                d >= b.mul_f64(0.79) && d <= b.mul_f64(1.21),
                "{n}: {d:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn gives_up_after_max_age() {
        let p = RetryPolicy::default();
        assert!(!p.gives_up(Duration::from_secs(3600), Duration::from_secs(3600)));
        assert!(p.gives_up(
            Duration::from_secs(4 * 86400 - 60),
            Duration::from_secs(3600)
        ));
    }
}
