//! Sinks: deliver what the store holds to the outside world, each at its own pace.
//!
//! Every sink is a [`Sink`] driven by the one [`runner`]: the runner owns the sink's cursor in the store, fetches
//! the next chunk after it, hands it to [`Sink::deliver`], and advances the cursor only when the far side
//! acknowledged. A sink only turns a chunk into a delivery and says how it went ([`SinkError`]): retry later,
//! dead-letter the chunk, or a configuration/auth problem. A dead time-series server never delays an MQTT alert:
//! each sink has its own task, cursor and backoff.
//!
//! Adding a sink (docs/architecture.md): one module with a type implementing [`Sink`] and a constructor from a
//! [`SinkContext`], its config struct, and one entry in the registry's table ([`KINDS`]), which gives its names,
//! stream, reload fingerprint and start together.

mod context;
#[cfg(feature = "email")]
pub mod email;
#[cfg(any(feature = "influxdb", feature = "mqtt"))]
pub mod gzip;
#[cfg(feature = "influxdb")]
pub mod influxdb;
pub mod lineproto;
#[cfg(feature = "mqtt")]
pub mod mqtt;
mod registry;
pub mod runner;
#[cfg(feature = "sparkplug")]
pub mod sparkplug;

pub use context::{Open, SinkContext};
pub use registry::{consumers, SinkKind, KINDS};

use crate::channels::Signals;
use crate::config::Config;
use crate::metrics::SharedMetrics;
use crate::model::Alert;
use crate::store::{Batch, SharedStore, Stream};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a delivery failed. The runner decides what happens next; the sink only classifies.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Transient (network, 5xx, 429, broker gone): keep the data, retry with backoff or after `after`.
    #[error("{reason}")]
    Retry {
        /// The far side asked for this wait (e.g. `Retry-After`).
        after: Option<Duration>,
        /// What happened.
        reason: String,
    },
    /// The far side says the data itself is bad (e.g. HTTP 400): dead-letter the chunk and move on.
    #[error("{reason}")]
    Rejected {
        /// The far side's message.
        reason: String,
    },
    /// Configuration or credentials are wrong (401/403/404, TLS setup): keep the data, ERROR, retry slowly.
    #[error("{reason}")]
    Refused {
        /// What is wrong and what to check.
        reason: String,
    },
}

/// Why a sink's client cannot be set up from its configuration (a `Refused` start: kept, ERROR, slow retry).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Certificates, keys, trust store.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A password or token that cannot be read (file, environment, credential).
    #[error("{0}")]
    Secret(String),
    /// A URL the client cannot use.
    #[error("{0}")]
    Url(String),
    /// The HTTP client library refused its settings.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl From<SetupError> for SinkError {
    fn from(e: SetupError) -> Self {
        SinkError::Refused {
            reason: e.to_string(),
        }
    }
}

/// An item a sink can never carry (larger than the far side takes): the runner dead-letters it and goes on, so
/// one item never stops a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfit {
    /// Its store position (event seq or batch id).
    pub position: i64,
    /// Why, for the log, the dead-letter record and the DEAD_LETTER event.
    pub reason: String,
}

/// The items of one delivery, read from the store after the sink's cursor.
#[derive(Debug)]
pub enum Items {
    /// Reading batches (stream `readings`), shared: a batch fresh from a commit is the one the ingest thread
    /// keeps for the next caught-up sink ([`crate::store::Fresh`]), not a copy of its readings.
    Readings(Vec<std::sync::Arc<Batch>>),
    /// Alert events with their sequence numbers (stream `events`).
    Events(Vec<(i64, Alert)>),
}

impl Items {
    /// Readings or events held.
    pub fn count(&self) -> u64 {
        match self {
            Items::Readings(b) => b.iter().map(|b| b.readings.len() as u64).sum(),
            Items::Events(e) => e.len() as u64,
        }
    }
    /// Store positions (batch ids or event seqs), oldest first.
    pub fn positions(&self) -> Vec<i64> {
        match self {
            Items::Readings(b) => b.iter().map(|b| b.id).collect(),
            Items::Events(e) => e.iter().map(|(s, _)| *s).collect(),
        }
    }
    fn is_empty(&self) -> bool {
        match self {
            Items::Readings(b) => b.is_empty(),
            Items::Events(e) => e.is_empty(),
        }
    }
    /// Keep the items up to position `end` (inclusive).
    pub fn keep_through(&mut self, end: i64) {
        match self {
            Items::Readings(b) => b.retain(|b| b.id <= end),
            Items::Events(e) => e.retain(|(s, _)| *s <= end),
        }
    }
    /// Remove the items at these positions.
    pub fn remove(&mut self, unfit: &[Unfit]) {
        let gone = |p: i64| unfit.iter().any(|u| u.position == p);
        match self {
            Items::Readings(b) => b.retain(|b| !gone(b.id)),
            Items::Events(e) => e.retain(|(s, _)| !gone(*s)),
        }
    }
}

/// A sink: turns chunks of stored items into deliveries. See the module docs.
pub trait Sink: Send + 'static {
    /// Name (cursor key in the store, metrics label, log field).
    fn name(&self) -> &'static str;
    /// The stream this sink consumes.
    fn stream(&self) -> Stream;
    /// Most items (readings or events) to hand over in one delivery.
    fn max_items(&self) -> usize;
    /// Items per second this sink may deliver at most (pacing), if limited.
    fn max_rate(&self) -> Option<u64> {
        None
    }
    /// Resolves when a delivery could succeed (e.g. the MQTT session is connected).
    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// How long to gather items after the first new one before fetching a chunk (a digest window): what arrives
    /// meanwhile goes into the same delivery. Skipped while draining. Default zero.
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
    /// The items of a fetched chunk this sink can never deliver (over its size limit), with why. The runner
    /// removes them from the chunk, records them as dead letters (a WARN, `watchpost_sink_dead_letters_total`, a
    /// DEAD_LETTER event) and delivers the rest: whatever one item is, the stream goes on. Default none.
    fn screen(&self, items: &Items) -> Vec<Unfit> {
        let _ = items;
        Vec::new()
    }
    /// Where the next chunk must end (inclusive), when the sink decided a delivery before a restart that it must
    /// repeat exactly (the email outbox); asked once the sink is [`Sink::ready`]. Default none.
    fn chunk_end(&self) -> Option<i64> {
        None
    }
    /// Chunks that may be in flight at once (delivered in order; a failure re-sends from the oldest). Default 1.
    fn window(&self) -> usize {
        1
    }
    /// Start delivering one chunk. The returned future owns what it needs (the runner may hold several); it
    /// resolves `Ok` when the far side acknowledged all of the chunk.
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl Future<Output = Result<(), SinkError>> + Send + 'static;
    /// Called once when the runner stops (drained or stopped): say goodbye to the far side.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// Control tokens of the sink tasks.
#[derive(Clone, Default)]
pub struct SinkCtl {
    /// Deliver what is pending, then stop.
    pub drain: CancellationToken,
    /// Stop now.
    pub stop: CancellationToken,
}

impl SinkCtl {
    fn child(&self) -> SinkCtl {
        SinkCtl {
            drain: self.drain.child_token(),
            stop: self.stop.child_token(),
        }
    }
}

/// The sink tasks running now, by name.
pub struct RunningSinks {
    running: HashMap<&'static str, (String, SinkCtl, tokio::task::JoinHandle<()>)>,
    store: SharedStore,
}

/// Start every configured sink. They share `store`, one reader connection (sinks read one chunk at a time).
pub fn spawn_all(
    cfg: &Arc<Config>,
    store: &SharedStore,
    signals: &Signals,
    metrics: &SharedMetrics,
    ctl: &SinkCtl,
    tracker: &TaskTracker,
) -> RunningSinks {
    let mut r = RunningSinks {
        running: HashMap::new(),
        store: store.clone(),
    };
    for (name, fp, kind) in registry::configured(cfg) {
        r.start(name, fp, kind, cfg, signals, metrics, ctl, tracker);
    }
    r
}

impl RunningSinks {
    /// Start sink `name` of `kind` on the runner; false when it is not compiled in.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        name: &'static str,
        fp: String,
        kind: &registry::SinkKind,
        cfg: &Arc<Config>,
        signals: &Signals,
        metrics: &SharedMetrics,
        ctl: &SinkCtl,
        tracker: &TaskTracker,
    ) -> bool {
        let c = ctl.child();
        let cx = SinkContext {
            name,
            // One configuration for every sink (a 2,000-sensor one is ~1 MB).
            cfg: Arc::clone(cfg),
            store: self.store.clone(),
            signals: signals.clone(),
            metrics: metrics.clone(),
            ctl: c.clone(),
        };
        match (kind.spawn)(&cx, tracker) {
            Some(h) => {
                self.running.insert(name, (fp, c, h));
                true
            }
            None => false,
        }
    }

    /// Apply a reload: restart exactly the sinks whose configuration changed, start new ones, stop removed ones.
    /// Returns how many were (re)started. A stopped sink's cursor stays in the store, so nothing pending is lost.
    pub async fn reload(
        &mut self,
        new: &Arc<Config>,
        signals: &Signals,
        metrics: &SharedMetrics,
        ctl: &SinkCtl,
        tracker: &TaskTracker,
    ) -> usize {
        let want = registry::configured(new);
        let fp_of = |name: &str| {
            want.iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, fp, _)| fp)
        };
        let mut started = 0;
        let names: Vec<&'static str> = self.running.keys().copied().collect();
        for name in names {
            let now = fp_of(name);
            if now == self.running.get(name).map(|(fp, _, _)| fp) {
                continue;
            }
            if let Some((_, c, h)) = self.running.remove(name) {
                if now.is_some() {
                    tracing::info!(sink = name, "Sink configuration changed; restarting it.");
                } else {
                    tracing::info!(sink = name, "Sink removed from the configuration; stopping it (its cursor stays in the store).");
                }
                c.stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
                if now.is_none() {
                    metrics.remove_sink(name);
                }
            }
        }
        for (name, fp, kind) in want {
            if self.running.contains_key(name) {
                continue;
            }
            if self.start(name, fp, kind, new, signals, metrics, ctl, tracker) {
                started += 1;
            }
        }
        started
    }
}

/// Let sinks deliver for up to `deadline`, then stop them.
pub async fn drain(ctl: &SinkCtl, tracker: &TaskTracker, deadline: Duration) {
    ctl.drain.cancel();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "Sinks did not finish within the drain deadline; the rest stays in the store."
        );
    }
    ctl.stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
}
