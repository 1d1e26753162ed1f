//! The shadow client against an emulator of the AWS IoT Device Shadow service: it merges updates as AWS does
//! (`null` deletes, objects merge, anything else replaces), keeps a version, enforces the 8 kB limit on the stored
//! desired + reported state, 6 levels of nesting and 64-byte client tokens, and answers 400/404/409/413/429 with
//! AWS's error documents.

use super::*;
use crate::model::{ActiveAlert, AlertType, LatestValue, Severity};
use serde_json::{json, Map, Value};
use std::sync::Arc;

struct Aws {
    base: String,
    exists: bool,
    version: u64,
    reported: Map<String, Value>,
    desired: Map<String, Value>,
    /// Answer the next update with this code instead of processing it.
    force: Option<i64>,
    /// Codes of rejected updates (a get of a shadow that does not exist yet is a normal 404).
    rejected: Vec<i64>,
}

/// An update merged into the stored state as AWS does (also used by the merge-patch tests).
pub(super) fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match v {
            Value::Null => {
                into.remove(k);
            }
            Value::Object(o) => {
                let e = into.entry(k.clone()).or_insert_with(|| json!({}));
                if !e.is_object() {
                    *e = json!({});
                }
                if let Some(m) = e.as_object_mut() {
                    merge(m, o);
                }
            }
            v => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl Aws {
    fn new(thing: &str) -> Aws {
        Aws {
            base: format!("$aws/things/{thing}/shadow"),
            exists: false,
            version: 0,
            reported: Map::new(),
            desired: Map::new(),
            force: None,
            rejected: Vec::new(),
        }
    }
    fn stored_size(&self) -> usize {
        json!({ "desired": self.desired, "reported": self.reported })
            .to_string()
            .len()
    }
    fn reject(&mut self, kind: &str, code: i64, token: &str) -> (String, Vec<u8>) {
        if kind == "update" {
            self.rejected.push(code);
        }
        let body = json!({ "code": code, "message": format!("error {code}"), "timestamp": 1, "clientToken": token });
        (
            format!("{}/{kind}/rejected", self.base),
            body.to_string().into_bytes(),
        )
    }
    /// What the service answers to one publish of the device.
    fn request(&mut self, o: &Out) -> Vec<(String, Vec<u8>)> {
        let v: Value = serde_json::from_str(&o.payload).expect("device sends JSON");
        let token = v["clientToken"].as_str().unwrap_or("").to_string();
        let kind = if o.topic.ends_with("/get") {
            "get"
        } else {
            "update"
        };
        if token.len() > 64 {
            return vec![self.reject(kind, 400, &token)];
        }
        if kind == "get" {
            if !self.exists {
                return vec![self.reject("get", 404, &token)];
            }
            let mut state = json!({ "reported": self.reported, "desired": self.desired });
            if !self.desired.is_empty() {
                state["delta"] = Value::Object(self.desired.clone());
            }
            let body = json!({ "state": state, "version": self.version, "clientToken": token });
            return vec![(
                format!("{}/get/accepted", self.base),
                body.to_string().into_bytes(),
            )];
        }
        if let Some(code) = self.force.take() {
            return vec![self.reject("update", code, &token)];
        }
        if let Some(want) = v.get("version").and_then(Value::as_u64) {
            if want != self.version {
                return vec![self.reject("update", 409, &token)];
            }
        }
        let Some(rep) = v.pointer("/state/reported").and_then(Value::as_object) else {
            return vec![self.reject("update", 400, &token)];
        };
        if depth(&Value::Object(rep.clone())) > 6 {
            return vec![self.reject("update", 400, &token)];
        }
        let before = self.reported.clone();
        merge(&mut self.reported, rep);
        if self.stored_size() > 8192 {
            self.reported = before;
            return vec![self.reject("update", 413, &token)];
        }
        self.exists = true;
        self.version += 1;
        let body =
            json!({ "state": { "reported": rep }, "version": self.version, "clientToken": token });
        vec![(
            format!("{}/update/accepted", self.base),
            body.to_string().into_bytes(),
        )]
    }
}

fn cfg(thing: &str) -> ShadowConfig {
    ShadowConfig {
        thing: thing.into(),
        name: None,
        min_interval: crate::config::Dur(Duration::ZERO),
        apply_desired: false,
    }
}

fn live(sensors: usize, name_len: usize, alerts: usize) -> Live {
    let mut l = Live::default();
    for i in 0..sensors {
        let name = format!("{i:0>width$}", width = name_len);
        l.sensors.insert(
            crate::model::SensorId::new(&name),
            LatestValue {
                v: Some(i as f64),
                ts: 1_700_000_000_000,
                q: "good",
            },
        );
    }
    for i in 0..alerts {
        l.alerts.push(ActiveAlert {
            id: format!("gw:{}:{i}", "s".repeat(40)),
            kind: AlertType::Alert,
            sensor: format!("{i:0>40}"),
            severity: if i % 3 == 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            direction: None,
            since: Timestamp(1_700_000_000_000 + i as i64),
            acked: None,
            shelved_until: None,
            returned: false,
            priority: None,
            stale: false,
        });
    }
    l
}

/// Connect, answer everything, tick until quiet; returns the publishes the device made.
fn run(sh: &mut Shadow, aws: &mut Aws, l: &Live, connect: bool) -> Vec<Out> {
    let m: SharedMetrics = Arc::default();
    let mut sent = Vec::new();
    let mut queue: Vec<Out> = Vec::new();
    if connect {
        queue.push(sh.on_connect());
    }
    for _ in 0..50 {
        if let Some(o) = sh.maybe_update(l, &Backlogs::new(), Timestamp(1)) {
            queue.push(o);
        }
        if queue.is_empty() {
            break;
        }
        for o in std::mem::take(&mut queue) {
            for (t, p) in aws.request(&o) {
                queue.extend(sh.handle(&t, &p, &m));
            }
            sent.push(o);
        }
    }
    sent
}

fn updates(sent: &[Out]) -> Vec<Value> {
    sent.iter()
        .filter(|o| o.topic.ends_with("/update"))
        .map(|o| serde_json::from_str(&o.payload).expect("json"))
        .collect()
}

#[test]
fn first_update_waits_for_the_get_and_carries_the_version() {
    let mut aws = Aws::new("t");
    aws.exists = true;
    aws.version = 41;
    let mut sh = Shadow::new(&cfg("t"), "gw", "watchpost/gw/alerts/#");
    let get = sh.on_connect();
    assert!(
        sh.maybe_update(&live(1, 3, 0), &Backlogs::new(), Timestamp(1))
            .is_none(),
        "no update before the get answer"
    );
    let m: SharedMetrics = Arc::default();
    for (t, p) in aws.request(&get) {
        sh.handle(&t, &p, &m);
    }
    let up = sh
        .maybe_update(&live(1, 3, 0), &Backlogs::new(), Timestamp(1))
        .expect("update");
    let v: Value = serde_json::from_str(&up.payload).expect("json");
    assert_eq!(
        v["version"], 41,
        "optimistic locking with the version from the get"
    );
    assert!(aws.request(&up)[0].0.ends_with("update/accepted"));
}

/// The backlog is every running sink's, by its name: an email route or a sink added later shows without the
/// shadow knowing it.
#[test]
fn the_backlog_names_every_running_sink() {
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), "gw", "watchpost/gw/alerts/#");
    let get = sh.on_connect();
    let m: SharedMetrics = Arc::default();
    for (t, p) in aws.request(&get) {
        sh.handle(&t, &p, &m);
    }
    let backlog = Backlogs::from([("influxdb", 12), ("mqtt", 0), ("email:ops", 3)]);
    let up = sh
        .maybe_update(&live(1, 3, 0), &backlog, Timestamp(1))
        .expect("update");
    assert!(aws.request(&up)[0].0.ends_with("update/accepted"));
    assert_eq!(
        aws.reported["gateway"]["backlog"],
        json!({ "influxdb": 12, "mqtt": 0, "email:ops": 3 })
    );
}

#[test]
fn trimmed_and_removed_sensors_are_deleted_and_the_stored_state_stays_under_8kb() {
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), "gw", "watchpost/gw/alerts/#");
    // 200 sensors with 40-character names and 50 alarms: far more than 8 kB in full.
    run(&mut sh, &mut aws, &live(200, 40, 50), true);
    assert!(aws.stored_size() <= 8192);
    assert!(aws.rejected.is_empty(), "{:?}", aws.rejected);
    assert_eq!(aws.reported["alerts"]["active"], 50);
    assert_eq!(aws.reported["alerts"]["critical"], 17);
    assert!(aws.reported["alerts"]["top"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    // Now only 3 sensors exist: the other stored ones are deleted with null, not left behind.
    run(&mut sh, &mut aws, &live(3, 40, 0), false);
    let stored: Vec<&String> = aws.reported["sensors"]
        .as_object()
        .expect("sensors")
        .keys()
        .collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(aws.reported["alerts"]["active"], 0);
}

#[test]
fn a_restart_learns_the_stored_sensors_and_deletes_the_stale_ones() {
    let mut aws = Aws::new("t");
    run(
        &mut Shadow::new(&cfg("t"), "gw", "a"),
        &mut aws,
        &live(20, 5, 0),
        true,
    );
    assert_eq!(
        aws.reported["sensors"].as_object().map(|o| o.len()),
        Some(20)
    );
    // A new process (new boot id) with fewer sensors: the get tells it what is stored.
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    run(&mut sh, &mut aws, &live(2, 5, 0), true);
    assert_eq!(
        aws.reported["sensors"].as_object().map(|o| o.len()),
        Some(2)
    );
}

#[test]
fn rejections_are_retried_429_backs_off_and_413_shrinks() {
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    aws.force = Some(429);
    let sent = run(&mut sh, &mut aws, &live(5, 5, 1), true);
    assert_eq!(updates(&sent).len(), 1, "429: no immediate retry");
    assert!(sh.retry_at.is_some());
    sh.retry_at = Some(Instant::now() - Duration::from_millis(1));
    run(&mut sh, &mut aws, &live(5, 5, 1), false);
    assert_eq!(
        aws.reported["sensors"].as_object().map(|o| o.len()),
        Some(5),
        "sent again after the back-off"
    );
    aws.force = Some(413);
    let before = sh.budget;
    run(&mut sh, &mut aws, &live(6, 5, 1), false);
    assert!(sh.budget < before);
    assert_eq!(
        aws.reported["sensors"].as_object().map(|o| o.len()),
        Some(6),
        "sent again, smaller budget"
    );
    assert_eq!(aws.rejected, vec![429, 413]);
}

#[test]
fn only_answers_to_own_tokens_count_and_409_regets() {
    let m: SharedMetrics = Arc::default();
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    run(&mut sh, &mut aws, &live(1, 3, 0), true);
    let gets = |sent: &[Out]| sent.iter().filter(|o| o.topic.ends_with("/get")).count();
    // Another client's 409 and 404: ignored.
    for code in [409, 404] {
        let foreign =
            json!({ "code": code, "message": "x", "clientToken": "someone-else-1" }).to_string();
        assert!(sh
            .handle(
                "$aws/things/t/shadow/update/rejected",
                foreign.as_bytes(),
                &m
            )
            .is_empty());
    }
    assert!(sh.version.is_some());
    // Someone else updates the shadow: our next update (with the old version) gets 409 → get → retry.
    aws.version += 1;
    let sent = run(&mut sh, &mut aws, &live(2, 3, 0), false);
    assert_eq!(gets(&sent), 1);
    assert_eq!(aws.rejected, vec![409]);
    assert_eq!(
        aws.reported["sensors"].as_object().map(|o| o.len()),
        Some(2)
    );
}

#[test]
fn a_deleted_and_recreated_shadow_and_absurd_versions_do_not_stall_it() {
    let m: SharedMetrics = Arc::default();
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    run(&mut sh, &mut aws, &live(1, 3, 0), true);
    // A delta with version 2^53 is not believed.
    let huge = json!({ "state": { "x": 1 }, "version": 1u64 << 53 }).to_string();
    sh.handle("$aws/things/t/shadow/update/delta", huge.as_bytes(), &m);
    assert!(sh.delta.is_none());
    // The shadow is deleted and recreated by someone else at version 1.
    aws = Aws::new("t");
    aws.exists = true;
    aws.version = 1;
    run(&mut sh, &mut aws, &live(2, 3, 0), false);
    assert_eq!(
        aws.reported["sensors"].as_object().map(|o| o.len()),
        Some(2),
        "{:?}",
        aws.rejected
    );
    // A stale answer to our own request frees its slot at once.
    let up = sh
        .maybe_update(&live(3, 3, 0), &Backlogs::new(), Timestamp(2))
        .expect("update");
    let tok = serde_json::from_str::<Value>(&up.payload).expect("j")["clientToken"].clone();
    let stale = json!({ "state": {}, "version": 0, "clientToken": tok }).to_string();
    sh.handle("$aws/things/t/shadow/update/accepted", stale.as_bytes(), &m);
    assert!(sh.in_flight.is_empty());
}

#[test]
fn tokens_fit_64_bytes_for_any_gateway_id_and_differ_across_restarts() {
    let id = "压力机生产线三号网关压力机生产线三号网关压力机生产线三号网关";
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), id, "a");
    let sent = run(&mut sh, &mut aws, &live(1, 3, 0), true);
    assert!(aws.rejected.is_empty(), "{:?}", aws.rejected);
    assert!(aws.exists, "the shadow was created");
    for o in &sent {
        let v: Value = serde_json::from_str(&o.payload).expect("json");
        assert!(v["clientToken"].as_str().is_some_and(|t| t.len() <= 64));
    }
    let mut a = Shadow::new(&cfg("t"), id, "a");
    let mut b = Shadow::new(&cfg("t"), id, "a");
    assert_ne!(a.token(), b.token(), "unique across restarts");
}

#[test]
fn a_deep_or_large_desired_is_acknowledged_without_echo() {
    let m: SharedMetrics = Arc::default();
    let mut aws = Aws::new("t");
    aws.exists = true;
    // A legal 6-deep desired of ~7 kB.
    aws.desired.insert(
        "a".into(),
        json!({ "b": { "c": { "d": { "e": "x".repeat(1000) } } } }),
    );
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    run(&mut sh, &mut aws, &live(3, 3, 0), true);
    assert!(aws.rejected.is_empty(), "{:?}", aws.rejected);
    assert_eq!(aws.reported["config"]["applied"], false);
    assert_eq!(aws.reported["config"]["keys"], json!(["a"]));
    // A flood of deltas is handled without a document per delta.
    for i in 0..1000 {
        let d = json!({ "state": { "a": i }, "version": aws.version }).to_string();
        sh.handle("$aws/things/t/shadow/update/delta", d.as_bytes(), &m);
    }
    let sent = run(&mut sh, &mut aws, &live(3, 3, 0), false);
    assert!(updates(&sent).len() <= 1);
    // Garbage is counted, not fatal.
    assert!(sh
        .handle("$aws/things/t/shadow/update/delta", b"{nope", &m)
        .is_empty());
    assert_eq!(m.mqtt_malformed.load(Ordering::Relaxed), 1);
}

#[test]
fn overrides_that_went_leave_reported_alarms_also_across_a_restart() {
    let remote = |alarms: Value| crate::model::RemoteResult {
        applied: true,
        version: Some(3),
        errors: Vec::new(),
        alarms,
    };
    let mut aws = Aws::new("t");
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    let both = json!({"hot": {"warning": {"high": 70}, "delay": "1s"}, "cold": {"deadband": 2}});
    sh.set_remote(remote(both.clone()));
    run(&mut sh, &mut aws, &live(1, 3, 0), true);
    assert_eq!(aws.reported["alarms"], both);
    // A desired `null` for one key: the stored document loses it too (a plain merge would keep it).
    let fewer = json!({"hot": {"warning": {"high": 70}}, "cold": {"deadband": 2}});
    sh.set_remote(remote(fewer.clone()));
    run(&mut sh, &mut aws, &live(1, 3, 0), false);
    assert_eq!(aws.reported["alarms"], fewer);
    // `watchpost config reset-remote` + reload: no overrides are reported.
    sh.set_remote(remote(json!({})));
    let sent = run(&mut sh, &mut aws, &live(1, 3, 0), false);
    assert_eq!(updates(&sent).len(), 1, "one update for the change");
    assert_eq!(aws.reported["alarms"], json!({}));
    // A new process with fewer overrides than the stored document: the get tells it what to delete.
    sh.set_remote(remote(both.clone()));
    run(&mut sh, &mut aws, &live(1, 3, 0), false);
    let mut sh = Shadow::new(&cfg("t"), "gw", "a");
    sh.set_remote(remote(json!({"cold": {"deadband": 2}})));
    run(&mut sh, &mut aws, &live(1, 3, 0), true);
    assert_eq!(aws.reported["alarms"], json!({"cold": {"deadband": 2}}));
    // Quiet once it matches: no update for nothing.
    assert!(updates(&run(&mut sh, &mut aws, &live(1, 3, 0), false)).is_empty());
}
