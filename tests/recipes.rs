//! The recipes of docs/architecture.md, done: a new source and a new sink written outside the crate against its
//! public seams only, each run on the real runner (the source runner on tokio's clock; the sink runner over a real
//! store). If adding a source or a sink needed more than the trait, these would not compile.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use watchpost::channels::Signals;
use watchpost::model::SensorId;
use watchpost::model::{Reading, Timestamp};
use watchpost::sink::{Items, Sink, SinkContext, SinkCtl, SinkError};
use watchpost::source::runner::{Policy, Poll, Sample, Source};
use watchpost::source::SourceError;
use watchpost::store::{SharedStore, Store, Stream};

/// The example source: a counter device that reports a fault on every third read.
struct Counter {
    n: u32,
    id: watchpost::model::SensorId,
}

impl Source for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn policy(&self) -> Policy {
        Policy {
            kind: "Counter",
            timeout: Duration::from_secs(1),
            retries: 0,
            reconnect: (Duration::from_secs(1), Duration::from_secs(10)),
            timeout_reconnects: false,
            fresh_after_reconnect: false,
            timeout_hint: "",
        }
    }
    fn polls(&self) -> Vec<Poll> {
        vec![Poll {
            interval: Duration::from_millis(500),
            unit: None,
            what: "the counter".into(),
            sensors: vec![self.id],
        }]
    }
    async fn connect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
    async fn read(&mut self, _poll: usize) -> Result<Vec<Sample>, SourceError> {
        self.n += 1;
        let value = if self.n.is_multiple_of(3) {
            Err("the counter is stuck".to_string())
        } else {
            Ok(f64::from(self.n))
        };
        Ok(vec![Sample {
            sensor: self.id,
            value,
            at: None,
            exact: None,
        }])
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_source_is_one_trait_impl_on_the_runner() {
    let (tx, mut rx) = mpsc::channel(64);
    let token = CancellationToken::new();
    let src = Counter {
        n: 0,
        id: SensorId::from("count"),
    };
    let task = tokio::spawn(watchpost::source::runner::run(
        src,
        watchpost::channels::Intake::new(tx),
        token.clone(),
        Arc::default(),
    ));
    let mut got: Vec<f64> = Vec::new();
    while got.len() < 4 {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a reading within 10 s")
            .expect("runner alive");
        got.extend(batch.iter().map(|r| r.value));
    }
    // On its interval, in order; the third read's fault is stored as NaN (SENSOR_FAULT downstream).
    assert_eq!(got[..2], [1.0, 2.0]);
    assert!(got[2].is_nan());
    assert_eq!(got[3], 4.0);
    token.cancel();
    task.await.expect("runner returns");
}

/// Each delivered batch's values.
type Seen = Arc<Mutex<Vec<Vec<f64>>>>;

/// The example sink: collects what it is given, and refuses nothing.
struct Collect {
    seen: Seen,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

impl Collect {
    /// Its constructor: what it needs comes from the context (here, only a shared list for the test to read).
    fn open(cx: &SinkContext) -> Result<Collect, SinkError> {
        assert_eq!(cx.name, "collect");
        let seen = SEEN.lock().unwrap().clone().ok_or(SinkError::Refused {
            reason: "no list".into(),
        })?;
        Ok(Collect { seen })
    }
}

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn stream(&self) -> Stream {
        Stream::Readings
    }
    fn max_items(&self) -> usize {
        100
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        if let Items::Readings(batches) = items {
            let mut s = self.seen.lock().unwrap();
            for b in batches {
                s.push(b.readings.iter().map(|r| r.value).collect());
            }
        }
        async { Ok(()) }
    }
}

#[tokio::test]
async fn a_new_sink_is_one_trait_impl_with_a_constructor_on_the_runner() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut writer = Store::open(dir.path()).expect("store");
    let reader = SharedStore::new(Store::open_existing(dir.path()).expect("reader"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    *SEEN.lock().unwrap() = Some(Arc::clone(&seen));
    let (readings_tx, readings) = watch::channel(0);
    let (_events_tx, events) = watch::channel(0);
    let (_live_tx, live) = watch::channel(Arc::default());
    let cfg = watchpost::config::parse_str(
        "[gateway]\nid = \"gw\"\n",
        std::path::Path::new("t.toml"),
        &[],
    )
    .expect("config");
    let ctl = SinkCtl::default();
    let cx = SinkContext {
        name: "collect",
        cfg: Arc::new(cfg),
        store: reader,
        signals: Signals {
            readings,
            events,
            live,
            fresh: Default::default(),
            handoff: Default::default(),
            control: mpsc::channel(8).0,
            remote: None,
            remote_in_force: None,
        },
        metrics: Arc::default(),
        ctl: ctl.clone(),
    };
    let task = tokio::spawn(watchpost::sink::runner::run(Collect::open, cx));
    let id = watchpost::model::SensorId::from("t");
    for i in 0..3 {
        let batch: Vec<Reading> = (0..2)
            .map(|k| Reading::new(id, Timestamp(1_000 * i + k), (i * 10 + k) as f64))
            .collect();
        let b = writer.append_readings(&batch, None).expect("append");
        readings_tx.send_replace(b.expect("a batch id"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![0.0, 1.0], vec![10.0, 11.0], vec![20.0, 21.0]]
    );
    // The runner moved the sink's cursor past what was acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while writer.cursor("collect", Stream::Readings).expect("cursor") < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cursor never advanced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ctl.stop.cancel();
    task.await.expect("runner returns");
}
