//! Alarm management on top of each sensor's state machine (ISA-18.2 / IEC 62682, EEMUA 191): derived sensors,
//! state-based suppression (`enabled_when`), rate-of-change and deviation alarms, chattering and alarm floods.
//! Pure like the rest of the engine: time comes from readings and ticks, and every window is part of the snapshot.
//!
//! * **Derived** sensors are computed every `interval` from other sensors' latest good values. An input counts
//!   only while its latest reading is good and younger than twice its interval (at least 1 s), and not out of
//!   service: otherwise the result is NaN (a bad reading, SENSOR_FAULT saying which input), never a number
//!   computed from an old value.
//! * **Suppression**: while `enabled_when` is false the sensor's process alarms (threshold, rate, deviation) are
//!   cleared with `suppressed_by_state` and not evaluated, and a SUPPRESSED_BY_STATE record stands; when it holds
//!   again the record clears and every on-delay starts afresh. A condition that cannot be computed (an input is
//!   stale or bad) enables the alarms: suppression fails safe, and says so.
//! * **Rate of change**: the change from the oldest good reading in the window, per `per`; it needs half a window
//!   of history. Spikes are bad readings, so one spike never enters the window.
//! * **Deviation**: `|value − from|` against `high`, while `from` is usable.
//! * **Chattering**: a sensor whose process alarms were raised `chatter_count` times within `chatter_window`
//!   gets a CHATTERING record (cleared after a window without a raise) and, with `auto_shelve_chattering`, is
//!   shelved by `watchpost` (audited like an operator's shelve).
//! * **Flood**: more than `flood_count` annunciated raises within `flood_window` raise ALARM_FLOOD (CRITICAL,
//!   priority high); meanwhile low-priority raises are `held` (recorded, published, not annunciated). It clears
//!   below `flood_clear`, saying how many were held.

use super::alarm::{Active, At, Band, Emitter, SensorState};
use super::{Engine, SensorRules};
use crate::config::{DeviationConfig, SensorConfig};
use crate::formula::Formula;
use crate::model::SensorId;
use crate::model::{
    Alert, AlertState, AlertType, Command, Direction, Priority, Reading, Request, Severity, Target,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Most readings kept in one rate-of-change window (a fast sensor's window then spans less time).
const MAX_WINDOW: usize = 4096;

/// The gateway's alarm-flood state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Flood {
    /// Annunciated raises within the flood window.
    #[serde(default)]
    raises: VecDeque<Timestamp>,
    /// The active ALARM_FLOOD.
    #[serde(default)]
    pub(super) active: Option<Active>,
    /// Low-priority raises held during the active flood.
    #[serde(default)]
    held: u64,
}

impl Flood {
    /// ALARM_FLOOD is active: the clock clears it, as raises leave the window. (Raises in the window of an
    /// inactive flood wait for the next raise, which trims the window before it counts.)
    pub(super) fn busy(&self) -> bool {
        self.active.is_some()
    }

    pub(super) fn shift(&mut self, delta_ms: i64) {
        for t in self.raises.iter_mut() {
            t.0 = t.0.saturating_add(delta_ms);
        }
    }
}

fn trim(q: &mut VecDeque<Timestamp>, now: Timestamp, window: Duration) {
    while q.front().is_some_and(|t| now.since(*t) > window) {
        q.pop_front();
    }
}

/// Derived sensors in the file's order, each moved after the derived sensors it reads (their formulas as
/// compiled in `entries`).
pub(super) fn derive_order(entries: &super::Sensors, sensors: &[SensorConfig]) -> Vec<SensorId> {
    let inputs =
        |id: &str| -> Option<&[String]> { Some(entries.get(id)?.rules.formula.as_ref()?.inputs()) };
    fn visit<'a>(
        id: &'a str,
        inputs: &dyn Fn(&str) -> Option<&'a [String]>,
        placed: &mut HashMap<&'a str, bool>,
        out: &mut Vec<SensorId>,
    ) {
        // Seen before (placed, or on the path: a circle, refused by the config checks, is cut here).
        if placed.insert(id, false).is_some() {
            return;
        }
        for input in inputs(id).into_iter().flatten() {
            if inputs(input).is_some() {
                visit(input, inputs, placed, out);
            }
        }
        placed.insert(id, true);
        out.push(SensorId::from(id));
    }
    let mut out = Vec::new();
    let mut placed = HashMap::new();
    for s in sensors {
        if inputs(&s.id).is_some() {
            visit(&s.id, &inputs, &mut placed, &mut out);
        }
    }
    out
}

/// Count the process-alarm raises among `fresh` (transitions of the sensor whose state `st` is) in its chattering
/// window; whether it now chatters and is not flagged yet.
pub(super) fn track_raises(
    st: &mut SensorState,
    fresh: &[Alert],
    count: usize,
    window: Duration,
    now: Timestamp,
) -> bool {
    let raised = fresh
        .iter()
        .filter(|a| a.is_process_alarm() && a.state == AlertState::Raised);
    if raised.clone().next().is_none() && st.managed.is_none() {
        return false;
    }
    let m = st.managed();
    m.raises.extend(raised.map(|a| a.ts));
    trim(&mut m.raises, now, window);
    while m.raises.len() > count {
        m.raises.pop_front();
    }
    m.raises.len() >= count && m.chattering.is_none()
}

/// Keep the reading for the rate-of-change window.
pub(super) fn remember(st: &mut SensorState, rules: &SensorRules, now: Timestamp, v: f64) {
    let Some(rc) = &rules.rate else { return };
    let window = rc.window.unwrap_or(rc.per).0;
    let w = &mut st.managed().window;
    while w.front().is_some_and(|(t, _)| now.since(*t) > window) || w.len() >= MAX_WINDOW {
        w.pop_front();
    }
    w.push_back((now, v));
}

fn levels(severity: Severity, limit: Option<f64>) -> [Option<f64>; 2] {
    match severity {
        Severity::Warning => [limit, None],
        Severity::Critical => [None, limit],
    }
}

fn mark_suppression(em: &mut Emitter<'_>) {
    if let Some(last) = em.out.last_mut() {
        last.operator.suppressed_by_state = true;
    }
}

/// State-based suppression: whether the sensor's process alarms are evaluated now. `enabled` is the condition
/// computed (or why it could not be), `None` without `enabled_when`.
pub(super) fn enabled(
    em: &mut Emitter<'_>,
    st: &mut SensorState,
    rules: &SensorRules,
    enabled: Option<Result<bool, String>>,
    now: Timestamp,
) -> bool {
    let Some(f) = &rules.enabled_when else {
        return true;
    };
    if let Some(Ok(false)) = enabled {
        if st.managed().suppressed.is_none() {
            let why = format!("suppressed by state: `{f}` is false");
            for (kind, direction, d) in st.process_alarms() {
                if let Some(a) = d.active.take() {
                    let at = At {
                        direction,
                        ts: now,
                        reason: Some(why.clone()),
                        ..At::default()
                    };
                    em.emit(kind, AlertState::Cleared, &a, at);
                    mark_suppression(em);
                }
            }
            let at = At {
                ts: now,
                reason: Some(why),
                ..At::default()
            };
            st.managed().suppressed =
                Some(em.raise(AlertType::SuppressedByState, Severity::Warning, None, at));
            mark_suppression(em);
        }
        for (_, _, d) in st.process_alarms() {
            d.restart_delays();
        }
        return false;
    }
    if let Some(a) = st.managed.as_mut().and_then(|m| m.suppressed.take()) {
        let reason = match enabled {
            Some(Err(why)) => format!("`{f}` cannot be computed ({why}): alarms are evaluated"),
            _ => format!("`{f}` holds: alarms are evaluated again"),
        };
        let at = At {
            ts: now,
            reason: Some(reason),
            ..At::default()
        };
        em.emit(AlertType::SuppressedByState, AlertState::Cleared, &a, at);
        mark_suppression(em);
    }
    true
}

/// The rate-of-change alarm with a good value `v`.
pub(super) fn rate(
    em: &mut Emitter<'_>,
    st: &mut SensorState,
    rules: &SensorRules,
    now: Timestamp,
    v: f64,
) {
    let Some(rc) = &rules.rate else { return };
    let window = rc.window.unwrap_or(rc.per).0;
    let m = st.managed();
    let Some(&(t0, v0)) = m.window.front() else {
        return;
    };
    let span = now.since(t0);
    if span.is_zero() || span < window / 2 {
        return;
    }
    let rate = (v - v0) / span.as_secs_f64() * rc.per.0.as_secs_f64();
    let reason = || {
        format!(
            "changed by {} in {} ({} per {})",
            crate::util::significant(v - v0, 6),
            humantime::format_duration(span),
            crate::util::significant(rate, 6),
            humantime::format_duration(rc.per.0)
        )
    };
    for (dir, limit, d) in [
        (Direction::High, rc.high, &mut m.rate_high),
        (Direction::Low, rc.low, &mut m.rate_low),
    ] {
        if limit.is_none() {
            continue;
        }
        let band = Band {
            kind: AlertType::RateOfChange,
            dir,
            limits: levels(rc.severity.severity(), limit),
            deadband: rc.deadband,
            delay: rules.delay,
            off_delay: rules.off_delay,
        };
        em.band(&band, d, rate, now, Some(&reason));
    }
}

/// The deviation alarm with a good value `v` and the reference's value (or why there is none).
pub(super) fn deviation(
    em: &mut Emitter<'_>,
    st: &mut SensorState,
    reference: Option<Result<(f64, DeviationConfig), String>>,
    now: Timestamp,
    v: f64,
) {
    match reference {
        None => {}
        // No usable reference: the deviation is unknown, as with bad data.
        Some(Err(_)) => st.managed().deviation.restart_delays(),
        Some(Ok((r, dc))) => {
            let dev = (v - r).abs();
            let reason = || {
                format!(
                    "differs from `{}` ({}) by {}",
                    dc.from,
                    crate::util::significant(r, 7),
                    crate::util::significant(dev, 6)
                )
            };
            let band = Band {
                kind: AlertType::Deviation,
                dir: Direction::High,
                limits: levels(dc.severity.severity(), Some(dc.high)),
                deadband: dc.deadband,
                delay: em.rules.delay,
                off_delay: em.rules.off_delay,
            };
            em.band(&band, &mut st.managed().deviation, dev, now, Some(&reason));
        }
    }
}

/// Move the management windows with a wall-clock step.
pub(super) fn shift(st: &mut SensorState, delta_ms: i64) {
    let Some(m) = st.managed.as_deref_mut() else {
        return;
    };
    for (t, _) in m.window.iter_mut() {
        t.0 = t.0.saturating_add(delta_ms);
    }
    for t in m.raises.iter_mut().chain(m.next_due.iter_mut()) {
        t.0 = t.0.saturating_add(delta_ms);
    }
}

impl Engine {
    /// The latest good value of `name` if it may be used at `now`, or why not.
    pub(super) fn usable(&self, name: &str, now: Timestamp) -> Result<f64, String> {
        let e = self
            .sensors
            .get(name)
            .ok_or_else(|| format!("`{name}` is not configured"))?;
        let st = &e.state;
        if st.out_of_service.is_some() {
            return Err(format!("`{name}` is out of service"));
        }
        let Some((t, v)) = st.last_value else {
            return Err(format!("`{name}` has no good reading yet"));
        };
        if st.last_seen.is_some_and(|seen| seen > t) {
            return Err(format!("`{name}`'s latest reading is bad"));
        }
        let fresh = (e.rules.interval * 2).max(Duration::from_secs(1));
        let age = now.since(t);
        if age > fresh {
            return Err(format!(
                "`{name}` is stale: its latest good reading is {} old",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ));
        }
        Ok(v)
    }

    /// A formula over the latest usable values at `now`, or why it cannot be computed.
    pub(super) fn compute(&self, f: &Formula, now: Timestamp) -> Result<f64, String> {
        let mut values = Vec::with_capacity(f.inputs().len());
        for name in f.inputs() {
            values.push(self.usable(name, now)?);
        }
        Ok(f.eval(&values))
    }

    /// Compute the derived sensors that are due at `now`: their readings are validated and evaluated (alert
    /// transitions appended to `out`) and returned to be stored like any other.
    pub fn derive(&mut self, now: Timestamp, out: &mut Vec<Alert>) -> Vec<Reading> {
        let mut made = Vec::new();
        for i in 0..self.derived.len() {
            let id = self.derived[i];
            let Some(e) = self.sensors.get(&id) else {
                continue;
            };
            let Some(f) = e.rules.formula.clone() else {
                continue;
            };
            if e.state
                .managed
                .as_ref()
                .and_then(|m| m.next_due)
                .is_some_and(|t| now < t)
            {
                continue;
            }
            // A little early is due: the engine's tick is about once a second, not to the millisecond.
            let step = e.rules.interval.saturating_sub(Duration::from_millis(250));
            let (value, problem) = match self.compute(&f, now) {
                Ok(v) => (v, None),
                Err(why) => (f64::NAN, Some(why)),
            };
            if let Some(e) = self.sensors.get_mut(&id) {
                e.state.managed().next_due =
                    Some(Timestamp(now.0.saturating_add(step.as_millis() as i64)));
            }
            let mut r = Reading::new(id, now, value);
            let from = out.len();
            self.evaluate(&mut r, out);
            if let Some(p) = problem {
                for a in out[from..]
                    .iter_mut()
                    .filter(|a| a.kind == AlertType::SensorFault && a.state == AlertState::Raised)
                {
                    a.reason = Some(format!("cannot compute `{f}`: {p}"));
                }
            }
            made.push(r);
        }
        made
    }

    /// Chattering and flood bookkeeping for the transitions `out[from..]`, just emitted at `now`. `chattering`:
    /// sensors the caller found chattering (it counted their raises with [`track_raises`]); with `track`, the
    /// raises are counted here, sensor by sensor.
    pub(super) fn after_transitions(
        &mut self,
        from: usize,
        out: &mut Vec<Alert>,
        now: Timestamp,
        mut chattering: Vec<SensorId>,
        track: bool,
    ) {
        let (count, window) = (self.alarms.chatter_count, self.alarms.chatter_window.0);
        let end = out.len();
        for a in out[from..end].iter_mut() {
            if !(a.is_process_alarm() && a.state == AlertState::Raised) {
                continue;
            }
            if track {
                if let Some(e) = self.sensors.get_mut(a.sensor.as_str()) {
                    if track_raises(&mut e.state, std::slice::from_ref(a), count, window, now)
                        && !chattering.iter().any(|c| **c == *a.sensor)
                    {
                        chattering.push(SensorId::from(a.sensor.as_str()));
                    }
                }
            }
            if self.flood.active.is_some() && a.operator.priority == Some(Priority::Low) {
                a.operator.held = true;
                self.flood.held += 1;
            } else if a.annunciates() {
                self.flood.raises.push_back(a.ts);
            }
        }
        for id in chattering {
            self.chattering(&id, now, out);
        }
        let (limit, window) = (self.alarms.flood_count, self.alarms.flood_window.0);
        trim(&mut self.flood.raises, now, window);
        // Bounded: only the count beyond the limit matters.
        while self.flood.raises.len() > limit.saturating_mul(2).max(limit + 1) {
            self.flood.raises.pop_front();
        }
        if self.flood.active.is_none() && self.flood.raises.len() > limit {
            let a = self.ids.next("_gateway", Severity::Critical, now, None);
            let reason = format!(
                "alarm flood: {} alarms within {}",
                self.flood.raises.len(),
                humantime::format_duration(window)
            );
            out.push(self.flood_event(AlertState::Raised, &a, now, reason));
            self.flood.active = Some(a);
            self.flood.held = 0;
        }
    }

    fn chattering(&mut self, id: &SensorId, now: Timestamp, out: &mut Vec<Alert>) {
        let (count, window) = (self.alarms.chatter_count, self.alarms.chatter_window.0);
        let Some(e) = self.sensors.get_mut(id) else {
            return;
        };
        let mut em = Self::emitter(&mut self.ids, &self.location, id, &e.rules, out, self.ack);
        let at = At {
            ts: now,
            reason: Some(format!(
                "alarms raised {count} times within {}",
                humantime::format_duration(window)
            )),
            ..At::default()
        };
        e.state.managed().chattering =
            Some(em.raise(AlertType::Chattering, Severity::Warning, None, at));
        let Some(d) = self.alarms.auto_shelve_chattering else {
            return;
        };
        if e.state.shelved_until.is_some() {
            return;
        }
        let req = Request {
            cmd: Command::Shelve {
                target: Target::Sensor(id.to_string()),
                until: Timestamp(now.0.saturating_add(d.0.as_millis() as i64)),
            },
            by: "watchpost".into(),
            note: Some("auto-shelved: chattering ([alarms] auto_shelve_chattering)".into()),
            request_id: None,
        };
        if let Err(why) = self.execute(&req, now, out) {
            tracing::warn!(sensor = %id, error = %why, "Cannot shelve the chattering sensor.");
        }
    }

    /// Time-driven management: chattering records end after a window without a raise, a flood ends below
    /// `flood_clear`.
    pub(super) fn tick_manage(&mut self, now: Timestamp, out: &mut Vec<Alert>) {
        let window = self.alarms.chatter_window.0;
        for (id, e) in self.sensors.iter_mut() {
            let Some(m) = e.state.managed.as_deref_mut() else {
                continue;
            };
            trim(&mut m.raises, now, window);
            if !m.raises.is_empty() {
                continue;
            }
            if let Some(a) = m.chattering.take() {
                let mut em =
                    Self::emitter(&mut self.ids, &self.location, id, &e.rules, out, self.ack);
                let at = At {
                    ts: now,
                    reason: Some(format!(
                        "no alarm raised for {}",
                        humantime::format_duration(window)
                    )),
                    ..At::default()
                };
                em.emit(AlertType::Chattering, AlertState::Cleared, &a, at);
            }
        }
        let window = self.alarms.flood_window.0;
        trim(&mut self.flood.raises, now, window);
        if self.flood.raises.len() < self.alarms.flood_clear() {
            if let Some(a) = self.flood.active.take() {
                let reason = format!(
                    "{} alarms within the last {}; {} low-priority alarms were held during the flood",
                    self.flood.raises.len(),
                    humantime::format_duration(window),
                    self.flood.held
                );
                out.push(self.flood_event(AlertState::Cleared, &a, now, reason));
                self.flood.held = 0;
            }
        }
    }

    fn flood_event(&self, state: AlertState, a: &Active, now: Timestamp, reason: String) -> Alert {
        let mut e = self.gateway_event(AlertType::AlarmFlood, state, a, now, reason);
        e.operator.priority = Some(Priority::High);
        e
    }
}
