//! The daemon: builds the topology from the config, runs it, applies reloads and shuts down in order.
//!
//! ```text
//!  sources (one task per group) ──▶ mpsc (bounded) ──▶ pipeline loop ──▶ store (SQLite WAL) ──▶ sinks (own cursor each)
//!                                                      validate + alarms     batches / events      influxdb, mqtt
//! ```
//! Shutdown order (SIGTERM): sources stop first, readings already queued are evaluated and committed, sinks get
//! `DRAIN_DEADLINE` to deliver, whatever is left stays on disk for the next start.

use crate::config::Config;
use crate::metrics::{Metrics, SharedMetrics};
use crate::model::{Alert, AlertState, AlertType, Quality, Reading, Timestamp};
use crate::pipeline::Engine;
use crate::store::{Consumer, Store, Stream};
use crate::{sink, source};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long sinks may keep delivering after the sources stopped.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);
/// A BUFFER_OVERFLOW episode ends (the alert clears) after this long without drops.
const OVERFLOW_CLEAR_AFTER: Duration = Duration::from_secs(600);
/// Readings held in memory while the disk refuses writes, before the oldest are dropped.
const MAX_PENDING: usize = 1_000_000;

/// The sinks configured in `cfg` and the stream each consumes.
pub fn consumers(cfg: &Config) -> Vec<Consumer> {
    let mut v = Vec::new();
    if cfg.influxdb.is_some() {
        v.push(("influxdb".to_string(), Stream::Readings));
    }
    if cfg.mqtt.is_some() {
        v.push(("mqtt".to_string(), Stream::Events));
    }
    v
}

/// Latest value of one sensor, for the device shadow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatestValue {
    /// Value (absent when not finite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<f64>,
    /// Sample time (ms since epoch).
    pub ts: i64,
    /// Quality.
    pub q: &'static str,
}

/// Live gateway state, latest-value-wins (what the device shadow reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Active alarms.
    pub alerts: Vec<crate::pipeline::ActiveAlert>,
    /// Latest value per sensor.
    pub sensors: std::collections::BTreeMap<String, LatestValue>,
}

/// New-data signals for sinks: the newest committed batch id and event seq, and the live state.
#[derive(Clone)]
pub struct Signals {
    /// Newest reading batch id.
    pub readings: watch::Receiver<i64>,
    /// Newest alert event seq.
    pub events: watch::Receiver<i64>,
    /// Live state for the device shadow.
    pub live: watch::Receiver<Arc<Live>>,
}

struct Pipeline {
    cfg: Config,
    store: Store,
    engine: Engine,
    pending: Vec<Reading>,
    unsaved_alerts: Vec<Alert>,
    metrics: SharedMetrics,
    readings_tx: watch::Sender<i64>,
    events_tx: watch::Sender<i64>,
    live_tx: watch::Sender<Arc<Live>>,
    /// The open BUFFER_OVERFLOW alert and when readings were last dropped.
    overflow: Option<(Alert, std::time::Instant)>,
}

impl Pipeline {
    fn accept(&mut self, mut r: Reading, alerts: &mut Vec<Alert>) {
        self.engine.evaluate(&mut r, alerts);
        self.metrics.readings.fetch_add(1, Ordering::Relaxed);
        if r.quality != Quality::Good {
            self.metrics.readings_bad.fetch_add(1, Ordering::Relaxed);
        }
        self.pending.push(r);
    }

    /// Commit alert transitions before anything publishes them; keep them in memory if the disk refuses.
    fn commit_alerts(&mut self, alerts: &mut Vec<Alert>) {
        if alerts.is_empty() && self.unsaved_alerts.is_empty() {
            return;
        }
        for a in alerts.iter() {
            tracing::info!(target: "watchpost::alert", alert_id = %a.id, sensor = %a.sensor, "{}", a.summary());
        }
        self.metrics
            .alerts
            .fetch_add(alerts.len() as u64, Ordering::Relaxed);
        self.unsaved_alerts.append(alerts);
        let snap = self.engine.snapshot();
        match self.store.append_alerts(&self.unsaved_alerts, Some(&snap)) {
            Ok(seqs) => {
                self.unsaved_alerts.clear();
                if let Some(last) = seqs.last() {
                    self.events_tx.send_replace(*last);
                }
            }
            Err(e) => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, held = self.unsaved_alerts.len(), "Cannot commit alert events; holding them in memory and retrying.");
            }
        }
    }

    fn flush(&mut self, alerts: &mut Vec<Alert>) {
        if self.pending.is_empty() {
            return;
        }
        self.publish_live();
        let snap = self.engine.snapshot();
        match self.store.append_readings(&self.pending, Some(&snap)) {
            Ok(id) => {
                self.pending.clear();
                self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = id {
                    self.readings_tx.send_replace(id);
                }
            }
            Err(e) => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, held = self.pending.len(), "Cannot commit readings; holding them in memory and retrying.");
                if e.is_full() {
                    // Make room: drop the oldest stored readings (alerts are kept).
                    let used = self.store.used_bytes().unwrap_or(0);
                    self.enforce_cap(used / 10 * 9, alerts);
                }
                if self.pending.len() > MAX_PENDING {
                    let n = self.pending.len() - MAX_PENDING;
                    self.pending.drain(..n);
                    self.metrics.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    tracing::warn!(dropped = n, "Memory buffer full while the disk refuses writes; dropped the oldest readings.");
                }
                return;
            }
        }
        let max = self.cfg.buffer.max_size.0;
        self.enforce_cap(max, alerts);
    }

    /// Clear the BUFFER_OVERFLOW alert once nothing was dropped for `OVERFLOW_CLEAR_AFTER`.
    fn check_overflow_cleared(&mut self, alerts: &mut Vec<Alert>) {
        if let Some((a, last)) = &self.overflow {
            if last.elapsed() >= OVERFLOW_CLEAR_AFTER {
                let mut c = a.clone();
                c.state = AlertState::Cleared;
                c.ts = Timestamp::now().rfc3339();
                c.reason = Some(format!(
                    "no readings dropped for {}",
                    humantime::format_duration(OVERFLOW_CLEAR_AFTER)
                ));
                alerts.push(c);
                self.overflow = None;
            }
        }
    }

    /// Update the live state from the readings about to be flushed and the active alarms.
    fn publish_live(&mut self) {
        let mut live = (**self.live_tx.borrow()).clone();
        for r in self.pending.iter().filter(|r| self.engine.knows(&r.sensor)) {
            live.sensors.insert(
                r.sensor.to_string(),
                LatestValue {
                    v: r.value.is_finite().then_some(r.value),
                    ts: r.ts.0,
                    q: r.quality.as_str(),
                },
            );
        }
        live.alerts = self.engine.active();
        self.live_tx.send_if_modified(|old| {
            if **old == live {
                false
            } else {
                *old = Arc::new(live);
                true
            }
        });
    }

    fn enforce_cap(&mut self, max: u64, alerts: &mut Vec<Alert>) {
        match self.store.enforce_cap(max) {
            Ok(Some(d)) => {
                self.metrics
                    .dropped
                    .fetch_add(d.readings, Ordering::Relaxed);
                tracing::warn!(readings = d.readings, batches = d.batches, from = %d.first, to = %d.last,
                    max_size = max, "Buffer cap reached: dropped the oldest readings.");
                match self.overflow.as_mut() {
                    Some((_, last)) => *last = std::time::Instant::now(),
                    None => {
                        let reason = format!(
                            "buffer cap of {} bytes reached: dropped {} readings from {} to {}",
                            max, d.readings, d.first, d.last
                        );
                        let a = self.engine.gateway_alert(
                            AlertType::BufferOverflow,
                            AlertState::Raised,
                            Timestamp::now(),
                            reason,
                        );
                        self.overflow = Some((a.clone(), std::time::Instant::now()));
                        alerts.push(a);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "Cannot enforce the buffer cap."),
        }
    }
}

/// Run the daemon until `shutdown` is cancelled. New configs arriving on `reload` are applied live.
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
    let started = Timestamp::now();
    let started_at = std::time::Instant::now();
    let mut first_reading = true;
    let data_dir = cfg.gateway.data_dir.clone();
    let mut store = tokio::task::block_in_place(|| Store::open(&data_dir))
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    let mut engine = Engine::new(&cfg.gateway.id, &cfg.gateway.location, &cfg.sensor, started);
    if let Some(st) = store.engine_state()? {
        if let Err(e) = engine.restore(&st, started) {
            tracing::warn!(error = %e, "Saved alarm state is unreadable; starting with no active alarms.");
        }
    }
    store.prune(&consumers(&cfg), cfg.buffer.retention.0, started)?;
    let (readings_tx, readings_rx) = watch::channel(0i64);
    let (events_tx, events_rx) = watch::channel(0i64);
    let (live_tx, live_rx) = watch::channel(Arc::new(Live::default()));
    let signals = Signals {
        readings: readings_rx,
        events: events_rx,
        live: live_rx,
    };

    let (tx, mut rx) = mpsc::channel::<Reading>(8192);
    let sources = TaskTracker::new();
    let mut running: HashMap<String, (String, CancellationToken)> = HashMap::new();
    let sources_token = CancellationToken::new();
    for g in source::groups(&cfg) {
        let t = sources_token.child_token();
        running.insert(g.key.clone(), (g.fingerprint.clone(), t.clone()));
        source::spawn(g, tx.clone(), t, &sources, &metrics);
    }

    let sinks = TaskTracker::new();
    let sinks_token = sink::SinkCtl::default();
    sink::spawn_all(&cfg, &signals, &metrics, &sinks_token, &sinks);
    if let Some(m) = &cfg.metrics {
        sinks.spawn(crate::metrics::serve(
            m.listen.clone(),
            Arc::clone(&metrics),
            sinks_token.drain.clone(),
        ));
    }

    let mut p = Pipeline {
        cfg,
        store,
        engine,
        pending: Vec::new(),
        unsaved_alerts: Vec::new(),
        metrics: Arc::clone(&metrics),
        readings_tx,
        events_tx,
        live_tx,
        overflow: None,
    };
    let mut flush = tokio::time::interval(p.cfg.buffer.flush_interval.0);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(60));
    housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog = sd_watchdog();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(gateway = %p.cfg.gateway.id, sensors = p.cfg.sensor.len(), data_dir = %data_dir.display(),
        version = env!("CARGO_PKG_VERSION"), "watchpost started.");
    let mut alerts: Vec<Alert> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(new) = reload.recv() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                p.flush(&mut alerts);
                let removed = p.engine.reconfigure(&new.sensor, Timestamp::now());
                alerts.extend(removed);
                let mut restarted = 0;
                let groups = source::groups(&new);
                let keys: Vec<String> = groups.iter().map(|g| g.key.clone()).collect();
                running.retain(|k, (_, t)| {
                    let keep = keys.contains(k);
                    if !keep { t.cancel(); }
                    keep
                });
                for g in groups {
                    if running.get(&g.key).is_some_and(|(fp, _)| *fp == g.fingerprint) {
                        continue;
                    }
                    if let Some((_, t)) = running.remove(&g.key) { t.cancel(); }
                    let t = sources_token.child_token();
                    running.insert(g.key.clone(), (g.fingerprint.clone(), t.clone()));
                    source::spawn(g, tx.clone(), t, &sources, &metrics);
                    restarted += 1;
                }
                let sinks_changed = serde_json::to_string(&(&new.influxdb, &new.mqtt, &new.metrics, &new.buffer)).ok()
                    != serde_json::to_string(&(&p.cfg.influxdb, &p.cfg.mqtt, &p.cfg.metrics, &p.cfg.buffer)).ok();
                if sinks_changed {
                    tracing::warn!("Changes to [influxdb], [mqtt], [metrics] and [buffer] take effect only after a restart; sensors and thresholds were applied.");
                }
                if new.gateway.data_dir != p.cfg.gateway.data_dir || new.gateway.id != p.cfg.gateway.id {
                    tracing::warn!("gateway.id and gateway.data_dir changes take effect only after a restart.");
                }
                tracing::info!(sensors = new.sensor.len(), groups_restarted = restarted, "Configuration reloaded.");
                p.cfg = new;
                // Sensors removed by the reload leave the live state (and so the device shadow).
                p.live_tx.send_modify(|live| {
                    let mut l = (**live).clone();
                    l.sensors.retain(|k, _| p.cfg.sensor.iter().any(|s| s.id == *k));
                    *live = Arc::new(l);
                });
                p.commit_alerts(&mut alerts);
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
            Some(r) = rx.recv() => {
                if first_reading {
                    first_reading = false;
                    tracing::info!(after_ms = started_at.elapsed().as_secs_f64() * 1e3, sensor = %r.sensor, "First reading.");
                }
                p.accept(r, &mut alerts);
                // Take what is already queued without yielding, up to a batch.
                let mut n = 0;
                while n < 4096 {
                    match rx.try_recv() {
                        Ok(r) => { p.accept(r, &mut alerts); n += 1; }
                        Err(_) => break,
                    }
                }
                p.commit_alerts(&mut alerts);
                if p.pending.len() >= p.cfg.buffer.batch_max_readings {
                    p.flush(&mut alerts);
                    p.commit_alerts(&mut alerts);
                }
            }
            _ = flush.tick() => {
                p.flush(&mut alerts);
                p.commit_alerts(&mut alerts);
            }
            _ = tick.tick() => {
                p.engine.tick(Timestamp::now(), &mut alerts);
                p.check_overflow_cleared(&mut alerts);
                p.commit_alerts(&mut alerts);
                if watchdog {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
            }
            _ = housekeeping.tick() => {
                let cons = consumers(&p.cfg);
                if let Err(e) = p.store.prune(&cons, p.cfg.buffer.retention.0, Timestamp::now()) {
                    tracing::warn!(error = %e, "Pruning delivered data failed.");
                }
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
    while let Ok(r) = rx.try_recv() {
        p.accept(r, &mut alerts);
    }
    p.commit_alerts(&mut alerts);
    p.flush(&mut alerts);
    p.commit_alerts(&mut alerts);
    tracing::info!("Readings committed; giving sinks time to drain.");
    sinks.close();
    sink::drain(&sinks_token, &sinks, DRAIN_DEADLINE).await;
    if let Err(e) = p.store.mark_clean() {
        tracing::warn!(error = %e, "Could not mark the store as cleanly closed.");
    }
    tracing::info!("watchpost stopped.");
    Ok(())
}

fn sd_watchdog() -> bool {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
}
