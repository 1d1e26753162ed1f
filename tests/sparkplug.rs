//! The Sparkplug B edge node against a real mosquitto and a host decoding with pysparkplug (an independent
//! implementation of the specification): births with bdSeq and seq, data types of the configured registers
//! (from a live pymodbus), DDATA resolved through the births' aliases, rebirth on NCMD, the Will as NDEATH with the
//! same bdSeq after kill -9, bdSeq continued across the restart.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn host(port: u16, out: &Path, rebirth: &Path, dir: &Path, extra: &[&str]) -> Proc {
    let log = dir.join("host.log");
    let child = Command::new(python().expect("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sparkplug_host.py"))
        .args([
            "--port",
            &port.to_string(),
            "--group",
            "plant",
            "--node",
            "gw-edge",
        ])
        .arg("--out")
        .arg(out)
        .arg("--rebirth")
        .arg(rebirth)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("host");
    let p = Proc { child, log };
    wait_for(T, "the host subscribed", || {
        seen(out)
            .iter()
            .any(|m| m["type"] == "subscribed")
            .then_some(())
    });
    p
}

/// The start of a node's config: the gateway (a 100 ms flush) and `[sparkplug]` on the test broker; the test adds
/// `[sparkplug]` keys and sensors after it.
fn node_header(data: &Path, port: u16) -> String {
    format!(
        "[gateway]\nid = \"gw1\"\ndata_dir = \"{}\"\n[buffer]\nflush_interval = \"100ms\"\n\
         [sparkplug]\nurl = \"mqtt://127.0.0.1:{port}\"\ngroup_id = \"plant\"\nedge_node_id = \"gw-edge\"\n",
        data.display()
    )
}

fn seen(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every payload the host saw, decoded again by Eclipse Tahu's JavaScript decoder (npm `sparkplug-payload`): it
/// must decode each, and agree with pysparkplug on `seq`, the metrics, their names and values.
fn cross_check(msgs: &[Value]) {
    use std::io::Write;
    // What watchpost published (the host's own NCMD is not under test).
    let msgs: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["raw"].is_string() && m["type"] != "NCMD" && m["type"] != "DCMD")
        .collect();
    let input: String = msgs
        .iter()
        .map(|m| format!("{}\n", m["raw"].as_str().unwrap_or("")))
        .collect();
    let mut node = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sparkplug_decode.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (.ci/run installs nodejs and sparkplug-payload)");
    node.stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = node.wait_with_output().expect("node");
    let decoded: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(
        decoded.len(),
        msgs.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    };
    for (py, js) in msgs.iter().zip(&decoded) {
        assert!(
            js.get("error").is_none(),
            "Tahu refused {}: {js}",
            py["topic"]
        );
        assert_eq!(text(&js["seq"]), text(&py["seq"]), "{}", py["topic"]);
        let (pm, jm) = (
            py["metrics"].as_array().cloned().unwrap_or_default(),
            js["metrics"].as_array().cloned().unwrap_or_default(),
        );
        assert_eq!(pm.len(), jm.len(), "{}: {py} vs {js}", py["topic"]);
        for (a, b) in pm.iter().zip(&jm) {
            // pysparkplug resolves aliases to names through the birth; Tahu reports what is on the wire.
            if !b["name"].is_null() {
                assert_eq!(a["name"], b["name"]);
            }
            let (x, y) = (text(&a["value"]), text(&b["value"]));
            let same = x == y
                || x.parse::<f64>()
                    .ok()
                    .zip(y.parse::<f64>().ok())
                    .is_some_and(|(p, q)| {
                        (p - q).abs() <= p.abs() * 1e-6 || (p < 0.0 && q >= 0.0)
                        // a signed integer Tahu shows as its unsigned bits
                    });
            assert!(
                same,
                "{}: {} = {x} (pysparkplug) vs {y} (Tahu)",
                py["topic"], a["name"]
            );
        }
    }
}

fn metric<'a>(msg: &'a Value, name: &str) -> Option<&'a Value> {
    msg["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
}

#[test]
fn an_edge_node_births_reports_rebirths_and_dies_as_the_specification_says() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let map = dir.path().join("map.json");
    // u16 1234, i16 -2, a coil, "PUMP-07", u64::MAX.
    std::fs::write(
        &map,
        r#"{"units": {"1": {"hr": [1234, 65534, 20565, 19792, 11568, 14080, 65535, 65535, 65535, 65535], "co": [1]}}}"#,
    )
    .expect("map");
    let mport = free_port();
    let _plc = modbus_server(&map, Some(mport), None, dir.path()).expect("pymodbus");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
id = "gw1"
location = "hall 3"
data_dir = "{data}"

[buffer]
flush_interval = "100ms"

[sparkplug]
url = "mqtt://127.0.0.1:{port}"
group_id = "plant"
edge_node_id = "gw-edge"

[[modbus]]
name = "plc1"
url = "tcp://127.0.0.1:{mport}"

[[sensor]]
id = "speed"
source = {{ modbus = "plc1", table = "holding", address = 0, type = "u16" }}
interval = "300ms"
unit = "rpm"

[[sensor]]
id = "offset"
source = {{ modbus = "plc1", table = "holding", address = 1, type = "i16" }}
interval = "300ms"

[[sensor]]
id = "tag"
source = {{ modbus = "plc1", table = "holding", address = 2, type = "string", length = 4 }}
interval = "300ms"

[[sensor]]
id = "count"
source = {{ modbus = "plc1", table = "holding", address = 6, type = "u64" }}
interval = "300ms"

[[sensor]]
id = "running"
source = {{ modbus = "plc1", table = "coil", address = 0 }}
interval = "300ms"

[[sensor]]
id = "room"
source = {{ simulated = "constant", offset = 21.5 }}
interval = "300ms"
"#,
            data = data.display(),
            port = broker.port
        ),
    )
    .expect("config");
    let out = dir.path().join("host.jsonl");
    let rebirth = dir.path().join("rebirth");
    let _host = host(broker.port, &out, &rebirth, dir.path(), &[]);
    let mut d = start_daemon(&cfg, dir.path());
    let msgs = wait_for(T, "NBIRTH, two DBIRTHs and DDATA of every device", || {
        let m = seen(&out);
        let ddata = m.iter().filter(|x| x["type"] == "DDATA").count();
        (ddata >= 4).then_some(m)
    });
    assert!(
        msgs.iter().all(|m| m.get("error").is_none()),
        "pysparkplug refused: {msgs:?}"
    );
    let msgs: Vec<Value> = msgs
        .into_iter()
        .filter(|m| m["type"] != "subscribed")
        .collect();
    let nbirth = &msgs[0];
    assert_eq!(nbirth["type"], "NBIRTH", "{msgs:?}");
    assert_eq!(nbirth["seq"], 0);
    assert_eq!(metric(nbirth, "bdSeq").expect("bdSeq")["value"], 0);
    assert_eq!(
        metric(nbirth, "Node Control/Rebirth").expect("rebirth")["value"],
        false
    );
    assert_eq!(
        metric(nbirth, "Properties/Location").expect("location")["value"],
        "hall 3"
    );
    let dbirths: Vec<&Value> = msgs.iter().filter(|m| m["type"] == "DBIRTH").collect();
    let devices: Vec<&str> = dbirths
        .iter()
        .filter_map(|m| m["device"].as_str())
        .collect();
    assert_eq!(devices, ["plc1-unit1", "simulated"]);
    // Data types of the configured registers (Sparkplug 3.0 §6.4.16).
    let dtype = |name: &str| metric(dbirths[0], name).map(|m| m["datatype"].clone());
    assert_eq!(dtype("speed"), Some(6.into()), "u16 → UInt16");
    assert_eq!(dtype("offset"), Some(2.into()), "i16 → Int16");
    assert_eq!(dtype("tag"), Some(12.into()), "string → String");
    assert_eq!(dtype("count"), Some(8.into()), "u64 → UInt64");
    assert_eq!(dtype("running"), Some(11.into()), "coil → Boolean");
    // seq: 0, 1, 2, … over every message of the session.
    let seqs: Vec<u64> = msgs.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == (w[0] + 1) % 256),
        "{seqs:?}"
    );
    // DDATA carries aliases only; the host resolves them through the birth to names and values.
    let data_of = |name: &str| -> Option<Value> {
        seen(&out)
            .iter()
            .filter(|m| m["type"] == "DDATA")
            .find_map(|m| metric(m, name).map(|x| x["value"].clone()))
    };
    assert_eq!(data_of("speed"), Some(1234.into()));
    assert_eq!(data_of("offset"), Some((-2).into()));
    assert_eq!(data_of("tag"), Some("PUMP-07".into()));
    assert_eq!(data_of("count"), Some(u64::MAX.into()));
    assert_eq!(data_of("running"), Some(true.into()));
    assert_eq!(data_of("room"), Some(21.5.into()));
    // NCMD Node Control/Rebirth: births again, same bdSeq, seq from 0.
    let before = seen(&out).len();
    std::fs::write(&rebirth, b"").expect("rebirth");
    let again = wait_for(T, "a rebirth", || {
        seen(&out)[before..]
            .iter()
            .find(|m| m["type"] == "NBIRTH")
            .cloned()
    });
    assert_eq!(again["seq"], 0);
    assert_eq!(metric(&again, "bdSeq").expect("bdSeq")["value"], 0);
    // The rebirth's DBIRTH carries the current values (a host has every value at once after a rebirth).
    let dbirth = wait_for(T, "the DBIRTH of the rebirth", || {
        seen(&out)[before..]
            .iter()
            .find(|m| m["type"] == "DBIRTH" && m["device"] == "plc1-unit1")
            .cloned()
    });
    assert_eq!(
        metric(&dbirth, "speed").expect("speed")["value"],
        1234,
        "{dbirth}"
    );
    assert_eq!(metric(&dbirth, "tag").expect("tag")["value"], "PUMP-07");
    // kill -9: the broker publishes the Will, NDEATH with the bdSeq of the births.
    d.signal(libc::SIGKILL);
    let _ = d.wait_exit(Duration::from_secs(5));
    let death = wait_for(Duration::from_secs(60), "NDEATH (the Will)", || {
        seen(&out).into_iter().find(|m| m["type"] == "NDEATH")
    });
    assert_eq!(metric(&death, "bdSeq").expect("bdSeq")["value"], 0);
    assert!(death["seq"].is_null(), "NDEATH has no seq: {death}");
    // A restart continues bdSeq (kept in the store).
    let n = seen(&out).len();
    let _d2 = start_daemon(&cfg, dir.path());
    let reborn = wait_for(T, "the births after the restart", || {
        seen(&out)[n..]
            .iter()
            .find(|m| m["type"] == "NBIRTH")
            .cloned()
    });
    assert_eq!(metric(&reborn, "bdSeq").expect("bdSeq")["value"], 1);
    cross_check(&seen(&out));
}

/// With a primary host (Sparkplug 3.0 STATE): across a broker outage the readings wait in the store, and once the
/// host is online again they follow the births in order, every one of them, marked historical.
#[test]
fn with_a_primary_host_the_outage_is_stored_and_forwarded_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}primary_host = \"scada\"\n\
             [[sensor]]\nid = \"ramp\"\nsource = {{ simulated = \"ramp\", step = 1.0 }}\ninterval = \"200ms\"\n",
            node_header(&data, broker.port)
        ),
    )
    .expect("config");
    let out = dir.path().join("host.jsonl");
    let _host = host(
        broker.port,
        &out,
        &dir.path().join("rebirth"),
        dir.path(),
        &["--primary", "scada"],
    );
    let _d = start_daemon(&cfg, dir.path());
    let received = || -> Vec<(f64, bool)> {
        seen(&out)
            .iter()
            .filter(|m| m["type"] == "DDATA")
            .flat_map(|m| m["metrics"].as_array().cloned().unwrap_or_default())
            .filter_map(|x| Some((x["value"].as_f64()?, x["historical"].as_bool()?)))
            .collect()
    };
    wait_for(T, "live data", || (received().len() >= 3).then_some(()));
    let stored = || stored_values(&data, "ramp");
    broker.stop();
    let at_stop = stored().len();
    // Seven seconds of readings while the broker is away (more than the 5 s after which a reading is history).
    wait_for(
        Duration::from_secs(30),
        "readings stored during the outage",
        || (stored().len() >= at_stop + 35).then_some(()),
    );
    broker.restart();
    let want = stored();
    let got = wait_for(
        Duration::from_secs(30),
        "everything stored, forwarded",
        || {
            let got = received();
            want.iter()
                .all(|v| got.iter().any(|(g, _)| g == v))
                .then_some(got)
        },
    );
    // In order (a chunk re-sent after a lost connection may repeat; its first sending is in place); what was held
    // through the outage is marked historical.
    let mut values: Vec<f64> = Vec::new();
    for (v, _) in &got {
        if !values.contains(v) {
            values.push(*v);
        }
    }
    assert!(values.windows(2).all(|w| w[1] > w[0]), "{values:?}");
    // The first readings of the 7 s outage were more than 5 s old when they went out.
    let outage = &want[at_stop + 2..at_stop + 8];
    assert!(
        outage.iter().all(|v| got.iter().any(|(g, h)| g == v && *h)),
        "held readings are historical: {got:?}"
    );
    // The births came before the forwarded data.
    let msgs = seen(&out);
    let rebirth = msgs
        .iter()
        .rposition(|m| m["type"] == "NBIRTH")
        .expect("births");
    let first_hist = msgs
        .iter()
        .position(|m| {
            m["type"] == "DDATA"
                && m["metrics"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["historical"] == true))
        })
        .expect("historical data");
    assert!(rebirth < first_hist, "births before the forwarded data");
}

/// Report by exception: with a deadband, a sensor that does not move is sent once (and again after
/// `max_interval`), one that moves goes out every time.
#[test]
fn by_exception_a_quiet_sensor_is_sent_once_and_a_moving_one_every_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}deadband = 0.5\n\
             [[sensor]]\nid = \"quiet\"\nsource = {{ simulated = \"constant\", offset = 7.0 }}\ninterval = \"200ms\"\n\
             [[sensor]]\nid = \"moving\"\nsource = {{ simulated = \"ramp\", step = 1.0 }}\ninterval = \"200ms\"\n",
            node_header(&dir.path().join("data"), broker.port)
        ),
    )
    .expect("config");
    let out = dir.path().join("host.jsonl");
    let _host = host(
        broker.port,
        &out,
        &dir.path().join("rebirth"),
        dir.path(),
        &[],
    );
    let _d = start_daemon(&cfg, dir.path());
    let count = |name: &str| {
        seen(&out)
            .iter()
            .filter(|m| m["type"] == "DDATA")
            .filter(|m| metric(m, name).is_some())
            .count()
    };
    wait_for(T, "ten readings of the moving sensor", || {
        (count("moving") >= 10).then_some(())
    });
    assert_eq!(count("quiet"), 1, "{:?}", seen(&out));
}

/// A device that stops answering dies (DDEATH once all its sensors are SENSOR_OFFLINE) and is born again
/// (DBIRTH, before its data) when it answers; its neighbour on the node goes on; `seq` runs on through it all.
#[test]
fn a_silent_device_dies_and_is_born_again_when_it_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let map = dir.path().join("map.json");
    std::fs::write(&map, r#"{"units": {"1": {"hr": [1234]}}}"#).expect("map");
    let mport = free_port();
    let _plc = modbus_server(&map, Some(mport), None, dir.path()).expect("pymodbus");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\
             [[modbus]]\nname = \"plc1\"\nurl = \"tcp://127.0.0.1:{mport}\"\ntimeout = \"200ms\"\nretries = 0\n\
             [[sensor]]\nid = \"speed\"\nsource = {{ modbus = \"plc1\", table = \"holding\", address = 0 }}\ninterval = \"300ms\"\nstale_after = \"1s\"\n\
             [[sensor]]\nid = \"room\"\nsource = {{ simulated = \"constant\", offset = 21.5 }}\ninterval = \"300ms\"\n",
            node_header(&dir.path().join("data"), broker.port)
        ),
    )
    .expect("config");
    let out = dir.path().join("host.jsonl");
    let _host = host(
        broker.port,
        &out,
        &dir.path().join("rebirth"),
        dir.path(),
        &[],
    );
    let _d = start_daemon(&cfg, dir.path());
    let of = |kind: &str| -> Vec<usize> {
        seen(&out)
            .iter()
            .enumerate()
            .filter(|(_, m)| m["type"] == kind && m["device"] == "plc1-unit1")
            .map(|(i, _)| i)
            .collect()
    };
    wait_for(T, "data of the PLC", || {
        (!of("DDATA").is_empty()).then_some(())
    });
    std::fs::write(dir.path().join("mute-1"), b"").expect("mute");
    let death = wait_for(T, "DDEATH of the silent PLC", || {
        of("DDEATH").first().copied()
    });
    std::fs::remove_file(dir.path().join("mute-1")).expect("unmute");
    let rebirth = wait_for(T, "DBIRTH when it answers", || {
        of("DBIRTH").into_iter().find(|i| *i > death)
    });
    let data = wait_for(T, "its data again", || {
        of("DDATA").into_iter().find(|i| *i > death)
    });
    assert!(rebirth < data, "the birth goes before the data");
    let msgs = seen(&out);
    // The neighbour kept reporting while the PLC was dead.
    assert!(msgs[death..rebirth]
        .iter()
        .any(|m| m["type"] == "DDATA" && m["device"] == "simulated"));
    let seqs: Vec<u64> = msgs.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == (w[0] + 1) % 256),
        "{seqs:?}"
    );
    let refused: Vec<&Value> = msgs.iter().filter(|m| m.get("error").is_some()).collect();
    assert!(refused.is_empty(), "pysparkplug refused: {refused:?}");
}

/// The edge's alarms as metrics of their device: `Alarms/<sensor>/State`, `Severity`, `Acked`, `Shelved`, `Priority`, declared
/// in the DBIRTH and sent when they change — a Sparkplug host sees the ISA-18.2 states without a second protocol.
#[test]
fn alarms_are_metrics_of_their_device() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\
             [[sensor]]\nid = \"sq\"\nsource = {{ simulated = \"square\", min = 0.0, max = 100.0, period = \"2s\" }}\ninterval = \"200ms\"\nwarning = {{ high = 50.0 }}\npriority = \"urgent\"\n",
            node_header(&dir.path().join("data"), broker.port)
        ),
    )
    .expect("config");
    let out = dir.path().join("host.jsonl");
    let _host = host(
        broker.port,
        &out,
        &dir.path().join("rebirth"),
        dir.path(),
        &[],
    );
    let _d = start_daemon(&cfg, dir.path());
    let dbirth = wait_for(T, "the DBIRTH", || {
        seen(&out).into_iter().find(|m| m["type"] == "DBIRTH")
    });
    for (name, datatype) in [
        ("State", 12),
        ("Severity", 12),
        ("Acked", 11),
        ("Shelved", 11),
        ("Priority", 12),
    ] {
        let m = metric(&dbirth, &format!("Alarms/sq/{name}"))
            .unwrap_or_else(|| panic!("{name}: {dbirth}"));
        assert_eq!(m["datatype"], datatype, "{m}");
    }
    // Every value a DDATA carried for the alarm metric `name`, in order.
    let values = |name: &str| -> Vec<Value> {
        seen(&out)
            .iter()
            .filter(|m| m["type"] == "DDATA")
            .filter_map(|m| metric(m, &format!("Alarms/sq/{name}")).map(|x| x["value"].clone()))
            .collect()
    };
    let got = wait_for(T, "raised and cleared", || {
        let s = values("State");
        let raised = s.iter().position(|v| v == "UNACK")?;
        s[raised..].iter().any(|v| v == "NORMAL").then_some(s)
    });
    assert!(got.len() >= 2, "{got:?}");
    let severities = values("Severity");
    assert!(severities.iter().any(|v| v == "WARNING"), "{severities:?}");
    let priorities = values("Priority");
    assert!(priorities.iter().any(|v| v == "urgent"), "{priorities:?}");
    cross_check(&seen(&out));
}

/// The primary host says it is offline: the node publishes NDEATH and holds the data in the store; when the host is
/// back online, births first, then everything held, in order and marked historical, then live data.
#[test]
fn a_primary_host_going_offline_holds_the_data_until_it_is_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(dir.path(), "", false).expect("mosquitto");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}primary_host = \"scada\"\n\
             [[sensor]]\nid = \"ramp\"\nsource = {{ simulated = \"ramp\", step = 1.0 }}\ninterval = \"200ms\"\n",
            node_header(&data, broker.port)
        ),
    )
    .expect("config");
    let out = dir.path().join("host.jsonl");
    let offline = dir.path().join("offline");
    let offline_arg = offline.to_string_lossy().into_owned();
    let _host = host(
        broker.port,
        &out,
        &dir.path().join("rebirth"),
        dir.path(),
        &["--primary", "scada", "--offline", &offline_arg],
    );
    let _d = start_daemon(&cfg, dir.path());
    let values = || -> Vec<(usize, f64, bool)> {
        seen(&out)
            .iter()
            .enumerate()
            .filter(|(_, m)| m["type"] == "DDATA")
            .flat_map(|(i, m)| {
                m["metrics"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |x| {
                        Some((i, x["value"].as_f64()?, x["historical"].as_bool()?))
                    })
            })
            .collect()
    };
    wait_for(T, "live data", || (values().len() >= 3).then_some(()));
    std::fs::write(&offline, b"").expect("offline");
    let death = wait_for(T, "NDEATH when the host goes offline", || {
        seen(&out).iter().position(|m| m["type"] == "NDEATH")
    });
    let stored = || stored_values(&data, "ramp");
    let at_death = stored().len();
    wait_for(
        Duration::from_secs(30),
        "readings held in the store",
        || (stored().len() >= at_death + 35).then_some(()),
    );
    // Nothing was published while the host was away.
    assert!(
        !seen(&out)[death + 1..].iter().any(|m| m["type"] == "DDATA"),
        "data after NDEATH"
    );
    std::fs::remove_file(&offline).expect("online");
    let want = stored();
    let got = wait_for(
        Duration::from_secs(30),
        "everything held, forwarded",
        || {
            let got = values();
            want.iter()
                .all(|v| got.iter().any(|(_, g, _)| g == v))
                .then_some(got)
        },
    );
    let msgs = seen(&out);
    let births = msgs
        .iter()
        .rposition(|m| m["type"] == "NBIRTH")
        .expect("births");
    assert!(births > death, "births again after the host came back");
    // Held readings (the first of the 7 s away were more than 5 s old) came after the births, historical.
    let held = &want[at_death + 2..at_death + 8];
    assert!(
        held.iter()
            .all(|v| got.iter().any(|(i, g, h)| g == v && *h && *i > births)),
        "{got:?}"
    );
}
