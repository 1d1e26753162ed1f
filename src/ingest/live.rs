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
        self.live_tx
            .send_modify(|live| Arc::make_mut(live).kpi = Some(Arc::new(kpi)));
    }

    /// Update the live state's alarms at once (after an operator command).
    pub(super) fn publish_live_alerts(&mut self) {
        let alerts = self.engine.active();
        self.live_tx.send_if_modified(|live| {
            let changed = live.alerts != alerts;
            if changed {
                Arc::make_mut(live).alerts = alerts;
            }
            changed
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
        let mut present = 0;
        for (i, r) in self.pending.iter().enumerate() {
            if let Some(slot) = self.engine.slot(&r.sensor).and_then(|s| newest.get_mut(s)) {
                present += usize::from(*slot == usize::MAX);
                *slot = i;
            }
        }
        let alerts = self.engine.active();
        let (engine, newest, pending) = (&self.engine, &self.newest, &self.pending);
        let order = &mut self.live_order;
        self.live_tx.send_if_modified(|live| {
            let live = Arc::make_mut(live);
            let latest = |r: &crate::model::Reading| LatestValue {
                v: r.value.is_finite().then_some(r.value),
                ts: r.ts.0,
                q: r.quality.as_str(),
            };
            let mut changed = false;
            // The map walked in its own order beside each key's config place (ids are only ever added, so the
            // places hold while the count does): no key comparisons, where a lookup per sensor was eleven at
            // 2,000 sensors (a third of this function there).
            if order.len() != live.sensors.len() {
                *order = live.sensors.keys().map(|k| engine.slot(k)).collect();
            }
            let mut found = 0;
            for ((_, v), slot) in live.sensors.iter_mut().zip(order.iter()) {
                let Some(r) = slot
                    .and_then(|s| newest.get(s))
                    .and_then(|&i| pending.get(i))
                else {
                    continue;
                };
                found += 1;
                let l = latest(r);
                if *v != l {
                    *v = l;
                    changed = true;
                }
            }
            // A sensor's first reading: a key of its own (no new String: the id is interned).
            if found < present {
                for r in newest.iter().filter_map(|&i| pending.get(i)) {
                    if !live.sensors.contains_key(&*r.sensor) {
                        live.sensors.insert(r.sensor, latest(r));
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
