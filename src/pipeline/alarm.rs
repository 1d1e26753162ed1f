//! The alarm state machine of one sensor side (high or low), ISA-18.2 style: levels with deadband, on-delay and
//! off-delay; raise, escalate, deescalate, clear. Pure: the caller passes the time and collects the transitions.

use super::SensorRules;
use crate::model::{Alert, AlertState, AlertType, Direction, Severity, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

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
    /// Acknowledged by an operator (ISA-18.2; tracked when alarm commands are enabled). An escalation makes it
    /// unacknowledged again.
    #[serde(default)]
    pub acked: bool,
    /// Shelved (not annunciated) until then.
    #[serde(default)]
    pub shelved_until: Option<Timestamp>,
}

/// An alarm that returned to normal unacknowledged: it stays visible until acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latched {
    /// Class.
    pub kind: AlertType,
    /// `high`/`low` for threshold alarms.
    pub direction: Option<Direction>,
    /// The alarm as it was when it cleared.
    pub alarm: Active,
}

/// State of one direction of one sensor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirState {
    /// Active alarm (boxed, as the sensor's other records: a sensor spends its life without one, and inline they
    /// spread the fields every reading reads over more cache lines).
    pub active: Option<Box<Active>>,
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
    /// Last time any reading arrived, good or bad (SENSOR_OFFLINE means silence, not bad values).
    #[serde(default)]
    pub last_seen: Option<Timestamp>,
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
    pub fault: Option<Box<Active>>,
    /// Active SENSOR_OFFLINE.
    pub offline: Option<Box<Active>>,
    /// Every alarm of the sensor, present and future, is shelved until then.
    #[serde(default)]
    pub shelved_until: Option<Timestamp>,
    /// Out of service since (the OUT_OF_SERVICE record): no alarm is evaluated.
    #[serde(default)]
    pub out_of_service: Option<Box<Active>>,
    /// Alarms that returned to normal unacknowledged.
    #[serde(default)]
    pub latched: Vec<Latched>,
    /// Alarm management (rate, deviation, suppression, chattering, derived): boxed, and absent for a sensor that
    /// never used it, so the state every reading walks stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<Box<Managed>>,
}

/// The alarm-management part of a sensor's state (see `manage.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Managed {
    /// Good readings of the rate-of-change window, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub window: VecDeque<(Timestamp, f64)>,
    /// Rate-of-change alarm, rising.
    #[serde(default, skip_serializing_if = "DirState::is_idle")]
    pub rate_high: DirState,
    /// Rate-of-change alarm, falling.
    #[serde(default, skip_serializing_if = "DirState::is_idle")]
    pub rate_low: DirState,
    /// Deviation alarm.
    #[serde(default, skip_serializing_if = "DirState::is_idle")]
    pub deviation: DirState,
    /// Active SUPPRESSED_BY_STATE record: `enabled_when` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Box<Active>>,
    /// Recent raises of the sensor's process alarms (chattering window).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub raises: VecDeque<Timestamp>,
    /// Active CHATTERING record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chattering: Option<Box<Active>>,
    /// A derived sensor's next computation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<Timestamp>,
}

impl DirState {
    /// No alarm and no pending delay.
    pub fn is_idle(&self) -> bool {
        *self == DirState::default()
    }

    /// Forget pending on- and off-delays (bad data, suppression): the next condition starts its delay afresh.
    pub fn restart_delays(&mut self) {
        self.true_since = [None, None];
        self.false_since = [None, None];
    }
}

/// A sensor's alarm slots, listed once for [`SensorState::slots`] (`&mut`) and [`SensorState::shelf_expiries`]
/// (`&`): each with its class and direction; the alarm-management ones only when the sensor has that state.
/// `$deref` is `as_deref_mut` or `as_deref`, `$m` is `mut` or nothing.
macro_rules! alarm_slots {
    ($st:expr, $deref:ident $(, $m:tt)?) => {{
        let (rh, rl, dv, ch) = match $st.managed.$deref() {
            Some(m) => (
                Some(&$($m)? m.rate_high.active),
                Some(&$($m)? m.rate_low.active),
                Some(&$($m)? m.deviation.active),
                Some(&$($m)? m.chattering),
            ),
            None => (None, None, None, None),
        };
        [
            (AlertType::Alert, Some(Direction::High), Some(&$($m)? $st.high.active)),
            (AlertType::Alert, Some(Direction::Low), Some(&$($m)? $st.low.active)),
            (AlertType::RateOfChange, Some(Direction::High), rh),
            (AlertType::RateOfChange, Some(Direction::Low), rl),
            (AlertType::Deviation, None, dv),
            (AlertType::SensorFault, None, Some(&$($m)? $st.fault)),
            (AlertType::SensorOffline, None, Some(&$($m)? $st.offline)),
            (AlertType::Chattering, None, ch),
        ]
    }};
}

impl SensorState {
    /// The alarm-management state, created when first needed.
    pub fn managed(&mut self) -> &mut Managed {
        self.managed.get_or_insert_with(Default::default)
    }

    /// The sensor's active alarm slots: threshold high and low, rate of change, deviation, fault, offline,
    /// chattering.
    pub fn slots(
        &mut self,
    ) -> impl Iterator<Item = (AlertType, Option<Direction>, &mut Option<Box<Active>>)> {
        alarm_slots!(self, as_deref_mut, mut)
            .into_iter()
            .filter_map(|(k, d, s)| s.map(|s| (k, d, s)))
    }

    /// When the shelves on the sensor and on its active alarms (the same slots) expire.
    pub fn shelf_expiries(&self) -> impl Iterator<Item = Timestamp> + '_ {
        alarm_slots!(self, as_deref)
            .into_iter()
            .filter_map(|(_, _, s)| s?.as_ref()?.shelved_until)
            .chain(self.shelved_until)
    }

    /// The process alarms' states (threshold, rate, deviation) with their class and direction.
    pub fn process_alarms(
        &mut self,
    ) -> impl Iterator<Item = (AlertType, Option<Direction>, &mut DirState)> {
        let (rh, rl, dv) = match self.managed.as_deref_mut() {
            Some(m) => (
                Some(&mut m.rate_high),
                Some(&mut m.rate_low),
                Some(&mut m.deviation),
            ),
            None => (None, None, None),
        };
        [
            (
                AlertType::Alert,
                Some(Direction::High),
                Some(&mut self.high),
            ),
            (AlertType::Alert, Some(Direction::Low), Some(&mut self.low)),
            (AlertType::RateOfChange, Some(Direction::High), rh),
            (AlertType::RateOfChange, Some(Direction::Low), rl),
            (AlertType::Deviation, None, dv),
        ]
        .into_iter()
        .filter_map(|(k, d, s)| s.map(|s| (k, d, s)))
    }
}

pub(super) fn level_idx(s: Severity) -> usize {
    match s {
        Severity::Warning => 0,
        Severity::Critical => 1,
    }
}

const LEVELS: [Severity; 2] = [Severity::Warning, Severity::Critical];

/// Alert ids: `{device}:{sensor}:{n}` with one counter per gateway, persisted so ids never repeat.
#[derive(Debug, Clone)]
pub(super) struct Ids {
    pub device: String,
    pub counter: u64,
}

impl Ids {
    /// A new active alarm with the next id.
    pub(super) fn next(
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
            acked: false,
            shelved_until: None,
        }
    }
}

/// What a transition is about and when: turns an [`Active`] into the [`Alert`] message.
pub(super) struct Emitter<'a> {
    pub ids: &'a mut Ids,
    pub location: &'a str,
    pub sensor: &'a str,
    pub rules: &'a SensorRules,
    pub out: &'a mut Vec<Alert>,
    /// Acknowledgements are tracked (alarm commands enabled).
    pub ack: bool,
}

/// The circumstances of one transition.
#[derive(Default)]
pub(super) struct At {
    pub value: Option<f64>,
    pub direction: Option<Direction>,
    pub ts: Timestamp,
    pub reason: Option<String>,
}

impl Emitter<'_> {
    /// Push the message for `a` changing to `state`.
    pub(super) fn emit(&mut self, kind: AlertType, state: AlertState, a: &Active, at: At) {
        self.out.push(Alert {
            kind,
            id: a.id.clone(),
            state,
            severity: a.severity,
            sensor: self.sensor.to_string(),
            device: self.ids.device.clone(),
            location: self.location.to_string(),
            value: at.value.filter(|v| v.is_finite()),
            unit: self.rules.unit.clone(),
            threshold: a.threshold,
            direction: at.direction,
            ts: at.ts,
            since: a.since,
            reason: at.reason,
            operator: crate::model::Operator {
                acked: (self.ack
                    && !matches!(kind, AlertType::OutOfService | AlertType::SuppressedByState))
                .then_some(a.acked),
                shelved_until: a.shelved_until,
                priority: (!matches!(kind, AlertType::OutOfService | AlertType::SuppressedByState))
                    .then(|| {
                        self.rules
                            .priority
                            .unwrap_or(crate::model::Priority::of(a.severity))
                    }),
                ..Default::default()
            },
        });
    }

    /// Raise a new alarm: allocate its id and push the `raised` message.
    pub(super) fn raise(
        &mut self,
        kind: AlertType,
        severity: Severity,
        threshold: Option<f64>,
        at: At,
    ) -> Box<Active> {
        let a = self.ids.next(self.sensor, severity, at.ts, threshold);
        self.emit(kind, AlertState::Raised, &a, at);
        Box::new(a)
    }

    /// Evaluate one side (high or low) of the threshold alarm with a good value `v` at `now`.
    #[inline]
    pub(super) fn threshold(&mut self, dir: Direction, d: &mut DirState, v: f64, now: Timestamp) {
        let r = self.rules;
        let band = Band {
            kind: AlertType::Alert,
            dir,
            limits: [
                r.limit(dir, Severity::Warning),
                r.limit(dir, Severity::Critical),
            ],
            deadband: r.deadband,
            delay: r.delay,
            off_delay: r.off_delay,
        };
        self.band(&band, d, v, now, None);
    }

    /// Evaluate one alarm band (levels, deadband, on- and off-delay) with a good value `v` at `now`; `reason`
    /// goes with a raise or escalation, written only then (it was formatted for every reading). Inlined: it runs twice for every good reading (the hot path).
    #[inline(always)]
    pub(super) fn band(
        &mut self,
        band: &Band,
        d: &mut DirState,
        v: f64,
        now: Timestamp,
        reason: Option<&dyn Fn() -> String>,
    ) {
        let (dir, kind) = (band.dir, band.kind);
        let direction = (kind != AlertType::Deviation).then_some(dir);
        let at = |reason: Option<&dyn Fn() -> String>| At {
            value: Some(v),
            direction,
            ts: now,
            reason: reason.map(|r| r()),
        };
        let active_sev = d.active.as_ref().map(|a| a.severity);
        // Condition per level, with hysteresis for levels at or below the active one.
        let mut cond = [false; 2];
        for sev in LEVELS {
            let Some(limit) = band.limits[level_idx(sev)] else {
                continue;
            };
            let held = active_sev.is_some_and(|a| a >= sev);
            let db = if held { band.deadband } else { 0.0 };
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
            if now.since(t) < band.delay {
                continue;
            }
            let threshold = band.limits[i];
            match d.active.as_mut() {
                None => d.active = Some(self.raise(kind, sev, threshold, at(reason))),
                Some(a) => {
                    a.severity = sev;
                    a.threshold = threshold;
                    // A more severe alarm needs a new acknowledgement.
                    a.acked = false;
                    let a = a.clone();
                    self.emit(kind, AlertState::Escalated, &a, at(reason));
                }
            }
            return;
        }
        // Deescalate or clear: the active level's condition has been false for `off_delay`.
        let Some(a_sev) = active_sev else { return };
        let Some(f) = d.false_since[level_idx(a_sev)] else {
            return;
        };
        if now.since(f) < band.off_delay {
            return;
        }
        if a_sev == Severity::Critical && cond[0] {
            if let Some(a) = d.active.as_mut() {
                a.severity = Severity::Warning;
                a.threshold = band.limits[0];
                let a = a.clone();
                self.emit(kind, AlertState::Deescalated, &a, at(None));
            }
        } else if let Some(a) = d.active.take() {
            self.emit(kind, AlertState::Cleared, &a, at(None));
            d.true_since = [None, None];
        }
    }
}

/// One alarm band: its class, side, limits per level (index: 0 warning, 1 critical), hysteresis and delays.
pub(super) struct Band {
    pub kind: AlertType,
    pub dir: Direction,
    pub limits: [Option<f64>; 2],
    pub deadband: f64,
    pub delay: Duration,
    pub off_delay: Duration,
}
