//! The daemon: builds the topology from the config, runs it, applies reloads and shuts down in order.
//!
//! ```text
//!  async runtime                          ingest thread                      async runtime
//!  ┌────────────────────────┐ mpsc (1024) ┌──────────────────────┐ Signals  ┌─────────────────────────────┐
//!  │ source runners         │ ──────────▶ │ validate + alarms    │ ───────▶ │ sink runners (one per sink) │
//!  │ one per group: time,   │  Readings   │ store writer (WAL)   │ (watch)  │ cursor · fetch · deliver ·  │
//!  │ deadlines, backoff;    │             │                      │ ◀─────── │ ack (store calls on the     │
//!  │ a Source reads a poll  │             └──────────────────────┘ Control  │ blocking pool)              │
//!  └────────────────────────┘                                      (mpsc)   └─────────────────────────────┘
//! ```
//! Shutdown order (SIGTERM): sources stop first, the ingest thread commits what they sent, sinks get
//! `DRAIN_DEADLINE` to deliver, whatever is left stays on disk for the next start.

use crate::config::Config;
use crate::ingest::Ingest;
use crate::metrics::{Metrics, SharedMetrics};
use crate::{sink, source};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long sinks may keep delivering after the sources stopped.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);
/// Polls (batches of readings) queued between the sources and the ingest thread.
const CHANNEL: usize = 1024;

/// Run the daemon until `shutdown` is cancelled. New configs arriving on `reload` are applied live.
///
/// Runs on any tokio runtime (current-thread included): no call here blocks an async worker.
pub async fn run(
    cfg: Config,
    shutdown: CancellationToken,
    reload: mpsc::Receiver<Config>,
) -> anyhow::Result<()> {
    run_with_metrics(cfg, shutdown, reload, Arc::new(Metrics::default())).await
}

/// [`run`] with caller-owned metrics (tests read them).
pub async fn run_with_metrics(
    cfg: Config,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<Config>,
    metrics: SharedMetrics,
) -> anyhow::Result<()> {
    // The file as loaded, and what runs: the file with remote alarm settings over it (`apply_desired`).
    let mut file_cfg = cfg;
    let mut remote = crate::remote::Remote::open(&file_cfg);
    // One copy of what runs, shared by the ingest thread and every sink.
    let cfg = Arc::new(remote.effective(&file_cfg, None));
    let mut ingest = Ingest::start(
        Arc::clone(&cfg),
        sink::consumers(&cfg),
        CHANNEL,
        Arc::clone(&metrics),
    )
    .await?;
    let tx = ingest.intake.clone();
    let (remote_tx, mut remote_rx) = mpsc::channel(4);
    ingest.signals.remote = Some(remote_tx);
    let (in_force_tx, in_force_rx) = tokio::sync::watch::channel(None);
    ingest.signals.remote_in_force = Some(in_force_rx);
    remote
        .flush_pending_audit(&file_cfg, &ingest.signals.control)
        .await;
    // The MQTT session hears of an outcome only when it differs from the last (a get answer repeats them).
    let report = |r: crate::model::RemoteResult| {
        in_force_tx.send_if_modified(|v| {
            let new = v.as_ref() != Some(&r);
            if new {
                *v = Some(r);
            }
            new
        });
    };

    let sources = TaskTracker::new();
    let sources_token = CancellationToken::new();
    let mut running: HashMap<String, (String, CancellationToken)> = HashMap::new();
    for g in source::groups(&cfg) {
        let t = sources_token.child_token();
        running.insert(g.key.clone(), (g.fingerprint.clone(), t.clone()));
        source::spawn(g, tx.clone(), t, &sources, &metrics);
    }

    let sinks = TaskTracker::new();
    let sinks_ctl = sink::SinkCtl::default();
    let reader = crate::store::SharedStore::open_existing(cfg.gateway.data_dir.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store for the sinks: {e}"))?;
    let mut running_sinks =
        sink::spawn_all(&cfg, &reader, &ingest.signals, &metrics, &sinks_ctl, &sinks);
    if let Some(m) = &cfg.metrics {
        sinks.spawn(crate::metrics::serve(
            m.listen.clone(),
            Arc::clone(&metrics),
            sinks_ctl.drain.clone(),
        ));
    }

    metrics.watch_live(ingest.signals.live.clone());
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(gateway = %cfg.gateway.id, sensors = cfg.sensor.len(), data_dir = %cfg.gateway.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"), "watchpost started.");
    let mut cfg = cfg;
    loop {
        let new = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(file) = reload.recv() => {
                // The overlay is read again too (`watchpost config reset-remote` edits it).
                if let Some(r) = remote.reload(&file) {
                    report(r);
                }
                let effective = remote.effective(&file, Some(&file_cfg));
                file_cfg = file;
                effective
            }
            Some(change) = remote_rx.recv() => {
                let applied = remote.change(&file_cfg, change, &ingest.signals.control).await;
                if let Some(r) = remote.outcome() {
                    report(r);
                }
                match applied {
                    Some(c) => c,
                    None => continue,
                }
            }
        };
        let new = Arc::new(new);
        {
            {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                let mut restarted = 0;
                let groups = source::groups(&new);
                let keys: Vec<String> = groups.iter().map(|g| g.key.clone()).collect();
                running.retain(|k, (_, t)| {
                    let keep = keys.contains(k);
                    if !keep {
                        t.cancel();
                    }
                    keep
                });
                for g in groups {
                    if running
                        .get(&g.key)
                        .is_some_and(|(fp, _)| *fp == g.fingerprint)
                    {
                        continue;
                    }
                    if let Some((_, t)) = running.remove(&g.key) {
                        t.cancel();
                    }
                    let t = sources_token.child_token();
                    running.insert(g.key.clone(), (g.fingerprint.clone(), t.clone()));
                    source::spawn(g, tx.clone(), t, &sources, &metrics);
                    restarted += 1;
                }
                let sinks_restarted = running_sinks
                    .reload(&new, &ingest.signals, &metrics, &sinks_ctl, &sinks)
                    .await;
                if serde_json::to_string(&new.metrics).ok()
                    != serde_json::to_string(&cfg.metrics).ok()
                {
                    tracing::warn!("Changes to [metrics] take effect only after a restart.");
                }
                log_sensor_changes(&cfg, &new);
                if new.gateway.data_dir != cfg.gateway.data_dir || new.gateway.id != cfg.gateway.id
                {
                    tracing::warn!(
                        "gateway.id and gateway.data_dir changes take effect only after a restart."
                    );
                }
                if ingest
                    .reload
                    .send((Arc::clone(&new), sink::consumers(&new)))
                    .await
                    .is_err()
                {
                    tracing::error!(
                        "The ingest thread is gone; cannot apply the new configuration."
                    );
                }
                tracing::info!(
                    sensors = new.sensor.len(),
                    groups_restarted = restarted,
                    sinks_restarted,
                    "Configuration reloaded."
                );
                cfg = new;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
    }
    // Orderly shutdown: sources first.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("Shutting down: stopping sources.");
    sources_token.cancel();
    sources.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), sources.wait()).await;
    drop(tx);
    ingest.finish().await;
    tracing::info!("Giving sinks time to drain.");
    sinks.close();
    sink::drain(&sinks_ctl, &sinks, DRAIN_DEADLINE).await;
    tracing::info!("watchpost stopped.");
    Ok(())
}

/// One line per kind of sensor change a reload brings, so the journal says what a SIGHUP did.
fn log_sensor_changes(old: &Config, new: &Config) {
    let ids = |c: &Config| {
        c.sensor
            .iter()
            .map(|s| s.id.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (o, n) = (ids(old), ids(new));
    let added: Vec<_> = n.difference(&o).collect();
    let removed: Vec<_> = o.difference(&n).collect();
    let changed: Vec<_> = new
        .sensor
        .iter()
        // Compared as written: a `nan` in a scripted source is unequal to itself as a number, and the journal's
        // answer to "what did this reload do" must be true.
        .filter(|s| {
            old.sensor
                .iter()
                .any(|p| p.id == s.id && format!("{p:?}") != format!("{s:?}"))
        })
        .map(|s| &s.id)
        .collect();
    if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
        tracing::info!(added = ?added, removed = ?removed, changed = ?changed, "Sensors changed by the reload.");
    }
    if serde_json::to_string(&new.buffer).ok() != serde_json::to_string(&old.buffer).ok() {
        tracing::info!("[buffer] changed by the reload; applied.");
    }
}
