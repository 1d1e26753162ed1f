//! MQTT sink (rumqttc, MQTT 3.1.1): alerts, gateway status and the AWS IoT Device Shadow.
//!
//! Topics (design.md §2):
//! * `{prefix}/{gateway}/alerts/{sensor}` — QoS 1, retained: the latest alert state of that sensor;
//! * `{prefix}/{gateway}/events` — QoS 1: every alert transition in order;
//! * `{prefix}/{gateway}/status` — retained `{"state":"online"|"offline",…}`; `offline` is also the will.
//!
//! Delivery: alert events are read from the store after the sink's cursor; the cursor advances only when the
//! broker acknowledged (PUBACK) both publishes of an event and of every earlier one. The store is the source of
//! truth, not the client: after any connection loss the client is rebuilt and everything unacknowledged is
//! published again from the store (at-least-once, in order). Publishing is paced by `max_inflight`.
//!
//! Device shadow (classic or named): subscribes to `update/accepted|rejected|delta` and `get/accepted|rejected`
//! before publishing, sends `get` after each connect, reports active alerts, latest sensor values and gateway
//! health at most every `min_interval` and only when changed; offline periods coalesce naturally (only the
//! newest state is kept). Messages with a lower `version` than seen are dropped; on `409` it re-gets and retries;
//! `desired` state is logged and reported back as not applied; the document is kept under 8 KB by trimming sensors
//! (never alerts); at most 10 shadow requests are in flight.

use super::{Backoff, SinkCtl};
use crate::app::{Live, Signals};
use crate::config::{Config, MqttConfig, ShadowConfig};
use crate::metrics::SharedMetrics;
use crate::model::{Alert, Timestamp};
use crate::store::{Store, Stream};
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SINK: &str = "mqtt";
/// Largest reported-state document (AWS IoT limit is 8 KB of state).
pub const SHADOW_MAX_BYTES: usize = 8000;
/// Shadow requests allowed in flight.
pub const SHADOW_MAX_INFLIGHT: usize = 10;

/// Host and port from `mqtt://host:port` / `mqtts://host:port`.
pub fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!(
            "{url:?}: expected mqtt://host:port or mqtts://host:port"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let default = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let end = stripped
            .find(']')
            .ok_or_else(|| format!("{url:?}: unterminated IPv6 address"))?;
        let host = &stripped[..end];
        let port = stripped[end + 1..]
            .strip_prefix(':')
            .map(|p| p.parse::<u16>())
            .transpose();
        (
            host.to_string(),
            port.map_err(|e| format!("{url:?}: bad port: {e}"))?
                .unwrap_or(default),
        )
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|e| format!("{url:?}: bad port: {e}"))?,
            ),
            None => (rest.to_string(), default),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: missing host"));
    }
    Ok((tls, host, port))
}

/// Build the rustls client config (ring provider): CA file or the Mozilla roots, optional client certificate.
pub fn tls_config(
    ca_file: Option<&std::path::Path>,
    cert_file: Option<&std::path::Path>,
    key_file: Option<&std::path::Path>,
    alpn: &[String],
) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots);
    let mut cfg = match (cert_file, key_file) {
        (Some(c), Some(k)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .map_err(|e| format!("cert_file {}: {e}", c.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cert_file {}: {e}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("key_file {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(cfg)
}

/// Topic names of one gateway.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `{prefix}/{gateway}`
    pub base: String,
}

impl Topics {
    /// For `prefix` and gateway id.
    pub fn new(prefix: &str, gateway: &str) -> Self {
        Topics {
            base: format!("{}/{gateway}", prefix.trim_end_matches('/')),
        }
    }
    /// Retained per-sensor alert topic.
    pub fn alert(&self, sensor: &str) -> String {
        format!("{}/alerts/{sensor}", self.base)
    }
    /// Ordered event feed.
    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }
    /// Retained status.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
}

fn status_payload(cfg: &Config, online: bool) -> String {
    serde_json::json!({
        "state": if online { "online" } else { "offline" },
        "device": cfg.gateway.id,
        "location": cfg.gateway.location,
        "version": env!("CARGO_PKG_VERSION"),
        "ts": Timestamp::now().rfc3339(),
    })
    .to_string()
}

fn options(m: &MqttConfig, cfg: &Config) -> Result<MqttOptions, String> {
    let (tls, host, port) = parse_url(&m.url)?;
    let client_id = m
        .client_id
        .clone()
        .unwrap_or_else(|| cfg.gateway.id.clone());
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(m.keep_alive.0.max(Duration::from_secs(5)));
    o.set_clean_session(!m.persistent_session);
    o.set_inflight(
        m.max_inflight
            .saturating_mul(2)
            .max(SHADOW_MAX_INFLIGHT as u16 + 4),
    );
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    let topics = Topics::new(&m.topic_prefix, &cfg.gateway.id);
    o.set_last_will(LastWill::new(
        topics.status(),
        status_payload(cfg, false),
        QoS::AtLeastOnce,
        true,
    ));
    let password = super::resolve_secret(&m.password, &m.password_file, &m.password_env, &None)?;
    if let Some(u) = &m.username {
        o.set_credentials(u.clone(), password.unwrap_or_default());
    }
    if tls {
        let c = tls_config(
            m.ca_file.as_deref(),
            m.cert_file.as_deref(),
            m.key_file.as_deref(),
            &m.alpn,
        )?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(c),
        )));
    }
    Ok(o)
}

/// Device shadow state machine (no I/O: returns the publishes to make).
pub struct Shadow {
    base: String,
    min_interval: Duration,
    last_sent: Option<Instant>,
    last_doc: Option<String>,
    version: u64,
    pending: HashMap<String, Instant>,
    counter: u64,
    dirty: bool,
    desired: Option<serde_json::Value>,
    started: Instant,
    device: String,
}

/// A publish the shadow wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// Topic.
    pub topic: String,
    /// JSON payload.
    pub payload: String,
    /// Retain flag.
    pub retain: bool,
}

impl Shadow {
    /// For a thing (and optional named shadow).
    pub fn new(c: &ShadowConfig, device: &str) -> Self {
        let base = match &c.name {
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", c.thing),
            None => format!("$aws/things/{}/shadow", c.thing),
        };
        Shadow {
            base,
            min_interval: c.min_interval.0,
            last_sent: None,
            last_doc: None,
            version: 0,
            pending: HashMap::new(),
            counter: 0,
            dirty: true,
            desired: None,
            started: Instant::now(),
            device: device.to_string(),
        }
    }

    /// Topics to subscribe to before publishing anything.
    pub fn subscriptions(&self) -> Vec<String> {
        [
            "update/accepted",
            "update/rejected",
            "update/delta",
            "get/accepted",
            "get/rejected",
        ]
        .iter()
        .map(|s| format!("{}/{s}", self.base))
        .collect()
    }

    fn token(&mut self, kind: &str) -> String {
        self.counter += 1;
        // ≤ 64 bytes: kind, a counter and at most 40 bytes of the device id.
        let dev: String = self.device.chars().take(40).collect();
        format!("{dev}-{kind}-{}", self.counter)
    }

    /// After (re)connect: clear in-flight requests and `get` the shadow.
    pub fn on_connect(&mut self) -> Out {
        self.pending.clear();
        self.dirty = true;
        self.get()
    }

    fn get(&mut self) -> Out {
        let t = self.token("get");
        self.pending.insert(t.clone(), Instant::now());
        Out {
            topic: format!("{}/get", self.base),
            payload: serde_json::json!({ "clientToken": t }).to_string(),
            retain: false,
        }
    }

    /// The reported document for `live`, trimmed to fit; returns (json of reported, trimmed sensor count).
    pub fn reported(
        &self,
        live: &Live,
        backlog: (i64, i64),
        now: Timestamp,
    ) -> (serde_json::Value, usize) {
        let mut sensors: BTreeMap<&String, &crate::app::LatestValue> =
            live.sensors.iter().collect();
        let mut trimmed = 0;
        loop {
            let mut doc = serde_json::json!({
                "alerts": live.alerts,
                "sensors": sensors,
                "gateway": {
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_s": self.started.elapsed().as_secs(),
                    "backlog": { "influxdb": backlog.0, "mqtt": backlog.1 },
                },
                "lastUpdate": now.rfc3339(),
            });
            if let Some(d) = &self.desired {
                doc["config"] = serde_json::json!({
                    "applied": false,
                    "reason": "remote configuration is not supported by this version; edit the config file",
                    "desired": d,
                });
            }
            let len = doc.to_string().len();
            if len <= SHADOW_MAX_BYTES || sensors.is_empty() {
                return (doc, trimmed);
            }
            let last = sensors.keys().next_back().copied();
            if let Some(k) = last {
                sensors.remove(k);
                trimmed += 1;
            }
        }
    }

    /// An update to publish now, if due and changed.
    pub fn maybe_update(
        &mut self,
        live: &Live,
        backlog: (i64, i64),
        now: Timestamp,
    ) -> Option<Out> {
        if self.pending.len() >= SHADOW_MAX_INFLIGHT {
            // Requests lost with a connection are forgotten after a minute.
            self.pending
                .retain(|_, t| t.elapsed() < Duration::from_secs(60));
            if self.pending.len() >= SHADOW_MAX_INFLIGHT {
                return None;
            }
        }
        if self
            .last_sent
            .is_some_and(|t| t.elapsed() < self.min_interval)
        {
            return None;
        }
        let (reported, trimmed) = self.reported(live, backlog, now);
        let mut key = reported.clone();
        if let Some(o) = key.as_object_mut() {
            o.remove("lastUpdate");
            if let Some(g) = o.get_mut("gateway").and_then(|g| g.as_object_mut()) {
                g.remove("uptime_s");
            }
        }
        let key = key.to_string();
        if !self.dirty && self.last_doc.as_deref() == Some(key.as_str()) {
            return None;
        }
        if trimmed > 0 {
            tracing::warn!(
                trimmed,
                "Shadow document over 8 KB: left out the last sensors (alerts are always kept)."
            );
        }
        let t = self.token("upd");
        self.pending.insert(t.clone(), Instant::now());
        self.last_sent = Some(Instant::now());
        self.last_doc = Some(key);
        self.dirty = false;
        Some(Out {
            topic: format!("{}/update", self.base),
            payload: serde_json::json!({ "state": { "reported": reported }, "clientToken": t })
                .to_string(),
            retain: false,
        })
    }

    /// Handle a message on a shadow topic; returns publishes to make (e.g. a re-`get` after 409).
    pub fn handle(&mut self, topic: &str, payload: &[u8], metrics: &SharedMetrics) -> Vec<Out> {
        let Some(kind) = topic
            .strip_prefix(&self.base)
            .map(|s| s.trim_start_matches('/'))
        else {
            return Vec::new();
        };
        let v: serde_json::Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                metrics.mqtt_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(topic, error = %e, "Ignoring a malformed shadow message.");
                return Vec::new();
            }
        };
        if let Some(ver) = v.get("version").and_then(|x| x.as_u64()) {
            if ver < self.version {
                tracing::debug!(
                    topic,
                    version = ver,
                    seen = self.version,
                    "Dropping an out-of-date shadow message."
                );
                return Vec::new();
            }
            self.version = ver;
        }
        let token = v
            .get("clientToken")
            .and_then(|t| t.as_str())
            .map(String::from);
        if let Some(t) = &token {
            if kind.ends_with("accepted") || kind.ends_with("rejected") {
                self.pending.remove(t);
            }
        }
        match kind {
            "update/rejected" | "get/rejected" => {
                let code = v.get("code").and_then(|c| c.as_i64()).unwrap_or(0);
                let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
                if kind == "get/rejected" && code == 404 {
                    tracing::info!(
                        "No shadow document yet; it will be created by the next update."
                    );
                    self.dirty = true;
                    return Vec::new();
                }
                tracing::warn!(
                    topic = kind,
                    code,
                    message = msg,
                    "Shadow request rejected."
                );
                if code == 409 {
                    self.dirty = true;
                    self.last_sent = None;
                    return vec![self.get()];
                }
                Vec::new()
            }
            "update/delta" => {
                let state = v.get("state").cloned().unwrap_or(serde_json::Value::Null);
                if !state.is_object() {
                    tracing::warn!("Ignoring a shadow delta without a state object.");
                    return Vec::new();
                }
                tracing::info!(desired = %state, "Shadow delta received; remote configuration is not applied by this version.");
                self.desired = Some(state);
                self.dirty = true;
                self.last_sent = None;
                Vec::new()
            }
            "get/accepted" => {
                if let Some(d) = v.pointer("/state/delta") {
                    if d.is_object() {
                        tracing::info!(desired = %d, "Shadow has desired state that differs; not applied by this version.");
                        self.desired = Some(d.clone());
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

/// Tracks which event each QoS 1 publish belongs to and which prefix of events is fully acknowledged.
#[derive(Default)]
struct Acks {
    /// Publishes requested, pkid not yet known: `Some(seq)` for event publishes.
    queued: VecDeque<Option<i64>>,
    /// pkid → seq.
    inflight: HashMap<u16, Option<i64>>,
    /// seq → publishes not yet acknowledged.
    outstanding: BTreeMap<i64, u8>,
}

impl Acks {
    fn reset(&mut self) {
        *self = Acks::default();
    }
    fn queued(&mut self, seq: Option<i64>) {
        self.queued.push_back(seq);
        if let Some(s) = seq {
            *self.outstanding.entry(s).or_insert(0) += 1;
        }
    }
    fn sent(&mut self, pkid: u16) {
        if let Some(seq) = self.queued.pop_front() {
            self.inflight.insert(pkid, seq);
        }
    }
    fn acked(&mut self, pkid: u16) {
        if let Some(Some(seq)) = self.inflight.remove(&pkid) {
            if let Some(n) = self.outstanding.get_mut(&seq) {
                *n = n.saturating_sub(1);
            }
        }
    }
    /// Pop the fully acknowledged prefix; returns its last seq.
    fn done(&mut self) -> Option<i64> {
        let mut last = None;
        while let Some((&seq, &n)) = self.outstanding.first_key_value() {
            if n > 0 {
                break;
            }
            self.outstanding.remove(&seq);
            last = Some(seq);
        }
        last
    }
    fn events_in_flight(&self) -> usize {
        self.outstanding.len()
    }
}

/// Run the sink until stopped (or, when draining, until caught up).
pub async fn run(
    m: MqttConfig,
    cfg: Config,
    mut signals: Signals,
    metrics: SharedMetrics,
    ctl: SinkCtl,
) {
    crate::install_crypto_provider();
    let opts = match options(&m, &cfg) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "MQTT sink disabled; alerts stay in the local store.");
            return;
        }
    };
    let mut store = loop {
        match tokio::task::block_in_place(|| Store::open_existing(&cfg.gateway.data_dir)) {
            Ok(s) => break s,
            Err(e) => tracing::warn!(error = %e, "MQTT sink cannot open the store yet."),
        }
        tokio::select! {
            _ = ctl.stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };
    let topics = Topics::new(&m.topic_prefix, &cfg.gateway.id);
    let mut shadow = m.shadow.as_ref().map(|s| Shadow::new(s, &cfg.gateway.id));
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let max_events = usize::from(m.max_inflight.max(1));
    let mut acks = Acks::default();
    let mut first_error = true;
    tracing::info!(url = %m.url, "MQTT sink started.");
    'conn: loop {
        if ctl.stop.is_cancelled() {
            break;
        }
        // Room for a full window (2 publishes per event) plus status and shadow requests.
        let (client, mut ev) = AsyncClient::new(opts.clone(), 2 * usize::from(m.max_inflight) + 64);
        // Alerts are small and latency matters: no Nagle.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(10);
        ev.network_options = net;
        acks.reset();
        let mut connected = false;
        let mut next = store.cursor(SINK, Stream::Events).unwrap_or(0);
        let mut shadow_tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            // Fill the window from the store.
            // Refill when the window is half empty (one store query per half window, not per PUBACK).
            // True when the last refill found nothing after `next`: with nothing in flight, the sink is caught up.
            let mut store_empty = false;
            if connected && acks.events_in_flight() <= max_events / 2 {
                let room = max_events - acks.events_in_flight();
                match store.events_after(next, room) {
                    Ok(evs) => {
                        store_empty = evs.is_empty();
                        let mut broken = false;
                        for (seq, a) in evs {
                            match publish_alert(&client, &topics, &a, seq, &mut acks) {
                                Queued::Both => next = seq,
                                Queued::None => break,
                                Queued::Half => {
                                    broken = true;
                                    break;
                                }
                            }
                        }
                        if broken {
                            // Only one of the two publishes was queued: start over from the store cursor.
                            tracing::warn!("MQTT request queue full mid-event; reconnecting to re-send from the store.");
                            continue 'conn;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "MQTT sink cannot read the store."),
                }
            }
            let caught_up = connected && acks.events_in_flight() == 0 && store_empty;
            if caught_up {
                metrics.mqtt_backlog.store(0, Ordering::Relaxed);
            }
            if ctl.drain.is_cancelled() && (caught_up || !connected) {
                if connected {
                    let _ = client.try_publish(
                        topics.status(),
                        QoS::AtLeastOnce,
                        true,
                        status_payload(&cfg, false),
                    );
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
                break 'conn;
            }
            tokio::select! {
                _ = ctl.stop.cancelled() => break 'conn,
                _ = ctl.drain.cancelled(), if !ctl.drain.is_cancelled() => {}
                _ = signals.events.changed(), if connected => {}
                _ = shadow_tick.tick(), if connected && shadow.is_some() => {
                    if let Some(sh) = shadow.as_mut() {
                        let live = signals.live.borrow().clone();
                        let backlog = (metrics.influx_backlog.load(Ordering::Relaxed), metrics.mqtt_backlog.load(Ordering::Relaxed));
                        if let Some(o) = sh.maybe_update(&live, backlog, Timestamp::now()) {
                            publish_untracked(&client, o, &mut acks);
                        }
                    }
                }
                e = ev.poll() => match e {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        connected = true;
                        first_error = true;
                        backoff.reset();
                        tracing::info!(session_present = ack.session_present, "MQTT connected.");
                        publish_untracked(&client, Out { topic: topics.status(), payload: status_payload(&cfg, true), retain: true }, &mut acks);
                        if let Some(sh) = shadow.as_mut() {
                            for t in sh.subscriptions() {
                                let _ = client.try_subscribe(t, QoS::AtLeastOnce);
                            }
                            let o = sh.on_connect();
                            publish_untracked(&client, o, &mut acks);
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => acks.sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        acks.acked(a.pkid);
                        if let Some(seq) = acks.done() {
                            match store.ack(SINK, Stream::Events, seq) {
                                Ok(()) => {}
                                Err(e) => tracing::error!(error = %e, "Cannot save the MQTT cursor; events will be re-sent."),
                            }
                            metrics.mqtt_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(sh) = shadow.as_mut() {
                            for o in sh.handle(&p.topic, &p.payload, &metrics) {
                                publish_untracked(&client, o, &mut acks);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics.mqtt_errors.fetch_add(1, Ordering::Relaxed);
                        let wait = backoff.next_delay();
                        if first_error {
                            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost or refused; alerts stay in the store and will be re-sent.");
                            first_error = false;
                        } else {
                            tracing::debug!(error = %e, "MQTT reconnect failed.");
                        }
                        if ctl.drain.is_cancelled() {
                            break 'conn;
                        }
                        tokio::select! {
                            _ = ctl.stop.cancelled() => break 'conn,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        continue 'conn;
                    }
                }
            }
        }
    }
}

fn publish_untracked(client: &AsyncClient, o: Out, acks: &mut Acks) {
    if client
        .try_publish(o.topic, QoS::AtLeastOnce, o.retain, o.payload)
        .is_ok()
    {
        acks.queued(None);
    }
}

/// What `publish_alert` managed to queue.
enum Queued {
    Both,
    None,
    Half,
}

/// Publish an alert on its retained topic and on the event feed.
fn publish_alert(
    client: &AsyncClient,
    topics: &Topics,
    a: &Alert,
    seq: i64,
    acks: &mut Acks,
) -> Queued {
    let payload = serde_json::to_vec(a).unwrap_or_default();
    if client
        .try_publish(
            topics.alert(&a.sensor),
            QoS::AtLeastOnce,
            true,
            payload.clone(),
        )
        .is_err()
    {
        return Queued::None;
    }
    acks.queued(Some(seq));
    if client
        .try_publish(topics.events(), QoS::AtLeastOnce, false, payload)
        .is_err()
    {
        return Queued::Half;
    }
    acks.queued(Some(seq));
    Queued::Both
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884"),
            Ok((false, "127.0.0.1".into(), 1884))
        );
        assert_eq!(
            parse_url("mqtts://broker.example"),
            Ok((true, "broker.example".into(), 8883))
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1883"),
            Ok((false, "::1".into(), 1883))
        );
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://:1").is_err());
    }

    #[test]
    fn acks_advance_only_over_a_fully_acknowledged_prefix() {
        let mut a = Acks::default();
        a.queued(None); // status
        a.queued(Some(1));
        a.queued(Some(1));
        a.queued(Some(2));
        a.queued(Some(2));
        for pkid in 1..=5 {
            a.sent(pkid);
        }
        a.acked(4);
        a.acked(5);
        assert_eq!(a.done(), None, "seq 2 acked, seq 1 not yet");
        a.acked(2);
        assert_eq!(a.done(), None);
        a.acked(3);
        assert_eq!(a.done(), Some(2));
    }

    #[test]
    fn shadow_versions_tokens_409_and_garbage() {
        let cfg = ShadowConfig {
            thing: "t1".into(),
            name: None,
            min_interval: crate::config::Dur(Duration::from_millis(0)),
        };
        let m: SharedMetrics = Arc::default();
        let mut s = Shadow::new(&cfg, "gw");
        assert_eq!(
            s.subscriptions()[0],
            "$aws/things/t1/shadow/update/accepted"
        );
        let get = s.on_connect();
        assert_eq!(get.topic, "$aws/things/t1/shadow/get");
        let live = Live::default();
        let up = s
            .maybe_update(&live, (0, 0), Timestamp(0))
            .expect("first update");
        let v: serde_json::Value = serde_json::from_str(&up.payload).expect("json");
        assert!(v["clientToken"].as_str().is_some_and(|t| t.len() <= 64));
        assert!(v["state"]["reported"]["gateway"]["version"].is_string());
        // Unchanged: no second update.
        assert!(s.maybe_update(&live, (0, 0), Timestamp(1)).is_none());
        // Garbage is survived.
        assert!(s
            .handle("$aws/things/t1/shadow/update/delta", b"{not json", &m)
            .is_empty());
        // 409 → re-get and a new update.
        let out = s.handle(
            "$aws/things/t1/shadow/update/rejected",
            br#"{"code":409,"message":"Version conflict","version":5}"#,
            &m,
        );
        assert_eq!(out[0].topic, "$aws/things/t1/shadow/get");
        assert!(s.maybe_update(&live, (0, 0), Timestamp(2)).is_some());
        // Old version dropped.
        s.handle(
            "$aws/things/t1/shadow/update/delta",
            br#"{"version":3,"state":{"x":1}}"#,
            &m,
        );
        assert!(s.desired.is_none());
        s.handle(
            "$aws/things/t1/shadow/update/delta",
            br#"{"version":6,"state":{"x":1}}"#,
            &m,
        );
        assert!(s.desired.is_some());
        let up = s
            .maybe_update(&live, (0, 0), Timestamp(3))
            .expect("reports not applied");
        assert!(up.payload.contains("\"applied\":false"));
    }

    #[test]
    fn shadow_document_is_trimmed_to_8kb_keeping_alerts() {
        let cfg = ShadowConfig {
            thing: "t".into(),
            name: Some("gw".into()),
            min_interval: crate::config::Dur(Duration::ZERO),
        };
        let s = Shadow::new(&cfg, "gw");
        let mut live = Live::default();
        for i in 0..500 {
            live.sensors.insert(
                format!("sensor_{i:04}"),
                crate::app::LatestValue {
                    v: Some(i as f64),
                    ts: 1,
                    q: "good",
                },
            );
        }
        let (doc, trimmed) = s.reported(&live, (0, 0), Timestamp(0));
        assert!(trimmed > 0);
        assert!(doc.to_string().len() <= SHADOW_MAX_BYTES);
        assert!(doc["alerts"].is_array());
    }
}

/// Options of the `watchpost alerts` viewer.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// Broker URL.
    pub broker: String,
    /// Gateway id, or all gateways.
    pub gateway: Option<String>,
    /// Topic prefix.
    pub prefix: String,
    /// TLS CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// TLS client certificate.
    pub cert_file: Option<std::path::PathBuf>,
    /// TLS client key.
    pub key_file: Option<std::path::PathBuf>,
    /// Username.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Exit after this many live events.
    pub count: Option<usize>,
    /// ANSI colours.
    pub color: bool,
}

fn colored(a: &Alert, color: bool) -> String {
    let line = format!("{} {}", a.device, a.summary());
    if !color {
        return line;
    }
    let code = match (a.state, a.severity) {
        (crate::model::AlertState::Cleared, _) => "32",
        (_, crate::model::Severity::Critical) => "1;31",
        _ => "33",
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// Subscribe and print alerts: the active ones (from the retained topics) first, then every transition live.
pub async fn view(o: ViewOptions) -> Result<(), String> {
    crate::install_crypto_provider();
    let (tls, host, port) = parse_url(&o.broker)?;
    let mut opts = MqttOptions::new(
        format!("watchpost-viewer-{}", fastrand::u32(..)),
        host,
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(u) = &o.username {
        opts.set_credentials(u.clone(), o.password.clone().unwrap_or_default());
    }
    if tls {
        let c = tls_config(
            o.ca_file.as_deref(),
            o.cert_file.as_deref(),
            o.key_file.as_deref(),
            &[],
        )?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(c),
        )));
    }
    let (client, mut ev) = AsyncClient::new(opts, 64);
    let gw = o.gateway.clone().unwrap_or_else(|| "+".into());
    let prefix = o.prefix.trim_end_matches('/');
    client
        .subscribe(format!("{prefix}/{gw}/alerts/+"), QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    client
        .subscribe(format!("{prefix}/{gw}/events"), QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let mut active: BTreeMap<String, Alert> = BTreeMap::new();
    let mut live = false;
    let mut seen = 0usize;
    let settle = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle, if !live => {
                live = true;
                println!("── active alerts: {} ──", active.len());
                for a in active.values() {
                    println!("{}", colored(a, o.color));
                }
                if o.count == Some(0) {
                    return Ok(());
                }
                println!("── live ──");
            }
            e = ev.poll() => match e {
                Ok(Event::Incoming(Packet::SubAck(_))) if !live => {
                    // Retained messages follow the SUBACK at once; give them a moment.
                    settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(700));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(a) = serde_json::from_slice::<Alert>(&p.payload) else {
                        eprintln!("(ignored a malformed message on {})", p.topic);
                        continue;
                    };
                    if p.topic.ends_with("/events") {
                        if live {
                            println!("{}", colored(&a, o.color));
                            seen += 1;
                            if o.count.is_some_and(|c| seen >= c) {
                                return Ok(());
                            }
                        }
                    } else if p.retain && !live {
                        if a.state == crate::model::AlertState::Cleared {
                            active.remove(&p.topic);
                        } else {
                            active.insert(p.topic.clone(), a);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{}: {e}", o.broker)),
            }
        }
    }
}
