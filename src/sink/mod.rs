//! Sinks: deliver what the store holds to the outside world, each at its own pace.
//!
//! Every sink is a [`Sink`] driven by the one [`runner`]: the runner owns the sink's cursor in the store, fetches
//! the next chunk after it, hands it to [`Sink::deliver`], and advances the cursor only when the far side
//! acknowledged. A sink only turns a chunk into a delivery and says how it went ([`SinkError`]): retry later,
//! dead-letter the chunk, or a configuration/auth problem. A dead time-series server never delays an MQTT alert:
//! each sink has its own task, cursor and backoff.
//!
//! Adding a sink: one module with a type implementing [`Sink`], a `consumers` entry and a `spawn_all` arm.

#[cfg(feature = "email")]
pub mod email;
#[cfg(any(feature = "influxdb", feature = "mqtt"))]
pub mod gzip;
#[cfg(feature = "influxdb")]
pub mod influxdb;
pub mod lineproto;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod runner;

use crate::config::Config;
use crate::metrics::SharedMetrics;
use crate::model::{Alert, Signals};
use crate::store::{Batch, Consumer, SharedStore, Stream};
use std::collections::HashMap;
use std::future::Future;
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
    /// Reading batches (stream `readings`).
    Readings(Vec<Batch>),
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

/// The sinks configured in `cfg` and the stream each consumes.
pub fn consumers(cfg: &Config) -> Vec<Consumer> {
    let mut v = Vec::new();
    if cfg.influxdb.is_some() {
        v.push(("influxdb".to_string(), Stream::Readings));
    }
    if cfg.mqtt.is_some() {
        v.push(("mqtt".to_string(), Stream::Events));
    }
    if cfg.mqtt.as_ref().is_some_and(|m| m.telemetry.is_some()) {
        v.push(("telemetry".to_string(), Stream::Readings));
    }
    for name in email_routes(cfg) {
        v.push((name.to_string(), Stream::Events));
    }
    v
}

/// The email routes' sink names (`email`, `email.{route}`).
fn email_routes(cfg: &Config) -> Vec<&'static str> {
    #[cfg(feature = "email")]
    if let Some(e) = &cfg.email {
        return email::route_names(e);
    }
    let _ = cfg;
    Vec::new()
}

/// A digest of what a sink reads at start besides its settings: inline secrets (never serialized), and the
/// contents of the secret, credential and certificate files it names (a rotated file keeps its path). A reload
/// after a rotation restarts the sink; the digest, not the secret, is kept.
fn secrets_digest(
    inline: &[&Option<String>],
    files: &[&Option<std::path::PathBuf>],
    credentials: &[&Option<String>],
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for s in inline {
        s.hash(&mut h);
    }
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let cred_files = credentials
        .iter()
        .map(|c| c.as_ref().zip(creds.as_ref()).map(|(c, dir)| dir.join(c)));
    for f in files.iter().map(|f| (*f).clone()).chain(cred_files) {
        f.and_then(|p| std::fs::read(p).ok()).hash(&mut h);
    }
    h.finish()
}

/// What a sink's configuration is, for deciding whether a reload restarts it.
fn fingerprints(cfg: &Config) -> HashMap<&'static str, String> {
    let mut m = HashMap::new();
    let tags: Vec<_> = cfg.sensor.iter().map(|s| (&s.id, &s.tags)).collect();
    if let Some(i) = &cfg.influxdb {
        let secrets = secrets_digest(
            &[&i.token],
            &[&i.token_file, &i.ca_file],
            &[&i.token_credential],
        );
        let fp =
            serde_json::to_string(&(i, &cfg.gateway.id, &cfg.gateway.location, &tags, secrets));
        m.insert("influxdb", fp.unwrap_or_default());
    }
    if let Some(q) = &cfg.mqtt {
        let secrets = secrets_digest(
            &[&q.password],
            &[&q.password_file, &q.ca_file, &q.cert_file, &q.key_file],
            &[&q.password_credential],
        );
        let fp = serde_json::to_string(&(q, &cfg.gateway.id, &cfg.gateway.location, secrets));
        m.insert("mqtt", fp.unwrap_or_default());
        if q.telemetry.is_some() {
            let fp = serde_json::to_string(&(q, &cfg.gateway.id, secrets));
            m.insert("telemetry", fp.unwrap_or_default());
        }
    }
    if let Some(e) = &cfg.email {
        let secrets = secrets_digest(
            &[&e.password],
            &[&e.password_file, &e.ca_file],
            &[&e.password_credential],
        );
        let fp = serde_json::to_string(&(e, &cfg.gateway.id, &cfg.gateway.location, secrets))
            .unwrap_or_default();
        for name in email_routes(cfg) {
            m.insert(name, fp.clone());
        }
    }
    m
}

/// The sink tasks running now, by name.
pub struct RunningSinks {
    running: HashMap<&'static str, (String, SinkCtl, tokio::task::JoinHandle<()>)>,
    store: SharedStore,
}

/// Start every configured sink. They share `store`, one reader connection (sinks read one chunk at a time).
pub fn spawn_all(
    cfg: &Config,
    store: &SharedStore,
    signals: &Signals,
    metrics: &SharedMetrics,
    ctl: &SinkCtl,
    tracker: &TaskTracker,
) -> RunningSinks {
    let mut running = HashMap::new();
    for (name, fp) in fingerprints(cfg) {
        let c = ctl.child();
        if let Some(h) = spawn_one(name, cfg, store, signals, metrics, &c, tracker) {
            running.insert(name, (fp, c, h));
        }
    }
    RunningSinks {
        running,
        store: store.clone(),
    }
}

fn spawn_one(
    name: &'static str,
    cfg: &Config,
    store: &SharedStore,
    signals: &Signals,
    metrics: &SharedMetrics,
    ctl: &SinkCtl,
    tracker: &TaskTracker,
) -> Option<tokio::task::JoinHandle<()>> {
    let _ = (cfg, store, signals, metrics, ctl, tracker);
    // Every sink runs on the same runner; only how it is built differs.
    #[allow(unused_macros)]
    macro_rules! run {
        ($build:expr) => {
            Some(tracker.spawn(runner::run(
                $build,
                store.clone(),
                signals.clone(),
                metrics.clone(),
                ctl.clone(),
            )))
        };
    }
    match name {
        #[cfg(feature = "influxdb")]
        "influxdb" => {
            let i = cfg.influxdb.clone()?;
            run!(influxdb::InfluxSink::build(i, cfg.clone()))
        }
        #[cfg(feature = "mqtt")]
        "mqtt" => {
            let m = cfg.mqtt.clone()?;
            let build = mqtt::AlertFeed::build(
                m,
                cfg.clone(),
                signals.clone(),
                metrics.clone(),
                ctl.stop.clone(),
            );
            run!(build)
        }
        #[cfg(feature = "mqtt")]
        "telemetry" => {
            let m = cfg.mqtt.clone()?;
            let build = mqtt::telemetry::Telemetry::build(
                m,
                cfg.clone(),
                signals.clone(),
                metrics.clone(),
                store.clone(),
                ctl.stop.clone(),
            );
            run!(build)
        }
        #[cfg(feature = "email")]
        name if name == "email" || name.starts_with("email.") => {
            let e = cfg.email.clone()?;
            run!(email::EmailSink::build(
                name,
                e,
                cfg.clone(),
                metrics,
                Some(store.clone())
            ))
        }
        other => {
            tracing::error!(
                sink = other,
                "This sink is not compiled into this build; its data stays in the local store."
            );
            metrics
                .sink(other)
                .set_state(crate::metrics::SinkState::Failed);
            None
        }
    }
}

impl RunningSinks {
    /// Apply a reload: restart exactly the sinks whose configuration changed, start new ones, stop removed ones.
    /// Returns how many were (re)started. A stopped sink's cursor stays in the store, so nothing pending is lost.
    pub async fn reload(
        &mut self,
        new: &Config,
        signals: &Signals,
        metrics: &SharedMetrics,
        ctl: &SinkCtl,
        tracker: &TaskTracker,
    ) -> usize {
        let want = fingerprints(new);
        let mut started = 0;
        let names: Vec<&'static str> = self.running.keys().copied().collect();
        for name in names {
            if want.get(name) == self.running.get(name).map(|(fp, _, _)| fp) {
                continue;
            }
            if let Some((_, c, h)) = self.running.remove(name) {
                if want.contains_key(name) {
                    tracing::info!(sink = name, "Sink configuration changed; restarting it.");
                } else {
                    tracing::info!(sink = name, "Sink removed from the configuration; stopping it (its cursor stays in the store).");
                }
                c.stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
                if !want.contains_key(name) {
                    metrics.remove_sink(name);
                }
            }
        }
        for (name, fp) in want {
            if self.running.contains_key(name) {
                continue;
            }
            let c = ctl.child();
            if let Some(h) = spawn_one(name, new, &self.store, signals, metrics, &c, tracker) {
                self.running.insert(name, (fp, c, h));
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
