//! Email: alert events to people, as digests, over SMTP (lettre on tokio, the binary's one rustls).
//!
//! Every route (the `[email]` recipients, and each `[[email.route]]`) is its own [`Sink`] on the events stream with
//! its own cursor (`email`, `email.{name}`): the runner fetches the events after the cursor once the digest window
//! after the first new event has passed ([`Sink::linger`]), this sink keeps the ones the route wants and sends them
//! as one mail, and the cursor advances only when the server answered 250. A server that is down, refuses the
//! login or times out keeps the events in the store; a restart resumes from the cursor.
//!
//! A re-sent mail is the same mail: before a mail goes out, the last event it covers is written to the route's
//! outbox in the store, and after a crash (between the server's 250 and the cursor commit, or during the send) the
//! next mail covers exactly those events again — same events, same Message-ID (made from their sequence numbers),
//! so a mail client shows it once — however many events arrived meanwhile. The alarms a route announced (whose
//! de-escalation and clear follow them below `min_severity`) are kept in the store too, so a clear after a restart
//! is still mailed.
//!
//! The hourly cap (`max_per_hour`, sliding hour) holds mails back; the events pile up after the cursor and the
//! next mail folds them all in and says so.

pub mod compose;

use crate::config::{resolve_secret, EmailConfig, MinSeverity, TlsMode};
use crate::metrics::SinkMetrics;
use crate::model::{Alert, AlertState, Severity, Timestamp};
use crate::sink::SinkContext;
use crate::sink::{Items, Sink, SinkError};
use crate::store::{SharedStore, Stream};
use compose::{compose, Digest};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Events in one mail at most (the table shows the first [`compose::MAX_ROWS`]; the attachment holds all).
const MAX_EVENTS: usize = 1000;
const HOUR: Duration = Duration::from_secs(3600);

/// The sink names of the configured routes: `email` for the top-level recipients, `email.{name}` per route.
pub fn route_names(e: &EmailConfig) -> Vec<&'static str> {
    let mut v = Vec::new();
    if !e.to.is_empty() {
        v.push("email");
    }
    for r in &e.route {
        v.push(crate::util::intern(&format!("email.{}", r.name)));
    }
    v
}

/// Which events a route mails.
#[derive(Debug, Clone)]
struct Filter {
    min: Severity,
    sensors: Vec<String>,
    exclude: Vec<String>,
}

impl Filter {
    fn new(min: MinSeverity, sensors: &[String], exclude: &[String]) -> Self {
        Filter {
            min: min.severity(),
            sensors: sensors.to_vec(),
            exclude: exclude.to_vec(),
        }
    }
    /// Whether `a` goes into this route's mail; `mailed` holds the alert ids this route announced (so that their
    /// de-escalation and clear follow them even below `min`).
    fn wants(&self, a: &Alert, mailed: &HashSet<String>) -> bool {
        if !self.sensors.is_empty() && !crate::util::id_matches(&self.sensors, &a.sensor) {
            return false;
        }
        if crate::util::id_matches(&self.exclude, &a.sensor) {
            return false;
        }
        match a.state {
            // A shelved alarm is not annunciated; one still active when its shelf ends is, again.
            AlertState::Raised | AlertState::Escalated | AlertState::Unshelved => {
                a.annunciates() && a.severity >= self.min
            }
            AlertState::Deescalated | AlertState::Cleared => {
                a.severity >= self.min || mailed.contains(&a.id)
            }
            // Operator actions follow the alarms this route announced.
            AlertState::Acknowledged | AlertState::Shelved => mailed.contains(&a.id),
            // Audit events are for the events feed and the store, not for mail.
            AlertState::Applied | AlertState::Rejected => false,
        }
    }
}

/// One route's state, changed by its send only once the server accepted the mail.
#[derive(Default)]
struct Shared {
    /// When mails went out in the last hour.
    sent: VecDeque<Instant>,
    /// Alert ids announced and not yet cleared (their de-escalation and clear follow them below `min_severity`).
    mailed: HashSet<String>,
    /// The cap has held mails back since then.
    held_since: Option<Timestamp>,
    /// The last event of the mail being sent (or sent and not yet committed): the next chunk ends there.
    outbox: Option<i64>,
    /// `mailed` and `outbox` were read from the store.
    loaded: bool,
}

impl Shared {
    fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
        s.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A prepared mail: the message (or why it cannot be built), its event count and the announced ids after it.
type Job = (Result<Message, String>, usize, HashSet<String>);

/// An email route (see the module docs).
pub struct EmailSink {
    name: &'static str,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
    filter: Filter,
    gateway: String,
    location: String,
    linger: Duration,
    cap: u32,
    shared: Arc<Mutex<Shared>>,
    metrics: Arc<SinkMetrics>,
    msgid_domain: String,
    route: String,
    /// Where the outbox and the announced alarms are kept (none in unit tests).
    store: Option<SharedStore>,
}

fn refused(reason: String) -> SinkError {
    SinkError::Refused { reason }
}

fn mailbox(s: &str, what: &str) -> Result<Mailbox, SinkError> {
    s.parse::<Mailbox>()
        .map_err(|e| refused(format!("email.{what} {s:?} is not a mail address: {e}")))
}

/// The lettre transport for `e`: endpoint, TLS mode and trust, credentials, timeout.
fn transport(e: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SinkError> {
    crate::install_crypto_provider();
    let ep = e
        .endpoint()
        .map_err(|m| refused(format!("email.url: {m}")))?;
    let params = || -> Result<TlsParameters, SinkError> {
        let mut b = TlsParameters::builder(ep.host.clone());
        if let Some(ca) = &e.ca_file {
            let pem = std::fs::read(ca).map_err(|err| {
                refused(format!("cannot read email.ca_file {}: {err}", ca.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|err| {
                refused(format!(
                    "email.ca_file {}: no PEM certificate ({err})",
                    ca.display()
                ))
            })?;
            b = b
                .certificate_store(CertificateStore::None)
                .add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|err| refused(format!("TLS setup for {}: {err}", ep.host)))
    };
    let tls = match ep.tls {
        TlsMode::Starttls => Tls::Required(params()?),
        TlsMode::Implicit => Tls::Wrapper(params()?),
        TlsMode::None => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ep.host.as_str())
        .port(ep.port)
        .tls(tls)
        .timeout(Some(e.timeout.0));
    let password = resolve_secret(
        &e.password,
        &e.password_file,
        &e.password_env,
        &e.password_credential,
    )
    .map_err(|m| refused(format!("email password: {m}")))?;
    if let Some(user) = &e.username {
        b = b.credentials(Credentials::new(user.clone(), password.unwrap_or_default()));
    }
    Ok(b.build())
}

impl EmailSink {
    /// The route `cx.name` (one of [`route_names`]) of `cx.cfg.email`.
    pub fn open(cx: &SinkContext) -> Result<EmailSink, SinkError> {
        let e = cx
            .cfg
            .email
            .as_ref()
            .ok_or_else(|| refused("no [email] section".into()))?;
        let route = cx.name.strip_prefix("email.");
        let (to, filter) = match route.and_then(|r| e.route.iter().find(|x| x.name == r)) {
            Some(r) => (&r.to, Filter::new(r.min_severity, &r.sensors, &r.exclude)),
            None if route.is_none() => (&e.to, Filter::new(e.min_severity, &e.sensors, &e.exclude)),
            None => return Err(refused(format!("no route {:?} in [email]", cx.name))),
        };
        let from = mailbox(&e.from, "from")?;
        let to = to
            .iter()
            .map(|t| mailbox(t, "to"))
            .collect::<Result<Vec<_>, _>>()?;
        let reply_to = e
            .reply_to
            .as_deref()
            .map(|r| mailbox(r, "reply_to"))
            .transpose()?;
        let msgid_domain = from.email.domain().to_string();
        let transport = transport(e)?;
        tracing::info!(sink = cx.name, url = %e.url, recipients = to.len(), "Email route started.");
        Ok(EmailSink {
            name: cx.name,
            transport,
            from,
            to,
            reply_to,
            filter,
            gateway: cx.cfg.gateway.id.clone(),
            location: cx.cfg.gateway.location.clone(),
            linger: e.digest_window.0,
            cap: e.max_per_hour.max(1),
            shared: Arc::default(),
            metrics: cx.metrics.sink(cx.name),
            msgid_domain,
            route: route.unwrap_or("default").to_string(),
            store: Some(cx.store.clone()),
        })
    }
}

/// How a failed send is handled: 5xx on login → credentials (Refused); 552/554 → the message itself (dead
/// letter); other 5xx → configuration such as a refused sender or recipient (Refused, kept); the rest (network,
/// timeout, 4xx, TLS handshake) → retry with backoff.
fn classify(e: &lettre::transport::smtp::Error) -> SinkError {
    let code = e.status().map(|c| c.to_string());
    let reason = crate::util::chain(e);
    if e.is_permanent() {
        match code.as_deref() {
            Some("552") | Some("554") => SinkError::Rejected { reason },
            Some("535") | Some("534") | Some("530") | Some("538") => refused(format!(
                "the SMTP server refused the login ({reason}); check email.username and the password"
            )),
            _ => refused(format!("the SMTP server refused the mail ({reason}); check email.from and the recipients")),
        }
    } else if e.is_tls() {
        refused(format!("TLS with the SMTP server failed ({reason}); check email.url, email.tls and email.ca_file"))
    } else {
        SinkError::Retry {
            after: None,
            reason: format!("SMTP: {reason}"),
        }
    }
}

impl EmailSink {
    /// Read the announced alarms and the outbox from the store, once.
    async fn load(&mut self) {
        let (Some(store), false) = (&self.store, Shared::lock(&self.shared).loaded) else {
            return;
        };
        let name = self.name;
        let read = store
            .call(move |s| {
                Ok((
                    s.cursor(name, Stream::Events)?,
                    s.sink_meta(name, "announced")?,
                    s.sink_meta(name, "outbox")?,
                ))
            })
            .await;
        match read {
            Ok((cursor, announced, outbox)) => {
                #[derive(serde::Deserialize)]
                struct Outbox {
                    through: i64,
                    announced: HashSet<String>,
                }
                let outbox = outbox
                    .and_then(|o| serde_json::from_str::<Outbox>(&o).ok())
                    .filter(|o| o.through > cursor);
                let mut s = Shared::lock(&self.shared);
                s.loaded = true;
                match outbox {
                    Some(o) => {
                        tracing::info!(sink = name, through = o.through, "A mail was being sent when the daemon stopped; sending the same mail again.");
                        s.mailed = o.announced;
                        s.outbox = Some(o.through);
                    }
                    None => {
                        s.mailed = announced
                            .and_then(|a| serde_json::from_str(&a).ok())
                            .unwrap_or_default();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(sink = name, error = %e, "Cannot read the route's announced alarms; retrying.")
            }
        }
    }

    /// The mail for the events of `items` this route wants (and how many), or `None` when it wants none.
    fn prepare(&self, items: &Items) -> Option<Job> {
        let (mut mailed, held_since) = {
            let s = Shared::lock(&self.shared);
            (s.mailed.clone(), s.held_since)
        };
        let mut picked: Vec<&Alert> = Vec::new();
        let (mut first, mut last) = (0, 0);
        if let Items::Events(ev) = items {
            for (seq, a) in ev {
                if !self.filter.wants(a, &mailed) {
                    continue;
                }
                if picked.is_empty() {
                    first = *seq;
                }
                last = *seq;
                picked.push(a);
                if a.annunciates() {
                    if mailed.len() >= 100_000 {
                        mailed.clear();
                    }
                    mailed.insert(a.id.clone());
                } else if !a.standing() {
                    // Cleared (and acknowledged, if acknowledgements are tracked): nothing more will follow.
                    mailed.remove(&a.id);
                }
            }
        }
        if picked.is_empty() {
            return None;
        }
        let d = Digest {
            gateway: &self.gateway,
            location: &self.location,
            events: picked,
            folded: held_since.map(|t| (self.cap, t)),
        };
        Some((self.message(&d, first, last), d.events.len(), mailed))
    }

    fn message(&self, d: &Digest, first: i64, last: i64) -> Result<Message, String> {
        let c = compose(d);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(c.subject)
            .date_now()
            .message_id(Some(format!(
                "<watchpost.{}.{}.{first}-{last}@{}>",
                token(&self.gateway),
                token(&self.route),
                self.msgid_domain
            )))
            .user_agent(format!("watchpost {}", env!("CARGO_PKG_VERSION")));
        for t in &self.to {
            b = b.to(t.clone());
        }
        if let Some(r) = &self.reply_to {
            b = b.reply_to(r.clone());
        }
        let json_type = ContentType::parse("application/json").map_err(|e| e.to_string())?;
        b.multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(c.text, c.html))
                .singlepart(Attachment::new("alerts.json".into()).body(c.json, json_type)),
        )
        .map_err(|e| e.to_string())
    }
}

/// Letters, digits, '-' and '_' only (for a Message-ID part).
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

impl Sink for EmailSink {
    fn name(&self) -> &'static str {
        self.name
    }
    fn stream(&self) -> Stream {
        Stream::Events
    }
    fn max_items(&self) -> usize {
        MAX_EVENTS
    }
    fn linger(&self) -> Duration {
        self.linger
    }
    fn chunk_end(&self) -> Option<i64> {
        Shared::lock(&self.shared).outbox
    }
    async fn ready(&mut self) {
        self.load().await;
        loop {
            let wait = {
                let mut s = Shared::lock(&self.shared);
                while s.sent.front().is_some_and(|t| t.elapsed() >= HOUR) {
                    s.sent.pop_front();
                }
                if s.sent.len() < self.cap as usize {
                    return;
                }
                if s.held_since.is_none() {
                    s.held_since = Some(Timestamp::now());
                    tracing::warn!(
                        sink = self.name,
                        cap = self.cap,
                        "Hourly mail cap reached; alerts are folded into the next mail."
                    );
                }
                s.sent.front().map(|t| HOUR.saturating_sub(t.elapsed()))
            };
            tokio::time::sleep(
                wait.unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(10)),
            )
            .await;
        }
    }
    fn deliver(
        &mut self,
        items: &Items,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send + 'static {
        let job = self.prepare(items);
        let through = items.positions().last().copied();
        // The announced alarms this mail was decided from: a re-send after a crash decides from the same.
        let before = job
            .as_ref()
            .map(|_| Shared::lock(&self.shared).mailed.clone());
        let transport = self.transport.clone();
        let shared = Arc::clone(&self.shared);
        let metrics = Arc::clone(&self.metrics);
        let store = self.store.clone();
        let name = self.name;
        async move {
            let Some((msg, n, mailed)) = job else {
                return Ok(());
            };
            let msg = msg.map_err(|reason| SinkError::Rejected {
                reason: format!("the mail cannot be built: {reason}"),
            })?;
            // Decided before it goes: a re-send after a crash covers exactly these events.
            if let (Some(store), Some(t)) = (&store, through) {
                let outbox = serde_json::json!({ "through": t, "announced": before }).to_string();
                store
                    .call(move |s| s.set_sink_meta(name, "outbox", &outbox))
                    .await
                    .map_err(|e| SinkError::Retry {
                        after: None,
                        reason: format!("cannot record the mail in the outbox: {e}"),
                    })?;
                Shared::lock(&shared).outbox = Some(t);
            }
            let started = Instant::now();
            match transport.send(msg).await {
                Ok(resp) => {
                    if let Some(store) = &store {
                        let announced = serde_json::to_string(&mailed).unwrap_or_default();
                        // The outbox stays: it is stale once the runner commits the cursor past it.
                        let saved = store
                            .call(move |s| s.set_sink_meta(name, "announced", &announced))
                            .await;
                        if let Err(e) = saved {
                            // The cursor is not saved either then: the same mail goes again (same Message-ID).
                            tracing::warn!(sink = name, error = %e, "Cannot record the sent mail; it will be sent again.");
                        }
                    }
                    let mut s = Shared::lock(&shared);
                    s.sent.push_back(Instant::now());
                    s.mailed = mailed;
                    s.held_since = None;
                    drop(s);
                    metrics
                        .messages
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let answer = resp.message().collect::<Vec<_>>().join(" ");
                    tracing::info!(sink = name, events = n, ms = started.elapsed().as_millis() as u64, server = %answer, "Mail accepted.");
                    Ok(())
                }
                Err(e) => Err(classify(&e)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
