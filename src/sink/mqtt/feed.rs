//! The alert feed: the MQTT [`Sink`]. Each alert event becomes two QoS 1 publishes, the retained state on
//! `alerts/{sensor}/{alarm}` (removed by an empty retained message when the alarm clears) and the ordered `events`
//! feed; a chunk is delivered when the broker acknowledged all of them.

use super::session::{Cmd, Msg, Session};
use super::shadow::Shadow;
use super::{options, Topics};
use crate::model::AlertState;
use crate::sink::SinkContext;
use crate::sink::{Items, Sink, SinkError, Unfit};
use crate::store::Stream;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const SINK: &str = "mqtt";
/// Chunks in flight: several keep the connection busy while PUBACKs travel (a lone small PUBACK can wait for a
/// delayed TCP ACK behind the broker's Nagle, 40 ms on Linux).
const WINDOW: usize = 4;

/// The MQTT alert feed (see the module docs).
pub struct AlertFeed {
    cmds: mpsc::Sender<Cmd>,
    connected: watch::Receiver<bool>,
    topics: Topics,
    max_items: usize,
    stop: CancellationToken,
    session: tokio::task::JoinHandle<()>,
    /// `mqtt.max_message_size`.
    limit: usize,
}

impl AlertFeed {
    /// The feed of `cx.cfg.mqtt`; its connection starts now and stops with the sink.
    pub fn open(cx: &SinkContext) -> Result<AlertFeed, SinkError> {
        crate::install_crypto_provider();
        let m = cx.cfg.mqtt.as_ref().ok_or_else(|| SinkError::Refused {
            reason: "no [mqtt] section".into(),
        })?;
        let opts = options(m, &cx.cfg, false)?;
        let max_items = usize::from(m.max_inflight.max(1));
        let (cmds, rx) = mpsc::channel(4);
        let (connected_tx, connected) = watch::channel(false);
        let stop = cx.ctl.stop.child_token();
        let session = Session {
            opts,
            cfg: Arc::clone(&cx.cfg),
            topics: Topics::new(&m.topic_prefix, &cx.cfg.gateway.id),
            shadow: m.shadow.as_ref().map(|s| {
                let all = Topics::new(&m.topic_prefix, &cx.cfg.gateway.id).alerts_all();
                Shadow::new(s, &cx.cfg.gateway.id, &all)
            }),
            commands: m.commands.as_ref().filter(|c| c.enabled).map(|c| {
                let (tx, rx) = mpsc::channel(64);
                let base = Topics::new(&m.topic_prefix, &cx.cfg.gateway.id).base;
                let commands = super::commands::Commands::new(
                    &base,
                    c.max_shelve.0,
                    cx.signals.control.clone(),
                    tx,
                    cx.metrics.clone(),
                );
                (commands, rx)
            }),
            remote: m
                .shadow
                .as_ref()
                .filter(|s| s.apply_desired)
                .and(cx.signals.remote.clone()),
            remote_in_force: m
                .shadow
                .as_ref()
                .filter(|s| s.apply_desired)
                .and(cx.signals.remote_in_force.clone()),
            live: cx.signals.live.clone(),
            metrics: cx.metrics.clone(),
            sink: cx.metrics.sink(SINK),
            connected: connected_tx,
            queue: WINDOW * 2 * max_items + 64,
            status: true,
        };
        let session = tokio::spawn(session.run(rx, stop.clone()));
        tracing::info!(url = %m.url, "MQTT sink started.");
        Ok(AlertFeed {
            cmds,
            connected,
            topics: Topics::new(&m.topic_prefix, &cx.cfg.gateway.id),
            max_items,
            stop,
            session,
            limit: m.max_message_size.0 as usize,
        })
    }
}

impl Sink for AlertFeed {
    fn name(&self) -> &'static str {
        SINK
    }
    fn stream(&self) -> Stream {
        Stream::Events
    }
    fn max_items(&self) -> usize {
        self.max_items
    }
    async fn ready(&mut self) {
        let _ = self.connected.wait_for(|c| *c).await;
    }
    fn window(&self) -> usize {
        WINDOW
    }
    /// An event larger than the broker takes (e.g. a huge audit event) is skipped, not retried forever.
    fn screen(&self, items: &Items) -> Vec<Unfit> {
        let Items::Events(events) = items else {
            return Vec::new();
        };
        let events_topic = self.topics.events();
        events
            .iter()
            .filter_map(|(seq, a)| {
                // An event that cannot be encoded at all is rejected by `deliver`.
                let payload = serde_json::to_vec(a).ok()?.len();
                let topic = self.topics.alert(a);
                let longest = if topic.len() > events_topic.len() { &topic } else { &events_topic };
                let packet = super::session::packet_len(payload, longest);
                (packet > self.limit).then(|| Unfit {
                    position: *seq,
                    reason: format!(
                        "{} {} event {} of {packet} bytes is larger than mqtt.max_message_size ({} bytes)",
                        a.kind.as_str(),
                        a.state.as_str(),
                        a.id,
                        self.limit
                    ),
                })
            })
            .collect()
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        let mut msgs = Vec::new();
        let mut bad = None;
        if let Items::Events(events) = items {
            msgs.reserve(events.len() * 2);
            for (seq, a) in events {
                // A retained empty payload would delete the alert state on the broker: never publish one.
                let payload = match serde_json::to_vec(a) {
                    Ok(p) => p,
                    Err(e) => {
                        bad = Some(format!("event {seq} cannot be encoded: {e}"));
                        break;
                    }
                };
                // The retained topic holds the alarm while it stands (active, or returned to normal and not yet
                // acknowledged); then an empty retained message removes it, so `alerts/#` shows exactly the
                // standing alarms. The clear itself is on the event feed.
                let retained = if a.standing() {
                    payload.clone()
                } else {
                    Vec::new()
                };
                // A shelved alarm is not annunciated: its retained topic keeps saying `shelved` while it escalates
                // or de-escalates on the shelf (the event feed has the history, each event with `shelved_until`).
                // Its clear still removes it, and unshelving publishes its state again.
                let on_shelf = a.operator.shelved_until.is_some()
                    && a.standing()
                    && !matches!(a.state, AlertState::Shelved | AlertState::Unshelved);
                // Audit events have no standing state: the event feed only.
                if !a.is_audit() && !on_shelf {
                    msgs.push(Msg {
                        topic: self.topics.alert(a),
                        payload: retained,
                        retain: true,
                    });
                }
                msgs.push(Msg {
                    topic: self.topics.events(),
                    payload,
                    retain: false,
                });
            }
        }
        let cmds = self.cmds.clone();
        let limit = self.limit;
        async move {
            if let Some(reason) = bad {
                return Err(SinkError::Rejected { reason });
            }
            super::session::deliver(&cmds, msgs, rumqttc::QoS::AtLeastOnce, limit).await
        }
    }
    async fn close(self) {
        super::session::close(&self.cmds, &self.stop, self.session).await;
    }
}
