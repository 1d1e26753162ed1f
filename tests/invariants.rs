//! The core's invariants where new surfaces meet it (design.md §0), against a real mosquitto: no single item stops a
//! stream (an alert event larger than the broker takes is dead-lettered, announced, and the feed goes on), and an
//! operator command runs once (a retained command is refused, a repeated `request_id` is not executed again, also
//! across a restart).
mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

fn config(data: &Path, port: u16, mqtt_extra: &str, sensors: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[mqtt]
url = "mqtt://127.0.0.1:{port}"
{mqtt_extra}

{sensors}
"#,
        data.display()
    )
}

fn json(p: &str) -> serde_json::Value {
    serde_json::from_str(p).expect("json payload")
}

/// One event far over `max_message_size` (its sensor's unit is 6 kB) ahead of an ordinary one: the big one is
/// dead-lettered with a DEAD_LETTER event, the ordinary one is delivered after it, and the feed's cursor reaches the
/// end of the store. Before the fix the feed reconnected forever behind the big event and nothing after it went out.
#[test]
fn an_event_larger_than_the_broker_takes_is_dead_lettered_and_the_feed_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let sub = Sub::start(broker.port, "viewer", true, &["watchpost/gw1/events"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let unit = "x".repeat(6000);
    let sensors = format!(
        r#"
[[sensor]]
id = "huge"
source = {{ simulated = "constant", offset = 90.0 }}
interval = "100ms"
unit = "{unit}"
warning = {{ high = 80.0 }}

[[sensor]]
id = "later"
source = {{ simulated = "script", values = [10.0, 10.0, 10.0, 10.0, 10.0, 90.0], repeat = false }}
interval = "100ms"
warning = {{ high = 80.0 }}
"#
    );
    std::fs::write(
        &cfg,
        config(&data, broker.port, "max_message_size = \"4KiB\"", &sensors),
    )
    .expect("write config");
    let d = start_daemon(&cfg, dir.path());
    let events = wait_for(
        Duration::from_secs(20),
        "the later alarm and the DEAD_LETTER event",
        || {
            let e: Vec<serde_json::Value> =
                sub.on("/events").iter().map(|(p, _)| json(p)).collect();
            let later = e
                .iter()
                .any(|v| v["sensor"] == "later" && v["state"] == "raised");
            let dead = e.iter().any(|v| v["type"] == "DEAD_LETTER");
            (later && dead).then_some(e)
        },
    );
    assert!(
        events.iter().all(|v| v["sensor"] != "huge"),
        "the oversized event was published: {events:?}"
    );
    let dead = events
        .iter()
        .find(|v| v["type"] == "DEAD_LETTER")
        .expect("dead letter");
    let reason = dead["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("sink mqtt")
            && reason.contains("max_message_size")
            && reason.contains("gw1:huge"),
        "the DEAD_LETTER event says what was skipped and why: {reason}"
    );
    // Every event in the store is behind the feed's cursor, and the skip is recorded once.
    wait_for(
        Duration::from_secs(10),
        "the mqtt cursor at the end",
        || {
            with_store(&data, None, |s| {
                let newest = s.newest()?.1;
                Ok((s.cursor("mqtt", watchpost::store::Stream::Events)? >= newest).then_some(()))
            })
        },
    );
    let log = d.log();
    assert_eq!(
        log.matches("Dead-lettered an item this sink can never carry")
            .count(),
        1,
        "{log}"
    );
}

const COMMANDS: &str = r#"
[mqtt.commands]
enabled = true
max_shelve = "1h"
"#;

const HOT: &str = r#"
[[sensor]]
id = "hot"
source = { simulated = "constant", offset = 90.0 }
interval = "100ms"
warning = { high = 80.0 }
"#;

fn answers(sub: &Sub) -> Vec<serde_json::Value> {
    sub.on("/commands/response")
        .iter()
        .map(|(p, _)| json(p))
        .collect()
}

fn answer_to(sub: &Sub, rid: &str, nth: usize) -> serde_json::Value {
    wait_for(
        Duration::from_secs(15),
        &format!("answer {nth} to {rid}"),
        || {
            answers(sub)
                .into_iter()
                .filter(|a| a["request_id"] == rid)
                .nth(nth)
        },
    )
}

/// A retained `shelve` waiting on the broker is refused (and so not run again at every restart, undoing later
/// actions); an `ack` is executed once per `request_id`: the same id again — right away or after a restart — is
/// answered `rejected` as a duplicate and changes nothing.
#[test]
fn retained_commands_are_refused_and_a_request_id_runs_once_across_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let port = broker.port;
    let sub = Sub::start(
        port,
        "operator",
        true,
        &["watchpost/gw1/events", "watchpost/gw1/commands/response"],
    );
    // An operator's tool published with retain = true before the gateway came up.
    sub.client
        .publish(
            "watchpost/gw1/commands/shelve",
            rumqttc::QoS::AtLeastOnce,
            true,
            r#"{"sensor":"hot","duration":"30m","by":"tool","request_id":"ret-1"}"#,
        )
        .expect("publish retained");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port, COMMANDS, HOT)).expect("write config");
    let mut d = start_daemon(&cfg, dir.path());
    let refused = answer_to(&sub, "ret-1", 0);
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap_or("")
            .contains("retained"),
        "{refused}"
    );
    let raised = wait_for(Duration::from_secs(15), "hot raised", || {
        sub.on("/events")
            .iter()
            .map(|(p, _)| json(p))
            .find(|e| e["sensor"] == "hot" && e["state"] == "raised")
    });
    let id = raised["id"].as_str().expect("id").to_string();
    let ack = format!(r#"{{"id":"{id}","by":"alice","request_id":"ack-1"}}"#);
    let send = |body: &str| {
        sub.client
            .publish(
                "watchpost/gw1/commands/ack",
                rumqttc::QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .expect("publish");
    };
    send(&ack);
    let first = answer_to(&sub, "ack-1", 0);
    assert_eq!(first["status"], "accepted", "{first}");
    send(&ack);
    let again = answer_to(&sub, "ack-1", 1);
    assert_eq!(again["status"], "rejected", "{again}");
    assert!(
        again["reason"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate request_id"),
        "{again}"
    );

    // Restart: the retained shelve is refused again, the request id is still known.
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(15)), Some(0), "{}", d.log());
    let d2 = start_daemon(&cfg, dir.path());
    let refused_again = answer_to(&sub, "ret-1", 1);
    assert_eq!(refused_again["status"], "rejected", "{refused_again}");
    send(&ack);
    let after_restart = answer_to(&sub, "ack-1", 2);
    assert_eq!(after_restart["status"], "rejected", "{after_restart}");
    assert!(
        after_restart["reason"]
            .as_str()
            .unwrap_or("")
            .contains("duplicate request_id"),
        "{after_restart}"
    );
    // In the store: one acknowledgement, no shelf.
    let events = with_store(&data, Vec::new(), |s| s.all_events());
    let acks = events
        .iter()
        .filter(|(_, a)| a.id == id && a.state == watchpost::model::AlertState::Acknowledged)
        .count();
    assert_eq!(acks, 1, "{events:?}");
    assert!(
        events
            .iter()
            .all(|(_, a)| a.state != watchpost::model::AlertState::Shelved),
        "{events:?}"
    );
    drop(d2);
}

/// A reload changes exactly what changed, secrets included: a password file rewritten with the right password and
/// a SIGHUP restart the MQTT sink, which then logs in and delivers what waited in the store. Before, secrets were
/// not part of what a reload compares, and the sink kept the old password until a restart.
#[test]
fn a_rotated_password_file_and_a_reload_restart_the_sink_with_the_new_secret() {
    let dir = tempfile::tempdir().expect("tmp");
    let passwd = dir.path().join("passwd");
    let ok = std::process::Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&passwd)
        .args(["gw", "s3cret"])
        .status()
        .expect("mosquitto_passwd")
        .success();
    assert!(ok);
    let p_pw = free_port();
    let extra = format!(
        "listener {p_pw} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        passwd.display()
    );
    let broker = Mosquitto::start(dir.path(), &extra, false).expect("mosquitto");
    let sub = Sub::start(broker.port, "viewer", true, &["watchpost/gw1/events"]);
    let pwfile = dir.path().join("mqtt.password");
    std::fs::write(&pwfile, "old-and-wrong\n").expect("w");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let body = config(&data, p_pw, "", HOT).replace(
        &format!("url = \"mqtt://127.0.0.1:{p_pw}\""),
        &format!(
            "url = \"mqtt://127.0.0.1:{p_pw}\"\nusername = \"gw\"\npassword_file = \"{}\"",
            pwfile.display()
        ),
    );
    std::fs::write(&cfg, body).expect("write config");
    let d = start_daemon(&cfg, dir.path());
    // The alarm is committed while the broker refuses the login.
    wait_for(Duration::from_secs(15), "the alarm in the store", || {
        let n = with_store(&data, 0, |s| s.counts().map(|c| c.1));
        (n > 0).then_some(())
    });
    assert!(sub.on("/events").is_empty());
    // A refused login is named for what it is (an ERROR with what to check), not a network cut.
    wait_for(Duration::from_secs(15), "the refusal logged", || {
        d.log()
            .contains("The MQTT broker refused the connection")
            .then_some(())
    });
    std::fs::write(&pwfile, "s3cret\n").expect("rotate");
    d.signal(libc::SIGHUP);
    wait_for(
        Duration::from_secs(20),
        "the alarm delivered after the rotation",
        || {
            sub.on("/events")
                .iter()
                .any(|(p, _)| json(p)["sensor"] == "hot")
                .then_some(())
        },
    );
    let log = d.log();
    assert!(
        log.contains("Sink configuration changed; restarting it."),
        "{log}"
    );
}

/// Health is honest: idle connections to the metrics port do not delay a liveness probe (64 idle ones made 8 of
/// 10 probes fail before), nothing unconfigured shows as a sink (the shadow's backlog look-up created a phantom
/// "up" influxdb sink), and a sink a reload removed is gone from `/readyz` and `/metrics`.
#[test]
fn health_answers_beside_idle_connections_and_lists_only_configured_sinks() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let mport = free_port();
    let closed = free_port();
    let body = |influx: bool| {
        let mut extra = String::from("\n[mqtt.shadow]\nthing = \"gw1\"\n");
        extra.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n"));
        if influx {
            extra.push_str(&format!(
                "\n[influxdb]\nurl = \"http://127.0.0.1:{closed}\"\norg = \"o\"\nbucket = \"b\"\n"
            ));
        }
        config(&data, broker.port, &extra, HOT)
    };
    std::fs::write(&cfg, body(true)).expect("write config");
    let d = start_daemon(&cfg, dir.path());
    let ready = wait_for(Duration::from_secs(15), "/readyz", || {
        http_get_status(mport, "/readyz")
    });
    assert!(ready.1.contains("\"influxdb\""), "{ready:?}");
    // A reload without [influxdb]: the sink stops and is no longer reported.
    std::fs::write(&cfg, body(false)).expect("write config");
    d.signal(libc::SIGHUP);
    wait_for(
        Duration::from_secs(15),
        "influxdb gone from /readyz",
        || {
            let (_, b) = http_get_status(mport, "/readyz")?;
            (!b.contains("influxdb")).then_some(())
        },
    );
    let metrics = http_get(mport, "/metrics").expect("metrics");
    assert!(!metrics.contains("sink=\"influxdb\""), "{metrics}");
    // 64 connections that never send a request, then ten probes: each answered at once.
    let idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", mport)).expect("connect"))
        .collect();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let (code, body) = http_get_status(mport, "/healthz").expect("healthz answered");
        assert_eq!(code, 200, "{body}");
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "a probe took {:?} beside idle connections",
            t.elapsed()
        );
    }
    drop(idle);
}

/// With the shadow on and no `[influxdb]`, no influxdb sink appears anywhere.
#[test]
fn the_shadow_does_not_conjure_an_influxdb_sink() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let sub = Sub::start(broker.port, "aws", true, &["$aws/things/gw1/shadow/update"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let mport = free_port();
    let extra = format!(
        "\n[mqtt.shadow]\nthing = \"gw1\"\nmin_interval = \"200ms\"\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n"
    );
    std::fs::write(&cfg, config(&data, broker.port, &extra, HOT)).expect("write config");
    let _d = start_daemon(&cfg, dir.path());
    // A shadow update went out (the backlog look-up ran).
    wait_for(Duration::from_secs(15), "a shadow update", || {
        (!sub.on("/update").is_empty()).then_some(())
    });
    let (_, ready) = http_get_status(mport, "/readyz").expect("readyz");
    assert!(!ready.contains("influxdb"), "{ready}");
    let metrics = http_get(mport, "/metrics").expect("metrics");
    assert!(!metrics.contains("sink=\"influxdb\""), "{metrics}");
}

/// A retained message over the client's incoming limit (5 MB on a commands topic) must not break the session it
/// arrives on in a loop: the subscription it comes on is found and left out (an ERROR names it), and alerts flow.
/// Before, the connection broke at every subscription: 59 reconnects in 30 s and almost no alert delivered.
#[test]
fn an_oversized_retained_message_costs_its_subscription_not_the_alerts() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let sub = Sub::start(broker.port, "viewer", true, &["watchpost/gw1/events"]);
    // A client that may publish 5 MB.
    let mut o = rumqttc::MqttOptions::new("big", "127.0.0.1", broker.port);
    o.set_max_packet_size(16 << 20, 16 << 20);
    let (big, mut conn) = rumqttc::Client::new(o, 10);
    big.publish(
        "watchpost/gw1/commands/ack",
        rumqttc::QoS::AtLeastOnce,
        true,
        vec![b'x'; 5 << 20],
    )
    .expect("publish");
    for ev in conn.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = ev {
            break;
        }
    }
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "swing"
source = { simulated = "script", values = [90.0, 50.0], repeat = true }
interval = "200ms"
warning = { high = 80.0 }
"#;
    std::fs::write(&cfg, config(&data, broker.port, COMMANDS, sensors)).expect("write config");
    let d = start_daemon(&cfg, dir.path());
    // Alarms keep coming (raised, cleared, …) and keep arriving.
    wait_for(Duration::from_secs(30), "40 alert events delivered", || {
        (sub.on("/events").len() >= 40).then_some(())
    });
    let log = d.log();
    assert!(
        log.contains("the subscription is left out") && log.contains("watchpost/gw1/commands/#"),
        "{log}"
    );
    let connects = log.matches("MQTT connected.").count();
    // One that broke over it, one that found it, one that stays.
    assert!(connects <= 3, "{connects} connections: {log}");
}
