//! Checkpoints off the commit path: a thread with its own connection moves the write-ahead log into the database
//! often enough that SQLite's automatic checkpoint (run by whichever commit crosses `wal_autocheckpoint`, inside
//! that commit) is only a backstop.
//!
//! The automatic checkpoint copies up to 4 MiB of log into the database and fsyncs it, in the middle of the
//! ingest thread's commit: at 2,000 sensors one commit in a few seconds took 0.3–0.4 s that way on a VM disk,
//! and every alert sampled meanwhile waited for it. Here the commit only appends to the log; a `PASSIVE`
//! checkpoint (it never waits for a lock, and no writer waits for it) runs on this thread, paced by how fast the
//! log grows: about a quarter of the budget per checkpoint, at most four a second, at least one every 30 s.

use super::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The pace's bounds.
const FASTEST: Duration = Duration::from_millis(250);
const SLOWEST: Duration = Duration::from_secs(30);
const FIRST: Duration = Duration::from_secs(2);
/// A checkpoint slower than this is logged (a disk that takes this long to sync is worth knowing about).
const SLOW: Duration = Duration::from_millis(500);

/// How often to checkpoint, from the log frames each checkpoint found: aim at `target` frames per checkpoint.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    target: u64,
    /// The log's frame count at the last checkpoint (it starts again from 0 once a writer restarts the log).
    last: u64,
}

impl Pace {
    fn new(target: u64) -> Pace {
        Pace {
            interval: FIRST,
            target: target.max(8),
            last: 0,
        }
    }

    /// After a checkpoint that found `log` frames in the log: twice as often when more than half the target
    /// came in since the last one, half as often when less than an eighth did.
    fn after(&mut self, log: u64) {
        let grown = if log >= self.last {
            log - self.last
        } else {
            log
        };
        self.last = log;
        if grown > self.target / 2 {
            self.interval = (self.interval / 2).max(FASTEST);
        } else if grown < self.target / 8 {
            self.interval = (self.interval * 2).min(SLOWEST);
        }
    }
}

/// The checkpointing thread; stopped (and joined) when dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Log frames moved into the database so far.
    moved: Arc<AtomicU64>,
}

impl Checkpointer {
    /// Start checkpointing the store in `dir` (the writer opened it).
    pub fn start(dir: &Path) -> Result<Checkpointer, StoreError> {
        let budget = super::open::wal_budget();
        let conn = super::open::connect(&dir.join(super::DB_FILE))?;
        let (stop, rx) = mpsc::channel();
        let moved = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&moved);
        let thread = std::thread::Builder::new()
            .name("wp-checkpoint".into())
            .spawn(move || run(&conn, &rx, Pace::new(budget / 4096 / 4), &m))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
            moved,
        })
    }

    /// Log frames moved into the database so far (each checkpoint counts what it found done).
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `PASSIVE` checkpoint: (log frames, frames checkpointed).
pub(super) fn passive(conn: &Connection) -> Result<(u64, u64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(1)?.max(0) as u64,
            r.get::<_, i64>(2)?.max(0) as u64,
        ))
    })?)
}

fn run(conn: &Connection, stop: &mpsc::Receiver<()>, mut pace: Pace, moved: &AtomicU64) {
    let mut fail_log = crate::util::Throttle::new(Duration::from_secs(600));
    loop {
        match stop.recv_timeout(pace.interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let t = Instant::now();
        match passive(conn) {
            Ok((log, done)) => {
                pace.after(log);
                moved.fetch_add(done, Ordering::Relaxed);
                let took = t.elapsed();
                if took >= SLOW {
                    tracing::info!(ms = took.as_millis() as u64, frames = done, "Slow disk: a checkpoint of the store's write-ahead log took this long (off the commit path).");
                }
            }
            Err(e) => {
                if let Some(suppressed) = fail_log.ready() {
                    tracing::warn!(error = %e, suppressed, "A checkpoint of the store's write-ahead log failed; commits will checkpoint it themselves.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SensorId;

    #[test]
    fn the_pace_follows_how_fast_the_log_grows() {
        let mut p = Pace::new(256);
        assert_eq!(p.interval, FIRST);
        // 200 frames since the last checkpoint: more than half the target, twice as often (down to 250 ms).
        p.after(200);
        assert_eq!(p.interval, FIRST / 2);
        for n in 2..10 {
            p.after(200 * n);
        }
        assert_eq!(p.interval, FASTEST);
        // The log was restarted by a writer after a complete checkpoint: 20 frames is growth, not a shrink.
        p.after(20);
        assert_eq!(p.interval, FASTEST * 2);
        // Quiet: between an eighth and half the target keeps the pace; less slows it down to 30 s.
        p.after(20 + 100);
        assert_eq!(p.interval, FASTEST * 2);
        for _ in 0..20 {
            p.after(120);
        }
        assert_eq!(p.interval, SLOWEST);
    }

    #[test]
    fn the_thread_moves_the_log_into_the_database_and_stops_when_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut store = super::super::Store::open(dir.path()).expect("open");
        let c = Checkpointer::start(dir.path()).expect("start");
        let id: SensorId = SensorId::from("s");
        for i in 0..20 {
            let r = crate::model::Reading::new(id, crate::model::Timestamp(i), i as f64);
            store.append_readings(&[r], None).expect("append");
        }
        let until = Instant::now() + FIRST + Duration::from_secs(10);
        while c.moved() == 0 {
            assert!(
                Instant::now() < until,
                "no checkpoint within {:?}",
                FIRST + Duration::from_secs(10)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // What the thread moved is in the database: a checkpoint now finds it done.
        let side =
            super::super::open::connect(&dir.path().join(super::super::DB_FILE)).expect("connect");
        let (log, done) = passive(&side).expect("checkpoint");
        assert!(log >= 20 && done == log, "log {log}, done {done}");
        let t = Instant::now();
        drop(c);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the thread stops at once"
        );
    }
}
