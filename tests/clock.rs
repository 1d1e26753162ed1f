//! Wall-clock steps under libfaketime (the monotonic clock left alone, as an NTP step does): a 1 h forward step
//! neither fires a pending alarm early nor raises SENSOR_OFFLINE, and a 30 s backward step never gives a sensor the
//! same or an earlier timestamp in the store.
mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use watchpost::model::{AlertState, AlertType};

fn libfaketime() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    if p.exists() {
        return Some(p);
    }
    let hint = "libfaketime not found (apt-get install faketime; .ci/run installs it)";
    if std::env::var_os("CI").is_some() && cfg!(target_arch = "x86_64") {
        panic!("{hint}");
    }
    eprintln!("skipped: {hint}");
    None
}

#[test]
fn wall_clock_steps_neither_fire_nor_delay_alarms_and_timestamps_keep_increasing() {
    let Some(lib) = libfaketime() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("offset");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
id = "gw1"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[[sensor]]
id = "hot"
source = {{ simulated = "constant", offset = 90.0 }}
interval = "100ms"
warning = {{ high = 80.0 }}
delay = "4s"
stale_after = "10s"
"#,
            data.display()
        ),
    )
    .expect("cfg");
    let log = dir.path().join("wp.log");
    let child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let mut d = Proc { child, log };
    wait_for(Duration::from_secs(10), "first reading", || {
        d.log().contains("First reading").then_some(())
    });
    let started = Instant::now();
    // One hour forward while the 4 s on-delay is pending.
    std::fs::write(&offset, "+3600\n").expect("step");
    wait_for(Duration::from_secs(10), "the step seen", || {
        d.log().contains("The wall clock stepped").then_some(())
    });
    let raised = wait_for(Duration::from_secs(15), "the alarm", || {
        let ev = with_store(&data, Vec::new(), |s| s.all_events());
        ev.into_iter()
            .find(|(_, a)| a.kind == AlertType::Alert && a.state == AlertState::Raised)
            .map(|_| started.elapsed())
    });
    assert!(
        raised >= Duration::from_secs(3),
        "the on-delay held through the step: raised after {raised:?}"
    );
    // Thirty seconds back.
    std::fs::write(&offset, "+3570\n").expect("step back");
    std::thread::sleep(Duration::from_secs(2));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let events = with_store(&data, Vec::new(), |s| s.all_events());
    assert!(
        !events
            .iter()
            .any(|(_, a)| a.kind == AlertType::SensorOffline),
        "no SENSOR_OFFLINE from a clock step: {events:?}"
    );
    let mut ts = Vec::new();
    with_store(&data, 0, |s| {
        s.export(watchpost::model::Timestamp(i64::MIN), None, |r| {
            ts.push(r.ts.0)
        })
    });
    assert!(ts.len() > 50, "{}", ts.len());
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing timestamps for one sensor across both steps"
    );
    assert!(
        d.log().matches("The wall clock stepped").count() >= 2,
        "{}",
        d.log()
    );
}
