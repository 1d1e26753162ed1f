//! Modbus sources against a real pymodbus peer: a golden folder of register maps (every type × word order ×
//! scale/offset), RTU over a socat pty pair with a unit that stops answering, and a hostile set of peers
//! (exceptions, server restart, a garbage-spewing peer, a peer that never answers).

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn cfg_text(data: &Path, buses: &str, sensors: &str) -> String {
    format!("[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n\n[buffer]\nflush_interval = \"100ms\"\n\n{buses}\n\n{sensors}\n", data.display())
}

/// Each folder in tests/modbus_cases: map.json (server registers), sensors.toml, optional bus.toml (extra
/// [[modbus]] keys), expected.json. Adding a case needs no Rust.
#[test]
fn golden_register_maps_decode_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus_cases");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("cases")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2);
    for case in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let _srv = modbus_server(&case.join("map.json"), Some(port), None, dir.path())
            .expect("_srv: a test server or tool the suite needs (.ci/run installs them)");
        let extra = std::fs::read_to_string(case.join("bus.toml")).unwrap_or_default();
        let bus = format!("[[modbus]]\nname = \"dev\"\nurl = \"tcp://127.0.0.1:{port}\"\ntimeout = \"2s\"\n{extra}");
        let sensors = std::fs::read_to_string(case.join("sensors.toml")).expect("sensors.toml");
        let cfg = dir.path().join("w.toml");
        std::fs::write(&cfg, cfg_text(&dir.path().join("data"), &bus, &sensors)).expect("w");
        let (code, out, err) =
            run_cli(&["read", "--config", cfg.to_str().expect("utf8"), "--json"]);
        assert_eq!(code, 0, "{}: {out}{err}", case.display());
        let got: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(case.join("expected.json")).expect("expected"),
        )
        .expect("json");
        let want = want.as_object().expect("object");
        assert_eq!(
            got.as_object().map(|o| o.len()),
            Some(want.len()),
            "{}",
            case.display()
        );
        for (k, v) in want {
            assert!(
                got[k]["raw"].as_array().is_some_and(|r| !r.is_empty()),
                "{}: {k}: read --json carries the raw registers: {got}",
                case.display()
            );
            // Text and integers kept exact are compared exactly (digit for digit beyond 2^53).
            let exact = |x: &serde_json::Value| x.is_string() || x.is_u64() || x.is_i64();
            if exact(&got[k]["value"]) || v.is_string() {
                assert_eq!(&got[k]["value"], v, "{}: {k}", case.display());
                continue;
            }
            let (g, w) = (got[k]["value"].as_f64(), v.as_f64().expect("number"));
            let g = g.unwrap_or_else(|| panic!("{}: {k} missing: {got}", case.display()));
            assert!(
                (g - w).abs() <= w.abs() * 1e-12 + 1e-9,
                "{}: {k}: got {g}, want {w}",
                case.display()
            );
        }
        // The human-readable form shows raw registers.
        let (_, human, _) = run_cli(&["read", "--config", cfg.to_str().expect("utf8")]);
        assert!(human.contains("raw [0x"), "{human}");
    }
}

fn readings_of(data: &Path, sensor: &str) -> Vec<i64> {
    let mut v = Vec::new();
    with_store(data, 0, |s| {
        s.export(watchpost::model::Timestamp(i64::MIN), Some(sensor), |r| {
            v.push(r.ts.0)
        })
    });
    v
}

fn offline_events(data: &Path, sensor: &str) -> Vec<String> {
    with_store(data, Vec::new(), |s| s.all_events())
        .into_iter()
        .filter(|(_, a)| a.sensor == sensor && a.kind == watchpost::model::AlertType::SensorOffline)
        .map(|(_, a)| serde_json::to_value(a.state).expect("state").to_string())
        .collect()
}

#[test]
fn rtu_dead_unit_does_not_stall_the_line() {
    let dir = tempfile::tempdir().expect("tmp");
    if require("socat").is_none() {
        return;
    }
    let srv_tty = dir.path().join("ttyS_srv");
    let cli_tty = dir.path().join("ttyS_cli");
    let socat = std::process::Command::new("socat")
        .arg(format!("pty,raw,echo=0,link={}", srv_tty.display()))
        .arg(format!("pty,raw,echo=0,link={}", cli_tty.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("socat");
    let _socat = Proc {
        child: socat,
        log: dir.path().join("socat.log"),
    };
    wait_for(Duration::from_secs(10), "pty pair", || {
        (srv_tty.exists() && cli_tty.exists()).then_some(())
    });
    let map = dir.path().join("map.json");
    std::fs::write(
        &map,
        r#"{"units": {"1": {"hr": [101]}, "2": {"hr": [202]}}}"#,
    )
    .expect("w");
    let _srv = modbus_server(&map, None, Some(&srv_tty), dir.path())
        .expect("_srv: a test server or tool the suite needs (.ci/run installs them)");
    let bus = format!(
        "[[modbus]]\nname = \"line\"\nurl = \"rtu://{}?baud=19200&parity=N\"\ntimeout = \"150ms\"\nretries = 0\nframe_delay = \"5ms\"",
        cli_tty.display()
    );
    let sensors = r#"
[[sensor]]
id = "meter1"
source = { modbus = "line", unit = 1, table = "holding", address = 0, type = "u16" }
interval = "100ms"
stale_after = "1s"

[[sensor]]
id = "meter2"
source = { modbus = "line", unit = 2, table = "holding", address = 0, type = "u16" }
interval = "100ms"
stale_after = "1s"
"#;
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, cfg_text(&data, &bus, sensors)).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(15), "both units read", || {
        (readings_of(&data, "meter1").len() > 5 && readings_of(&data, "meter2").len() > 5)
            .then_some(())
    });
    // Unit 2 stops answering.
    std::fs::write(dir.path().join("mute-2"), "").expect("mute");
    wait_for(Duration::from_secs(15), "meter2 offline", || {
        offline_events(&data, "meter2")
            .contains(&"\"raised\"".to_string())
            .then_some(())
    });
    // With the dead unit backed off, its neighbour keeps (nearly) its full rate.
    let t0 = Instant::now();
    let m1_before = readings_of(&data, "meter1").len();
    std::thread::sleep(Duration::from_secs(3));
    let elapsed = t0.elapsed().as_secs_f64();
    let rate = (readings_of(&data, "meter1").len() - m1_before) as f64 / elapsed;
    eprintln!("meter1 rate with a dead neighbour: {rate:.1} readings/s (nominal 10)");
    assert!(rate >= 8.0, "meter1 kept its poll rate: {rate:.1}/s");
    assert!(
        offline_events(&data, "meter1").is_empty(),
        "meter1 never went offline"
    );
    // Unit 2 answers again: offline clears.
    std::fs::remove_file(dir.path().join("mute-2")).expect("unmute");
    wait_for(Duration::from_secs(90), "meter2 back", || {
        offline_events(&data, "meter2")
            .contains(&"\"cleared\"".to_string())
            .then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn exceptions_restarts_garbage_and_silent_peers_are_survived() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let map = dir.path().join("map.json");
    std::fs::write(&map, r#"{"units": {"1": {"hr": [7, 8, 9]}}}"#).expect("w");
    let srv = modbus_server(&map, Some(port), None, dir.path())
        .expect("srv: a test server or tool the suite needs (.ci/run installs them)");
    // A peer that answers every request with garbage, one that accepts and closes at once, and one that accepts
    // and never answers. The first two count their connections: each failure must back off, not reconnect at once.
    let started = Instant::now();
    let (gport, garbage_conns) = counting_peer(|mut c| {
        use std::io::{Read, Write};
        let mut buf = [0u8; 256];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            let junk: Vec<u8> = (0..fastrand::usize(1..40))
                .map(|_| fastrand::u8(..))
                .collect();
            if c.write_all(&junk).is_err() {
                break;
            }
        }
    });
    let (cport, closer_conns) = counting_peer(drop);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = silent.local_addr().expect("a").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten().take(200) {
            held.push(c);
        }
    });
    let buses = format!(
        "[[modbus]]\nname = \"plc\"\nurl = \"tcp://127.0.0.1:{port}\"\ntimeout = \"300ms\"\n\n[[modbus]]\nname = \"junk\"\nurl = \"tcp://127.0.0.1:{gport}\"\ntimeout = \"300ms\"\n\n[[modbus]]\nname = \"mute\"\nurl = \"tcp://127.0.0.1:{sport}\"\ntimeout = \"300ms\"\n\n[[modbus]]\nname = \"shut\"\nurl = \"tcp://127.0.0.1:{cport}\"\ntimeout = \"300ms\"\n"
    );
    let sensors = r#"
[[sensor]]
id = "good"
source = { modbus = "plc", unit = 1, table = "holding", address = 1, type = "u16" }
interval = "100ms"

[[sensor]]
id = "bad_address"
source = { modbus = "plc", unit = 1, table = "holding", address = 600, type = "u16" }
interval = "100ms"

[[sensor]]
id = "junk_sensor"
source = { modbus = "junk", unit = 1, table = "holding", address = 0, type = "u16" }
interval = "100ms"

[[sensor]]
id = "shut_sensor"
source = { modbus = "shut", unit = 1, table = "holding", address = 0, type = "u16" }
interval = "100ms"

[[sensor]]
id = "mute_sensor"
source = { modbus = "mute", unit = 1, table = "holding", address = 0, type = "u16" }
interval = "100ms"

[[sensor]]
id = "sim"
source = { simulated = "ramp" }
interval = "100ms"
"#;
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, cfg_text(&data, &buses, sensors)).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(15), "good readings", || {
        (readings_of(&data, "good").len() > 10).then_some(())
    });
    wait_for(Duration::from_secs(15), "exception logged", || {
        d.log()
            .contains("exception 2 (Illegal data address)")
            .then_some(())
    });
    wait_for(Duration::from_secs(15), "timeouts logged", || {
        d.log().contains("error=timeout").then_some(())
    });
    // A 12 s outage of the device (connections refused), then it returns: readings resume within 5 s, whatever
    // backoff the outage built up (a refused TCP connection is cheap to retry).
    drop(srv);
    std::thread::sleep(Duration::from_secs(12));
    let before = readings_of(&data, "good").len();
    let _srv2 = modbus_server(&map, Some(port), None, dir.path()).expect("restart");
    let back = std::time::Instant::now();
    wait_for(
        Duration::from_secs(30),
        "readings after server restart",
        || (readings_of(&data, "good").len() > before).then_some(()),
    );
    // One flush interval (100 ms) of the store is included in the measurement.
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "readings resumed {:?} after the device returned",
        back.elapsed()
    );
    // Everything else kept going the whole time.
    assert!(readings_of(&data, "sim").len() > 30);
    assert!(readings_of(&data, "junk_sensor").is_empty());
    assert!(readings_of(&data, "mute_sensor").is_empty());
    assert!(readings_of(&data, "shut_sensor").is_empty());
    assert!(readings_of(&data, "bad_address").is_empty());
    // Backed off (200 ms doubling to 2 s, jittered): about one connection every 2 s, not one per request or a
    // tight reconnect loop (which made thousands a second to a peer that closes at once).
    let secs = started.elapsed().as_secs() as usize;
    for (name, n) in [("garbage", &garbage_conns), ("closing", &closer_conns)] {
        let n = n.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!("{name} peer: {n} connections in {secs} s");
        assert!(
            (2..=secs + 8).contains(&n),
            "{name} peer: {n} connections in {secs} s"
        );
    }
    // The peer that closes is named for what it does, not tokio-modbus's stale errno ("Operation now in progress").
    let log = d.log();
    assert!(
        log.contains("the device closed the connection") && !log.contains("os error 115"),
        "{log}"
    );
    assert!(
        d.child.try_wait().expect("w").is_none(),
        "daemon alive: {}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    // The garbage peer's failures were logged against its bus (not only the start-up line that names it).
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("bus=junk") && l.contains("failed")),
        "{log}"
    );
}

/// STRING and 64-bit registers from a live pymodbus through the daemon: the store keeps them exact, and the line
/// protocol carries them as `value_text` and `value_uint`/`value_int` (read back by InfluxDB 3's own parser).
#[test]
fn strings_and_64_bit_integers_stay_exact_through_the_store_and_line_protocol() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus_cases/strings_and_64bit");
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let _srv =
        modbus_server(&case.join("map.json"), Some(port), None, dir.path()).expect("pymodbus");
    let bus =
        format!("[[modbus]]\nname = \"dev\"\nurl = \"tcp://127.0.0.1:{port}\"\ntimeout = \"2s\"\n");
    let sensors = std::fs::read_to_string(case.join("sensors.toml")).expect("sensors.toml");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, cfg_text(&data, &bus, &sensors)).expect("w");
    let d = start_daemon(&cfg, dir.path());
    let stored = |sensor: &str| -> Option<watchpost::model::Reading> {
        with_store(&data, None, |s| {
            let mut last = None;
            s.export(watchpost::model::Timestamp(0), Some(sensor), |r| {
                last = Some(r.clone())
            })?;
            Ok(last)
        })
    };
    use watchpost::model::{Exact, Quality};
    let max = wait_for(Duration::from_secs(20), "a stored counter_max", || {
        stored("counter_max")
    });
    assert_eq!(max.exact, Some(Exact::UInt(u64::MAX)));
    let signed = wait_for(Duration::from_secs(20), "energy_signed", || {
        stored("energy_signed")
    });
    assert_eq!(signed.exact, Some(Exact::Int(-9_007_199_254_740_993)));
    let tag = wait_for(Duration::from_secs(20), "tag", || stored("tag"));
    assert_eq!(tag.exact, Some(Exact::Text("PUMP-07".into())));
    assert_eq!(
        tag.quality,
        Quality::Good,
        "text is good as read, not an invalid number"
    );
    drop(d);
    let (code, lp, err) = run_cli(&[
        "buffer",
        "export",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "lp",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(lp.contains("value_uint=18446744073709551615u"), "{lp}");
    assert!(lp.contains("value_int=-9007199254740993i"), "{lp}");
    assert!(lp.contains("value_text=\"PUMP-07\""), "{lp}");
    for line in lp.lines().filter(|l| !l.starts_with('#')) {
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(line).collect();
        assert!(parsed.iter().all(|p| p.is_ok()), "{line}: {parsed:?}");
    }
}
