//! `watchpost bench`: throughput of validation + alarms, of the whole path into the durable store, and bytes per
//! stored reading for realistic data. Run it on a release build: `cargo run --release -- bench`.

use crate::config::SensorConfig;
use crate::model::SensorId;
use crate::model::{Alert, AlertState, AlertType, Direction, Reading, Severity, Timestamp};
use crate::pipeline::Engine;
use crate::store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` sensors (`sensor_000`…) with warning/critical limits, validation, stuck and spike detection.
pub fn sensors(n: usize) -> Vec<SensorConfig> {
    let mut toml = String::from(
        "[gateway]\nid = \"bench\"\nlocation = \"lab\"\ndata_dir = \"/nonexistent\"\n",
    );
    for i in 0..n {
        toml.push_str(&format!(
            "[[sensor]]\nid = \"sensor_{i:03}\"\nsource = {{ simulated = \"random_walk\" }}\ninterval = \"1s\"\nunit = \"°C\"\n\
             valid = {{ min = -50.0, max = 150.0 }}\nwarning = {{ high = 80.0, low = 5.0 }}\ncritical = {{ high = 95.0 }}\n\
             deadband = 2.0\ndelay = \"5s\"\nstuck_after = \"10m\"\nmax_rate = 50.0\n"
        ));
    }
    match crate::config::parse_str(&toml, Path::new("bench.toml"), &[]) {
        Ok(c) => c.sensor,
        Err(e) => panic!("bench sensors: {e}"),
    }
}

/// 100 sensors at 1 Hz with slowly varying 2-decimal values, `n` readings from `start`.
pub fn workload(n: usize, start: i64) -> Vec<Reading> {
    let ids: Vec<SensorId> = (0..100)
        .map(|i| SensorId::from(format!("sensor_{i:03}")))
        .collect();
    let mut levels: Vec<f64> = (0..100).map(|i| 20.0 + i as f64 * 0.5).collect();
    let mut rng = fastrand::Rng::with_seed(42);
    (0..n)
        .map(|k| {
            let s = k % 100;
            let sec = (k / 100) as i64;
            levels[s] += (rng.f64() - 0.5) * 0.2;
            let v = (levels[s] * 100.0).round() / 100.0;
            Reading::new(
                ids[s],
                Timestamp(start + sec * 1000 + s as i64 * 3 + rng.i64(0..3)),
                v,
            )
        })
        .collect()
}

/// A raised CRITICAL alert `{device}:{sensor}:{n}` with value `n`, for benchmarks.
fn raised_alert(device: &str, sensor: &str, n: u64) -> Alert {
    let now = Timestamp::now();
    Alert {
        kind: AlertType::Alert,
        id: format!("{device}:{sensor}:{n}"),
        state: AlertState::Raised,
        severity: Severity::Critical,
        sensor: sensor.into(),
        device: device.into(),
        location: "lab".into(),
        value: Some(n as f64),
        unit: None,
        threshold: Some(1.0),
        direction: Some(Direction::High),
        ts: now,
        since: now,
        reason: None,
        operator: Default::default(),
    }
}

/// Run all benchmarks and print the figures.
pub fn run(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let start = 1_790_000_000_000;
    let data = workload(n, start);
    let cfg = sensors(100);
    // 1. Validation + alarm engine.
    let mut engine = Engine::new("bench", "lab", &cfg, Timestamp(start));
    let mut alerts: Vec<Alert> = Vec::new();
    let mut work = data.clone();
    let t = Instant::now();
    for r in work.iter_mut() {
        engine.evaluate(r, &mut alerts);
    }
    let el = t.elapsed();
    println!(
        "pipeline (validate + alarms): {n} readings in {:.3}s = {:.2} M readings/s, {:.0} ns/reading, {} alert transitions",
        el.as_secs_f64(),
        n as f64 / el.as_secs_f64() / 1e6,
        el.as_nanos() as f64 / n as f64,
        alerts.len()
    );
    // 2. Validation + alarms + durable store, batches of 10,000.
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path())?;
    let mut engine = Engine::new("bench", "lab", &cfg, Timestamp(start));
    let mut work = data.clone();
    alerts.clear();
    let t = Instant::now();
    for chunk in work.chunks_mut(10_000) {
        for r in chunk.iter_mut() {
            engine.evaluate(r, &mut alerts);
        }
        if !alerts.is_empty() {
            store.append_alerts(&alerts, None)?;
            alerts.clear();
        }
        store.append_readings(chunk, None)?;
    }
    let el = t.elapsed();
    let used = store.used_bytes()?;
    println!(
        "pipeline + store (10k-reading batches, fsync per commit): {:.2} M readings/s, {:.2} bytes/reading on disk",
        n as f64 / el.as_secs_f64() / 1e6,
        used as f64 / n as f64
    );
    drop(store);
    // 3. Realistic steady state: 100 sensors at 1 Hz for one hour, one commit per second (flush_interval = 1s).
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path())?;
    let hour = workload(360_000, start);
    let t = Instant::now();
    for sec in hour.chunks(100) {
        store.append_readings(sec, Some("{}"))?;
    }
    let el = t.elapsed();
    let used = store.used_bytes()?;
    store.mark_clean()?;
    let file = std::fs::metadata(dir.path().join(crate::store::DB_FILE))?.len();
    println!(
        "steady state 100 sensors @ 1 Hz, 1 h (3,600 commits of 100 readings): {:.2} bytes/reading in use, {:.2} bytes/reading file size, {:.0} bytes per commit, {:.1} µs per commit; 1 write transaction per second",
        used as f64 / 360_000.0,
        file as f64 / 360_000.0,
        used as f64 / 3600.0,
        el.as_micros() as f64 / 3600.0
    );
    // Alert commit latency (each alert is committed and fsync'd on its own).
    let mut lat = Vec::new();
    let a = raised_alert("bench", "x", 1);
    for _ in 0..500 {
        let t = Instant::now();
        store.append_alerts(std::slice::from_ref(&a), Some("{}"))?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "alert commit (fsync'd): p50 {:.0} µs, p99 {:.0} µs",
        lat[lat.len() / 2].as_micros(),
        lat[lat.len() * 99 / 100].as_micros()
    );
    if let Some(rss) = rss_kb() {
        println!("peak RSS of this bench process: {rss} kB (holds {n} readings in memory twice)");
    }
    Ok(())
}

fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// What a sink benchmark needs: a fresh store with the config pointing at it, and the signals a sink listens to.
#[cfg(any(feature = "mqtt", feature = "influxdb", feature = "email"))]
struct SinkBench {
    _dir: tempfile::TempDir,
    cfg: Arc<crate::config::Config>,
    store: Store,
    signals: crate::channels::Signals,
    /// Newest event seq (readings and live state stay idle).
    events_tx: tokio::sync::watch::Sender<i64>,
    _idle: (
        tokio::sync::watch::Sender<i64>,
        tokio::sync::watch::Sender<Arc<crate::model::Live>>,
    ),
}

#[cfg(any(feature = "mqtt", feature = "influxdb", feature = "email"))]
impl SinkBench {
    /// `sink_toml` is appended to a `[gateway]` section whose `data_dir` is a temp dir.
    fn new(sink_toml: &str) -> Result<SinkBench, Box<dyn std::error::Error>> {
        use tokio::sync::watch;
        let dir = tempfile::tempdir()?;
        let toml = format!(
            "[gateway]\nid = \"bench\"\nlocation = \"lab\"\ndata_dir = \"{}\"\n{sink_toml}",
            dir.path().display()
        );
        let cfg = crate::config::parse_str(&toml, Path::new("bench.toml"), &[])
            .map_err(|e| e.to_string())?;
        let store = Store::open(dir.path())?;
        let (events_tx, events) = watch::channel(0i64);
        let (readings_tx, readings) = watch::channel(0i64);
        let (live_tx, live) = watch::channel(Arc::new(crate::model::Live::default()));
        Ok(SinkBench {
            _dir: dir,
            cfg: Arc::new(cfg),
            store,
            signals: crate::channels::Signals {
                readings,
                events,
                live,
                fresh: Default::default(),
                handoff: Default::default(),
                // No alarm engine here: commands are not benchmarked.
                control: tokio::sync::mpsc::channel(1).0,
                remote: None,
                remote_in_force: None,
            },
            events_tx,
            _idle: (readings_tx, live_tx),
        })
    }
}

/// CPU time of this process (user + system).
pub(crate) fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

mod live;
pub use live::*;
