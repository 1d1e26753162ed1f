//! The modes on known sequences: exact messages, deadband and heartbeat, aggregates against values computed here.

use super::modes::{per_poll, OnChange, Windows};
use crate::config::TopicLayout;
use crate::model::SensorId;
use crate::model::{Quality, Reading, Timestamp};
use serde_json::json;

fn r(sensor: &str, ts: i64, v: f64) -> Reading {
    let mut x = Reading::new(SensorId::from(sensor), Timestamp(ts), v);
    if !v.is_finite() {
        x.quality = Quality::Invalid;
    }
    x
}

#[test]
fn raw_is_one_message_per_poll() {
    let rs = [r("a", 1000, 1.5), r("b", 1000, 2.0), r("a", 2000, f64::NAN)];
    let refs: Vec<&Reading> = rs.iter().collect();
    let m = per_poll("gw", TopicLayout::Device, &refs);
    assert_eq!(m.len(), 2);
    let v = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).expect("json");
    assert_eq!(
        v(&m[0].body),
        json!({"device": "gw", "ts": 1000, "readings": {"a": 1.5, "b": 2.0}})
    );
    assert_eq!(
        v(&m[1].body),
        json!({"device": "gw", "ts": 2000, "readings": {"a": null}, "quality": {"a": "invalid"}})
    );
    let s = per_poll("gw", TopicLayout::Sensor, &refs);
    assert_eq!(s.len(), 3);
    assert_eq!(s[1].sensor.as_deref(), Some("b"));
    assert_eq!(
        v(&s[1].body),
        json!({"device": "gw", "sensor": "b", "ts": 1000, "value": 2.0})
    );
    let mut h = m[0].clone();
    h.mark_historical();
    assert_eq!(v(&h.body)["historical"], json!(true));
}

#[test]
fn on_change_sends_moves_beyond_the_deadband_and_a_heartbeat() {
    let mut oc = OnChange {
        deadband: 0.5,
        max_interval_ms: 10_000,
        ..OnChange::default()
    };
    let vals = [10.0, 10.2, 10.6, 10.7, 11.2, 11.0];
    let sent: Vec<f64> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| r("a", i as i64 * 1000, *v))
        .filter(|x| oc.pass(x))
        .map(|x| x.value)
        .collect();
    assert_eq!(sent, vec![10.0, 10.6, 11.2]);
    // A constant value: only the heartbeat every 10 s.
    let mut oc = OnChange {
        max_interval_ms: 10_000,
        ..OnChange::default()
    };
    let at: Vec<i64> = (0..25)
        .map(|i| r("b", i * 1000, 5.0))
        .filter(|x| oc.pass(x))
        .map(|x| x.ts.0)
        .collect();
    assert_eq!(at, vec![0, 10_000, 20_000]);
    // Percent of the last value; a quality change is always sent.
    let mut oc = OnChange {
        percent: 10.0,
        max_interval_ms: i64::MAX,
        ..OnChange::default()
    };
    let got: Vec<bool> = [100.0, 109.0, 111.0, f64::NAN, f64::NAN, 111.0]
        .iter()
        .enumerate()
        .map(|(i, v)| oc.pass(&r("c", i as i64, *v)))
        .collect();
    assert_eq!(got, vec![true, false, true, true, false, true]);
}

#[test]
fn windows_match_statistics_computed_here_and_count_late_readings() {
    let mut w = Windows::new(10_000, 2_000, i64::MIN);
    let vals: Vec<(i64, f64)> = (0..25).map(|i| (i * 1000, (i * 7 % 11) as f64)).collect();
    for (ts, v) in &vals {
        w.add(&r("a", *ts, *v));
    }
    w.add(&r("a", 5_500, f64::NAN));
    // Newest is 24 s: window 0 (0–10 s) closes at 12 s, window 1 at 22 s; window 2 stays open.
    let closed = w.close_ready();
    assert_eq!(
        closed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![0, 1]
    );
    for (i, aggs) in &closed {
        let a = &aggs[&SensorId::from("a")];
        let xs: Vec<f64> = vals
            .iter()
            .filter(|(t, _)| t / 10_000 == *i)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(a.count, xs.len() as u64);
        assert_eq!(a.min, xs.iter().cloned().fold(f64::INFINITY, f64::min));
        assert_eq!(a.max, xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        assert!((a.sum / a.count as f64 - xs.iter().sum::<f64>() / xs.len() as f64).abs() < 1e-12);
        assert_eq!(a.first.map(|f| f.0), Some(i * 10_000));
        assert_eq!(a.last.map(|l| l.0), Some(i * 10_000 + 9_000));
        assert_eq!(a.bad, u64::from(*i == 0));
    }
    assert_eq!(w.closed_through, 1);
    // A reading for a published window is late: counted in the next message, not folded into a sent window.
    w.add(&r("a", 3_000, 1.0));
    w.add(&r("a", 33_000, 1.0));
    let closed = w.close_ready();
    let msgs = w.messages("gw", TopicLayout::Device, closed);
    assert_eq!(msgs.len(), 1);
    let b: serde_json::Value = serde_json::from_slice(&msgs[0].body).expect("json");
    assert_eq!(
        b["window"],
        json!({"from": 20_000, "to": 30_000, "seconds": 10.0})
    );
    assert_eq!(b["late"], json!(1));
    assert_eq!(b["sensors"]["a"]["count"], json!(5));
}

/// Exact values are JSON as they are (an integer digit for digit, text as a string), and text is sent by
/// exception when it changes.
#[test]
fn exact_values_are_json_as_they_are_and_text_goes_when_it_changes() {
    use crate::model::Exact;
    let big = Reading::exact(
        SensorId::from("count"),
        Timestamp(1000),
        Exact::UInt(u64::MAX),
    );
    let tag = Reading::exact(
        SensorId::from("tag"),
        Timestamp(1000),
        Exact::Text("PUMP \"7\"".into()),
    );
    let m = per_poll("gw", TopicLayout::Device, &[&big, &tag]);
    let body = String::from_utf8(m[0].body.clone()).expect("utf8");
    assert!(
        body.contains(r#""count":18446744073709551615"#) && body.contains(r#""tag":"PUMP \"7\"""#),
        "{body}"
    );
    let mut oc = OnChange {
        deadband: 1.0,
        max_interval_ms: 60_000,
        ..OnChange::default()
    };
    let t = |ts: i64, s: &str| {
        Reading::exact(SensorId::from("tag"), Timestamp(ts), Exact::Text(s.into()))
    };
    assert!(oc.pass(&t(0, "RUN")));
    assert!(
        !oc.pass(&t(1000, "RUN")),
        "unchanged text is not sent again"
    );
    assert!(oc.pass(&t(2000, "STOP")), "changed text is sent");
}
