//! The MQTT connection: one task owns the rumqttc event loop and polls it all the time (keep-alive, incoming
//! shadow messages), publishes gateway status and the device shadow, and carries out deliveries for the alert
//! feed. A delivery completes when the broker acknowledged (PUBACK) every publish in it; any connection loss
//! fails the deliveries in flight (the runner re-sends them from the store) and rebuilds the client.

use super::commands::Commands;
use super::shadow::{Out, Shadow};
use super::{status_payload, Topics};
use crate::config::Config;
use crate::metrics::{SharedMetrics, SinkMetrics};
use crate::model::{Live, Timestamp};
use crate::sink::SinkError;
use crate::util::Backoff;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// One publish of a delivery.
pub(super) struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    /// The PUBLISH packet's size at most: payload, topic, its length (2), the packet id (2) and a fixed header of
    /// at most 5 bytes.
    pub(super) fn packet_len(&self) -> usize {
        packet_len(self.payload.len(), &self.topic)
    }
}

/// [`Msg::packet_len`] of a payload of `payload` bytes on `topic`.
pub(super) fn packet_len(payload: usize, topic: &str) -> usize {
    payload + topic.len() + 9
}

/// Wait after the broker refused the connection (credentials, certificate, ACL).
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// What the alert feed asks of the session.
pub(super) enum Cmd {
    /// Publish these in order and answer when all are acknowledged (QoS 1) or handed to the client (QoS 0).
    Deliver {
        msgs: Vec<Msg>,
        qos: QoS,
        done: oneshot::Sender<Result<(), SinkError>>,
    },
    /// Publish `offline`, disconnect cleanly and end.
    Close { done: oneshot::Sender<()> },
}

/// Hand `msgs` to the session and wait for its answer (all acknowledged, or why not). A message over `limit`
/// (`mqtt.max_message_size`) never reaches the client — the client would drop the connection over it, and the
/// same message would come back after every reconnect: the delivery is rejected (dead-lettered) instead. The alert
/// feed screens single events before this ([`crate::sink::Sink::screen`]); this is the backstop for every sink.
pub(super) async fn deliver(
    cmds: &mpsc::Sender<Cmd>,
    msgs: Vec<Msg>,
    qos: QoS,
    limit: usize,
) -> Result<(), SinkError> {
    if let Some(m) = msgs.iter().find(|m| m.packet_len() > limit) {
        return Err(SinkError::Rejected {
            reason: format!(
                "a message of {} bytes on {} is larger than mqtt.max_message_size ({limit} bytes)",
                m.packet_len(),
                m.topic
            ),
        });
    }
    let gone = || SinkError::Retry {
        after: None,
        reason: "the MQTT session ended".into(),
    };
    let (done, rx) = oneshot::channel();
    cmds.send(Cmd::Deliver { msgs, qos, done })
        .await
        .map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

/// Say goodbye (the alert session publishes `offline` first), then stop the session task.
pub(super) async fn close(
    cmds: &mpsc::Sender<Cmd>,
    stop: &CancellationToken,
    session: tokio::task::JoinHandle<()>,
) {
    let (done, rx) = oneshot::channel();
    if cmds.send(Cmd::Close { done }).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), session).await;
}

/// Tracks which delivery each QoS 1 publish belongs to.
#[derive(Default)]
struct Acks {
    /// Publishes requested, pkid not yet known: `Some(delivery)` for delivery publishes.
    queued: VecDeque<Option<u64>>,
    /// pkid → delivery.
    inflight: HashMap<u16, Option<u64>>,
    /// delivery → (publishes not yet acknowledged, who waits).
    waiting: HashMap<u64, (usize, oneshot::Sender<Result<(), SinkError>>)>,
    next_id: u64,
}

impl Acks {
    /// Fail every delivery in flight (connection lost) and forget all publishes.
    fn reset(&mut self, why: &str) {
        for (_, (_, done)) in self.waiting.drain() {
            let _ = done.send(Err(SinkError::Retry {
                after: None,
                reason: why.to_string(),
            }));
        }
        self.queued.clear();
        self.inflight.clear();
    }
    fn start(&mut self, publishes: usize, done: oneshot::Sender<Result<(), SinkError>>) -> u64 {
        self.next_id += 1;
        self.waiting.insert(self.next_id, (publishes, done));
        self.next_id
    }
    fn fail(&mut self, id: u64, why: &str) {
        if let Some((_, done)) = self.waiting.remove(&id) {
            let _ = done.send(Err(SinkError::Retry {
                after: None,
                reason: why.to_string(),
            }));
        }
    }
    fn queued(&mut self, delivery: Option<u64>) {
        self.queued.push_back(delivery);
    }
    fn sent(&mut self, pkid: u16) {
        if let Some(d) = self.queued.pop_front() {
            self.inflight.insert(pkid, d);
        }
    }
    /// A PUBACK: true when it completed a delivery.
    fn acked(&mut self, pkid: u16) -> bool {
        let Some(Some(id)) = self.inflight.remove(&pkid) else {
            return false;
        };
        let complete = match self.waiting.get_mut(&id) {
            Some((n, _)) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if complete {
            if let Some((_, done)) = self.waiting.remove(&id) {
                let _ = done.send(Ok(()));
            }
        }
        complete
    }
}

/// The connection task's state.
pub(super) struct Session {
    pub opts: MqttOptions,
    pub cfg: Arc<Config>,
    pub topics: Topics,
    pub shadow: Option<Shadow>,
    /// Operator commands and the queue of their answers (alert connection with `[mqtt.commands]` on).
    pub commands: Option<(Commands, mpsc::Receiver<Out>)>,
    /// Where desired states go when the shadow applies them (`apply_desired`).
    pub remote: Option<mpsc::Sender<crate::model::RemoteChange>>,
    /// The last outcome of remote settings (a change answered, or a reload that changed the overrides).
    pub remote_in_force: Option<watch::Receiver<Option<crate::model::RemoteResult>>>,
    pub live: watch::Receiver<Arc<Live>>,
    pub metrics: SharedMetrics,
    pub sink: Arc<SinkMetrics>,
    pub connected: watch::Sender<bool>,
    pub queue: usize,
    /// Publish the gateway's retained status (the alert connection does; telemetry's does not).
    pub status: bool,
}

impl Session {
    pub(super) async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, stop: CancellationToken) {
        let (mut commands, mut answers) = match self.commands.take() {
            Some((c, a)) => (Some(c), Some(a)),
            None => (None, None),
        };
        // Outcomes of remote changes (and reloads that changed the overrides), back to the shadow.
        let mut in_force = self.remote_in_force.take();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut acks = Acks::default();
        let mut first_error = true;
        let mut subs = super::subscriptions::Subscriptions::default();
        // A desired state the daemon has not taken yet (coalesced; see hand_over).
        let mut waiting: Option<crate::model::RemoteChange> = None;
        // One cancellation future for the session's life: a fresh `stop.cancelled()` in the select below was
        // registered with the token's mutex and unregistered again on every event (each publish, each ack).
        let cancelled = stop.cancelled();
        tokio::pin!(cancelled);
        'conn: loop {
            // Nagle off (net.rs); 10 s to connect.
            let (client, mut ev) = super::client(self.opts.clone(), self.queue);
            ev.network_options.set_connection_timeout(10);
            let mut connected = false;
            let mut shadow_tick = tokio::time::interval(Duration::from_millis(250));
            // The alarm KPIs (retained, `alarms/kpi`): looked at every few seconds, sent when the ingest thread
            // computed new ones, and again on every connection.
            let mut kpi_tick = tokio::time::interval(Duration::from_secs(5));
            let mut kpi_sent: Option<Arc<crate::model::kpi::Kpi>> = None;
            loop {
                let settle = subs.settle_at();
                tokio::select! {
                    _ = &mut cancelled => break 'conn,
                    _ = async { if let Some(t) = settle { tokio::time::sleep_until(t).await } }, if settle.is_some() => {
                        let step = subs.settled();
                        self.subscribed(&client, step, &mut acks, true);
                    }
                    cmd = cmds.recv() => match cmd {
                        None => break 'conn,
                        Some(Cmd::Deliver { msgs, qos, done }) => {
                            if !connected {
                                let _ = done.send(Err(SinkError::Retry { after: None, reason: "not connected to the broker".into() }));
                                continue;
                            }
                            if qos == QoS::AtMostOnce {
                                // No acknowledgement exists: done once the client took every publish.
                                let mut ok = true;
                                for m in msgs {
                                    if client.try_publish(m.topic, qos, m.retain, m.payload).is_err() {
                                        ok = false;
                                        break;
                                    }
                                }
                                let _ = done.send(if ok { Ok(()) } else { Err(SinkError::Retry { after: None, reason: "MQTT request queue full".into() }) });
                                continue;
                            }
                            let id = acks.start(msgs.len(), done);
                            for m in msgs {
                                if client.try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload).is_err() {
                                    acks.fail(id, "MQTT request queue full");
                                    break;
                                }
                                acks.queued(Some(id));
                            }
                        }
                        Some(Cmd::Close { done }) => {
                            if connected {
                                if self.status {
                                    let _ = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, status_payload(&self.cfg, false));
                                }
                                let _ = client.try_disconnect();
                                let _ = tokio::time::timeout(Duration::from_millis(1000), async {
                                    while let Ok(e) = ev.poll().await {
                                        if matches!(e, Event::Outgoing(Outgoing::Disconnect)) {
                                            break;
                                        }
                                    }
                                })
                                .await;
                            }
                            let _ = done.send(());
                            break 'conn;
                        }
                    },
                    Some(r) = async { in_force.as_mut()?.changed().await.ok()?; in_force.as_ref()?.borrow().clone() } => {
                        if let Some(sh) = self.shadow.as_mut() {
                            sh.set_remote(r);
                        }
                    }
                    Some(o) = async { answers.as_mut()?.recv().await }, if connected => {
                        publish_untracked(&client, o, &mut acks);
                    }
                    _ = kpi_tick.tick(), if connected && self.status => {
                        let kpi = self.live.borrow().kpi.clone();
                        if let Some(k) = kpi.filter(|k| !kpi_sent.as_ref().is_some_and(|s| Arc::ptr_eq(s, k))) {
                            let o = Out { topic: self.topics.kpi(), payload: serde_json::to_string(&*k).unwrap_or_default(), retain: true };
                            if publish_untracked(&client, o, &mut acks) {
                                kpi_sent = Some(k);
                            }
                        }
                    }
                    _ = shadow_tick.tick(), if connected && self.shadow.is_some() => {
                        if let (Some(tx), Some(w)) = (&self.remote, waiting.take()) {
                            if let Err(mpsc::error::TrySendError::Full(c)) = tx.try_send(w) {
                                waiting = Some(c);
                            }
                        }
                        if let Some(sh) = self.shadow.as_mut() {
                            let live = self.live.borrow().clone();
                            // Every running sink's backlog, whichever sinks are configured.
                            let backlog = self.metrics.backlogs();
                            if let Some(o) = sh.maybe_update(&live, &backlog, Timestamp::now()) {
                                if !publish_untracked(&client, o.clone(), &mut acks) {
                                    // Not queued: the shadow must not believe it was sent.
                                    sh.unsent(&o);
                                }
                            }
                        }
                    }
                    e = ev.poll() => match e {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            connected = true;
                            first_error = true;
                            // The backoff is reset by the broker's first answer after this (SUBACK, PUBACK,
                            // PINGRESP), not by the CONNACK: a broker that accepts and then drops the connection
                            // (AWS IoT on a policy violation, or another device with the same client id) would
                            // otherwise be reconnected to twice a second.
                            self.connected.send_replace(true);
                            if self.sink.state() != crate::metrics::SinkState::Up {
                                self.sink.set_state(crate::metrics::SinkState::Up);
                            }
                            tracing::info!(session_present = ack.session_present, "MQTT connected.");
                            // The shadow's get goes out once the broker confirmed every subscription (SUBACK), so
                            // its answer cannot be missed.
                            let mut filters: Vec<String> = commands.iter().map(|c| c.subscription()).collect();
                            if let Some(sh) = self.shadow.as_ref() {
                                filters.extend(sh.subscriptions());
                            }
                            let probing = subs.probing();
                            let step = subs.connected(filters);
                            self.subscribed(&client, step, &mut acks, probing);
                            // "online" goes out after the SUBSCRIBEs on the same connection: the broker handles a
                            // client's packets in order, so whoever sees "online" may send a command and it reaches
                            // us. While probing (one filter at a time) it goes when every filter is subscribed.
                            if self.status && !probing {
                                let status = Out { topic: self.topics.status(), payload: status_payload(&self.cfg, true), retain: true };
                                publish_untracked(&client, status, &mut acks);
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            backoff.reset();
                            let probing = subs.probing();
                            let step = subs.suback(tokio::time::Instant::now());
                            self.subscribed(&client, step, &mut acks, probing);
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => acks.sent(pkid),
                        Ok(Event::Incoming(Packet::PubAck(a))) => {
                            backoff.reset();
                            acks.acked(a.pkid);
                        }
                        Ok(Event::Incoming(Packet::PingResp)) => backoff.reset(),
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if commands.as_mut().is_some_and(|c| c.handle(&p.topic, &p.payload, p.retain)) {
                                continue;
                            }
                            if let Some(sh) = self.shadow.as_mut() {
                                for o in sh.handle(&p.topic, &p.payload, &self.metrics) {
                                    publish_untracked(&client, o, &mut acks);
                                }
                                if let (Some(tx), Some((desired, version, replace))) = (&self.remote, sh.take_desired()) {
                                    let change = crate::model::RemoteChange { desired, version, replace };
                                    hand_over(tx, &mut waiting, change);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.sink.errors.fetch_add(1, Ordering::Relaxed);
                            let oversized = matches!(
                                &e,
                                rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                                    rumqttc::Error::PayloadSizeLimitExceeded(_)
                                ))
                            );
                            if let Some(filter) = subs.broke(oversized) {
                                tracing::error!(filter = %filter, error = %e,
                                    "A retained message on this subscription is larger than the client accepts and breaks the connection: the subscription is left out until watchpost restarts. Remove the message (mosquitto_pub -r -n -t TOPIC) and restart.");
                            } else if oversized {
                                tracing::warn!(error = %e, "The broker sent a message larger than the client accepts; finding the subscription it came on (one at a time from now on).");
                            }
                            // Not connected is not healthy, even with nothing to deliver right now.
                            if self.sink.state() == crate::metrics::SinkState::Up {
                                self.sink.set_state(crate::metrics::SinkState::Failing);
                            }
                            self.connected.send_replace(false);
                            acks.reset("MQTT connection lost");
                            // A refused login is configuration, not a network cut: an ERROR that says what to
                            // check, and a slow retry (the broker's answer will not change by itself), like an
                            // InfluxDB 401.
                            if let rumqttc::ConnectionError::ConnectionRefused(code) = &e {
                                self.sink.set_state(crate::metrics::SinkState::Failed);
                                tracing::error!(code = ?code, "The MQTT broker refused the connection: check mqtt.username and the password, the client certificate, or the broker's ACL for this client id; alerts stay in the store; retrying in 60 s.");
                                first_error = true;
                                tokio::select! {
                                    _ = &mut cancelled => break 'conn,
                                    _ = tokio::time::sleep(REFUSED_RETRY) => {}
                                }
                                continue 'conn;
                            }
                            let wait = backoff.next_delay();
                            if first_error {
                                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost or refused; alerts stay in the store and will be re-sent.");
                                first_error = false;
                            } else {
                                tracing::debug!(error = %e, "MQTT reconnect failed.");
                            }
                            tokio::select! {
                                _ = &mut cancelled => break 'conn,
                                _ = tokio::time::sleep(wait) => {}
                            }
                            continue 'conn;
                        }
                    }
                }
            }
        }
        self.connected.send_replace(false);
        acks.reset("MQTT session ended");
    }
}

impl Session {
    /// Act on a subscription step: subscribe what it names; once every filter is confirmed, the shadow's get and,
    /// when `status` (the subscriptions were probed one by one), the `online` status.
    fn subscribed(
        &mut self,
        client: &AsyncClient,
        step: super::subscriptions::Step,
        acks: &mut Acks,
        status: bool,
    ) {
        for f in step.subscribe {
            let _ = client.try_subscribe(f, QoS::AtLeastOnce);
        }
        if !step.done {
            return;
        }
        if let Some(sh) = self.shadow.as_mut() {
            let o = sh.on_connect();
            publish_untracked(client, o, acks);
        }
        if status && self.status {
            let o = Out {
                topic: self.topics.status(),
                payload: status_payload(&self.cfg, true),
                retain: true,
            };
            publish_untracked(client, o, acks);
        }
    }
}

/// Give a desired state to the daemon's overlay without holding up the connection. What the daemon has not taken
/// yet waits in `waiting`, coalesced with what follows (a flood of deltas is one change, not a task each): a full
/// document replaces it, a delta is merged into it.
fn hand_over(
    tx: &mpsc::Sender<crate::model::RemoteChange>,
    waiting: &mut Option<crate::model::RemoteChange>,
    change: crate::model::RemoteChange,
) {
    let next = match waiting.take() {
        Some(mut w) if !change.replace => {
            merge_delta(&mut w.desired, change.desired);
            w.version = change.version.or(w.version);
            w
        }
        _ => change,
    };
    if let Err(mpsc::error::TrySendError::Full(c)) = tx.try_send(next) {
        *waiting = Some(c);
    }
}

/// Merge a later delta into an earlier one: objects key by key, anything else (a `null` too: it removes the key
/// in the overlay) replaces.
fn merge_delta(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into.as_object_mut(), from) {
        (Some(i), serde_json::Value::Object(f)) => {
            for (k, v) in f {
                match i.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_delta(slot, v),
                    _ => {
                        i.insert(k, v);
                    }
                }
            }
        }
        (_, f) => *into = f,
    }
}

/// Queue a publish nobody waits for (status, shadow); false when the request queue was full.
fn publish_untracked(client: &AsyncClient, o: Out, acks: &mut Acks) -> bool {
    let ok = client
        .try_publish(o.topic, QoS::AtLeastOnce, o.retain, o.payload)
        .is_ok();
    if ok {
        acks.queued(None);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood of deltas while the daemon is busy becomes one waiting change, merged in order; a full document
    /// replaces what waits.
    #[test]
    fn a_flood_of_deltas_is_coalesced_into_one_waiting_change() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut waiting = None;
        let delta = |v: u64, d: serde_json::Value| crate::model::RemoteChange {
            desired: d,
            version: Some(v),
            replace: false,
        };
        hand_over(
            &tx,
            &mut waiting,
            delta(1, serde_json::json!({"alarms":{"a":{"delay":"1s"}}})),
        );
        assert!(waiting.is_none(), "the first one fits the channel");
        for v in 2..5000 {
            let d = serde_json::json!({"alarms":{"a":{"warning":{"high": v}}, format!("s{}", v % 3): {"delay": null}}});
            hand_over(&tx, &mut waiting, delta(v, d));
        }
        let w = waiting.as_ref().expect("one waiting change");
        assert_eq!(w.version, Some(4999));
        assert_eq!(w.desired["alarms"]["a"]["warning"]["high"], 4999);
        assert!(w.desired["alarms"]["s0"]["delay"].is_null());
        assert_eq!(rx.try_recv().map(|c| c.version).ok(), Some(Some(1)));
        let full = crate::model::RemoteChange {
            desired: serde_json::json!({"alarms":{}}),
            version: Some(5000),
            replace: true,
        };
        hand_over(&tx, &mut waiting, full);
        assert!(waiting.is_none());
        assert!(rx
            .try_recv()
            .is_ok_and(|c| c.replace && c.version == Some(5000)));
    }

    #[test]
    fn a_delivery_completes_only_when_every_publish_is_acknowledged() {
        let mut a = Acks::default();
        a.queued(None); // status
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let d1 = a.start(2, tx1);
        a.queued(Some(d1));
        a.queued(Some(d1));
        let d2 = a.start(2, tx2);
        a.queued(Some(d2));
        a.queued(Some(d2));
        for pkid in 1..=5 {
            a.sent(pkid);
        }
        assert!(!a.acked(1), "the status publish completes nothing");
        assert!(!a.acked(4));
        assert!(a.acked(5), "delivery 2 complete");
        assert!(matches!(rx2.try_recv(), Ok(Ok(()))));
        assert!(!a.acked(2));
        assert!(rx1.try_recv().is_err(), "delivery 1 still waits for pkid 3");
        a.reset("lost");
        assert!(matches!(rx1.try_recv(), Ok(Err(SinkError::Retry { .. }))));
    }
}
