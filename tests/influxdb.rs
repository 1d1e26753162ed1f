//! InfluxDB v2 write sink against a real VictoriaMetrics (values, tags, hostile names, outage, kill -9) and a
//! scripted HTTP server for the error paths VictoriaMetrics cannot produce (400, 413, 429, 401).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watchpost::store::Store;

fn config(data: &Path, port: u16, sensors: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw 1,a=b"
location = "hall \"B\" ✓"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[influxdb]
url = "http://127.0.0.1:{port}"
org = "plant"
bucket = "sensors"
token = "secret-token"
tags = {{ "site key" = "plant=1" }}

{sensors}
"#,
        data.display()
    )
}

const HOSTILE: &str = r#"
[[sensor]]
id = "temp 1,x=y \"q\" ünï"
source = { simulated = "ramp", offset = 0.0, step = 1.0 }
interval = "50ms"
tags = { "line no" = "3,4" }
"#;

fn stored(data: &Path) -> u64 {
    with_store(data, 0, |s| s.counts().map(|c| c.0))
}

#[test]
fn readings_arrive_with_values_tags_and_timestamps() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let vm = Vm::start(dir.path(), port)
        .expect("vm: a test server or tool the suite needs (.ci/run installs them)");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port, HOSTILE)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(
        Duration::from_secs(20),
        "samples in VictoriaMetrics",
        || (vm.count(r#"{__name__="sensor_value"}"#) >= 20).then_some(()),
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log());
    let mut n_local = 0;
    Store::open_existing(&data)
        .expect("store")
        .export(watchpost::model::Timestamp(i64::MIN), None, |_| {
            n_local += 1
        })
        .expect("export");
    // VictoriaMetrics makes writes visible after a short delay.
    wait_for(Duration::from_secs(20), "all readings visible", || {
        (vm.count(r#"{__name__="sensor_value"}"#) >= n_local).then_some(())
    });
    let series = vm.export(r#"{__name__="sensor_value"}"#);
    assert_eq!(series.len(), 1, "{series:?}");
    let m = &series[0]["metric"];
    assert_eq!(m["sensor"], "temp 1,x=y \"q\" ünï");
    assert_eq!(m["device"], "gw 1,a=b");
    assert_eq!(m["location"], "hall \"B\" ✓");
    assert_eq!(m["site key"], "plant=1");
    assert_eq!(m["line no"], "3,4");
    // Values are the ramp 0, 1, 2, … with the sample timestamps from the local store.
    let mut local = Vec::new();
    Store::open_existing(&data)
        .expect("store")
        .export(watchpost::model::Timestamp(i64::MIN), None, |r| {
            local.push((r.ts.0, r.value))
        })
        .expect("export");
    let values = series[0]["values"].as_array().expect("values");
    let ts = series[0]["timestamps"].as_array().expect("ts");
    let remote: Vec<(i64, f64)> = ts
        .iter()
        .zip(values)
        .map(|(t, v)| (t.as_i64().unwrap_or(0), v.as_f64().unwrap_or(-1.0)))
        .collect();
    assert_eq!(
        remote, local,
        "every stored reading, exactly, with its timestamp"
    );
    assert!(remote.iter().enumerate().all(|(i, (_, v))| *v == i as f64));
}

#[test]
fn outage_and_kill_9_lose_nothing_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    if require("victoria-metrics").is_none() {
        return;
    }
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, port, HOSTILE)).expect("write");
    // Server down: readings accumulate locally.
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(20), "backlog", || {
        (stored(&data) > 30).then_some(())
    });
    d.signal(libc::SIGKILL);
    let _ = d.wait_exit(Duration::from_secs(5));
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(20), "more backlog", || {
        (stored(&data) > 60).then_some(())
    });
    // Server back: the backlog drains.
    let vm = Vm::start(dir.path(), port).expect("vm");
    wait_for(Duration::from_secs(60), "backlog delivered", || {
        (vm.count(r#"{__name__="sensor_value"}"#) > 80).then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let mut local = std::collections::BTreeSet::new();
    Store::open_existing(&data)
        .expect("store")
        .export(watchpost::model::Timestamp(i64::MIN), None, |r| {
            local.insert(r.ts.0);
        })
        .expect("export");
    // Everything stored was sent before the clean shutdown (drain), each timestamp once.
    wait_for(Duration::from_secs(20), "all readings visible", || {
        (vm.count(r#"{__name__="sensor_value"}"#) >= local.len()).then_some(())
    });
    let series = vm.export(r#"{__name__="sensor_value"}"#);
    let ts: Vec<i64> = series[0]["timestamps"]
        .as_array()
        .expect("ts")
        .iter()
        .filter_map(|t| t.as_i64())
        .collect();
    let remote: std::collections::BTreeSet<i64> = ts.iter().copied().collect();
    assert_eq!(remote.len(), ts.len(), "no duplicate timestamps");
    assert_eq!(remote, local, "nothing missing");
    let (code, out, _) = run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 0);
    assert!(
        out.contains("sink influxdb    readings pending          0"),
        "{out}"
    );
}

/// A scripted HTTP server: `decide(request_no, lines)` picks the status and extra headers.
struct Scripted {
    port: u16,
    log: Arc<Mutex<Vec<(Instant, u16, usize)>>>,
    accepted_lines: Arc<Mutex<usize>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(
        decide: impl Fn(usize, usize) -> (u16, &'static str) + Send + Sync + 'static,
    ) -> Scripted {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0usize));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let decide = Arc::new(decide);
        let (log2, acc2, bodies2) = (Arc::clone(&log), Arc::clone(&accepted), Arc::clone(&bodies));
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (log, acc, decide, bodies) = (
                    Arc::clone(&log2),
                    Arc::clone(&acc2),
                    Arc::clone(&decide),
                    Arc::clone(&bodies2),
                );
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().expect("clone"));
                    let mut w = conn;
                    loop {
                        let mut len = 0usize;
                        let mut gzip = false;
                        let mut first = String::new();
                        if r.read_line(&mut first).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let hl = h.to_ascii_lowercase();
                            if let Some(v) = hl.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                            if hl.starts_with("content-encoding:") && hl.contains("gzip") {
                                gzip = true;
                            }
                            if h == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0u8; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        let text = if gzip {
                            let mut s = String::new();
                            let _ = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut s);
                            s
                        } else {
                            String::from_utf8_lossy(&body).into_owned()
                        };
                        let lines = text.lines().count();
                        if let Ok(mut b) = bodies.lock() {
                            b.push(text.clone());
                        }
                        let n = log.lock().map(|l| l.len()).unwrap_or(0);
                        let (status, extra) = decide(n, lines);
                        if let Ok(mut l) = log.lock() {
                            l.push((Instant::now(), status, lines));
                        }
                        if (200..300).contains(&status) {
                            if let Ok(mut a) = acc.lock() {
                                *a += lines;
                            }
                        }
                        let msg = if status == 400 {
                            "{\"code\":\"invalid\",\"message\":\"unable to parse\"}"
                        } else {
                            ""
                        };
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}\r\n{msg}",
                            msg.len()
                        );
                        if w.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            port,
            log,
            accepted_lines: accepted,
            bodies,
        }
    }
    fn requests(&self) -> Vec<(Instant, u16, usize)> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

const FAST: &str = r#"
[[sensor]]
id = "s"
source = { simulated = "ramp" }
interval = "20ms"
"#;

/// `write_interval`: once caught up the sink writes at most that often, each request carrying every commit since the
/// last; a stop still delivers everything.
#[test]
fn write_interval_gathers_commits_into_one_request() {
    let srv = Scripted::start(|_, _| (204, ""));
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let text = config(&data, srv.port, FAST).replace(
        "token = \"secret-token\"",
        "token = \"secret-token\"\nwrite_interval = \"1s\"",
    );
    assert!(text.contains("write_interval"));
    std::fs::write(&cfg, text).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    let reqs = wait_for(Duration::from_secs(20), "four writes", || {
        let r = srv.requests();
        (r.len() >= 4).then_some(r)
    });
    // Readings every 20 ms, commits every 100 ms: one request a second, each with many commits' readings (one
    // request per commit would be 10 a second with ~5 lines each).
    for w in reqs.windows(2) {
        let gap = w[1].0.duration_since(w[0].0);
        assert!(gap >= Duration::from_millis(900), "requests {gap:?} apart");
    }
    for r in &reqs[1..4] {
        assert!(r.2 >= 20, "a request of {} lines", r.2);
    }
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(reqs.iter().all(|r| r.1 == 204));
    assert_eq!(*srv.accepted_lines.lock().expect("l") as u64, stored(&data));
}

#[test]
fn error_400_dead_letters_and_moves_on() {
    let srv = Scripted::start(|n, _| if n == 0 { (400, "") } else { (204, "") });
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, srv.port, FAST)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(20), "later batches accepted", || {
        (srv.requests().iter().filter(|r| r.1 == 204).count() >= 3).then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        d.log().contains("rejected the data as malformed"),
        "{}",
        d.log()
    );
    assert!(d.log().contains("unable to parse"), "server message logged");
    let (_, out, _) = run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
    assert!(!out.contains("dead letters 0"), "{out}");
}

#[test]
fn error_413_splits_the_batch() {
    // Accept at most 2 lines per request.
    let srv = Scripted::start(|_, lines| if lines > 2 { (413, "") } else { (204, "") });
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, srv.port, FAST)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(20), "split batches accepted", || {
        (*srv.accepted_lines.lock().expect("l") >= 50).then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let reqs = srv.requests();
    assert!(reqs.iter().any(|r| r.1 == 413));
    assert!(reqs.iter().filter(|r| r.1 == 204).all(|r| r.2 <= 2));
    // Every stored reading reached the server (the sink drained on shutdown).
    assert_eq!(*srv.accepted_lines.lock().expect("l") as u64, stored(&data));
}

#[test]
fn error_429_honours_retry_after() {
    let srv = Scripted::start(|n, _| {
        if n == 0 {
            (429, "Retry-After: 2\r\n")
        } else {
            (204, "")
        }
    });
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, srv.port, FAST)).expect("write");
    let d = start_daemon(&cfg, dir.path());
    let reqs = wait_for(Duration::from_secs(20), "retry", || {
        let r = srv.requests();
        (r.len() >= 2).then_some(r)
    });
    let gap = reqs[1].0.duration_since(reqs[0].0);
    assert!(gap >= Duration::from_millis(1900), "waited {gap:?}");
    assert!(gap < Duration::from_secs(6), "waited {gap:?}");
    drop(d);
}

#[test]
fn error_401_is_logged_and_data_kept() {
    let srv = Scripted::start(|_, _| (401, ""));
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, config(&data, srv.port, FAST)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(20), "401 logged", || {
        d.log()
            .contains("the token is missing or wrong")
            .then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let (_, out, _) = run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
    let pending = stored(&data);
    assert!(pending > 0);
    assert!(
        out.contains(&format!("pending {pending:>10}")),
        "all {pending} kept: {out}"
    );
}

#[test]
fn a_reload_that_changes_sensor_tags_reaches_influxdb() {
    // SIGHUP with a sensor's tags changed restarts the InfluxDB sink (its encoder holds the tags); the new tag is
    // on the wire, and nothing pending is lost across the restart.
    let srv = Scripted::start(|_, _| (204, ""));
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensor = |line: &str| {
        format!("[[sensor]]\nid = \"s\"\nsource = {{ simulated = \"ramp\" }}\ninterval = \"20ms\"\ntags = {{ line = \"{line}\" }}\n")
    };
    std::fs::write(&cfg, config(&data, srv.port, &sensor("old"))).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    let seen = |tag: &str| {
        srv.bodies
            .lock()
            .map(|b| b.iter().any(|t| t.contains(tag)))
            .unwrap_or(false)
    };
    wait_for(Duration::from_secs(20), "line=old on the wire", || {
        seen("line=old").then_some(())
    });
    std::fs::write(&cfg, config(&data, srv.port, &sensor("new"))).expect("write");
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(20), "line=new on the wire", || {
        seen("line=new").then_some(())
    });
    assert!(
        d.log()
            .contains("Sink configuration changed; restarting it."),
        "{}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    // Every stored reading reached the server (at least once), across the restart.
    let stored = stored(&data) as usize;
    let sent = *srv.accepted_lines.lock().expect("lock");
    assert!(
        sent >= stored,
        "{sent} lines accepted, {stored} readings stored"
    );
}

/// RSS of a process in kB.
fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn connections_cut_every_two_seconds_lose_nothing_keep_memory_flat_and_cause_no_reconnect_storm() {
    let dir = tempfile::tempdir().expect("tmp");
    let vm_port = free_port();
    let vm = Vm::start(dir.path(), vm_port)
        .expect("vm: a test server or tool the suite needs (.ci/run installs them)");
    let (proxy, accepted) = cutting_proxy(vm_port, Duration::from_secs(2));
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let sensors = r#"
[[sensor]]
id = "ramp"
source = { simulated = "ramp", offset = 0.0, step = 1.0 }
interval = "10ms"
"#;
    std::fs::write(&cfg, config(&data, proxy, sensors)).expect("w");
    let d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "first writes", || {
        (vm.count(r#"{__name__="sensor_value"}"#) > 0).then_some(())
    });
    let early = rss_kb(d.pid());
    std::thread::sleep(Duration::from_secs(12));
    let late = rss_kb(d.pid());
    // Stop producing; everything stored must arrive through the cuts, once per timestamp.
    std::fs::write(&cfg, config(&data, proxy, "")).expect("w");
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), "reloaded", || {
        d.log().contains("Configuration reloaded").then_some(())
    });
    let mut seen = (0, 0, 0);
    let start = std::time::Instant::now();
    let local = loop {
        let local = stored(&data);
        let (total, distinct) = vm.count_distinct(r#"{__name__="sensor_value"}"#);
        if distinct as u64 == local {
            break local;
        }
        seen = (local, total, distinct);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "after 60 s: {} stored, {} samples in VictoriaMetrics, {} distinct timestamps\n{}",
            seen.0,
            seen.1,
            seen.2,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("last mismatch seen (stored, samples, distinct): {seen:?}");
    assert!(local > 1000, "{local}");
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("connections through the proxy: {n}; RSS {early} kB → {late} kB");
    // One new connection per cut (about 7 in 14 s) and a few for overlapping requests, not one per batch (140).
    assert!(
        (3..=30).contains(&n),
        "{n} connections with a cut every 2 s"
    );
    assert!(
        late <= early + early / 4 + 1024,
        "RSS grew from {early} kB to {late} kB"
    );
}
