//! The live state the sinks and `/metrics` read between commits: each sensor's latest value, the active alarms
//! and the alarm KPIs.

use super::Writer;
use crate::model::{LatestValue, Timestamp};
use std::sync::Arc;

impl Writer {
    /// Compute the alarm KPIs over the last `kpi_period` from the stored events and the standing alarms, and put
    /// them in the live state (the MQTT sink publishes them, `/metrics` shows them).
    pub(super) fn publish_kpi(&mut self) {
        let now = self.clock.now();
        let a = &self.cfg.alarms;
        let since = Timestamp(now.0.saturating_sub(a.kpi_period.0.as_millis() as i64));
        let tally = match self.store.kpi_tally(since, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the alert events for the alarm KPIs.");
                return;
            }
        };
        let kpi = tally.finish(&self.engine.active(), a.flood_count, a.stale_after.0);
        self.live_tx.send_modify(|live| {
            let mut l = (**live).clone();
            l.kpi = Some(Arc::new(kpi));
            *live = Arc::new(l);
        });
    }

    /// Update the live state's alarms at once (after an operator command).
    pub(super) fn publish_live_alerts(&mut self) {
        let alerts = self.engine.active();
        self.live_tx.send_if_modified(|old| {
            if old.alerts == alerts {
                false
            } else {
                let mut l = (**old).clone();
                l.alerts = alerts;
                *old = Arc::new(l);
                true
            }
        });
    }

    /// Update the live state from the readings about to be flushed and the active alarms: in place, unless a
    /// reader holds the state a commit ago (`Arc::make_mut`), and announced only when something changed. (A copy
    /// of the whole state per commit, compared with the old one, was 85 µs of the ingest thread's commit at the
    /// gateway workload.)
    pub(super) fn publish_live(&mut self) {
        // Each configured sensor's newest reading held (by its place in the config): one map update per sensor,
        // not one per reading.
        let newest = &mut self.newest;
        newest.clear();
        newest.resize(self.engine.sensor_count(), usize::MAX);
        for (i, r) in self.pending.iter().enumerate() {
            if let Some(slot) = self.engine.slot(&r.sensor).and_then(|s| newest.get_mut(s)) {
                *slot = i;
            }
        }
        let alerts = self.engine.active();
        let (newest, pending) = (&self.newest, &self.pending);
        self.live_tx.send_if_modified(|live| {
            let live = Arc::make_mut(live);
            let mut changed = false;
            for r in newest.iter().filter_map(|&i| pending.get(i)) {
                let latest = LatestValue {
                    v: r.value.is_finite().then_some(r.value),
                    ts: r.ts.0,
                    q: r.quality.as_str(),
                };
                // Known keys are updated in place: no new String per reading.
                match live.sensors.get_mut(&*r.sensor) {
                    Some(v) if *v == latest => {}
                    Some(v) => {
                        *v = latest;
                        changed = true;
                    }
                    None => {
                        live.sensors.insert(r.sensor, latest);
                        changed = true;
                    }
                }
            }
            if live.alerts != alerts {
                live.alerts = alerts;
                changed = true;
            }
            changed
        });
    }
}
