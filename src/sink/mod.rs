//! Sinks: each reads the store after its own cursor and advances it only after the far side acknowledged.
//! Sinks are independent tasks: a dead time-series server never delays an MQTT alert.

#[cfg(feature = "influxdb")]
pub mod influxdb;
pub mod lineproto;
#[cfg(feature = "mqtt")]
pub mod mqtt;

use crate::app::Signals;
use crate::config::Config;
use crate::metrics::SharedMetrics;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Control tokens of the sink tasks.
#[derive(Clone, Default)]
pub struct SinkCtl {
    /// Deliver what is pending, then stop.
    pub drain: CancellationToken,
    /// Stop now.
    pub stop: CancellationToken,
}

/// Start every configured sink.
pub fn spawn_all(
    cfg: &Config,
    signals: &Signals,
    metrics: &SharedMetrics,
    ctl: &SinkCtl,
    tracker: &TaskTracker,
) {
    #[cfg(feature = "influxdb")]
    if let Some(i) = &cfg.influxdb {
        tracker.spawn(influxdb::run(
            i.clone(),
            cfg.clone(),
            signals.clone(),
            metrics.clone(),
            ctl.clone(),
        ));
    }
    #[cfg(not(feature = "influxdb"))]
    if cfg.influxdb.is_some() {
        tracing::error!("InfluxDB support is not compiled into this build.");
    }
    #[cfg(feature = "mqtt")]
    if let Some(m) = &cfg.mqtt {
        tracker.spawn(mqtt::run(
            m.clone(),
            cfg.clone(),
            signals.clone(),
            metrics.clone(),
            ctl.clone(),
        ));
    }
    #[cfg(not(feature = "mqtt"))]
    if cfg.mqtt.is_some() {
        tracing::error!(
            "MQTT support is not compiled into this build; alerts stay in the local store."
        );
    }
    let _ = (signals, metrics, ctl);
}

/// Let sinks deliver for up to `deadline`, then stop them.
pub async fn drain(ctl: &SinkCtl, tracker: &TaskTracker, deadline: Duration) {
    ctl.drain.cancel();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "Sinks did not finish within the drain deadline; the rest stays in the store."
        );
    }
    ctl.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
}

/// Jittered exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// From `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }
    /// Next delay (full jitter between 50 % and 100 %).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        let d = exp.min(self.max);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Resolve a secret given inline, by file, environment variable or systemd credential.
pub fn resolve_secret(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    env: &Option<String>,
    credential: &Option<String>,
) -> Result<Option<String>, String> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    if let Some(f) = file {
        return std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("cannot read secret file {}: {e}", f.display()));
    }
    if let Some(v) = env {
        return std::env::var(v)
            .map(Some)
            .map_err(|_| format!("environment variable {v} is not set"));
    }
    if let Some(c) = credential {
        let dir = std::env::var("CREDENTIALS_DIRECTORY")
            .map_err(|_| format!("credential {c:?} requested but CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"))?;
        let p = std::path::Path::new(&dir).join(c);
        return std::fs::read_to_string(&p)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("cannot read credential {}: {e}", p.display()));
    }
    Ok(None)
}
