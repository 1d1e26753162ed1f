//! Wall-clock steps under libfaketime (the monotonic clock left alone, as an NTP step does): a 1 h forward step
//! neither fires a pending alarm early nor raises SENSOR_OFFLINE, and a 30 s backward step never gives a sensor the
//! same or an earlier timestamp in the store; right after a 30 s backward step a pending 6 s on-delay still lasts
//! its time and readings keep their spacing (not squeezed 1 ms apart).
mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use watchpost::model::{AlertState, AlertType};

/// libfaketime's multi-threaded library wherever Debian's faketime package put it for this architecture.
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib").ok().and_then(|d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
            .find(|p| p.exists())
    });
    found.expect("libfaketime not found under /usr/lib/*/faketime (apt-get install faketime; .ci/run installs it)")
}

fn start(cfg: &std::path::Path, offset: &std::path::Path, log: PathBuf) -> Proc {
    let child = Command::new(bin())
        .args(["run", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    Proc { child, log }
}

fn config(data: &std::path::Path, delay: &str) -> String {
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
delay = "{delay}"
stale_after = "10s"
"#,
        data.display()
    )
}

fn stored_ts(data: &std::path::Path) -> Vec<i64> {
    let mut ts = Vec::new();
    with_store(data, 0, |s| {
        s.export(watchpost::model::Timestamp(i64::MIN), None, |r| {
            ts.push(r.ts.0)
        })
    });
    ts
}

#[test]
fn wall_clock_steps_neither_fire_nor_delay_alarms_and_timestamps_keep_increasing() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("offset");
    std::fs::write(&cfg, config(&data, "4s")).expect("cfg");
    let mut d = start(&cfg, &offset, dir.path().join("wp.log"));
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
    let ts = stored_ts(&data);
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

/// A step back by 30 s with an on-delay pending: the delay is not shortened (it fired at once before: the timers
/// moved back while readings were squeezed 1 ms after the last stored one), and the readings after the step keep
/// their order and their ~100 ms spacing.
#[test]
fn a_backward_step_neither_shortens_a_delay_nor_squeezes_timestamps() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("offset");
    std::fs::write(&cfg, config(&data, "6s")).expect("cfg");
    let mut d = start(&cfg, &offset, dir.path().join("wp.log"));
    wait_for(Duration::from_secs(10), "first reading", || {
        d.log().contains("First reading").then_some(())
    });
    let started = Instant::now();
    std::fs::write(&offset, "-30\n").expect("step back");
    wait_for(Duration::from_secs(10), "the step seen", || {
        d.log()
            .contains("The wall clock stepped back")
            .then_some(())
    });
    let raised = wait_for(Duration::from_secs(20), "the alarm", || {
        let ev = with_store(&data, Vec::new(), |s| s.all_events());
        ev.into_iter()
            .find(|(_, a)| a.kind == AlertType::Alert && a.state == AlertState::Raised)
            .map(|_| started.elapsed())
    });
    assert!(
        raised >= Duration::from_millis(5500),
        "the 6 s on-delay held through the step back: raised after {raised:?}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let ts = stored_ts(&data);
    assert!(ts.len() > 40, "{}", ts.len());
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "increasing");
    let squeezed = ts.windows(2).filter(|w| w[1] - w[0] < 20).count();
    assert_eq!(
        squeezed, 0,
        "readings 100 ms apart stay ~100 ms apart: {ts:?}"
    );
}
