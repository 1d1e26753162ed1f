//! The systemd watchdog, fed by the ingest thread once a tick — only while the async runtime (sources, sinks, the
//! signals) also runs what it is given, so a wedged runtime gets the daemon restarted instead of looking alive.

use crate::metrics::SharedMetrics;
use std::sync::Arc;
use std::time::Duration;

/// The async runtime counts as wedged when it has not beaten for this long (the unit's WatchdogSec is 30 s).
const ASYNC_STALL: Duration = Duration::from_secs(10);
/// The async runtime is asked to prove itself alive every this many ticks (well inside `ASYNC_STALL`).
const PROVE_EVERY: u32 = 3;

/// The watchdog as the ingest thread sees it; inert without `WatchdogSec=`.
pub(super) struct Watchdog {
    /// The async runtime, when systemd watches the daemon.
    rt: Option<tokio::runtime::Handle>,
    ticks: u32,
}

impl Watchdog {
    /// `rt` is the async runtime to watch; nothing is done unless systemd asked for a watchdog.
    pub(super) fn new(rt: tokio::runtime::Handle) -> Watchdog {
        let mut usec = 0;
        let enabled = sd_notify::watchdog_enabled(false, &mut usec);
        Watchdog {
            rt: enabled.then_some(rt),
            ticks: 0,
        }
    }

    /// Once a tick: every few ticks ask the runtime to prove itself alive (a task on it records a beat: one wake-up
    /// of the runtime every few seconds, where a timer of its own would wake it every second and prove less — a
    /// runtime whose timers fire may not be running tasks); notify systemd while the last beat is recent. Not
    /// before the first beat: the first notification follows the runtime's first run of it, a tick later.
    pub(super) fn tick(&mut self, metrics: &SharedMetrics) {
        let Some(rt) = &self.rt else { return };
        if self.ticks.is_multiple_of(PROVE_EVERY) {
            let m = Arc::clone(metrics);
            drop(rt.spawn(async move { m.beat() }));
        }
        self.ticks = self.ticks.wrapping_add(1);
        if metrics.async_alive(ASYNC_STALL) {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }
}
