//! Operator commands on the alarm engine (ISA-18.2): acknowledge, shelve, unshelve, out of service, in service.
//!
//! States per alarm: active unacknowledged → active acknowledged (`ack`); an alarm that clears unacknowledged
//! is *latched* (returned to normal, unacknowledged) and stays visible until acknowledged; a shelved alarm is not
//! annunciated until the shelf expires or is lifted, then announced again if still active; a sensor out of
//! service has its alarms cleared and none evaluated until it is back in service. Every change is an alert event
//! with the alarm's id, so it is stored, published and retained like the others, and the engine snapshot
//! committed with it makes it survive a restart.

use super::alarm::{At, Emitter, Latched, SensorState};
use super::Engine;
use crate::model::{Alert, AlertState, AlertType, Severity, Timestamp};
pub use crate::model::{Command, Request, Target};

/// Alarms kept latched per sensor (the oldest are dropped beyond this).
const MAX_LATCHED: usize = 100;
/// Operator request ids remembered (the oldest are forgotten beyond this).
const MAX_REQUESTS: usize = 256;

/// An operator request executed (or refused) once, by its id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// The request id (its JSON text).
    pub id: String,
    /// When it was executed.
    pub ts: Timestamp,
    /// Its answer then: `accepted` or why not.
    pub outcome: String,
}

/// Post-process fresh transitions of one sensor: alarms raised or escalated while the sensor is shelved are born
/// shelved; alarms that cleared unacknowledged are latched.
pub(super) fn settle(st: &mut SensorState, fresh: &mut [Alert]) {
    for a in fresh.iter_mut() {
        match a.state {
            AlertState::Raised | AlertState::Escalated => {
                let Some(until) = st.shelved_until.filter(|u| *u > a.ts) else {
                    continue;
                };
                for (_, _, slot) in st.slots() {
                    if let Some(x) = slot.as_mut().filter(|x| x.id == a.id) {
                        x.shelved_until = Some(until);
                        a.operator.shelved_until = Some(until);
                    }
                }
            }
            AlertState::Cleared if a.operator.acked == Some(false) => {
                if st.latched.len() >= MAX_LATCHED {
                    st.latched.remove(0);
                }
                st.latched.push(Latched {
                    kind: a.kind,
                    direction: a.direction,
                    alarm: super::Active {
                        severity: a.severity,
                        since: a.since,
                        id: a.id.clone(),
                        threshold: a.threshold,
                        acked: false,
                        shelved_until: None,
                    },
                });
            }
            _ => {}
        }
    }
}

/// End shelves that expired by `now`; alarms still active are announced again.
pub(super) fn expire_shelves(st: &mut SensorState, em: &mut Emitter<'_>, now: Timestamp) {
    if st.shelved_until.is_some_and(|u| u <= now) {
        st.shelved_until = None;
    }
    for (kind, direction, slot) in st.slots() {
        let Some(a) = slot
            .as_mut()
            .filter(|a| a.shelved_until.is_some_and(|u| u <= now))
        else {
            continue;
        };
        a.shelved_until = None;
        // ISA-18.2: an alarm leaves the shelf unacknowledged (it is annunciated again), whatever it was before.
        a.acked = false;
        let a = a.clone();
        operator_event(
            em,
            kind,
            AlertState::Unshelved,
            &a,
            direction,
            now,
            "shelf expired",
        );
        mark(em, Some(true), None, None);
    }
}

/// Move shelf expiries with a wall-clock step (a shelf lasts the time the operator asked for).
pub(super) fn shift_shelves(st: &mut SensorState, delta_ms: i64) {
    let shift = |t: &mut Option<Timestamp>| {
        if let Some(t) = t.as_mut() {
            t.0 = t.0.saturating_add(delta_ms);
        }
    };
    shift(&mut st.shelved_until);
    for (_, _, slot) in st.slots() {
        if let Some(a) = slot.as_mut() {
            shift(&mut a.shelved_until);
        }
    }
}

fn operator_event(
    em: &mut Emitter<'_>,
    kind: AlertType,
    state: AlertState,
    a: &super::Active,
    direction: Option<crate::model::Direction>,
    now: Timestamp,
    reason: &str,
) {
    let at = At {
        direction,
        ts: now,
        reason: Some(reason.to_string()),
        ..At::default()
    };
    em.emit(kind, state, a, at);
}

/// Set the operator fields of the event just emitted.
fn mark(em: &mut Emitter<'_>, active: Option<bool>, by: Option<&str>, note: Option<&str>) {
    if let Some(last) = em.out.last_mut() {
        last.operator.active = active;
        last.operator.by = by.map(str::to_string);
        last.operator.note = note.map(str::to_string);
    }
}

impl Engine {
    /// Apply an operator command at `now`. The resulting events are appended to `out`; the answer names the
    /// alert ids changed, or why the command was refused (nothing changed then).
    pub fn command(
        &mut self,
        req: &Request,
        now: Timestamp,
        out: &mut Vec<Alert>,
    ) -> Result<Vec<String>, String> {
        if !self.ack {
            return Err("alarm commands are disabled ([mqtt.commands] enabled = false)".into());
        }
        if let Some(rid) = &req.request_id {
            if let Some(seen) = self.requests.iter().find(|s| s.id == *rid) {
                return Err(format!(
                    "duplicate request_id {rid}: executed once already, at {} ({}); not executed again",
                    seen.ts, seen.outcome
                ));
            }
        }
        let result = self.execute(req, now, out);
        if let Some(rid) = &req.request_id {
            if self.requests.len() >= MAX_REQUESTS {
                self.requests.pop_front();
            }
            let outcome = match &result {
                Ok(ids) if ids.is_empty() => "accepted".to_string(),
                Ok(ids) => format!("accepted: {}", ids.join(", ")),
                Err(why) => format!("rejected: {why}"),
            };
            self.requests.push_back(Seen {
                id: rid.clone(),
                ts: now,
                outcome,
            });
        }
        result
    }

    pub(in crate::pipeline) fn execute(
        &mut self,
        req: &Request,
        now: Timestamp,
        out: &mut Vec<Alert>,
    ) -> Result<Vec<String>, String> {
        let (by, note) = (Some(req.by.as_str()), req.note.as_deref());
        let sensor = match &req.cmd {
            Command::Ack { id }
            | Command::Shelve {
                target: Target::Alert(id),
                ..
            }
            | Command::Unshelve {
                target: Target::Alert(id),
            } => self
                .sensors
                .iter()
                .find(|(_, e)| holds(&e.state, id))
                .map(|(k, _)| *k)
                .ok_or_else(|| format!("no active or unacknowledged alarm has the id {id:?}"))?,
            Command::Shelve {
                target: Target::Sensor(s),
                ..
            }
            | Command::Unshelve {
                target: Target::Sensor(s),
            }
            | Command::OutOfService { sensor: s }
            | Command::InService { sensor: s } => self
                .sensors
                .keys()
                .find(|k| ***k == **s)
                .cloned()
                .ok_or_else(|| format!("no sensor has the id {s:?}"))?,
        };
        let Some(entry) = self.sensors.get_mut(&sensor) else {
            return Err(format!("no sensor has the id {sensor:?}"));
        };
        let st = &mut entry.state;
        let mut em = Self::emitter(
            &mut self.ids,
            &self.location,
            &sensor,
            &entry.rules,
            out,
            true,
        );
        let mut changed = Vec::new();
        match &req.cmd {
            Command::Ack { id } => {
                if let Some(i) = st.latched.iter().position(|l| l.alarm.id == *id) {
                    let mut l = st.latched.remove(i);
                    l.alarm.acked = true;
                    operator_event(
                        &mut em,
                        l.kind,
                        AlertState::Acknowledged,
                        &l.alarm,
                        l.direction,
                        now,
                        "acknowledged after return to normal",
                    );
                    mark(&mut em, Some(false), by, note);
                } else {
                    for (kind, direction, slot) in st.slots() {
                        let Some(a) = slot.as_mut().filter(|a| a.id == *id) else {
                            continue;
                        };
                        if a.acked {
                            return Err(format!("{id} is already acknowledged"));
                        }
                        a.acked = true;
                        let a = a.clone();
                        operator_event(
                            &mut em,
                            kind,
                            AlertState::Acknowledged,
                            &a,
                            direction,
                            now,
                            "acknowledged",
                        );
                        mark(&mut em, Some(true), by, note);
                    }
                }
                changed.push(id.clone());
            }
            Command::Shelve { target, until } => {
                if *until <= now {
                    return Err("the shelf would end before it starts".into());
                }
                if let Target::Sensor(_) = target {
                    st.shelved_until = Some(*until);
                } else if st
                    .latched
                    .iter()
                    .any(|l| Target::Alert(l.alarm.id.clone()) == *target)
                {
                    return Err(
                        "the alarm returned to normal; acknowledge it instead of shelving".into(),
                    );
                }
                for (kind, direction, slot) in st.slots() {
                    let Some(a) = slot.as_mut() else { continue };
                    if matches!(target, Target::Alert(id) if *id != a.id) {
                        continue;
                    }
                    a.shelved_until = Some(*until);
                    let a = a.clone();
                    operator_event(
                        &mut em,
                        kind,
                        AlertState::Shelved,
                        &a,
                        direction,
                        now,
                        "shelved",
                    );
                    mark(&mut em, Some(true), by, note);
                    changed.push(a.id);
                }
            }
            Command::Unshelve { target } => {
                let sensor_shelf =
                    matches!(target, Target::Sensor(_)) && st.shelved_until.take().is_some();
                for (kind, direction, slot) in st.slots() {
                    let Some(a) = slot.as_mut().filter(|a| a.shelved_until.is_some()) else {
                        continue;
                    };
                    if matches!(target, Target::Alert(id) if *id != a.id) {
                        continue;
                    }
                    a.shelved_until = None;
                    // ISA-18.2: back from the shelf unacknowledged, also when it was acknowledged before.
                    a.acked = false;
                    let a = a.clone();
                    operator_event(
                        &mut em,
                        kind,
                        AlertState::Unshelved,
                        &a,
                        direction,
                        now,
                        "unshelved",
                    );
                    mark(&mut em, Some(true), by, note);
                    changed.push(a.id);
                }
                if changed.is_empty() && !sensor_shelf {
                    return Err("not shelved".into());
                }
            }
            Command::OutOfService { sensor: s } => {
                if st.out_of_service.is_some() {
                    return Err(format!("{s} is already out of service"));
                }
                for (kind, direction, slot) in st.slots() {
                    let Some(a) = slot.take() else { continue };
                    operator_event(
                        &mut em,
                        kind,
                        AlertState::Cleared,
                        &a,
                        direction,
                        now,
                        "sensor taken out of service",
                    );
                    mark(&mut em, None, by, note);
                    // Removed from service, not returned to normal: nothing to acknowledge later.
                    if let Some(last) = em.out.last_mut() {
                        last.operator.acked = None;
                    }
                    changed.push(a.id);
                }
                reset_timers(st);
                let reason = match note {
                    Some(n) => format!("out of service: {n}"),
                    None => "out of service".to_string(),
                };
                let a = em.raise(
                    AlertType::OutOfService,
                    Severity::Warning,
                    None,
                    At {
                        ts: now,
                        reason: Some(reason),
                        ..At::default()
                    },
                );
                mark(&mut em, None, by, note);
                changed.push(a.id.clone());
                st.out_of_service = Some(a);
            }
            Command::InService { sensor: s } => {
                let Some(a) = st.out_of_service.take() else {
                    return Err(format!("{s} is not out of service"));
                };
                operator_event(
                    &mut em,
                    AlertType::OutOfService,
                    AlertState::Cleared,
                    &a,
                    None,
                    now,
                    "back in service",
                );
                mark(&mut em, None, by, note);
                reset_timers(st);
                // The staleness clock starts again now.
                st.last_seen = Some(now);
                changed.push(a.id);
            }
        }
        Ok(changed)
    }
}

/// Whether the sensor has an active or latched alarm with this id.
fn holds(st: &SensorState, id: &str) -> bool {
    let active = [&st.high.active, &st.low.active, &st.fault, &st.offline];
    st.latched.iter().any(|l| l.alarm.id == id)
        || active
            .iter()
            .any(|a| a.as_ref().is_some_and(|a| a.id == id))
}

/// Pending delays and detection references start fresh (out of service and back).
fn reset_timers(st: &mut SensorState) {
    for d in [&mut st.high, &mut st.low] {
        d.true_since = [None, None];
        d.false_since = [None, None];
    }
    st.spikes = 0;
    st.same_since = None;
    st.last_value = None;
}

#[cfg(test)]
mod tests;
