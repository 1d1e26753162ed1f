//! Model test of the store: random sequences of append / deliver / ack / crash-reopen / cap pressure against an
//! in-memory model.

use super::*;
use crate::model::{AlertState, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Alert,
    Deliver(usize),
    Ack(usize),
    Crash,
    Cap,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..50).prop_map(Op::Append),
        1 => Just(Op::Alert),
        3 => (0usize..2).prop_map(Op::Deliver),
        3 => (0usize..2).prop_map(Op::Ack),
        1 => Just(Op::Crash),
        1 => Just(Op::Cap),
    ]
}

fn alert(n: i64) -> Alert {
    Alert {
        kind: crate::model::AlertType::Alert,
        id: format!("gw:s:{n}"),
        state: crate::model::AlertState::Raised,
        severity: crate::model::Severity::Warning,
        sensor: "s".into(),
        device: "gw".into(),
        location: String::new(),
        value: Some(n as f64),
        unit: None,
        threshold: None,
        direction: None,
        ts: Timestamp(n),
        since: Timestamp(n),
        reason: None,
        operator: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut store = Store::open(dir.path()).expect("open");
        let sinks = ["a", "b"];
        let id = SensorId::from("s");
        // Model: every accepted reading value, dropped values, and per sink delivered-but-unacked batch.
        let mut next_value = 0i64;
        let mut accepted: Vec<i64> = Vec::new();
        let mut dropped_total = 0u64;
        let mut delivered: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        let mut inflight: [Option<(i64, Vec<i64>)>; 2] = [None, None];
        let mut events = 0i64;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let rs: Vec<Reading> = (0..n).map(|i| Reading::new(id, Timestamp(next_value + i as i64), (next_value + i as i64) as f64)).collect();
                    store.append_readings(&rs, None).expect("append");
                    accepted.extend(next_value..next_value + n as i64);
                    next_value += n as i64;
                }
                Op::Alert => {
                    store.append_alerts(&[alert(events)], None).expect("alert");
                    events += 1;
                }
                Op::Deliver(s) => {
                    let cur = store.cursor(sinks[s], Stream::Readings).expect("cursor");
                    let b = store.batches_after(cur, 1).expect("read");
                    if let Some(b) = b.first() {
                        let vals: Vec<i64> = b.readings.iter().map(|r| r.value as i64).collect();
                        // Order: strictly after everything this sink was given before, unless re-delivery after crash.
                        if let Some(last) = delivered[s].last() {
                            prop_assert!(vals[0] > *last || inflight[s].is_none());
                        }
                        inflight[s] = Some((b.id, vals));
                    }
                }
                Op::Ack(s) => {
                    if let Some((bid, vals)) = inflight[s].take() {
                        store.ack(sinks[s], Stream::Readings, bid).expect("ack");
                        // Exactly once between crashes: never acked twice.
                        for v in &vals {
                            prop_assert!(!delivered[s].contains(v), "value {} delivered twice to {}", v, sinks[s]);
                        }
                        delivered[s].extend(vals);
                    }
                }
                Op::Crash => {
                    drop(store);
                    store = Store::open(dir.path()).expect("reopen");
                    inflight = [None, None];
                }
                Op::Cap => {
                    let used = store.used_bytes().expect("used");
                    if let Some(d) = store.enforce_cap(used / 2).expect("cap") {
                        dropped_total += d.readings;
                    }
                }
            }
            // Invariant: every accepted reading is either held, or dropped by the cap (and counted).
            let (held, ev) = store.counts().expect("counts");
            prop_assert_eq!(held + dropped_total, accepted.len() as u64);
            prop_assert_eq!(store.dropped_readings().expect("dropped"), dropped_total);
            // Alerts are never dropped.
            prop_assert_eq!(ev, events as u64);
        }
        // Held readings are exactly the newest accepted ones, in order.
        let mut held = Vec::new();
        store.export(Timestamp(i64::MIN), None, |r| held.push(r.value as i64)).expect("export");
        let expect: Vec<i64> = accepted[accepted.len() - held.len()..].to_vec();
        prop_assert_eq!(held, expect);
    }
}

#[test]
fn prune_respects_cursors_and_retention() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    let id = SensorId::from("x");
    for i in 0..10 {
        s.append_readings(&[Reading::new(id, Timestamp(i * 1000), i as f64)], None)
            .expect("a");
    }
    let cons = vec![("influxdb".to_string(), Stream::Readings)];
    // Nothing delivered: nothing pruned, however old.
    assert_eq!(
        s.prune(&cons, Duration::from_secs(1), Timestamp(1_000_000))
            .expect("p"),
        0
    );
    s.ack("influxdb", Stream::Readings, 5).expect("ack");
    assert_eq!(
        s.prune(&cons, Duration::from_secs(1), Timestamp(1_000_000))
            .expect("p"),
        5
    );
    // Without consumers only retention applies.
    assert_eq!(
        s.prune(&[], Duration::from_secs(3600), Timestamp(1_000_000))
            .expect("p"),
        0
    );
    assert_eq!(
        s.prune(&[], Duration::from_secs(1), Timestamp(1_000_000))
            .expect("p"),
        5
    );
}

#[test]
fn corrupt_file_is_moved_aside() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join(DB_FILE), vec![0xABu8; 8192]).expect("write");
    let s = Store::open(dir.path()).expect("fresh store");
    assert_eq!(s.counts().expect("c"), (0, 0));
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
}

#[test]
fn torn_wal_tail_is_discarded_and_committed_data_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = SensorId::from("x");
    {
        let mut s = Store::open(dir.path()).expect("open");
        for i in 0..50 {
            s.append_readings(&[Reading::new(id, Timestamp(i), i as f64)], None)
                .expect("a");
        }
        s.append_alerts(&[alert(1)], None).expect("alert");
        // Simulate a crash: no clean close, the WAL keeps the commits (the lock goes with the process).
        drop(s.lock.take());
        std::mem::forget(s);
    }
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    let len = std::fs::metadata(&wal).expect("wal exists").len();
    assert!(len > 0);
    // A torn write: half a frame of garbage at the end of the WAL.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&wal)
        .expect("open wal");
    std::io::Write::write_all(&mut f, &vec![0x5Au8; 2000]).expect("write");
    drop(f);
    let mut s = Store::open(dir.path()).expect("opens after a torn tail");
    assert!(s.was_unclean);
    assert_eq!(s.counts().expect("c"), (50, 1));
    let mut vals = Vec::new();
    s.export(Timestamp(i64::MIN), None, |r| vals.push(r.value))
        .expect("export");
    assert_eq!(vals, (0..50).map(|i| i as f64).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_batch_is_skipped_counted_and_shown() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    let id = SensorId::from("t");
    for i in 0..3 {
        let r = Reading::new(id, Timestamp(1000 + i), i as f64);
        s.append_readings(&[r], None).expect("append");
    }
    // One bit flipped in the middle batch, as a worn SD card would.
    s.conn
        .execute(
            "UPDATE batches SET data = CAST(substr(data, 1, 8) || X'FF' || substr(data, 10) AS BLOB) WHERE id = 2",
            [],
        )
        .expect("damage");
    let got = s.batches_after(0, 10).expect("read");
    assert_eq!(got.len(), 3, "the cursor can move past the damaged batch");
    assert_eq!(
        got.iter().map(|b| b.readings.len()).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    let mut exported = Vec::new();
    s.export(Timestamp(0), None, |r| exported.push(r.value))
        .expect("export");
    assert_eq!(exported, [0.0, 2.0]);
    let st = s.status(&[], Timestamp(5000)).expect("status");
    assert_eq!(
        st.corrupt_batches, 2,
        "met once by the sink read, once by export"
    );
}

#[test]
fn a_second_writer_is_refused_and_a_locked_file_is_never_moved_aside() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    s.append_alerts(&[alert(1)], None).expect("alert");
    let second = Store::open(dir.path())
        .err()
        .expect("a second writer is refused");
    assert!(
        second.to_string().contains("another watchpost is using"),
        "{second}"
    );
    drop(s);
    // An administrator's sqlite3 session holds the write lock while the daemon starts: the daemon waits (busy
    // timeout) and opens the same file; nothing is moved aside, nothing lost.
    let admin = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("admin");
    admin.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        admin.execute_batch("COMMIT").expect("unlock");
    });
    let s = Store::open(dir.path()).expect("opens once the lock is released");
    release.join().expect("admin");
    assert_eq!(s.counts().expect("counts").1, 1, "the alert is still there");
    let aside = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(!aside, "nothing moved aside");
}

#[test]
fn a_store_locked_beyond_the_busy_timeout_is_reported_not_moved_aside() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    s.append_alerts(&[alert(1)], None).expect("alert");
    s.mark_clean().expect("clean");
    drop(s);
    let admin = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("admin");
    admin.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let err = Store::open(dir.path())
        .err()
        .expect("a lock held past the busy timeout is an error");
    assert!(!err.is_corrupt(), "{err}");
    admin.execute_batch("COMMIT").expect("unlock");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
    let s = Store::open(dir.path()).expect("opens after the lock is gone");
    assert_eq!(
        s.counts().expect("counts").1,
        1,
        "alert ids and backlog kept"
    );
}

#[test]
fn readings_of_an_unknown_sensor_index_are_skipped_never_renamed() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    let (a, b) = (SensorId::from("a"), SensorId::from("b"));
    s.append_readings(
        &[
            Reading::new(a, Timestamp(1), 1.0),
            Reading::new(b, Timestamp(2), 2.0),
        ],
        None,
    )
    .expect("append");
    // The sensor table lost `b` (damage): its readings are skipped, no `sensor#N` name is invented.
    s.conn
        .execute("DELETE FROM sensors WHERE name = 'b'", [])
        .expect("damage");
    drop(s);
    let mut s = Store::open_existing(dir.path()).expect("reopen");
    let got = s.batches_after(0, 10).expect("read");
    let names: Vec<String> = got[0]
        .readings
        .iter()
        .map(|r| r.sensor.to_string())
        .collect();
    assert_eq!(names, ["a"]);
}

#[test]
fn sink_reads_reuse_their_prepared_statement() {
    // The bundled SQLite plans with STAT4; without query-planner stability a cached statement with `LIMIT ?` was
    // re-prepared on every call (a visible share of the daemon's CPU at ten reads a second).
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = Store::open(dir.path()).expect("open");
    let id = SensorId::from("x");
    for i in 0..5 {
        w.append_readings(&[Reading::new(id, Timestamp(i), i as f64)], None)
            .expect("append");
    }
    let mut r = Store::open_existing(dir.path()).expect("reader");
    for after in 0..5 {
        assert_eq!(
            r.batches_after(after, 1 + after as usize)
                .expect("read")
                .len() as i64,
            (5 - after).min(1 + after)
        );
        assert_eq!(
            r.pending(Stream::Readings, after).expect("pending"),
            (5 - after) as u64
        );
    }
    for sql in [
        "SELECT id, data FROM batches WHERE id > ?1 AND last_ts >= ?2 ORDER BY id LIMIT ?3",
        "SELECT coalesce(sum(count), 0) FROM batches WHERE id > ?1",
    ] {
        let stmt = r.conn.prepare_cached(sql).expect("cached");
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{sql}"
        );
    }
}

/// An upgrade from a store written before the schema had a version (the release on the gateways now), with a
/// backlog in it: the schema is brought to the current version, and nothing is lost — readings, alert events,
/// every sink's cursor. A store from a newer release is refused, untouched.
#[test]
fn an_old_store_with_a_backlog_is_upgraded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = SensorId::from("s");
    {
        let mut s = Store::open(dir.path()).expect("open");
        for b in 0..5 {
            let rs: Vec<Reading> = (0..100)
                .map(|i| Reading::new(id, Timestamp(b * 1000 + i), i as f64))
                .collect();
            s.append_readings(&rs, None).expect("append");
        }
        s.append_alerts(&[alert(1), alert(2)], None)
            .expect("alerts");
        s.ack("influxdb", Stream::Readings, 2).expect("cursor");
        s.ack("mqtt", Stream::Events, 1).expect("cursor");
        s.mark_clean().expect("clean");
    }
    // What the release before versioning left: the same tables, user_version 0, no index.
    {
        let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("raw");
        c.execute_batch("DROP INDEX dead_letters_item; PRAGMA user_version = 0;")
            .expect("downgrade");
    }
    let s = Store::open(dir.path()).expect("upgrade");
    let version: u32 = s
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, open::SCHEMA_VERSION);
    assert_eq!(s.counts().expect("counts"), (500, 2));
    assert_eq!(s.cursor("influxdb", Stream::Readings).expect("c"), 2);
    assert_eq!(s.cursor("mqtt", Stream::Events).expect("c"), 1);
    assert_eq!(s.pending(Stream::Readings, 2).expect("p"), 300);
    drop(s);
    {
        let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("raw");
        c.execute_batch("PRAGMA user_version = 99;").expect("newer");
    }
    let e = Store::open(dir.path())
        .err()
        .expect("a newer store is refused");
    assert!(
        e.to_string()
            .contains("schema version 99, newer than this watchpost understands"),
        "{e}"
    );
    let e = Store::open_existing(dir.path())
        .err()
        .expect("readers refuse it too");
    assert!(matches!(e, StoreError::Newer { found: 99, .. }), "{e}");
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("raw");
    let v: u32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("v");
    assert_eq!(v, 99, "left untouched");
}

#[test]
fn the_cap_is_lowered_to_what_the_disk_and_the_file_size_limit_leave() {
    use super::cap::{room, WAL_BUDGET};
    const MIB: u64 = 1024 * 1024;
    // A big disk and no limit: the configured cap.
    assert_eq!(room(256 * MIB, None, Some(100_000 * MIB)), 256 * MIB);
    // `ulimit -f` 600 KiB: the database stays at 70 % of it (room for a WAL of a quarter and growth).
    assert_eq!(room(MIB, Some(600 * 1024), None), 600 * 1024 / 10 * 7);
    // 20 MiB of files and free space: 90 % of what is left beside the WAL's budget.
    assert_eq!(
        room(256 * MIB, None, Some(20 * MIB)),
        (20 * MIB - WAL_BUDGET) / 10 * 9
    );
    // Less than the WAL's budget: nothing to spare, the oldest readings go first.
    assert_eq!(room(256 * MIB, None, Some(MIB)), 0);
}

#[test]
fn the_kpi_reader_streams_a_period_s_raises_by_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    let mut cleared = alert(25);
    cleared.state = AlertState::Cleared;
    s.append_alerts(&[alert(5), alert(10), alert(20), cleared, alert(30)], None)
        .expect("alerts");
    let mut seen = Vec::new();
    s.each_event_between(
        Timestamp(10),
        Timestamp(30),
        Some(AlertState::Raised),
        |a| seen.push(a.ts.0),
    )
    .expect("read");
    assert_eq!(seen, [10, 20], "raises in [10, 30), oldest first");
    let mut all = Vec::new();
    s.each_event_between(Timestamp(0), Timestamp(100), None, |a| all.push(a.ts.0))
        .expect("read");
    assert_eq!(all, [5, 10, 20, 25, 30]);
    // The period is found by the index, not a scan of the retention.
    let plan: String = s
        .conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT payload FROM events WHERE ts >= 1 AND ts < 2",
            [],
            |r| r.get(3),
        )
        .expect("plan");
    assert!(plan.contains("events_ts"), "{plan}");
}

#[test]
fn a_commit_waits_for_a_sink_saving_its_cursor_instead_of_failing_busy() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = Store::open(dir.path()).expect("writer");
    let mut sink = Store::open_existing(dir.path()).expect("sink connection");
    w.append_alerts(&[alert(1)], None).expect("alert");
    let r = |ts| Reading::new(SensorId::from("t"), Timestamp(ts), 1.0);
    w.append_readings(&[r(500)], None).expect("sensor t known");
    // The sink's connection holds the write lock (a cursor save under way) while the writer commits readings and
    // an alert: the commit reads where each stream stood, and a transaction that reads before it writes is
    // answered BUSY at once by SQLite, busy timeout or not.
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let saver = std::thread::spawn(move || {
        sink.conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
        sink.ack("influxdb", Stream::Events, 1).expect("ack");
        locked_tx.send(()).expect("signal");
        std::thread::sleep(Duration::from_millis(300));
        sink.conn.execute_batch("COMMIT").expect("unlock");
    });
    locked.recv().expect("locked");
    let added = w
        .append(&[r(1_000)], &[alert(2)], None)
        .expect("the commit waits for the lock");
    saver.join().expect("saver");
    assert_eq!(added.batch.map(|(after, _)| after), Some(1));
    assert_eq!(added.events_after, 1);
    assert_eq!(w.cursor("influxdb", Stream::Events).expect("cursor"), 1);
}

#[test]
fn new_sensors_are_registered_in_one_transaction() {
    // One transaction per new sensor made the first commit of 2,000 sensors wait 0.3 s (an fsync each).
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(dir.path()).expect("open");
    let readings: Vec<Reading> = (0..200)
        .map(|i| Reading::new(SensorId::from(format!("s{i:03}")), Timestamp(1), 1.0))
        .collect();
    // The log emptied first (the next commit starts it again): what it holds after is this commit's.
    let side = open::connect(&dir.path().join(DB_FILE)).expect("connect");
    checkpoint::passive(&side).expect("checkpoint");
    store.append_readings(&readings, None).expect("append");
    let (frames, _) = checkpoint::passive(&side).expect("checkpoint");
    assert!(
        frames < 20,
        "{frames} log frames for one batch of 200 new sensors"
    );
    // Registered once each, in order, and read back under their own names.
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    let got = store.batches_after(0, 10).expect("read");
    let names: Vec<&str> = got[0].readings.iter().map(|r| &*r.sensor).collect();
    assert_eq!(names.len(), 200);
    assert!(names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("s{i:03}")));
}

#[test]
fn a_sink_read_stops_at_the_batch_that_fills_its_chunk() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    numbered_batches(&mut s, 5, 10);
    let sizes = |v: Vec<Batch>| v.iter().map(|b| b.readings.len()).collect::<Vec<_>>();
    // 15 readings wanted: the second batch of 10 fills the chunk, the other three are not read.
    assert_eq!(sizes(s.batches_for(0, 16, 15).expect("read")), [10, 10]);
    assert_eq!(sizes(s.batches_for(0, 16, 10).expect("read")), [10]);
    assert_eq!(
        sizes(s.batches_for(0, 16, 1).expect("read")),
        [10],
        "a batch is never split"
    );
    assert!(s.batches_for(0, 16, 0).expect("read").is_empty());
    // The batch limit still holds, and so does the cursor.
    assert_eq!(
        sizes(s.batches_for(0, 3, usize::MAX).expect("read")),
        [10, 10, 10]
    );
    let after_two = s.batches_for(2, 16, 15).expect("read");
    assert_eq!(after_two.iter().map(|b| b.id).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(after_two[0].readings[0].value, 20.0);
    assert_eq!(sizes(s.batches_after(0, 16).expect("read")), [10; 5]);
}

#[test]
fn an_export_larger_than_one_read_comes_out_whole_and_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Store::open(dir.path()).expect("open");
    // 20 batches of 10,000: three reads of about 65,536 readings each.
    numbered_batches(&mut s, 20, 10_000);
    let mut next = 0.0;
    let n = s
        .export(Timestamp(i64::MIN), None, |r| {
            assert_eq!(r.value, next, "no gap, no repeat");
            next += 1.0;
        })
        .expect("export");
    assert_eq!(n, 200_000);
    assert_eq!(next, 200_000.0);
    // From a time inside the 13th batch on.
    let n = s.export(Timestamp(125_000), None, |_| {}).expect("export");
    assert_eq!(n, 75_000);
}

/// `batches` committed batches of `size` readings of one sensor, numbered from 0 in value and sample time.
fn numbered_batches(s: &mut Store, batches: i64, size: i64) {
    let id = SensorId::from("t");
    for b in 0..batches {
        let rows: Vec<Reading> = (b * size..(b + 1) * size)
            .map(|n| Reading::new(id, Timestamp(n), n as f64))
            .collect();
        s.append_readings(&rows, None).expect("append");
    }
}

#[test]
fn a_commit_stands_right_after_the_id_before_its_own_even_when_the_newest_was_dropped() {
    // The commit does not look up the newest stored id: it reports the one before its own, which `AUTOINCREMENT`
    // never hands out again, so nothing is or will be stored between.
    let dir = tempfile::tempdir().expect("tmp");
    let mut w = Store::open(dir.path()).expect("writer");
    numbered_batches(&mut w, 3, 1);
    let r = |ts| Reading::new(SensorId::from("t"), Timestamp(ts), 1.0);
    w.append_alerts(&[alert(1), alert(2)], None)
        .expect("alerts");
    // The newest of each stream goes (the size cap, a damaged row removed by hand).
    w.conn
        .execute_batch("DELETE FROM batches WHERE id = 3; DELETE FROM events WHERE seq = 2")
        .expect("delete");
    let added = w.append(&[r(4)], &[alert(3)], None).expect("commit");
    assert_eq!(added.batch, Some((3, 4)), "ids are not reused");
    assert_eq!(added.events_after, 2);
    assert_eq!(added.events.first().map(|e| e.0), Some(3));
    // A cursor at the newest stored id reads the store and finds the new batch: no gap.
    let got = w.batches_after(2, 10).expect("read");
    assert_eq!(got.iter().map(|b| b.id).collect::<Vec<_>>(), vec![4]);
}
