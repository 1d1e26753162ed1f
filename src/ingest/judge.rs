//! Judging readings where they arrive. A source's batch is validated, timestamped on the daemon's timeline and
//! evaluated by the alarm engine on the source's own thread, under one lock, the moment it is read; the ingest
//! thread is woken only for what must be committed at once (alert transitions, a full batch) and otherwise
//! commits the judged readings on its beat. A poll thus costs no hand-over between threads (paired runs of the
//! gateway workload: ≈ 7 % less CPU than waking the ingest thread for every poll).

use super::clock;
use crate::channels::Accept;
use crate::metrics::SharedMetrics;
use crate::model::{Alert, Quality, Reading, Readings, Timestamp};
use crate::pipeline::Engine;
use crate::util::FastMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

/// What the sources and the ingest thread share.
pub(super) struct Shared {
    judge: Mutex<Judge>,
    /// Wakes the ingest thread: alert transitions to commit, or a full batch.
    pub(super) wake: Notify,
}

impl Shared {
    pub(super) fn new(judge: Judge) -> Shared {
        Shared {
            judge: Mutex::new(judge),
            wake: Notify::new(),
        }
    }

    /// The judge. Held for a batch's evaluation or a commit's take, never across I/O.
    pub(super) fn lock(&self) -> MutexGuard<'_, Judge> {
        // A panic while judging aborts the daemon (release builds): a poisoned lock only happens in tests.
        self.judge.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take no more readings (the ingest thread has committed its last).
    pub(super) fn close(&self) {
        self.lock().closed = true;
    }
}

impl Accept for Shared {
    fn accept(&self, batch: Readings) -> bool {
        let urgent = {
            let mut j = self.lock();
            // Checked under the lock: nothing is judged after the ingest thread took its last.
            if j.closed {
                return false;
            }
            j.watch_clock();
            for r in batch {
                j.accept(r);
            }
            !j.alerts.is_empty() || j.judged.len() >= j.batch_max
        };
        if urgent {
            self.wake.notify_one();
        }
        true
    }
}

/// The alarm engine with what it needs to judge a reading, and what it judged since the last take.
pub(super) struct Judge {
    pub(super) engine: Engine,
    /// The daemon's timeline: the wall clock, never stepping back (see clock.rs).
    pub(super) clock: clock::Timeline,
    /// Newest timestamp given per sensor.
    last_ts: FastMap<Arc<str>, Timestamp>,
    /// Judged readings not yet taken for a commit.
    pub(super) judged: Vec<Reading>,
    /// Alert transitions not yet taken for a commit.
    pub(super) alerts: Vec<Alert>,
    /// A batch this large is committed without waiting for the beat (`buffer.batch_max_readings`).
    pub(super) batch_max: usize,
    metrics: SharedMetrics,
    /// Until the first reading: when the daemon started (logged with it).
    first: Option<Instant>,
    /// The daemon is stopping: no more readings are taken.
    closed: bool,
}

impl Judge {
    pub(super) fn new(engine: Engine, batch_max: usize, metrics: SharedMetrics) -> Judge {
        Judge {
            engine,
            clock: clock::Timeline::new(Timestamp::now(), Instant::now()),
            last_ts: FastMap::default(),
            judged: Vec::new(),
            alerts: Vec::new(),
            batch_max,
            metrics,
            first: Some(Instant::now()),
            closed: false,
        }
    }

    /// A wall-clock step (more than 2 s off the monotonic clock since the last look) is logged; a step forward
    /// moves the alarm engine's timers with it, a step back is absorbed by the timeline (clock.rs). Looked for
    /// before each batch, not only at the beat: a reading stamped after an NTP step must not meet alarm timers
    /// that have not moved with it.
    pub(super) fn watch_clock(&mut self) {
        let seen = self.clock.observe(Timestamp::now(), Instant::now());
        if seen.step_ms > 0 {
            tracing::warn!(
                step_ms = seen.step_ms,
                "The wall clock stepped forward; alarm timers move with it."
            );
        } else if seen.step_ms < 0 {
            tracing::warn!(step_ms = seen.step_ms, slew_s = -seen.step_ms / 100,
                "The wall clock stepped back; readings keep their order and spacing on a clock that runs 10 % slow until it meets the wall clock again, and alarm delays are not shortened.");
        }
        if seen.shift_ms != 0 {
            self.engine.shift_clock(seen.shift_ms);
        }
    }

    /// Judge one reading from a source.
    pub(super) fn accept(&mut self, mut r: Reading) {
        if let Some(started) = self.first.take() {
            tracing::info!(after_ms = %format!("{:.1}", started.elapsed().as_secs_f64() * 1e3), sensor = %r.sensor, "First reading.");
        }
        r.ts = self.clock.map(r.ts);
        self.forward_only(&mut r);
        self.engine.evaluate(&mut r, &mut self.alerts);
        self.hold(r);
    }

    /// The once-a-second alarm tick: stale sensors, delays and shelves that ran out, derived sensors.
    pub(super) fn tick(&mut self) {
        let now = self.clock.now();
        self.engine.tick(now, &mut self.alerts);
        let mut out = std::mem::take(&mut self.alerts);
        for mut r in self.engine.derive(now, &mut out) {
            // A derived sensor's reading is already validated and evaluated.
            self.forward_only(&mut r);
            self.hold(r);
        }
        self.alerts = out;
    }

    /// One sensor's readings never share a timestamp or go back in time (a stepped-back clock): InfluxDB would
    /// overwrite.
    fn forward_only(&mut self, r: &mut Reading) {
        match self.last_ts.get_mut(&r.sensor) {
            Some(last) => {
                if r.ts <= *last {
                    r.ts = Timestamp(last.0.saturating_add(1));
                    self.metrics.clock_adjusted.fetch_add(1, Ordering::Relaxed);
                }
                *last = r.ts;
            }
            None => {
                self.last_ts.insert(Arc::clone(&r.sensor), r.ts);
            }
        }
    }

    /// Count a judged reading and hold it for the next commit.
    fn hold(&mut self, r: Reading) {
        self.metrics.readings.fetch_add(1, Ordering::Relaxed);
        if r.quality != Quality::Good {
            self.metrics.readings_bad.fetch_add(1, Ordering::Relaxed);
        }
        self.judged.push(r);
    }
}
