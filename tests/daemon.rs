//! The daemon as a user runs it: SIGHUP reload (valid and invalid), SIGTERM, restart without re-raising, and a
//! disk that refuses writes.

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use watchpost::model::{AlertState, AlertType};
use watchpost::store::Store;

fn config(data: &Path, warning_high: f64) -> String {
    format!(
        r#"
[gateway]
id = "gw-test"
location = "lab"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[[sensor]]
id = "temp"
source = {{ simulated = "constant", offset = 50.0 }}
interval = "50ms"
unit = "C"
warning = {{ high = {warning_high} }}
"#,
        data.display()
    )
}

/// A temporary directory with `data/` for the store and `watchpost.toml` written from [`config`].
fn workdir(warning_high: f64) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    std::fs::write(&cfg, config(&data, warning_high)).expect("write");
    (dir, data, cfg)
}

fn events(data: &Path) -> Vec<watchpost::model::Alert> {
    with_store(data, Vec::new(), |s| s.all_events())
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

fn readings(data: &Path) -> u64 {
    with_store(data, 0, |s| s.counts().map(|c| c.0))
}

#[test]
fn reload_applies_thresholds_keeps_old_config_on_error_and_exits_cleanly() {
    let (dir, data, cfg) = workdir(60.0);
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "readings stored", || {
        (readings(&data) > 5).then_some(())
    });
    assert!(events(&data).is_empty(), "50 < 60: no alert");

    // Lower the threshold: SIGHUP applies it without a restart.
    std::fs::write(&cfg, config(&data, 40.0)).expect("write");
    d.signal(libc::SIGHUP);
    let ev = wait_for(Duration::from_secs(10), "alert after reload", || {
        let e = events(&data);
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(ev[0].kind, AlertType::Alert);
    assert_eq!(ev[0].state, AlertState::Raised);
    assert_eq!(ev[0].threshold, Some(40.0));

    // A broken file is refused; the old config keeps running.
    std::fs::write(&cfg, "[gateway]\nid = \n").expect("write");
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), "refusal logged", || {
        d.log().contains("keeping the old one").then_some(())
    });
    assert!(d.log().contains("TOML syntax error"), "{}", d.log());
    let before = readings(&data);
    wait_for(Duration::from_secs(10), "still running", || {
        (readings(&data) > before).then_some(())
    });
    assert_eq!(events(&data).len(), 1, "no new transitions");

    // SIGTERM: exit 0 within a few seconds, store marked clean.
    d.signal(libc::SIGTERM);
    let code = d.wait_exit(Duration::from_secs(8));
    assert_eq!(code, Some(0), "{}", d.log());

    // Restart with the same threshold: the active alarm is not raised again; raising the limit clears it.
    std::fs::write(&cfg, config(&data, 40.0)).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    let n = readings(&data);
    wait_for(Duration::from_secs(10), "readings after restart", || {
        (readings(&data) > n + 5).then_some(())
    });
    assert!(!d.log().contains("did not shut down cleanly"));
    assert_eq!(events(&data).len(), 1, "not raised twice after restart");
    std::fs::write(&cfg, config(&data, 70.0)).expect("write");
    d.signal(libc::SIGHUP);
    let ev = wait_for(Duration::from_secs(10), "clear after restart", || {
        let e = events(&data);
        (e.len() == 2).then_some(e)
    });
    assert_eq!(ev[1].state, AlertState::Cleared);
    assert_eq!(ev[1].id, ev[0].id);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(8)), Some(0));

    // buffer status and export show the data.
    let (code, out, err) = run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("alert events:     2"), "{out}");
    let (code, out, _) = run_cli(&[
        "buffer",
        "export",
        "--config",
        cfg.to_str().expect("utf8"),
        "--format",
        "csv",
        "--sensor",
        "temp",
    ]);
    assert_eq!(code, 0);
    assert!(out.lines().count() > 10);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.contains(",temp,50,good")),
        "{out}"
    );
}

#[test]
fn health_endpoints_say_what_is_wrong_with_status_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    let (port, dead) = (free_port(), free_port());
    let text = config(&data, 40.0).replace(
        "[buffer]",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[influxdb]\nurl = \"http://127.0.0.1:{dead}\"\norg = \"o\"\nbucket = \"b\"\n\n[buffer]"
        ),
    );
    std::fs::write(&cfg, text).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    // The time-series server is down: alive, but not ready, and the body names the sink.
    let (code, body) = wait_for(Duration::from_secs(20), "readyz 503", || {
        http_get_status(port, "/readyz").filter(|(c, _)| *c == 503)
    });
    assert_eq!(code, 503);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["sinks"]["influxdb"], "failing", "{body}");
    assert_eq!(v["store"], "ok");
    let (code, body) = http_get_status(port, "/healthz").expect("healthz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(http_get_status(port, "/nope").map(|r| r.0), Some(404));
    assert_eq!(
        http_get_status(port, "/metrics?x=1").map(|r| r.0),
        Some(200)
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(8)), Some(0));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    let port = free_port();
    let text = config(&data, 40.0).replace(
        "[buffer]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[buffer]"),
    );
    std::fs::write(&cfg, text).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    let body = wait_for(
        Duration::from_secs(10),
        "metrics with readings and an alert",
        || {
            let b = http_get(port, "/metrics")?;
            let n = |name: &str| {
                b.lines()
                    .find(|l| l.starts_with(&format!("{name} ")))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            };
            (n("watchpost_readings_total")? > 5.0 && n("watchpost_alerts_total")? >= 1.0)
                .then_some(b)
        },
    );
    assert!(body.contains("# TYPE watchpost_store_flushes_total counter"));
    assert!(body.contains("watchpost_readings_dropped_total 0"));
    assert!(body.contains("# TYPE watchpost_poll_latency_seconds summary"));
    // What an operator looks for first: the build, each sensor's last value and quality, active alarms.
    assert!(body.contains("watchpost_build_info{version=\""), "{body}");
    assert!(
        body.contains("watchpost_sensor_value{sensor=\"temp\"} 50"),
        "{body}"
    );
    assert!(
        body.contains("watchpost_sensor_good{sensor=\"temp\",quality=\"good\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("watchpost_alarms_active{severity=\"WARNING\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("watchpost_alarms_active{severity=\"CRITICAL\"} 0"),
        "{body}"
    );
    // Prometheus' own checker (lint included): what a scrape would accept.
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; .ci/run installs it)");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(8)), Some(0));
}

#[test]
fn size_cap_drops_oldest_readings_once_alerted_and_keeps_alerts() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    // 200 noisy sensors at 100 Hz fill the 1 MiB cap in seconds; `temp` keeps an alarm active.
    let mut text = config(&data, 40.0).replace(
        "flush_interval = \"100ms\"",
        "flush_interval = \"100ms\"\nmax_size = \"1MiB\"",
    );
    for i in 0..200 {
        text.push_str(&format!(
            "\n[[sensor]]\nid = \"n{i}\"\nsource = {{ simulated = \"random_walk\", offset = 10.0, step = 1.0, seed = {i} }}\ninterval = \"10ms\"\n"
        ));
    }
    std::fs::write(&cfg, text).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    let overflow = |data: &Path| {
        events(data)
            .into_iter()
            .filter(|a| a.kind == AlertType::BufferOverflow)
            .count()
    };
    wait_for(Duration::from_secs(60), "BUFFER_OVERFLOW", || {
        (overflow(&data) >= 1).then_some(())
    });
    // Keep running over the cap for a while: still one overflow alert, the store stays near the cap.
    let before = with_store(&data, 0, |s| s.dropped_readings());
    wait_for(Duration::from_secs(30), "more drops", || {
        (with_store(&data, 0, |s| s.dropped_readings()) > before).then_some(())
    });
    assert_eq!(overflow(&data), 1, "raised once per episode");
    assert!(d
        .log()
        .contains("Buffer cap reached: dropped the oldest readings"));
    let used = Store::open_existing(&data)
        .and_then(|s| s.used_bytes())
        .expect("used");
    assert!(used <= 1_200_000, "store stays near the cap: {used}");
    // The threshold alarm raised at the start is still there: alerts are never dropped for readings.
    assert!(events(&data)
        .iter()
        .any(|a| a.kind == AlertType::Alert && a.sensor == "temp"));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let (_, out, _) = run_cli(&["buffer", "status", "--config", cfg.to_str().expect("utf8")]);
    assert!(!out.contains("dropped (cap):    0\n"), "{out}");
}

#[test]
fn second_signal_exits_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    // A time-series server that accepts and never answers keeps a delivery in flight, so the orderly shutdown
    // waits out its 3 s drain deadline: the second signal must cut it short.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(20).collect();
        drop(held);
    });
    let text = config(&data, 60.0).replace(
        "[buffer]",
        &format!("[influxdb]\nurl = \"http://127.0.0.1:{port}\"\norg = \"o\"\nbucket = \"b\"\n\n[buffer]"),
    );
    std::fs::write(&cfg, text).expect("write");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "started", || {
        d.log().contains("watchpost started").then_some(())
    });
    d.signal(libc::SIGINT);
    let first = std::time::Instant::now();
    wait_for(Duration::from_secs(5), "the stop request taken", || {
        d.log().contains("Shutting down.").then_some(())
    });
    // The same request forwarded by a wrapper (`timeout` + `runuser`) within the second: still one request.
    d.signal(libc::SIGINT);
    wait_for(Duration::from_secs(5), "orderly shutdown begun", || {
        d.log().contains("Giving sinks time to drain").then_some(())
    });
    wait_for(
        Duration::from_secs(5),
        "the duplicate taken as one request",
        || {
            d.log()
                .contains("The same stop request again")
                .then_some(())
        },
    );
    // A second signal later than that (still inside the 3 s drain) cuts the shutdown short.
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(first.elapsed()));
    assert!(
        d.child.try_wait().expect("w").is_none(),
        "still draining: {}",
        d.log()
    );
    let t = std::time::Instant::now();
    d.signal(libc::SIGINT);
    let code = d.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code,
        Some(2),
        "the second signal exits at once with 2: {}",
        d.log()
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "before the drain deadline"
    );
    assert!(d.log().contains("Second signal: exiting at once."));
}

#[test]
fn a_file_size_limit_lowers_the_cap_and_commits_go_on() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    let mut text = config(&data, 60.0).replace("interval = \"50ms\"", "interval = \"10ms\"");
    text = text.replace(
        "flush_interval = \"100ms\"",
        "flush_interval = \"100ms\"\nmax_size = \"1MiB\"",
    );
    // Many sensors with noisy values so the store grows fast.
    for i in 0..20 {
        text.push_str(&format!(
            "\n[[sensor]]\nid = \"n{i}\"\nsource = {{ simulated = \"random_walk\", offset = 10.0, step = 1.0, seed = {i} }}\ninterval = \"10ms\"\n"
        ));
    }
    std::fs::write(&cfg, text).expect("write");
    let log = dir.path().join("full.log");
    let mut child = std::process::Command::new(bin());
    child
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdout(std::process::Stdio::null());
    // SAFETY: the pre-exec hook calls only async-signal-safe functions (signal, setrlimit) between fork and exec.
    unsafe {
        child.pre_exec(|| {
            // A file-size limit makes writes fail like a full disk (EFBIG instead of a signal).
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 600 * 1024,
                rlim_max: 600 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    let mut d = Proc {
        child: child.spawn().expect("spawn"),
        log: log.clone(),
    };
    // The file-size limit is known to the process (RLIMIT_FSIZE): the cap comes down to it before a write fails
    // (before, the WAL grew into the limit, every write failed, and the daemon never committed again).
    wait_for(
        Duration::from_secs(60),
        "the cap lowered to the limit",
        || d.log().contains("Buffer cap reached").then_some(()),
    );
    let newest = || {
        let mut last = 0;
        if let Ok(mut s) = watchpost::store::Store::open_existing(&data) {
            let _ = s.export(watchpost::model::Timestamp(0), Some("temp"), |r| {
                last = last.max(r.ts.0)
            });
        }
        last
    };
    let before = newest();
    wait_for(Duration::from_secs(20), "readings still committed", || {
        (newest() > before + 2_000).then_some(())
    });
    let log_text = d.log();
    assert!(!log_text.contains("Cannot commit readings"), "{log_text}");
    for f in ["watchpost.db", "watchpost.db-wal"] {
        let len = std::fs::metadata(data.join(f)).map_or(0, |m| m.len());
        assert!(len < 600 * 1024, "{f} is {len} bytes");
    }
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "daemon died: {}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(10)).is_some(),
        "exits on SIGTERM"
    );
    // The store opens cleanly without the limit and holds readings.
    let s = Store::open(&data).expect("store opens after disk-full");
    assert!(s.counts().expect("counts").0 > 0);
}

#[test]
fn under_systemd_lines_carry_journal_priorities_and_no_timestamp() {
    use std::os::unix::fs::MetadataExt;
    let (dir, _, cfg) = workdir(40.0);
    let log = dir.path().join("journal.log");
    let f = std::fs::File::create(&log).expect("log");
    let meta = f.metadata().expect("stat");
    let child = std::process::Command::new(bin())
        .args(["run", "--log-level", "warn", "--config"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn");
    let mut d = Proc { child, log };
    // A WARNING raise is logged at WARN: visible with --log-level warn, priority 4 in the journal.
    let line = wait_for(Duration::from_secs(10), "the alarm in the log", || {
        d.log()
            .lines()
            .find(|l| l.contains("ALERT raised"))
            .map(str::to_string)
    });
    assert!(
        line.starts_with("<4> WARN") || line.starts_with("<4>WARN"),
        "{line}"
    );
    assert!(
        !line[3..].trim_start().starts_with("20"),
        "no timestamp of our own under journald: {line}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(8)), Some(0));
    assert!(d.log().lines().all(|l| l.starts_with('<')), "{}", d.log());
}

#[test]
fn json_logs_one_object_per_line() {
    let (dir, _, cfg) = workdir(40.0);
    let log = dir.path().join("json.log");
    let child = std::process::Command::new(bin())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let mut d = Proc { child, log };
    wait_for(Duration::from_secs(10), "alert logged", || {
        d.log().contains("ALERT raised").then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(8)), Some(0));
    let text = d.log();
    let mut alert_lines = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        if v["alert_id"].is_string() {
            alert_lines += 1;
            assert_eq!(v["sensor"], "temp");
        }
    }
    assert_eq!(alert_lines, 1, "one line per alert transition");
}

#[test]
fn metrics_endpoint_out_of_file_descriptors_does_not_spin_and_recovers() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    let port = free_port();
    let text = config(&data, 60.0).replace(
        "[buffer]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[buffer]"),
    );
    std::fs::write(&cfg, text).expect("write");
    let log = dir.path().join("fd.log");
    let mut child = std::process::Command::new(bin());
    child
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdout(std::process::Stdio::null());
    // SAFETY: the pre-exec hook calls only async-signal-safe functions (signal, setrlimit) between fork and exec.
    unsafe {
        child.pre_exec(|| {
            // Few file descriptors: a burst of connections runs the daemon out of them (EMFILE on accept).
            let lim = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 40,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut d = Proc {
        child: child.spawn().expect("spawn"),
        log,
    };
    wait_for(Duration::from_secs(10), "metrics", || {
        http_get(port, "/metrics")
    });
    // Slow-loris: 60 connections that never send a request.
    let held: Vec<std::net::TcpStream> = (0..60)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let cpu = |pid: i32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let f: Vec<&str> = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let c0 = cpu(d.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu(d.pid()) - c0;
    assert!(
        used < 60,
        "no busy loop: {used} CPU ticks in 3 s\n{}",
        d.log()
    );
    drop(held);
    // Once the connections go, scrapes work again and the daemon kept running.
    wait_for(Duration::from_secs(15), "metrics again", || {
        http_get(port, "/metrics")
    });
    assert!(d.child.try_wait().expect("w").is_none(), "{}", d.log());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Day-one traps: a bare `watchpost` prints the help and starts nothing (before: a daemon on the default config,
/// often as root); a reload of an unchanged file with a scripted `nan` reports nothing as changed.
#[test]
fn a_bare_watchpost_prints_help_and_an_unchanged_reload_reports_no_change() {
    let out = std::process::Command::new(bin())
        .env_remove("WATCHPOST_CONFIG")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(
        stdout.contains("Usage:") && err.contains("watchpost run"),
        "{stdout}{err}"
    );
    assert!(!err.contains("watchpost started"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let cfg = dir.path().join("watchpost.toml");
    let text = config(&data, 40.0)
        + "\n[[sensor]]\nid = \"gappy\"\nsource = { simulated = \"script\", values = [1.0, nan, 2.0] }\ninterval = \"100ms\"\n";
    std::fs::write(&cfg, text).expect("write");
    let d = start_daemon(&cfg, dir.path());
    wait_for(Duration::from_secs(10), "started", || {
        d.log().contains("watchpost started").then_some(())
    });
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), "the reload done", || {
        d.log().contains("Configuration reloaded").then_some(())
    });
    let log = d.log();
    assert!(
        !log.contains("Sensors changed by the reload"),
        "an unchanged file changed nothing: {log}"
    );
}

#[test]
fn under_the_systemd_watchdog_notifications_go_on_while_the_async_runtime_runs_tasks() {
    use std::os::unix::net::UnixDatagram;
    let (dir, _, cfg) = workdir(100.0);
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let log = dir.path().join("daemon.log");
    // systemd names the watched process: WATCHDOG_PID is the shell's, which `exec` hands to the daemon.
    let child = std::process::Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\""])
        .arg(bin())
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "10000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let mut d = Proc { child, log };
    // WatchdogSec=10s: the ingest thread notifies every second (a tenth), only while the async runtime has beaten
    // within 3.3 s (a third), and the runtime beats only by running the tasks the ingest thread gives it:
    // notifications that go on past 10 s show both halves work.
    let start = std::time::Instant::now();
    let (mut ready, mut pings, mut last) = (false, 0, Duration::ZERO);
    while start.elapsed() < Duration::from_secs(13) {
        let mut buf = [0u8; 512];
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]);
            ready |= msg.lines().any(|l| l == "READY=1");
            if msg.lines().any(|l| l == "WATCHDOG=1") {
                pings += 1;
                last = start.elapsed();
            }
        }
    }
    assert!(ready, "READY=1 was sent\n{}", d.log());
    assert!(
        pings >= 10 && last > Duration::from_secs(11),
        "{pings} watchdog notifications, the last {last:?} after start\n{}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(8)), Some(0));
}
