//! Sources: where readings come from. Sources only read; the runner owns the schedule.
//!
//! Sensors are grouped by what they share: each simulated sensor is its own group; all sensors of one
//! `[[modbus]]` device or RTU line form one group served by one task (a bus is used by one request at a time).
//! On reload, only groups whose configuration changed are restarted.

pub mod decode;
#[cfg(feature = "modbus")]
pub mod modbus;
pub mod simulated;

use crate::config::{Config, SensorConfig};
use crate::model::Reading;
use std::collections::BTreeMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A unit of source scheduling: one task.
pub struct Group {
    /// Stable key (`sim:<sensor>`, `modbus:<name>`).
    pub key: String,
    /// Serialized config; a change restarts the group.
    pub fingerprint: String,
    kind: GroupKind,
}

enum GroupKind {
    Simulated(Box<SensorConfig>),
    #[cfg(feature = "modbus")]
    Modbus(crate::config::ModbusConfig, Vec<SensorConfig>),
}

/// Split the config's sensors into scheduling groups.
pub fn groups(cfg: &Config) -> Vec<Group> {
    let mut out = Vec::new();
    let mut by_bus: BTreeMap<String, Vec<SensorConfig>> = BTreeMap::new();
    for s in &cfg.sensor {
        if s.source.simulated.is_some() {
            out.push(Group {
                key: format!("sim:{}", s.id),
                fingerprint: serde_json::to_string(&(&s.source, &s.interval)).unwrap_or_default(),
                kind: GroupKind::Simulated(Box::new(s.clone())),
            });
        } else if let Some(bus) = &s.source.modbus {
            by_bus.entry(bus.clone()).or_default().push(s.clone());
        }
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
    tx: mpsc::Sender<Reading>,
    token: CancellationToken,
    tracker: &TaskTracker,
    metrics: &crate::metrics::SharedMetrics,
) {
    match group.kind {
        GroupKind::Simulated(s) => {
            tracker.spawn(simulated::run(*s, tx, token));
        }
        #[cfg(feature = "modbus")]
        GroupKind::Modbus(m, sensors) => {
            tracker.spawn(modbus::run(
                m,
                sensors,
                tx,
                token,
                std::sync::Arc::clone(metrics),
            ));
        }
    }
    #[cfg(not(feature = "modbus"))]
    let _ = metrics;
}
