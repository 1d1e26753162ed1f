//! `buffer export`: the exact wire encoding of the InfluxDB sink (so a gap can be back-filled with `influx write`),
//! `--since` on a long-lived store, and a failed write is an error, not a truncated file with exit 0.

mod common;
use common::*;
use watchpost::model::{Reading, Timestamp};
use watchpost::store::Store;

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Vec<Reading>) {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nid = \"gw 1\"\nlocation = 'hall\\b'\ndata_dir = \"{}\"\n\n[influxdb]\nurl = \"http://127.0.0.1:1\"\n\
             measurement = \"plant\"\nprecision = \"us\"\ntags = {{ site = \"north\" }}\n\n\
             [[sensor]]\nid = \"t\"\nsource = {{ simulated = \"constant\" }}\ntags = {{ asset = \"pump-7\" }}\n",
            data.display()
        ),
    )
    .expect("w");
    let mut store = Store::open(&data).expect("store");
    let id = watchpost::model::SensorId::from("t");
    // 600 old batches, then 10 recent ones: `--since` must find the recent ones however many precede them.
    for b in 0..600 {
        let r = Reading::new(id, Timestamp(1_600_000_000_000 + b), b as f64);
        store.append_readings(&[r], None).expect("append");
    }
    let now = Timestamp::now().0;
    let recent: Vec<Reading> = (0..10)
        .map(|i| Reading::new(id, Timestamp(now - 5_000 + i), 1000.0 + i as f64))
        .collect();
    for r in &recent {
        store
            .append_readings(std::slice::from_ref(r), None)
            .expect("append");
    }
    store.mark_clean().expect("clean");
    (dir, cfg, recent)
}

#[test]
fn export_is_the_wire_encoding_and_since_finds_recent_data() {
    let (_dir, cfg, recent) = setup();
    let (code, out, err) = run_cli(&[
        "buffer",
        "export",
        "--config",
        cfg.to_str().expect("utf8"),
        "--since",
        "1m",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("# watchpost export, precision=us (influx write --precision us)")
    );
    let config = watchpost::config::load(&cfg).expect("config");
    let mut enc = watchpost::sink::lineproto::Encoder::from_config(&config, None);
    let mut expected = String::new();
    for r in &recent {
        enc.line(&mut expected, r);
    }
    let body: Vec<&str> = lines.collect();
    assert_eq!(
        body,
        expected.lines().collect::<Vec<_>>(),
        "all 10 recent readings, exactly as on the wire"
    );
    assert!(body[0].starts_with(
        "plant,asset=pump-7,device=gw\\ 1,location=hall\\b,sensor=t,site=north value=1000.0 "
    ));
    // --precision overrides, and says so in the header.
    let (_, out, _) = run_cli(&[
        "buffer",
        "export",
        "--config",
        cfg.to_str().expect("utf8"),
        "--since",
        "1m",
        "--precision",
        "s",
    ]);
    assert!(out.starts_with("# watchpost export, precision=s "));
    assert_eq!(out.lines().count(), 11);
    // Everything without --since: 610 readings.
    let (_, out, _) = run_cli(&[
        "buffer",
        "export",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "csv",
    ]);
    assert_eq!(out.lines().count(), 611, "header + 610 rows");
    // A sensor id that was never configured nor stored is a typo, not an empty export.
    let (code, out, err) = run_cli(&[
        "buffer",
        "export",
        "--config",
        cfg.to_str().expect("utf8"),
        "--sensor",
        "nosuch",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no sensor \"nosuch\""), "{err}");
}

#[test]
fn a_failed_write_fails_the_export() {
    let (_dir, cfg, _) = setup();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let st = std::process::Command::new(bin())
        .args(["buffer", "export", "--config", cfg.to_str().expect("utf8")])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    assert_eq!(st.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&st.stderr).contains("cannot write the output"));
}
