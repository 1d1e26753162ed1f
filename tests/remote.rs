//! Remote alarm settings through the device shadow's `desired` (`apply_desired = true`) against a real mosquitto,
//! the test playing the AWS shadow service: a change applies (and raises within its delay), forbidden and invalid
//! changes are refused with reasons and change nothing, the overlay survives a restart, `check-config --effective`
//! shows it, and `config reset-remote` + SIGHUP restores the file's value. Every change is an audit event.
mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn config(data: &Path, port: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[mqtt.shadow]
thing = "press-3"
min_interval = "200ms"
apply_desired = true

[[sensor]]
id = "hot"
source = {{ simulated = "constant", offset = 75.0 }}
interval = "100ms"
warning = {{ high = 80.0 }}
critical = {{ high = 95.0 }}
"#,
        data.display()
    )
}

const BASE: &str = "$aws/things/press-3/shadow";

/// The AWS shadow service, played by the test: answers every get (with `desired`) and update by clientToken.
struct Aws {
    sub: Sub,
    gets: usize,
    updates: usize,
    version: u64,
    /// Updates before this index are not looked at by [`Aws::reported`] (set at a restart).
    since: usize,
    /// The stored `reported` state, merged as AWS merges updates (`null` deletes).
    stored: serde_json::Value,
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into.as_object_mut(), from.as_object()) {
        (Some(i), Some(f)) => {
            for (k, v) in f {
                if v.is_null() {
                    i.remove(k);
                } else if v.is_object() {
                    let e = i.entry(k.clone()).or_insert_with(|| serde_json::json!({}));
                    if !e.is_object() {
                        *e = serde_json::json!({});
                    }
                    merge(e, v);
                } else {
                    i.insert(k.clone(), v.clone());
                }
            }
        }
        _ => *into = from.clone(),
    }
}

impl Aws {
    fn start(port: u16) -> Aws {
        let sub = Sub::start(
            port,
            "aws",
            true,
            &[&format!("{BASE}/get"), &format!("{BASE}/update")],
        );
        Aws {
            sub,
            gets: 0,
            updates: 0,
            version: 1,
            stored: serde_json::json!({}),
            since: 0,
        }
    }

    fn publish(&self, topic: &str, payload: &str) {
        self.sub
            .client
            .publish(
                format!("{BASE}/{topic}"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
            )
            .expect("publish");
    }

    /// Publish a delta with the next version; returns it.
    fn delta(&mut self, state: &str) -> u64 {
        self.version += 1;
        let v = self.version;
        self.publish(
            "update/delta",
            &format!(r#"{{"state":{state},"version":{v}}}"#),
        );
        v
    }

    fn pump(&mut self, desired: &str) {
        let token = |p: &str| {
            serde_json::from_str::<serde_json::Value>(p)
                .map(|v| v["clientToken"].as_str().unwrap_or("").to_string())
        };
        let gets = self.sub.on("/get");
        for (p, _) in gets.iter().skip(self.gets) {
            let t = token(p).unwrap_or_default();
            let v = self.version;
            self.publish(
                "get/accepted",
                &format!(r#"{{"state":{{"desired":{desired},"reported":{}}},"version":{v},"clientToken":"{t}"}}"#, self.stored),
            );
        }
        self.gets = gets.len();
        let ups = self.sub.on("/update");
        for (p, _) in ups.iter().skip(self.updates) {
            let t = token(p).unwrap_or_default();
            if let Ok(u) = serde_json::from_str::<serde_json::Value>(p) {
                merge(&mut self.stored, &u["state"]["reported"]);
            }
            self.version += 1;
            let v = self.version;
            self.publish(
                "update/accepted",
                &format!(r#"{{"state":{{}},"version":{v},"clientToken":"{t}"}}"#),
            );
        }
        self.updates = ups.len();
    }

    /// The newest reported `config` document once it satisfies `f`.
    fn reported(
        &mut self,
        desired: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        wait_for(Duration::from_secs(15), what, || {
            self.pump(desired);
            self.sub
                .on("/update")
                .into_iter()
                .skip(self.since)
                .rev()
                .filter_map(|(p, _)| serde_json::from_str::<serde_json::Value>(&p).ok())
                .map(|v| v["state"]["reported"].clone())
                .find(|r| f(r))
        })
    }
}

fn events(sub: &Sub) -> Vec<serde_json::Value> {
    sub.on("/events")
        .iter()
        .filter_map(|(p, _)| serde_json::from_str(p).ok())
        .collect()
}

#[test]
fn remote_alarm_settings_through_the_shadow() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let port = broker.port;
    let feed = Sub::start(port, "watcher", true, &["watchpost/gw1/events"]);
    let mut aws = Aws::start(port);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    aws.reported("{}", "first report", |r| r["sensors"]["hot"].is_object());
    assert!(events(&feed).is_empty(), "75 is below the file's 80");

    // A remote change: warning.high 70 with a 1 s on-delay. Applied, audited, reported, and the alarm follows.
    let applied_at = std::time::Instant::now();
    let v = aws.delta(r#"{"alarms":{"hot":{"warning":{"high":70},"delay":"1s"}}}"#);
    let r = aws.reported("{}", "applied", |r| r["config"]["version"] == v);
    assert_eq!(r["config"]["applied"], true);
    assert_eq!(r["alarms"]["hot"]["warning"]["high"], 70, "{r}");
    let audit = wait_for(Duration::from_secs(10), "audit event", || {
        events(&feed)
            .into_iter()
            .find(|e| e["type"] == "CONFIG_CHANGE" && e["state"] == "applied")
    });
    let changes = audit["change"]["changes"]
        .as_array()
        .expect("changes")
        .clone();
    assert!(
        changes.iter().any(|c| c["key"] == "hot.warning"
            && c["old"]["high"] == 80.0
            && c["new"]["high"] == 70),
        "{audit}"
    );
    let raised = wait_for(
        Duration::from_secs(10),
        "raised on the remote limit",
        || {
            events(&feed)
                .into_iter()
                .find(|e| e["type"] == "ALERT" && e["state"] == "raised")
        },
    );
    assert_eq!(raised["threshold"], 70.0);
    assert!(
        applied_at.elapsed() >= Duration::from_secs(1),
        "the remote on-delay holds"
    );

    // Forbidden keys and an invalid value: refused by name, nothing applied.
    let v6 =
        aws.delta(r#"{"gateway":{"id":"evil"},"alarms":{"hot":{"source":{"simulated":"sine"}}}}"#);
    let r = aws.reported("{}", "refused", |r| r["config"]["version"] == v6);
    assert_eq!(r["config"]["applied"], false);
    let errors = r["config"]["errors"].to_string();
    assert!(
        errors.contains("desired.gateway: cannot be set remotely"),
        "{errors}"
    );
    assert!(
        errors.contains("desired.alarms.hot.source: cannot be set remotely"),
        "{errors}"
    );
    aws.publish(
        "update/delta",
        r#"{"state":{"alarms":{"hot":{"warning":{"high":99}}}},"version":7}"#,
    );
    let r = aws.reported("{}", "invalid refused", |r| r["config"]["version"] == 7);
    assert_eq!(r["config"]["applied"], false);
    assert!(
        r["config"]["errors"]
            .to_string()
            .contains("must not be below warning.high"),
        "{r}"
    );
    assert_eq!(
        r["alarms"]["hot"]["warning"]["high"], 70,
        "the applied overrides stand"
    );
    wait_for(Duration::from_secs(10), "two rejected audit events", || {
        (events(&feed)
            .iter()
            .filter(|e| e["type"] == "CONFIG_CHANGE" && e["state"] == "rejected")
            .count()
            >= 2)
            .then_some(())
    });
    assert!(
        !events(&feed)
            .iter()
            .any(|e| e["type"] == "ALERT" && e["state"] == "cleared"),
        "a refused change changes nothing"
    );

    // Restart: the overlay is in the data directory; the alarm stays raised (no clear, no second raise).
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let (code, out, _) = run_cli(&["check-config", "--effective", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "hot.warning = {{\"high\":70}} (remote, shadow version {v}; file: {{\"high\":80.0"
        )),
        "{out}"
    );
    let desired = r#"{"alarms":{"hot":{"warning":{"high":70},"delay":"1s"}}}"#;
    aws.pump(desired);
    aws.since = aws.sub.on("/update").len();
    let restarted = watchpost::model::Timestamp::now();
    let mut d = start_daemon(&cfg, dir.path());
    aws.reported(desired, "report after restart", |r| {
        r["config"]["applied"] == true && r["sensors"]["hot"].is_object()
    });
    // The restarted engine has judged readings (a second raise would be committed with them).
    wait_for(
        Duration::from_secs(10),
        "readings judged after the restart",
        || {
            let n = with_store(&data, 0, |s| {
                let mut n = 0;
                s.export(restarted, Some("hot"), |_| n += 1)?;
                Ok(n)
            });
            (n >= 3).then_some(())
        },
    );
    let stored = with_store(&data, Vec::new(), |s| s.all_events());
    let raises = stored
        .iter()
        .filter(|(_, a)| {
            a.sensor == "hot"
                && a.kind == watchpost::model::AlertType::Alert
                && a.state == watchpost::model::AlertState::Raised
        })
        .count();
    assert_eq!(
        raises, 1,
        "one raise in the store across the restart: {stored:?}"
    );
    let alerts: Vec<_> = events(&feed)
        .into_iter()
        .filter(|e| e["type"] == "ALERT")
        .collect();
    assert_eq!(alerts.len(), 1, "still the one raise: {alerts:?}");

    // reset-remote + SIGHUP: the file's 80 again, and the alarm clears.
    let (code, out, err) = run_cli(&[
        "config",
        "--config",
        cfg.to_str().expect("utf8"),
        "reset-remote",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removed 2 remote override(s)"), "{out}");
    d.signal(libc::SIGHUP);
    wait_for(
        Duration::from_secs(10),
        "cleared on the file's limit",
        || {
            events(&feed)
                .into_iter()
                .find(|e| e["type"] == "ALERT" && e["state"] == "cleared")
        },
    );
    // The shadow merges updates: the removed overrides are deleted from `reported.alarms` with `null` (the
    // operator cleared them from `desired` too, or the next get would set them again).
    wait_for(
        Duration::from_secs(15),
        "the removed overrides reported as gone",
        || {
            aws.pump("{}");
            (aws.stored["alarms"] == serde_json::json!({}) && aws.stored["alerts"]["active"] == 0)
                .then_some(())
        },
    );
    let stored: Vec<String> = with_store(&data, Vec::new(), |s| s.all_events())
        .into_iter()
        .filter(|(_, a)| a.kind == watchpost::model::AlertType::ConfigChange)
        .map(|(_, a)| a.state.as_str().to_string())
        .collect();
    assert!(
        stored.len() >= 3 && stored[0] == "applied",
        "audit trail in the store: {stored:?}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}
