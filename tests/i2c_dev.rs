//! I2C at the kernel boundary: watchpost's real Linux path (linux-embedded-hal → i2cdev → open(2) and the
//! I2C_SLAVE/I2C_RDWR ioctls) against chip models written from the datasheets (tests/support/i2c_chips.py: register
//! maps, reset values, conversion times, status bits), behind an LD_PRELOADed i2c-dev (tests/support/i2c_shim.c).
//! The models log every conversion's truth; the tests compare what watchpost read and stored with it.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

struct Bench {
    _dir: tempfile::TempDir,
    root: PathBuf,
    shim: PathBuf,
    socket: PathBuf,
    dev: PathBuf,
    truth: PathBuf,
    _models: Proc,
}

impl Bench {
    fn new(model_args: &[&str]) -> Bench {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_path_buf();
        let shim = root.join("i2c_shim.so");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/i2c_shim.c");
        let cc = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
            .arg(&shim)
            .arg(&src)
            .args(["-ldl", "-lpthread"])
            .output()
            .expect("cc (the test builds its i2c-dev shim with the system C compiler)");
        assert!(
            cc.status.success(),
            "{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let socket = root.join("chips.sock");
        let truth = root.join("truth.jsonl");
        let log = root.join("chips.log");
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/i2c_chips.py"))
            .arg("--socket")
            .arg(&socket)
            .arg("--truth")
            .arg(&truth)
            .args(model_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("python3");
        let models = Proc { child, log };
        wait_for(Duration::from_secs(10), "the chip models listening", || {
            std::os::unix::net::UnixStream::connect(&socket)
                .ok()
                .map(|_| ())
        });
        // A real file at the device's path: watchpost checks that the device exists before opening it.
        let dev = root.join("i2c-7");
        std::fs::write(&dev, b"").expect("dev");
        Bench {
            _dir: dir,
            root,
            shim,
            socket,
            dev,
            truth,
            _models: models,
        }
    }

    fn config(&self, sensors: &str) -> PathBuf {
        let cfg = self.root.join("w.toml");
        std::fs::write(
            &cfg,
            format!(
                "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n[buffer]\nflush_interval = \"100ms\"\n\
                 [[i2c]]\nname = \"bus1\"\ndevice = \"{}\"\n{sensors}",
                self.root.join("data").display(),
                self.dev.display()
            ),
        )
        .expect("config");
        cfg
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("LD_PRELOAD", &self.shim)
            .env("WATCHPOST_I2C_SHIM_DEV", &self.dev)
            .env("WATCHPOST_I2C_SHIM_SOCKET", &self.socket);
        c
    }

    fn truth(&self, chip: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.truth)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["chip"] == chip)
            .collect()
    }
}

const SENSORS: &str = r#"
[[sensor]]
id = "room_temp"
source = { i2c = "bus1", chip = "bme280", address = 0x76, quantity = "temperature", oversampling = 16 }

[[sensor]]
id = "room_pressure"
source = { i2c = "bus1", chip = "bme280", address = 0x76, quantity = "pressure", oversampling = 16 }

[[sensor]]
id = "room_rh"
source = { i2c = "bus1", chip = "bme280", address = 0x76, quantity = "humidity", oversampling = 16 }

[[sensor]]
id = "cabinet_temp"
source = { i2c = "bus1", chip = "sht4x", address = 0x44, quantity = "temperature" }

[[sensor]]
id = "plate_temp"
source = { i2c = "bus1", chip = "tmp117", address = 0x48 }

[[sensor]]
id = "load_current"
source = { i2c = "bus1", chip = "ina219", address = 0x40, quantity = "current", shunt_ohms = 0.1, max_current = 3.2 }

[[sensor]]
id = "line_pressure"
source = { i2c = "bus1", chip = "ads1115", address = 0x49, channel = "a0", quantity = "current", shunt_ohms = 165.0, from = [4.0, 20.0], to = [0.0, 10.0] }
unit = "bar"
"#;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// The first read after power-up of every chip, through i2c-dev, at the datasheets' slow end: each value is the
/// conversion the chip made for it — never a reset value, a previous conversion or a zero before the first one.
#[test]
fn first_reads_through_i2c_dev_are_the_chips_conversions() {
    let b = Bench::new(&["--slow"]);
    let cfg = b.config(SENSORS);
    let out = b
        .command(&["read", "--json", "--config"])
        .arg(&cfg)
        .output()
        .expect("read");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let got = |id: &str| v[id]["value"].as_f64().unwrap_or(f64::NAN);
    // BME280 at ×16 oversampling and the maximum conversion time (112.8 ms): the first forced conversion's values
    // (Bosch's compensation in double precision; the driver's integer one agrees within its resolution).
    let bme = b.truth("bme280");
    let first = bme.first().expect("a BME280 conversion");
    assert!(
        close(
            got("room_temp"),
            first["temperature"].as_f64().unwrap_or(0.0),
            0.01
        ),
        "{v}\n{bme:?}"
    );
    assert!(
        close(
            got("room_pressure"),
            first["pressure"].as_f64().unwrap_or(0.0),
            0.02
        ),
        "{v}"
    );
    assert!(
        close(
            got("room_rh"),
            first["humidity"].as_f64().unwrap_or(0.0),
            0.1
        ),
        "{v}"
    );
    // SHT4x: the measurement it finished (its read header is not acknowledged while it measures).
    let sht = b.truth("sht4x");
    assert!(
        close(
            got("cabinet_temp"),
            sht[0]["temperature"].as_f64().unwrap_or(0.0),
            0.01
        ),
        "{v}"
    );
    // TMP117: not the −256 °C reset value of the temperature register before its first conversion (125 ms).
    assert!(close(got("plate_temp"), 21.5, 0.01), "{v}");
    // INA219: 32.5 mV over 0.1 Ω is 0.325 A — not the 0 A of the current register before a conversion with the
    // calibration in place.
    assert!(close(got("load_current"), 0.325, 0.002), "{v}");
    // ADS1115: 1.98 V over 165 Ω is 12 mA, mapped 4–20 mA → 0–10 bar: 5 bar (single shot, OS polled).
    assert!(close(got("line_pressure"), 5.0, 0.01), "{v}");
}

/// The daemon on the same path: every stored BME280 reading is one of the chip's own conversions, in order (the
/// model's conversions step between 24.9 and 25.2 °C; an IIR filter left on would store values lagging them), and
/// a NACKing address (a missing chip) is a fault of its sensor only.
#[test]
fn the_daemon_stores_each_conversion_and_survives_a_missing_chip() {
    let b = Bench::new(&["--slow", "--absent", "0x44"]);
    let sensors: String = SENSORS
        .lines()
        .map(|l| {
            if l.starts_with("source =") {
                format!("{l}\ninterval = \"500ms\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let cfg = b.config(&sensors);
    let data = b.root.join("data");
    let log = b.root.join("daemon.log");
    let child = b
        .command(&["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("daemon");
    let mut d = Proc { child, log };
    let stored = |sensor: &str| stored_values(&data, sensor);
    let temps = wait_for(T, "four BME280 readings", || {
        assert!(
            d.child.try_wait().ok().flatten().is_none(),
            "exited: {}",
            d.log()
        );
        let t = stored("room_temp");
        (t.len() >= 4).then_some(t)
    });
    let truth: Vec<f64> = b
        .truth("bme280")
        .iter()
        .filter_map(|t| t["temperature"].as_f64())
        .collect();
    for (i, t) in temps.iter().enumerate() {
        assert!(
            close(*t, truth[i], 0.01),
            "reading {i} is {t}, the chip's conversion {i} was {}: {temps:?} vs {truth:?}",
            truth[i]
        );
    }
    // The missing SHT4x is a fault (NaN, SENSOR_FAULT), its neighbours read.
    let sht = stored("cabinet_temp");
    assert!(!sht.is_empty() && sht.iter().all(|v| v.is_nan()), "{sht:?}");
    assert!(stored("plate_temp").iter().all(|v| close(*v, 21.5, 0.01)));
    let log = d.log();
    assert!(
        log.contains("sensor=cabinet_temp") && log.contains("0x44"),
        "{log}"
    );
    d.signal(libc::SIGTERM);
}

/// A BME280 browning out mid-run (its registers back to their power-on values: sleep mode, measurements skipped,
/// data registers 0x80000) and then the bus held by it (a transfer that never completes): no stored reading is
/// anything but one of the chip's conversions, the hang is reported as a wedged bus, and readings resume when
/// the bus frees.
#[test]
fn a_brownout_and_a_held_bus_store_nothing_untrue() {
    let ctl = tempfile::tempdir().expect("ctl");
    let ctl_arg = ctl.path().to_string_lossy().into_owned();
    let b = Bench::new(&["--ctl", &ctl_arg]);
    let cfg = b.config(
        r#"
[[sensor]]
id = "room_temp"
source = { i2c = "bus1", chip = "bme280", address = 0x76, quantity = "temperature" }
interval = "200ms"

[[sensor]]
id = "room_pressure"
source = { i2c = "bus1", chip = "bme280", address = 0x76, quantity = "pressure" }
interval = "200ms"
"#,
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .expect("cfg")
            .replace("device = ", "timeout = \"300ms\"\ndevice = "),
    )
    .expect("cfg");
    let data = b.root.join("data");
    let log = b.root.join("daemon.log");
    let child = b
        .command(&["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("daemon");
    let d = Proc { child, log };
    let stored = |sensor: &str| stored_values(&data, sensor);
    wait_for(T, "readings", || {
        (stored("room_temp").len() >= 3).then_some(())
    });
    std::fs::write(ctl.path().join("brownout-76"), b"").expect("brownout");
    wait_for(T, "the brownout", || {
        (!b.truth("brownout").is_empty()).then_some(())
    });
    let n = stored("room_temp").len();
    wait_for(T, "readings after the brownout", || {
        (stored("room_temp").len() >= n + 3).then_some(())
    });
    // The bus held low by the chip.
    std::fs::write(ctl.path().join("hang-76"), b"").expect("hang");
    wait_for(T, "the wedge reported", || {
        d.log().contains("the bus looks wedged").then_some(())
    });
    std::fs::remove_file(ctl.path().join("hang-76")).expect("free");
    let n = stored("room_temp").len();
    wait_for(T, "readings after the bus frees", || {
        (stored("room_temp").len() >= n + 3).then_some(())
    });
    d.signal(libc::SIGTERM);
    // Every stored temperature and pressure is one of the chip's conversions (or a fault, NaN) — never a value
    // compensated from reset registers or skipped measurements.
    let truth = b.truth("bme280");
    let is_true = |v: f64, key: &str, tol: f64| {
        v.is_nan()
            || truth
                .iter()
                .any(|t| t[key].as_f64().is_some_and(|x| close(v, x, tol)))
    };
    for v in stored("room_temp") {
        assert!(
            is_true(v, "temperature", 0.01),
            "{v} °C is no conversion of the chip"
        );
    }
    for v in stored("room_pressure") {
        assert!(
            is_true(v, "pressure", 0.02),
            "{v} hPa is no conversion of the chip"
        );
    }
    assert!(
        d.log().contains("lost its configuration"),
        "the brownout was noticed: {}",
        d.log()
    );
}
