//! The AWS IoT Device Shadow client as a state machine: no I/O, it returns the publishes to make.
//!
//! It follows the AWS shadow service's rules (developerguide "Device Shadow service documents" and "…MQTT topics"):
//! * **Requests are ours or not at all.** Every get/update carries a `clientToken` (≤ 64 bytes, unique across
//!   restarts: device prefix, boot id, counter); `accepted`/`rejected` answers without one of our in-flight tokens
//!   belong to another client and are ignored. Any answer frees its slot; unanswered requests expire after 30 s.
//! * **Optimistic locking.** Updates carry the `version` last seen in an answer to us, so a concurrent writer gives
//!   409, answered by a re-`get` and a retry. The version is forgotten on reconnect and on 404 (a deleted and
//!   recreated shadow starts again at 1); versions above 2^53 are not believed.
//! * **The first update waits for the `get` answer** (or 5 s), so it knows the version and what the stored
//!   document holds. At most one update is in flight.
//! * **The stored document stays small.** AWS merges updates (`null` deletes a key), so sensors that no longer fit
//!   or were removed are reported as `null` (and so are remote alarm overrides that went), and the reported document is kept under a byte budget (7 kB; shrunk by
//!   a quarter after a 413) so reported + desired stay under the 8 kB state limit. Alerts are summarised: counts
//!   per severity, the most severe few, and the MQTT topic where every active alarm is retained.
//! * **Rejections are retried:** 429 and 400 with exponential back-off (1 s … 60 s), 413 with a smaller document,
//!   409 and 404 after a re-`get`. Nothing is recorded as sent until `update/accepted`.
//! * **`desired` is acknowledged, not echoed:** `reported.config = {applied: false, version, keys}` names at most 20
//!   top-level keys, so a deep or large `desired` never makes the reported document invalid.

use crate::config::ShadowConfig;
use crate::metrics::SharedMetrics;
use crate::model::{Live, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Largest reported document before any 413 (AWS allows 8 kB of desired + reported state).
pub const SHADOW_BUDGET: usize = 7000;
/// Shadow requests allowed in flight.
pub const SHADOW_MAX_INFLIGHT: usize = 10;
/// Alerts listed in full in the document (the rest are counted).
const TOP_ALERTS: usize = 10;
/// Versions above this are not believed (JSON numbers lose precision beyond 2^53).
const MAX_VERSION: u64 = (1 << 53) - 1;
/// Largest shadow message handled; bigger ones are dropped and counted.
pub const SHADOW_MAX_MESSAGE: usize = 64 * 1024;
const REQUEST_EXPIRY: Duration = Duration::from_secs(30);
const GET_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Get,
    Update,
}

#[derive(Debug, Clone)]
struct Req {
    kind: Kind,
    sent: Instant,
    /// Update: the change-detection key and the sensors the document holds.
    key: Option<String>,
    sensors: BTreeSet<String>,
    /// Update: the `alarms` the document sets (once accepted, what the cloud's `reported.alarms` is).
    alarms: Option<serde_json::Value>,
}

/// A desired state we acknowledge without applying.
#[derive(Debug, Clone, PartialEq)]
struct DeltaAck {
    version: Option<u64>,
    keys: Vec<String>,
}

/// Device shadow state machine (no I/O: returns the publishes to make).
pub struct Shadow {
    base: String,
    alerts_topic: String,
    min_interval: Duration,
    prefix: String,
    boot: String,
    counter: u64,
    version: Option<u64>,
    got: bool,
    get_sent: Option<Instant>,
    in_flight: HashMap<String, Req>,
    cloud_sensors: BTreeSet<String>,
    /// The stored `reported.alarms` (Null: none), so overrides that went are deleted with `null`.
    cloud_alarms: serde_json::Value,
    last_doc: Option<String>,
    last_sent: Option<Instant>,
    dirty: bool,
    retry_at: Option<Instant>,
    failures: u32,
    budget: usize,
    delta: Option<DeltaAck>,
    started: Instant,
    deltas_logged: Option<Instant>,
    deltas_quiet: u64,
    /// `apply_desired`: hand desired states to the remote-configuration overlay instead of only acknowledging.
    apply: bool,
    /// A desired state waiting to be handed over: (state, version, replace).
    pending: Option<(serde_json::Value, Option<u64>, bool)>,
    /// The outcome of the last remote change (reported as `config` and `alarms`).
    remote: Option<crate::model::RemoteResult>,
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

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn has_null(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

fn version_of(v: &serde_json::Value) -> Option<u64> {
    v.get("version")
        .and_then(serde_json::Value::as_u64)
        .filter(|v| *v <= MAX_VERSION)
}

impl Shadow {
    /// For a thing (and optional named shadow). `alerts_topic` is where every active alarm is retained.
    pub fn new(c: &ShadowConfig, device: &str, alerts_topic: &str) -> Self {
        let base = match &c.name {
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", c.thing),
            None => format!("$aws/things/{}/shadow", c.thing),
        };
        Shadow {
            base,
            alerts_topic: alerts_topic.to_string(),
            min_interval: c.min_interval.0,
            // 32 bytes of the id + '-' + 8 hex + '-' + a counter of at most 20 digits ≤ 62 bytes.
            prefix: cut(device, 32).to_string(),
            boot: format!("{:08x}", fastrand::u32(..)),
            counter: 0,
            version: None,
            got: false,
            get_sent: None,
            in_flight: HashMap::new(),
            cloud_sensors: BTreeSet::new(),
            cloud_alarms: serde_json::Value::Null,
            last_doc: None,
            last_sent: None,
            dirty: true,
            retry_at: None,
            failures: 0,
            budget: SHADOW_BUDGET,
            delta: None,
            started: Instant::now(),
            deltas_logged: None,
            deltas_quiet: 0,
            apply: c.apply_desired,
            pending: None,
            remote: None,
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

    fn token(&mut self) -> String {
        self.counter += 1;
        format!("{}-{}-{}", self.prefix, self.boot, self.counter)
    }

    /// After (re)connect and SUBACK: forget what the connection knew and `get` the shadow.
    pub fn on_connect(&mut self) -> Out {
        self.in_flight.clear();
        self.version = None;
        self.dirty = true;
        self.get()
    }

    fn get(&mut self) -> Out {
        self.got = false;
        self.get_sent = Some(Instant::now());
        let t = self.token();
        self.in_flight.insert(
            t.clone(),
            Req {
                kind: Kind::Get,
                sent: Instant::now(),
                key: None,
                sensors: BTreeSet::new(),
                alarms: None,
            },
        );
        Out {
            topic: format!("{}/get", self.base),
            payload: serde_json::json!({ "clientToken": t }).to_string(),
            retain: false,
        }
    }

    /// An update to publish now, if due, changed and allowed.
    pub fn maybe_update(&mut self, live: &Live, backlog: &Backlogs, now: Timestamp) -> Option<Out> {
        let t0 = Instant::now();
        self.in_flight
            .retain(|_, r| t0.duration_since(r.sent) < REQUEST_EXPIRY);
        if !self.got {
            // The first update waits for the get answer (or gives up waiting).
            match self.get_sent {
                Some(t) if t.elapsed() >= GET_WAIT => self.got = true,
                _ => return None,
            }
        }
        if self.in_flight.values().any(|r| r.kind == Kind::Update)
            || self.in_flight.len() >= SHADOW_MAX_INFLIGHT
        {
            return None;
        }
        if self.retry_at.is_some_and(|t| t0 < t) {
            return None;
        }
        if self
            .last_sent
            .is_some_and(|t| t.elapsed() < self.min_interval)
        {
            return None;
        }
        let Reported {
            doc: reported,
            sensors: included,
            key,
            alarms,
        } = self.reported(live, backlog, now);
        if !self.dirty && self.last_doc.as_deref() == Some(key.as_str()) {
            return None;
        }
        if included.len() < live.sensors.len() {
            tracing::debug!(
                left_out = live.sensors.len() - included.len(),
                budget = self.budget,
                "Shadow document at its size budget: some sensors left out (see the retained MQTT topics)."
            );
        }
        let t = self.token();
        let mut payload =
            serde_json::json!({ "state": { "reported": reported }, "clientToken": t });
        if let Some(v) = self.version {
            payload["version"] = serde_json::json!(v);
        }
        self.in_flight.insert(
            t,
            Req {
                kind: Kind::Update,
                sent: t0,
                key: Some(key),
                sensors: included,
                alarms,
            },
        );
        self.last_sent = Some(t0);
        self.dirty = false;
        Some(Out {
            topic: format!("{}/update", self.base),
            payload: payload.to_string(),
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
            self.in_flight.remove(&t);
        }
        self.last_sent = None;
        self.dirty = true;
    }

    fn back_off(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let secs = 1u64 << self.failures.min(6);
        self.retry_at = Some(Instant::now() + Duration::from_secs(secs.min(60)));
        self.dirty = true;
    }

    /// A desired state for the overlay, once (the session hands it to the daemon): `(state, version, replace)`;
    /// `replace` when it is the whole desired document (a get), not a delta.
    pub fn take_desired(&mut self) -> Option<(serde_json::Value, Option<u64>, bool)> {
        self.pending.take()
    }

    /// The outcome of a remote change, reported in the next update.
    pub fn set_remote(&mut self, r: crate::model::RemoteResult) {
        if self.remote.as_ref() != Some(&r) {
            self.remote = Some(r);
            self.dirty = true;
        }
    }

    fn note_delta(&mut self, state: &serde_json::Value, version: Option<u64>) {
        if self.apply {
            self.pending = Some((state.clone(), version, false));
            return;
        }
        let keys: Vec<String> = state
            .as_object()
            .map(|o| o.keys().take(20).map(|k| cut(k, 64).to_string()).collect())
            .unwrap_or_default();
        let ack = DeltaAck { version, keys };
        if self.delta.as_ref() != Some(&ack) {
            self.delta = Some(ack);
            self.dirty = true;
        }
        // One line a minute at most, with how many were not logged.
        let now = Instant::now();
        if self
            .deltas_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            tracing::info!(
                keys = ?self.delta.as_ref().map(|d| &d.keys),
                version,
                not_logged = self.deltas_quiet,
                "Shadow desired state differs; remote configuration is not applied by this version."
            );
            self.deltas_logged = Some(now);
            self.deltas_quiet = 0;
        } else {
            self.deltas_quiet += 1;
        }
    }

    /// Handle a message on a shadow topic; returns publishes to make (e.g. a re-`get` after 409).
    pub fn handle(&mut self, topic: &str, payload: &[u8], metrics: &SharedMetrics) -> Vec<Out> {
        let Some(kind) = topic
            .strip_prefix(&self.base)
            .map(|s| s.trim_start_matches('/'))
        else {
            return Vec::new();
        };
        if payload.len() > SHADOW_MAX_MESSAGE {
            metrics.mqtt_malformed.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            metrics.mqtt_malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic, "Ignoring a malformed shadow message.");
            return Vec::new();
        };
        let version = version_of(&v);
        if kind == "update/delta" {
            let state = v.get("state").cloned().unwrap_or(serde_json::Value::Null);
            if !state.is_object() || v.get("version").is_some() && version.is_none() {
                metrics.mqtt_malformed.fetch_add(1, Ordering::Relaxed);
                return Vec::new();
            }
            if let (Some(known), Some(ver)) = (self.version, version) {
                if ver < known {
                    tracing::debug!(
                        version = ver,
                        known,
                        "Dropping an out-of-date shadow delta."
                    );
                    return Vec::new();
                }
            }
            self.note_delta(&state, version);
            return Vec::new();
        }
        // Another client's accepted update that removes desired keys (`null`): AWS sends no delta for a removal.
        if self.apply && kind == "update/accepted" {
            let ours = v
                .get("clientToken")
                .and_then(|t| t.as_str())
                .is_some_and(|t| self.in_flight.contains_key(t));
            if let Some(d) = v.pointer("/state/desired").filter(|d| !ours && has_null(d)) {
                self.pending = Some((d.clone(), version, false));
                return Vec::new();
            }
        }
        // Answers: only to our own requests.
        let Some(req) = v
            .get("clientToken")
            .and_then(|t| t.as_str())
            .and_then(|t| self.in_flight.remove(t))
        else {
            return Vec::new();
        };
        match kind {
            "get/accepted" => {
                self.got = true;
                self.version = version.or(self.version);
                self.cloud_sensors = v
                    .pointer("/state/reported/sensors")
                    .and_then(|s| s.as_object())
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                self.cloud_alarms = v
                    .pointer("/state/reported/alarms")
                    .cloned()
                    .unwrap_or_default();
                if self.apply {
                    // The whole desired document is the remote intent: keys removed there leave the overlay.
                    let desired = v
                        .pointer("/state/desired")
                        .filter(|d| d.is_object())
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({}));
                    self.pending = Some((desired, version, true));
                } else if let Some(d) = v.pointer("/state/delta").filter(|d| d.is_object()) {
                    let d = d.clone();
                    self.note_delta(&d, version);
                }
                self.dirty = true;
                Vec::new()
            }
            "get/rejected" => {
                self.got = true;
                let code = v.get("code").and_then(|c| c.as_i64()).unwrap_or(0);
                if code == 404 {
                    tracing::info!("No shadow document yet; the next update creates it.");
                    self.version = None;
                    self.cloud_sensors.clear();
                    self.cloud_alarms = serde_json::Value::Null;
                } else {
                    tracing::warn!(code, "Shadow get rejected.");
                }
                self.dirty = true;
                Vec::new()
            }
            "update/accepted" => {
                self.version = version.or(self.version);
                self.last_doc = req.key;
                self.cloud_sensors = req.sensors;
                if let Some(a) = req.alarms {
                    self.cloud_alarms = a;
                }
                self.failures = 0;
                self.retry_at = None;
                Vec::new()
            }
            "update/rejected" => {
                let code = v.get("code").and_then(|c| c.as_i64()).unwrap_or(0);
                let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
                tracing::warn!(
                    code,
                    message = cut(msg, 200),
                    "Shadow update rejected; it will be sent again."
                );
                self.dirty = true;
                match code {
                    // Someone else changed it (409), or it was deleted (404): learn the version and the stored
                    // document again, then retry.
                    409 | 404 => {
                        self.version = None;
                        if code == 404 {
                            self.cloud_sensors.clear();
                            self.cloud_alarms = serde_json::Value::Null;
                        }
                        self.last_sent = None;
                        vec![self.get()]
                    }
                    413 => {
                        self.budget = (self.budget * 3 / 4).max(1000);
                        self.last_sent = None;
                        Vec::new()
                    }
                    _ => {
                        self.back_off();
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        }
    }
}

mod document;
mod patch;
mod summary;
use document::Reported;

/// Each running sink's backlog by name (`reported.gateway.backlog`): the registered sinks, whichever they are.
pub type Backlogs = BTreeMap<&'static str, i64>;

#[cfg(test)]
mod tests;
