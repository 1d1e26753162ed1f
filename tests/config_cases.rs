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
    let Some(sa) = require("systemd-analyze") else {
        return;
    };
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
