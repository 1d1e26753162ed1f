//! What of the alarm engine survives a restart: active alarms, pending delays, the id counter.
//!
//! The snapshot is versioned and restored sensor by sensor: a sensor whose saved state cannot be read by this
//! version starts fresh (logged), the others keep their alarms. Version 1 is the unversioned form of 0.1.
//!
//! Between two full snapshots a commit of alert transitions carries only [`Changes`]: the gateway-wide part and
//! the states of the sensors the transitions belong to, restored over the last full snapshot
//! ([`Engine::restore_changes`]).

use super::alarm::SensorState;
use super::Engine;
use crate::model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The snapshot format written by this version.
pub const SNAPSHOT_VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot<S> {
    #[serde(default = "v1")]
    version: u32,
    counter: u64,
    sensors: HashMap<String, S>,
    /// Operator request ids recently executed (absent before 0.2: none).
    #[serde(default)]
    requests: Vec<super::operator::Seen>,
    /// The alarm-flood window and alarm (absent before 0.3: none).
    #[serde(default)]
    flood: super::manage::Flood,
}

fn v1() -> u32 {
    1
}

/// What changed since the last full snapshot, for a commit of alert transitions (see the module doc).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// The gateway-wide part: a snapshot with no sensors (version, id counter, request ids, flood).
    pub head: String,
    /// `(sensor id, its state as JSON)`, each sensor once.
    pub sensors: Vec<(String, String)>,
}

/// What [`Engine::restore`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    /// Sensors whose state was restored.
    pub sensors: usize,
    /// Sensors whose saved state could not be read (they start fresh).
    pub unreadable: Vec<String>,
}

/// Why a saved alarm state cannot be restored (the engine then starts with no active alarms).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not the JSON of a snapshot.
    #[error("not an alarm snapshot: {0}")]
    NotASnapshot(serde_json::Error),
    /// Written by a newer watchpost.
    #[error("the alarm snapshot is version {0}, newer than this watchpost understands ({SNAPSHOT_VERSION})")]
    Newer(u32),
}

impl Engine {
    /// Serialize the persistent state (active alarms, pending delays, counters).
    pub fn snapshot(&self) -> String {
        self.snapshot_of(
            self.sensors
                .iter()
                .map(|(k, e)| (k.to_string(), &e.state))
                .collect(),
        )
    }

    /// The gateway-wide part with `sensors` as JSON.
    fn snapshot_of<S: Serialize>(&self, sensors: HashMap<String, S>) -> String {
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            counter: self.ids.counter,
            sensors,
            requests: self.requests.iter().cloned().collect(),
            flood: self.flood.clone(),
        };
        serde_json::to_string(&snap).unwrap_or_default()
    }

    /// The gateway-wide part and the states of `sensors` (ids; unknown ones and repeats skipped), for a commit
    /// whose transitions belong to them.
    pub fn changes<'a>(&self, sensors: impl IntoIterator<Item = &'a str>) -> Changes {
        let mut out = Changes {
            head: self.snapshot_of(HashMap::<String, &SensorState>::new()),
            sensors: Vec::new(),
        };
        for id in sensors {
            if out.sensors.iter().any(|(s, _)| s == id) {
                continue;
            }
            if let Some(e) = self.sensors.get(id) {
                let state = serde_json::to_string(&e.state).unwrap_or_default();
                out.sensors.push((id.to_string(), state));
            }
        }
        out
    }

    /// Restore [`Changes`] saved after the full snapshot [`Engine::restore`] took: the gateway-wide part (when
    /// saved) and each sensor's state over what the full snapshot gave it. Fails only as `restore` does, on the
    /// head.
    pub fn restore_changes(
        &mut self,
        head: Option<&str>,
        sensors: &[(String, String)],
        now: Timestamp,
    ) -> Result<Restored, SnapshotError> {
        if let Some(h) = head {
            self.restore(h, now)?;
        }
        let mut done = Restored::default();
        for (k, v) in sensors {
            // Through a Value, as `restore` reads sensors: one deserializer of SensorState in the binary, not two.
            let state = serde_json::from_str(v);
            self.restore_sensor(k, state, "its state from the last full snapshot", &mut done);
        }
        self.started = now;
        Ok(done)
    }

    /// Restore state saved by [`Engine::snapshot`] (this or an earlier version); unknown sensors are ignored.
    /// `now` restarts the staleness clock (downtime does not count as the sensor being silent). Fails only when
    /// the document is not a snapshot at all or is from a newer version.
    pub fn restore(&mut self, json: &str, now: Timestamp) -> Result<Restored, SnapshotError> {
        let snap: Snapshot<serde_json::Value> =
            serde_json::from_str(json).map_err(SnapshotError::NotASnapshot)?;
        if snap.version > SNAPSHOT_VERSION {
            return Err(SnapshotError::Newer(snap.version));
        }
        self.ids.counter = self.ids.counter.max(snap.counter);
        self.requests = snap.requests.into_iter().collect();
        self.flood = snap.flood;
        let mut done = Restored::default();
        for (k, v) in snap.sensors {
            self.restore_sensor(&k, Ok(v), "no active alarms", &mut done);
        }
        self.started = now;
        Ok(done)
    }

    /// Set one sensor's saved state; an unknown sensor is skipped, an unreadable state logged with what the sensor
    /// `keeps` instead.
    fn restore_sensor(
        &mut self,
        id: &str,
        saved: Result<serde_json::Value, serde_json::Error>,
        keeps: &'static str,
        done: &mut Restored,
    ) {
        let Some(e) = self.sensors.get_mut(id) else {
            return;
        };
        match saved.and_then(serde_json::from_value::<SensorState>) {
            Ok(st) => {
                e.state = st;
                done.sensors += 1;
            }
            Err(err) => {
                tracing::warn!(sensor = %id, error = %err, keeps, "Saved alarm state of this sensor is unreadable.");
                done.unreadable.push(id.to_string());
            }
        }
    }
}
