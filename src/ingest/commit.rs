//! The ingest thread's commits: alert transitions at once, readings every flush interval, and both in one
//! transaction when they meet; what the disk refuses is held in memory (bounded) and retried; the size cap.

use super::{Writer, CAP_EVERY, MAX_PENDING, MAX_UNSAVED_ALERTS};
use crate::model::{AlertState, AlertType, Timestamp};
use crate::store::{Appended, Batch, StoreError};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Writer {
    /// Commit alert transitions before anything publishes them; keep them in memory if the disk refuses.
    pub(super) fn commit_alerts(&mut self) {
        if !self.take_alerts() {
            return;
        }
        let snap = self.snap();
        let moves = self.handoff.take_now();
        match self
            .store
            .append_all(&[], &self.unsaved_alerts, Some(snap.as_state()), &moves)
        {
            Ok(mut added) => {
                self.snap_saved(&snap);
                self.alerts_saved(&mut added);
            }
            Err(e) => {
                self.handoff.put_back(moves);
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.store_failing.store(true, Ordering::Relaxed);
                self.alerts_refused(&e);
            }
        }
    }

    /// No readings this flush, so no next flush is timed: commit the cursor moves the sinks handed over and let
    /// them save their own from now on (store/handoff.rs).
    pub(super) fn commit_moves(&mut self) {
        let moves = self.handoff.take(None);
        if moves.is_empty() {
            return;
        }
        if let Err(e) = self.store.append_all(&[], &[], None, &moves) {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "Cannot save the sinks' cursors; they are kept for the next commit (a restart before it re-delivers).");
            self.handoff.put_back(moves);
        }
    }

    /// Commit the readings held (and any alert transitions, in the same transaction: one fsync where two would be).
    pub(super) fn flush(&mut self) {
        // Readings keep coming while each flush has some: the next flush is timed before any arrives (inline.rs).
        self.flowing = !self.pending.is_empty();
        if self.pending.is_empty() {
            self.commit_alerts();
            self.commit_moves();
            return;
        }
        self.publish_live();
        let alerts = self.take_alerts();
        // Alarm state goes with every alert commit (what the transitions changed); all of it every SNAPSHOT_EVERY.
        let snap = (alerts || self.full_snapshot_due()).then(|| self.snap());
        let state = snap.as_ref().map(|s| s.as_state());
        // The sinks' cursor moves ride along; the next flush is timed (readings flow), so they may hand more.
        let moves = self
            .handoff
            .take(Some(Instant::now() + self.cfg.buffer.flush_interval.0));
        let mut r = self
            .store
            .append_all(&self.pending, &self.unsaved_alerts, state, &moves);
        if r.as_ref().is_err_and(StoreError::is_full) {
            // The write-ahead log may be what is full (it grows until a checkpoint, and a WAL that cannot grow
            // blocks every write): move it into the database, truncate it, and try once more before dropping
            // anything.
            self.store.checkpoint();
            r = self
                .store
                .append_all(&self.pending, &self.unsaved_alerts, state, &moves);
        }
        let committed;
        match r {
            Ok(mut added) => {
                if let Some(snap) = &snap {
                    self.snap_saved(snap);
                }
                // The committed readings go to the sinks that are caught up as they are (see store/fresh.rs).
                committed = self.pending.len();
                let readings = std::mem::replace(&mut self.pending, Vec::with_capacity(committed));
                self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
                if self.metrics.store_failing.swap(false, Ordering::Relaxed) {
                    self.fail_log.reset();
                    tracing::info!(
                        "Readings are committed again; what was held in memory is stored."
                    );
                }
                if let Some((after, id)) = added.batch {
                    self.fresh.put_readings(after, Batch { id, readings });
                    self.readings_tx.send_replace(id);
                }
                if alerts {
                    self.alerts_saved(&mut added);
                }
            }
            Err(e) => {
                self.handoff.put_back(moves);
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.store_failing.store(true, Ordering::Relaxed);
                if let Some(suppressed) = self.fail_log.ready() {
                    tracing::error!(error = %e, held = self.pending.len(), suppressed, "Cannot commit readings; holding them in memory and retrying.");
                }
                if alerts {
                    self.alerts_refused(&e);
                }
                if e.is_full() {
                    // Still full after the checkpoint: make room by dropping the oldest stored readings (alerts
                    // are kept).
                    let used = self.store.used_bytes().unwrap_or(0);
                    self.enforce_cap(used / 10 * 9);
                }
                if self.pending.len() > MAX_PENDING {
                    let n = self.pending.len() - MAX_PENDING;
                    self.pending.drain(..n);
                    self.metrics.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(dropped = n, "Memory buffer full while the disk refuses writes; dropped the oldest readings.");
                }
                return;
            }
        }
        // The configured cap, lowered to what the disk and the file-size limit leave: looked at every CAP_EVERY, or
        // sooner once the readings committed since could fill a hundredth of the cap at 16 bytes each (stored,
        // they take 3-5). Five system calls and three queries with every flush were 1 % of the gateway workload.
        let (at, since) = self.cap_check.unwrap_or((Instant::now(), u64::MAX));
        let since = since.saturating_add(committed as u64);
        let cap = self.cfg.buffer.max_size.0;
        if since.saturating_mul(16) >= cap / 100 || at.elapsed() >= CAP_EVERY {
            self.cap_check = Some((Instant::now(), 0));
            let max = self.store.room(cap);
            self.enforce_cap(max);
        } else {
            self.cap_check = Some((at, since));
        }
    }

    /// Move new transitions (logged and counted once) to the unsaved ones; whether any are waiting for a commit.
    fn take_alerts(&mut self) -> bool {
        for a in &self.alerts {
            crate::telemetry::log_alert(a);
        }
        self.metrics
            .alerts
            .fetch_add(self.alerts.len() as u64, Ordering::Relaxed);
        self.unsaved_alerts.append(&mut self.alerts);
        !self.unsaved_alerts.is_empty()
    }

    /// The transitions are stored: the sinks may publish them.
    fn alerts_saved(&mut self, added: &mut Appended) {
        self.unsaved_alerts.clear();
        if let Some(&(last, _)) = added.events.last() {
            let after = added.events_after;
            self.fresh.put_events(after, added.readable_events());
            self.events_tx.send_replace(last);
        }
    }

    /// Keep refused transitions for the next commit, the oldest dropped beyond MAX_UNSAVED_ALERTS.
    fn alerts_refused(&mut self, e: &StoreError) {
        tracing::error!(error = %e, held = self.unsaved_alerts.len(), "Cannot commit alert events; holding them in memory and retrying.");
        if self.unsaved_alerts.len() > MAX_UNSAVED_ALERTS {
            let n = self.unsaved_alerts.len() - MAX_UNSAVED_ALERTS;
            self.unsaved_alerts.drain(..n);
            self.metrics
                .dropped_alerts
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::error!(dropped = n, "Memory for unsaved alerts is full while the disk refuses writes; dropped the oldest alert events.");
        }
    }

    /// Drop the oldest stored readings down to `max` bytes, raising BUFFER_OVERFLOW (cleared ten minutes after
    /// the last drop).
    pub(super) fn enforce_cap(&mut self, max: u64) {
        match self.store.enforce_cap(max) {
            Ok(Some(d)) => {
                self.metrics
                    .dropped
                    .fetch_add(d.readings, Ordering::Relaxed);
                tracing::warn!(readings = d.readings, batches = d.batches, from = %d.first, to = %d.last,
                    max_size = max, "Buffer cap reached: dropped the oldest readings.");
                match self.overflow.as_mut() {
                    Some((_, last)) => *last = Instant::now(),
                    None => {
                        let reason = format!(
                            "buffer cap of {} bytes reached: dropped {} readings from {} to {}",
                            max, d.readings, d.first, d.last
                        );
                        let a = self.engine.gateway_alert(
                            AlertType::BufferOverflow,
                            AlertState::Raised,
                            Timestamp::now(),
                            reason,
                        );
                        if let Err(e) = self.store.set_overflow_alert(Some(&a)) {
                            tracing::warn!(error = %e, "Cannot save the BUFFER_OVERFLOW state.");
                        }
                        self.overflow = Some((a.clone(), Instant::now()));
                        self.alerts.push(a);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                if let Some(suppressed) = self.fail_log.ready() {
                    tracing::error!(error = %e, suppressed, "Cannot enforce the buffer cap.");
                }
            }
        }
    }
}
