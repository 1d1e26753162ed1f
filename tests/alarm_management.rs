//! Alarm management against the daemon and a real pymodbus peer whose registers the test writes over Modbus:
//! a derived sensor, suppression by a pump-state register, a rate-of-change alarm, a flood of 30 alarms with
//! low-priority ones held, a chattering input, and the KPIs `watchpost alarms report` computes from the store.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;
use watchpost::model::{Alert, AlertState, AlertType};

/// Registers of unit 1 (holding, 0-based).
const VOLTS: u16 = 0;
const AMPS: u16 = 1;
const PUMP: u16 = 2;
const FLOW: u16 = 3;
const TEMP: u16 = 4;
const CHATTER: u16 = 5;
const FLOOD: u16 = 10;

fn write(port: u16, addr: u16, values: &[u16]) {
    use tokio_modbus::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let sock = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut ctx = tcp::connect_slave(sock, Slave(1)).await.expect("connect");
        ctx.write_multiple_registers(addr, values)
            .await
            .expect("transport")
            .expect("no exception");
        let _ = ctx.disconnect().await;
    });
}

fn events(data: &Path) -> Vec<Alert> {
    with_store(data, Vec::new(), |s| s.all_events())
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

fn wait_event(data: &Path, what: &str, f: impl Fn(&Alert) -> bool) -> Alert {
    wait_for(Duration::from_secs(20), what, || {
        events(data).into_iter().find(|a| f(a))
    })
}

/// Wait until at least `n` events of `(sensor, type, state)` are stored; returns how many there are.
fn wait_count(
    data: &Path,
    (sensor, kind, state): (&str, AlertType, AlertState),
    n: usize,
) -> usize {
    let what = format!("{n} × {sensor} {} {}", kind.as_str(), state.as_str());
    wait_for(Duration::from_secs(20), &what, || {
        let got = events(data)
            .iter()
            .filter(|a| a.sensor == sensor && a.kind == kind && a.state == state)
            .count();
        (got >= n).then_some(got)
    })
}

#[test]
fn derived_suppressed_rate_flood_and_chattering_alarms_against_a_modbus_peer() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let port = free_port();
    let mut hr = vec![0u16; 40];
    hr[VOLTS as usize] = 230;
    hr[AMPS as usize] = 5;
    hr[PUMP as usize] = 1;
    hr[FLOW as usize] = 20;
    hr[TEMP as usize] = 40;
    let map = dir.path().join("map.json");
    std::fs::write(
        &map,
        serde_json::json!({"units": {"1": {"hr": hr}}}).to_string(),
    )
    .expect("map");
    let _srv = modbus_server(&map, Some(port), None, dir.path())
        .expect("_srv: a test server or tool the suite needs (.ci/run installs them)");
    let reg = |id: &str, addr: u16, extra: &str| {
        format!("[[sensor]]\nid = \"{id}\"\ninterval = \"200ms\"\nsource = {{ modbus = \"plc\", table = \"holding\", address = {addr}, type = \"u16\" }}\n{extra}\n")
    };
    let mut sensors = String::new();
    sensors += &reg("volts", VOLTS, "");
    sensors += &reg("amps", AMPS, "");
    sensors += "[[sensor]]\nid = \"power\"\nformula = \"volts * amps / 1000\"\nunit = \"kW\"\n\n";
    sensors += &reg("pump_running", PUMP, "");
    sensors += &reg(
        "flow",
        FLOW,
        "warning = { low = 10.0 }\nenabled_when = \"pump_running > 0.5\"\npriority = \"high\"",
    );
    sensors += &reg(
        "bearing",
        TEMP,
        "rate = { high = 10.0, per = \"1m\", window = \"4s\" }",
    );
    sensors += &reg("valve", CHATTER, "warning = { high = 1.0 }");
    for i in 0..30u16 {
        let prio = if i % 2 == 1 { "low" } else { "medium" };
        sensors += &reg(
            &format!("f{i:02}"),
            FLOOD + i,
            &format!("warning = {{ high = 1.0 }}\npriority = \"{prio}\""),
        );
    }
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n\n[buffer]\nflush_interval = \"100ms\"\n\n\
             [alarms]\nkpi_interval = \"10s\"\n\n\
             [[modbus]]\nname = \"plc\"\nurl = \"tcp://127.0.0.1:{port}\"\ntimeout = \"2s\"\n\n{sensors}",
            data.display()
        ),
    )
    .expect("cfg");
    let (code, out, err) = run_cli(&["check-config", "--file-only", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
    let mut d = start_daemon(&cfg, dir.path());

    // Derived: power from volts and amps, stored like any sensor.
    wait_for(Duration::from_secs(20), "power = 1.15 stored", || {
        stored_values(&data, "power")
            .iter()
            .any(|v| (v - 1.15).abs() < 1e-9)
            .then_some(())
    });
    write(port, AMPS, &[10]);
    wait_for(Duration::from_secs(20), "power = 2.3 stored", || {
        stored_values(&data, "power")
            .iter()
            .any(|v| (v - 2.3).abs() < 1e-9)
            .then_some(())
    });

    // Suppression by the pump's state register.
    write(port, FLOW, &[5]);
    let raised = wait_event(&data, "low flow raised", |a| {
        a.sensor == "flow" && a.kind == AlertType::Alert && a.state == AlertState::Raised
    });
    assert_eq!(raised.operator.priority.map(|p| p.as_str()), Some("high"));
    write(port, PUMP, &[0]);
    let cleared = wait_event(&data, "low flow cleared as suppressed", |a| {
        a.sensor == "flow" && a.kind == AlertType::Alert && a.state == AlertState::Cleared
    });
    assert!(cleared.operator.suppressed_by_state, "{cleared:?}");
    wait_event(&data, "SUPPRESSED_BY_STATE raised", |a| {
        a.kind == AlertType::SuppressedByState && a.state == AlertState::Raised
    });
    write(port, PUMP, &[1]);
    wait_event(&data, "SUPPRESSED_BY_STATE cleared", |a| {
        a.kind == AlertType::SuppressedByState && a.state == AlertState::Cleared
    });
    let raises = wait_count(&data, ("flow", AlertType::Alert, AlertState::Raised), 2);
    assert_eq!(raises, 2, "low flow raised again, once");

    // Rate of change: 40 → 60 within the 4 s window is far beyond 10 per minute.
    write(port, TEMP, &[60]);
    let rate = wait_event(&data, "RATE_OF_CHANGE raised", |a| {
        a.sensor == "bearing" && a.kind == AlertType::RateOfChange && a.state == AlertState::Raised
    });
    assert!(rate.value.is_some_and(|v| v >= 10.0), "{rate:?}");

    // A flood: 30 alarms at once. More than 10 annunciated within 10 minutes raise ALARM_FLOOD; the low-priority
    // ones raised during it are held.
    write(port, FLOOD, &[2; 30]);
    wait_event(&data, "ALARM_FLOOD raised", |a| {
        a.kind == AlertType::AlarmFlood && a.state == AlertState::Raised
    });
    let all = wait_for(Duration::from_secs(20), "all 30 flood alarms", || {
        let ev = events(&data);
        let n = ev
            .iter()
            .filter(|a| is_flood_sensor(&a.sensor) && a.state == AlertState::Raised)
            .count();
        (n == 30).then_some(ev)
    });
    let held: Vec<&Alert> = all.iter().filter(|a| a.operator.held).collect();
    assert!(!held.is_empty(), "some low-priority alarms are held");
    assert!(
        held.iter()
            .all(|a| a.operator.priority.map(|p| p.as_str()) == Some("low")),
        "only low-priority alarms are held: {held:?}"
    );

    // Chattering: the valve alarm raised three times within a minute.
    for n in 1..=3 {
        write(port, CHATTER, &[2]);
        wait_count(&data, ("valve", AlertType::Alert, AlertState::Raised), n);
        write(port, CHATTER, &[0]);
        wait_count(&data, ("valve", AlertType::Alert, AlertState::Cleared), n);
    }
    wait_event(&data, "CHATTERING raised", |a| {
        a.sensor == "valve" && a.kind == AlertType::Chattering && a.state == AlertState::Raised
    });
    assert!(d.child.try_wait().expect("wait").is_none(), "{}", d.log());

    // The KPIs from the store.
    let (code, out, err) = run_cli(&[
        "alarms",
        "report",
        "--config",
        cfg.to_str().expect("utf8"),
        "--since",
        "1h",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let k: serde_json::Value = serde_json::from_str(&out).expect("json");
    let held_n = held.len() as u64;
    // Annunciated: 2 flow + 1 rate + (30 − held) flood + 3 valve.
    assert_eq!(k["annunciated"], 2 + 1 + (30 - held_n) + 3, "{k}");
    assert_eq!(k["held"], held_n, "{k}");
    assert_eq!(k["floods"], 1, "{k}");
    assert_eq!(k["chattering"], 1, "{k}");
    assert_eq!(k["bad_actors"][0]["sensor"], "valve", "{k}");
    assert_eq!(k["bad_actors"][0]["alarms"], 3, "{k}");
    // Standing: flow (low, raised again), bearing (rate), every flood alarm; not the cleared valve.
    assert_eq!(k["standing"], 1 + 1 + 30, "{k}");
    let (_, table, _) = run_cli(&["alarms", "report", "--config", cfg.to_str().expect("utf8")]);
    assert!(table.contains("Top ") && table.contains("valve"), "{table}");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log());
}

/// `f00` … `f29`.
fn is_flood_sensor(id: &str) -> bool {
    id.len() == 3 && id.starts_with('f') && id[1..].bytes().all(|b| b.is_ascii_digit())
}
