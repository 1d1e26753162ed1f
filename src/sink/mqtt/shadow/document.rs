//! The reported document: what the gateway tells the shadow, within its size budget (alerts shrink first, then
//! sensors are left out), with `null` for what the stored document holds and this one does not.

use super::summary::alert_summary;
use super::{cut, patch, Backlogs, Shadow, TOP_ALERTS};
use crate::model::{Live, Timestamp};
use std::collections::BTreeSet;

/// A reported document and what it says about the stored one once accepted.
pub(super) struct Reported {
    pub doc: serde_json::Value,
    /// The sensors it holds.
    pub sensors: BTreeSet<String>,
    /// Change detection: the document without its clocks.
    pub key: String,
    /// The `alarms` it sets, when it carries them.
    pub alarms: Option<serde_json::Value>,
}

impl Shadow {
    /// The reported document for `live` within the budget.
    pub(super) fn reported(&self, live: &Live, backlog: &Backlogs, now: Timestamp) -> Reported {
        let mut doc = serde_json::json!({
            "alerts": alert_summary(&live.alerts, &self.alerts_topic, TOP_ALERTS),
            "gateway": {
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.started.elapsed().as_secs(),
                "backlog": backlog,
            },
            "lastUpdate": now.rfc3339(),
        });
        if let Some(r) = &self.remote {
            let errors: Vec<&str> = r.errors.iter().take(10).map(|e| cut(e, 200)).collect();
            doc["config"] = serde_json::json!({
                "applied": r.applied,
                "version": r.version,
                "errors": errors,
            });
            // The overrides in force, so the delta clears once they match `desired` (bounded: a third of the
            // budget; beyond that the cloud side reads `config` only).
            // The shadow merges: an override that went is sent as `null`, or it would stay in `reported`.
            if r.alarms.to_string().len() <= self.budget / 3 {
                doc["alarms"] = patch::merge_patch(&self.cloud_alarms, &r.alarms);
            } else {
                doc["config"]["alarms"] = "too large to report".into();
            }
        } else if let Some(d) = &self.delta {
            doc["config"] = serde_json::json!({
                "applied": false,
                "version": d.version,
                "keys": d.keys,
                "reason": "remote configuration is not supported by this version; edit the config file",
            });
        }
        // Alerts shrink (fewer listed) before the base document may exceed half the budget.
        let mut top = TOP_ALERTS;
        while doc.to_string().len() > self.budget / 2 && top > 0 {
            top /= 2;
            doc["alerts"] = alert_summary(&live.alerts, &self.alerts_topic, top);
        }
        // Sensors in name order while they fit (sizes summed once each: linear in the number of sensors); the
        // ones the stored document holds but this one does not are deleted with `null`.
        let base_len = doc.to_string().len() + r#","sensors":{}"#.len();
        let mut used = base_len;
        let mut sensors = serde_json::Map::new();
        let mut included = BTreeSet::new();
        for (name, value) in &live.sensors {
            let entry = serde_json::to_string(value).unwrap_or_default();
            let cost = serde_json::to_string(name).map(|s| s.len()).unwrap_or(0) + 2 + entry.len();
            if used + cost > self.budget {
                break;
            }
            used += cost;
            if let Ok(v) = serde_json::to_value(value) {
                sensors.insert(name.to_string(), v);
                included.insert(name.to_string());
            }
        }
        for gone in self.cloud_sensors.difference(&included) {
            sensors.insert(gone.clone(), serde_json::Value::Null);
        }
        doc["sensors"] = serde_json::Value::Object(sensors);
        let mut key = doc.clone();
        let alarms = doc
            .get("alarms")
            .and(self.remote.as_ref())
            .map(|r| r.alarms.clone());
        if let Some(o) = key.as_object_mut() {
            o.remove("lastUpdate");
            // What the alarms become, not the patch (its `null`s are gone once it is accepted).
            if let Some(a) = &alarms {
                o.insert("alarms".into(), a.clone());
            }
            if let Some(g) = o.get_mut("gateway").and_then(|g| g.as_object_mut()) {
                g.remove("uptime_s");
            }
        }
        Reported {
            doc,
            sensors: included,
            key: key.to_string(),
            alarms,
        }
    }
}
