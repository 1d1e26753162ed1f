//! MQTT telemetry against a real mosquitto: each mode's messages from scripted sensors, aggregates checked against
//! the stored readings, and an outage with a kill -9 after which every stored reading arrives, marked historical.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn config(data: &Path, port: u16, telemetry: &str, sensors: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[mqtt.telemetry]
{telemetry}

{sensors}
"#,
        data.display()
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("telemetry is JSON")
}

/// Every stored reading as (sensor, ts) → value.
fn stored(data: &Path) -> BTreeMap<(String, i64), f64> {
    with_store(data, BTreeMap::new(), |s| {
        let mut m = BTreeMap::new();
        s.export(watchpost::model::Timestamp(0), None, |r| {
            m.insert((r.sensor.to_string(), r.ts.0), r.value);
        })?;
        Ok(m)
    })
}

/// (sensor, ts) → value of every reading received in device-layout raw messages, and the historical flags.
type ByReading<T> = BTreeMap<(String, i64), T>;

fn received(sub: &Sub) -> (ByReading<f64>, ByReading<bool>) {
    let mut vals = BTreeMap::new();
    let mut hist = BTreeMap::new();
    for (p, _) in sub.on("/telemetry") {
        let v = json(&p);
        let ts = v["ts"].as_i64().expect("ts");
        for (k, x) in v["readings"].as_object().expect("readings") {
            vals.insert((k.clone(), ts), x.as_f64().unwrap_or(f64::NAN));
            hist.insert((k.clone(), ts), v["historical"] == true);
        }
    }
    (vals, hist)
}

#[test]
fn raw_sends_each_poll_as_one_message_with_exact_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "cloud", true, &["watchpost/gw1/telemetry"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "script"
source = { simulated = "script", values = [1.0, 2.0, 3.0, 4.0], repeat = false }
interval = "50ms"

[[i2c]]
name = "b"
device = "simulated"

[[sensor]]
id = "t"
source = { i2c = "b", chip = "bme280", address = 0x76, quantity = "temperature" }
interval = "200ms"

[[sensor]]
id = "p"
source = { i2c = "b", chip = "bme280", address = 0x76, quantity = "pressure" }
interval = "200ms"
"#;
    std::fs::write(&cfg, config(&data, broker.port, "mode = \"raw\"", sensors)).expect("w");
    let _d = start_daemon(&cfg, dir.path());
    let msgs = wait_for(T, "the script and three BME280 polls", || {
        let m: Vec<serde_json::Value> = sub.on("/telemetry").iter().map(|(p, _)| json(p)).collect();
        let polls = m
            .iter()
            .filter(|v| v["readings"].get("t").is_some())
            .count();
        let script = m
            .iter()
            .filter(|v| v["readings"].get("script").is_some())
            .count();
        (polls >= 3 && script >= 4).then_some(m)
    });
    let script: Vec<f64> = msgs
        .iter()
        .filter_map(|v| v["readings"]["script"].as_f64())
        .collect();
    assert_eq!(
        script,
        vec![1.0, 2.0, 3.0, 4.0],
        "every scripted value once, in order"
    );
    for v in msgs.iter().filter(|v| v["readings"].get("t").is_some()) {
        // One poll of the BME280: both quantities in one message with one sample time.
        assert_eq!(v["device"], "gw1");
        assert!(v["ts"].as_i64().is_some());
        // (Another sensor sampled in the same millisecond may share the message: messages group by sample time.)
        let o = v["readings"].as_object().expect("readings");
        assert!(o.contains_key("t") && o.contains_key("p"), "{v}");
        assert!(
            (v["readings"]["t"].as_f64().unwrap_or(0.0) - 25.08).abs() < 0.05,
            "{v}"
        );
        assert!(
            (v["readings"]["p"].as_f64().unwrap_or(0.0) - 1006.53).abs() < 0.05,
            "{v}"
        );
        assert!(
            v.get("historical").is_none(),
            "live data is not historical: {v}"
        );
    }
}

#[test]
fn on_change_sends_only_moves_beyond_the_deadband() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "cloud", true, &["watchpost/gw1/telemetry/#"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "level"
source = { simulated = "script", values = [10.0, 10.2, 10.6, 10.7, 11.2, 11.0, 9.0], repeat = false }
interval = "50ms"
"#;
    let t = "mode = \"on_change\"\ntopic = \"sensor\"\ndeadband = 0.5\nmax_interval = \"1h\"";
    std::fs::write(&cfg, config(&data, broker.port, t, sensors)).expect("w");
    let _d = start_daemon(&cfg, dir.path());
    wait_for(T, "all seven readings stored", || {
        (stored(&data).len() >= 7).then_some(())
    });
    let got = wait_for(T, "the changes", || {
        let v: Vec<f64> = sub
            .on("/telemetry/level")
            .iter()
            .filter_map(|(p, _)| json(p)["value"].as_f64())
            .collect();
        (v.len() >= 4).then_some(v)
    });
    // Wait until the sink has acknowledged everything stored, then the list is final.
    wait_for(T, "the telemetry cursor at the end", || {
        let (c, last) = with_store(&data, (0, 0), |s| {
            Ok((
                s.cursor("telemetry", watchpost::store::Stream::Readings)?,
                s.newest()?.0,
            ))
        });
        (c == last && c > 0).then_some(())
    });
    let got2: Vec<f64> = sub
        .on("/telemetry/level")
        .iter()
        .filter_map(|(p, _)| json(p)["value"].as_f64())
        .collect();
    assert_eq!(got2, vec![10.0, 10.6, 11.2, 9.0], "{got:?}");
}

#[test]
fn aggregates_match_the_stored_readings() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "cloud", true, &["watchpost/gw1/telemetry"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "w"
source = { simulated = "random_walk", offset = 50.0, step = 3.0, min = 0.0, max = 100.0, seed = 7 }
interval = "50ms"
"#;
    std::fs::write(
        &cfg,
        config(
            &data,
            broker.port,
            "mode = \"aggregate\"\nwindow = \"1s\"",
            sensors,
        ),
    )
    .expect("w");
    let _d = start_daemon(&cfg, dir.path());
    let msgs = wait_for(T, "three windows", || {
        let m: Vec<serde_json::Value> = sub.on("/telemetry").iter().map(|(p, _)| json(p)).collect();
        (m.len() >= 3).then_some(m)
    });
    let all = stored(&data);
    for m in &msgs {
        let from = m["window"]["from"].as_i64().expect("from");
        let to = m["window"]["to"].as_i64().expect("to");
        assert_eq!(to - from, 1000);
        let xs: Vec<f64> = all
            .iter()
            .filter(|((s, ts), _)| s == "w" && *ts >= from && *ts < to)
            .map(|(_, v)| *v)
            .collect();
        let a = &m["sensors"]["w"];
        assert_eq!(a["count"].as_u64(), Some(xs.len() as u64), "{m}");
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(
            (a["mean"].as_f64().unwrap_or(f64::NAN) - mean).abs() < 1e-9,
            "{m}"
        );
        // serde_json's parser (without float_roundtrip) may miss the last bit of what ryu wrote: compare closely.
        let near = |got: Option<f64>, want: Option<f64>| match (got, want) {
            (Some(g), Some(w)) => (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            _ => false,
        };
        assert!(
            near(a["min"].as_f64(), xs.iter().cloned().reduce(f64::min)),
            "{m}"
        );
        assert!(
            near(a["max"].as_f64(), xs.iter().cloned().reduce(f64::max)),
            "{m}"
        );
        assert!(near(a["first"].as_f64(), xs.first().copied()), "{m}");
        assert!(near(a["last"].as_f64(), xs.last().copied()), "{m}");
    }
    let windows: BTreeSet<i64> = msgs
        .iter()
        .filter_map(|m| m["window"]["from"].as_i64())
        .collect();
    assert_eq!(windows.len(), msgs.len(), "each window once");
}

#[test]
fn an_outage_with_kill_9_replays_every_reading_marked_historical() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(dir.path(), "max_queued_messages 0\n", true)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "cloud", false, &["watchpost/gw1/telemetry"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "r"
source = { simulated = "ramp", offset = 0.0, step = 1.0 }
interval = "50ms"
"#;
    std::fs::write(
        &cfg,
        config(
            &data,
            broker.port,
            "mode = \"raw\"\nhistorical_after = \"1s\"",
            sensors,
        ),
    )
    .expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(T, "live telemetry", || {
        (received(&sub).0.len() >= 5).then_some(())
    });
    broker.stop();
    let n0 = stored(&data).len();
    wait_for(T, "readings during the outage", || {
        (stored(&data).len() >= n0 + 30).then_some(())
    });
    d.signal(libc::SIGKILL);
    d.wait_exit(T);
    let _d = start_daemon(&cfg, dir.path());
    let n1 = stored(&data).len();
    wait_for(T, "more readings", || {
        (stored(&data).len() >= n1 + 10).then_some(())
    });
    broker.restart();
    let want = stored(&data);
    wait_for(
        Duration::from_secs(60),
        "every stored reading delivered",
        || {
            let (got, _) = received(&sub);
            want.keys().all(|k| got.contains_key(k)).then_some(())
        },
    );
    let (got, hist) = received(&sub);
    for (k, v) in &want {
        assert_eq!(
            got.get(k),
            Some(v),
            "{k:?} arrives with its value and original timestamp"
        );
    }
    // The readings taken while the broker was away arrive late and say so.
    let outage: Vec<&(String, i64)> = want.keys().skip(n0 + 5).take(20).collect();
    assert!(
        outage.iter().all(|k| hist.get(*k) == Some(&true)),
        "replayed readings are marked historical"
    );
}

#[test]
fn aggregate_windows_survive_kill_9_whole_never_partial() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(dir.path(), "max_queued_messages 0\n", true)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "cloud", false, &["watchpost/gw1/telemetry"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "r"
source = { simulated = "ramp", offset = 0.0, step = 1.0 }
interval = "50ms"
"#;
    std::fs::write(
        &cfg,
        config(
            &data,
            broker.port,
            "mode = \"aggregate\"\nwindow = \"1s\"",
            sensors,
        ),
    )
    .expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    for round in 0..4 {
        let n = sub.on("/telemetry").len();
        wait_for(T, "a window", || {
            (sub.on("/telemetry").len() > n).then_some(())
        });
        if round == 1 {
            broker.stop();
            let s = stored(&data).len();
            wait_for(T, "readings during the outage", || {
                (stored(&data).len() >= s + 40).then_some(())
            });
        }
        // Kill at a random point inside a window.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..1000)));
        d.signal(libc::SIGKILL);
        d.wait_exit(T);
        d = start_daemon(&cfg, dir.path());
        if round == 1 {
            broker.restart();
        }
    }
    let want = stored(&data);
    let windows = |m: &[serde_json::Value]| -> BTreeMap<i64, Vec<serde_json::Value>> {
        let mut w: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
        for v in m {
            w.entry(v["window"]["from"].as_i64().expect("from"))
                .or_default()
                .push(v["sensors"]["r"].clone());
        }
        w
    };
    // Every window whose readings are all stored and that has ended arrives.
    let first = want
        .keys()
        .next()
        .map(|k| k.1 / 1000 * 1000)
        .expect("readings");
    let last_full = want
        .keys()
        .last()
        .map(|k| k.1 / 1000 * 1000 - 3000)
        .expect("readings");
    let got = wait_for(Duration::from_secs(60), "every window", || {
        let m: Vec<serde_json::Value> = sub.on("/telemetry").iter().map(|(p, _)| json(p)).collect();
        let w = windows(&m);
        ((first + 1000..=last_full)
            .step_by(1000)
            .all(|f| w.contains_key(&f)))
        .then_some(w)
    });
    for (from, copies) in &got {
        let n = want
            .iter()
            .filter(|((_, ts), _)| *ts >= *from && *ts < from + 1000)
            .count() as u64;
        for c in copies {
            // At least once: a window may arrive twice after a kill, but always whole and identical.
            assert_eq!(c["count"].as_u64(), Some(n), "window {from}: {copies:?}");
            assert_eq!(c, &copies[0], "window {from}: copies differ");
        }
    }
}
