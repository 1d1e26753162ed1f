//! Judging on the source's thread: a poll's readings are validated, evaluated and held for the next commit by the
//! thread that read them, without waking the ingest thread.
//!
//! Handing every poll to the ingest thread woke it once per poll (ten times a second for one Modbus device polled
//! every 100 ms): on the small boards watchpost runs on, a thread wake-up costs more than judging the hundred
//! readings it carries. So the [`Writer`] sits behind a mutex, and a source that finds it free judges its batch
//! itself ([`Writer::take_batch`], the very code the ingest thread runs), and wakes the ingest thread only when it
//! is needed at once: alert transitions to commit (they are committed before anyone publishes them, as ever), a
//! full batch, or the first readings held while no flush is timed. Everything else — commits and their fsync,
//! the engine's deadlines, commands, reloads — stays on the ingest thread, which holds the mutex meanwhile.
//!
//! A batch is queued to the ingest thread as before when:
//! * the mutex is held (a commit is under way): the source never waits for a disk;
//! * a queued batch has not been taken yet: one sensor's readings are judged in the order they were read;
//! * more than [`INLINE_PER_SECOND`] readings were judged inline this second: at high rates the judging goes to
//!   the ingest thread's core, as the ceiling needs;
//! * the ingest thread has stopped (shutdown): nothing is held that no commit will take.

use super::Writer;
use crate::channels::Inline;
use crate::model::Readings;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Readings judged inline per second at most; beyond, batches go to the ingest thread.
pub(super) const INLINE_PER_SECOND: usize = 20_000;

/// The writer and what a source needs to judge on its own thread.
pub(super) struct Shared {
    writer: Mutex<Writer>,
    /// Batches handed to the channel and not yet taken by the ingest thread.
    queued: AtomicUsize,
    /// The ingest thread sleeps with a flush timed: the first readings held need not wake it.
    pub(super) flush_timed: AtomicBool,
    /// Wakes the ingest thread for what a batch judged inline left to do at once.
    pub(super) nudge: tokio::sync::Notify,
}

/// The inline judging's own state, kept in the writer (under its mutex).
pub(super) struct Budget {
    /// False once the ingest thread has made its last commit.
    pub(super) open: bool,
    window: Instant,
    judged: usize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            open: true,
            window: Instant::now(),
            judged: 0,
        }
    }
}

impl Budget {
    /// Whether `n` more readings may be judged inline now.
    fn allows(&mut self, n: usize, now: Instant) -> bool {
        if !self.open {
            return false;
        }
        if now.saturating_duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.judged = 0;
        }
        if self.judged + n > INLINE_PER_SECOND {
            return false;
        }
        self.judged += n;
        true
    }
}

impl Shared {
    pub(super) fn new(w: Writer) -> Shared {
        Shared {
            writer: Mutex::new(w),
            queued: AtomicUsize::new(0),
            flush_timed: AtomicBool::new(false),
            nudge: tokio::sync::Notify::new(),
        }
    }

    /// The writer, for the ingest thread.
    pub(super) fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ingest thread took a queued batch.
    pub(super) fn dequeued(&self) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

impl Inline for Shared {
    fn take(&self, batch: Readings) -> Result<(), Readings> {
        // `try_lock`: a commit holds the mutex through its fsync, and a source must not wait for a disk.
        let Ok(mut w) = self.writer.try_lock() else {
            return Err(batch);
        };
        if self.queued.load(Ordering::Acquire) > 0 || !w.inline.allows(batch.len(), Instant::now())
        {
            return Err(batch);
        }
        let first = w.pending.is_empty();
        w.take_batch(batch);
        let nudge = !w.alerts.is_empty()
            || w.pending.len() >= w.cfg.buffer.batch_max_readings
            || (first && !self.flush_timed.load(Ordering::Acquire));
        drop(w);
        if nudge {
            self.nudge.notify_one();
        }
        Ok(())
    }

    fn queued(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_beyond_its_rate_and_once_closed() {
        let mut b = Budget::default();
        // The window's own start, not a second clock read: a thread descheduled between the two (seen under the
        // ARM emulator in CI) would put `t + 999 ms` past the window's second.
        let t = b.window;
        assert!(b.allows(INLINE_PER_SECOND, t));
        assert!(!b.allows(1, t + Duration::from_millis(999)));
        assert!(b.allows(1, t + Duration::from_secs(1)), "a new second");
        b.open = false;
        assert!(!b.allows(1, t + Duration::from_secs(5)));
    }
}
