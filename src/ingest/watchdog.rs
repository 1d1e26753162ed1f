//! The systemd watchdog, fed by the ingest thread — only while the async runtime (sources, sinks, the signals) also
//! runs what it is given, so a wedged runtime gets the daemon restarted instead of looking alive.

use crate::metrics::SharedMetrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The watchdog as the ingest thread sees it; inert without `WatchdogSec=`.
pub(super) struct Watchdog {
    /// The async runtime, when systemd watches the daemon.
    rt: Option<tokio::runtime::Handle>,
    /// Notify this often: a tenth of `WatchdogSec=` (3 s for the unit's 30 s).
    every: Duration,
    /// The async runtime counts as wedged when it has not beaten for this long: a third of `WatchdogSec=`.
    stall: Duration,
    /// When it is next due.
    next: Instant,
}

impl Watchdog {
    /// `rt` is the async runtime to watch; nothing is done unless systemd asked for a watchdog.
    pub(super) fn new(rt: tokio::runtime::Handle) -> Watchdog {
        let mut usec = 0;
        let enabled = sd_notify::watchdog_enabled(false, &mut usec);
        let period = Duration::from_micros(usec).max(Duration::from_secs(1));
        Watchdog {
            rt: enabled.then_some(rt),
            every: period / 10,
            stall: period / 3,
            next: Instant::now(),
        }
    }

    /// When [`Watchdog::tick`] is next due; `None` without a watchdog.
    pub(super) fn due(&self) -> Option<Instant> {
        self.rt.as_ref().map(|_| self.next)
    }

    /// At the beat: when due, ask the runtime to prove itself alive (a task on it records a beat: one wake-up of
    /// the runtime per notification, where a timer of its own would prove less — a runtime whose timers fire may not
    /// be running tasks), and notify systemd while the last beat is recent. Not before the first beat: the first
    /// notification follows the runtime's first run of the task, a period later.
    pub(super) fn tick(&mut self, metrics: &SharedMetrics) {
        let Some(rt) = &self.rt else { return };
        let now = Instant::now();
        if now + Duration::from_millis(5) < self.next {
            return;
        }
        self.next = now + self.every;
        let m = Arc::clone(metrics);
        drop(rt.spawn(async move { m.beat() }));
        if metrics.async_alive(self.stall) {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
}
