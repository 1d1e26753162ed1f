//! When the alarm engine next needs the clock. [`Engine::tick`] is called when something is due, not on a fixed
//! beat: an idle gateway wakes for its readings (a wake-up is 50–100 µs of CPU on a small board, most of what an
//! idle daemon spends).

use super::Engine;
use crate::model::Timestamp;
use std::time::Duration;

/// What the clock moves on by itself (an active CHATTERING or ALARM_FLOOD, derived sensors) is ticked this often.
const BUSY: Duration = Duration::from_secs(1);

impl Engine {
    /// The earliest time at which [`Engine::tick`] or [`Engine::derive`] could change anything if no reading,
    /// command or reconfiguration comes first: a shelf expiring, a sensor going stale; `now` + [`BUSY`] while
    /// CHATTERING or ALARM_FLOOD is active or derived sensors are computed; `None` when only a reading can change anything. A reading
    /// only moves these later (a stale deadline) unless it makes an alert transition, so the caller asks again
    /// after transitions, commands and reloads, and after each tick.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        self.due_over(self.sensors.values(), now)
    }

    /// [`Engine::next_due`] over the sensors named only (and the gateway-wide state): after alert transitions,
    /// the sensors whose deadlines can have come nearer are those that made them. The caller takes the earlier of
    /// this and what it knew. O(transitions) instead of O(sensors) per batch.
    pub fn next_due_of<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
        now: Timestamp,
    ) -> Option<Timestamp> {
        self.due_over(ids.filter_map(|id| self.sensors.get(id)), now)
    }

    fn due_over<'a>(
        &self,
        entries: impl Iterator<Item = &'a super::Entry>,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let busy = Timestamp(now.0.saturating_add(BUSY.as_millis() as i64));
        if !self.derived.is_empty() || self.flood.busy() {
            return Some(busy);
        }
        let mut due: Option<Timestamp> = None;
        let mut take = |t: Timestamp| due = Some(due.map_or(t, |d: Timestamp| d.min(t)));
        for e in entries {
            let st = &e.state;
            // CHATTERING clears by the clock (its window empties); raises of a sensor that is not chattering
            // wait for the next raise, which trims the window before it counts.
            if st
                .managed
                .as_deref()
                .is_some_and(|m| m.chattering.is_some())
            {
                return Some(busy);
            }
            st.shelf_expiries().for_each(&mut take);
            if st.offline.is_none() && st.out_of_service.is_none() {
                let since = st.last_seen.unwrap_or(self.started).max(self.started);
                let stale = i64::try_from(e.rules.stale_after.as_millis()).unwrap_or(i64::MAX);
                take(Timestamp(since.0.saturating_add(stale)));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Dur;
    use crate::model::{Reading, Timestamp};
    use crate::pipeline::{Command, Engine, Request, Target};
    use std::time::Duration;

    fn sensor(id: &str, stale_after: Option<u64>) -> crate::config::SensorConfig {
        let mut s = crate::pipeline::tests::sensor();
        s.id = id.into();
        s.interval = Dur(Duration::from_secs(10));
        s.stale_after = stale_after.map(|secs| Dur(Duration::from_secs(secs)));
        s
    }

    /// An engine started at `T0` with sensors `(id, stale_after in s)`.
    fn engine(sensors: &[(&str, Option<u64>)]) -> Engine {
        let cfg: Vec<_> = sensors.iter().map(|(id, s)| sensor(id, *s)).collect();
        Engine::new("gw", "here", &cfg, Timestamp(T0))
    }

    /// `id` reads `v` at `T0` + `ms`, its transitions into `out`.
    fn read(e: &mut Engine, id: &str, ms: i64, v: f64, out: &mut Vec<crate::model::Alert>) {
        e.evaluate(&mut Reading::new(id.into(), Timestamp(T0 + ms), v), out);
    }

    /// `T0` + `ms`.
    fn at(ms: i64) -> Option<Timestamp> {
        Some(Timestamp(T0 + ms))
    }

    const T0: i64 = 1_000_000;

    #[test]
    fn an_idle_engine_is_due_when_the_first_sensor_goes_stale_and_not_before() {
        let mut e = engine(&[("a", Some(30)), ("b", None)]);
        let mut out = Vec::new();
        read(&mut e, "a", 5_000, 20.0, &mut out);
        read(&mut e, "b", 2_000, 20.0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // a: 5 s + 30 s; b: 2 s + 3 × its 10 s interval.
        assert_eq!(e.next_due(Timestamp(T0 + 6_000)), at(32_000));
        // Nothing happens before it; ticking at it raises SENSOR_OFFLINE for b.
        e.tick(Timestamp(T0 + 31_999), &mut out);
        assert!(out.is_empty(), "{out:?}");
        e.tick(Timestamp(T0 + 32_000), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(&*out[0].sensor, "b");
        // b is offline (only a reading clears that): a is next.
        assert_eq!(e.next_due(Timestamp(T0 + 32_000)), at(35_000));
        // b's next reading clears SENSOR_OFFLINE (a transition): asked about b alone, its new stale deadline.
        out.clear();
        read(&mut e, "b", 33_000, 20.0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let ids = out.iter().map(|a| a.sensor.as_str());
        assert_eq!(e.next_due_of(ids, Timestamp(T0 + 33_000)), at(63_000));
        // A sensor the engine does not know (the gateway's own alerts) adds nothing.
        assert_eq!(
            e.next_due_of(["_gateway"].into_iter(), Timestamp(T0 + 33_000)),
            None
        );
    }

    #[test]
    fn a_raised_alarm_keeps_no_second_by_second_tick_but_an_active_flood_does() {
        let mut e = engine(&[("a", Some(30)), ("b", Some(30))]);
        e.set_alarms(&crate::config::AlarmsConfig {
            flood_count: 1,
            ..Default::default()
        });
        let mut out = Vec::new();
        read(&mut e, "a", 0, 90.0, &mut out);
        read(&mut e, "b", 0, 20.0, &mut out);
        assert_eq!(out.len(), 1, "WARNING high raised: {out:?}");
        // Its raise sits in the chattering and flood windows; neither is active: the stale deadline is next.
        assert_eq!(e.next_due(Timestamp(T0 + 1_000)), at(30_000));
        // A second raise makes a flood, which the clock clears: ticked every second.
        read(&mut e, "b", 1_000, 90.0, &mut out);
        assert!(
            out.iter()
                .any(|a| a.kind == crate::model::AlertType::AlarmFlood),
            "{out:?}"
        );
        assert_eq!(e.next_due(Timestamp(T0 + 1_000)), at(2_000));
    }

    #[test]
    fn a_shelf_is_due_when_it_expires() {
        let mut e = engine(&[("a", Some(3600))]);
        e.set_acknowledge(true);
        let mut out = Vec::new();
        read(&mut e, "a", 0, 20.0, &mut out);
        let until = Timestamp(T0 + 60_000);
        let req = Request {
            cmd: Command::Shelve {
                target: Target::Sensor("a".into()),
                until,
            },
            by: "test".into(),
            note: None,
            request_id: None,
        };
        e.command(&req, Timestamp(T0), &mut out).expect("shelved");
        assert_eq!(e.next_due(Timestamp(T0)), Some(until));
    }
}
