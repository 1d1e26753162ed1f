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
    /// Readings dropped by the cap or by memory pressure.
    pub dropped: AtomicU64,
    /// Source read failures (timeouts, exceptions, I/O).
    pub source_errors: AtomicU64,
    /// Sum of poll latencies in microseconds.
    pub poll_latency_us: AtomicU64,
    /// Number of polls.
    pub polls: AtomicU64,
    /// InfluxDB sink: readings delivered.
    pub influx_sent: AtomicU64,
    /// InfluxDB sink: retries.
    pub influx_retries: AtomicU64,
    /// InfluxDB sink: readings in batches dead-lettered.
    pub influx_dead: AtomicU64,
    /// InfluxDB sink: backlog readings.
    pub influx_backlog: AtomicI64,
    /// MQTT sink: events delivered.
    pub mqtt_sent: AtomicU64,
    /// MQTT sink: backlog events.
    pub mqtt_backlog: AtomicI64,
    /// MQTT sink: connection failures.
    pub mqtt_errors: AtomicU64,
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let l = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let g = |v: &AtomicI64| v.load(Ordering::Relaxed);
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
        let polls = l(&self.polls);
        c(
            "watchpost_poll_latency_seconds_sum",
            "Total poll latency.",
            "counter",
            format!("{}", l(&self.poll_latency_us) as f64 / 1e6),
        );
        c(
            "watchpost_poll_latency_seconds_count",
            "Polls.",
            "counter",
            polls.to_string(),
        );
        c(
            "watchpost_influxdb_sent_total",
            "Readings delivered to InfluxDB.",
            "counter",
            l(&self.influx_sent).to_string(),
        );
        c(
            "watchpost_influxdb_retries_total",
            "InfluxDB write retries.",
            "counter",
            l(&self.influx_retries).to_string(),
        );
        c(
            "watchpost_influxdb_dead_letter_total",
            "Readings rejected by InfluxDB as malformed.",
            "counter",
            l(&self.influx_dead).to_string(),
        );
        c(
            "watchpost_influxdb_backlog",
            "Readings not yet delivered to InfluxDB.",
            "gauge",
            g(&self.influx_backlog).to_string(),
        );
        c(
            "watchpost_mqtt_sent_total",
            "Alert events acknowledged by the broker.",
            "counter",
            l(&self.mqtt_sent).to_string(),
        );
        c(
            "watchpost_mqtt_backlog",
            "Alert events not yet acknowledged.",
            "gauge",
            g(&self.mqtt_backlog).to_string(),
        );
        c(
            "watchpost_mqtt_connection_errors_total",
            "MQTT connection failures.",
            "counter",
            l(&self.mqtt_errors).to_string(),
        );
        s
    }
}

/// Serve `/metrics` on `listen` until cancelled. Any path answers with the metrics.
pub async fn serve(listen: String, metrics: SharedMetrics, token: CancellationToken) {
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %listen, error = %e, "Cannot open the metrics endpoint.");
            return;
        }
    };
    tracing::info!(listen = %listen, "Metrics endpoint listening.");
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            acc = listener.accept() => {
                let Ok((mut sock, _)) = acc else { continue };
                let m = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
                    let body = m.render();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        }
    }
}
