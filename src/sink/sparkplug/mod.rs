//! Sparkplug B 3.0 edge node (`[sparkplug]`): its own MQTT session speaking `spBv1.0/{group}/…/{edge_node}` to a
//! SCADA host (Ignition, HiveMQ, any Sparkplug host), and a sink on the runner like the others.
//!
//! * **Session** (one task, a fresh client per connection): Clean Session; the Will is NDEATH (QoS 1, not retained)
//!   with `bdSeq`, which goes up by one per CONNECT and is kept in the store (a restart continues it); on CONNACK
//!   it subscribes to NCMD and DCMD (QoS 1) and then publishes NBIRTH (with that same `bdSeq`) and one DBIRTH per
//!   device. `seq` runs 0–255 over every message but NDEATH, starting at 0 with NBIRTH.
//! * **Data:** the readings stream, from the sink's cursor: DDATA per device with aliases only, each metric with
//!   its reading's timestamp, a `Quality` property when not good, and `is_historical` for what was stored while the
//!   host could not be reached (store and forward). The runner holds everything in the store while disconnected
//!   (the sink is not `ready`) and resumes from the cursor after the births. NDATA/DDATA are QoS 0 as the
//!   specification says: a chunk counts as delivered once the client wrote it.
//! * **Commands:** NCMD `Node Control/Rebirth` (births again, same `bdSeq`, `seq` from 0) and `Node Control/Next
//!   Server` (reconnect); other metrics and every DCMD are refused and logged (no writes to devices).

mod model;
pub mod payload;
mod session;

use crate::config::resolve_secret;
use crate::model::Timestamp;
use crate::sink::mqtt::telemetry::modes::OnChange;
use crate::sink::{Items, Sink, SinkContext, SinkError};
use crate::store::Stream;
use model::Model;
use payload::Metric;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// The sink's name (its cursor in the store).
pub const SINK: &str = "sparkplug";

/// Readings older than this when sent are marked `is_historical` (a live reading reaches the sink within a flush
/// interval or two).
const HISTORICAL_AFTER_MS: i64 = 5_000;

/// Topic of message type `kind` for the node (`device` none) or one of its devices.
fn topic(group: &str, kind: &str, node: &str, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("spBv1.0/{group}/{kind}/{node}/{d}"),
        None => format!("spBv1.0/{group}/{kind}/{node}"),
    }
}

/// A chunk of DDATA for the session: (device, metrics) in order, answered once written.
struct Job {
    data: Vec<(usize, Vec<Metric>)>,
    done: oneshot::Sender<()>,
}

use session::Session;

/// Report by exception: what the host was last sent per sensor (committed when a delivery is written) and the
/// working copy of the chunks in flight.
struct Exception {
    committed: Arc<std::sync::Mutex<OnChange>>,
    tentative: OnChange,
    /// The newest batch handed over: a chunk that starts at or before it is a re-send.
    last_pos: i64,
}

/// The Sparkplug sink.
pub struct Sparkplug {
    model: Arc<Model>,
    exception: Option<Exception>,
    jobs: mpsc::Sender<Job>,
    connected: watch::Receiver<bool>,
    stop: CancellationToken,
    session: tokio::task::JoinHandle<()>,
}

impl Sparkplug {
    /// The edge node of `cx.cfg.sparkplug`; its session starts now.
    pub fn open(cx: &SinkContext) -> Result<Sparkplug, SinkError> {
        crate::install_crypto_provider();
        let sp = cx.cfg.sparkplug.clone().ok_or_else(|| SinkError::Refused {
            reason: "no [sparkplug] section".into(),
        })?;
        let (tls, host, port) = crate::sink::mqtt::parse_url(&sp.url)?;
        let password = resolve_secret(&sp.password, &sp.password_file, &None, &None)
            .map_err(crate::sink::SetupError::Secret)?;
        let tls = if tls {
            Some(Arc::new(
                crate::tls::client_config(sp.ca_file.as_deref(), None, None, &[])
                    .map_err(crate::sink::SetupError::from)?,
            ))
        } else {
            None
        };
        let model = Arc::new(Model::new(&cx.cfg));
        let sp_dead = sp.clone();
        let (jobs, rx) = mpsc::channel(4);
        let (connected_tx, connected) = watch::channel(false);
        let stop = cx.ctl.stop.child_token();
        let s = Session {
            node: sp.node_id(&cx.cfg.gateway.id).to_string(),
            sp,
            host,
            port,
            password,
            tls,
            cfg: Arc::clone(&cx.cfg),
            model: Arc::clone(&model),
            store: cx.store.clone(),
            connected: connected_tx,
            latest: std::sync::Mutex::default(),
            live: cx.signals.live.clone(),
            metrics: cx.metrics.clone(),
        };
        let session = tokio::spawn(s.run(rx, stop.clone()));
        tracing::info!(
            devices = model.devices.len(),
            metrics = model.metrics.len(),
            "Sparkplug B edge node started."
        );
        let exception =
            (sp_dead.deadband.is_some() || sp_dead.deadband_percent.is_some()).then(|| {
                let oc = OnChange {
                    deadband: sp_dead.deadband.unwrap_or(0.0),
                    percent: sp_dead.deadband_percent.unwrap_or(0.0),
                    max_interval_ms: sp_dead.max_interval.0.as_millis() as i64,
                    ..OnChange::default()
                };
                Exception {
                    committed: Arc::new(std::sync::Mutex::new(oc.clone())),
                    tentative: oc,
                    last_pos: i64::MIN,
                }
            });
        Ok(Sparkplug {
            model,
            exception,
            jobs,
            connected,
            stop,
            session,
        })
    }
}

impl Sink for Sparkplug {
    fn name(&self) -> &'static str {
        SINK
    }
    fn stream(&self) -> Stream {
        Stream::Readings
    }
    fn max_items(&self) -> usize {
        1000
    }
    async fn ready(&mut self) {
        // While the host cannot be reached everything waits in the store; births go first when it can.
        let _ = self.connected.wait_for(|c| *c).await;
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        let old = Timestamp::now().0 - HISTORICAL_AFTER_MS;
        let mut data: Vec<(usize, Vec<Metric>)> = Vec::new();
        let mut commit = None;
        if let (Some(ex), Some(first), Some(last)) = (
            self.exception.as_mut(),
            items.positions().first().copied(),
            items.positions().last().copied(),
        ) {
            if first <= ex.last_pos {
                // A re-send from the cursor: start again from what was committed.
                ex.tentative = ex
                    .committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
            }
            ex.last_pos = last;
        }
        if let Items::Readings(batches) = items {
            for b in batches {
                for r in &b.readings {
                    if let Some(ex) = self.exception.as_mut() {
                        if !ex.tentative.pass(r) {
                            continue;
                        }
                    }
                    let Some((d, m)) = self.model.data_metric(r, r.ts.0 < old) else {
                        continue;
                    };
                    match data.last_mut() {
                        Some((ld, ms)) if *ld == d => ms.push(m),
                        _ => data.push((d, vec![m])),
                    }
                }
            }
        }
        if let Some(ex) = &self.exception {
            commit = Some((Arc::clone(&ex.committed), ex.tentative.clone()));
        }
        let jobs = self.jobs.clone();
        async move {
            let done = |commit: Option<(Arc<std::sync::Mutex<OnChange>>, OnChange)>| {
                if let Some((c, snapshot)) = commit {
                    *c.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
                }
            };
            if data.is_empty() {
                done(commit);
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            let lost = || SinkError::Retry {
                after: None,
                reason: "the Sparkplug session was lost".into(),
            };
            jobs.send(Job { data, done: tx })
                .await
                .map_err(|_| lost())?;
            rx.await.map_err(|_| lost())?;
            done(commit);
            Ok(())
        }
    }
    async fn close(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.session).await;
    }
}
