//! Small helpers shared across layers.

use std::time::Duration;

/// Jittered exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// From `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }
    /// Next delay (full jitter between 50 % and 100 %).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        let d = exp.min(self.max);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
