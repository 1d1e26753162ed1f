//! Internal counters, exposed in Prometheus text format on `[metrics] listen`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Process-wide counters. Cheap to clone (an `Arc`).
#[derive(Default, Debug)]
pub struct Metrics {
    /// Readings accepted by the pipeline.
    pub readings: AtomicU64,
    /// Readings with quality other than good.
    pub readings_bad: AtomicU64,
    /// Alert transitions.
    pub alerts: AtomicU64,
    /// Batches committed to the store.
    pub flushes: AtomicU64,
    /// Store write failures.
    pub store_errors: AtomicU64,
    /// The last store commit failed (the health endpoint reports it).
    pub store_failing: std::sync::atomic::AtomicBool,
    /// Readings dropped by the cap or by memory pressure.
    pub dropped: AtomicU64,
    /// Source read failures (timeouts, exceptions, I/O).
    pub source_errors: AtomicU64,
    /// Sum of poll latencies in microseconds.
    pub poll_latency_us: AtomicU64,
    /// Number of polls.
    pub polls: AtomicU64,
    /// Readings whose timestamp was moved forward so one sensor's timestamps keep increasing (clock stepped back).
    pub clock_adjusted: AtomicU64,
    /// Alert events dropped because the disk refused writes for too long (memory bound).
    pub dropped_alerts: AtomicU64,
    /// Malformed messages received on subscribed MQTT topics (shadow), dropped.
    pub mqtt_malformed: AtomicU64,
    /// Operator commands applied.
    pub commands_accepted: AtomicU64,
    /// Operator commands refused (unknown id, already acknowledged, over the cap, busy, disabled).
    pub commands_rejected: AtomicU64,
    /// Command messages that could not be read (not JSON, unknown verb or field, too large).
    pub commands_malformed: AtomicU64,
    /// Per-sink counters, by sink name.
    sinks: std::sync::Mutex<std::collections::BTreeMap<&'static str, Arc<SinkMetrics>>>,
    /// When the async runtime last beat (ms since the epoch; 0: not started).
    async_beat: AtomicU64,
    /// The live state (latest value per sensor, active alarms), once the daemon runs.
    live: std::sync::Mutex<Option<tokio::sync::watch::Receiver<Arc<crate::model::Live>>>>,
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

/// A labelled metric family: name, help, type and how to read it from a sink's counters.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SinkMetrics) -> String,
);

/// How a sink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SinkState {
    /// Starting or caught up and healthy.
    Up = 0,
    /// Deliveries fail (retrying).
    Failing = 1,
    /// The sink cannot start (bad configuration, missing secret); retried periodically.
    Failed = 2,
}

/// Counters of one sink, kept by the sink runner.
#[derive(Default, Debug)]
pub struct SinkMetrics {
    /// Items delivered (readings or events).
    pub delivered: AtomicU64,
    /// Failed deliveries that will be retried.
    pub retries: AtomicU64,
    /// Items dead-lettered.
    pub dead: AtomicU64,
    /// Items not yet delivered (refreshed every few seconds).
    pub backlog: AtomicI64,
    /// Connection failures.
    pub errors: AtomicU64,
    /// Messages the far side accepted: mails (email routes), telemetry publishes; 0 for other sinks.
    pub messages: AtomicU64,
    /// Chunks read back from the store (a backlog, a restart, a retry); a caught-up sink takes each commit from
    /// memory instead.
    pub store_reads: AtomicU64,
    state: std::sync::atomic::AtomicU8,
}

impl SinkMetrics {
    /// Current state.
    pub fn state(&self) -> SinkState {
        match self.state.load(Ordering::Relaxed) {
            0 => SinkState::Up,
            1 => SinkState::Failing,
            _ => SinkState::Failed,
        }
    }
    /// Set the state.
    pub fn set_state(&self, s: SinkState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

impl Metrics {
    /// The counters of sink `name` (created on first use: only a running sink's own code calls this).
    pub fn sink(&self, name: &'static str) -> Arc<SinkMetrics> {
        let mut m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(name).or_default())
    }

    /// The counters of sink `name` if it runs (readers: nothing unconfigured shows up as a sink).
    pub fn sink_if_running(&self, name: &str) -> Option<Arc<SinkMetrics>> {
        let m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        m.get(name).cloned()
    }

    /// Every running sink's backlog (items not yet delivered), by name: the registered sinks, whatever they are.
    pub fn backlogs(&self) -> std::collections::BTreeMap<&'static str, i64> {
        let m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(n, s)| (*n, s.backlog.load(Ordering::Relaxed)))
            .collect()
    }

    /// Forget sink `name` (a reload removed it): it no longer shows in `/metrics` or `/readyz`.
    pub fn remove_sink(&self, name: &str) {
        let mut m = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(name);
    }

    /// Serve the live state too: each sensor's last value and quality, the active alarms by severity.
    pub fn watch_live(&self, live: tokio::sync::watch::Receiver<Arc<crate::model::Live>>) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(live);
    }

    /// What an operator looks for first: the build, each sensor's last value and quality, active alarms.
    fn render_live(&self, s: &mut String) {
        s.push_str(
            "# HELP watchpost_build_info The running build: version, git revision and target.
# TYPE watchpost_build_info gauge
",
        );
        s.push_str(&format!(
            "watchpost_build_info{{version=\"{}\",revision=\"{}\",target=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            label(env!("WATCHPOST_GIT_REV")),
            label(env!("WATCHPOST_TARGET"))
        ));
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| Arc::clone(&l.borrow()));
        let Some(live) = live else {
            return;
        };
        s.push_str(
            "# HELP watchpost_sensor_value Each sensor's last value (NaN when it was not a number).
# TYPE watchpost_sensor_value gauge
",
        );
        for (id, v) in &live.sensors {
            let value = v.v.map_or_else(|| "NaN".to_string(), |x| x.to_string());
            s.push_str(&format!(
                "watchpost_sensor_value{{sensor=\"{}\"}} {value}\n",
                label(id)
            ));
        }
        s.push_str("# HELP watchpost_sensor_good Whether each sensor's last reading was good (1) or not (0), with its quality.
# TYPE watchpost_sensor_good gauge
");
        for (id, v) in &live.sensors {
            s.push_str(&format!(
                "watchpost_sensor_good{{sensor=\"{}\",quality=\"{}\"}} {}\n",
                label(id),
                v.q,
                u8::from(v.q == "good")
            ));
        }
        s.push_str("# HELP watchpost_sensor_last_reading_timestamp_seconds When each sensor's last reading was taken.
# TYPE watchpost_sensor_last_reading_timestamp_seconds gauge
");
        for (id, v) in &live.sensors {
            s.push_str(&format!(
                "watchpost_sensor_last_reading_timestamp_seconds{{sensor=\"{}\"}} {:.3}\n",
                label(id),
                v.ts as f64 / 1000.0
            ));
        }
        s.push_str(
            "# HELP watchpost_alarms_active Active alarms by severity.
# TYPE watchpost_alarms_active gauge
",
        );
        for sev in [
            crate::model::Severity::Warning,
            crate::model::Severity::Critical,
        ] {
            let n = live.alerts.iter().filter(|a| a.severity == sev).count();
            s.push_str(&format!(
                "watchpost_alarms_active{{severity=\"{}\"}} {n}\n",
                sev.as_str()
            ));
        }
        if let Some(k) = &live.kpi {
            for (name, help, v) in [
                ("per_10min", "Annunciated alarms per 10 minutes, averaged over the KPI period (EEMUA 191: ~1 acceptable, 2 manageable).", k.per_10min),
                ("per_hour", "Annunciated alarms per hour, averaged over the KPI period.", k.per_hour),
                ("max_per_10min", "The most annunciated alarms in one 10-minute period of the KPI period.", k.max_per_10min as f64),
                ("flood_percent", "Share of 10-minute periods in flood over the KPI period, in % (target < 1).", k.flood_percent),
                ("bad_actors_percent", "Share of the alarm load from the ten most frequent sensors, in %.", k.bad_actors_percent),
                ("chattering", "Sensors flagged chattering in the KPI period.", k.chattering as f64),
                ("standing", "Process alarms standing now.", k.standing as f64),
                ("stale", "Standing alarms active longer than [alarms] stale_after.", k.stale as f64),
            ] {
                s.push_str(&format!(
                    "# HELP watchpost_alarm_kpi_{name} {help}\n# TYPE watchpost_alarm_kpi_{name} gauge\nwatchpost_alarm_kpi_{name} {v}\n"
                ));
            }
        }
    }

    /// The async runtime is alive (a task the ingest thread spawns on it every few seconds under the systemd watchdog).
    pub fn beat(&self) {
        self.async_beat
            .store(crate::model::Timestamp::now().0 as u64, Ordering::Relaxed);
    }

    /// Whether the async runtime beat within `within` (the ingest thread feeds the systemd watchdog only then: a
    /// wedged runtime — sources, sinks, signals — must not look alive because the store thread is).
    pub fn async_alive(&self, within: std::time::Duration) -> bool {
        let last = self.async_beat.load(Ordering::Relaxed);
        let now = crate::model::Timestamp::now().0 as u64;
        last != 0 && now.saturating_sub(last) <= within.as_millis() as u64
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let l = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut c = |name: &str, help: &str, kind: &str, v: String| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        c(
            "watchpost_readings_total",
            "Readings accepted by the pipeline.",
            "counter",
            l(&self.readings).to_string(),
        );
        c(
            "watchpost_readings_bad_total",
            "Readings of bad quality.",
            "counter",
            l(&self.readings_bad).to_string(),
        );
        c(
            "watchpost_alerts_total",
            "Alert transitions.",
            "counter",
            l(&self.alerts).to_string(),
        );
        c(
            "watchpost_store_flushes_total",
            "Reading batches committed.",
            "counter",
            l(&self.flushes).to_string(),
        );
        c(
            "watchpost_store_errors_total",
            "Store write failures.",
            "counter",
            l(&self.store_errors).to_string(),
        );
        c(
            "watchpost_readings_dropped_total",
            "Readings dropped by the buffer cap.",
            "counter",
            l(&self.dropped).to_string(),
        );
        c(
            "watchpost_source_errors_total",
            "Failed sensor reads.",
            "counter",
            l(&self.source_errors).to_string(),
        );
        // One summary without quantiles: `_sum` and `_count` under one family (promtool checks this).
        s.push_str(&format!(
            "# HELP watchpost_poll_latency_seconds Time from sending a poll to its readings.\n\
             # TYPE watchpost_poll_latency_seconds summary\n\
             watchpost_poll_latency_seconds_sum {}\nwatchpost_poll_latency_seconds_count {}\n",
            l(&self.poll_latency_us) as f64 / 1e6,
            l(&self.polls)
        ));
        let mut c = |name: &str, help: &str, kind: &str, v: String| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        c(
            "watchpost_readings_clock_adjusted_total",
            "Readings stamped 1 ms after the sensor's previous one because the wall clock went back.",
            "counter",
            l(&self.clock_adjusted).to_string(),
        );
        c(
            "watchpost_alerts_dropped_total",
            "Alert events dropped while the disk refused writes (memory bound reached).",
            "counter",
            l(&self.dropped_alerts).to_string(),
        );
        c(
            "watchpost_mqtt_malformed_total",
            "Malformed messages received on subscribed MQTT topics, dropped.",
            "counter",
            l(&self.mqtt_malformed).to_string(),
        );
        s.push_str("# HELP watchpost_commands_total Operator commands received over MQTT, by result.\n# TYPE watchpost_commands_total counter\n");
        for (result, v) in [
            ("accepted", &self.commands_accepted),
            ("rejected", &self.commands_rejected),
            ("malformed", &self.commands_malformed),
        ] {
            s.push_str(&format!(
                "watchpost_commands_total{{result=\"{result}\"}} {}\n",
                l(v)
            ));
        }
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let fams: [Family; 8] = [
            ("watchpost_sink_delivered_total", "Items (readings or alert events) the far side acknowledged.", "counter", |m| m.delivered.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_retries_total", "Failed deliveries that will be retried.", "counter", |m| m.retries.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_dead_letter_total", "Items dead-lettered: rejected by the far side as malformed, or too large for it ever to carry.", "counter", |m| m.dead.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_backlog", "Items not yet delivered.", "gauge", |m| m.backlog.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_connection_errors_total", "Connection failures.", "counter", |m| m.errors.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_messages_total", "Messages the far side accepted: mails (SMTP 250) for email routes, publishes (PUBACK) for telemetry; 0 for other sinks.", "counter", |m| m.messages.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_store_reads_total", "Chunks the sink read back from the store (a backlog, a restart, a retry); a caught-up sink takes each commit from memory.", "counter", |m| m.store_reads.load(Ordering::Relaxed).to_string()),
            ("watchpost_sink_up", "1 when the sink runs and its last delivery succeeded, 0 when it is failing or cannot start.", "gauge", |m| i64::from(m.state() == SinkState::Up).to_string()),
        ];
        for (name, help, kind, f) in fams {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (sink, m) in &sinks {
                s.push_str(&format!("{name}{{sink=\"{sink}\"}} {}\n", f(m)));
            }
        }
        self.render_live(&mut s);
        s
    }
}

impl Metrics {
    /// `/healthz` (alive: the store takes writes) or `/readyz` (and every sink delivers): status code and JSON body.
    pub fn health(&self, ready: bool) -> (u16, String) {
        let store_ok = !self.store_failing.load(Ordering::Relaxed);
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut states = serde_json::Map::new();
        let mut sinks_ok = true;
        for (name, m) in &sinks {
            let s = match m.state() {
                SinkState::Up => "up",
                SinkState::Failing => "failing",
                SinkState::Failed => "cannot start",
            };
            sinks_ok &= m.state() == SinkState::Up;
            states.insert(name.to_string(), serde_json::Value::from(s));
        }
        let ok = store_ok && (!ready || sinks_ok);
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "store": if store_ok { "ok" } else { "failing" },
            "sinks": states,
        });
        (if ok { 200 } else { 503 }, body.to_string())
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Connections the metrics endpoint holds open at once.
const MAX_CONNECTIONS: usize = 256;

/// Serve `/metrics` (Prometheus text), `/healthz` and `/readyz` (JSON, 200 or 503) on `listen` until cancelled;
/// other paths answer 404.
pub async fn serve(listen: String, metrics: SharedMetrics, token: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %listen, error = %e, "Cannot open the metrics endpoint.");
            return;
        }
    };
    tracing::info!(listen = %listen, "Metrics endpoint listening.");
    // Connections open at once (file descriptors); each has its own task, so one that sends nothing (a port scan,
    // a stuck client) costs its slot for at most the read timeout and never delays a probe.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        tokio::select! {
            _ = token.cancelled() => break,
            acc = listener.accept() => {
                let mut sock = match acc {
                    Ok((sock, _)) => sock,
                    Err(e) => {
                        // Out of file descriptors (EMFILE) and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "Metrics endpoint cannot accept a connection.");
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        }
                    }
                };
                let m = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut buf = [0u8; 1024];
                    let n = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf))
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .unwrap_or(0);
                    // "GET /path?query HTTP/1.1"
                    let head = std::str::from_utf8(&buf[..n]).unwrap_or("");
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let path = path.split('?').next().unwrap_or(path);
                    let (code, ctype, body) = match path {
                        "/metrics" | "/" => (200, "text/plain; version=0.0.4", m.render()),
                        "/healthz" | "/readyz" => {
                            let (c, b) = m.health(path == "/readyz");
                            (c, "application/json", b)
                        }
                        _ => (404, "text/plain", "not found: try /metrics, /healthz or /readyz\n".to_string()),
                    };
                    let reason = match code {
                        200 => "OK",
                        503 => "Service Unavailable",
                        _ => "Not Found",
                    };
                    let resp = format!(
                        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The systemd watchdog is fed only while the async runtime beats: a beat 11 s old counts as wedged.
    #[test]
    fn a_runtime_that_stopped_beating_is_not_alive() {
        let m = Metrics::default();
        assert!(
            !m.async_alive(Duration::from_secs(10)),
            "not before the first beat: a runtime that never ran the beat is not shown alive"
        );
        m.beat();
        assert!(m.async_alive(Duration::from_secs(10)));
        let old = crate::model::Timestamp::now().0 as u64 - 11_000;
        m.async_beat.store(old, Ordering::Relaxed);
        assert!(!m.async_alive(Duration::from_secs(10)));
    }

    #[test]
    fn only_running_sinks_are_reported() {
        let m = Metrics::default();
        assert!(m.sink_if_running("influxdb").is_none());
        let _ = m.sink("mqtt");
        assert!(m.health(true).1.contains("mqtt"));
        m.remove_sink("mqtt");
        assert!(!m.health(true).1.contains("mqtt"));
        assert!(!m.render().contains("sink=\"influxdb\""));
    }
}
