//! Every config under `config/` is valid; every case under `tests/config_invalid/` fails with the error lines in
//! its `.err` file (each line must appear in the output). Adding a case needs no Rust.

mod common;
use common::*;
use std::path::Path;

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in walk(&root) {
        if entry.extension().is_some_and(|e| e == "toml") {
            // The annotated examples name certificates and secrets of a deployed gateway.
            let (code, out, err) =
                run_cli(&["check-config", "--file-only", entry.to_str().expect("utf8")]);
            assert_eq!(code, 0, "{}: {out}{err}", entry.display());
            assert_eq!(out.trim(), "ok");
            n += 1;
        }
    }
    assert!(n >= 2, "found {n} configs");
}

#[test]
fn invalid_configs_report_every_problem_with_location() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_invalid");
    let mut n = 0;
    for entry in walk(&root) {
        if entry.extension().is_some_and(|e| e == "toml") {
            let expected = std::fs::read_to_string(entry.with_extension("err"))
                .expect("every case has a .err file");
            let (code, _out, err) = run_cli(&["check-config", entry.to_str().expect("utf8")]);
            assert_eq!(code, 1, "{} must be rejected", entry.display());
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    err.contains(line.trim()),
                    "{}: expected {:?} in:\n{err}",
                    entry.display(),
                    line.trim()
                );
            }
            n += 1;
        }
    }
    assert!(n >= 8, "found {n} cases");
}

#[test]
fn missing_file_and_usage_errors_exit_1() {
    let (code, _, err) = run_cli(&["check-config", "/nonexistent/watchpost.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/watchpost.toml: cannot read the config file"),
        "{err}"
    );
    let (code, _, _) = run_cli(&["no-such-command"]);
    assert_eq!(code, 1);
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("watchpost "));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn systemd_unit_is_hardened() {
    let sa = require("systemd-analyze")
        .expect("sa: a test server or tool the suite needs (.ci/run installs them)");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/watchpost.service");
    // --threshold is in tenths: fail above an exposure of 1.5.
    let out = std::process::Command::new(&sa)
        .args(["security", "--offline=true", "--threshold=15"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 1.5:\n{text}");
    assert!(text.contains("Overall exposure level"), "{text}");
    // `verify` checks the unit's syntax and references (ExecStart= must exist, so point it at the built binary).
    let dir = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(&unit)
        .expect("unit")
        .replace("/usr/bin/watchpost", &bin().display().to_string());
    let copy = dir.path().join("watchpost.service");
    std::fs::write(&copy, text).expect("copy");
    let out = std::process::Command::new(&sa)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("watchpost.service") && !l.contains("Failed to connect"))
        .collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}

/// A certificate or secret file that is not there is an error (the sink that needs it cannot start, and
/// `check-config && systemctl reload` must not go ahead); `--file-only` checks the file alone.
#[test]
fn check_config_refuses_a_missing_certificate_and_file_only_does_not_look() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("w.toml");
    let missing = dir.path().join("no-such-ca.pem");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\nid = \"gw\"\n[mqtt]\nurl = \"mqtts://127.0.0.1:8883\"\nca_file = \"{}\"\n",
            missing.display()
        ),
    )
    .expect("w");
    let (code, out, err) = run_cli(&["check-config", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("mqtt.ca_file")
            && err.contains("no-such-ca.pem")
            && err.contains("cannot start"),
        "{err}"
    );
    assert!(!out.contains("ok"), "{out}");
    let (code, out, err) = run_cli(&["check-config", "--file-only", cfg.to_str().expect("utf8")]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");
    std::fs::write(&missing, "not a certificate, but there").expect("w");
    let (code, out, err) = run_cli(&["check-config", cfg.to_str().expect("utf8")]);
    assert_eq!((code, out.trim()), (0, "ok"), "{err}");
}

#[test]
fn an_unreadable_file_is_a_warning_and_a_missing_one_an_error() {
    use std::io::{Error, ErrorKind};
    use watchpost::config::file_missing;
    assert!(!file_missing(&Error::from(ErrorKind::PermissionDenied)));
    assert!(file_missing(&Error::from(ErrorKind::NotFound)));
    assert!(file_missing(&Error::from(ErrorKind::NotADirectory)));
}

/// The annotated reference config says "a commented-out line shows the default": for every such line in a
/// single section, uncommenting it must change nothing. Lines that show an example rather than the default are
/// listed here by name (they say so in their comment).
#[test]
fn the_reference_configs_commented_defaults_are_the_defaults() {
    const EXAMPLES: &[&str] = &[
        "client_id",
        "username",
        "password_file",
        "ca_file",
        "tags",
        "name",
        "token_file",
        "location",
        // The mode follows the URL's scheme unless set; the line shows what smtp:// means.
        "tls",
        // Off by default; the line shows a usual value.
        "auto_shelve_chattering",
        "reply_to",
        "sensors",
        "exclude",
    ];
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/watchpost.toml");
    let text = std::fs::read_to_string(&path).expect("reference config");
    let parse = |t: &str| {
        watchpost::config::parse_str(t, &path, &[])
            .map(|c| {
                let mut v = serde_json::to_value(&c).expect("json");
                // Sensors and buses are examples; the sections are what defaults speak of.
                for k in ["sensor", "modbus", "i2c"] {
                    v.as_object_mut().map(|o| o.remove(k));
                }
                v
            })
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let base = parse(&text);
    let lines: Vec<&str> = text.lines().collect();
    let mut section = String::new();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('[') || l.starts_with("# [") {
            section = l.to_string();
        }
        // Arrays of tables hold examples; a commented-out section is an example as a whole.
        if section.starts_with("[[") || section.starts_with('#') {
            continue;
        }
        let Some(rest) = l.strip_prefix("# ") else {
            continue;
        };
        let Some((key, _)) = rest.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') || EXAMPLES.contains(&key) {
            continue;
        }
        let mut changed = lines.clone();
        changed[i] = rest;
        if parse(&changed.join("\n")) != base {
            wrong.push(format!("config/watchpost.toml:{}: {section} {rest}", i + 1));
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "documented as the default but not the default:\n{}",
        wrong.join("\n")
    );
    assert!(checked >= 20, "only {checked} documented defaults found");
}

/// The documented topic names are the ones the code publishes on.
#[test]
fn documented_topics_are_the_published_ones() {
    use watchpost::model::{Alert, AlertState, AlertType, Direction, Severity, Timestamp};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("config/watchpost.toml")).expect("reference");
    assert!(
        reference.contains("{topic_prefix}/{gateway.id}/alerts/{sensor}/{alarm}"),
        "the reference config names the per-alarm topic"
    );
    let a = Alert {
        kind: AlertType::Alert,
        id: "gw:t:1".into(),
        state: AlertState::Raised,
        severity: Severity::Warning,
        sensor: "oil_temp".into(),
        device: "gw".into(),
        location: String::new(),
        value: Some(1.0),
        unit: None,
        threshold: Some(1.0),
        direction: Some(Direction::High),
        ts: Timestamp(0),
        since: Timestamp(0),
        reason: None,
        operator: Default::default(),
    };
    let t = watchpost::sink::mqtt::Topics::new("watchpost", "gw");
    assert_eq!(t.alert(&a), "watchpost/gw/alerts/oil_temp/high");
    assert_eq!(t.events(), "watchpost/gw/events");
    assert_eq!(t.status(), "watchpost/gw/status");
    for doc in [
        "config/watchpost.toml",
        "docs/mqtt.md",
        "docs/alarms.md",
        "README.md",
    ] {
        let text = std::fs::read_to_string(root.join(doc)).expect("doc");
        assert!(
            !text.contains("Mozilla"),
            "{doc}: the trust store is the system's (rustls-platform-verifier)"
        );
        for (i, l) in text.lines().enumerate() {
            if let Some(p) = l.find("alerts/{sensor}") {
                assert!(
                    l[p..].starts_with("alerts/{sensor}/{alarm}"),
                    "{doc}:{}: the retained topic is alerts/{{sensor}}/{{alarm}}: {l}",
                    i + 1
                );
            }
        }
    }
}
