//! Table tests of validation and the alarm engine: each case is a sensor config, a list of `(seconds, value)`
//! samples and the expected transitions `(seconds, type, state, severity)`.

use super::*;
use crate::config::{Dur, SimulatedSource, SourceConfig, Waveform};

pub(crate) fn sensor() -> SensorConfig {
    SensorConfig {
        id: "t".into(),
        source: SourceConfig::Simulated(SimulatedSource {
            waveform: Waveform::Constant,
            ..Default::default()
        }),
        interval: Dur(Duration::from_secs(1)),
        unit: Some("°C".into()),
        valid: Some(ValidRange {
            min: Some(-40.0),
            max: Some(250.0),
        }),
        warning: Some(Limits {
            high: Some(80.0),
            low: Some(5.0),
        }),
        critical: Some(Limits {
            high: Some(95.0),
            low: Some(0.0),
        }),
        deadband: 2.0,
        delay: None,
        off_delay: None,
        stale_after: Some(Dur(Duration::from_secs(10))),
        stuck_after: None,
        max_rate: None,
        tags: Default::default(),
        formula: None,
        enabled_when: None,
        rate: None,
        deviation: None,
        priority: None,
    }
}

type Got = Vec<(i64, AlertType, AlertState, Severity)>;

fn run(s: &SensorConfig, samples: &[(i64, f64)]) -> Got {
    let mut e = Engine::new("gw", "here", std::slice::from_ref(s), Timestamp(0));
    let mut out = Vec::new();
    let mut got = Vec::new();
    for (t, v) in samples {
        let mut r = Reading::new(SensorId::from("t"), Timestamp(t * 1000), *v);
        e.evaluate(&mut r, &mut out);
        for a in out.drain(..) {
            got.push((*t, a.kind, a.state, a.severity));
        }
    }
    got
}

use AlertState::*;
use AlertType::{Alert as A, SensorFault as F};
use Severity::*;

#[test]
fn raise_escalate_deescalate_clear_high() {
    let got = run(
        &sensor(),
        &[
            (0, 50.0),
            (1, 81.0),
            (2, 96.0),
            (3, 94.0),
            (4, 92.9),
            (5, 79.0),
            (6, 77.9),
        ],
    );
    assert_eq!(
        got,
        vec![
            (1, A, Raised, Warning),
            (2, A, Escalated, Critical),
            // 94 is inside the critical deadband (95 - 2 = 93): still critical.
            (4, A, Deescalated, Warning),
            // 79 is inside the warning deadband (80 - 2 = 78): still warning.
            (6, A, Cleared, Warning),
        ]
    );
}

#[test]
fn straight_to_critical_and_clear_after_escalation() {
    let got = run(&sensor(), &[(0, 100.0), (1, 50.0)]);
    assert_eq!(
        got,
        vec![(0, A, Raised, Critical), (1, A, Cleared, Critical)]
    );
}

#[test]
fn low_side_mirrors_high() {
    let got = run(
        &sensor(),
        &[
            (0, 20.0),
            (1, 4.0),
            (2, -1.0),
            (3, 1.0),
            (4, 2.5),
            (5, 6.0),
            (6, 7.5),
        ],
    );
    assert_eq!(
        got,
        vec![
            (1, A, Raised, Warning),
            (2, A, Escalated, Critical),
            (4, A, Deescalated, Warning),
            (6, A, Cleared, Warning)
        ]
    );
}

#[test]
fn deadband_suppresses_chatter() {
    // Flapping around 80 between 79 and 81: one raise, no clears while inside the deadband.
    let samples: Vec<(i64, f64)> = (0..20)
        .map(|i| (i, if i % 2 == 0 { 81.0 } else { 79.0 }))
        .collect();
    let got = run(&sensor(), &samples);
    assert_eq!(got, vec![(0, A, Raised, Warning)]);
    // Without a deadband the same signal chatters, and is flagged as chattering (3 raises within a minute).
    let mut s = sensor();
    s.deadband = 0.0;
    let got = run(&s, &samples);
    assert_eq!(got.iter().filter(|e| e.1 == A).count(), 20);
    assert_eq!(
        got.iter()
            .filter(|e| e.1 == AlertType::Chattering)
            .map(|e| (e.0, e.2))
            .collect::<Vec<_>>(),
        vec![(4, Raised)]
    );
}

#[test]
fn on_delay_requires_persistence() {
    let mut s = sensor();
    s.delay = Some(Dur(Duration::from_secs(5)));
    // A 3 s excursion is ignored; a 6 s one raises at 5 s after it began.
    let got = run(
        &s,
        &[
            (0, 85.0),
            (3, 85.0),
            (4, 50.0),
            (10, 85.0),
            (12, 85.0),
            (15, 85.0),
            (16, 85.0),
        ],
    );
    assert_eq!(got, vec![(15, A, Raised, Warning)]);
}

#[test]
fn nan_in_the_middle_of_a_pending_delay_restarts_it() {
    let mut s = sensor();
    s.delay = Some(Dur(Duration::from_secs(5)));
    let got = run(
        &s,
        &[(0, 85.0), (3, f64::NAN), (5, 85.0), (9, 85.0), (10, 85.0)],
    );
    // NaN at 3 s is a fault and restarts the delay: the alarm comes 5 s after 5 s, not at 5 s.
    assert_eq!(
        got,
        vec![
            (3, F, Raised, Warning),
            (5, F, Cleared, Warning),
            (10, A, Raised, Warning)
        ]
    );
}

#[test]
fn bad_data_never_clears_an_active_alarm() {
    let got = run(
        &sensor(),
        &[(0, 90.0), (1, f64::NAN), (2, 300.0), (3, 90.0)],
    );
    assert_eq!(
        got,
        vec![
            (0, A, Raised, Warning),
            (1, F, Raised, Warning),
            (3, F, Cleared, Warning)
        ]
    );
}

#[test]
fn off_delay_holds_the_clear() {
    let mut s = sensor();
    s.off_delay = Some(Dur(Duration::from_secs(3)));
    let got = run(
        &s,
        &[
            (0, 85.0),
            (1, 50.0),
            (2, 50.0),
            (3, 85.0),
            (4, 50.0),
            (6, 50.0),
            (7, 50.0),
        ],
    );
    assert_eq!(got, vec![(0, A, Raised, Warning), (7, A, Cleared, Warning)]);
}

#[test]
fn out_of_range_is_a_fault_not_a_threshold_alarm() {
    let got = run(&sensor(), &[(0, 20.0), (1, 251.0), (2, 20.0)]);
    assert_eq!(got, vec![(1, F, Raised, Warning), (2, F, Cleared, Warning)]);
}

#[test]
fn stuck_sensor_is_a_fault() {
    let mut s = sensor();
    s.stuck_after = Some(Dur(Duration::from_secs(5)));
    let samples: Vec<(i64, f64)> = (0..8).map(|i| (i, 20.0)).chain([(8, 21.0)]).collect();
    assert_eq!(
        run(&s, &samples),
        vec![(5, F, Raised, Warning), (8, F, Cleared, Warning)]
    );
}

#[test]
fn spike_is_marked_bad_and_ignored_by_thresholds() {
    let mut s = sensor();
    s.max_rate = Some(10.0);
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    let mut q = Vec::new();
    for (t, v) in [(0, 20.0), (1, 200.0), (2, 21.0)] {
        let mut r = Reading::new(SensorId::from("t"), Timestamp(t * 1000), v);
        e.evaluate(&mut r, &mut out);
        q.push(r.quality);
    }
    assert_eq!(q, vec![Quality::Good, Quality::Spike, Quality::Good]);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn stale_sensor_goes_offline_and_returns() {
    let s = sensor();
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    e.tick(Timestamp(9_000), &mut out);
    assert!(out.is_empty());
    e.tick(Timestamp(10_000), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind, out[0].state),
        (AlertType::SensorOffline, Raised)
    );
    e.tick(Timestamp(11_000), &mut out);
    assert_eq!(out.len(), 1, "raised once");
    let mut r = Reading::new(SensorId::from("t"), Timestamp(12_000), 20.0);
    e.evaluate(&mut r, &mut out);
    assert_eq!(
        (out[1].kind, out[1].state),
        (AlertType::SensorOffline, Cleared)
    );
    assert_eq!(out[0].id, out[1].id);
}

#[test]
fn payload_matches_the_contract() {
    let mut e = Engine::new(
        "press-line-3",
        "plant-1/hall-b",
        &[SensorConfig {
            id: "oil_temp".into(),
            ..sensor()
        }],
        Timestamp(0),
    );
    let mut out = Vec::new();
    let mut r = Reading::new(
        SensorId::from("oil_temp"),
        Timestamp(1_795_773_600_123),
        97.2,
    );
    e.evaluate(&mut r, &mut out);
    let v: serde_json::Value = serde_json::to_value(&out[0]).expect("json");
    assert_eq!(v["type"], "ALERT");
    assert_eq!(v["id"], "press-line-3:oil_temp:1");
    assert_eq!(v["state"], "raised");
    assert_eq!(v["severity"], "CRITICAL");
    assert_eq!(v["sensor"], "oil_temp");
    assert_eq!(v["device"], "press-line-3");
    assert_eq!(v["location"], "plant-1/hall-b");
    assert_eq!(v["value"], 97.2);
    assert_eq!(v["unit"], "°C");
    assert_eq!(v["threshold"], 95.0);
    assert_eq!(v["direction"], "high");
    assert_eq!(v["ts"], "2026-11-27T10:00:00.123Z");
    assert_eq!(v["since"], "2026-11-27T10:00:00.123Z");
    // The active list (the shadow's and the status's): times as RFC 3339 text too, a shelved one with its end.
    let alarm = e
        .sensors
        .get_mut("oil_temp")
        .and_then(|x| x.state.high.active.as_mut());
    alarm.expect("raised").shelved_until = Some(Timestamp(1_795_777_200_000));
    let active = serde_json::to_value(e.active()).expect("json");
    assert_eq!(active[0]["since"], "2026-11-27T10:00:00.123Z");
    assert_eq!(active[0]["shelved_until"], "2026-11-27T11:00:00.000Z");
    assert_eq!(active[0]["sensor"], "oil_temp");
}

#[test]
fn state_survives_a_restart() {
    let s = sensor();
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    let mut r = Reading::new(SensorId::from("t"), Timestamp(1000), 90.0);
    e.evaluate(&mut r, &mut out);
    let snap = e.snapshot();
    let mut e2 = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(5000));
    e2.restore(&snap, Timestamp(5000)).expect("restore");
    let mut out2 = Vec::new();
    let mut r = Reading::new(SensorId::from("t"), Timestamp(6000), 91.0);
    e2.evaluate(&mut r, &mut out2);
    assert!(out2.is_empty(), "not raised twice: {out2:?}");
    let mut r = Reading::new(SensorId::from("t"), Timestamp(7000), 20.0);
    e2.evaluate(&mut r, &mut out2);
    assert_eq!(out2.len(), 1);
    assert_eq!(out2[0].state, Cleared);
    assert_eq!(out2[0].id, out[0].id);
}

#[test]
fn changes_restored_over_an_older_snapshot_win_for_their_sensors() {
    let s = sensor();
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    let full = e.snapshot();
    e.evaluate(
        &mut Reading::new(SensorId::from("t"), Timestamp(1000), 90.0),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    // Each sensor once, unknown ids skipped.
    let c = e.changes(["t", "nope", "t"]);
    assert_eq!(c.sensors.len(), 1);
    assert_eq!(c.sensors[0].0, "t");
    let mut e2 = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(5000));
    e2.restore(&full, Timestamp(5000)).expect("full");
    assert!(e2.active().is_empty());
    let r = e2
        .restore_changes(Some(&c.head), &c.sensors, Timestamp(5000))
        .expect("changes");
    assert_eq!(r.sensors, 1);
    assert_eq!(e2.active().len(), 1);
    let mut out2 = Vec::new();
    e2.evaluate(
        &mut Reading::new(SensorId::from("t"), Timestamp(6000), 20.0),
        &mut out2,
    );
    assert_eq!((out2.len(), out2[0].id.as_str()), (1, out[0].id.as_str()));
}

#[test]
fn reconfigure_keeps_state_and_clears_removed_sensors() {
    let s = sensor();
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    let mut r = Reading::new(SensorId::from("t"), Timestamp(1000), 90.0);
    e.evaluate(&mut r, &mut out);
    // New threshold above the value: the active alarm stays until the next reading evaluates it.
    let mut s2 = s.clone();
    s2.warning = Some(Limits {
        high: Some(100.0),
        low: None,
    });
    s2.critical = None;
    assert!(e
        .reconfigure(std::slice::from_ref(&s2), Timestamp(1500))
        .is_empty());
    let mut r = Reading::new(SensorId::from("t"), Timestamp(2000), 90.0);
    out.clear();
    e.evaluate(&mut r, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, Cleared);
    // Removing a sensor with an active alarm clears it.
    let mut r = Reading::new(SensorId::from("t"), Timestamp(3000), 120.0);
    e.evaluate(&mut r, &mut out);
    let cleared = e.reconfigure(&[], Timestamp(4000));
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].state, Cleared);
}

#[test]
fn an_old_snapshot_restores_sensor_by_sensor() {
    // The unversioned form written by 0.1: sensor `t` has an active high alarm, sensor `u` carries a field of an
    // incompatible shape. `t` keeps its alarm (same id on clear); `u` starts fresh; the counter is kept.
    let t = sensor();
    let mut u = sensor();
    u.id = "u".into();
    let old = r#"{"counter":7,"sensors":{
        "t":{"last_good":1000,"last_value":[1000,90.0],"spikes":0,"same_since":null,
             "high":{"active":{"severity":"WARNING","since":1000,"id":"gw:t:7","threshold":80.0},
                     "true_since":[1000,null],"false_since":[null,null]},
             "low":{"active":null,"true_since":[null,null],"false_since":[null,null]},
             "fault":null,"offline":null},
        "u":{"high":{"active":"not an alarm"}}}}"#;
    let mut e = Engine::new("gw", "", &[t, u], Timestamp(5000));
    let done = e.restore(old, Timestamp(5000)).expect("restore");
    assert_eq!(done.sensors, 1);
    assert_eq!(done.unreadable, vec!["u".to_string()]);
    assert_eq!(e.active().len(), 1);
    let mut out = Vec::new();
    let mut r = Reading::new(SensorId::from("t"), Timestamp(6000), 20.0);
    e.evaluate(&mut r, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].state, out[0].id.as_str()), (Cleared, "gw:t:7"));
    // A newer format than this version is refused as a whole (nothing half-restored).
    let newer = r#"{"version":99,"counter":1,"sensors":{}}"#;
    assert!(e.restore(newer, Timestamp(7000)).is_err());
    // The next alarm id continues after the saved counter.
    assert!(e.snapshot().contains(r#""version":2"#));
}

#[test]
fn a_sensor_answering_with_bad_values_is_faulty_not_offline() {
    // 500 with valid.max = 250, every second for 30 s (stale_after = 10 s): SENSOR_FAULT once, never OFFLINE.
    let s = sensor();
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    for sec in 1..=30 {
        let mut r = Reading::new(SensorId::from("t"), Timestamp(sec * 1000), 500.0);
        e.evaluate(&mut r, &mut out);
        e.tick(Timestamp(sec * 1000 + 500), &mut out);
    }
    let kinds: Vec<_> = out.iter().map(|a| (a.kind, a.state)).collect();
    assert_eq!(kinds, vec![(AlertType::SensorFault, Raised)]);
    // Silence does raise OFFLINE, and a bad reading ends it (the sensor answers again) while FAULT stays.
    e.tick(Timestamp(45_000), &mut out);
    assert_eq!(
        (out[1].kind, out[1].state),
        (AlertType::SensorOffline, Raised)
    );
    let mut r = Reading::new(SensorId::from("t"), Timestamp(46_000), f64::NAN);
    e.evaluate(&mut r, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(
        (out[2].kind, out[2].state),
        (AlertType::SensorOffline, Cleared)
    );
    assert_eq!(e.active().len(), 1, "FAULT still active");
}

#[test]
fn a_clock_step_neither_fires_nor_delays_a_pending_alarm() {
    let mut s = sensor();
    s.delay = Some(Dur(Duration::from_secs(10)));
    let mut e = Engine::new("gw", "", std::slice::from_ref(&s), Timestamp(0));
    let mut out = Vec::new();
    let at = |e: &mut Engine, ms: i64, out: &mut Vec<Alert>| {
        let mut r = Reading::new(SensorId::from("t"), Timestamp(ms), 90.0);
        e.evaluate(&mut r, out);
        e.tick(Timestamp(ms), out);
    };
    for sec in 0..5 {
        at(&mut e, sec * 1000, &mut out);
    }
    // NTP steps the clock forward by an hour: no alarm fires at once, no sensor goes OFFLINE.
    e.shift_clock(3_600_000);
    at(&mut e, 3_605_000, &mut out);
    assert!(out.is_empty(), "{out:?}");
    // The on-delay completes after 10 s of real time.
    for sec in 6..=10 {
        at(&mut e, 3_600_000 + sec * 1000, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].kind, out[0].state), (AlertType::Alert, Raised));
    assert_eq!(out[0].ts, Timestamp(3_610_000));
}

/// Rate-of-change and flood windows are part of the snapshot: a restart in the middle of either gives the same
/// events as a run without one.
#[test]
fn a_restart_mid_window_keeps_rate_and_flood_windows() {
    let mut s = sensor();
    s.warning = Some(Limits {
        high: Some(1000.0),
        low: None,
    });
    s.critical = None;
    s.stale_after = Some(Dur(Duration::from_secs(600)));
    s.rate = Some(RateConfig {
        high: Some(2.0),
        low: None,
        per: Dur(Duration::from_secs(60)),
        window: None,
        severity: Default::default(),
        deadband: 0.0,
    });
    let mut others: Vec<SensorConfig> = (0..3)
        .map(|i| {
            let mut o = sensor();
            o.id = format!("o{i}");
            o.stale_after = Some(Dur(Duration::from_secs(600)));
            o
        })
        .collect();
    others.push(s);
    let alarms = AlarmsConfig {
        flood_count: 3,
        ..Default::default()
    };
    let feed = |e: &mut Engine, from: i64, to: i64, out: &mut Vec<Alert>| {
        for t in from..to {
            let now = Timestamp(t * 10_000);
            // `t` ramps at 3 per minute (0.5 per 10 s); the others step into alarm one after another.
            let mut r = Reading::new(SensorId::from("t"), now, 40.0 + t as f64 * 0.5);
            e.evaluate(&mut r, out);
            if let Ok(i) = usize::try_from(t) {
                if i < 3 {
                    let mut r = Reading::new(SensorId::from(format!("o{i}").as_str()), now, 90.0);
                    e.evaluate(&mut r, out);
                }
            }
        }
    };
    let events = |out: &[Alert]| -> Vec<(i64, AlertType, AlertState)> {
        out.iter()
            .map(|a| (a.ts.0 / 1000, a.kind, a.state))
            .collect()
    };
    let mut straight = Engine::new("gw", "plant", &others, Timestamp(0));
    straight.set_alarms(&alarms);
    let mut want = Vec::new();
    feed(&mut straight, 0, 12, &mut want);
    let mut first = Engine::new("gw", "plant", &others, Timestamp(0));
    first.set_alarms(&alarms);
    let mut got = Vec::new();
    feed(&mut first, 0, 3, &mut got);
    let mut second = Engine::new("gw", "plant", &others, Timestamp(30_000));
    second.set_alarms(&alarms);
    second
        .restore(&first.snapshot(), Timestamp(30_000))
        .expect("restore");
    feed(&mut second, 3, 12, &mut got);
    assert_eq!(events(&got), events(&want));
    assert!(
        events(&want).contains(&(30, AlertType::RateOfChange, AlertState::Raised)),
        "{:?}",
        events(&want)
    );
    assert!(
        events(&want).contains(&(30, AlertType::AlarmFlood, AlertState::Raised)),
        "{:?}",
        events(&want)
    );
}

/// A derived sensor may read another: it is computed after it, in the same tick, from its fresh value; and a
/// derived sensor whose input is bad is bad too, never computed from the input's previous value.
#[test]
fn derived_sensors_follow_their_dependencies_and_never_use_old_values() {
    let mut volts = sensor();
    volts.id = "volts".into();
    volts.warning = None;
    volts.critical = None;
    let mut kw = sensor();
    kw.id = "kw".into();
    kw.source = SourceConfig::Derived;
    kw.formula = Some("volts * 10 / 1000".into());
    kw.warning = None;
    kw.critical = None;
    kw.valid = None;
    let mut w = kw.clone();
    w.id = "w".into();
    w.formula = Some("kw * 1000".into());
    // `w` comes first in the file: the engine still computes `kw` before it.
    let mut e = Engine::new("gw", "plant", &[w, kw, volts], Timestamp(0));
    let mut out = Vec::new();
    let mut r = Reading::new(SensorId::from("volts"), Timestamp(500), 230.0);
    e.evaluate(&mut r, &mut out);
    let made = e.derive(Timestamp(1000), &mut out);
    let got: Vec<(&str, f64)> = made.iter().map(|r| (&*r.sensor, r.value)).collect();
    assert_eq!(got, [("kw", 2.3), ("w", 2300.0)]);
    // volts reads NaN: kw and w are bad at the next computation, with a fault naming the input.
    let mut r = Reading::new(SensorId::from("volts"), Timestamp(1500), f64::NAN);
    e.evaluate(&mut r, &mut out);
    out.clear();
    let made = e.derive(Timestamp(2000), &mut out);
    assert!(made.iter().all(|r| r.quality != Quality::Good), "{made:?}");
    let fault = out
        .iter()
        .find(|a| a.sensor == "kw" && a.kind == AlertType::SensorFault)
        .expect("kw fault");
    assert!(
        fault
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("`volts`'s latest reading is bad")),
        "{fault:?}"
    );
}
