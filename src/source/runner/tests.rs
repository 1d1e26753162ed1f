//! The runner against a scripted source on tokio's paused clock: what it does with time, failures and faults.

use super::*;
use std::sync::Arc;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// What a poll group does when read.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Act {
    /// Answers `value` after `delay`.
    Answer { value: f64, delay: Duration },
    /// Never answers.
    Hang,
    /// The connection breaks.
    Break,
    /// The device answers with an exception.
    Exception,
    /// The sensor reports a fault.
    Fault,
}

#[derive(Default)]
struct Log {
    connects: Vec<Instant>,
    disconnects: usize,
    reads: Vec<(usize, Instant)>,
}

struct Scripted {
    polls: Vec<Poll>,
    acts: Arc<Mutex<Vec<Act>>>,
    log: Arc<Mutex<Log>>,
    policy: Policy,
}

fn policy() -> Policy {
    Policy {
        kind: "Test",
        timeout: Duration::from_millis(100),
        retries: 2,
        reconnect: (Duration::from_millis(400), Duration::from_secs(2)),
        timeout_reconnects: false,
        fresh_after_reconnect: false,
        timeout_hint: "",
    }
}

fn poll(interval_ms: u64, unit: u32, sensor: &str) -> Poll {
    Poll {
        interval: Duration::from_millis(interval_ms),
        unit: Some(unit),
        what: format!("unit {unit}"),
        sensors: vec![SensorId::from(sensor)],
    }
}

impl Source for Scripted {
    fn name(&self) -> &str {
        "test"
    }
    fn policy(&self) -> Policy {
        self.policy.clone()
    }
    fn polls(&self) -> Vec<Poll> {
        self.polls.clone()
    }
    async fn connect(&mut self) -> Result<(), SourceError> {
        self.log.lock().unwrap().connects.push(Instant::now());
        Ok(())
    }
    async fn read(&mut self, i: usize) -> Result<Vec<Sample>, SourceError> {
        self.log.lock().unwrap().reads.push((i, Instant::now()));
        let act = self.acts.lock().unwrap()[i];
        let sensor = self.polls[i].sensors[0];
        match act {
            Act::Answer { value, delay } => {
                tokio::time::sleep(delay).await;
                Ok(vec![Sample::good(&sensor, value)])
            }
            Act::Hang => std::future::pending().await,
            Act::Break => Err(SourceError::Transport("reset".into())),
            Act::Exception => Err(SourceError::Exception("exception 2".into())),
            Act::Fault => Ok(vec![Sample {
                sensor,
                value: Err("crc mismatch 0x12".into()),
                at: None,
                exact: None,
            }]),
        }
    }
    fn disconnect(&mut self) {
        self.log.lock().unwrap().disconnects += 1;
    }
}

struct Run {
    acts: Arc<Mutex<Vec<Act>>>,
    log: Arc<Mutex<Log>>,
    rx: mpsc::Receiver<Readings>,
    token: CancellationToken,
    start: Instant,
}

fn start(polls: Vec<Poll>, acts: Vec<Act>, policy: Policy) -> Run {
    let acts = Arc::new(Mutex::new(acts));
    let log = Arc::new(Mutex::new(Log::default()));
    let (tx, rx) = mpsc::channel(1024);
    let token = CancellationToken::new();
    let src = Scripted {
        polls,
        acts: Arc::clone(&acts),
        log: Arc::clone(&log),
        policy,
    };
    tokio::spawn(run(
        src,
        crate::channels::Intake::new(tx),
        token.clone(),
        Arc::default(),
    ));
    Run {
        acts,
        log,
        rx,
        token,
        start: Instant::now(),
    }
}

impl Run {
    fn reads_of(&self, i: usize) -> Vec<Duration> {
        let log = self.log.lock().unwrap();
        log.reads
            .iter()
            .filter(|(p, _)| *p == i)
            .map(|(_, t)| *t - self.start)
            .collect()
    }
    fn drain(&mut self) -> Vec<Reading> {
        let mut out = Vec::new();
        while let Ok(b) = self.rx.try_recv() {
            out.extend(b);
        }
        out
    }
}

const ANSWER: Act = Act::Answer {
    value: 1.0,
    delay: Duration::from_millis(10),
};

#[tokio::test(start_paused = true)]
async fn each_group_is_read_on_its_own_interval() {
    let mut r = start(
        vec![poll(1000, 1, "fast"), poll(3000, 2, "slow")],
        vec![ANSWER, ANSWER],
        policy(),
    );
    tokio::time::sleep(Duration::from_millis(9_500)).await;
    assert_eq!(r.reads_of(0).len(), 10, "{:?}", r.reads_of(0));
    assert_eq!(r.reads_of(1).len(), 4, "{:?}", r.reads_of(1));
    let readings = r.drain();
    assert_eq!(readings.iter().filter(|x| &*x.sensor == "fast").count(), 10);
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_silent_unit_is_retried_then_backed_off_while_its_neighbour_keeps_its_rate() {
    let mut r = start(
        vec![poll(1000, 1, "silent"), poll(1000, 2, "alive")],
        vec![Act::Hang, ANSWER],
        policy(),
    );
    tokio::time::sleep(Duration::from_millis(30_500)).await;
    let silent = r.reads_of(0);
    // Each poll is the attempt and 2 retries, each cut at the 100 ms deadline; then the unit waits 1, 2, 4, 8 s…
    assert_eq!(silent[..3].len(), 3);
    assert!(silent[1] - silent[0] >= Duration::from_millis(100));
    let polls = silent.len() / 3;
    assert!(
        (4..=6).contains(&polls),
        "silent unit polled {polls} times in 30 s: {silent:?}"
    );
    assert!(r.reads_of(1).len() >= 25, "{:?}", r.reads_of(1).len());
    assert!(r.drain().iter().all(|x| &*x.sensor == "alive"));
    // Its first answer restores the rate.
    r.acts.lock().unwrap()[0] = ANSWER;
    tokio::time::sleep(Duration::from_secs(70)).await;
    let n = r.reads_of(0).len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(r.reads_of(0).len() - n, 10);
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_rebuilt_after_a_backoff_and_an_exception_keeps_it() {
    let r = start(vec![poll(1000, 1, "a")], vec![Act::Exception], policy());
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    {
        let log = r.log.lock().unwrap();
        assert_eq!(log.connects.len(), 1, "an exception is an answer");
        assert_eq!(log.disconnects, 0);
    }
    r.acts.lock().unwrap()[0] = Act::Break;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let log = r.log.lock().unwrap();
    assert_eq!(log.disconnects, 1);
    assert_eq!(log.connects.len(), 2);
    // Reads at 0–3 s got exceptions, the one at 4 s the break.
    assert_eq!(log.reads.len(), 5);
    let gap = log.connects[1] - log.reads[4].1;
    assert!(
        gap >= Duration::from_millis(200),
        "reconnected {gap:?} after the break (backoff at least half of 400 ms)"
    );
    drop(log);
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_sensor_fault_is_stored_as_nan_and_a_good_value_follows() {
    let mut r = start(vec![poll(1000, 1, "a")], vec![Act::Fault], policy());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    r.acts.lock().unwrap()[0] = ANSWER;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let v: Vec<f64> = r.drain().iter().map(|x| x.value).collect();
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v[0].is_nan() && v[1].is_nan());
    assert_eq!(v[2], 1.0);
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_reading_is_stamped_in_the_middle_of_the_attempt_that_answered() {
    let wall = Timestamp::now();
    let mut r = start(
        vec![poll(10_000, 1, "a")],
        vec![Act::Answer {
            value: 2.0,
            delay: Duration::from_millis(90),
        }],
        Policy {
            timeout: Duration::from_millis(1000),
            ..policy()
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = r.drain();
    assert_eq!(got.len(), 1);
    // The paused clock moves tokio's time, not the wall clock: the stamp is the wall clock at the send plus half
    // the 90 ms round trip.
    let offset = got[0].ts.0 - wall.0;
    assert!(
        (45..45 + 200).contains(&offset),
        "stamped {offset} ms after the start"
    );
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_a_read_in_flight() {
    let r = start(vec![poll(1000, 1, "a")], vec![Act::Hang], {
        Policy {
            timeout: Duration::from_secs(3600),
            ..policy()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let Run { token, rx, .. } = r;
    token.cancel();
    // The runner returns and drops its sender.
    let mut rx = rx;
    tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("runner stopped");
}
