//! InfluxDB v2 write API sink (`POST /api/v2/write`), accepted by InfluxDB 2.x, InfluxDB 3 and VictoriaMetrics.
//!
//! Reads reading batches after its cursor, encodes line protocol ([`super::lineproto`]), gzips and posts it, and
//! advances the cursor only on 2xx. Error semantics (Telegraf's): 429/503/5xx and network errors → retry with
//! jittered exponential backoff, honouring `Retry-After`; 413 → split the request and send the halves;
//! 400/422 → dead-letter the stored batches (kept, counted, shown by `buffer status`) and move on;
//! 401/403/404 → ERROR naming the cause, keep the data, retry slowly.

use super::lineproto::Encoder;
use super::{resolve_secret, Backoff, SinkCtl};
use crate::app::Signals;
use crate::config::{Config, InfluxConfig};
use crate::metrics::SharedMetrics;
use crate::store::{Batch, Store, Stream};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const SINK: &str = "influxdb";

/// Outcome of one POST.
#[derive(Debug)]
enum Outcome {
    Ok,
    TooLarge,
    TooLargeLine(String),
    Malformed(String),
    Auth(u16, String),
    Retry(Option<Duration>, String),
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass through).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The HTTP side of the sink.
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    gzip: bool,
}

impl Client {
    /// Build from config (resolves the token).
    pub fn new(cfg: &InfluxConfig) -> Result<Client, String> {
        crate::install_crypto_provider();
        let token = resolve_secret(
            &cfg.token,
            &cfg.token_file,
            &cfg.token_env,
            &cfg.token_credential,
        )?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(cfg.timeout.0)
            .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let base = cfg.url.trim_end_matches('/');
        let url = format!(
            "{base}/api/v2/write?org={}&bucket={}&precision={}",
            urlencode(&cfg.org),
            urlencode(&cfg.bucket),
            urlencode(&cfg.precision)
        );
        Ok(Client {
            http,
            url,
            token,
            gzip: cfg.gzip,
        })
    }

    async fn post(&self, body: &str) -> Outcome {
        let mut req = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        let req = if self.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 8),
                flate2::Compression::fast(),
            );
            if enc.write_all(body.as_bytes()).is_err() {
                return Outcome::Retry(None, "gzip failed".into());
            }
            match enc.finish() {
                Ok(b) => req.header("Content-Encoding", "gzip").body(b),
                Err(e) => return Outcome::Retry(None, format!("gzip failed: {e}")),
            }
        } else {
            req.body(body.to_string())
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(None, format!("request failed: {e}")),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(500).collect();
        match status {
            200..=299 => Outcome::Ok,
            413 => Outcome::TooLarge,
            400 | 422 => Outcome::Malformed(format!("HTTP {status}: {text}")),
            401 | 403 | 404 => Outcome::Auth(status, text),
            _ => Outcome::Retry(retry_after, format!("HTTP {status}: {text}")),
        }
    }

    /// Send lines, splitting on 413. Returns the first non-OK outcome.
    async fn send(&self, lines: &[&str]) -> Outcome {
        let mut stack: Vec<&[&str]> = vec![lines];
        while let Some(chunk) = stack.pop() {
            if chunk.is_empty() {
                continue;
            }
            let mut body = String::with_capacity(chunk.iter().map(|l| l.len()).sum());
            for l in chunk {
                body.push_str(l);
            }
            match self.post(&body).await {
                Outcome::Ok => {}
                Outcome::TooLarge if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    tracing::warn!(
                        lines = chunk.len(),
                        "InfluxDB answered 413 (too large); splitting the batch."
                    );
                    stack.push(b);
                    stack.push(a);
                }
                Outcome::TooLarge => {
                    return Outcome::TooLargeLine("HTTP 413 for a single line".into())
                }
                other => return other,
            }
        }
        Outcome::Ok
    }
}

fn encoder(i: &InfluxConfig, cfg: &Config) -> Encoder {
    let mut common = i.tags.clone();
    common.insert("device".into(), cfg.gateway.id.clone());
    common.insert("location".into(), cfg.gateway.location.clone());
    let per: BTreeMap<String, BTreeMap<String, String>> = cfg
        .sensor
        .iter()
        .filter(|s| !s.tags.is_empty())
        .map(|s| (s.id.clone(), s.tags.clone()))
        .collect();
    Encoder::new(&i.measurement, &i.precision, common, per)
}

async fn open_store(cfg: &Config, ctl: &SinkCtl) -> Option<Store> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match tokio::task::block_in_place(|| Store::open_existing(&cfg.gateway.data_dir)) {
            Ok(s) => return Some(s),
            Err(e) => tracing::warn!(error = %e, "InfluxDB sink cannot open the store yet."),
        }
        tokio::select! {
            _ = ctl.stop.cancelled() => return None,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Run the sink until stopped (or, when draining, until caught up).
pub async fn run(
    icfg: InfluxConfig,
    cfg: Config,
    mut signals: Signals,
    metrics: SharedMetrics,
    ctl: SinkCtl,
) {
    let client = match Client::new(&icfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "InfluxDB sink disabled; readings stay in the local store.");
            return;
        }
    };
    let Some(mut store) = open_store(&cfg, &ctl).await else {
        return;
    };
    let mut enc = encoder(&icfg, &cfg);
    let mut cursor = store.cursor(SINK, Stream::Readings).unwrap_or(0);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let max_bytes = icfg.batch_size.0 as usize;
    let mut last_progress = Instant::now();
    let mut sent_since = 0u64;
    let rate_start = Instant::now();
    let mut rate_sent = 0u64;
    tracing::info!(url = %icfg.url, cursor, "InfluxDB sink started.");
    loop {
        if ctl.stop.is_cancelled() {
            break;
        }
        // Collect stored batches up to the byte budget.
        let mut batches: Vec<Batch> = Vec::new();
        let mut body_len = 0usize;
        let mut lines: Vec<String> = Vec::new();
        let mut after = cursor;
        'fill: loop {
            let got = match store.batches_after(after, 16) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "InfluxDB sink cannot read the store.");
                    break 'fill;
                }
            };
            if got.is_empty() {
                break;
            }
            for b in got {
                after = b.id;
                let mut s = String::with_capacity(b.readings.len() * 80);
                for r in &b.readings {
                    enc.line(&mut s, r);
                }
                body_len += s.len();
                lines.push(s);
                batches.push(b);
                if body_len >= max_bytes {
                    break 'fill;
                }
            }
        }
        if batches.is_empty() {
            metrics.influx_backlog.store(0, Ordering::Relaxed);
            if ctl.drain.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = ctl.stop.cancelled() => break,
                _ = ctl.drain.cancelled() => {}
                _ = signals.readings.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let n_readings: u64 = batches.iter().map(|b| b.readings.len() as u64).sum();
        // Each stored batch is one chunk of lines; a chunk holds many lines and 413 splits by chunk first.
        let split: Vec<&str> = lines.iter().flat_map(|s| s.split_inclusive('\n')).collect();
        let last_id = batches.last().map(|b| b.id).unwrap_or(cursor);
        let outcome = tokio::select! {
            _ = ctl.stop.cancelled() => break,
            o = client.send(&split) => o,
        };
        match outcome {
            Outcome::Ok => {
                if let Err(e) = store.ack(SINK, Stream::Readings, last_id) {
                    tracing::error!(error = %e, "Cannot save the InfluxDB cursor; the batch will be re-sent (idempotent).");
                }
                cursor = last_id;
                backoff.reset();
                metrics.influx_sent.fetch_add(n_readings, Ordering::Relaxed);
                sent_since += n_readings;
                rate_sent += n_readings;
            }
            Outcome::Malformed(msg) | Outcome::TooLargeLine(msg) => {
                tracing::warn!(batches = batches.len(), readings = n_readings, server = %msg,
                    "InfluxDB rejected the data as malformed; dead-lettering it (kept in the store) and moving on.");
                for b in &batches {
                    if let Err(e) = store.dead_letter(SINK, Stream::Readings, b.id, &msg) {
                        tracing::error!(error = %e, "Cannot record the dead letter.");
                    }
                }
                metrics.influx_dead.fetch_add(n_readings, Ordering::Relaxed);
                cursor = last_id;
            }
            Outcome::TooLarge => continue,
            Outcome::Auth(code, text) => {
                let cause = match code {
                    401 => "the token is missing or wrong",
                    403 => "the token may not write to this bucket",
                    _ => "the org or bucket does not exist (or the URL is not an InfluxDB v2 write API)",
                };
                tracing::error!(status = code, server = %text, "InfluxDB refused the write: {cause}. Data is kept; retrying in 60s.");
                metrics.influx_retries.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = ctl.stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                continue;
            }
            Outcome::Retry(after, why) => {
                let wait = after.unwrap_or_else(|| backoff.next_delay());
                tracing::warn!(reason = %why, retry_in_ms = wait.as_millis() as u64, "InfluxDB write failed; will retry.");
                metrics.influx_retries.fetch_add(1, Ordering::Relaxed);
                if ctl.drain.is_cancelled() {
                    break;
                }
                tokio::select! {
                    _ = ctl.stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        }
        // Progress while draining a backlog, and pacing.
        if last_progress.elapsed() >= Duration::from_secs(5) {
            let remaining = store
                .status(
                    &[(SINK.to_string(), Stream::Readings)],
                    crate::model::Timestamp::now(),
                )
                .ok()
                .and_then(|s| s.sinks.first().map(|x| x.pending))
                .unwrap_or(0);
            metrics
                .influx_backlog
                .store(remaining as i64, Ordering::Relaxed);
            if remaining > 0 {
                let rate = sent_since as f64 / last_progress.elapsed().as_secs_f64();
                let eta = if rate > 0.0 {
                    remaining as f64 / rate
                } else {
                    f64::INFINITY
                };
                tracing::info!(
                    sent = sent_since,
                    remaining,
                    rate_per_s = rate as u64,
                    eta_s = eta as u64,
                    "Draining InfluxDB backlog."
                );
            }
            last_progress = Instant::now();
            sent_since = 0;
        }
        if icfg.max_rate > 0 {
            let should_take = Duration::from_secs_f64(rate_sent as f64 / icfg.max_rate as f64);
            let elapsed = rate_start.elapsed();
            if should_take > elapsed {
                tokio::select! {
                    _ = ctl.stop.cancelled() => break,
                    _ = tokio::time::sleep(should_take - elapsed) => {}
                }
            }
        }
    }
}
