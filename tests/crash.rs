//! Crash test: a child process writing at full speed is killed with SIGKILL at random moments (25 times); after
//! each restart every committed reading and alert is present, in order, and the store opens cleanly.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use watchpost::store::Store;

#[test]
fn kill_9_while_writing_loses_nothing_committed() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut last_committed = (0u64, 0u64);
    for round in 0..25 {
        let mut child = Command::new(bin())
            .arg("crash-writer")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The first line reports what the store held at open: it must include everything committed before.
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("writer started");
        let (r0, e0) = parse(&first);
        assert!(
            r0 >= last_committed.0 && e0 >= last_committed.1,
            "round {round}: store lost data: {first} < {last_committed:?}"
        );
        let run_for = Duration::from_millis(20 + fastrand::u64(0..300));
        let start = Instant::now();
        let mut last = (r0, e0);
        while start.elapsed() < run_for {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                last = parse(&l);
            }
        }
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let _ = child.wait();
        // Lines printed before the kill are committed.
        while let Ok(l) = rx.try_recv() {
            last = parse(&l);
        }
        last_committed = last;
        // The store opens cleanly and holds a gap-free sequence 0..n.
        let mut s = Store::open(dir.path()).expect("store opens after kill -9");
        let mut expect = 0i64;
        s.export(watchpost::model::Timestamp(i64::MIN), None, |r| {
            assert_eq!(r.value as i64, expect, "readings in order, no gaps");
            expect += 1;
        })
        .expect("export");
        assert!(
            expect as u64 >= last_committed.0,
            "round {round}: {expect} < {}",
            last_committed.0
        );
        let events = s.all_events().expect("events");
        assert!(events.len() as u64 >= last_committed.1);
        for (i, (_, a)) in events.iter().enumerate() {
            assert_eq!(a.value, Some(i as f64));
        }
    }
    assert!(
        last_committed.0 > 10_000,
        "the writer made progress: {last_committed:?}"
    );
}

fn parse(l: &str) -> (u64, u64) {
    let p: Vec<&str> = l.split_whitespace().collect();
    (p[1].parse().expect("n"), p[3].parse().expect("n"))
}
