//! The pure pipeline: validation ([`validate`]), the alarm state machine ([`alarm`]) and what survives a
//! restart ([`snapshot`]), behind one [`Engine`] per gateway.
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
//! Validation raises `SENSOR_FAULT` (NaN/∞, outside `valid`, stuck; clears with the next good reading);
//! `SENSOR_OFFLINE` means silence (no reading at all for `stale_after`) and clears with the next reading.

use crate::config::{AlarmsConfig, DeviationConfig, Limits, RateConfig, SensorConfig, ValidRange};
use crate::formula::Formula;
use crate::model::SensorId;
use crate::model::{
    ActiveAlert, Alert, AlertState, AlertType, Direction, Priority, Quality, Reading, Severity,
    Timestamp,
};
use alarm::{At, Emitter, Ids};
use std::sync::Arc;
use std::time::Duration;

pub mod alarm;
mod due;
mod manage;
pub mod operator;
pub mod snapshot;
mod validate;

pub use alarm::{Active, DirState, Latched, SensorState};
pub use operator::{Command, Request, Target};

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
    /// Poll (or computation) interval.
    pub interval: Duration,
    /// Priority of the sensor's alarms (default from severity).
    pub priority: Option<Priority>,
    /// Rate-of-change alarm (boxed, as the deviation: rarely configured, and inline they spread the fields every
    /// reading reads over more cache lines).
    pub rate: Option<Box<RateConfig>>,
    /// Deviation alarm.
    pub deviation: Option<Box<DeviationConfig>>,
    /// Alarms are evaluated only while this holds.
    pub enabled_when: Option<Arc<Formula>>,
    /// A derived sensor's formula.
    pub formula: Option<Arc<Formula>>,
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
            interval: s.interval.0,
            priority: s.priority,
            rate: s.rate.clone().map(Box::new),
            deviation: s.deviation.clone().map(Box::new),
            // The config checks refuse a formula that does not parse; one that slipped through is ignored here.
            enabled_when: s
                .enabled_when
                .as_deref()
                .and_then(|f| Formula::parse(f).ok())
                .map(Arc::new),
            formula: s
                .formula
                .as_deref()
                .and_then(|f| Formula::parse(f).ok())
                .map(Arc::new),
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

/// The engine's sensors by id in config order, looked up for every reading (see [`crate::util::SeqMap`]).
type Sensors = crate::util::SeqMap<SensorId, Entry>;

/// A sensor's rules and state side by side: one poll's sensors are judged walking memory forward.
struct Entry {
    rules: SensorRules,
    state: SensorState,
}

/// The alarm engine for all sensors of a gateway.
pub struct Engine {
    location: String,
    ids: Ids,
    sensors: Sensors,
    started: Timestamp,
    /// Acknowledgements tracked (ISA-18.2 states; on with alarm commands).
    ack: bool,
    /// The most recent operator requests with an id, oldest first: a request id seen again is not executed
    /// again. Part of the snapshot, committed with the command's events.
    requests: std::collections::VecDeque<operator::Seen>,
    /// Gateway-wide alarm settings (`[alarms]`).
    alarms: AlarmsConfig,
    /// The alarm-flood window and the ALARM_FLOOD alarm; part of the snapshot.
    flood: manage::Flood,
    /// Derived sensors, each after the derived sensors it reads.
    derived: Vec<SensorId>,
    /// The latest time the engine was told (for the stale flag of [`Engine::active`]).
    now: Timestamp,
}

impl Engine {
    /// A fresh engine. `now` starts the staleness clock of sensors that never reported.
    pub fn new(device: &str, location: &str, sensors: &[SensorConfig], now: Timestamp) -> Self {
        let mut e = Engine {
            location: location.to_string(),
            ids: Ids {
                device: device.to_string(),
                counter: 0,
            },
            sensors: Sensors::default(),
            started: now,
            ack: false,
            requests: Default::default(),
            alarms: AlarmsConfig::default(),
            flood: Default::default(),
            derived: Vec::new(),
            now,
        };
        e.reconfigure(sensors, now);
        e
    }

    /// Track acknowledgements (alarm commands enabled): alarms that clear unacknowledged stay standing until
    /// acknowledged, and events carry `acked`.
    pub fn set_acknowledge(&mut self, on: bool) {
        self.ack = on;
    }

    /// Whether `sensor` is configured.
    pub fn knows(&self, sensor: &str) -> bool {
        self.sensors.contains_key(sensor)
    }

    /// Where `sensor` is among the configured sensors (0..[`Engine::sensor_count`], in config order, until the
    /// next reconfiguration).
    pub fn slot(&self, sensor: &str) -> Option<usize> {
        self.sensors.position(sensor)
    }

    /// How many sensors are configured.
    pub fn sensor_count(&self) -> usize {
        self.sensors.len()
    }

    /// Active alarms (process alarms, fault, offline, records such as out of service), sorted by sensor.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut v = Vec::new();
        let stale_after = self.alarms.stale_after.0;
        let none: Option<Box<Active>> = None;
        for (id, e) in self.sensors.iter() {
            let s = &e.state;
            let m = s.managed.as_deref();
            let items = [
                (AlertType::Alert, Some(Direction::High), &s.high.active),
                (AlertType::Alert, Some(Direction::Low), &s.low.active),
                (
                    AlertType::RateOfChange,
                    Some(Direction::High),
                    m.map_or(&none, |m| &m.rate_high.active),
                ),
                (
                    AlertType::RateOfChange,
                    Some(Direction::Low),
                    m.map_or(&none, |m| &m.rate_low.active),
                ),
                (
                    AlertType::Deviation,
                    None,
                    m.map_or(&none, |m| &m.deviation.active),
                ),
                (AlertType::SensorFault, None, &s.fault),
                (AlertType::SensorOffline, None, &s.offline),
                (AlertType::OutOfService, None, &s.out_of_service),
                (
                    AlertType::SuppressedByState,
                    None,
                    m.map_or(&none, |m| &m.suppressed),
                ),
                (
                    AlertType::Chattering,
                    None,
                    m.map_or(&none, |m| &m.chattering),
                ),
            ];
            let latched = s
                .latched
                .iter()
                .map(|l| (l.kind, l.direction, &l.alarm, true));
            let active = items
                .into_iter()
                .filter_map(|(k, d, a)| a.as_deref().map(|a| (k, d, a, false)));
            for (kind, direction, a, returned) in active.chain(latched) {
                let record = matches!(kind, AlertType::OutOfService | AlertType::SuppressedByState);
                v.push(ActiveAlert {
                    id: a.id.clone(),
                    kind,
                    sensor: id.to_string(),
                    severity: a.severity,
                    direction,
                    since: a.since,
                    acked: (self.ack && !record).then_some(a.acked),
                    shelved_until: a.shelved_until,
                    returned,
                    priority: (!record)
                        .then(|| e.rules.priority.unwrap_or(Priority::of(a.severity))),
                    stale: !returned && !record && self.now.since(a.since) >= stale_after,
                });
            }
        }
        if let Some(a) = &self.flood.active {
            v.push(ActiveAlert {
                id: a.id.clone(),
                kind: AlertType::AlarmFlood,
                sensor: "_gateway".into(),
                severity: a.severity,
                direction: None,
                since: a.since,
                acked: None,
                shelved_until: None,
                returned: false,
                priority: Some(Priority::High),
                stale: false,
            });
        }
        v.sort_by(|a, b| (&a.sensor, &a.id).cmp(&(&b.sensor, &b.id)));
        v
    }

    fn emitter<'a>(
        ids: &'a mut Ids,
        location: &'a str,
        sensor: &'a str,
        rules: &'a SensorRules,
        out: &'a mut Vec<Alert>,
        ack: bool,
    ) -> Emitter<'a> {
        Emitter {
            ids,
            location,
            sensor,
            rules,
            out,
            ack,
        }
    }

    /// Apply a new sensor list. State of sensors that remain is kept; removed sensors' active alarms are cleared
    /// (returned as transitions).
    pub fn reconfigure(&mut self, sensors: &[SensorConfig], now: Timestamp) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut next = Sensors::with_capacity(sensors.len());
        let mut old: crate::util::FastMap<SensorId, Entry> = self.sensors.drain().collect();
        for s in sensors {
            let id = SensorId::new(&s.id);
            let rules = SensorRules::from_config(s);
            let state = old.remove(&id).map(|e| e.state).unwrap_or_default();
            next.insert(id, Entry { rules, state });
        }
        let removed: Vec<(SensorId, Entry)> = old.into_iter().collect();
        for (id, e) in removed {
            let mut em = Self::emitter(
                &mut self.ids,
                &self.location,
                &id,
                &e.rules,
                &mut out,
                false,
            );
            let mut st = e.state;
            let why = || At {
                ts: now,
                reason: Some("sensor removed from the configuration".into()),
                ..At::default()
            };
            for (kind, direction, a) in st.slots() {
                if let Some(a) = a.take() {
                    let at = At { direction, ..why() };
                    em.emit(kind, AlertState::Cleared, &a, at);
                }
            }
            for (kind, a) in [
                (AlertType::OutOfService, st.out_of_service.take()),
                (
                    AlertType::SuppressedByState,
                    st.managed.as_mut().and_then(|m| m.suppressed.take()),
                ),
            ] {
                if let Some(a) = a {
                    em.emit(kind, AlertState::Cleared, &a, why());
                }
            }
            // Returned-to-normal alarms of a removed sensor need no acknowledgement any more.
            for l in st.latched {
                let at = At {
                    direction: l.direction,
                    ..why()
                };
                em.emit(l.kind, AlertState::Acknowledged, &l.alarm, at);
                if let Some(last) = em.out.last_mut() {
                    last.operator.active = Some(false);
                    last.operator.by = Some("configuration".into());
                }
            }
        }
        self.sensors = next;
        self.derived = manage::derive_order(&self.sensors, sensors);
        out
    }

    /// Apply the gateway-wide alarm settings (`[alarms]`).
    pub fn set_alarms(&mut self, alarms: &AlarmsConfig) {
        self.alarms = alarms.clone();
    }

    /// Validate one reading (sets its quality) and evaluate thresholds. Transitions are appended to `out`.
    /// Readings of unknown sensors are marked invalid.
    pub fn evaluate(&mut self, r: &mut Reading, out: &mut Vec<Alert>) {
        let from = out.len();
        self.now = self.now.max(r.ts);
        self.evaluate_one(r, out);
        if out.len() > from {
            let mut chattering = Vec::new();
            if let Some(e) = self.sensors.get_mut(&r.sensor) {
                operator::settle(&mut e.state, &mut out[from..]);
                let (count, window) = (self.alarms.chatter_count, self.alarms.chatter_window.0);
                if manage::track_raises(&mut e.state, &out[from..], count, window, r.ts) {
                    chattering.push(r.sensor);
                }
            }
            self.after_transitions(from, out, r.ts, chattering, false);
        }
    }

    fn evaluate_one(&mut self, r: &mut Reading, out: &mut Vec<Alert>) {
        let Some(entry) = self.sensors.get(&r.sensor) else {
            r.quality = Quality::Invalid;
            return;
        };
        // What this reading's alarms depend on in other sensors, looked up before this sensor's state changes. Only
        // a sensor with such links copies what it needs for that (an Arc for every reading was a locked write to a
        // line of its own, a third of this function's time).
        let (mut enabled, mut reference) = (None, None);
        if entry.rules.enabled_when.is_some() || entry.rules.deviation.is_some() {
            let (when, dev) = (
                entry.rules.enabled_when.clone(),
                entry.rules.deviation.clone(),
            );
            enabled = when.map(|f| self.compute(&f, r.ts).map(|x| x != 0.0));
            reference = dev.map(|d| self.usable(&d.from, r.ts).map(|x| (x, *d)));
        }
        // The same slot again (util::SeqMap): no second hash.
        let Some(Entry { rules, state: st }) = self.sensors.get_mut(&r.sensor) else {
            return;
        };
        let rules: &SensorRules = rules;
        let (v, now) = (r.value, r.ts);
        let fault = validate::check(r, rules, st);
        // Any reading, good or bad, means the sensor answers: OFFLINE ends here; bad values are FAULT's business.
        st.last_seen = Some(now);
        if st.out_of_service.is_some() {
            // Under maintenance: readings are kept, alarms are not evaluated.
            return;
        }
        let mut em = Self::emitter(
            &mut self.ids,
            &self.location,
            &r.sensor,
            rules,
            out,
            self.ack,
        );
        if let Some(a) = st.offline.take() {
            let at = At {
                value: Some(v),
                ts: now,
                reason: Some("readings again".into()),
                ..At::default()
            };
            em.emit(AlertType::SensorOffline, AlertState::Cleared, &a, at);
        }
        if let Some(f) = fault {
            if st.fault.is_none() {
                let at = At {
                    value: Some(v),
                    direction: f.direction,
                    ts: now,
                    reason: Some(f.reason),
                };
                st.fault = Some(em.raise(AlertType::SensorFault, Severity::Warning, f.bound, at));
            }
        }
        if r.quality != Quality::Good {
            // Bad data neither confirms nor clears an alarm: pending on-delays restart.
            for (_, _, d) in st.process_alarms() {
                d.restart_delays();
            }
            return;
        }
        st.spikes = 0;
        st.last_value = Some((now, v));
        st.last_good = Some(now);
        let good_again = |reason: &str| At {
            value: Some(v),
            ts: now,
            reason: Some(reason.into()),
            ..At::default()
        };
        if let Some(a) = st.fault.take() {
            em.emit(
                AlertType::SensorFault,
                AlertState::Cleared,
                &a,
                good_again("good readings again"),
            );
        }
        if r.is_text() {
            return;
        }
        manage::remember(st, rules, now, v);
        if !manage::enabled(&mut em, st, rules, enabled, now) {
            return;
        }
        em.threshold(Direction::High, &mut st.high, v, now);
        em.threshold(Direction::Low, &mut st.low, v, now);
        manage::rate(&mut em, st, rules, now, v);
        manage::deviation(&mut em, st, reference, now, v);
    }

    /// The wall clock jumped by `delta_ms` (an NTP step, an RTC-less boot): move every timer the engine keeps by
    /// the same amount, so on-delays, off-delays, staleness and stuck detection measure the time that really
    /// passed, not the jump.
    pub fn shift_clock(&mut self, delta_ms: i64) {
        let shift = |t: &mut Option<Timestamp>| {
            if let Some(t) = t.as_mut() {
                t.0 = t.0.saturating_add(delta_ms);
            }
        };
        for e in self.sensors.values_mut() {
            let st = &mut e.state;
            shift(&mut st.last_good);
            shift(&mut st.last_seen);
            if let Some((t, _)) = st.last_value.as_mut() {
                t.0 = t.0.saturating_add(delta_ms);
            }
            if let Some((_, t)) = st.same_since.as_mut() {
                t.0 = t.0.saturating_add(delta_ms);
            }
            for (_, _, d) in st.process_alarms() {
                for t in d.true_since.iter_mut().chain(d.false_since.iter_mut()) {
                    shift(t);
                }
            }
            manage::shift(st, delta_ms);
            operator::shift_shelves(st, delta_ms);
        }
        self.flood.shift(delta_ms);
        self.started.0 = self.started.0.saturating_add(delta_ms);
    }

    /// Time-driven checks (staleness). Call about once a second with the wall clock.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        self.now = self.now.max(now);
        let from = out.len();
        self.tick_sensors(now, out);
        self.tick_manage(now, out);
        if out.len() > from {
            self.after_transitions(from, out, now, Vec::new(), true);
        }
    }

    fn tick_sensors(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let started = self.started;
        let ack = self.ack;
        for (id, e) in self.sensors.iter_mut() {
            let from = out.len();
            let mut em = Self::emitter(&mut self.ids, &self.location, id, &e.rules, out, ack);
            operator::expire_shelves(&mut e.state, &mut em, now);
            if out.len() > from {
                operator::settle(&mut e.state, &mut out[from..]);
            }
            if e.state.offline.is_some() || e.state.out_of_service.is_some() {
                continue;
            }
            let since = e.state.last_seen.unwrap_or(started).max(started);
            if now.since(since) < e.rules.stale_after {
                continue;
            }
            let reason = match e.state.last_seen {
                Some(t) => format!("no reading since {}", t.rfc3339()),
                None => "no reading since start".to_string(),
            };
            let from = out.len();
            let mut em = Self::emitter(&mut self.ids, &self.location, id, &e.rules, out, ack);
            let at = At {
                ts: now,
                reason: Some(reason),
                ..At::default()
            };
            e.state.offline = Some(em.raise(AlertType::SensorOffline, Severity::Warning, None, at));
            operator::settle(&mut e.state, &mut out[from..]);
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
        let a = self.ids.next("_gateway", Severity::Warning, now, None);
        self.gateway_event(kind, state, &a, now, reason)
    }

    /// The message of gateway-wide alarm `a` (sensor `_gateway`) changing to `state` at `now`.
    fn gateway_event(
        &self,
        kind: AlertType,
        state: AlertState,
        a: &Active,
        now: Timestamp,
        reason: String,
    ) -> Alert {
        Alert {
            kind,
            id: a.id.clone(),
            state,
            severity: a.severity,
            sensor: "_gateway".into(),
            device: self.ids.device.clone(),
            location: self.location.clone(),
            value: None,
            unit: None,
            threshold: None,
            direction: None,
            ts: now,
            since: a.since,
            reason: Some(reason),
            operator: Default::default(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
