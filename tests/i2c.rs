//! I2C through the whole daemon path on a simulated bus (register-map models of the chips: driver, bus thread,
//! validation, alarms, store), with a device that NACKs on the same bus as a healthy one; `watchpost read` on the
//! same config; and the Linux i2c-dev wiring as far as it goes without a bus.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn config(data: &Path, device: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[[i2c]]
name = "bus1"
device = "{device}"
{absent}

[[sensor]]
id = "room_temp"
source = {{ i2c = "bus1", chip = "bme280", address = 0x76, quantity = "temperature" }}
interval = "100ms"
critical = {{ high = 25.0 }}

[[sensor]]
id = "room_pressure"
source = {{ i2c = "bus1", chip = "bme280", address = 0x76, quantity = "pressure" }}
interval = "100ms"

[[sensor]]
id = "line_pressure"
source = {{ i2c = "bus1", chip = "ads1115", address = 0x48, channel = "a0", quantity = "current", shunt_ohms = 165.0, from = [4.0, 20.0], to = [0.0, 10.0] }}
interval = "100ms"
unit = "bar"

[[sensor]]
id = "cabinet_rh"
source = {{ i2c = "bus1", chip = "sht4x", address = 0x45, quantity = "humidity" }}
interval = "100ms"
"#,
        data.display(),
        absent = if device == "simulated" {
            "absent = [0x45]"
        } else {
            ""
        }
    )
}

/// The newest finite stored value of `sensor`.
fn latest(data: &Path, sensor: &str) -> Option<f64> {
    stored_values(data, sensor)
        .into_iter()
        .rev()
        .find(|v| v.is_finite())
}

#[test]
fn simulated_bus_runs_the_daemon_path_with_a_nacking_neighbour() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, "simulated")).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    // Bosch's worked example (the simulated BME280 carries its calibration and raw values; its first conversion
    // is the example's exactly, later ones dither the temperature by a few counts).
    let t = wait_for(T, "room_temp readings", || {
        stored_values(&data, "room_temp").first().copied()
    });
    assert!((t - 25.08).abs() < 0.01, "{t}");
    let p = wait_for(T, "room_pressure readings", || {
        stored_values(&data, "room_pressure").first().copied()
    });
    assert!((p - 1006.53).abs() < 0.01, "{p}");
    // 12 mA on a 4–20 mA loop → 5 bar.
    let b = wait_for(T, "line_pressure readings", || {
        latest(&data, "line_pressure")
    });
    assert!((b - 5.0).abs() < 0.01, "{b}");
    let events = wait_for(T, "a threshold alarm and a sensor fault", || {
        let ev = with_store(&data, Vec::new(), |s| s.all_events());
        let alarm = ev.iter().any(|(_, a)| {
            a.sensor == "room_temp" && a.severity == watchpost::model::Severity::Critical
        });
        let fault = ev.iter().any(|(_, a)| {
            a.sensor == "cabinet_rh" && a.kind == watchpost::model::AlertType::SensorFault
        });
        (alarm && fault).then_some(ev)
    });
    // The healthy sensors on the same bus keep their rate while the neighbour NACKs.
    assert!(!events.iter().any(
        |(_, a)| a.sensor != "cabinet_rh" && a.kind == watchpost::model::AlertType::SensorFault
    ));
    let n0 = stored_values(&data, "room_temp").len();
    wait_for(T, "more room_temp readings", || {
        (stored_values(&data, "room_temp").len() >= n0 + 10).then_some(())
    });
    let log = d.log();
    assert!(
        log.contains("I2C read failed") && log.contains("0x45") && log.contains("NACK"),
        "{log}"
    );
    assert_eq!(
        log.matches("I2C read failed").count(),
        1,
        "the same error is logged once, not per poll"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));
}

#[test]
fn read_prints_values_and_raw_bytes_and_names_the_nack() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&dir.path().join("data"), "simulated")).expect("w");
    let (code, out, _) = run_cli(&["read", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 2, "one sensor fails: {out}");
    let line = |id: &str| {
        out.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("room_pressure").contains("1006.53"), "{out}");
    assert!(
        line("room_temp").contains("raw [") && line("room_temp").contains("bme280 0x76"),
        "{out}"
    );
    assert!(line("line_pressure").contains("5 bar"), "{out}");
    assert!(
        line("cabinet_rh").contains("ERROR no acknowledge (NACK)"),
        "{out}"
    );
}

#[test]
fn a_missing_bus_device_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&dir.path().join("data"), "/dev/i2c-97")).expect("w");
    let (code, _, err) = run_cli(&["read", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(err.contains("/dev/i2c-97 does not exist"), "{err}");
    let (code, _, err) = run_cli(&["scan", "i2c", "--bus", "/dev/i2c-97"]);
    assert_eq!(code, 2);
    assert!(err.contains("/dev/i2c-97 does not exist"), "{err}");
    // The daemon keeps running and reports the bus.
    let data = dir.path().join("data");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(T, "the bus error in the log", || {
        d.log()
            .contains("cannot open the I2C bus: /dev/i2c-97 does not exist")
            .then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));
    let _ = data;
}

/// A gateway with one simulated bus `bus1` and these sensors on it.
fn simulated_bus(data: &Path, sensors: &str) -> String {
    format!(
        "[gateway]\nid = \"gw1\"\ndata_dir = \"{}\"\n\n[buffer]\nflush_interval = \"100ms\"\n\n[[i2c]]\nname = \"bus1\"\ndevice = \"simulated\"\n{sensors}",
        data.display()
    )
}

/// A fault is logged once until it changes (the README's promise), also when other channels of the same device
/// read fine in between: a full-scale ADS1115 channel beside a healthy one logged on every read before (34 WARN
/// lines in 34 s); the healthy channel keeps its readings.
#[test]
fn a_fault_is_logged_once_while_the_neighbouring_channel_reads() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    // The simulated ADS1115 sees 1.98 V on a0 and 3.3 V on a2: with the ±2.048 V range a2 is at full scale.
    std::fs::write(
        &cfg,
        simulated_bus(
            &data,
            r#"
[[sensor]]
id = "fine"
source = { i2c = "bus1", chip = "ads1115", address = 0x48, channel = "a0", quantity = "voltage", range = 2.048 }
interval = "100ms"

[[sensor]]
id = "clipped"
source = { i2c = "bus1", chip = "ads1115", address = 0x48, channel = "a2", quantity = "voltage", range = 2.048 }
interval = "100ms"
"#,
        ),
    )
    .expect("write");
    let d = start_daemon(&cfg, dir.path());
    wait_for(T, "30 readings of the healthy channel", || {
        (stored_values(&data, "fine").len() >= 30).then_some(())
    });
    let log = d.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("I2C read failed") && l.contains("sensor=clipped"))
        .count();
    assert_eq!(warned, 1, "{log}");
    assert!(stored_values(&data, "fine")
        .iter()
        .all(|v| (v - 1.98).abs() < 0.01));
}

/// A reading is stamped when it was measured: after a transfer that held the bus for a second, the rest of the
/// cycle carries the time it was read, not the cycle's start (before, all were stamped with the start, and such
/// backdated readings cleared SENSOR_OFFLINE before the alarm's own start).
#[test]
fn readings_after_a_slow_transfer_carry_the_time_they_were_measured() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        simulated_bus(
            &data,
            r#"
[[sensor]]
id = "first"
source = { i2c = "bus1", chip = "tmp117", address = 0x48 }
interval = "3s"

[[sensor]]
id = "slow"
source = { i2c = "bus1", chip = "register", address = 0x20, register = 0x10, length = 2, trigger = [0x01, 0x80], wait = "1s" }
interval = "3s"

[[sensor]]
id = "after"
source = { i2c = "bus1", chip = "sht4x", address = 0x44, quantity = "temperature" }
interval = "3s"
"#,
        ),
    )
    .expect("write");
    let _d = start_daemon(&cfg, dir.path());
    let ts = |sensor: &str| -> Vec<i64> {
        let mut v = Vec::new();
        with_store(&data, 0, |s| {
            s.export(watchpost::model::Timestamp(i64::MIN), Some(sensor), |r| {
                v.push(r.ts.0)
            })
        });
        v
    };
    let (first, after) = wait_for(T, "one cycle of both", || {
        let (f, a) = (ts("first"), ts("after"));
        (!f.is_empty() && !a.is_empty()).then(|| (f[0], a[0]))
    });
    assert!(
        after - first >= 900,
        "the reading after the 1 s transfer is stamped {} ms after the cycle's first",
        after - first
    );
}
