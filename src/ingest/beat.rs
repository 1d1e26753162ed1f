//! When the ingest thread wakes without a reading: the next flush, the alarm engine's next deadline
//! ([`Engine::next_due`](crate::pipeline::Engine::next_due)), the systemd watchdog, a retry of what the disk
//! refused. Nothing else: an idle gateway wakes for its readings, not for a beat (a wake-up is 50–100 µs of CPU on
//! a small board, most of what an idle daemon spends).
//!
//! Every deadline is anchored to when its work was last done, never to "now": the loop wakes for each reading, and a
//! deadline computed afresh each time would never come.

use crate::model::Timestamp;
use std::time::{Duration, Instant};

/// Looked at this often while something waits for the disk or a timer (held alerts, BUFFER_OVERFLOW's clear).
const AWAKE: Duration = Duration::from_secs(1);
/// The engine's deadline is never nearer than this after the last beat.
const MIN_GAP: Duration = Duration::from_millis(50);
/// Never longer than this without a look (bounds the cost of any deadline missed), rounded up to the next 4.096 s.
const MAX_SLEEP: Duration = Duration::from_secs(8);
/// Alerts take at most this many held readings into their commit. Those readings then reach the sinks with the
/// alerts: the InfluxDB write of 2,000 readings on the async thread delayed the alerts' publish (`scripts/budget.sh`,
/// 2,000 sensors: alert p50 11–14 → 17–20 ms with every batch folded). A gateway of 100 registers every 100 ms
/// holds 500–1,100 readings when an alert folds them.
pub(super) const FOLD_MAX: usize = 1_500;
/// A commit ticks the engine along when it is due within this (see [`Beat::tick_along`]): half of what a busy
/// engine waits between ticks.
const TICK_ALONG: Duration = Duration::from_millis(500);

pub(super) struct Beat {
    /// The timer wheel's origin (see `util::on_grid`).
    origin: Instant,
    /// When the beat last ran.
    pub(super) last: Instant,
    /// When readings were last committed (or tried) at the beat.
    pub(super) last_flush: Instant,
    /// The alarm engine's answer to "when are you next due" on the timeline; `None`: only a reading.
    engine: Option<Timestamp>,
}

/// What the ingest thread knows when it goes to sleep.
pub(super) struct Waiting {
    /// Readings held for the next commit.
    pub(super) pending: bool,
    pub(super) flush_every: Duration,
    /// Something is retried or timed each second (alerts the disk refused, an open BUFFER_OVERFLOW).
    pub(super) awake: bool,
    /// The systemd watchdog's next notification.
    pub(super) watchdog: Option<Instant>,
}

impl Beat {
    pub(super) fn new(origin: Instant) -> Beat {
        let now = Instant::now();
        Beat {
            origin,
            last: now,
            last_flush: now,
            engine: None,
        }
    }

    /// The engine's answer asked at the beat: it replaces the last.
    pub(super) fn engine_ticked(&mut self, due: Option<Timestamp>) {
        self.engine = due;
    }

    /// The engine's answer asked between beats (after an alert transition, a command, a reload): the earlier of it
    /// and the last, so a deadline already set is never moved later by being asked again.
    pub(super) fn engine_changed(&mut self, due: Option<Timestamp>) {
        self.engine = match (self.engine, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// Whether the engine is due within [`TICK_ALONG`] of `now_ts`, so the thread, awake for a commit, takes its
    /// tick along. Ticking early is harmless: what is not due yet stays as it is and keeps its deadline; what the clock
    /// moves by itself (an active CHATTERING or ALARM_FLOOD, derived sensors: every second) is looked at a little
    /// sooner and next a whole second after — on the same wake-up as the next second's commit rather than a wake-up
    /// of its own between two commits (two wake-ups of this thread a second became one under a flood of alerts).
    pub(super) fn tick_along(&self, now_ts: Timestamp) -> bool {
        self.engine
            .is_some_and(|t| t.0 <= now_ts.0.saturating_add(TICK_ALONG.as_millis() as i64))
    }

    /// The flush is due (a few ms early counts).
    pub(super) fn flush_due(&self, flush_every: Duration, now: Instant) -> bool {
        now + Duration::from_millis(5) >= self.last_flush + flush_every
    }

    /// Alert transitions to commit now take the `held` readings with them, in one transaction (one fsync where
    /// two would be), once half a flush interval has passed since the last flush: never more than two reading
    /// batches per interval, however many alerts. Not more than [`FOLD_MAX`] readings: encoding and writing them
    /// is on the alert's way to its subscribers.
    pub(super) fn fold_due(
        &self,
        alerts: bool,
        held: usize,
        flush_every: Duration,
        now: Instant,
    ) -> bool {
        alerts && held <= FOLD_MAX && self.flush_due(flush_every / 2, now)
    }

    /// When to wake next, `now_ts` being the timeline's now; on the timer wheel's grid (one wake-up, not two).
    pub(super) fn next(&self, now_ts: Timestamp, w: &Waiting) -> Instant {
        use crate::util::{on_grid, COARSE, FINE};
        let now = Instant::now();
        // The longest sleep ends on the coarse grid (one wake-up); any nearer deadline on the fine one.
        let longest = on_grid(self.origin, self.last + MAX_SLEEP, COARSE);
        let mut due = longest;
        if w.pending {
            due = due.min(self.last_flush + w.flush_every);
        }
        if w.awake {
            due = due.min(self.last + AWAKE);
        }
        if let Some(t) = self.engine {
            // Never sooner than a few ms after the last beat: a deadline the tick could not move on must not spin.
            due = due.min((now + t.since(now_ts)).max(self.last + MIN_GAP));
        }
        if let Some(t) = w.watchdog {
            due = due.min(t);
        }
        if due == longest {
            due
        } else {
            on_grid(self.origin, due, FINE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Waiting {
        Waiting {
            pending: false,
            flush_every: Duration::from_secs(1),
            awake: false,
            watchdog: None,
        }
    }

    #[test]
    fn an_idle_thread_sleeps_until_the_engine_is_due_or_the_longest_sleep() {
        let mut b = Beat::new(Instant::now());
        let now_ts = Timestamp(1_000_000);
        let far = b
            .next(now_ts, &idle())
            .saturating_duration_since(Instant::now());
        assert!(
            far > Duration::from_secs(7) && far <= MAX_SLEEP + Duration::from_millis(4_096),
            "{far:?}"
        );
        b.engine_ticked(Some(Timestamp(1_003_000)));
        let d = b
            .next(now_ts, &idle())
            .saturating_duration_since(Instant::now());
        assert!(
            d > Duration::from_millis(2_900) && d < Duration::from_millis(3_100),
            "{d:?}"
        );
    }

    #[test]
    fn pending_readings_are_flushed_a_flush_interval_after_the_last_flush_however_often_it_wakes() {
        let b = Beat::new(Instant::now());
        let w = Waiting {
            pending: true,
            ..idle()
        };
        let first = b.next(Timestamp(0), &w);
        std::thread::sleep(Duration::from_millis(30));
        // Woken by readings meanwhile: the deadline has not moved.
        assert_eq!(b.next(Timestamp(30), &w), first);
        assert!(first <= b.last_flush + Duration::from_millis(1_064));
    }

    #[test]
    fn a_commit_takes_the_engine_along_only_when_it_is_due_soon() {
        let mut b = Beat::new(Instant::now());
        assert!(!b.tick_along(Timestamp(1_000)), "no deadline");
        b.engine_ticked(Some(Timestamp(1_400)));
        assert!(b.tick_along(Timestamp(1_000)), "due in 400 ms");
        assert!(b.tick_along(Timestamp(2_000)), "overdue");
        b.engine_ticked(Some(Timestamp(1_600)));
        assert!(
            !b.tick_along(Timestamp(1_000)),
            "due in 600 ms: its own wake-up"
        );
    }

    #[test]
    fn asked_between_beats_the_engine_never_moves_its_deadline_later() {
        let mut b = Beat::new(Instant::now());
        b.engine_ticked(Some(Timestamp(5_000)));
        b.engine_changed(Some(Timestamp(9_000)));
        assert_eq!(b.engine, Some(Timestamp(5_000)));
        b.engine_changed(Some(Timestamp(2_000)));
        assert_eq!(b.engine, Some(Timestamp(2_000)));
        b.engine_changed(None);
        assert_eq!(b.engine, Some(Timestamp(2_000)));
        b.engine_ticked(None);
        assert_eq!(b.engine, None);
    }

    #[test]
    fn alerts_take_the_readings_with_them_from_half_a_flush_interval_on() {
        let t0 = Instant::now();
        let b = Beat::new(t0);
        let every = Duration::from_secs(1);
        assert!(!b.fold_due(true, 100, every, t0 + Duration::from_millis(400)));
        assert!(b.fold_due(true, 100, every, t0 + Duration::from_millis(600)));
        assert!(!b.fold_due(false, 100, every, t0 + Duration::from_millis(600)));
        // Too many held: the alerts go alone, the readings at the flush.
        assert!(b.fold_due(true, FOLD_MAX, every, t0 + Duration::from_millis(600)));
        assert!(!b.fold_due(true, FOLD_MAX + 1, every, t0 + Duration::from_millis(600)));
    }
}
