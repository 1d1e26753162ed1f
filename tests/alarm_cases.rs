//! Golden alarm cases: `tests/alarm_cases/NAME.toml` (the sensors, as in a config file), `NAME.timeline` (what
//! happens: `<seconds> <sensor> <value>`, `nan` allowed, or `<seconds> tick` — time passes with no reading) and
//! `NAME.expected` (every event the engine emits: `<seconds> <sensor> <TYPE> <state> <SEVERITY> <value>`, and
//! every reading validation marks bad: `<seconds> <sensor> reading <quality>`; a derived sensor's computed value:
//! `<seconds> <sensor> = <value> <quality>`; events carry their priority, `held`, `suppressed_by_state`, a shelf
//! and, beyond threshold alarms, their reason). The cases
//! follow ISA-18.2's alarm states as the engine implements them (deadband, on- and off-delays, escalation and
//! de-escalation, faults, silence). `WATCHPOST_BLESS=1` rewrites the `.expected` files; a change to one shows in
//! review as a change of behaviour.

use std::path::{Path, PathBuf};
use watchpost::model::SensorId;
use watchpost::model::{Reading, Timestamp};
use watchpost::pipeline::Engine;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alarm_cases");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/alarm_cases")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// The events of one case, one line each.
fn play(case: &Path) -> String {
    let sensors = std::fs::read_to_string(case).expect("read case");
    let cfg = watchpost::config::parse_str(
        &format!("[gateway]\nid = \"gw\"\nlocation = \"plant\"\n{sensors}"),
        case,
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let timeline = std::fs::read_to_string(case.with_extension("timeline")).expect("timeline");
    let mut engine = Engine::new("gw", "plant", &cfg.sensor, Timestamp(0));
    engine.set_alarms(&cfg.alarms);
    let mut out = Vec::new();
    let mut derived = Vec::new();
    let mut lines = String::new();
    for (n, line) in timeline.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let at: f64 = f[0]
            .parse()
            .unwrap_or_else(|_| panic!("{}:{}: time {:?}", case.display(), n + 1, f[0]));
        let now = Timestamp((at * 1000.0).round() as i64);
        match f.as_slice() {
            [_, "tick"] => {
                engine.tick(now, &mut out);
                derived = engine.derive(now, &mut out);
            }
            [_, sensor, value] => {
                let v: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{}:{}: value {value:?}", case.display(), n + 1));
                let mut r = Reading::new(SensorId::from(*sensor), now, v);
                engine.tick(now, &mut out);
                engine.evaluate(&mut r, &mut out);
                if r.quality != watchpost::model::Quality::Good {
                    lines.push_str(&format!(
                        "{at:<6} {sensor} reading {}\n",
                        r.quality.as_str()
                    ));
                }
            }
            _ => panic!(
                "{}:{}: expected `<s> <sensor> <value>` or `<s> tick`",
                case.display(),
                n + 1
            ),
        }
        for r in derived.drain(..) {
            lines.push_str(&format!(
                "{at:<6} {} = {} {}\n",
                r.sensor,
                watchpost::util::significant(r.value, 7),
                r.quality.as_str()
            ));
        }
        for a in out.drain(..) {
            let value = a
                .value
                .map_or("-".to_string(), |v| watchpost::util::significant(v, 7));
            let mut flags = String::new();
            if let Some(p) = a.operator.priority {
                flags.push_str(&format!(" priority={}", p.as_str()));
            }
            if a.operator.held {
                flags.push_str(" held");
            }
            if a.operator.suppressed_by_state {
                flags.push_str(" suppressed_by_state");
            }
            if let Some(u) = a.operator.shelved_until {
                flags.push_str(&format!(" shelved_until={}", u.0 as f64 / 1000.0));
            }
            if a.kind != watchpost::model::AlertType::Alert {
                if let Some(r) = &a.reason {
                    flags.push_str(&format!(" ({r})"));
                }
            }
            lines.push_str(&format!(
                "{:<6} {} {} {} {} {value}{flags}\n",
                a.ts.0 as f64 / 1000.0,
                a.sensor,
                a.kind.as_str(),
                a.state.as_str(),
                a.severity.as_str(),
            ));
        }
    }
    lines
}

#[test]
fn alarm_cases_emit_exactly_the_expected_events() {
    let all = cases();
    assert!(all.len() >= 8, "found {} cases", all.len());
    let bless = std::env::var_os("WATCHPOST_BLESS").is_some();
    let mut failed = Vec::new();
    for case in all {
        let got = play(&case);
        let path = case.with_extension("expected");
        if bless {
            std::fs::write(&path, &got).expect("bless");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failed.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
