//! The runner against a scripted fake sink and a real store: the window and the cursor, failure and re-send from
//! the cursor, dead letters (rejected chunks and items the sink can never carry), the digest linger, and pacing.

use super::*;
use crate::channels::Signals;
use crate::metrics::{Metrics, SharedMetrics};
use crate::model::{Alert, AlertState, AlertType, Live, Severity};
use std::sync::Mutex;
use tokio::sync::{mpsc, watch};

/// What the fake sink saw and how it answers.
#[derive(Default)]
struct Script {
    /// Answers, one per delivery, in order; `Ok` once they run out.
    answers: VecDeque<Result<(), SinkError>>,
    /// The positions of every delivery, in the order handed over.
    deliveries: Vec<Vec<i64>>,
}

struct Fake {
    script: Arc<Mutex<Script>>,
    max_items: usize,
    window: usize,
    linger: Duration,
    /// Positions this sink can never carry.
    unfit: Vec<i64>,
}

impl Sink for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn stream(&self) -> Stream {
        Stream::Events
    }
    fn max_items(&self) -> usize {
        self.max_items
    }
    fn window(&self) -> usize {
        self.window
    }
    fn linger(&self) -> Duration {
        self.linger
    }
    fn screen(&self, items: &Items) -> Vec<Unfit> {
        items
            .positions()
            .into_iter()
            .filter(|p| self.unfit.contains(p))
            .map(|position| Unfit {
                position,
                reason: "too large".into(),
            })
            .collect()
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        let mut s = self.script.lock().unwrap_or_else(|p| p.into_inner());
        s.deliveries.push(items.positions());
        let answer = s.answers.pop_front().unwrap_or(Ok(()));
        async move { answer }
    }
}

/// The fake's constructor: it makes the sink once.
fn once(fake: Fake) -> impl FnMut(&SinkContext) -> Result<Fake, SinkError> + Send + 'static {
    let mut fake = Some(fake);
    move |_| {
        fake.take().ok_or(SinkError::Refused {
            reason: "built twice".into(),
        })
    }
}

fn alert(n: u64) -> Alert {
    Alert {
        kind: AlertType::Alert,
        id: format!("gw:t:{n}"),
        state: AlertState::Raised,
        severity: Severity::Warning,
        sensor: "t".into(),
        device: "gw".into(),
        location: "here".into(),
        value: Some(n as f64),
        unit: None,
        threshold: Some(1.0),
        direction: None,
        ts: Timestamp(1_800_000_000_000 + n as i64),
        since: Timestamp(1_800_000_000_000),
        reason: None,
        operator: Default::default(),
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    writer: Store,
    store: SharedStore,
    events_tx: watch::Sender<i64>,
    signals: Signals,
    control: mpsc::Receiver<Control>,
    metrics: SharedMetrics,
    ctl: SinkCtl,
    _live: watch::Sender<Arc<Live>>,
    _readings: watch::Sender<i64>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tmp");
        let writer = Store::open(dir.path()).expect("store");
        let store = SharedStore::new(Store::open_existing(dir.path()).expect("reader"));
        let (events_tx, events) = watch::channel(0);
        let (readings_tx, readings) = watch::channel(0);
        let (live_tx, live) = watch::channel(Arc::new(Live::default()));
        let (control_tx, control) = mpsc::channel(64);
        Harness {
            _dir: dir,
            writer,
            store,
            events_tx,
            signals: Signals {
                readings,
                events,
                live,
                fresh: Default::default(),
                handoff: Default::default(),
                control: control_tx,
                remote: None,
                remote_in_force: None,
            },
            control,
            metrics: Arc::new(Metrics::default()),
            ctl: SinkCtl::default(),
            _live: live_tx,
            _readings: readings_tx,
        }
    }

    /// Commit `n` more events and signal them.
    fn append(&mut self, n: u64) {
        let start = self.writer.newest().expect("newest").1 as u64;
        let alerts: Vec<Alert> = (start + 1..=start + n).map(alert).collect();
        let seqs = self.writer.append_alerts(&alerts, None).expect("append");
        if let Some(last) = seqs.last() {
            self.events_tx.send_replace(*last);
        }
    }

    /// Commit `n` more events, put them where a caught-up sink takes them from memory (as the ingest thread
    /// does), and signal them.
    fn append_fresh(&mut self, n: u64) {
        let start = self.writer.newest().expect("newest").1 as u64;
        let alerts: Vec<Alert> = (start + 1..=start + n).map(alert).collect();
        let mut added = self.writer.append(&[], &alerts, None).expect("append");
        let last = added.events.last().map(|(s, _)| *s).expect("events");
        let after = added.events_after;
        self.signals
            .fresh
            .put_events(after, added.readable_events());
        self.events_tx.send_replace(last);
    }

    /// Commit `n` more events without the commit signal (the moment between a commit and its signal).
    fn append_unsignalled(&mut self, n: u64) {
        let start = self.writer.newest().expect("newest").1 as u64;
        let alerts: Vec<Alert> = (start + 1..=start + n).map(alert).collect();
        self.writer.append_alerts(&alerts, None).expect("append");
    }

    fn spawn(&self, fake: Fake) -> tokio::task::JoinHandle<()> {
        let cx = SinkContext {
            name: "fake",
            cfg: Arc::new(
                crate::config::parse_str(
                    "[gateway]\nid = \"gw\"\n",
                    std::path::Path::new("t.toml"),
                    &[],
                )
                .expect("config"),
            ),
            store: self.store.clone(),
            signals: self.signals.clone(),
            metrics: self.metrics.clone(),
            ctl: self.ctl.clone(),
        };
        tokio::spawn(run(once(fake), cx))
    }

    fn cursor(&self) -> i64 {
        self.writer.cursor("fake", Stream::Events).expect("cursor")
    }

    async fn wait_cursor(&self, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cursor() < want {
            assert!(
                Instant::now() < deadline,
                "cursor {} never reached {want}",
                self.cursor()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn fake(script: &Arc<Mutex<Script>>, max_items: usize, window: usize) -> Fake {
    Fake {
        script: Arc::clone(script),
        max_items,
        window,
        linger: Duration::ZERO,
        unfit: Vec::new(),
    }
}

fn deliveries(script: &Arc<Mutex<Script>>) -> Vec<Vec<i64>> {
    script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .deliveries
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_go_in_order_through_the_window_and_the_cursor_follows() {
    let mut h = Harness::new();
    h.append(25);
    let script = Arc::new(Mutex::new(Script::default()));
    let task = h.spawn(fake(&script, 10, 2));
    h.wait_cursor(25).await;
    h.ctl.stop.cancel();
    task.await.expect("runner");
    let d = deliveries(&script);
    assert_eq!(d.concat(), (1..=25).collect::<Vec<i64>>(), "{d:?}");
    assert!(d.iter().all(|c| c.len() <= 10), "{d:?}");
    assert_eq!(h.metrics.sink("fake").delivered.load(Ordering::Relaxed), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_abandons_the_window_and_sends_again_from_the_cursor() {
    let mut h = Harness::new();
    h.append(30);
    let script = Arc::new(Mutex::new(Script::default()));
    script.lock().expect("lock").answers = VecDeque::from([
        Ok(()),
        Err(SinkError::Retry {
            after: Some(Duration::from_millis(20)),
            reason: "broker gone".into(),
        }),
    ]);
    let task = h.spawn(fake(&script, 10, 3));
    h.wait_cursor(30).await;
    h.ctl.stop.cancel();
    task.await.expect("runner");
    let d = deliveries(&script);
    // The chunk that failed (11..20) is sent again, then what followed it in the window: the tail after the first
    // re-send of 11 is 11..=30 in order.
    let resend = d
        .iter()
        .skip(2)
        .position(|c| c.first() == Some(&11))
        .map(|i| d[i + 2..].concat());
    assert_eq!(resend, Some((11..=30).collect::<Vec<i64>>()), "{d:?}");
    let mut seen: Vec<i64> = d.concat();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=30).collect::<Vec<i64>>());
    assert_eq!(h.metrics.sink("fake").retries.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_chunk_is_dead_lettered_and_delivery_goes_on() {
    let mut h = Harness::new();
    h.append(20);
    let script = Arc::new(Mutex::new(Script::default()));
    script.lock().expect("lock").answers = VecDeque::from([
        Ok(()),
        Err(SinkError::Rejected {
            reason: "400 bad line".into(),
        }),
    ]);
    let task = h.spawn(fake(&script, 5, 1));
    h.wait_cursor(20).await;
    h.ctl.stop.cancel();
    task.await.expect("runner");
    assert_eq!(h.metrics.sink("fake").dead.load(Ordering::Relaxed), 5);
    let status = h
        .writer
        .status(&[("fake".to_string(), Stream::Events)], Timestamp::now())
        .expect("status");
    let dead = status.sinks[0].dead_letters;
    assert_eq!(dead, 5);
}

/// The class fix for "one item stops the stream": an item the sink can never carry is taken out of its chunk,
/// recorded once, announced once (a DEAD_LETTER control to the ingest thread), and the rest goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_the_sink_can_never_carry_is_skipped_announced_and_the_rest_goes() {
    let mut h = Harness::new();
    h.append(12);
    let script = Arc::new(Mutex::new(Script::default()));
    let mut f = fake(&script, 5, 2);
    f.unfit = vec![3, 6, 7, 8, 9, 10];
    let task = h.spawn(f);
    h.wait_cursor(12).await;
    h.ctl.stop.cancel();
    task.await.expect("runner");
    let d = deliveries(&script);
    assert_eq!(d.concat(), vec![1, 2, 4, 5, 11, 12], "{d:?}");
    let mut announced = Vec::new();
    while let Ok(Control::DeadLetter { reason }) = h.control.try_recv() {
        announced.push(reason);
    }
    assert_eq!(announced.len(), 6, "{announced:?}");
    assert!(
        announced[0].contains("sink fake skipped events item 3: too large"),
        "{announced:?}"
    );
    assert_eq!(h.metrics.sink("fake").dead.load(Ordering::Relaxed), 6);
    // Screened again (a restart before the cursor moved): recorded already, not announced again.
    let again = h
        .store
        .call(|s| s.record_skip("fake", Stream::Events, 3, "too large"))
        .await
        .expect("record");
    assert!(!again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_gathers_what_arrives_in_the_window_into_one_delivery() {
    let mut h = Harness::new();
    let script = Arc::new(Mutex::new(Script::default()));
    let mut f = fake(&script, 100, 1);
    f.linger = Duration::from_millis(400);
    let task = h.spawn(f);
    // Let the runner reach its idle wait, then three events in quick succession.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        h.append(1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    h.wait_cursor(3).await;
    h.ctl.stop.cancel();
    task.await.expect("runner");
    assert_eq!(deliveries(&script), vec![vec![1, 2, 3]]);
}

/// A linger gathers what trickles in; it must not pace a backlog: a drain runs to its end at once, and what comes
/// after it waits out the linger again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_does_not_wait_out_the_linger_chunk_by_chunk() {
    let mut h = Harness::new();
    let script = Arc::new(Mutex::new(Script::default()));
    let mut f = fake(&script, 10, 1);
    let linger = Duration::from_secs(1);
    f.linger = linger;
    let task = h.spawn(f);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 25 items at once: the first look waits out one linger, then the three chunks go back to back (one linger
    // per chunk would take three).
    let t0 = Instant::now();
    h.append(25);
    h.wait_cursor(25).await;
    let drained = t0.elapsed();
    assert!(
        drained < 2 * linger,
        "25 items in chunks of 10 took {drained:?}"
    );
    let t1 = Instant::now();
    h.append(1);
    h.wait_cursor(26).await;
    assert!(
        t1.elapsed() >= linger,
        "a new item after the drain waits out the linger"
    );
    h.ctl.stop.cancel();
    task.await.expect("runner");
    let d = deliveries(&script);
    assert_eq!(d.len(), 4, "{d:?}");
    assert_eq!(d[2], (21..=25).collect::<Vec<i64>>());
}

/// Pacing is a token bucket: an outage earns no credit beyond one second of items, so a backlog built while the
/// far side was away replays at the rate (a lifetime average replayed it unpaced).
#[test]
fn pacing_gives_a_backlog_no_credit_for_the_time_it_waited() {
    let t0 = Instant::now();
    let mut p = Pace::new(100, 10);
    assert_eq!(p.take(100, t0), Duration::ZERO, "one second's burst");
    assert_eq!(p.take(50, t0), Duration::from_millis(500));
    // An hour away, then 300 items at once: the burst (100) goes now, the other 200 take two seconds.
    let later = t0 + Duration::from_secs(3600);
    let wait = p.take(300, later);
    assert_eq!(wait, Duration::from_secs(2), "{wait:?}");
    // Steady state: 10 items every 100 ms need no wait.
    let mut t = later + wait;
    for _ in 0..50 {
        t += Duration::from_millis(100);
        assert_eq!(p.take(10, t), Duration::ZERO);
    }
}

/// Events already in the store when the sink starts (found by the first look, before any commit signal) wait out
/// the linger too, so a storm that began before the sink did is still one digest (a flaky email test found this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_found_at_start_waits_out_the_linger_with_what_follows() {
    let mut h = Harness::new();
    h.append_unsignalled(2);
    let script = Arc::new(Mutex::new(Script::default()));
    let mut f = fake(&script, 100, 1);
    f.linger = Duration::from_millis(400);
    let task = h.spawn(f);
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.append(1);
    h.wait_cursor(3).await;
    h.ctl.stop.cancel();
    task.await.expect("runner");
    assert_eq!(deliveries(&script), vec![vec![1, 2, 3]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_sink_takes_each_commit_from_memory_and_a_sink_behind_reads_the_store() {
    let mut h = Harness::new();
    let script = Arc::new(Mutex::new(Script::default()));
    let task = h.spawn(fake(&script, 10, 1));
    let m = h.metrics.sink("fake");
    let reads = || m.store_reads.load(Ordering::Relaxed);
    for i in 1..=20 {
        h.append_fresh(1);
        h.wait_cursor(i).await;
    }
    // At most the look at the store when the sink started; the 20 commits came from memory.
    assert!(reads() <= 1, "{} store reads for 20 commits", reads());
    let before = reads();
    // Three commits the sink never heard of, then one it did: memory holds only the last, which does not follow
    // the cursor, so the sink reads the store: nothing skipped, nothing twice.
    h.append_unsignalled(3);
    h.append_fresh(2);
    h.wait_cursor(25).await;
    assert!(reads() > before);
    h.ctl.stop.cancel();
    task.await.expect("runner");
    let d = deliveries(&script);
    assert_eq!(d.concat(), (1..=25).collect::<Vec<i64>>(), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_commit_is_timed_the_cursor_goes_with_it_and_the_runner_saves_its_last_itself() {
    let mut h = Harness::new();
    // The ingest thread has timed its next commit: moves are handed to it, not saved by the runner.
    h.signals
        .handoff
        .take(Some(std::time::Instant::now() + Duration::from_secs(60)));
    h.append(25);
    let script = Arc::new(Mutex::new(Script::default()));
    let task = h.spawn(fake(&script, 10, 2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metrics.sink("fake").delivered.load(Ordering::Relaxed) < 25 {
        assert!(Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.cursor(),
        0,
        "the runner saved a cursor the ingest thread was to commit"
    );
    let handed = h.signals.handoff.take_now();
    assert_eq!(handed, vec![("fake", Stream::Events, 25)]);
    // Handed again and never committed (the ingest thread stopped first): the runner's own save at its end.
    assert!(h.signals.handoff.hand("fake", Stream::Events, 25));
    h.ctl.stop.cancel();
    task.await.expect("runner");
    assert_eq!(h.cursor(), 25);
}
