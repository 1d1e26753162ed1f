//! The AWS IoT Device Shadow client as a state machine: no I/O, it returns the publishes to make.

use crate::config::ShadowConfig;
use crate::metrics::SharedMetrics;
use crate::model::{Live, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Largest reported-state document (AWS IoT limit is 8 KB of state).
pub const SHADOW_MAX_BYTES: usize = 8000;
/// Shadow requests allowed in flight.
pub const SHADOW_MAX_INFLIGHT: usize = 10;

/// Device shadow state machine (no I/O: returns the publishes to make).
pub struct Shadow {
    base: String,
    min_interval: Duration,
    last_sent: Option<Instant>,
    last_doc: Option<String>,
    version: u64,
    pending: HashMap<String, Instant>,
    counter: u64,
    dirty: bool,
    desired: Option<serde_json::Value>,
    started: Instant,
    device: String,
}

/// A publish the shadow wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// Topic.
    pub topic: String,
    /// JSON payload.
    pub payload: String,
    /// Retain flag.
    pub retain: bool,
}

impl Shadow {
    /// For a thing (and optional named shadow).
    pub fn new(c: &ShadowConfig, device: &str) -> Self {
        let base = match &c.name {
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", c.thing),
            None => format!("$aws/things/{}/shadow", c.thing),
        };
        Shadow {
            base,
            min_interval: c.min_interval.0,
            last_sent: None,
            last_doc: None,
            version: 0,
            pending: HashMap::new(),
            counter: 0,
            dirty: true,
            desired: None,
            started: Instant::now(),
            device: device.to_string(),
        }
    }

    /// Topics to subscribe to before publishing anything.
    pub fn subscriptions(&self) -> Vec<String> {
        [
            "update/accepted",
            "update/rejected",
            "update/delta",
            "get/accepted",
            "get/rejected",
        ]
        .iter()
        .map(|s| format!("{}/{s}", self.base))
        .collect()
    }

    fn token(&mut self, kind: &str) -> String {
        self.counter += 1;
        // ≤ 64 bytes: kind, a counter and at most 40 bytes of the device id.
        let dev: String = self.device.chars().take(40).collect();
        format!("{dev}-{kind}-{}", self.counter)
    }

    /// After (re)connect: clear in-flight requests and `get` the shadow.
    pub fn on_connect(&mut self) -> Out {
        self.pending.clear();
        self.dirty = true;
        self.get()
    }

    fn get(&mut self) -> Out {
        let t = self.token("get");
        self.pending.insert(t.clone(), Instant::now());
        Out {
            topic: format!("{}/get", self.base),
            payload: serde_json::json!({ "clientToken": t }).to_string(),
            retain: false,
        }
    }

    /// The reported document for `live`, trimmed to fit; returns (json of reported, trimmed sensor count).
    pub fn reported(
        &self,
        live: &Live,
        backlog: (i64, i64),
        now: Timestamp,
    ) -> (serde_json::Value, usize) {
        let mut sensors: BTreeMap<&String, &crate::model::LatestValue> =
            live.sensors.iter().collect();
        let mut trimmed = 0;
        loop {
            let mut doc = serde_json::json!({
                "alerts": live.alerts,
                "sensors": sensors,
                "gateway": {
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_s": self.started.elapsed().as_secs(),
                    "backlog": { "influxdb": backlog.0, "mqtt": backlog.1 },
                },
                "lastUpdate": now.rfc3339(),
            });
            if let Some(d) = &self.desired {
                doc["config"] = serde_json::json!({
                    "applied": false,
                    "reason": "remote configuration is not supported by this version; edit the config file",
                    "desired": d,
                });
            }
            let len = doc.to_string().len();
            if len <= SHADOW_MAX_BYTES || sensors.is_empty() {
                return (doc, trimmed);
            }
            let last = sensors.keys().next_back().copied();
            if let Some(k) = last {
                sensors.remove(k);
                trimmed += 1;
            }
        }
    }

    /// An update to publish now, if due and changed.
    pub fn maybe_update(
        &mut self,
        live: &Live,
        backlog: (i64, i64),
        now: Timestamp,
    ) -> Option<Out> {
        if self.pending.len() >= SHADOW_MAX_INFLIGHT {
            // Requests lost with a connection are forgotten after a minute.
            self.pending
                .retain(|_, t| t.elapsed() < Duration::from_secs(60));
            if self.pending.len() >= SHADOW_MAX_INFLIGHT {
                return None;
            }
        }
        if self
            .last_sent
            .is_some_and(|t| t.elapsed() < self.min_interval)
        {
            return None;
        }
        let (reported, trimmed) = self.reported(live, backlog, now);
        let mut key = reported.clone();
        if let Some(o) = key.as_object_mut() {
            o.remove("lastUpdate");
            if let Some(g) = o.get_mut("gateway").and_then(|g| g.as_object_mut()) {
                g.remove("uptime_s");
            }
        }
        let key = key.to_string();
        if !self.dirty && self.last_doc.as_deref() == Some(key.as_str()) {
            return None;
        }
        if trimmed > 0 {
            tracing::warn!(
                trimmed,
                "Shadow document over 8 KB: left out the last sensors (alerts are always kept)."
            );
        }
        let t = self.token("upd");
        self.pending.insert(t.clone(), Instant::now());
        self.last_sent = Some(Instant::now());
        self.last_doc = Some(key);
        self.dirty = false;
        Some(Out {
            topic: format!("{}/update", self.base),
            payload: serde_json::json!({ "state": { "reported": reported }, "clientToken": t })
                .to_string(),
            retain: false,
        })
    }

    /// `o` (from [`Shadow::maybe_update`]) could not be queued: forget it was sent, so the next tick sends again.
    pub fn unsent(&mut self, o: &Out) {
        if let Some(t) = serde_json::from_str::<serde_json::Value>(&o.payload)
            .ok()
            .and_then(|v| {
                v.get("clientToken")
                    .and_then(|t| t.as_str())
                    .map(String::from)
            })
        {
            self.pending.remove(&t);
        }
        self.last_doc = None;
        self.last_sent = None;
        self.dirty = true;
    }

    /// Handle a message on a shadow topic; returns publishes to make (e.g. a re-`get` after 409).
    pub fn handle(&mut self, topic: &str, payload: &[u8], metrics: &SharedMetrics) -> Vec<Out> {
        let Some(kind) = topic
            .strip_prefix(&self.base)
            .map(|s| s.trim_start_matches('/'))
        else {
            return Vec::new();
        };
        let v: serde_json::Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                metrics.mqtt_malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, error = %e, "Ignoring a malformed shadow message.");
                return Vec::new();
            }
        };
        if let Some(ver) = v.get("version").and_then(|x| x.as_u64()) {
            if ver < self.version {
                tracing::debug!(
                    topic,
                    version = ver,
                    seen = self.version,
                    "Dropping an out-of-date shadow message."
                );
                return Vec::new();
            }
            self.version = ver;
        }
        let token = v
            .get("clientToken")
            .and_then(|t| t.as_str())
            .map(String::from);
        if let Some(t) = &token {
            if kind.ends_with("accepted") || kind.ends_with("rejected") {
                self.pending.remove(t);
            }
        }
        match kind {
            "update/rejected" | "get/rejected" => {
                let code = v.get("code").and_then(|c| c.as_i64()).unwrap_or(0);
                let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
                if kind == "get/rejected" && code == 404 {
                    tracing::info!(
                        "No shadow document yet; it will be created by the next update."
                    );
                    self.dirty = true;
                    return Vec::new();
                }
                tracing::warn!(
                    topic = kind,
                    code,
                    message = msg,
                    "Shadow request rejected."
                );
                if code == 409 {
                    self.dirty = true;
                    self.last_sent = None;
                    return vec![self.get()];
                }
                Vec::new()
            }
            "update/delta" => {
                let state = v.get("state").cloned().unwrap_or(serde_json::Value::Null);
                if !state.is_object() {
                    tracing::warn!("Ignoring a shadow delta without a state object.");
                    return Vec::new();
                }
                tracing::info!(desired = %state, "Shadow delta received; remote configuration is not applied by this version.");
                self.desired = Some(state);
                self.dirty = true;
                self.last_sent = None;
                Vec::new()
            }
            "get/accepted" => {
                if let Some(d) = v.pointer("/state/delta") {
                    if d.is_object() {
                        tracing::info!(desired = %d, "Shadow has desired state that differs; not applied by this version.");
                        self.desired = Some(d.clone());
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ShadowConfig;
    use crate::model::Live;
    use std::sync::Arc;

    #[test]
    fn shadow_versions_tokens_409_and_garbage() {
        let cfg = ShadowConfig {
            thing: "t1".into(),
            name: None,
            min_interval: crate::config::Dur(Duration::from_millis(0)),
        };
        let m: SharedMetrics = Arc::default();
        let mut s = Shadow::new(&cfg, "gw");
        assert_eq!(
            s.subscriptions()[0],
            "$aws/things/t1/shadow/update/accepted"
        );
        let get = s.on_connect();
        assert_eq!(get.topic, "$aws/things/t1/shadow/get");
        let live = Live::default();
        let up = s
            .maybe_update(&live, (0, 0), Timestamp(0))
            .expect("first update");
        let v: serde_json::Value = serde_json::from_str(&up.payload).expect("json");
        assert!(v["clientToken"].as_str().is_some_and(|t| t.len() <= 64));
        assert!(v["state"]["reported"]["gateway"]["version"].is_string());
        // Unchanged: no second update.
        assert!(s.maybe_update(&live, (0, 0), Timestamp(1)).is_none());
        // An update that could not be queued is sent again on the next tick.
        s.unsent(&up);
        let again = s
            .maybe_update(&live, (0, 0), Timestamp(1))
            .expect("re-sent after unsent");
        assert!(s.maybe_update(&live, (0, 0), Timestamp(1)).is_none());
        let _ = again;
        // Garbage is survived.
        assert!(s
            .handle("$aws/things/t1/shadow/update/delta", b"{not json", &m)
            .is_empty());
        // 409 → re-get and a new update.
        let out = s.handle(
            "$aws/things/t1/shadow/update/rejected",
            br#"{"code":409,"message":"Version conflict","version":5}"#,
            &m,
        );
        assert_eq!(out[0].topic, "$aws/things/t1/shadow/get");
        assert!(s.maybe_update(&live, (0, 0), Timestamp(2)).is_some());
        // Old version dropped.
        s.handle(
            "$aws/things/t1/shadow/update/delta",
            br#"{"version":3,"state":{"x":1}}"#,
            &m,
        );
        assert!(s.desired.is_none());
        s.handle(
            "$aws/things/t1/shadow/update/delta",
            br#"{"version":6,"state":{"x":1}}"#,
            &m,
        );
        assert!(s.desired.is_some());
        let up = s
            .maybe_update(&live, (0, 0), Timestamp(3))
            .expect("reports not applied");
        assert!(up.payload.contains("\"applied\":false"));
    }

    #[test]
    fn shadow_document_is_trimmed_to_8kb_keeping_alerts() {
        let cfg = ShadowConfig {
            thing: "t".into(),
            name: Some("gw".into()),
            min_interval: crate::config::Dur(Duration::ZERO),
        };
        let s = Shadow::new(&cfg, "gw");
        let mut live = Live::default();
        for i in 0..500 {
            live.sensors.insert(
                format!("sensor_{i:04}"),
                crate::model::LatestValue {
                    v: Some(i as f64),
                    ts: 1,
                    q: "good",
                },
            );
        }
        let (doc, trimmed) = s.reported(&live, (0, 0), Timestamp(0));
        assert!(trimmed > 0);
        assert!(doc.to_string().len() <= SHADOW_MAX_BYTES);
        assert!(doc["alerts"].is_array());
    }
}
