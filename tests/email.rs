//! Email sink against a real SMTP server (aiosmtpd): one mail per alarm, one digest per storm, the hourly cap,
//! STARTTLS with a private CA and AUTH, SMTPS, a server that is down across a kill -9, non-ASCII names in headers,
//! and routes with their own recipients and cursors.

mod common;
use common::*;
use std::path::Path;
use std::time::Duration;
use watchpost::store::Stream;

const T: Duration = Duration::from_secs(30);

fn config(data: &Path, gateway: &str, email: &str, sensors: &str) -> String {
    format!(
        r#"
[gateway]
id = "{gateway}"
location = "Halle Süd"
data_dir = "{}"

[buffer]
flush_interval = "100ms"

[email]
from = "watchpost <gw@example.test>"
timeout = "5s"
{email}

{sensors}
"#,
        data.display()
    )
}

fn hot(id: &str, value: f64) -> String {
    format!(
        r#"
[[sensor]]
id = "{id}"
source = {{ simulated = "constant", offset = {value} }}
interval = "100ms"
unit = "°C"
warning = {{ high = 80.0 }}
critical = {{ high = 95.0 }}
"#
    )
}

fn cursor(data: &Path, sink: &str) -> i64 {
    with_store(data, 0, |s| s.cursor(sink, Stream::Events))
}

fn last_event(data: &Path) -> i64 {
    with_store(data, Vec::new(), |s| s.all_events())
        .last()
        .map(|(seq, _)| *seq)
        .unwrap_or(0)
}

/// Wait until the sink's cursor reached the newest event (the server said 250 for everything it wants).
fn wait_acked(data: &Path, sink: &str) {
    wait_for(T, &format!("{sink} cursor at the newest event"), || {
        let last = last_event(data);
        (last > 0 && cursor(data, sink) == last).then_some(())
    });
}

fn attachment(m: &serde_json::Value) -> Vec<serde_json::Value> {
    let a = m["attachments"]["alerts.json"]
        .as_str()
        .expect("alerts.json attached");
    serde_json::from_str(a).expect("attachment is JSON")
}

#[test]
fn a_critical_alarm_is_one_mail_with_table_and_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Plain, None, None);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let email = format!(
        "url = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\nto = [\"ops@example.test\"]\nreply_to = \"shift@example.test\"\ndigest_window = \"1s\""
    );
    std::fs::write(&cfg, config(&data, "gw1", &email, &hot("oil_temp", 100.0))).expect("w");
    let _d = start_daemon(&cfg, dir.path());
    smtp.wait_mails(1, T);
    wait_acked(&data, "email");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "one alarm, one mail: {mails:#?}");
    let m = &mails[0];
    assert_eq!(m["subject"], "[watchpost gw1] 1 CRITICAL: oil_temp high");
    assert_eq!(m["mail_from"], "gw@example.test");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ops@example.test"]));
    assert_eq!(m["reply_to"], "shift@example.test");
    assert!(m["date"].as_str().is_some_and(|d| !d.is_empty()));
    let mid = m["message_id"].as_str().expect("message id");
    assert!(
        mid.starts_with("<watchpost.gw1.default.") && mid.ends_with("@example.test>"),
        "{mid}"
    );
    let text = m["text"].as_str().expect("plain text part");
    for want in [
        "gw1 (Halle Süd)",
        "raised",
        "CRITICAL",
        "oil_temp",
        "high",
        "100 °C",
        "95 °C",
        "UTC",
        // CRITICAL without a configured priority: high (ISA-18.2 priority, shown per alarm in the table).
        "high priority",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let html = m["html"].as_str().expect("html part");
    assert!(
        html.contains("<table") && html.contains("oil_temp"),
        "{html}"
    );
    let alerts = attachment(m);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "raised");
    assert_eq!(alerts[0]["severity"], "CRITICAL");
    assert_eq!(alerts[0]["sensor"], "oil_temp");
    assert_eq!(alerts[0]["device"], "gw1");
}

#[test]
fn a_storm_is_one_digest_and_the_hourly_cap_holds_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Plain, None, None);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let email = format!(
        // A generous window: each raise is its own fsynced commit, and on a loaded test machine 50 of them took > 2 s.
        "url = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\nto = [\"ops@example.test\"]\ndigest_window = \"12s\"\nmax_per_hour = 1"
    );
    let mut sensors: String = (0..50).map(|i| hot(&format!("s{i:02}"), 100.0)).collect();
    // Keeps raising and clearing after the storm: these must wait for the cap.
    sensors.push_str(
        r#"
[[sensor]]
id = "flapper"
source = { simulated = "square", min = 0.0, max = 100.0, period = "600ms" }
interval = "100ms"
critical = { high = 95.0 }
"#,
    );
    std::fs::write(&cfg, config(&data, "gw1", &email, &sensors)).expect("w");
    let d = start_daemon(&cfg, dir.path());
    let mails = smtp.wait_mails(1, T);
    let m = &mails[0];
    let alerts = attachment(m);
    let storm = alerts
        .iter()
        .filter(|a| a["sensor"].as_str().is_some_and(|s| s.starts_with('s')))
        .count();
    assert_eq!(storm, 50, "the whole storm is in the first digest");
    let subject = m["subject"].as_str().unwrap_or("");
    assert!(
        subject.starts_with("[watchpost gw1] ") && subject.contains("CRITICAL"),
        "{subject}"
    );
    let crit = alerts.iter().filter(|a| a["state"] == "raised").count();
    assert!(
        subject.contains(&format!("{crit} CRITICAL")),
        "{subject} vs {crit} raised"
    );
    // The flapper goes on; with one mail per hour the next events stay in the store, after the cursor.
    wait_for(T, "the cap to hold mails back", || {
        d.log().contains("Hourly mail cap reached").then_some(())
    });
    wait_for(T, "held-back events", || {
        (last_event(&data) > cursor(&data, "email") + 5).then_some(())
    });
    assert_eq!(smtp.mails().len(), 1, "the cap allows one mail per hour");
}

#[test]
fn starttls_with_auth_bad_password_keeps_alerts_then_delivers_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = Certs::make(dir.path())
        .expect("certs: a test server or tool the suite needs (.ci/run installs them)");
    let port = free_port();
    let smtp = Smtp::start(
        dir.path(),
        port,
        SmtpMode::Starttls,
        Some(&certs),
        Some("gw:s3cret"),
    );
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "wrong\n").expect("pw");
    let email = format!(
        "url = \"smtp://127.0.0.1:{port}\"\nca_file = \"{}\"\nusername = \"gw\"\npassword_file = \"{}\"\nto = [\"ops@example.test\"]\ndigest_window = \"200ms\"",
        certs.path("ca.crt").display(),
        pw.display()
    );
    std::fs::write(&cfg, config(&data, "gw1", &email, &hot("oil_temp", 100.0))).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(T, "the login refusal in the log", || {
        d.log().contains("refused the login").then_some(())
    });
    assert!(smtp.mails().is_empty());
    assert!(
        last_event(&data) > 0 && cursor(&data, "email") == 0,
        "the alert is kept"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0));

    std::fs::write(&pw, "s3cret\n").expect("pw");
    let _d = start_daemon(&cfg, dir.path());
    smtp.wait_mails(1, T);
    wait_acked(&data, "email");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["tls"], true, "sent after STARTTLS");
    assert_eq!(mails[0]["auth"], "gw");
}

#[test]
fn server_down_across_a_kill_9_then_up_delivers_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let email = format!(
        "url = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\nto = [\"ops@example.test\"]\ndigest_window = \"100ms\""
    );
    std::fs::write(&cfg, config(&data, "gw1", &email, &hot("oil_temp", 100.0))).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(T, "a failed delivery", || {
        (d.log().contains("Delivery failed") && d.log().contains("sink=\"email\"")).then_some(())
    });
    d.signal(libc::SIGKILL);
    let _ = d.wait_exit(T);
    assert!(
        last_event(&data) > 0,
        "the alert was committed before the kill"
    );
    let _d = start_daemon(&cfg, dir.path());
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Plain, None, None);
    smtp.wait_mails(1, Duration::from_secs(60));
    wait_acked(&data, "email");
    assert_eq!(smtp.mails().len(), 1);
}

#[test]
fn smtps_with_non_ascii_names_keeps_headers_intact() {
    let dir = tempfile::tempdir().expect("tmp");
    let certs = Certs::make(dir.path())
        .expect("certs: a test server or tool the suite needs (.ci/run installs them)");
    let port = free_port();
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Smtps, Some(&certs), None);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let email = format!(
        "url = \"smtps://127.0.0.1:{port}\"\nca_file = \"{}\"\nto = [\"Schichtleitung Süd <ops@example.test>\"]\ndigest_window = \"200ms\"",
        certs.path("ca.crt").display()
    );
    std::fs::write(
        &cfg,
        config(&data, "Presse-Süd", &email, &hot("Öltemperatur", 100.0)),
    )
    .expect("w");
    let _d = start_daemon(&cfg, dir.path());
    let m = smtp.wait_mails(1, T).remove(0);
    assert_eq!(m["tls"], true);
    assert_eq!(
        m["subject"],
        "[watchpost Presse-Süd] 1 CRITICAL: Öltemperatur high"
    );
    assert_eq!(m["to"], "Schichtleitung Süd <ops@example.test>");
    let raw = m["raw_headers"].as_str().expect("headers");
    assert!(
        raw.is_ascii(),
        "headers are 7-bit (RFC 2047 encoded):\n{raw}"
    );
    for line in raw.split("\r\n") {
        assert!(
            line.starts_with([' ', '\t']) || line.contains(':'),
            "every header line is a header or a continuation: {line:?}"
        );
    }
    assert!(m["message_id"]
        .as_str()
        .is_some_and(|id| id.is_ascii() && id.starts_with("<watchpost.Presse-S_d.")));
}

#[test]
fn two_routes_each_get_their_own_mails_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Plain, None, None);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let email = format!(
        r#"url = "smtp://127.0.0.1:{port}"
tls = "none"
digest_window = "1s"
[[email.route]]
name = "ops"
to = ["ops@example.test"]
[[email.route]]
name = "maint"
to = ["maint@example.test", "pumps@example.test"]
min_severity = "warning"
sensors = ["pump_*"]
"#
    );
    let sensors = hot("pump_temp", 85.0) + &hot("oil_temp", 100.0);
    std::fs::write(&cfg, config(&data, "gw1", &email, &sensors)).expect("w");
    let _d = start_daemon(&cfg, dir.path());
    smtp.wait_mails(2, T);
    wait_acked(&data, "email.ops");
    wait_acked(&data, "email.maint");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let to = |m: &serde_json::Value| m["rcpt_tos"].clone();
    let ops = mails
        .iter()
        .find(|m| to(m) == serde_json::json!(["ops@example.test"]))
        .expect("ops mail");
    let maint = mails
        .iter()
        .find(|m| to(m) == serde_json::json!(["maint@example.test", "pumps@example.test"]))
        .expect("maint mail");
    assert_eq!(ops["subject"], "[watchpost gw1] 1 CRITICAL: oil_temp high");
    assert_eq!(
        maint["subject"],
        "[watchpost gw1] 1 WARNING: pump_temp high"
    );
    assert!(ops["message_id"]
        .as_str()
        .is_some_and(|s| s.contains(".ops.")));
}

/// A route with `min_severity = "critical"` follows the alarms it announced down: their de-escalation and clear
/// are mailed, also when the daemon restarted in between (the announced set is kept in the store). Before, it
/// lived in memory, and after a restart the de-escalation and the clear of an announced alarm were never mailed.
#[test]
fn a_route_mails_the_clear_of_an_alarm_it_announced_before_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Plain, None, None);
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let values: Vec<String> = std::iter::repeat_n("100.0", 40)
        .chain(std::iter::repeat_n("85.0", 5))
        .chain(std::iter::once("50.0"))
        .map(String::from)
        .collect();
    let sensor = format!(
        r#"
[[sensor]]
id = "press"
source = {{ simulated = "script", values = [{}], repeat = false }}
interval = "100ms"
stale_after = "1h"
warning = {{ high = 80.0 }}
critical = {{ high = 95.0 }}
"#,
        values.join(", ")
    );
    let email = format!(
        "url = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\nto = [\"ops@example.test\"]\nmin_severity = \"critical\"\ndigest_window = \"200ms\"\n"
    );
    std::fs::write(&cfg, config(&data, "gw-r", &email, &sensor)).expect("w");
    let mut d = start_daemon(&cfg, dir.path());
    let first = smtp.wait_mails(1, T);
    let raised = attachment(&first[0]);
    assert_eq!(
        (raised[0]["state"].as_str(), raised[0]["severity"].as_str()),
        (Some("raised"), Some("CRITICAL"))
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
    // The script starts again: the alarm (restored) stands at 100, then de-escalates to a warning and clears.
    let _d = start_daemon(&cfg, dir.path());
    let states = wait_for(T, "the de-escalation and the clear mailed", || {
        let events: Vec<serde_json::Value> =
            smtp.mails().iter().skip(1).flat_map(attachment).collect();
        let states: Vec<String> = events
            .iter()
            .map(|e| e["state"].as_str().unwrap_or("").to_string())
            .collect();
        (states.contains(&"deescalated".to_string()) && states.contains(&"cleared".to_string()))
            .then_some(states)
    });
    assert!(!states.contains(&"raised".to_string()), "{states:?}");
}

/// A mail re-sent after a crash is the same mail: the outbox in the store says which events the mail being sent
/// covered, and after a restart the next mail covers exactly those — same events, same Message-ID — however many
/// events arrived meanwhile; the rest follow in the next mail. The crash (after the server's 250, before the
/// cursor commit) is set up by writing the outbox as the daemon would have left it.
#[test]
fn a_mail_resent_after_a_crash_covers_the_same_events_with_the_same_message_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let data = dir.path().join("data");
    let cfg = dir.path().join("w.toml");
    let email = format!(
        "url = \"smtp://127.0.0.1:{port}\"\ntls = \"none\"\nto = [\"ops@example.test\"]\ndigest_window = \"200ms\"\n"
    );
    let sensors = format!("{}{}{}", hot("a", 99.0), hot("b", 99.0), hot("c", 99.0));
    std::fs::write(&cfg, config(&data, "gw-o", &email, &sensors)).expect("w");
    // No SMTP server yet: three alarms wait in the store.
    let mut d = start_daemon(&cfg, dir.path());
    wait_for(T, "three alarms stored", || {
        (last_event(&data) >= 3).then_some(())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T), Some(0), "{}", d.log());
    let events = with_store(&data, Vec::new(), |s| s.all_events());
    let (first, second) = (events[0].0, events[1].0);
    with_store(&data, (), |s| {
        s.set_sink_meta(
            "email",
            "outbox",
            &format!(r#"{{"through":{second},"announced":[]}}"#),
        )
    });
    let smtp = Smtp::start(dir.path(), port, SmtpMode::Plain, None, None);
    let _d = start_daemon(&cfg, dir.path());
    wait_acked(&data, "email");
    let mails = smtp.wait_mails(2, T);
    let mid = mails[0]["message_id"].as_str().expect("message id");
    assert!(
        mid.contains(&format!(".{first}-{second}@")),
        "the re-sent mail keeps its Message-ID: {mid}"
    );
    let ids = |m: &serde_json::Value| -> Vec<String> {
        attachment(m)
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(ids(&mails[0]).len(), 2, "{:?}", ids(&mails[0]));
    let mut all: Vec<String> = mails.iter().flat_map(ids).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no event in two mails: {all:?}");
    assert_eq!(n, events.len(), "every event mailed");
}
