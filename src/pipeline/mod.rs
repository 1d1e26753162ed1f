//! The pure pipeline: validation and the alarm engine.
//!
//! `Engine::evaluate(reading)` and `Engine::tick(now)` change state and return alert transitions; they do no I/O
//! and never read the clock (time comes from the reading or the caller), so every rule is a table test.
//!
//! Alarm model (ISA-18.2 style), per sensor and direction (high, low):
//! * a level (WARNING or CRITICAL) is *in condition* at or beyond its limit; once active it stays in condition
//!   until the value is back inside the limit by `deadband` (hysteresis);
//! * a higher level than the active one is raised/escalated once its condition has held continuously for
//!   `delay` (on-delay); a lower level (deescalate or clear) once the active level's condition has been false
//!   for `off_delay`;
//! * bad-quality readings (NaN, out of range, stuck, spike) are not compared with thresholds: they restart any
//!   pending on-delay and never clear an active alarm;
//! * one active alarm per sensor and direction; its id (`device:sensor:n`) stays the same from raise to clear.
//!
//! Validation raises `SENSOR_FAULT` (NaN/∞, outside `valid`, stuck) and `SENSOR_OFFLINE` (no good reading for
//! `stale_after`); both clear with the next good reading.

use crate::config::{Limits, SensorConfig, ValidRange};
use crate::model::{
    ActiveAlert, Alert, AlertState, AlertType, Direction, Quality, Reading, Severity, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Compiled rules of one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRules {
    /// Engineering unit.
    pub unit: Option<String>,
    /// Plausible range.
    pub valid: Option<ValidRange>,
    /// Warning limits.
    pub warning: Limits,
    /// Critical limits.
    pub critical: Limits,
    /// Hysteresis.
    pub deadband: f64,
    /// On-delay.
    pub delay: Duration,
    /// Off-delay.
    pub off_delay: Duration,
    /// Staleness limit.
    pub stale_after: Duration,
    /// Stuck detection.
    pub stuck_after: Option<Duration>,
    /// Spike detection (units per second).
    pub max_rate: Option<f64>,
}

impl SensorRules {
    /// Compile from config.
    pub fn from_config(s: &SensorConfig) -> Self {
        SensorRules {
            unit: s.unit.clone(),
            valid: s.valid,
            warning: s.warning.unwrap_or_default(),
            critical: s.critical.unwrap_or_default(),
            deadband: s.deadband,
            delay: s.delay.map(|d| d.0).unwrap_or_default(),
            off_delay: s.off_delay.map(|d| d.0).unwrap_or_default(),
            stale_after: s.stale_after(),
            stuck_after: s.stuck_after.map(|d| d.0),
            max_rate: s.max_rate,
        }
    }

    fn limit(&self, dir: Direction, sev: Severity) -> Option<f64> {
        let l = match sev {
            Severity::Warning => &self.warning,
            Severity::Critical => &self.critical,
        };
        match dir {
            Direction::High => l.high,
            Direction::Low => l.low,
        }
    }
}

/// An active alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    /// Current severity.
    pub severity: Severity,
    /// When it was raised.
    pub since: Timestamp,
    /// Alert id.
    pub id: String,
    /// Limit that raised it (faults: the violated bound).
    #[serde(default)]
    pub threshold: Option<f64>,
}

/// State of one direction of one sensor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirState {
    /// Active alarm.
    pub active: Option<Active>,
    /// Since when each level's condition (index: 0 warning, 1 critical) has held.
    pub true_since: [Option<Timestamp>; 2],
    /// Since when each level's condition has been false.
    pub false_since: [Option<Timestamp>; 2],
}

/// Persisted state of one sensor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    /// Last good sample time.
    pub last_good: Option<Timestamp>,
    /// Reference for spike detection.
    pub last_value: Option<(Timestamp, f64)>,
    /// Consecutive spikes.
    pub spikes: u32,
    /// Value and since when it has not changed (stuck detection).
    pub same_since: Option<(f64, Timestamp)>,
    /// High alarms.
    pub high: DirState,
    /// Low alarms.
    pub low: DirState,
    /// Active SENSOR_FAULT.
    pub fault: Option<Active>,
    /// Active SENSOR_OFFLINE.
    pub offline: Option<Active>,
}

struct Entry {
    rules: Arc<SensorRules>,
    state: SensorState,
}

/// Everything that must survive a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    counter: u64,
    sensors: HashMap<String, SensorState>,
}

/// The alarm engine for all sensors of a gateway.
pub struct Engine {
    device: String,
    location: String,
    sensors: HashMap<Arc<str>, Entry>,
    counter: u64,
    started: Timestamp,
}

fn level_idx(s: Severity) -> usize {
    match s {
        Severity::Warning => 0,
        Severity::Critical => 1,
    }
}

const LEVELS: [Severity; 2] = [Severity::Warning, Severity::Critical];

impl Engine {
    /// A fresh engine. `now` starts the staleness clock of sensors that never reported.
    pub fn new(device: &str, location: &str, sensors: &[SensorConfig], now: Timestamp) -> Self {
        let mut e = Engine {
            device: device.to_string(),
            location: location.to_string(),
            sensors: HashMap::new(),
            counter: 0,
            started: now,
        };
        e.reconfigure(sensors, now);
        e
    }

    /// Whether `sensor` is configured.
    pub fn knows(&self, sensor: &str) -> bool {
        self.sensors.contains_key(sensor)
    }

    /// Active alarms (threshold, fault and offline), sorted by sensor.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut v = Vec::new();
        for (id, e) in &self.sensors {
            let s = &e.state;
            let items = [
                (AlertType::Alert, Some(Direction::High), &s.high.active),
                (AlertType::Alert, Some(Direction::Low), &s.low.active),
                (AlertType::SensorFault, None, &s.fault),
                (AlertType::SensorOffline, None, &s.offline),
            ];
            for (kind, direction, a) in items {
                if let Some(a) = a {
                    v.push(ActiveAlert {
                        id: a.id.clone(),
                        kind,
                        sensor: id.to_string(),
                        severity: a.severity,
                        direction,
                        since: a.since.rfc3339(),
                    });
                }
            }
        }
        v.sort_by(|a, b| (&a.sensor, &a.id).cmp(&(&b.sensor, &b.id)));
        v
    }

    /// Apply a new sensor list. State of sensors that remain is kept; removed sensors' active alarms are cleared
    /// (returned as transitions).
    pub fn reconfigure(&mut self, sensors: &[SensorConfig], now: Timestamp) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut next: HashMap<Arc<str>, Entry> = HashMap::with_capacity(sensors.len());
        for s in sensors {
            let id: Arc<str> = Arc::from(s.id.as_str());
            let rules = Arc::new(SensorRules::from_config(s));
            let state = self
                .sensors
                .remove(&id)
                .map(|e| e.state)
                .unwrap_or_default();
            next.insert(id, Entry { rules, state });
        }
        let removed: Vec<(Arc<str>, Entry)> = self.sensors.drain().collect();
        for (id, e) in removed {
            let st = e.state;
            for (dir, d) in [(Direction::High, st.high), (Direction::Low, st.low)] {
                if let Some(a) = d.active {
                    out.push(self.alert(
                        &id,
                        &e.rules,
                        AlertType::Alert,
                        AlertState::Cleared,
                        &a,
                        None,
                        Some(dir),
                        now,
                        Some("sensor removed from the configuration".into()),
                    ));
                }
            }
            for (kind, a) in [
                (AlertType::SensorFault, st.fault),
                (AlertType::SensorOffline, st.offline),
            ] {
                if let Some(a) = a {
                    out.push(self.alert(
                        &id,
                        &e.rules,
                        kind,
                        AlertState::Cleared,
                        &a,
                        None,
                        None,
                        now,
                        Some("sensor removed from the configuration".into()),
                    ));
                }
            }
        }
        self.sensors = next;
        out
    }

    /// Serialize the persistent state (active alarms, pending delays, counters).
    pub fn snapshot(&self) -> String {
        let snap = Snapshot {
            counter: self.counter,
            sensors: self
                .sensors
                .iter()
                .map(|(k, e)| (k.to_string(), e.state.clone()))
                .collect(),
        };
        serde_json::to_string(&snap).unwrap_or_default()
    }

    /// Restore state saved by [`Engine::snapshot`]; unknown sensors are ignored. `now` restarts the staleness
    /// clock (downtime does not count as the sensor being silent).
    pub fn restore(&mut self, json: &str, now: Timestamp) -> Result<(), serde_json::Error> {
        let snap: Snapshot = serde_json::from_str(json)?;
        self.counter = self.counter.max(snap.counter);
        for (k, st) in snap.sensors {
            if let Some(e) = self.sensors.get_mut(k.as_str()) {
                e.state = st;
            }
        }
        self.started = now;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        sensor: &str,
        rules: &SensorRules,
        kind: AlertType,
        state: AlertState,
        a: &Active,
        value: Option<f64>,
        direction: Option<Direction>,
        ts: Timestamp,
        reason: Option<String>,
    ) -> Alert {
        Alert {
            kind,
            id: a.id.clone(),
            state,
            severity: a.severity,
            sensor: sensor.to_string(),
            device: self.device.clone(),
            location: self.location.clone(),
            value: value.filter(|v| v.is_finite()),
            unit: rules.unit.clone(),
            threshold: a.threshold,
            direction,
            ts: ts.rfc3339(),
            since: a.since.rfc3339(),
            reason,
        }
    }

    fn new_active(
        &mut self,
        sensor: &str,
        severity: Severity,
        since: Timestamp,
        threshold: Option<f64>,
    ) -> Active {
        self.counter += 1;
        Active {
            severity,
            since,
            id: format!("{}:{}:{}", self.device, sensor, self.counter),
            threshold,
        }
    }

    /// Validate one reading (sets its quality) and evaluate thresholds. Transitions are appended to `out`.
    /// Readings of unknown sensors are marked invalid.
    pub fn evaluate(&mut self, r: &mut Reading, out: &mut Vec<Alert>) {
        let Some(entry) = self.sensors.get_mut(&r.sensor) else {
            r.quality = Quality::Invalid;
            return;
        };
        let rules = Arc::clone(&entry.rules);
        let mut st = std::mem::take(&mut entry.state);
        self.evaluate_inner(r, &rules, &mut st, out);
        if let Some(entry) = self.sensors.get_mut(&r.sensor) {
            entry.state = st;
        }
    }

    fn evaluate_inner(
        &mut self,
        r: &mut Reading,
        rules: &SensorRules,
        st: &mut SensorState,
        out: &mut Vec<Alert>,
    ) {
        let v = r.value;
        let now = r.ts;
        // 1. Validation.
        let mut fault: Option<(String, Option<f64>, Option<Direction>)> = None;
        if !v.is_finite() {
            r.quality = Quality::Invalid;
            fault = Some((format!("value is {v}"), None, None));
        } else if let Some(range) = rules.valid {
            if let Some(min) = range.min.filter(|m| v < *m) {
                r.quality = Quality::OutOfRange;
                fault = Some((
                    format!("value {v} below valid.min {min}"),
                    Some(min),
                    Some(Direction::Low),
                ));
            } else if let Some(max) = range.max.filter(|m| v > *m) {
                r.quality = Quality::OutOfRange;
                fault = Some((
                    format!("value {v} above valid.max {max}"),
                    Some(max),
                    Some(Direction::High),
                ));
            }
        }
        if fault.is_none() {
            if let Some(limit) = rules.stuck_after {
                match st.same_since {
                    Some((same, since)) if same == v => {
                        if now.since(since) >= limit {
                            r.quality = Quality::Stuck;
                            fault = Some((
                                format!(
                                    "value stuck at {v} for {}",
                                    humantime::format_duration(now.since(since))
                                ),
                                None,
                                None,
                            ));
                        }
                    }
                    _ => st.same_since = Some((v, now)),
                }
            }
        }
        if fault.is_none() {
            if let (Some(rate), Some((pt, pv))) = (rules.max_rate, st.last_value) {
                let dt = (now.0 - pt.0) as f64 / 1000.0;
                if dt > 0.0 && ((v - pv).abs() / dt) > rate && st.spikes < 3 {
                    r.quality = Quality::Spike;
                    st.spikes += 1;
                }
            }
        }
        if let Some((reason, bound, dir)) = fault {
            if st.fault.is_none() {
                let a = self.new_active(&r.sensor, Severity::Warning, now, bound);
                out.push(self.alert(
                    &r.sensor,
                    rules,
                    AlertType::SensorFault,
                    AlertState::Raised,
                    &a,
                    Some(v),
                    dir,
                    now,
                    Some(reason),
                ));
                st.fault = Some(a);
            }
        }
        if r.quality != Quality::Good {
            // Bad data neither confirms nor clears an alarm: pending on-delays restart.
            for d in [&mut st.high, &mut st.low] {
                d.true_since = [None, None];
                d.false_since = [None, None];
            }
            return;
        }
        st.spikes = 0;
        st.last_value = Some((now, v));
        st.last_good = Some(now);
        if let Some(a) = st.fault.take() {
            out.push(self.alert(
                &r.sensor,
                rules,
                AlertType::SensorFault,
                AlertState::Cleared,
                &a,
                Some(v),
                None,
                now,
                Some("good readings again".into()),
            ));
        }
        if let Some(a) = st.offline.take() {
            out.push(self.alert(
                &r.sensor,
                rules,
                AlertType::SensorOffline,
                AlertState::Cleared,
                &a,
                Some(v),
                None,
                now,
                Some("readings again".into()),
            ));
        }
        // 2. Thresholds.
        for dir in [Direction::High, Direction::Low] {
            let d = match dir {
                Direction::High => &mut st.high,
                Direction::Low => &mut st.low,
            };
            let mut ds = std::mem::take(d);
            self.eval_direction(&r.sensor, rules, dir, &mut ds, v, now, out);
            match dir {
                Direction::High => st.high = ds,
                Direction::Low => st.low = ds,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_direction(
        &mut self,
        sensor: &str,
        rules: &SensorRules,
        dir: Direction,
        d: &mut DirState,
        v: f64,
        now: Timestamp,
        out: &mut Vec<Alert>,
    ) {
        let active_sev = d.active.as_ref().map(|a| a.severity);
        // Condition per level, with hysteresis for levels at or below the active one.
        let mut cond = [false; 2];
        for sev in LEVELS {
            let Some(limit) = rules.limit(dir, sev) else {
                continue;
            };
            let held = active_sev.is_some_and(|a| a >= sev);
            let db = if held { rules.deadband } else { 0.0 };
            cond[level_idx(sev)] = match dir {
                Direction::High => v >= limit - db && (held || v >= limit),
                Direction::Low => v <= limit + db && (held || v <= limit),
            };
        }
        for (i, held) in cond.iter().enumerate() {
            if *held {
                d.false_since[i] = None;
                d.true_since[i].get_or_insert(now);
            } else {
                d.true_since[i] = None;
                d.false_since[i].get_or_insert(now);
            }
        }
        // Raise or escalate: the highest level above the active one whose condition held for `delay`.
        let rank = |s: Option<Severity>| s.map(|s| level_idx(s) as i32).unwrap_or(-1);
        for sev in [Severity::Critical, Severity::Warning] {
            let i = level_idx(sev);
            if rank(Some(sev)) <= rank(active_sev) {
                continue;
            }
            let Some(t) = d.true_since[i] else { continue };
            if now.since(t) < rules.delay {
                continue;
            }
            let threshold = rules.limit(dir, sev);
            match d.active.as_mut() {
                None => {
                    let a = self.new_active(sensor, sev, now, threshold);
                    out.push(self.alert(
                        sensor,
                        rules,
                        AlertType::Alert,
                        AlertState::Raised,
                        &a,
                        Some(v),
                        Some(dir),
                        now,
                        None,
                    ));
                    d.active = Some(a);
                }
                Some(a) => {
                    a.severity = sev;
                    a.threshold = threshold;
                    let a = a.clone();
                    out.push(self.alert(
                        sensor,
                        rules,
                        AlertType::Alert,
                        AlertState::Escalated,
                        &a,
                        Some(v),
                        Some(dir),
                        now,
                        None,
                    ));
                }
            }
            return;
        }
        // Deescalate or clear: the active level's condition has been false for `off_delay`.
        let Some(a_sev) = active_sev else { return };
        let Some(f) = d.false_since[level_idx(a_sev)] else {
            return;
        };
        if now.since(f) < rules.off_delay {
            return;
        }
        let lower = if a_sev == Severity::Critical && cond[0] {
            Some(Severity::Warning)
        } else {
            None
        };
        match lower {
            Some(sev) => {
                if let Some(a) = d.active.as_mut() {
                    a.severity = sev;
                    a.threshold = rules.limit(dir, sev);
                    let a = a.clone();
                    out.push(self.alert(
                        sensor,
                        rules,
                        AlertType::Alert,
                        AlertState::Deescalated,
                        &a,
                        Some(v),
                        Some(dir),
                        now,
                        None,
                    ));
                }
            }
            None => {
                if let Some(a) = d.active.take() {
                    out.push(self.alert(
                        sensor,
                        rules,
                        AlertType::Alert,
                        AlertState::Cleared,
                        &a,
                        Some(v),
                        Some(dir),
                        now,
                        None,
                    ));
                }
                d.true_since = [None, None];
            }
        }
    }

    /// Time-driven checks (staleness). Call about once a second with the wall clock.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let ids: Vec<Arc<str>> = self
            .sensors
            .iter()
            .filter(|(_, e)| e.state.offline.is_none())
            .filter(|(_, e)| {
                let since = e.state.last_good.unwrap_or(self.started).max(self.started);
                now.since(since) >= e.rules.stale_after
            })
            .map(|(k, _)| Arc::clone(k))
            .collect();
        for id in ids {
            let Some(e) = self.sensors.get(&id) else {
                continue;
            };
            let rules = Arc::clone(&e.rules);
            let last = e.state.last_good;
            let a = self.new_active(&id, Severity::Warning, now, None);
            let reason = match last {
                Some(t) => format!("no good reading since {}", t.rfc3339()),
                None => "no good reading since start".to_string(),
            };
            out.push(self.alert(
                &id,
                &rules,
                AlertType::SensorOffline,
                AlertState::Raised,
                &a,
                None,
                None,
                now,
                Some(reason),
            ));
            if let Some(e) = self.sensors.get_mut(&id) {
                e.state.offline = Some(a);
            }
        }
    }

    /// A gateway-level alert (e.g. BUFFER_OVERFLOW), raised once.
    pub fn gateway_alert(
        &mut self,
        kind: AlertType,
        state: AlertState,
        now: Timestamp,
        reason: String,
    ) -> Alert {
        self.counter += 1;
        Alert {
            kind,
            id: format!("{}:_gateway:{}", self.device, self.counter),
            state,
            severity: Severity::Warning,
            sensor: "_gateway".into(),
            device: self.device.clone(),
            location: self.location.clone(),
            value: None,
            unit: None,
            threshold: None,
            direction: None,
            ts: now.rfc3339(),
            since: now.rfc3339(),
            reason: Some(reason),
        }
    }
}

#[cfg(test)]
mod tests;
