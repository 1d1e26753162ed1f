//! The edge node's MQTT session: one task, a fresh client per connection (the Will carries that connection's
//! `bdSeq`); births, data, device deaths and rebirths, alarm metrics, commands, the primary host's STATE.

use super::model::{self, Model};
use super::payload::{Metric, Payload, Value};
use super::{topic, Job, SINK};
use crate::config::{Config, SparkplugConfig};
use crate::model::Timestamp;
use crate::store::SharedStore;
use crate::util::Backoff;
use prost::Message as _;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// A payload with the next `seq` (0–255, +1 per message), encoded.
fn encode(metrics: Vec<Metric>, now: u64, seq: &mut u64) -> Vec<u8> {
    let p = Payload {
        timestamp: Some(now),
        metrics,
        seq: Some(*seq),
    };
    *seq = (*seq + 1) % 256;
    p.encode_to_vec()
}

pub(super) struct Session {
    pub(super) sp: SparkplugConfig,
    pub(super) node: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) password: Option<String>,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
    pub(super) cfg: Arc<Config>,
    pub(super) model: Arc<Model>,
    pub(super) store: SharedStore,
    pub(super) connected: watch::Sender<bool>,
    /// The live state: a device whose sensors are all SENSOR_OFFLINE is dead (DDEATH) until it answers (DBIRTH).
    pub(super) live: watch::Receiver<Arc<crate::model::Live>>,
    /// Counters: the gateway metrics (backlog, dropped readings).
    pub(super) metrics: crate::metrics::SharedMetrics,
    /// Each metric's last value sent (by alias): a birth carries the current values, so a host that (re)births
    /// the node has every value, however rarely a sensor reports by exception.
    pub(super) latest: std::sync::Mutex<std::collections::HashMap<u64, Metric>>,
}

/// What a connection ended with.
enum End {
    Stop,
    Reconnect,
}

impl Session {
    /// The next `bdSeq` (0–255), kept in the store before it is used.
    async fn next_bd_seq(&self) -> u64 {
        let prev = self
            .store
            .call(|s| s.sink_meta(SINK, "bd_seq"))
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u64>().ok());
        let next = prev.map_or(0, |p| (p + 1) % 256);
        let v = next.to_string();
        if let Err(e) = self
            .store
            .call(move |s| s.set_sink_meta(SINK, "bd_seq", &v))
            .await
        {
            tracing::warn!(error = %e, "Cannot keep the Sparkplug bdSeq in the store.");
        }
        next
    }

    pub(super) async fn run(self, mut jobs: mpsc::Receiver<Job>, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let bd_seq = self.next_bd_seq().await;
            match self.connection(bd_seq, &mut jobs, &stop).await {
                End::Stop => return,
                End::Reconnect => {}
            }
            let _ = self.connected.send(false);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    fn options(&self, bd_seq: u64) -> MqttOptions {
        let id = self
            .sp
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{}-spb", self.node));
        let mut o = MqttOptions::new(id, self.host.clone(), self.port);
        o.set_keep_alive(self.sp.keep_alive.0.max(Duration::from_secs(5)));
        o.set_clean_session(true);
        o.set_last_will(LastWill::new(
            topic(&self.sp.group_id, "NDEATH", &self.node, None),
            model::node_death(bd_seq),
            QoS::AtLeastOnce,
            false,
        ));
        if let Some(u) = &self.sp.username {
            o.set_credentials(u.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(t) = &self.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::clone(t)),
            ));
        }
        o
    }

    /// The births: NBIRTH then every DBIRTH, `seq` from 0.
    fn births(&self, bd_seq: u64, seq: &mut u64) -> Vec<(String, Vec<u8>)> {
        let now = u64::try_from(Timestamp::now().0).unwrap_or(0);
        let g = &self.sp.group_id;
        let mut out = Vec::new();
        *seq = 0;
        let mut node = model::node_birth(bd_seq, &self.cfg, now);
        node.extend(model::gateway_metrics(&self.metrics, now));
        out.push((topic(g, "NBIRTH", &self.node, None), encode(node, now, seq)));
        for d in 0..self.model.devices.len() {
            out.push(self.device_message(d, true, seq));
        }
        out
    }

    /// Devices whose every sensor has an active SENSOR_OFFLINE.
    fn offline_devices(&self) -> Vec<bool> {
        let live = self.live.borrow().clone();
        let off: std::collections::HashSet<&str> = live
            .alerts
            .iter()
            .filter(|a| a.kind == crate::model::AlertType::SensorOffline)
            .map(|a| a.sensor.as_str())
            .collect();
        (0..self.model.devices.len())
            .map(|d| {
                let mut sensors = self
                    .model
                    .metrics
                    .iter()
                    .filter(|m| m.device == d)
                    .peekable();
                sensors.peek().is_some() && sensors.all(|m| off.contains(&*m.sensor))
            })
            .collect()
    }

    /// One device's DBIRTH (after it answers again) or DDEATH (when it stopped), with the next `seq`.
    fn device_message(&self, d: usize, birth: bool, seq: &mut u64) -> (String, Vec<u8>) {
        let now = u64::try_from(Timestamp::now().0).unwrap_or(0);
        let metrics = if birth {
            let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            let mut metrics = self.model.birth_metrics(d, now);
            for m in &mut metrics {
                if let Some(last) = m.alias.and_then(|a| latest.get(&a)) {
                    m.value = last.value.clone();
                    m.is_null = last.is_null;
                    m.timestamp = last.timestamp;
                }
            }
            let live = self.live.borrow().clone();
            metrics.extend(self.model.alarm_metrics(d, &live, true, now));
            metrics
        } else {
            Vec::new()
        };
        let payload = encode(metrics, now, seq);
        let kind = if birth { "DBIRTH" } else { "DDEATH" };
        (
            topic(
                &self.sp.group_id,
                kind,
                &self.node,
                Some(&self.model.devices[d]),
            ),
            payload,
        )
    }

    /// Follow the devices' liveness: DDEATH for a device that stopped answering (all its sensors offline),
    /// DBIRTH for one that answers again.
    fn sync_devices(
        &self,
        client: &AsyncClient,
        seq: &mut u64,
        written: &mut VecDeque<Option<oneshot::Sender<()>>>,
        dead: &mut [bool],
    ) {
        for (d, off) in self.offline_devices().into_iter().enumerate() {
            if off != dead[d] {
                let (t, p) = self.device_message(d, !off, seq);
                let _ = client.try_publish(t, QoS::AtMostOnce, false, p);
                written.push_back(None);
                dead[d] = off;
                tracing::info!(device = %self.model.devices[d], "Sparkplug device {}.", if off { "dead (DDEATH): its sensors are offline" } else { "answers again (DBIRTH)" });
            }
        }
    }

    /// The alarm metrics' values now, by alias (what a birth announces).
    fn alarm_snapshot(&self) -> std::collections::HashMap<u64, Value> {
        let live = self.live.borrow().clone();
        (0..self.model.devices.len())
            .flat_map(|d| self.model.alarm_metrics(d, &live, false, 0))
            .filter_map(|m| Some((m.alias?, m.value?)))
            .collect()
    }

    /// DDATA of the alarm metrics that changed in the live state (ISA-18.2 state, severity, acked, shelved).
    fn alarm_data(
        &self,
        client: &AsyncClient,
        seq: &mut u64,
        written: &mut VecDeque<Option<oneshot::Sender<()>>>,
        dead: &[bool],
        sent: &mut std::collections::HashMap<u64, Value>,
    ) {
        if self.model.alarms.is_empty() {
            return;
        }
        let live = self.live.borrow().clone();
        let now = u64::try_from(Timestamp::now().0).unwrap_or(0);
        for (d, is_dead) in dead.iter().enumerate() {
            if *is_dead {
                continue;
            }
            let changed: Vec<Metric> = self
                .model
                .alarm_metrics(d, &live, false, now)
                .into_iter()
                .filter(|m| {
                    let (Some(a), Some(v)) = (m.alias, m.value.clone()) else {
                        return false;
                    };
                    sent.insert(a, v.clone()).as_ref() != Some(&v)
                })
                .collect();
            if changed.is_empty() {
                continue;
            }
            let payload = encode(changed, now, seq);
            let t = topic(
                &self.sp.group_id,
                "DDATA",
                &self.node,
                Some(&self.model.devices[d]),
            );
            let _ = client.try_publish(t, QoS::AtMostOnce, false, payload);
            written.push_back(None);
        }
    }

    /// Publish the births (QoS 0) in order.
    fn birth(
        &self,
        client: &AsyncClient,
        bd_seq: u64,
        seq: &mut u64,
        written: &mut VecDeque<Option<oneshot::Sender<()>>>,
        dead: &mut [bool],
    ) {
        for (t, p) in self.births(bd_seq, seq) {
            let _ = client.try_publish(t, QoS::AtMostOnce, false, p);
            written.push_back(None);
        }
        // Every device was just born: the ones offline now die right after.
        dead.iter_mut().for_each(|x| *x = false);
        self.sync_devices(client, seq, written, dead);
    }

    async fn connection(
        &self,
        bd_seq: u64,
        jobs: &mut mpsc::Receiver<Job>,
        stop: &CancellationToken,
    ) -> End {
        let (client, mut ev) = crate::sink::mqtt::client(self.options(bd_seq), 256);
        let g = self.sp.group_id.clone();
        let mut seq = 0u64;
        // Each publish's slot, in order: a job's last message carries its answer.
        let mut written: VecDeque<Option<oneshot::Sender<()>>> = VecDeque::new();
        let mut up = false;
        // The newest primary host STATE timestamp seen (an older one is stale).
        let mut host_ts = 0u64;
        // Devices announced dead (DDEATH) until they answer again.
        let mut dead = vec![false; self.model.devices.len()];
        // The alarm metrics' values last sent, by alias (a birth sends them all).
        let mut alarms_sent: std::collections::HashMap<u64, Value> =
            std::collections::HashMap::new();
        let mut live = self.live.clone();
        // The gateway metrics go out as NDATA when they changed, at most every 10 s.
        let mut gateway_tick = tokio::time::interval(Duration::from_secs(10));
        let mut gateway_sent: Vec<Option<Value>> = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    // A clean goodbye: the NDEATH the Will would have sent, then DISCONNECT.
                    let _ = client.try_publish(topic(&g, "NDEATH", &self.node, None), QoS::AtLeastOnce, false, model::node_death(bd_seq));
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        while let Ok(e) = ev.poll().await {
                            if matches!(e, Event::Outgoing(Outgoing::Disconnect)) { break; }
                        }
                    }).await;
                    return End::Stop;
                }
                Some(job) = jobs.recv(), if up => {
                    let now = u64::try_from(Timestamp::now().0).unwrap_or(0);
                    let n = job.data.len();
                    let mut done = Some(job.done);
                    for (i, (d, metrics)) in job.data.into_iter().enumerate() {
                        if dead[d] {
                            // Data of a dead device: it answers again; its birth goes first.
                            let (t, p) = self.device_message(d, true, &mut seq);
                            let _ = client.try_publish(t, QoS::AtMostOnce, false, p);
                            written.push_back(None);
                            dead[d] = false;
                        }
                        {
                            let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
                            for m in &metrics {
                                if let Some(a) = m.alias {
                                    latest.insert(a, m.clone());
                                }
                            }
                        }
                        let t = topic(&g, "DDATA", &self.node, Some(&self.model.devices[d]));
                        if client.try_publish(t, QoS::AtMostOnce, false, encode(metrics, now, &mut seq)).is_err() {
                            return End::Reconnect;
                        }
                        written.push_back(if i + 1 == n { done.take() } else { None });
                    }
                }
                _ = gateway_tick.tick(), if up => {
                    let now = u64::try_from(Timestamp::now().0).unwrap_or(0);
                    let m = model::gateway_metrics(&self.metrics, now);
                    let values: Vec<Option<Value>> = m.iter().map(|x| x.value.clone()).collect();
                    if values != gateway_sent {
                        gateway_sent = values;
                        let _ = client.try_publish(topic(&g, "NDATA", &self.node, None), QoS::AtMostOnce, false, encode(m, now, &mut seq));
                        written.push_back(None);
                    }
                }
                Ok(()) = live.changed(), if up => {
                    self.sync_devices(&client, &mut seq, &mut written, &mut dead);
                    self.alarm_data(&client, &mut seq, &mut written, &dead, &mut alarms_sent);
                }
                e = ev.poll() => match e {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Subscribe before the births (the specification's order).
                        for kind in ["NCMD", "DCMD"] {
                            let t = if kind == "NCMD" { topic(&g, kind, &self.node, None) } else { topic(&g, kind, &self.node, Some("+")) };
                            let _ = client.try_subscribe(t, QoS::AtLeastOnce);
                        }
                        match &self.sp.primary_host {
                            Some(h) => {
                                tracing::info!(url = %self.sp.url, bd_seq, primary_host = %h, "Sparkplug session connected; waiting for the primary host to be online.");
                                let _ = client.try_subscribe(format!("spBv1.0/STATE/{h}"), QoS::AtLeastOnce);
                            }
                            None => {
                                tracing::info!(url = %self.sp.url, bd_seq, "Sparkplug session connected; publishing births.");
                                self.birth(&client, bd_seq, &mut seq, &mut written, &mut dead);
                                alarms_sent = self.alarm_snapshot();
                                up = true;
                                let _ = self.connected.send(true);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic.starts_with("spBv1.0/STATE/") => {
                        match host_state(&p.payload, &mut host_ts) {
                            Some(true) if !up => {
                                tracing::info!("The Sparkplug primary host is online; publishing births, then the data held in the store.");
                                self.birth(&client, bd_seq, &mut seq, &mut written, &mut dead);
                                alarms_sent = self.alarm_snapshot();
                                up = true;
                                let _ = self.connected.send(true);
                            }
                            Some(false) if up => {
                                // The specification's way: NDEATH, disconnect, and come back (new bdSeq) to wait for
                                // the host; the data waits in the store meanwhile.
                                tracing::warn!("The Sparkplug primary host went offline; the data waits in the store.");
                                let _ = client.try_publish(topic(&g, "NDEATH", &self.node, None), QoS::AtLeastOnce, false, model::node_death(bd_seq));
                                let _ = client.try_disconnect();
                                return End::Reconnect;
                            }
                            _ => {}
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                        if let Some(Some(done)) = written.pop_front() {
                            let _ = done.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        match self.command(&p.topic, &p.payload) {
                            Some(Command::Rebirth) if up => {
                                tracing::info!("Sparkplug rebirth requested; publishing births.");
                                self.birth(&client, bd_seq, &mut seq, &mut written, &mut dead);
                                alarms_sent = self.alarm_snapshot();
                            }
                            Some(Command::NextServer) => {
                                tracing::info!("Sparkplug Next Server requested; reconnecting.");
                                let _ = client.try_disconnect();
                                return End::Reconnect;
                            }
                            _ => {}
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(url = %self.sp.url, error = %e, "Sparkplug session lost; data waits in the store.");
                        return End::Reconnect;
                    }
                }
            }
        }
    }

    /// What an NCMD or DCMD asks, if it is something the node does; anything else is refused in the log.
    fn command(&self, topic: &str, payload: &[u8]) -> Option<Command> {
        let Ok(p) = Payload::decode(payload) else {
            tracing::warn!(
                topic,
                "A Sparkplug command that is not a Sparkplug B payload; ignored."
            );
            return None;
        };
        if topic.contains("/DCMD/") {
            tracing::warn!(
                topic,
                "Sparkplug device commands (writes to devices) are not supported; refused."
            );
            return None;
        }
        for m in &p.metrics {
            let on = matches!(m.value, Some(Value::Boolean(true)));
            match m.name.as_deref() {
                Some("Node Control/Rebirth") if on => return Some(Command::Rebirth),
                Some("Node Control/Next Server") if on => return Some(Command::NextServer),
                other => {
                    tracing::warn!(metric = ?other, "A Sparkplug node command the edge node does not support; refused.");
                }
            }
        }
        None
    }
}

enum Command {
    Rebirth,
    NextServer,
}

/// A primary host's `STATE` (`{"online": bool, "timestamp": ms}`): whether it is online, if the message is newer
/// than the last one seen.
fn host_state(payload: &[u8], newest: &mut u64) -> Option<bool> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let online = v.get("online")?.as_bool()?;
    let ts = v
        .get("timestamp")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if ts < *newest {
        return None;
    }
    *newest = ts;
    Some(online)
}
