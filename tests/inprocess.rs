//! The daemon in-process, on a current-thread runtime (what `#[tokio::test]` gives): `watchpost::run` must never
//! block its async thread, since the store writer has a thread of its own and sink store calls run on the
//! blocking pool. A blocking call on the one async thread would stall the timers this test waits on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use watchpost::metrics::Metrics;
use watchpost::store::Store;

fn config(dir: &std::path::Path, extra: &str) -> watchpost::config::Config {
    let toml = format!(
        r#"
[gateway]
id = "inproc"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[[sensor]]
id = "temp"
interval = "20ms"
source = {{ simulated = "ramp", offset = 0.0, step = 1.0, min = 0.0, max = 1000.0 }}
warning = {{ high = 5.0 }}
{extra}
"#,
        dir.display()
    );
    watchpost::config::parse_str(&toml, std::path::Path::new("inproc.toml"), &[]).expect("config")
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn runs_reloads_and_stops_on_a_current_thread_runtime() {
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
    let dir = tempfile::tempdir().expect("tmp");
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(watchpost::app::run_with_metrics(
        config(dir.path(), ""),
        shutdown.clone(),
        reload_rx,
        Arc::clone(&metrics),
    ));
    until("readings and an alert", || {
        metrics.readings.load(Ordering::Relaxed) >= 20
            && metrics.alerts.load(Ordering::Relaxed) >= 1
    })
    .await;
    until("a committed batch", || {
        metrics.flushes.load(Ordering::Relaxed) >= 1
    })
    .await;
    // Reload: a second sensor appears and is polled.
    let second = "[[sensor]]\nid = \"other\"\ninterval = \"20ms\"\nsource = { simulated = \"constant\", offset = 1.0 }\n";
    reload_tx
        .send(config(dir.path(), second))
        .await
        .expect("reload");
    let before = metrics.readings.load(Ordering::Relaxed);
    until("readings of both sensors", || {
        metrics.readings.load(Ordering::Relaxed) >= before + 40
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops within 10 s")
        .expect("task")
        .expect("clean exit");
    // Everything accepted is in the store, the store is marked clean, the alert is committed.
    let accepted = metrics.readings.load(Ordering::Relaxed);
    let mut store = Store::open_existing(dir.path()).expect("store");
    let (readings, events) = store.counts().expect("counts");
    assert_eq!(readings, accepted, "every accepted reading committed");
    assert!(events >= 1);
    let mut sensors = std::collections::BTreeSet::new();
    store
        .export(watchpost::model::Timestamp(0), None, |r| {
            sensors.insert(r.sensor.to_string());
        })
        .expect("export");
    assert_eq!(sensors.into_iter().collect::<Vec<_>>(), ["other", "temp"]);
    drop(store);
    let reopened = Store::open(dir.path()).expect("reopen");
    assert!(!reopened.was_unclean, "shutdown marked the store clean");
}
