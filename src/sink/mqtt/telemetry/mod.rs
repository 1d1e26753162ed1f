//! Telemetry: readings to the cloud over MQTT, as one more [`Sink`] on the readings stream with its own cursor
//! (`telemetry`) and its own connection (client id `…-telemetry`; the alert connection keeps the status and will).
//!
//! Modes ([`modes`]): `raw` (every reading, one message per poll), `on_change` (report by exception with a
//! heartbeat) and `aggregate` (epoch-aligned windows). Delivery is at least once like every sink: the cursor moves
//! on PUBACK. Mode state follows the cursor: what `on_change` last sent is committed only when the broker
//! acknowledged it, and an `aggregate` chunk counts as delivered only once every window holding its readings was
//! published, acknowledged and recorded in the store (`closed_through`), so after a crash or an outage the replay
//! rebuilds exactly the windows not yet sent — never a partial duplicate of one that was. Messages whose newest
//! reading is older than `historical_after` carry `"historical": true`.

pub mod modes;

use super::session::{Cmd, Msg, Session};
use super::{options, Topics};
use crate::config::{TelemetryConfig, TelemetryMode, TopicLayout};
use crate::metrics::SinkMetrics;
use crate::model::{Reading, Timestamp};
use crate::sink::SinkContext;
use crate::sink::{Items, Sink, SinkError};
use crate::store::{SharedStore, Stream};
use modes::{Message, OnChange, Windows};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const SINK: &str = "telemetry";
/// Readings per delivery.
const MAX_ITEMS: usize = 5000;

/// Per-mode state.
enum State {
    Raw,
    OnChange {
        /// What the broker acknowledged.
        committed: Arc<Mutex<OnChange>>,
        /// Including chunks in flight.
        tentative: OnChange,
    },
    Aggregate {
        windows: Windows,
        /// (windows published, acknowledged and recorded through this index; failure epoch).
        acked: Arc<watch::Sender<(i64, u64)>>,
        /// Highest window index of any reading handed over (the next chunk's wait).
        need: i64,
        loaded: bool,
    },
}

/// The telemetry sink (see the module docs).
pub struct Telemetry {
    cmds: mpsc::Sender<Cmd>,
    connected: watch::Receiver<bool>,
    topic: String,
    t: TelemetryConfig,
    device: String,
    state: State,
    last_pos: i64,
    store: SharedStore,
    metrics: Arc<SinkMetrics>,
    stop: CancellationToken,
    session: tokio::task::JoinHandle<()>,
    /// `mqtt.max_message_size`.
    limit: usize,
}

fn fresh_state(t: &TelemetryConfig) -> State {
    match t.mode {
        TelemetryMode::Raw => State::Raw,
        TelemetryMode::OnChange => {
            let oc = OnChange {
                deadband: t.deadband.unwrap_or(0.0),
                percent: t.deadband_percent.unwrap_or(0.0),
                max_interval_ms: t.max_interval.0.as_millis() as i64,
                ..OnChange::default()
            };
            State::OnChange {
                committed: Arc::new(Mutex::new(oc.clone())),
                tentative: oc,
            }
        }
        TelemetryMode::Aggregate => State::Aggregate {
            windows: Windows::new(t.window.0.as_millis() as i64, GRACE_MS, i64::MIN),
            acked: Arc::new(watch::channel((i64::MIN, 0)).0),
            need: i64::MIN,
            loaded: false,
        },
    }
}

/// How long after a window's end its readings are still waited for (slow polls commit late).
const GRACE_MS: i64 = 2000;

impl Telemetry {
    /// The telemetry sink of `cx.cfg.mqtt.telemetry`, with its own MQTT session.
    pub fn open(cx: &SinkContext) -> Result<Telemetry, SinkError> {
        crate::install_crypto_provider();
        let m = cx.cfg.mqtt.as_ref().ok_or_else(|| SinkError::Refused {
            reason: "no [mqtt] section".into(),
        })?;
        let t = m.telemetry.clone().ok_or_else(|| SinkError::Refused {
            reason: "no [mqtt.telemetry] section".into(),
        })?;
        let opts = options(m, &cx.cfg, true)?;
        let (cmds, rx) = mpsc::channel(4);
        let (connected_tx, connected) = watch::channel(false);
        let stop = cx.ctl.stop.child_token();
        let topics = Topics::new(&m.topic_prefix, &cx.cfg.gateway.id);
        let session = Session {
            opts,
            cfg: Arc::clone(&cx.cfg),
            topics: topics.clone(),
            shadow: None,
            commands: None,
            remote: None,
            remote_in_force: None,
            live: cx.signals.live.clone(),
            metrics: cx.metrics.clone(),
            sink: cx.metrics.sink(SINK),
            connected: connected_tx,
            queue: 4096,
            status: false,
        };
        let session = tokio::spawn(session.run(rx, stop.clone()));
        tracing::info!(url = %m.url, mode = ?t.mode, "MQTT telemetry started.");
        Ok(Telemetry {
            cmds,
            connected,
            topic: format!("{}/telemetry", topics.base),
            state: fresh_state(&t),
            t,
            device: cx.cfg.gateway.id.clone(),
            last_pos: i64::MIN,
            store: cx.store.clone(),
            metrics: cx.metrics.sink(SINK),
            stop,
            session,
            limit: m.max_message_size.0 as usize,
        })
    }
}

impl Telemetry {
    /// Topic and payload of each message, with the historical mark.
    fn encode(&self, msgs: Vec<Message>) -> Result<Vec<Msg>, String> {
        let old = Timestamp::now().0 - self.t.historical_after.0.as_millis() as i64;
        let mut out = Vec::with_capacity(msgs.len());
        let mut gzip: Option<crate::sink::gzip::Gzip> = None;
        for mut m in msgs {
            if m.newest < old {
                m.mark_historical();
            }
            let topic = match (&m.sensor, self.t.topic) {
                (Some(s), TopicLayout::Sensor) => format!("{}/{s}", self.topic),
                _ => self.topic.clone(),
            };
            let json = m.body;
            let payload = if self.t.gzip {
                gzip.get_or_insert_with(Default::default)
                    .encode(&json)
                    .map_err(|e| e.to_string())?
            } else {
                json
            };
            out.push(Msg {
                topic,
                payload,
                retain: false,
            });
        }
        Ok(out)
    }
}

impl Sink for Telemetry {
    fn name(&self) -> &'static str {
        SINK
    }
    fn stream(&self) -> Stream {
        Stream::Readings
    }
    fn max_items(&self) -> usize {
        MAX_ITEMS
    }
    fn window(&self) -> usize {
        match self.t.mode {
            // A chunk waits for its windows to close: let the runner keep reading meanwhile.
            TelemetryMode::Aggregate => 4096,
            _ => 4,
        }
    }
    async fn ready(&mut self) {
        if let State::Aggregate {
            windows,
            acked,
            loaded,
            need,
        } = &mut self.state
        {
            if !*loaded {
                // Where the previous run got to: windows up to here were published; their readings are late now.
                let got = self
                    .store
                    .call(|s| s.sink_meta(SINK, "closed_through"))
                    .await;
                let through = match got {
                    Ok(v) => v.and_then(|v| v.parse().ok()).unwrap_or(i64::MIN),
                    Err(e) => {
                        tracing::warn!(sink = SINK, error = %e, "Cannot read how far telemetry windows were published.");
                        i64::MIN
                    }
                };
                *windows = Windows::new(windows.width, GRACE_MS, through);
                *need = through;
                // (Read the epoch first: a borrow held across `send` would deadlock the watch.)
                let epoch = acked.borrow().1;
                acked.send_replace((through, epoch));
                *loaded = true;
            }
        }
        let _ = self.connected.wait_for(|c| *c).await;
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        let positions = items.positions();
        let rewound = positions.first().is_some_and(|p| *p <= self.last_pos);
        self.last_pos = positions.last().copied().unwrap_or(self.last_pos);
        let readings: Vec<&Reading> = match items {
            Items::Readings(b) => b
                .iter()
                .flat_map(|b| b.readings.iter())
                .filter(|r| {
                    self.t.sensors.is_empty() || crate::util::id_matches(&self.t.sensors, &r.sensor)
                })
                .collect(),
            Items::Events(_) => Vec::new(),
        };
        let mut commit_on_change = None;
        let mut aggregate = None;
        let msgs = match &mut self.state {
            State::Raw => modes::per_poll(&self.device, self.t.topic, &readings),
            State::OnChange {
                committed,
                tentative,
            } => {
                if rewound {
                    *tentative = committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
                }
                let pass: Vec<&Reading> = readings
                    .iter()
                    .copied()
                    .filter(|r| tentative.pass(r))
                    .collect();
                commit_on_change = Some((Arc::clone(committed), tentative.clone()));
                modes::per_poll(&self.device, self.t.topic, &pass)
            }
            State::Aggregate {
                windows,
                acked,
                need,
                ..
            } => {
                let epoch = acked.borrow().1;
                if rewound {
                    let through = acked.borrow().0;
                    *windows = Windows::new(windows.width, GRACE_MS, through);
                    *need = through;
                }
                for r in &readings {
                    windows.add(r);
                    *need = (*need).max(windows.index(r.ts.0));
                }
                let closed = windows.close_ready();
                let through = windows.closed_through;
                let msgs = windows.messages(&self.device, self.t.topic, closed);
                aggregate = Some((Arc::clone(acked), *need, epoch, through));
                msgs
            }
        };
        let n_out = msgs.len() as u64;
        let encoded = self.encode(msgs);
        let qos = if self.t.qos == 0 {
            rumqttc::QoS::AtMostOnce
        } else {
            rumqttc::QoS::AtLeastOnce
        };
        let cmds = self.cmds.clone();
        let limit = self.limit;
        let store = self.store.clone();
        let metrics = Arc::clone(&self.metrics);
        async move {
            let msgs = encoded.map_err(|reason| SinkError::Rejected { reason })?;
            let sent = if msgs.is_empty() {
                Ok(())
            } else {
                super::session::deliver(&cmds, msgs, qos, limit).await
            };
            if sent.is_ok() {
                metrics.messages.fetch_add(n_out, Ordering::Relaxed);
            }
            if let Some((committed, snapshot)) = commit_on_change {
                sent?;
                *committed.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
                return Ok(());
            }
            let Some((acked, need, epoch, through)) = aggregate else {
                return sent;
            };
            if let Err(e) = sent {
                acked.send_modify(|a| a.1 = a.1.wrapping_add(1));
                return Err(e);
            }
            if n_out > 0 {
                let v = through.to_string();
                let saved = store
                    .call(move |s| s.set_sink_meta(SINK, "closed_through", &v))
                    .await;
                if let Err(e) = saved {
                    acked.send_modify(|a| a.1 = a.1.wrapping_add(1));
                    return Err(SinkError::Retry {
                        after: None,
                        reason: format!("cannot record the published windows: {e}"),
                    });
                }
                acked.send_modify(|a| a.0 = a.0.max(through));
            }
            // Delivered once every window holding this chunk's readings is published and recorded.
            let mut rx = acked.subscribe();
            let r = rx.wait_for(|(a, e)| *a >= need || *e != epoch).await;
            match r {
                Ok(v) if v.1 == epoch => Ok(()),
                _ => Err(SinkError::Retry {
                    after: None,
                    reason: "an earlier telemetry window was not delivered".into(),
                }),
            }
        }
    }
    async fn close(self) {
        super::session::close(&self.cmds, &self.stop, self.session).await;
    }
}

#[cfg(test)]
mod tests;
