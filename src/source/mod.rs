//! Sources: where readings come from. A source only connects and reads one poll group
//! ([`runner::Source`]); the [runner](runner::run) owns time: intervals, deadlines, retries, backoff, reconnects,
//! measurement stamps, per-sensor faults, logs and counters.
//!
//! Sensors are grouped by what they share: the simulated sensors of one interval form a group (one tick for all);
//! all sensors of one
//! `[[modbus]]` device or RTU line, or of one `[[i2c]]` bus, form one group served by one runner (a bus is used
//! by one request at a time). On reload, only groups whose configuration changed are restarted.
//!
//! Adding a source kind (see docs/architecture.md): its config struct and a variant of
//! [`crate::config::SourceConfig`], a module here implementing [`runner::Source`], and one arm in [`groups`] and
//! [`spawn`].

#[cfg(feature = "i2c")]
pub mod i2c;
#[cfg(feature = "modbus")]
pub mod modbus;
pub mod runner;
pub mod simulated;

use crate::config::{Config, SensorConfig, SimulatedSource, SourceConfig};
use crate::metrics::SharedMetrics;
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a read failed. The kind decides what the runner does next.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No answer within the deadline: retry, then back off the unit.
    #[error("timeout")]
    Timeout,
    /// The device answered with an error (a Modbus exception): it is alive, keep the connection.
    #[error("{0}")]
    Exception(String),
    /// Transport or protocol failure (connection refused or reset, garbage frame): reconnect.
    #[error("{0}")]
    Transport(String),
    /// The configuration cannot work (e.g. a serial option): retrying slowly, logged as an error.
    #[error("{0}")]
    Config(String),
}

/// A unit of source scheduling: one task.
pub struct Group {
    /// Stable key (`sim:<sensor>`, `modbus:<name>`).
    pub key: String,
    /// Serialized config; a change restarts the group.
    pub fingerprint: String,
    kind: GroupKind,
}

enum GroupKind {
    Simulated(std::time::Duration, Vec<(SensorConfig, SimulatedSource)>),
    #[cfg(feature = "modbus")]
    Modbus(crate::config::ModbusConfig, Vec<SensorConfig>),
    #[cfg(feature = "i2c")]
    I2c(crate::config::I2cConfig, Vec<SensorConfig>),
}

/// Split the config's sensors into scheduling groups.
pub fn groups(cfg: &Config) -> Vec<Group> {
    let mut out = Vec::new();
    let mut by_bus: BTreeMap<String, Vec<SensorConfig>> = BTreeMap::new();
    let mut by_i2c: BTreeMap<String, Vec<SensorConfig>> = BTreeMap::new();
    let mut by_interval: BTreeMap<std::time::Duration, Vec<(SensorConfig, SimulatedSource)>> =
        BTreeMap::new();
    for s in &cfg.sensor {
        match &s.source {
            SourceConfig::Simulated(src) => by_interval
                .entry(s.interval.0)
                .or_default()
                .push((s.clone(), src.clone())),
            SourceConfig::Modbus(m) => by_bus.entry(m.bus.clone()).or_default().push(s.clone()),
            SourceConfig::I2c(i) => by_i2c.entry(i.bus.clone()).or_default().push(s.clone()),
            // Computed by the alarm engine from other sensors: no source to run.
            SourceConfig::Derived => {}
        }
    }
    for (interval, sensors) in by_interval {
        let fp: Vec<_> = sensors.iter().map(|(s, src)| (&s.id, src)).collect();
        out.push(Group {
            key: format!("sim:{}", interval.as_millis()),
            fingerprint: serde_json::to_string(&fp).unwrap_or_default(),
            kind: GroupKind::Simulated(interval, sensors),
        });
    }
    for (bus, sensors) in by_i2c {
        #[cfg(feature = "i2c")]
        if let Some(b) = cfg.i2c.iter().find(|b| b.name == bus) {
            let fp: Vec<_> = sensors
                .iter()
                .map(|s| (&s.id, &s.source, &s.interval))
                .collect();
            out.push(Group {
                key: format!("i2c:{bus}"),
                fingerprint: serde_json::to_string(&(b, fp)).unwrap_or_default(),
                kind: GroupKind::I2c(b.clone(), sensors),
            });
        }
        #[cfg(not(feature = "i2c"))]
        tracing::error!(bus = %bus, sensors = sensors.len(), "I2C support is not compiled into this build; these sensors will go offline.");
    }
    for (bus, sensors) in by_bus {
        #[cfg(feature = "modbus")]
        if let Some(m) = cfg.modbus.iter().find(|m| m.name == bus) {
            let fp: Vec<_> = sensors
                .iter()
                .map(|s| (&s.id, &s.source, &s.interval))
                .collect();
            out.push(Group {
                key: format!("modbus:{bus}"),
                fingerprint: serde_json::to_string(&(m, fp)).unwrap_or_default(),
                kind: GroupKind::Modbus(m.clone(), sensors),
            });
        }
        #[cfg(not(feature = "modbus"))]
        tracing::error!(bus = %bus, sensors = sensors.len(), "Modbus support is not compiled into this build; these sensors will go offline.");
    }
    out
}

/// Start a group's task on `tracker`; it stops when `token` is cancelled.
pub fn spawn(
    group: Group,
    tx: crate::channels::Intake,
    token: CancellationToken,
    tracker: &TaskTracker,
    metrics: &SharedMetrics,
) {
    let metrics = std::sync::Arc::clone(metrics);
    match group.kind {
        GroupKind::Simulated(interval, sensors) => {
            let source = simulated::SimulatedGroup::new(interval, &sensors);
            tracker.spawn(runner::run(source, tx, token, metrics));
        }
        #[cfg(feature = "i2c")]
        GroupKind::I2c(b, sensors) => {
            tracker.spawn(runner::run(
                i2c::I2cBus::new(b, &sensors),
                tx,
                token,
                metrics,
            ));
        }
        #[cfg(feature = "modbus")]
        GroupKind::Modbus(m, sensors) => {
            tracker.spawn(runner::run(
                modbus::ModbusBus::new(m, &sensors),
                tx,
                token,
                metrics,
            ));
        }
    }
}
