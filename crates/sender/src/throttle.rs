//! How fast the worker may send: a global token bucket, optional per-domain
//! buckets, and a brake that a "slow down" reply (421, 4.7.x) pulls for the
//! whole transport.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// How long the brake stays on after the last slow-down reply; each new
/// one while it is on doubles the penalty, up to `MAX_FACTOR`.
const BRAKE_HOLD: Duration = Duration::from_secs(60);
const MAX_FACTOR: u32 = 64;

/// Rate limits shared by every sending task of one worker.
pub struct Throttle {
    global: Option<DefaultDirectRateLimiter>,
    per_domain: HashMap<String, DefaultDirectRateLimiter>,
    base_interval: Duration,
    brake: Mutex<Brake>,
}

#[derive(Debug, Clone, Copy)]
struct Brake {
    factor: u32,
    until: Option<Instant>,
}

impl Throttle {
    /// `rate_per_second` 0 means unlimited. `per_domain` maps a recipient
    /// domain (lower case) to its own messages-per-second limit.
    pub fn new(rate_per_second: u32, per_domain: &HashMap<String, u32>) -> Self {
        let global =
            NonZeroU32::new(rate_per_second).map(|r| RateLimiter::direct(Quota::per_second(r)));
        let per_domain = per_domain
            .iter()
            .filter_map(|(d, r)| {
                NonZeroU32::new(*r)
                    .map(|r| (d.to_lowercase(), RateLimiter::direct(Quota::per_second(r))))
            })
            .collect();
        let base_interval = match rate_per_second {
            0 => Duration::from_millis(10),
            r => Duration::from_secs(1) / r,
        };
        Self {
            global,
            per_domain,
            base_interval,
            brake: Mutex::new(Brake {
                factor: 1,
                until: None,
            }),
        }
    }

    /// Waits until a message to `domain` may go out.
    pub async fn until_ready(&self, domain: &str) {
        if let Some(extra) = self.brake_delay() {
            tokio::time::sleep(extra).await;
        }
        if let Some(g) = &self.global {
            g.until_ready().await;
        }
        if !self.per_domain.is_empty()
            && let Some(d) = self.per_domain.get(&domain.to_lowercase())
        {
            d.until_ready().await;
        }
    }

    /// A server asked us to slow down: every message waits longer for a while.
    pub fn slow_down(&self) {
        let mut b = self.brake.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.factor = if b.until.is_some_and(|u| u > now) {
            (b.factor * 2).min(MAX_FACTOR)
        } else {
            2
        };
        b.until = Some(now + BRAKE_HOLD);
        tracing::warn!(
            factor = b.factor,
            "server asked to slow down; braking the transport"
        );
    }

    /// Whether the brake is on now.
    pub fn is_braking(&self) -> bool {
        self.brake_delay().is_some()
    }

    fn brake_delay(&self) -> Option<Duration> {
        let b = *self.brake.lock().unwrap_or_else(|p| p.into_inner());
        match b.until {
            Some(u) if u > Instant::now() => Some(self.base_interval * (b.factor - 1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn brake_engages_doubles_and_releases() {
        let t = Throttle::new(10, &HashMap::new());
        assert!(!t.is_braking());
        t.slow_down();
        assert_eq!(t.brake_delay(), Some(Duration::from_millis(100)));
        t.slow_down();
        assert_eq!(t.brake_delay(), Some(Duration::from_millis(300)));
        tokio::time::advance(BRAKE_HOLD + Duration::from_secs(1)).await;
        assert!(!t.is_braking());
    }
}
