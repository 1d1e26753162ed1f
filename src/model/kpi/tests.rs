//! A scripted week of events against KPIs computed by hand.

use super::*;
use crate::model::{Operator, Priority, Severity};

#[test]
fn standing_alarms_are_those_whose_last_event_stands() {
    let raised = ev(0, "a", AlertType::Alert, AlertState::Raised);
    let mut cleared = raised.clone();
    cleared.state = AlertState::Cleared;
    let other = ev(MIN, "b", AlertType::Deviation, AlertState::Raised);
    let s = Kpi::standing(&[raised, other, cleared]);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].sensor, "b");
}

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const MIN: i64 = 60_000;
/// Monday 2026-11-23 00:00 UTC.
const T0: i64 = 1_795_392_000_000;

fn ev(ms: i64, sensor: &str, kind: AlertType, state: AlertState) -> Alert {
    Alert {
        kind,
        id: format!("gw:{sensor}:{ms}"),
        state,
        severity: Severity::Warning,
        sensor: sensor.into(),
        device: "gw".into(),
        location: String::new(),
        value: Some(1.0),
        unit: None,
        threshold: None,
        direction: None,
        ts: Timestamp(T0 + ms),
        since: Timestamp(T0 + ms),
        reason: None,
        operator: Operator {
            priority: Some(Priority::Medium),
            ..Default::default()
        },
    }
}

fn active(sensor: &str, kind: AlertType, since_ms: i64) -> ActiveAlert {
    ActiveAlert {
        id: format!("gw:{sensor}:1"),
        kind,
        sensor: sensor.into(),
        severity: Severity::Warning,
        direction: None,
        since: Timestamp(T0 + since_ms),
        acked: None,
        shelved_until: None,
        returned: false,
        priority: None,
        stale: false,
    }
}

#[test]
fn a_scripted_week_gives_the_hand_computed_kpis() {
    use AlertState::*;
    use AlertType::*;
    let mut events = Vec::new();
    // Day 1: the boiler alarms once an hour (24), each cleared 5 minutes later (clears do not count).
    for h in 0..24 {
        events.push(ev(h * HOUR + 30 * MIN, "boiler", Alert, Raised));
        events.push(ev(h * HOUR + 35 * MIN, "boiler", Alert, Cleared));
    }
    // Day 3, 10:00–10:10: a flood of 15 alarms from five sensors, one ALARM_FLOOD, two low-priority alarms held.
    for i in 0..15 {
        let s = format!("s{}", i % 5 + 1);
        events.push(ev(
            2 * DAY + 10 * HOUR + i * 30_000,
            &s,
            RateOfChange,
            Raised,
        ));
    }
    events.push(ev(
        2 * DAY + 10 * HOUR + 5 * MIN,
        "_gateway",
        AlarmFlood,
        Raised,
    ));
    for i in 0..2 {
        let mut a = ev(2 * DAY + 10 * HOUR + 6 * MIN + i, "nuisance", Alert, Raised);
        a.operator.held = true;
        events.push(a);
    }
    // Day 5, 08:00–08:30: the valve alarms once a minute (10 per 10 minutes: busy, not a flood) and chatters.
    for m in 0..30 {
        events.push(ev(4 * DAY + 8 * HOUR + m * MIN, "valve", Deviation, Raised));
    }
    events.push(ev(
        4 * DAY + 8 * HOUR + 3 * MIN,
        "valve",
        Chattering,
        Raised,
    ));
    // Day 6: five raises while shelved and a fault: not annunciated process alarms.
    for m in 0..5 {
        let mut a = ev(5 * DAY + m * MIN, "shelved", Alert, Raised);
        a.operator.shelved_until = Some(Timestamp(T0 + 6 * DAY));
        events.push(a);
    }
    events.push(ev(5 * DAY, "t", SensorFault, Raised));
    // Outside the week: ignored.
    events.push(ev(-MIN, "boiler", Alert, Raised));
    events.push(ev(7 * DAY, "boiler", Alert, Raised));
    let standing = [
        active("old", Alert, 7 * DAY - 2 * DAY), // standing for two days: stale
        active("new", Deviation, 7 * DAY - HOUR),
        active("t", SensorFault, 7 * DAY - 3 * DAY), // not a process alarm
    ];
    let k = Kpi::compute(
        &events,
        &standing,
        (Timestamp(T0), Timestamp(T0 + 7 * DAY)),
        10,
        Duration::from_secs(86_400),
    );
    // 24 + 15 + 30 = 69 annunciated in 1,008 ten-minute periods (168 hours).
    assert_eq!(k.annunciated, 69);
    assert_eq!(k.per_10min, 0.07); // 69 / 1008 = 0.0685
    assert_eq!(k.per_hour, 0.41); // 69 / 168 = 0.4107
    assert_eq!(k.max_per_10min, 15);
    assert_eq!(k.flood_percent, 0.1); // 1 / 1008 = 0.099 %
    assert_eq!(k.rating, "acceptable");
    assert_eq!((k.floods, k.held, k.chattering), (1, 2, 1));
    assert_eq!((k.standing, k.stale), (2, 1));
    let actors: Vec<(&str, u64, f64)> = k
        .bad_actors
        .iter()
        .map(|b| (b.sensor.as_str(), b.alarms, b.share_percent))
        .collect();
    assert_eq!(
        actors,
        [
            ("valve", 30, 43.48),
            ("boiler", 24, 34.78),
            ("s1", 3, 4.35),
            ("s2", 3, 4.35),
            ("s3", 3, 4.35),
            ("s4", 3, 4.35),
            ("s5", 3, 4.35)
        ]
    );
    assert_eq!(k.bad_actors_percent, 100.0);
    let csv = k.csv();
    assert!(
        csv.contains("annunciated,69\n") && csv.contains("\"bad_actor:valve\",30\n"),
        "{csv}"
    );
    assert!(k.table().contains("valve"), "{}", k.table());
}

#[test]
fn an_empty_period_is_all_zero_and_acceptable() {
    let k = Kpi::compute(
        &[],
        &[],
        (Timestamp(T0), Timestamp(T0)),
        10,
        Duration::from_secs(86_400),
    );
    assert_eq!((k.annunciated, k.per_10min, k.flood_percent), (0, 0.0, 0.0));
    assert_eq!(k.rating, "acceptable");
}
