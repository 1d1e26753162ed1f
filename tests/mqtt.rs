//! MQTT sink against a real mosquitto: ordered events, retained state, will, outage with kill -9, TLS, mutual
//! TLS, username/password, and the AWS IoT Device Shadow protocol played by the test.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;

fn config(data: &Path, mqtt: &str, sensors: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
location = "lab"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[mqtt]
{mqtt}

{sensors}
"#,
        data.display()
    )
}

/// Transitions: raised (WARNING), escalated, deescalated, cleared, raised … ending active.
const CYCLE: &str = r#"
[[sensor]]
id = "oil_temp"
source = { simulated = "script", values = [50.0, 90.0, 100.0, 85.0, 50.0, 90.0], repeat = false }
interval = "100ms"
unit = "°C"
warning = { high = 80.0 }
critical = { high = 95.0 }
"#;

fn store_events(data: &Path) -> Vec<(String, String)> {
    with_store(data, Vec::new(), |s| s.all_events())
        .into_iter()
        .map(|(_, a)| {
            (
                a.id,
                serde_json::to_value(a.state).expect("state").to_string(),
            )
        })
        .collect()
}

fn ids_states(msgs: &[(String, bool)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (p, _) in msgs {
        let v: serde_json::Value = serde_json::from_str(p).expect("alert json");
        let k = (
            v["id"].as_str().unwrap_or("").to_string(),
            v["state"].to_string(),
        );
        // At least once: drop immediate duplicates of a re-sent tail.
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alert.schema.json"),
    )
    .expect("schema");
    let v: serde_json::Value = serde_json::from_str(&text).expect("schema json");
    jsonschema::validator_for(&v).expect("valid schema")
}

#[test]
fn events_in_order_retained_state_for_late_subscribers_and_schema() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "early", true, &["watchpost/gw1/#"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        config(
            &data,
            &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
            CYCLE,
        ),
    )
    .expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    let events = wait_for(Duration::from_secs(20), "5 events", || {
        let e = sub.on("/events");
        (e.len() >= 5).then_some(e)
    });
    let states: Vec<String> = events
        .iter()
        .map(|(p, _)| {
            serde_json::from_str::<serde_json::Value>(p).expect("j")["state"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        states,
        ["raised", "escalated", "deescalated", "cleared", "raised"]
    );
    assert!(events.iter().all(|(_, retained)| !retained));
    let validator = schema();
    for (p, _) in sub
        .on("/events")
        .iter()
        .chain(sub.on("/alerts/oil_temp/high").iter())
        .filter(|(p, _)| !p.is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(p).expect("json");
        assert!(validator.is_valid(&v), "schema violation: {p}");
    }
    // The same as the store, in the same order.
    assert_eq!(ids_states(&events), store_events(&data));
    // A late subscriber sees the active alarm on the retained topic, and the status.
    let late = Sub::start(
        broker.port,
        "late",
        true,
        &["watchpost/gw1/alerts/#", "watchpost/gw1/status"],
    );
    let retained = wait_for(Duration::from_secs(10), "retained alert", || {
        let r = late.on("/alerts/oil_temp/high");
        (!r.is_empty()).then_some(r)
    });
    assert!(retained[0].1, "retained flag");
    assert!(retained[0].0.contains("\"state\":\"raised\""));
    wait_for(Duration::from_secs(10), "status online", || {
        late.on("/status")
            .iter()
            .any(|(p, _)| p.contains("\"online\""))
            .then_some(())
    });
    // Clean shutdown publishes offline.
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    wait_for(Duration::from_secs(10), "status offline", || {
        late.on("/status")
            .iter()
            .any(|(p, _)| p.contains("\"offline\""))
            .then_some(())
    });
    // The viewer CLI shows the active alert first.
    let (code, out, err) = run_cli(&[
        "alerts",
        "--broker",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "--gateway",
        "gw1",
        "--count",
        "0",
    ]);
    let _ = (code, err);
    assert!(out.contains("active alerts: 1"), "{out}");
    assert!(
        out.contains("WARNING ALERT raised sensor=oil_temp"),
        "{out}"
    );
}

#[test]
fn will_publishes_offline_on_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "watcher", true, &["watchpost/gw1/status"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        config(
            &data,
            &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
            CYCLE,
        ),
    )
    .expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "online", || {
        sub.on("/status")
            .iter()
            .any(|(p, _)| p.contains("\"online\""))
            .then_some(())
    });
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    wait_for(Duration::from_secs(15), "will", || {
        sub.on("/status")
            .iter()
            .any(|(p, _)| p.contains("\"offline\""))
            .then_some(())
    });
}

#[test]
fn broker_outage_and_kill_9_lose_no_alert() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(dir.path(), "", true)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    // A persistent-session subscriber: the broker queues for it across its own restart.
    let sub = Sub::start(
        broker.port,
        "cloud-function",
        false,
        &["watchpost/gw1/events"],
    );
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensor = r#"
[[sensor]]
id = "flappy"
source = { simulated = "square", min = 0.0, max = 100.0, period = "400ms" }
interval = "50ms"
warning = { high = 50.0 }
"#;
    std::fs::write(
        &cfg,
        config(
            &data,
            &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
            sensor,
        ),
    )
    .expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "first events", || {
        (sub.on("/events").len() >= 2).then_some(())
    });
    broker.stop();
    let n0 = store_events(&data).len();
    wait_for(Duration::from_secs(20), "alerts during outage", || {
        (store_events(&data).len() >= n0 + 6).then_some(())
    });
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
    let mut d = start_daemon(&cfg, dir.path());
    let n1 = store_events(&data).len();
    wait_for(Duration::from_secs(20), "more alerts during outage", || {
        (store_events(&data).len() >= n1 + 4).then_some(())
    });
    broker.restart();
    // Everything the store holds arrives, in order.
    wait_for(Duration::from_secs(40), "all alerts delivered", || {
        let want = store_events(&data);
        let got = ids_states(&sub.on("/events"));
        (got.len() >= want.len() && got[..want.len()] == want[..]).then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let want = store_events(&data);
    let got = ids_states(&sub.on("/events"));
    assert_eq!(got, want, "every alert, in order, none lost");
    let (_, out, _) = run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
    assert!(
        out.contains("sink mqtt        events   pending          0"),
        "{out}"
    );
}

#[test]
fn tls_mutual_tls_and_passwords() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = Certs::make(dir.path())
        .expect("certs: a test server or tool the suite needs (.ci/run installs them)");
    let (p_pw, p_mtls, p_tlspw) = (free_port(), free_port(), free_port());
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
    let c = |f: &str| certs.path(f).display().to_string();
    let extra = format!(
        "listener {p_pw} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n\nlistener {p_mtls} 127.0.0.1\ncafile {ca}\ncertfile {sc}\nkeyfile {sk}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\n\nlistener {p_tlspw} 127.0.0.1\ncafile {ca}\ncertfile {sc}\nkeyfile {sk}\nallow_anonymous false\npassword_file {pw}\n",
        pw = passwd.display(),
        ca = c("ca.crt"),
        sc = c("server.crt"),
        sk = c("server.key")
    );
    let broker = Mosquitto::start(dir.path(), &extra, false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "watcher", true, &["watchpost/+/status"]);
    let pwfile = dir.path().join("mqtt.password");
    std::fs::write(&pwfile, "s3cret\n").expect("w");
    let cases = [
        ("pw", format!("url = \"mqtt://127.0.0.1:{p_pw}\"\nusername = \"gw\"\npassword_file = \"{}\"", pwfile.display())),
        ("mtls", format!("url = \"mqtts://localhost:{p_mtls}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"", c("ca.crt"), c("client.crt"), c("client.key"))),
        ("tlspw", format!("url = \"mqtts://127.0.0.1:{p_tlspw}\"\nca_file = \"{}\"\nusername = \"gw\"\npassword_env = \"TEST_MQTT_PW\"", c("ca.crt"))),
    ];
    std::env::set_var("TEST_MQTT_PW", "s3cret");
    for (name, mqtt) in cases {
        let data = dir.path().join(format!("data-{name}"));
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            config(&data, &mqtt, CYCLE).replace("id = \"gw1\"", &format!("id = \"gw-{name}\"")),
        )
        .expect("w");
        let mut d = start_daemon(&cfg, dir.path());
        wait_for(Duration::from_secs(15), name, || {
            sub.msgs
                .lock()
                .ok()?
                .iter()
                .any(|(t, p, _)| {
                    t == &format!("watchpost/gw-{name}/status") && p.contains("online")
                })
                .then_some(())
        });
        d.signal(libc::SIGTERM);
        assert_eq!(
            d.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{name}: {}",
            d.log()
        );
    }
    // Refusals: wrong password, and no client certificate on the mutual-TLS listener.
    for (name, mqtt, expect) in [
        (
            "badpw",
            format!("url = \"mqtt://127.0.0.1:{p_pw}\"\nusername = \"gw\"\npassword = \"wrong\""),
            // A refused login is an ERROR naming what to check, not a network cut.
            "The MQTT broker refused the connection: check mqtt.username and the password",
        ),
        (
            "nocert",
            format!(
                "url = \"mqtts://localhost:{p_mtls}\"\nca_file = \"{}\"",
                c("ca.crt")
            ),
            "MQTT connection lost or refused",
        ),
    ] {
        let data = dir.path().join(format!("data-{name}"));
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            config(&data, &mqtt, CYCLE).replace("id = \"gw1\"", &format!("id = \"gw-{name}\"")),
        )
        .expect("w");
        let mut d = start_daemon(&cfg, dir.path());
        wait_for(Duration::from_secs(15), name, || {
            d.log().contains(expect).then_some(())
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(!sub
            .msgs
            .lock()
            .expect("l")
            .iter()
            .any(|(t, p, _)| t.contains(&format!("gw-{name}")) && p.contains("online")));
        // Refused, but alive and keeping its alerts.
        assert!(d.child.try_wait().expect("w").is_none());
        d.signal(libc::SIGTERM);
        assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
        assert!(!store_events(&data).is_empty());
    }
}

#[test]
fn device_shadow_protocol() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let aws = Sub::start(
        broker.port,
        "aws",
        true,
        &[
            "$aws/things/press-3/shadow/update",
            "$aws/things/press-3/shadow/get",
        ],
    );
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let mqtt = format!("url = \"mqtt://127.0.0.1:{}\"\n[mqtt.shadow]\nthing = \"press-3\"\nmin_interval = \"200ms\"", broker.port);
    std::fs::write(&cfg, config(&data, &mqtt, CYCLE)).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    let base = "$aws/things/press-3/shadow";
    let publish = |topic: &str, payload: &str| {
        aws.client
            .publish(
                format!("{base}/{topic}"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
            )
            .expect("publish");
    };
    // The test plays AWS: it answers every get and update by clientToken; the first update gets a 409.
    let token_of = |p: &str| {
        serde_json::from_str::<serde_json::Value>(p).expect("j")["clientToken"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut answered_gets = 0;
    let mut answered_updates = 0;
    let mut version = 1u64;
    let mut answer = |aws: &Sub| {
        let gets = aws.on("/get");
        for (p, _) in gets.iter().skip(answered_gets) {
            let t = token_of(p);
            assert!(!t.is_empty() && t.len() <= 64);
            publish(
                "get/accepted",
                &format!(
                    r#"{{"state":{{"reported":{{}}}},"version":{version},"clientToken":"{t}"}}"#
                ),
            );
        }
        answered_gets = gets.len();
        let ups = aws.on("/update");
        for (p, _) in ups.iter().skip(answered_updates) {
            let t = token_of(p);
            if answered_updates == 0 {
                publish(
                    "update/rejected",
                    &format!(r#"{{"code":409,"message":"Version conflict","clientToken":"{t}"}}"#),
                );
            } else {
                version += 1;
                publish(
                    "update/accepted",
                    &format!(r#"{{"state":{{}},"version":{version},"clientToken":"{t}"}}"#),
                );
            }
            answered_updates += 1;
        }
    };
    // get after connect (and SUBACK), answered; then the first update, which gets a 409.
    wait_for(Duration::from_secs(10), "get", || {
        aws.on("/get").first().cloned()
    });
    answer(&aws);
    let up = wait_for(Duration::from_secs(10), "update", || {
        aws.on("/update").first().cloned()
    });
    let v: serde_json::Value = serde_json::from_str(&up.0).expect("j");
    assert!(
        v["state"]["reported"]["gateway"]["version"].is_string(),
        "{v}"
    );
    assert_eq!(
        v["version"], 1,
        "optimistic locking with the version from the get"
    );
    assert!(v["state"]["reported"]["alerts"]["active"].is_u64(), "{v}");
    assert_eq!(
        v["state"]["reported"]["alerts"]["all"],
        "watchpost/gw1/alerts/#"
    );
    answer(&aws);
    // 409 → watchpost re-gets, and sends again once the get is answered.
    wait_for(Duration::from_secs(10), "re-get after 409", || {
        (aws.on("/get").len() >= 2).then_some(())
    });
    answer(&aws);
    wait_for(Duration::from_secs(10), "update after 409", || {
        (aws.on("/update").len() >= 2).then_some(())
    });
    answer(&aws);
    // Garbage, an old version, then a real delta.
    publish("update/delta", "{{{ not json");
    publish("update/delta", r#"{"state":"nonsense","version":2}"#);
    publish("update/delta", r#"{"state":{"old":true},"version":0}"#);
    publish(
        "update/delta",
        r#"{"state":{"warning_high":70},"version":5}"#,
    );
    let reported = wait_for(Duration::from_secs(10), "not-applied report", || {
        answer(&aws);
        aws.on("/update")
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| p.contains("\"applied\":false"))
    });
    assert!(reported.contains("warning_high"));
    assert!(!reported.contains("\"old\""), "old version dropped");
    // Sensor values are reported.
    let v: serde_json::Value =
        serde_json::from_str(&aws.on("/update").last().expect("u").0).expect("j");
    assert!(
        v["state"]["reported"]["sensors"]["oil_temp"]["ts"].is_i64(),
        "{v}"
    );
    assert!(d.child.try_wait().expect("w").is_none(), "survived garbage");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn clearing_one_alarm_never_hides_another_on_the_same_sensor() {
    // CRITICAL high is raised, the sensor goes silent (SENSOR_OFFLINE raised) and comes back still at 100
    // (SENSOR_OFFLINE cleared, CRITICAL still active). The retained topics, the viewer and the store agree: one
    // active alarm, the CRITICAL.
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let feed = Sub::start(broker.port, "feed", true, &["watchpost/gw1/events"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let values: Vec<String> = std::iter::repeat_n("100.0".to_string(), 113).collect();
    let silent: Vec<String> = (3..13).map(|i| i.to_string()).collect();
    let sensor = format!(
        "[[sensor]]\nid = \"press\"\ninterval = \"100ms\"\nstale_after = \"500ms\"\ncritical = {{ high = 95.0 }}\n\
         source = {{ simulated = \"script\", values = [{}], silent = [{}], repeat = false }}\n",
        values.join(", "),
        silent.join(", ")
    );
    std::fs::write(
        &cfg,
        config(
            &data,
            &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
            &sensor,
        ),
    )
    .expect("w");
    let _d = start_daemon(&cfg, dir.path());
    wait_for(
        Duration::from_secs(20),
        "offline raised and cleared",
        || {
            let kinds: Vec<(String, String)> = feed
                .on("/events")
                .iter()
                .map(|(p, _)| {
                    let v: serde_json::Value = serde_json::from_str(p).expect("json");
                    (
                        v["type"].as_str().unwrap_or("").to_string(),
                        v["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            (kinds.contains(&("SENSOR_OFFLINE".into(), "cleared".into()))).then_some(())
        },
    );
    let late = Sub::start(broker.port, "late", true, &["watchpost/gw1/alerts/#"]);
    let retained = wait_for(Duration::from_secs(10), "retained CRITICAL", || {
        let r = late.on("/alerts/press/high");
        (!r.is_empty()).then_some(r)
    });
    assert!(
        retained[0].1 && retained[0].0.contains("\"severity\":\"CRITICAL\""),
        "{retained:?}"
    );
    // The cleared OFFLINE left no retained message behind.
    assert!(
        late.on("/alerts/press/offline").is_empty(),
        "{:?}",
        late.on("/alerts/press/offline")
    );
    let (_, out, _) = run_cli(&[
        "alerts",
        "--broker",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "--gateway",
        "gw1",
        "--count",
        "0",
    ]);
    assert!(out.contains("active alerts: 1"), "{out}");
    assert!(out.contains("CRITICAL ALERT raised sensor=press"), "{out}");
}

#[test]
fn a_huge_retained_message_on_a_shadow_topic_does_not_stop_alert_delivery() {
    // Someone left a 900 kB retained message (over the old 256 kB limit) on a topic the shadow subscribes to. It is received and dropped
    // (counted); the connection stays up and every alert is delivered.
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let big = dir.path().join("big.txt");
    std::fs::write(&big, vec![b'x'; 900_000]).expect("w");
    let st = std::process::Command::new(require("mosquitto_pub").expect("mosquitto_pub"))
        .args([
            "-p",
            &broker.port.to_string(),
            "-t",
            "$aws/things/press-3/shadow/update/accepted",
            "-r",
            "-q",
            "1",
            "-f",
        ])
        .arg(&big)
        .status()
        .expect("mosquitto_pub");
    assert!(st.success());
    let check = Sub::start(
        broker.port,
        "check",
        true,
        &["$aws/things/press-3/shadow/update/accepted"],
    );
    wait_for(
        Duration::from_secs(10),
        "the 900 kB retained message at the broker",
        || {
            check
                .on("/update/accepted")
                .iter()
                .any(|(p, retained)| *retained && p.len() == 900_000)
                .then_some(())
        },
    );
    let feed = Sub::start(broker.port, "feed", true, &["watchpost/gw1/events"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let mqtt = format!(
        "url = \"mqtt://127.0.0.1:{}\"\n[mqtt.shadow]\nthing = \"press-3\"\nmin_interval = \"200ms\"",
        broker.port
    );
    std::fs::write(&cfg, config(&data, &mqtt, CYCLE)).expect("w");
    let d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(20), "all 5 alert events", || {
        (feed.on("/events").len() >= 5).then_some(())
    });
    let connects = d.log().matches("MQTT connected.").count();
    assert_eq!(connects, 1, "no reconnect loop: {}", d.log());
}

/// Per sensor, the sample timestamps VictoriaMetrics holds (a list: duplicates would show).
fn remote_timestamps(vm: &Vm) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut m = std::collections::BTreeMap::new();
    for s in vm.export(r#"{__name__="sensor_value"}"#) {
        let sensor = s["metric"]["sensor"].as_str().unwrap_or("").to_string();
        let ts: &mut Vec<i64> = m.entry(sensor).or_default();
        ts.extend(
            s["timestamps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_i64()),
        );
        ts.sort_unstable();
    }
    m
}

#[test]
fn kill_9_at_random_moments_during_broker_and_timeseries_outages_loses_nothing() {
    // The fault suite in CI size: 20 kill -9s at random moments, with the broker and the time-series server both
    // down for 7 of them, alarms flowing the whole time. Counted at the far ends: every stored reading in
    // VictoriaMetrics once per timestamp, every stored alert event at a persistent subscriber, in order.
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(dir.path(), "", true)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let vm_port = free_port();
    let mut vm = Some(Vm::start(dir.path(), vm_port).expect("victoria-metrics"));
    let sub = Sub::start(broker.port, "faults", false, &["watchpost/gw1/events"]);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sinks = format!(
        "url = \"mqtt://127.0.0.1:{}\"\n\n[influxdb]\nurl = \"http://127.0.0.1:{vm_port}\"\norg = \"o\"\nbucket = \"b\"",
        broker.port
    );
    let sensors = r#"
[[sensor]]
id = "flappy"
source = { simulated = "square", min = 0.0, max = 100.0, period = "400ms" }
interval = "50ms"
warning = { high = 50.0 }

[[sensor]]
id = "ramp"
source = { simulated = "ramp", offset = 0.0, step = 1.0 }
interval = "20ms"
"#;
    std::fs::write(&cfg, config(&data, &sinks, sensors)).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    let mut rng = fastrand::Rng::with_seed(20261130);
    // `scripts/faults.sh` runs 100 rounds; the outage covers rounds 6..13 either way.
    let rounds: usize = std::env::var("WATCHPOST_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds.max(14) {
        if round == 6 {
            broker.stop();
            // A clean stop: VictoriaMetrics keeps the last second of writes in memory and a kill -9 of *it* would
            // lose what it had already acknowledged.
            if let Some(mut v) = vm.take() {
                v.proc.signal(libc::SIGTERM);
                v.proc.wait_exit(Duration::from_secs(20));
            }
        }
        if round == 13 {
            broker.restart();
            vm = Some(Vm::start(dir.path(), vm_port).expect("victoria-metrics back"));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(200..1200)));
        d.signal(libc::SIGKILL);
        d.wait_exit(Duration::from_secs(5));
        d = start_daemon(&cfg, dir.path());
    }
    // No new data from here on (the reload clears the active alarms: those events must arrive too).
    std::fs::write(&cfg, config(&data, &sinks, "")).expect("w");
    wait_for(Duration::from_secs(10), "started", || {
        d.log().contains("watchpost started").then_some(())
    });
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), "reloaded", || {
        d.log().contains("Configuration reloaded").then_some(())
    });
    let vm = vm.expect("vm");
    // The store is read again at each poll: the last flush may commit after the reload is logged.
    let read_local = || {
        let mut local: std::collections::BTreeMap<String, Vec<i64>> =
            std::collections::BTreeMap::new();
        with_store(&data, 0, |s| {
            s.export(watchpost::model::Timestamp(i64::MIN), None, |r| {
                local.entry(r.sensor.to_string()).or_default().push(r.ts.0)
            })
        });
        local
    };
    let dedup = |m: &std::collections::BTreeMap<String, Vec<i64>>| -> std::collections::BTreeMap<String, std::collections::BTreeSet<i64>> {
        m.iter().map(|(k, v)| (k.clone(), v.iter().copied().collect())).collect()
    };
    let mut local = Default::default();
    let mut last = Default::default();
    let ok = (0..450).any(|_| {
        local = read_local();
        last = remote_timestamps(&vm);
        if dedup(&last) == dedup(&local) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    let summary =
        |m: &std::collections::BTreeMap<String, Vec<i64>>| -> Vec<(String, usize, usize)> {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.len(),
                        v.iter().collect::<std::collections::BTreeSet<_>>().len(),
                    )
                })
                .collect()
        };
    if !ok {
        let (_, status, _) =
            run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
        let log: Vec<String> = d
            .log()
            .lines()
            .filter(|l| l.contains("sink=\"influxdb\"") || l.contains("InfluxDB"))
            .map(String::from)
            .collect();
        panic!(
            "every stored reading in VictoriaMetrics: local {:?}, remote {:?}\n{status}\n{}",
            summary(&local),
            summary(&last),
            log.join("\n")
        );
    }
    assert_eq!(
        last,
        local,
        "once per timestamp: {:?} vs {:?}",
        summary(&last),
        summary(&local)
    );
    wait_for(
        Duration::from_secs(60),
        "every alert event at the subscriber, in order",
        || {
            let want = store_events(&data);
            (ids_states(&sub.on("/events")) == want).then_some(())
        },
    );
    assert!(
        local.values().map(Vec::len).sum::<usize>() > 500,
        "{local:?}"
    );
    assert!(store_events(&data).len() > 20);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn connections_cut_every_two_seconds_lose_nothing_and_cause_no_reconnect_storm() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", true)
        .expect("broker: a test server or tool the suite needs (.ci/run installs them)");
    let sub = Sub::start(broker.port, "cut-sub", false, &["watchpost/gw1/events"]);
    let (proxy, accepted) = cutting_proxy(broker.port, Duration::from_secs(2));
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensor = r#"
[[sensor]]
id = "flappy"
source = { simulated = "square", min = 0.0, max = 100.0, period = "400ms" }
interval = "50ms"
warning = { high = 50.0 }
"#;
    std::fs::write(
        &cfg,
        config(
            &data,
            &format!("url = \"mqtt://127.0.0.1:{proxy}\""),
            sensor,
        ),
    )
    .expect("w");
    let d = start_daemon(&cfg, dir.path());
    std::thread::sleep(Duration::from_secs(12));
    // Stop producing, then everything stored must arrive, in order, through the cuts.
    std::fs::write(
        &cfg,
        config(&data, &format!("url = \"mqtt://127.0.0.1:{proxy}\""), ""),
    )
    .expect("w");
    d.signal(libc::SIGHUP);
    wait_for(
        Duration::from_secs(60),
        "every alert event through the cutting proxy",
        || {
            let want = store_events(&data);
            (want.len() > 20 && ids_states(&sub.on("/events")) == want).then_some(())
        },
    );
    // About one connection per cut (12 s / 2 s), not a storm.
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("connections through the proxy: {n}");
    assert!(
        (3..=15).contains(&n),
        "{n} connections in ~12 s with a cut every 2 s"
    );
}

/// A broker that accepts every connection (CONNACK) and drops it at the client's next packet or after 200 ms — what
/// AWS IoT does on a policy violation, or when another device connects with the same client id. The gateway must
/// back off (the connection never worked), not reconnect twice a second, and keep its alerts.
#[test]
fn a_broker_that_drops_every_connection_after_connack_is_not_hammered() {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let (port, conns) = counting_peer(|mut c| {
        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
        // CONNECT: fixed header, remaining length (varint), body.
        let mut b = [0u8; 1];
        if c.read_exact(&mut b).is_err() {
            return;
        }
        let (mut len, mut shift) = (0usize, 0);
        loop {
            if c.read_exact(&mut b).is_err() || shift > 21 {
                return;
            }
            len |= ((b[0] & 0x7f) as usize) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        if c.read_exact(&mut body).is_err() || c.write_all(&[0x20, 2, 0, 0]).is_err() {
            return;
        }
        let _ = c.read(&mut b);
    });
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let mqtt = format!("url = \"mqtt://127.0.0.1:{port}\"");
    std::fs::write(&cfg, config(&data, &mqtt, CYCLE)).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(15), "a first connection", || {
        (conns.load(Ordering::SeqCst) >= 1).then_some(())
    });
    // A measurement window: with a backoff the attempts thin out (0.25-0.5 s, 0.5-1 s, 1-2 s, 2-4 s, ...);
    // reset at every CONNACK they came every 0.25-0.5 s (16-32 in the window).
    let n0 = conns.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(8));
    let n = conns.load(Ordering::SeqCst) - n0;
    eprintln!("connections in 8 s to a broker that drops them: {n}");
    assert!(n <= 8, "{n} connections in 8 s");
    // Alive, and the alerts wait in the store.
    assert!(d.child.try_wait().expect("w").is_none(), "{}", d.log());
    assert!(!store_events(&data).is_empty());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}
