//! Ingest thread tests: restarts, a disk that refuses writes, clock steps.
use super::*;
use crate::model::AlertType;

fn cfg(dir: &std::path::Path) -> Config {
    let toml = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n[[sensor]]\nid = \"t\"\nsource = {{ simulated = \"sine\" }}\n",
        dir.display()
    );
    crate::config::parse_str(&toml, std::path::Path::new("t.toml"), &[]).expect("config")
}

/// A writer on a store in `dir`, with its own metrics.
fn writer(dir: &std::path::Path) -> Writer {
    Writer::open(Arc::new(cfg(dir)), Vec::new(), SharedMetrics::default())
        .expect("open")
        .0
}

/// A gateway alert (BUFFER_OVERFLOW raised) stamped `ts`.
fn overflow_raised(w: &mut Writer, ts: i64) -> Alert {
    w.engine.gateway_alert(
        AlertType::BufferOverflow,
        AlertState::Raised,
        Timestamp(ts),
        "x".into(),
    )
}

#[test]
fn an_open_buffer_overflow_survives_a_restart_and_still_clears() {
    let dir = tempfile::tempdir().expect("tmp");
    let metrics = SharedMetrics::default();
    let (mut w, _signals, _control) =
        Writer::open(Arc::new(cfg(dir.path())), Vec::new(), metrics.clone()).expect("open");
    // Readings that overflow a 1-byte cap: the oldest batch is dropped and BUFFER_OVERFLOW is raised.
    for i in 0..3 {
        w.pending
            .push(Reading::new(Arc::from("t"), Timestamp(1000 + i), 1.0));
        w.flush();
    }
    w.enforce_cap(1);
    w.commit_alerts();
    let raised = w.overflow.as_ref().map(|(a, _)| a.clone()).expect("raised");
    drop(w);
    let (mut w, _signals, _control) =
        Writer::open(Arc::new(cfg(dir.path())), Vec::new(), metrics).expect("reopen");
    let (restored, _) = w.overflow.clone().expect("still open after the restart");
    assert_eq!(restored.id, raised.id);
    // Ten minutes without drops later, the clear comes under the same id.
    w.overflow = Some((restored, Instant::now() - OVERFLOW_CLEAR_AFTER));
    w.check_overflow_cleared();
    assert_eq!(w.alerts.len(), 1);
    assert_eq!(
        (w.alerts[0].state, w.alerts[0].id.as_str()),
        (AlertState::Cleared, raised.id.as_str())
    );
    assert!(w.store.overflow_alert().expect("meta").is_none());
}

#[test]
fn memory_held_while_the_disk_refuses_writes_is_bounded_and_drops_are_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = writer(dir.path());
    w.store.refuse_writes();
    let a = overflow_raised(&mut w, 1);
    w.alerts = vec![a; MAX_UNSAVED_ALERTS + 5];
    w.commit_alerts();
    assert_eq!(w.unsaved_alerts.len(), MAX_UNSAVED_ALERTS);
    assert_eq!(w.metrics.dropped_alerts.load(Ordering::Relaxed), 5);
    let id: Arc<str> = Arc::from("t");
    w.pending = (0..MAX_PENDING as i64 + 7)
        .map(|i| Reading::new(Arc::clone(&id), Timestamp(i), 1.0))
        .collect();
    w.flush();
    assert_eq!(w.pending.len(), MAX_PENDING);
    assert_eq!(w.pending[0].ts, Timestamp(7), "the oldest are dropped");
    assert_eq!(w.metrics.dropped.load(Ordering::Relaxed), 7);
}

#[test]
fn a_stepped_back_clock_never_gives_one_sensor_the_same_or_an_earlier_timestamp() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = writer(dir.path());
    for ts in [10_000, 11_000, 5_000, 5_000, 12_000] {
        w.accept(Reading::new(Arc::from("t"), Timestamp(ts), 1.0));
    }
    let ts: Vec<i64> = w.pending.iter().map(|r| r.ts.0).collect();
    assert_eq!(ts, [10_000, 11_000, 11_001, 11_002, 12_000]);
    assert_eq!(w.metrics.clock_adjusted.load(Ordering::Relaxed), 2);
}

#[test]
fn readings_and_alerts_held_together_commit_in_one_transaction_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = writer(dir.path());
    let hold = |w: &mut Writer| {
        w.pending = (0..3)
            .map(|i| Reading::new(Arc::from("t"), Timestamp(1000 + i), 1.0))
            .collect();
        w.alerts = vec![overflow_raised(w, 1003)];
    };
    // Refused: both are held, the failure counted once.
    hold(&mut w);
    w.store.refuse_writes();
    w.flush();
    assert_eq!((w.pending.len(), w.unsaved_alerts.len()), (3, 1));
    assert_eq!(w.metrics.store_errors.load(Ordering::Relaxed), 1);
    assert_eq!(
        w.store.newest().expect("newest"),
        (0, 0),
        "nothing of either"
    );
    // Accepted: both are stored by the one flush.
    w.store.allow_writes();
    w.flush();
    assert_eq!((w.pending.len(), w.unsaved_alerts.len()), (0, 0));
    let (batch, event) = w.store.newest().expect("newest");
    assert!(batch > 0 && event > 0, "batch {batch}, event {event}");
    assert_eq!(w.metrics.flushes.load(Ordering::Relaxed), 1);
}
