//! The route filter and the hourly cap, without a server.

use super::compose::tests::alert as a;
use super::*;

#[test]
fn filter_follows_announced_alarms_down() {
    let f = Filter::new(MinSeverity::Critical, &[], &["test_*".into()]);
    let mut mailed = HashSet::new();
    assert!(!f.wants(&a("p", AlertState::Raised, Severity::Warning), &mailed));
    assert!(f.wants(&a("p", AlertState::Escalated, Severity::Critical), &mailed));
    assert!(!f.wants(
        &a("test_x", AlertState::Raised, Severity::Critical),
        &mailed
    ));
    // A warning that was never mailed clears silently; one that was announced clears loudly.
    assert!(!f.wants(&a("p", AlertState::Cleared, Severity::Warning), &mailed));
    mailed.insert("gw:p:1".to_string());
    assert!(f.wants(&a("p", AlertState::Deescalated, Severity::Warning), &mailed));
    assert!(f.wants(&a("p", AlertState::Cleared, Severity::Warning), &mailed));
    let only = Filter::new(MinSeverity::Warning, &["oil_*".into()], &[]);
    assert!(only.wants(
        &a("oil_temp", AlertState::Raised, Severity::Warning),
        &mailed
    ));
    assert!(!only.wants(&a("fan", AlertState::Raised, Severity::Critical), &mailed));
}

fn sink(cap: u32) -> EmailSink {
    let dir = tempfile::tempdir().expect("tmp");
    let store =
        crate::store::SharedStore::new(crate::store::Store::open(dir.path()).expect("store"));
    let cfg = crate::config::parse_str(
        &format!(
            "[gateway]\nid = \"gw\"\n[email]\nurl = \"smtp://127.0.0.1:1\"\ntls = \"none\"\nfrom = \"gw@example.test\"\nto = [\"ops@example.test\"]\nmax_per_hour = {cap}\n"
        ),
        std::path::Path::new("t.toml"),
        &[],
    )
    .expect("config");
    let mut s = EmailSink::open(&SinkContext::for_tests("email", cfg, store))
        .map_err(|e| e.to_string())
        .expect("sink");
    // These tests compose and pace mails; the outbox in the store has tests of its own.
    s.store = None;
    s
}

fn formatted(job: Option<Job>) -> String {
    let (msg, _, _) = job.expect("a mail");
    String::from_utf8_lossy(&msg.expect("message").formatted()).into_owned()
}

/// The cap holds the next mail for the rest of the hour; that mail says it folds the held-back events in.
#[tokio::test(start_paused = true)]
async fn cap_holds_for_the_hour_and_the_next_mail_says_so() {
    let mut s = sink(1);
    let ev = Items::Events(vec![(7, a("p", AlertState::Raised, Severity::Critical))]);
    assert!(!formatted(s.prepare(&ev)).contains("per hour"));
    Shared::lock(&s.shared).sent.push_back(Instant::now());
    let t0 = Instant::now();
    s.ready().await;
    assert!(t0.elapsed() >= HOUR, "waited {:?}", t0.elapsed());
    let mail = formatted(s.prepare(&ev));
    assert!(
        mail.contains("limit of 1 mails per hour was reached"),
        "{mail}"
    );
    assert!(
        mail.contains("Message-ID: <watchpost.gw.default.7-7@example.test>"),
        "{mail}"
    );
}

#[test]
fn message_id_parts_are_tokens() {
    assert_eq!(token("press line/3\r\n"), "press_line_3__");
}
