//! Ingest thread tests: restarts, a disk that refuses writes, clock steps.
use super::*;
use crate::model::AlertType;
use crate::model::SensorId;
use crate::store::Stream;

/// A gateway `gw` storing in `dir` with `sensors` (TOML).
fn config(dir: &std::path::Path, sensors: &str) -> Config {
    let toml = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n{sensors}",
        dir.display()
    );
    crate::config::parse_str(&toml, std::path::Path::new("t.toml"), &[]).expect("config")
}

/// `[[sensor]]` sections of simulated sensors with these ids, in this order.
fn simulated(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("[[sensor]]\nid = \"{id}\"\nsource = {{ simulated = \"sine\" }}\n"))
        .collect()
}

fn cfg(dir: &std::path::Path) -> Config {
    config(
        dir,
        "[[sensor]]\nid = \"t\"\nsource = { simulated = \"sine\" }\n",
    )
}

/// A writer for `cfg` with its own metrics, the signals it raises and its control queue.
fn opened(cfg: Config) -> (Writer, Signals, mpsc::Receiver<Control>) {
    Writer::open(Arc::new(cfg), Vec::new(), SharedMetrics::default()).expect("open")
}

/// A writer on a store in `dir`, with its own metrics.
fn writer(dir: &std::path::Path) -> Writer {
    opened(cfg(dir)).0
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
            .push(Reading::new(SensorId::from("t"), Timestamp(1000 + i), 1.0));
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
    let id = SensorId::from("t");
    w.pending = (0..MAX_PENDING as i64 + 7)
        .map(|i| Reading::new(id, Timestamp(i), 1.0))
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
        w.accept(Reading::new(SensorId::from("t"), Timestamp(ts), 1.0));
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
            .map(|i| Reading::new(SensorId::from("t"), Timestamp(1000 + i), 1.0))
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

#[test]
fn a_caught_up_sink_takes_from_memory_exactly_what_the_store_reads_back() {
    use crate::model::{Exact, Quality};
    let dir = tempfile::tempdir().expect("tmp");
    let (mut w, signals, _control) = opened(cfg(dir.path()));
    let mut reader = Store::open_existing(dir.path()).expect("reader");
    let fresh = signals.fresh.clone();
    // Debug, not ==: NaN is not equal to itself, and it must come back as NaN all the same.
    let same = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        assert_eq!(format!("{a:?}"), format!("{b:?}"))
    };
    let (mut cursor, mut seq) = (0, 0);
    for round in 0..3i64 {
        let t = 1_000_000 + round * 1000;
        let r = |s: &str, ts: i64, v: f64| Reading::new(SensorId::from(s), Timestamp(ts), v);
        w.pending = vec![
            r("t", t, 21.5),
            Reading {
                quality: Quality::OutOfRange,
                ..r("u", t, -1e300)
            },
            r("v", t + 1, f64::NAN),
            Reading {
                exact: Some(Exact::UInt(u64::MAX - round as u64)),
                ..r("w", t, u64::MAX as f64)
            },
            Reading {
                exact: Some(Exact::Int(i64::MIN + 1)),
                ..r("x", t, i64::MIN as f64)
            },
            Reading {
                exact: Some(Exact::Text("ÿ \"text\"\n".into())),
                ..r("y", t, f64::NAN)
            },
        ];
        // An alert whose value JSON cannot carry (NaN comes back from the store as no value): memory must say so too.
        let mut a = overflow_raised(&mut w, t);
        a.value = Some(f64::NAN);
        w.alerts = vec![a.clone(), overflow_raised(&mut w, t + 1)];
        w.flush();
        let disk = reader.batches_after(cursor, 100).expect("read");
        let mem = fresh.readings_after(cursor).expect("the sink is caught up");
        same(&mem, &disk);
        assert_eq!(mem.len(), 1);
        let ev_disk = reader.events_after(seq, 100).expect("read");
        let ev_mem = fresh
            .events_after(seq, 100)
            .expect("caught up with the events");
        same(&ev_mem, &ev_disk);
        assert_eq!(ev_mem.len(), 2);
        assert_eq!(ev_mem[0].1.value, None, "as the store reads it back");
        assert_eq!(fresh.events_after(seq, 1).expect("a chunk of one").len(), 1);
        // A sink a commit behind must read the store (memory has only the last commit).
        if round > 0 {
            assert!(fresh.readings_after(cursor - 1).is_none());
            assert!(fresh.events_after(seq - 1, 100).is_none());
        }
        cursor = mem[0].id;
        seq = ev_mem[1].0;
        assert!(fresh.readings_after(cursor).is_none(), "nothing newer");
    }
    // Alerts alone (no readings): the readings slot still describes the last batch; the events slot moves.
    w.alerts = vec![overflow_raised(&mut w, 5_000_000)];
    w.commit_alerts();
    same(
        &fresh.events_after(seq, 10).expect("caught up"),
        &reader.events_after(seq, 10).expect("read"),
    );
    assert!(fresh.readings_after(cursor).is_none());
}

/// A writer whose sensor `t` raises a warning above 50, behind the mutex sources judge through.
fn shared(dir: &std::path::Path) -> Arc<inline::Shared> {
    let toml = format!(
        "[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n[[sensor]]\nid = \"t\"\nsource = {{ simulated = \"sine\" }}\nwarning = {{ high = 50 }}\n",
        dir.display()
    );
    let cfg = crate::config::parse_str(&toml, std::path::Path::new("t.toml"), &[]).expect("config");
    Arc::new(inline::Shared::new(opened(cfg).0))
}

fn batch(ts: i64, v: f64) -> Readings {
    vec![Reading::new(SensorId::from("t"), Timestamp(ts), v)]
}

async fn nudged(s: &inline::Shared) -> bool {
    tokio::time::timeout(Duration::from_millis(20), s.nudge.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_source_judges_its_batch_itself_and_wakes_the_ingest_thread_only_when_needed() {
    use crate::channels::Inline;
    let dir = tempfile::tempdir().expect("tmp");
    let s = shared(dir.path());
    // Judged and held when `take` returns: no hand-over to the ingest thread.
    assert!(s.take(batch(1_000, 1.0)).is_ok());
    assert_eq!(s.lock().pending.len(), 1);
    assert_eq!(s.lock().metrics.readings.load(Ordering::Relaxed), 1);
    assert!(
        nudged(&s).await,
        "the first reading held while no flush is timed"
    );
    // With the flush timed, more readings wake nobody.
    s.flush_timed.store(true, Ordering::Release);
    for i in 1..10 {
        assert!(s.take(batch(1_000 + i * 100, 1.0)).is_ok());
    }
    assert!(
        !nudged(&s).await,
        "ordinary readings must not wake the ingest thread"
    );
    assert_eq!(s.lock().pending.len(), 10);
    // An alert transition is committed at once, so it wakes the thread.
    assert!(s.take(batch(3_000, 99.0)).is_ok());
    assert!(!s.lock().alerts.is_empty());
    assert!(nudged(&s).await, "an alert to commit");
}

#[tokio::test]
async fn a_batch_goes_to_the_ingest_thread_while_one_waits_a_commit_runs_or_the_thread_has_stopped()
{
    use crate::channels::Inline;
    let dir = tempfile::tempdir().expect("tmp");
    let s = shared(dir.path());
    // A queued batch not yet taken: a later one judged first would put the sensor's readings out of order.
    s.queued();
    assert!(s.take(batch(1_000, 1.0)).is_err());
    s.dequeued();
    assert!(s.take(batch(1_100, 1.0)).is_ok());
    // The ingest thread holds the writer (a commit and its fsync): the source does not wait.
    {
        let _commit = s.lock();
        assert!(s.take(batch(1_200, 1.0)).is_err());
    }
    // More than the rate judged inline this second: the rest goes to the ingest thread's core.
    let many: Readings = (0..inline::INLINE_PER_SECOND as i64)
        .map(|i| Reading::new(SensorId::from("t"), Timestamp(2_000 + i), 1.0))
        .collect();
    assert!(
        s.take(many).is_err(),
        "over the budget with the one already judged"
    );
    // After the last commit nothing may be held that no commit would take.
    s.lock().inline.open = false;
    assert!(s.take(batch(1_300, 1.0)).is_err());
    assert_eq!(s.lock().pending.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_judged_inline_and_queued_are_all_committed_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = Arc::new(cfg(dir.path()));
    const N: i64 = inline::INLINE_PER_SECOND as i64 * 3 / 4;
    let ingest = Ingest::start(cfg, Vec::new(), 4, SharedMetrics::default())
        .await
        .expect("start");
    // Two sources at once on two threads, each sending its own sensor's readings in order: more than the inline
    // budget in a second, so batches are judged inline and queued both (a small queue, so some wait for room).
    // Stamped now, not in 1970: under the ARM emulator in CI the test outlived the ingest thread's first
    // housekeeping pass (4.1 s after it starts, on the timer grid), whose pruning (7 days' retention, no sinks)
    // rightly took the 1970 readings committed by then.
    let base = Timestamp::now().0;
    let mut tasks = Vec::new();
    for name in ["a", "b"] {
        let intake = ingest.intake.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                let r = Reading::new(SensorId::from(name), Timestamp(base + i), i as f64);
                intake.send(vec![r]).await.expect("ingest running");
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("source");
    }
    ingest.finish().await;
    let mut store = Store::open_existing(dir.path()).expect("store");
    let mut seen: std::collections::HashMap<String, Vec<f64>> = Default::default();
    for b in store.batches_after(0, 100_000).expect("read") {
        for r in b.readings {
            seen.entry(r.sensor.to_string()).or_default().push(r.value);
        }
    }
    for name in ["a", "b"] {
        let want: Vec<f64> = (0..N).map(|i| i as f64).collect();
        assert_eq!(
            seen.get(name),
            Some(&want),
            "sensor {name}: every reading, in order"
        );
    }
}

/// A gateway of `n` simulated sensors `s0..`, each with a warning at 100.
fn cfg_alarms(dir: &std::path::Path, n: usize) -> Config {
    let sensors: String = (0..n)
        .map(|i| format!("[[sensor]]\nid = \"s{i}\"\nsource = {{ simulated = \"sine\" }}\nwarning = {{ high = 100 }}\n"))
        .collect();
    config(dir, &sensors)
}

/// Judge one reading of `sensor` and commit its transitions.
fn judge(w: &mut Writer, sensor: &str, ts: i64, v: f64) -> Vec<Alert> {
    w.accept(Reading::new(SensorId::from(sensor), Timestamp(ts), v));
    let out = w.alerts.clone();
    w.commit_alerts();
    out
}

fn active(w: &Writer) -> Vec<(String, String)> {
    let mut v: Vec<_> = w
        .engine
        .active()
        .into_iter()
        .map(|a| (a.sensor, a.id))
        .collect();
    v.sort();
    v
}

#[test]
fn an_alert_commit_carries_only_its_sensors_state_and_a_crash_restores_all_of_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let open = || opened(cfg_alarms(dir.path(), 50)).0;
    let mut w = open();
    for i in 0..50 {
        w.accept(Reading::new(
            SensorId::from(format!("s{i}")),
            Timestamp(1_000),
            1.0,
        ));
    }
    w.flush();
    let raised = judge(&mut w, "s7", 2_000, 150.0);
    assert_eq!(raised.len(), 1, "{raised:?}");
    // The commit wrote s7's state and the gateway-wide part, not the other 49 sensors.
    let saved = w.store.engine_state().expect("read").expect("saved");
    assert_eq!(saved.full, None);
    assert!(saved.head.is_some());
    let ids: Vec<&str> = saved.sensors.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(ids, ["s7"]);

    // The full snapshot falls due: it holds s7 raised and replaces the changes.
    w.snap_at = None;
    w.pending
        .push(Reading::new(SensorId::from("s1"), Timestamp(3_000), 1.0));
    w.flush();
    let saved = w.store.engine_state().expect("read").expect("saved");
    assert!(saved.full.is_some());
    assert_eq!((saved.head, saved.sensors.len()), (None, 0));

    // After it, s7 clears and s9 raises (changes only); then the process dies without shutting down.
    assert_eq!(judge(&mut w, "s7", 4_000, 1.0).len(), 1);
    assert_eq!(judge(&mut w, "s9", 4_000, 150.0).len(), 1);
    let before = active(&w);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].0, "s9");
    drop(w);

    // The restart restores the full snapshot and the changes over it: s7 cleared, s9 raised under its id, and the
    // next id is new.
    let mut w = open();
    assert_eq!(active(&w), before);
    assert!(
        judge(&mut w, "s9", 5_000, 160.0).is_empty(),
        "s9 is not raised again"
    );
    let cleared = judge(&mut w, "s9", 6_000, 1.0);
    assert_eq!(cleared.len(), 1);
    assert_eq!(
        (cleared[0].state, cleared[0].id.as_str()),
        (AlertState::Cleared, before[0].1.as_str())
    );
    let again = judge(&mut w, "s7", 7_000, 150.0);
    assert_eq!(again.len(), 1);
    assert!(
        again[0].id != raised[0].id && again[0].id != before[0].1,
        "a new id: {} (earlier {} and {})",
        again[0].id,
        raised[0].id,
        before[0].1
    );
}

#[test]
fn an_operator_command_commits_the_whole_alarm_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = opened(cfg_alarms(dir.path(), 3)).0;
    w.engine.set_acknowledge(true);
    judge(&mut w, "s0", 1_000, 150.0);
    assert!(w
        .store
        .engine_state()
        .expect("read")
        .expect("saved")
        .full
        .is_none());
    let (tx, mut rx) = oneshot::channel();
    // A shelf on the alarmed sensor: an event for it, and state beyond it (the request id).
    let req = crate::pipeline::Request {
        cmd: crate::pipeline::Command::Shelve {
            target: crate::pipeline::Target::Sensor("s0".into()),
            until: Timestamp(Timestamp::now().0 + 600_000),
        },
        by: "alice".into(),
        note: None,
        request_id: Some("r1".into()),
    };
    w.control(Control::Command(req, tx));
    let answer = rx.try_recv().expect("answered");
    assert!(answer.is_ok(), "{answer:?}");
    assert!(
        w.store.newest().expect("newest").1 >= 2,
        "the shelf's event is stored"
    );
    let saved = w.store.engine_state().expect("read").expect("saved");
    assert!(saved.full.is_some(), "{saved:?}");
    assert!(!w.full_snapshot_due());
}

#[test]
fn the_size_cap_is_looked_at_first_then_every_hundredth_of_it_or_every_ten_seconds() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = writer(dir.path());
    let commit = |w: &mut Writer, n: i64, from: i64| {
        w.pending = (0..n)
            .map(|i| Reading::new(SensorId::from("t"), Timestamp(from + i), 1.0))
            .collect();
        w.flush();
        w.cap_check.expect("looked at once").1
    };
    assert_eq!(commit(&mut w, 10, 1_000), 0, "the first flush looks");
    assert_eq!(commit(&mut w, 10, 2_000), 10, "a small one does not");
    // 16 bytes a reading against a hundredth of the cap: looked at again, the count starts over.
    let enough = (w.cfg.buffer.max_size.0 / 100 / 16) as i64;
    assert_eq!(commit(&mut w, enough, 3_000), 0);
    assert_eq!(commit(&mut w, 10, 3_000 + enough), 10);
    // Ten seconds later even a small one looks.
    w.cap_check = w
        .cap_check
        .map(|(at, n)| (at.checked_sub(CAP_EVERY).expect("up for 10 s"), n));
    assert_eq!(commit(&mut w, 10, 4_000 + enough), 0);
}

#[test]
fn the_live_state_holds_each_configured_sensors_newest_reading_held() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut w, signals, _control) = opened(config(dir.path(), &simulated(&["a", "b"])));
    // Out of config order, one sensor twice, and one the config does not know.
    for (s, ts, v) in [("b", 1, 2.0), ("a", 1, 1.0), ("x", 1, 9.0), ("a", 2, 3.0)] {
        w.pending
            .push(Reading::new(SensorId::from(s), Timestamp(ts), v));
    }
    w.flush();
    let live = signals.live.borrow().clone();
    let got: Vec<(&str, Option<f64>, i64)> = live
        .sensors
        .iter()
        .map(|(k, v)| (k.as_str(), v.v, v.ts))
        .collect();
    assert_eq!(got, vec![("a", Some(3.0), 2), ("b", Some(2.0), 1)]);

    // Updated in place: a reader holding the state of a commit ago keeps it as it was (copy on write), and a
    // commit that changes nothing is not announced (Sparkplug waits for changes).
    let mut rx = signals.live.clone();
    rx.mark_unchanged();
    w.pending
        .push(Reading::new(SensorId::from("a"), Timestamp(5), 4.0));
    w.flush();
    assert!(rx.has_changed().expect("open"), "a new value is announced");
    let now = rx.borrow_and_update().clone();
    assert_eq!(now.sensors.get("a").and_then(|v| v.v), Some(4.0));
    assert_eq!(
        live.sensors.get("a").and_then(|v| v.v),
        Some(3.0),
        "the held copy"
    );
    drop((live, now));
    // The same newest reading again (a commit whose readings change no sensor's latest value).
    w.pending
        .push(Reading::new(SensorId::from("a"), Timestamp(5), 4.0));
    w.flush();
    assert!(
        !rx.has_changed().expect("open"),
        "nothing new: not announced"
    );
    let before = rx.borrow().clone();
    w.pending
        .push(Reading::new(SensorId::from("b"), Timestamp(6), 2.0));
    w.flush();
    assert!(
        rx.has_changed().expect("open"),
        "a newer timestamp is a change"
    );
    assert!(
        !Arc::ptr_eq(&before, &rx.borrow()),
        "held by this test: copied, not written under it"
    );
    // Held by nobody: written where it is.
    drop(before);
    let at = Arc::as_ptr(&rx.borrow_and_update());
    w.pending
        .push(Reading::new(SensorId::from("b"), Timestamp(7), 2.0));
    w.flush();
    assert!(rx.has_changed().expect("open"));
    assert!(std::ptr::eq(Arc::as_ptr(&rx.borrow()), at), "no copy");
}

#[test]
fn the_live_state_follows_sensors_that_appear_late_and_a_reload_that_reorders_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut w, signals, _control) = opened(config(dir.path(), &simulated(&["a", "b"])));
    let flush = |w: &mut Writer, readings: &[(&str, i64, f64)]| {
        for &(s, ts, v) in readings {
            w.pending
                .push(Reading::new(SensorId::from(s), Timestamp(ts), v));
        }
        w.flush();
        let live = signals.live.borrow().clone();
        live.sensors
            .iter()
            .map(|(k, v)| (k.to_string(), v.v))
            .collect::<Vec<_>>()
    };
    let got = |v: &[(&str, f64)]| -> Vec<(String, Option<f64>)> {
        v.iter().map(|&(k, x)| (k.to_string(), Some(x))).collect()
    };
    // b reports first, a joins a commit later; then both again (the keys' places are known by then).
    assert_eq!(flush(&mut w, &[("b", 1, 2.0)]), got(&[("b", 2.0)]));
    assert_eq!(
        flush(&mut w, &[("a", 2, 1.0)]),
        got(&[("a", 1.0), ("b", 2.0)])
    );
    assert_eq!(
        flush(&mut w, &[("a", 3, 5.0), ("b", 3, 6.0)]),
        got(&[("a", 5.0), ("b", 6.0)])
    );
    // The same sensors in another order: same keys, other places in the config. Only a reports.
    w.reconfigure(Arc::new(config(dir.path(), &simulated(&["b", "a"]))));
    assert_eq!(
        flush(&mut w, &[("a", 4, 7.0)]),
        got(&[("a", 7.0), ("b", 6.0)]),
        "a's reading is a's, not the sensor that had its place"
    );
}

#[test]
fn cursor_moves_ride_the_next_flush_while_readings_flow_and_are_refused_after() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut w, signals, _control) = opened(cfg(dir.path()));
    let cursor = |w: &Writer| {
        w.store
            .cursor("influxdb", Stream::Readings)
            .expect("cursor")
    };
    // Nothing timed before the first readings: the sink saves its own.
    assert!(!signals.handoff.hand("influxdb", Stream::Readings, 1));
    w.pending
        .push(Reading::new(SensorId::from("t"), Timestamp(1000), 1.0));
    w.flush();
    // A flush of readings times the next one: a move is taken, and committed with that flush.
    assert!(signals.handoff.hand("influxdb", Stream::Readings, 1));
    assert_eq!(cursor(&w), 0, "not saved on its own");
    w.pending
        .push(Reading::new(SensorId::from("t"), Timestamp(2000), 1.0));
    w.flush();
    assert_eq!(cursor(&w), 1);
    // An alert commit between two flushes takes what was handed too.
    assert!(signals.handoff.hand("influxdb", Stream::Readings, 2));
    let a = overflow_raised(&mut w, 2500);
    w.alerts.push(a);
    w.commit_alerts();
    assert_eq!(cursor(&w), 2);
    // A flush without readings times none: what was handed is committed, and moves are refused from then on.
    assert!(signals.handoff.hand("influxdb", Stream::Readings, 3));
    w.flush();
    assert_eq!(cursor(&w), 3);
    assert!(!signals.handoff.hand("influxdb", Stream::Readings, 4));
}
