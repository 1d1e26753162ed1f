//! Operator commands over MQTT against a real mosquitto: acknowledge (active, and returned to normal), shelve with
//! expiry, out of service and back, refusals and garbage answered, the retained alarm topics following the ISA-18.2
//! states, and a `kill -9` right after a command losing no state change.
mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn config(data: &Path, port: u16) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
location = "lab"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[mqtt.commands]
enabled = true
max_shelve = "1h"

[[sensor]]
id = "hot"
source = {{ simulated = "constant", offset = 90.0 }}
interval = "100ms"
warning = {{ high = 80.0 }}

[[sensor]]
id = "blip"
source = {{ simulated = "script", values = [90.0, 50.0], repeat = false }}
interval = "100ms"
stale_after = "1h"
warning = {{ high = 80.0 }}
"#,
        data.display()
    )
}

/// `watchpost alerts VERB …` against the broker: (exit code, the JSON answer).
fn cli(port: u16, args: &[&str]) -> (i32, serde_json::Value) {
    let broker = format!("mqtt://127.0.0.1:{port}");
    let mut all = vec!["alerts", "--broker", &broker, "--gateway", "gw1"];
    all.extend_from_slice(args);
    let (code, out, err) = run_cli(&all);
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|_| serde_json::json!({"stdout": out, "stderr": err}));
    (code, v)
}

fn events(sub: &Sub) -> Vec<serde_json::Value> {
    sub.on("/events")
        .iter()
        .filter_map(|(p, _)| serde_json::from_str(p).ok())
        .collect()
}

fn wait_event(sub: &Sub, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    wait_for(Duration::from_secs(15), what, || {
        events(sub).into_iter().find(|e| f(e))
    })
}

/// The retained message on `alerts/{sensor}/{alarm}` a new subscriber gets (None: nothing retained).
fn retained(port: u16, topic: &str) -> Option<serde_json::Value> {
    // Retained messages come right after the SUBACK; a marker published after it bounds the wait.
    let marker = format!("{topic}-marker-{}", fastrand::u32(..));
    let s = Sub::start(
        port,
        &format!("probe-{}", fastrand::u32(..)),
        true,
        &[topic, &marker],
    );
    let m = Sub::start(port, &format!("marker-{}", fastrand::u32(..)), true, &[]);
    let _ = m
        .client
        .publish(marker.clone(), rumqttc::QoS::AtLeastOnce, false, "x");
    wait_for(Duration::from_secs(10), "marker", || {
        (!s.on(&marker).is_empty()).then_some(())
    });
    s.stop();
    m.stop();
    s.on(topic)
        .into_iter()
        .find(|(p, r)| *r && !p.is_empty())
        .and_then(|(p, _)| serde_json::from_str(&p).ok())
}

#[test]
fn acknowledge_shelve_and_out_of_service_over_mqtt() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let port = broker.port;
    let sub = Sub::start(
        port,
        "watcher",
        true,
        &["watchpost/gw1/events", "watchpost/gw1/commands/response"],
    );
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());

    let hot = wait_event(&sub, "hot raised", |e| {
        e["sensor"] == "hot" && e["state"] == "raised"
    });
    assert_eq!(hot["acked"], false, "{hot}");
    let hot_id = hot["id"].as_str().expect("id").to_string();
    let blip = wait_event(&sub, "blip cleared", |e| {
        e["sensor"] == "blip" && e["state"] == "cleared"
    });
    assert_eq!(
        blip["acked"], false,
        "returned to normal unacknowledged: {blip}"
    );
    let blip_id = blip["id"].as_str().expect("id").to_string();
    assert_eq!(
        retained(port, "watchpost/gw1/alerts/blip/high").map(|v| v["state"].clone()),
        Some("cleared".into()),
        "an unacknowledged cleared alarm stays on its retained topic"
    );

    // Acknowledge the active alarm; a second ack is refused with the reason.
    let (code, a) = cli(port, &["ack", &hot_id, "--by", "alice", "--note", "seen"]);
    assert_eq!(
        (code, &a["status"]),
        (0, &serde_json::json!("accepted")),
        "{a}"
    );
    assert_eq!(a["alert_ids"], serde_json::json!([hot_id]));
    let ev = wait_event(&sub, "hot acknowledged", |e| {
        e["id"] == hot_id.as_str() && e["state"] == "acknowledged"
    });
    assert_eq!(
        (&ev["by"], &ev["note"], &ev["active"]),
        (&"alice".into(), &"seen".into(), &true.into())
    );
    let (code, a) = cli(port, &["ack", &hot_id, "--by", "alice"]);
    assert_eq!(code, 1, "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap_or("")
            .contains("already acknowledged"),
        "{a}"
    );

    // Acknowledge the returned alarm: its retained topic empties.
    let (code, a) = cli(port, &["ack", &blip_id, "--by", "alice"]);
    assert_eq!(code, 0, "{a}");
    wait_for(
        Duration::from_secs(10),
        "blip's retained topic removed",
        || {
            retained(port, "watchpost/gw1/alerts/blip/high")
                .is_none()
                .then_some(())
        },
    );

    // Shelve over the cap: refused; within it: shelved, then announced again when it expires.
    let (code, a) = cli(
        port,
        &["shelve", &hot_id, "--duration", "2h", "--by", "bob"],
    );
    assert_eq!(code, 1, "{a}");
    assert!(
        a["reason"].as_str().unwrap_or("").contains("over the cap"),
        "{a}"
    );
    let (code, a) = cli(
        port,
        &["shelve", &hot_id, "--duration", "2s", "--by", "bob"],
    );
    assert_eq!(code, 0, "{a}");
    let sh = wait_event(&sub, "shelved", |e| {
        e["id"] == hot_id.as_str() && e["state"] == "shelved"
    });
    assert!(sh["shelved_until"].is_string(), "{sh}");
    let un = wait_event(&sub, "shelf expired", |e| {
        e["id"] == hot_id.as_str() && e["state"] == "unshelved"
    });
    assert_eq!(
        (&un["active"], &un["reason"]),
        (&true.into(), &"shelf expired".into())
    );

    // Out of service: the alarm clears, nothing is raised while out; back in service: evaluated again.
    let (code, a) = cli(
        port,
        &[
            "out-of-service",
            "hot",
            "--by",
            "carol",
            "--note",
            "recalibration",
        ],
    );
    assert_eq!(code, 0, "{a}");
    wait_event(&sub, "hot cleared by out of service", |e| {
        e["id"] == hot_id.as_str() && e["state"] == "cleared"
    });
    let oos = wait_event(&sub, "OUT_OF_SERVICE raised", |e| {
        e["type"] == "OUT_OF_SERVICE" && e["state"] == "raised"
    });
    assert_eq!(oos["by"], "carol");
    assert!(retained(port, "watchpost/gw1/alerts/hot/out_of_service").is_some());
    assert!(
        retained(port, "watchpost/gw1/alerts/hot/high").is_none(),
        "removed from service, not latched"
    );

    // Garbage and unknown commands are answered and counted; the daemon goes on.
    let g = Sub::start(port, "garbage", true, &[]);
    for (verb, body) in [
        ("ack", "not json"),
        ("reboot", r#"{"by":"x","request_id":"g2"}"#),
        ("ack", ""),
    ] {
        let _ = g.client.publish(
            format!("watchpost/gw1/commands/{verb}"),
            rumqttc::QoS::AtLeastOnce,
            false,
            body,
        );
    }
    wait_for(Duration::from_secs(10), "garbage answered", || {
        let answers = sub.on("/commands/response");
        let rejected = answers
            .iter()
            .filter(|(p, _)| p.contains("\"rejected\""))
            .count();
        (answers
            .iter()
            .any(|(p, _)| p.contains("unknown command") && p.contains("g2"))
            && rejected >= 4)
            .then_some(())
    });

    // kill -9 right after the in_service answer: the change is in the store, so after a restart the sensor is in
    // service (a second in_service is refused) and its alarm is evaluated again.
    let (code, a) = cli(port, &["in-service", "hot", "--by", "carol"]);
    assert_eq!(code, 0, "{a}");
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    // The broker publishes the gateway's will; a command given now waits for the gateway instead of being dropped
    // by a broker with nobody subscribed (it is sent once the restarted gateway says "online", which it publishes
    // only after subscribing to its commands).
    wait_for(Duration::from_secs(10), "the will: offline", || {
        retained(port, "watchpost/gw1/status").filter(|v| v["state"] == "offline")
    });
    let broker_url = format!("mqtt://127.0.0.1:{port}");
    let mut waiting = std::process::Command::new(common::bin())
        .args(["alerts", "--broker", &broker_url, "--gateway", "gw1"])
        .args(["in-service", "hot", "--by", "carol"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cli");
    let mut err = std::io::BufReader::new(waiting.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).expect("stderr line");
    assert!(line.contains("the gateway is offline"), "{line}");
    let mut d = start_daemon(&cfg, dir.path());
    let again = wait_event(&sub, "hot raised again", |e| {
        e["sensor"] == "hot"
            && e["type"] == "ALERT"
            && e["state"] == "raised"
            && e["id"] != hot_id.as_str()
    });
    assert_eq!(again["acked"], false);
    let out = waiting.wait_with_output().expect("cli");
    let a: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| serde_json::json!({"stdout": String::from_utf8_lossy(&out.stdout)}));
    assert_eq!(out.status.code(), Some(1), "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not out of service"),
        "{a}"
    );
    let stored: Vec<_> = with_store(&data, Vec::new(), |s| s.all_events())
        .into_iter()
        .map(|(_, a)| (a.id, a.state.as_str().to_string()))
        .collect();
    for want in ["acknowledged", "shelved", "unshelved"] {
        assert!(
            stored.iter().any(|(id, s)| *id == hot_id && s == want),
            "{want} stored: {stored:?}"
        );
    }
    // Every event, operator events included, matches the published schema.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alert.schema.json"),
    )
    .expect("schema");
    let schema =
        jsonschema::validator_for(&serde_json::from_str(&text).expect("json")).expect("schema");
    for e in events(&sub) {
        assert!(schema.is_valid(&e), "{e}");
    }
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_command_killed_before_its_answer_is_either_fully_applied_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let port = broker.port;
    let sub = Sub::start(port, "watcher", true, &["watchpost/gw1/events"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    wait_event(&sub, "hot raised", |e| {
        e["sensor"] == "hot" && e["state"] == "raised"
    });
    // Publish the command and kill the daemon at once, without waiting for the answer.
    let p = Sub::start(port, "operator", true, &[]);
    let _ = p.client.publish(
        "watchpost/gw1/commands/out_of_service",
        rumqttc::QoS::AtLeastOnce,
        false,
        r#"{"sensor":"hot","by":"dave"}"#,
    );
    std::thread::sleep(Duration::from_millis(fastrand::u64(0..30)));
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    let stored_oos = || {
        with_store(&data, Vec::new(), |s| s.all_events())
            .into_iter()
            .any(|(_, a)| a.kind == watchpost::model::AlertType::OutOfService)
    };
    let was_applied = stored_oos();
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "online", || {
        (retained(port, "watchpost/gw1/status").is_some_and(|s| s["state"] == "online"))
            .then_some(())
    });
    // The engine's state agrees with the stored events: in_service is accepted exactly when out_of_service was.
    let (code, a) = cli(port, &["in-service", "hot", "--by", "dave"]);
    assert_eq!(
        code == 0,
        was_applied,
        "stored OUT_OF_SERVICE: {was_applied}; answer {a}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

/// `watchpost alerts --config gw.toml` speaks to the gateway's own broker as that gateway (broker, gateway id,
/// prefix, TLS and credentials from the file): an operator on the gateway repeats none of it. Before, it went to
/// mqtt://127.0.0.1:1883 whatever the config said.
#[test]
fn alerts_takes_the_broker_and_gateway_from_the_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let port = broker.port;
    let sub = Sub::start(port, "watcher", true, &["watchpost/gw1/events"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port)).expect("write");
    let _d = start_daemon(&cfg, dir.path());
    let hot = wait_event(&sub, "hot raised", |e| {
        e["sensor"] == "hot" && e["state"] == "raised"
    });
    let id = hot["id"].as_str().expect("id").to_string();
    let (code, out, err) = run_cli(&[
        "alerts",
        "--config",
        cfg.to_str().expect("utf8"),
        "ack",
        &id,
        "--by",
        "alice",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(out.trim()).expect("answer");
    assert_eq!(answer["status"], "accepted", "{answer}");
}
