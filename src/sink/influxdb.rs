//! InfluxDB v2 write API sink (`POST /api/v2/write`), accepted by InfluxDB 2.x, InfluxDB 3 and VictoriaMetrics.
//!
//! Reads reading batches after its cursor, encodes line protocol ([`super::lineproto`]), gzips and posts it, and
//! advances the cursor only on 2xx. Error semantics (Telegraf's): 429/503/5xx and network errors → retry with
//! jittered exponential backoff, honouring `Retry-After`; 413 → split the request and send the halves;
//! 400/422 → dead-letter the stored batches (kept, counted, shown by `buffer status`) and move on;
//! 401/403/404 → ERROR naming the cause, keep the data, retry slowly. The cursor, retries and dead letters are
//! the [`super::runner`]'s: this module only encodes, posts and classifies.

use super::lineproto::Encoder;
use super::{Items, SinkError};
use crate::config::{resolve_secret, InfluxConfig};
use crate::store::Stream;
use std::time::Duration;

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

/// The HTTP side of the sink (cheap to clone: the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The write endpoint, parsed once (a `&str` is parsed again for every request).
    url: reqwest::Url,
    /// `Authorization: Token …`, built once and marked sensitive (left out of debug output).
    auth: Option<reqwest::header::HeaderValue>,
    gzip: bool,
    /// One deflate state (~235 kB) for every request: a fresh one per request was mapped, zeroed (page faults)
    /// and unmapped (a TLB shootdown) once a write, 4 % of the gateway workload's CPU once the rest was lean.
    /// `None` until the first write and while a request uses it (a concurrent one makes its own).
    deflate: std::sync::Arc<std::sync::Mutex<Option<super::gzip::Gzip>>>,
}

impl Client {
    /// Build from config (resolves the token).
    pub fn new(cfg: &InfluxConfig) -> Result<Client, super::SetupError> {
        crate::install_crypto_provider();
        let token = resolve_secret(
            &cfg.token,
            &cfg.token_file,
            &cfg.token_env,
            &cfg.token_credential,
        )
        .map_err(super::SetupError::Secret)?;
        let tls = if cfg.url.starts_with("https://") {
            crate::tls::client_config(cfg.ca_file.as_deref(), None, None, &[])?
        } else {
            crate::tls::no_tls()?
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // A write API does not redirect; following one could leave the configured server and its TLS.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(cfg.timeout.0)
            .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| super::SetupError::Http(e.to_string()))?;
        let base = cfg.url.trim_end_matches('/');
        let url = format!(
            "{base}/api/v2/write?org={}&bucket={}&precision={}",
            urlencode(&cfg.org),
            urlencode(&cfg.bucket),
            urlencode(&cfg.precision)
        );
        let url = reqwest::Url::parse(&url)
            .map_err(|e| super::SetupError::Url(format!("influxdb.url {:?}: {e}", cfg.url)))?;
        let auth = token
            .map(|t| {
                let mut v = reqwest::header::HeaderValue::try_from(format!("Token {t}")).map_err(|_| {
                    super::SetupError::Secret(
                        "the InfluxDB token has a character an HTTP header cannot carry (a control character or a line break)"
                            .into(),
                    )
                })?;
                v.set_sensitive(true);
                Ok::<_, super::SetupError>(v)
            })
            .transpose()?;
        Ok(Client {
            http,
            url,
            auth,
            gzip: cfg.gzip,
            deflate: Default::default(),
        })
    }

    async fn post(&self, body: &str) -> Outcome {
        let mut req = self
            .http
            .post(self.url.clone())
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        let req = if self.gzip {
            let mut gz = crate::util::lock(&self.deflate).take().unwrap_or_default();
            let encoded = gz.encode(body.as_bytes());
            *crate::util::lock(&self.deflate) = Some(gz);
            match encoded {
                Ok(b) => req.header("Content-Encoding", "gzip").body(b),
                Err(e) => return Outcome::Retry(None, format!("gzip failed: {e}")),
            }
        } else {
            req.body(body.to_string())
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry(None, format!("request failed: {}", crate::util::chain(&e)))
            }
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

    /// Send a body of whole lines, splitting it on 413. Returns the first non-OK outcome.
    async fn send(&self, body: &str) -> Outcome {
        let mut stack: Vec<&str> = vec![body];
        while let Some(chunk) = stack.pop() {
            if chunk.is_empty() {
                continue;
            }
            match self.post(chunk).await {
                Outcome::Ok => {}
                Outcome::TooLarge => match halve(chunk) {
                    Some((a, b)) => {
                        tracing::warn!(
                            lines = chunk.matches('\n').count(),
                            "InfluxDB answered 413 (too large); splitting the batch."
                        );
                        stack.push(b);
                        stack.push(a);
                    }
                    None => return Outcome::TooLargeLine("HTTP 413 for a single line".into()),
                },
                other => return other,
            }
        }
        Outcome::Ok
    }
}

/// `body` (whole lines) cut at the line boundary nearest its middle; `None` for a single line.
fn halve(body: &str) -> Option<(&str, &str)> {
    let b = body.as_bytes();
    let mid = b.len() / 2;
    // The first line that starts at or after the middle, or else the last one before it.
    let from = mid.saturating_sub(1);
    let after = b[from..b.len().saturating_sub(1)]
        .iter()
        .position(|&c| c == b'\n')
        .map(|i| from + i + 1);
    let before = || b[..mid].iter().rposition(|&c| c == b'\n').map(|i| i + 1);
    let cut = after.or_else(before).filter(|&c| c > 0 && c < b.len())?;
    Some(body.split_at(cut))
}

/// The InfluxDB sink: encodes reading batches as line protocol and posts them.
pub struct InfluxSink {
    client: Client,
    enc: Encoder,
    max_items: usize,
    max_rate: u64,
    write_interval: Duration,
    /// The last write's body, emptied, for the next one: a fresh body per write (~140 kB at the gateway workload,
    /// above the allocator's 64 kB mapping threshold) was a mapping of its own, grown once (`mremap`), faulted in
    /// page by page and unmapped again, every write. `None` while a write holds it (a second one in the window
    /// makes its own).
    spare: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// A body up to this size is kept for the next write; a larger one is kept only while a backlog drains (full
/// chunks, the next needs as much) and let go with the first write after it.
const KEEP_BODY: usize = 512 << 10;

impl InfluxSink {
    /// The sink of `cx.cfg.influxdb` (resolves the token).
    pub fn open(cx: &super::SinkContext) -> Result<InfluxSink, SinkError> {
        let icfg = cx.cfg.influxdb.as_ref().ok_or_else(|| SinkError::Refused {
            reason: "no [influxdb] section".into(),
        })?;
        let client = Client::new(icfg)?;
        tracing::info!(url = %icfg.url, "InfluxDB sink ready.");
        Ok(InfluxSink {
            client,
            enc: Encoder::from_config(&cx.cfg, None),
            // ~64 bytes per line before gzip: a chunk of about `batch_size` bytes.
            max_items: (icfg.batch_size.0 as usize / 64).max(1),
            max_rate: icfg.max_rate,
            write_interval: icfg.write_interval.0,
            spare: Default::default(),
        })
    }
}

impl super::Sink for InfluxSink {
    fn name(&self) -> &'static str {
        SINK
    }
    fn stream(&self) -> Stream {
        Stream::Readings
    }
    fn max_items(&self) -> usize {
        self.max_items
    }
    fn window(&self) -> usize {
        // The next body is read and encoded while the server stores the previous one; writes are idempotent and
        // acknowledged in order.
        2
    }
    fn max_rate(&self) -> Option<u64> {
        (self.max_rate > 0).then_some(self.max_rate)
    }
    fn linger(&self) -> Duration {
        self.write_interval
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        let spare = std::sync::Arc::clone(&self.spare);
        let mut body = crate::util::lock(&spare).take().unwrap_or_default();
        let full = items.count() >= self.max_items as u64;
        // 413 splits by line. ~64 bytes a line: one allocation, not a doubling series of them.
        body.reserve(
            usize::try_from(items.count())
                .unwrap_or(0)
                .saturating_mul(72),
        );
        if let Items::Readings(batches) = items {
            for b in batches {
                for r in &b.readings {
                    self.enc.line(&mut body, r);
                }
            }
        }
        let client = self.client.clone();
        async move {
            let outcome = if body.is_empty() {
                Ok(())
            } else {
                classify(client.send(&body).await)
            };
            if full || body.capacity() <= KEEP_BODY {
                body.clear();
                *crate::util::lock(&spare) = Some(body);
            }
            outcome
        }
    }
}

fn classify(outcome: Outcome) -> Result<(), SinkError> {
    match outcome {
        Outcome::Ok => Ok(()),
        Outcome::Malformed(reason) | Outcome::TooLargeLine(reason) => {
            Err(SinkError::Rejected { reason })
        }
        Outcome::TooLarge => Err(SinkError::Retry {
            after: None,
            reason: "HTTP 413".into(),
        }),
        Outcome::Auth(code, text) => {
            let cause = match code {
                401 => "the token is missing or wrong",
                403 => "the token may not write to this bucket",
                _ => {
                    "the org or bucket does not exist (or the URL is not an InfluxDB v2 write API)"
                }
            };
            Err(SinkError::Refused {
                reason: format!(
                    "InfluxDB refused the write (HTTP {code}): {cause}; server said: {text}"
                ),
            })
        }
        Outcome::Retry(after, reason) => Err(SinkError::Retry { after, reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::{halve, Client, Outcome};
    use crate::config::InfluxConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config(url: String, token: &str) -> InfluxConfig {
        InfluxConfig {
            url,
            org: "o".into(),
            bucket: "b".into(),
            token: Some(token.into()),
            ..InfluxConfig::defaults()
        }
    }

    /// What the server is sent: the token once as `Authorization: Token …`, on the configured endpoint.
    #[tokio::test]
    async fn sends_the_token_and_the_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Up to the end of the headers (the body is not looked at).
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before the headers ended");
                got.extend_from_slice(&buf[..n]);
            }
            sock.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        let client = Client::new(&config(format!("http://{addr}/"), "s3cret")).expect("client");
        assert!(matches!(client.post("m v=1 1\n").await, Outcome::Ok));
        let head = server.await.expect("server");
        let lower = head.to_ascii_lowercase();
        assert!(
            head.starts_with("POST /api/v2/write?org=o&bucket=b&precision=ms HTTP/1.1\r\n"),
            "{head}"
        );
        assert_eq!(
            lower.matches("\r\nauthorization: token s3cret\r\n").count(),
            1,
            "{head}"
        );
    }

    /// A token an HTTP header cannot carry is refused when the sink is set up, not by every request.
    #[test]
    fn a_token_with_a_line_break_is_refused_at_setup() {
        let e = Client::new(&config("http://127.0.0.1:9/".into(), "abc\ndef"))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("InfluxDB token"), "{e}");
    }

    #[test]
    fn halves_at_a_line_boundary_near_the_middle() {
        assert_eq!(
            halve("a 1\nb 2\nc 3\nd 4\n"),
            Some(("a 1\nb 2\n", "c 3\nd 4\n"))
        );
        // The middle falls in a long last line: cut before it.
        assert_eq!(
            halve("a 1\nb 2222222222222222\n"),
            Some(("a 1\n", "b 2222222222222222\n"))
        );
        // Every half is whole lines, and together they are the body.
        let body: String = (0..37).map(|i| format!("m v={i}\n")).collect();
        let (a, b) = halve(&body).expect("many lines");
        assert!(a.ends_with('\n') && b.ends_with('\n'));
        assert_eq!(format!("{a}{b}"), body);
        // Within a line (7 bytes at most here) of the middle.
        assert!(a.len().abs_diff(b.len()) <= 2 * 7);
    }

    #[test]
    fn a_single_line_does_not_split() {
        assert_eq!(halve("m v=1 1\n"), None);
        assert_eq!(halve("m v=1 1"), None);
        assert_eq!(halve("\n"), None);
    }
}
