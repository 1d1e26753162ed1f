//! Remote settings against a real data directory and a stand-in ingest thread: per-sensor application, audits
//! once, write-ahead audit, the shadow's room.

use super::*;
use serde_json::json;

fn file(dir: &std::path::Path, sensors: &[&str]) -> Config {
    let mut toml = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n[mqtt.shadow]\nthing = \"gw\"\napply_desired = true\n",
        dir.display()
    );
    for s in sensors {
        toml.push_str(&format!(
            "[[sensor]]\nid = \"{s}\"\nsource = {{ simulated = \"constant\" }}\nwarning = {{ high = 80.0 }}\ncritical = {{ high = 95.0 }}\n"
        ));
    }
    crate::config::parse_str(&toml, std::path::Path::new("t.toml"), &[]).expect("config")
}

/// The ingest thread's side of audits: commit (answer `done`) and count.
fn ingest() -> (
    mpsc::Sender<Control>,
    std::sync::Arc<std::sync::Mutex<Vec<AlertState>>>,
) {
    let (tx, mut rx) = mpsc::channel::<Control>(16);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if let Control::Audit { state, done, .. } = c {
                s2.lock().expect("lock").push(state);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
        }
    });
    (tx, seen)
}

fn change(desired: serde_json::Value, version: u64) -> RemoteChange {
    RemoteChange {
        desired,
        version: Some(version),
        replace: false,
    }
}

fn high(cfg: &Config, sensor: &str) -> Option<f64> {
    cfg.sensor
        .iter()
        .find(|s| s.id == sensor)
        .and_then(|s| s.warning)
        .and_then(|w| w.high)
}

/// (b) One unknown sensor in `desired` does not block the rest, then or later; (c) the refused part is
/// audited once, whatever version it comes back with; a restart remembers it.
#[tokio::test]
async fn valid_parts_apply_and_a_refusal_is_audited_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = file(dir.path(), &["a", "b"]);
    let (control, audits) = ingest();
    let mut r = Remote::open(&f);
    let d = json!({"alarms": {"nosuch": {"delay": "1s"}, "a": {"warning": {"high": 70}}}});
    let cfg = r
        .change(&f, change(d.clone(), 2), &control)
        .await
        .expect("applied");
    assert_eq!(high(&cfg, "a"), Some(70.0));
    let out = r.outcome().expect("outcome");
    assert!(
        out.applied && out.errors[0].contains("desired.alarms.nosuch"),
        "{out:?}"
    );
    assert_eq!(out.alarms["a"]["warning"]["high"], 70);
    // The shadow sends the refused part again and again with new versions (its own updates bump them).
    let rest = json!({"alarms": {"nosuch": {"delay": "1s"}}});
    for v in 3..10 {
        assert!(r
            .change(&f, change(rest.clone(), v), &control)
            .await
            .is_none());
    }
    // Later changes are not blocked.
    let cfg = r
        .change(
            &f,
            change(json!({"alarms": {"b": {"warning": {"high": 75}}}}), 11),
            &control,
        )
        .await
        .expect("applied");
    assert_eq!((high(&cfg, "a"), high(&cfg, "b")), (Some(70.0), Some(75.0)));
    // A restart: the refusal is remembered.
    let mut again = Remote::open(&f);
    let _ = again.effective(&f, None);
    assert!(again.change(&f, change(rest, 12), &control).await.is_none());
    tokio::task::yield_now().await;
    assert_eq!(
        *audits.lock().expect("lock"),
        vec![AlertState::Applied, AlertState::Applied],
        "the refused part alone is not audited"
    );
}

/// (a) A reload that removes a sensor with an override keeps every other override in force, and the shadow
/// reports only what is in force.
#[tokio::test]
async fn a_sensor_leaving_the_file_takes_only_its_own_override() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = file(dir.path(), &["a", "b"]);
    let (control, _) = ingest();
    let mut r = Remote::open(&f);
    let d = json!({"alarms": {"a": {"warning": {"high": 70}}, "b": {"warning": {"high": 60}}}});
    r.change(&f, change(d, 2), &control).await.expect("applied");
    let without_b = file(dir.path(), &["a"]);
    let cfg = r.effective(&without_b, Some(&f));
    assert_eq!(high(&cfg, "a"), Some(70.0), "a's override stays");
    let reported = r.in_force(true, None, Vec::new()).alarms;
    assert!(
        reported.get("b").is_none() && reported["a"].is_object(),
        "{reported}"
    );
    // b comes back: its override applies again.
    let cfg = r.effective(&f, Some(&without_b));
    assert_eq!(high(&cfg, "b"), Some(60.0));
}

/// (d) The audit is written ahead with the change: a crash before it was committed (no answer) leaves it in
/// the overlay, and the next start records it.
#[tokio::test]
async fn an_applied_change_is_never_without_its_audit() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = file(dir.path(), &["a"]);
    // An ingest thread that dies before committing.
    let (dead, rx) = mpsc::channel::<Control>(16);
    drop(rx);
    let mut r = Remote::open(&f);
    r.change(
        &f,
        change(json!({"alarms": {"a": {"delay": "2s"}}}), 2),
        &dead,
    )
    .await
    .expect("applied");
    let saved = Overlay::load(dir.path()).expect("overlay");
    assert_eq!(
        saved.audit_pending.as_ref().map(|a| a["state"].clone()),
        Some(json!("applied"))
    );
    // The next start.
    let (control, audits) = ingest();
    let mut r = Remote::open(&f);
    r.flush_pending_audit(&f, &control).await;
    assert_eq!(*audits.lock().expect("lock"), vec![AlertState::Applied]);
    assert!(Overlay::load(dir.path())
        .expect("overlay")
        .audit_pending
        .is_none());
}

/// (f) Overrides stay within the shadow's room; what would not fit is refused by name.
#[tokio::test]
async fn overrides_beyond_the_shadows_room_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let names: Vec<String> = (0..120).map(|i| format!("sensor_{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let f = file(dir.path(), &refs);
    let (control, _) = ingest();
    let mut r = Remote::open(&f);
    let alarms: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                json!({"warning": {"high": 70.5, "low": 1.5}, "delay": "10s"}),
            )
        })
        .collect();
    r.change(&f, change(json!({ "alarms": alarms }), 2), &control)
        .await
        .expect("applied in part");
    let out = r.outcome().expect("outcome");
    let kept = out.alarms.as_object().map_or(0, |a| a.len());
    assert!(kept > 20 && kept < 120, "{kept} kept");
    assert!(serde_json::to_string(&out.alarms).expect("json").len() <= MAX_REPORTED_ALARMS);
    assert!(
        out.errors[0].contains("more than the 4096"),
        "{:?}",
        out.errors
    );
    assert!(out.errors.len() <= REPORTED_ERRORS + 1);
}
