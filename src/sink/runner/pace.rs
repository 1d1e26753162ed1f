//! Pacing a sink to its `max_rate`.

use std::time::{Duration, Instant};

/// Pacing to `max_rate`: a token bucket holding at most one second of items (at least one chunk). A backlog
/// replays at the rate, never faster: an outage earns no credit beyond the burst (a lifetime average would replay
/// an outage's worth unpaced — exactly when a cloud broker's per-connection quota disconnects the gateway).
#[derive(Debug)]
pub(super) struct Pace {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pace {
    pub(super) fn new(rate: u64, chunk: usize) -> Pace {
        let burst = (rate as f64).max(chunk as f64);
        Pace {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Take `n` items at `now`; how long to wait before the next delivery.
    pub(super) fn take(&mut self, n: u64, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.last = now;
        self.tokens = (self.tokens + earned).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}
