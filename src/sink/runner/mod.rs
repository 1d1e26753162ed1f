//! The sink runner: everything every sink needs, written once.
//!
//! For one sink it: builds the sink (retrying a sink that cannot start, visibly: ERROR log, `watchpost_sink_up` 0,
//! state in `buffer status`); loads the cursor (a failed read is retried, never taken as 0, which would re-deliver the
//! whole retention window); fetches the next chunk after the cursor (the last commit's items from memory when the sink
//! is caught up, else from the store on the blocking pool); takes out what the sink can never carry ([`Sink::screen`]:
//! recorded as dead letters, announced once as DEAD_LETTER events, so no single item stops the stream); delivers the
//! rest; on success advances the cursor; on [`SinkError::Rejected`] records dead letters and moves on; on
//! [`SinkError::Retry`] backs off (jittered, honouring `after`); on [`SinkError::Refused`] logs an ERROR and retries
//! slowly. It keeps the backlog gauge fresh, logs progress while draining a backlog, paces to `max_rate` (a token
//! bucket with a one-second burst), and stops when told to (`stop`) or once caught up after `drain`.

use super::{Items, Sink, SinkContext, SinkCtl, SinkError, Unfit};
use crate::channels::Control;
use crate::metrics::{SinkMetrics, SinkState};
use crate::model::Timestamp;
use crate::store::{SharedStore, Store, StoreError, Stream};
use crate::util::Backoff;
use pace::Pace;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wait after a configuration or credentials error.
const REFUSED_WAIT: Duration = Duration::from_secs(60);
/// How often the backlog gauge and the drain progress are refreshed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// While caught up, look at the store anyway this often (a cap drop or an external edit changes nothing we
/// track).
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// Reading batches read per store query while filling a chunk.
const BATCHES_PER_QUERY: usize = 16;

/// Run one sink until stopped (or, when draining, until caught up). `open` makes the sink from `cx`; it is called again
/// (every minute) while it fails.
pub async fn run<S, F>(mut open: F, cx: SinkContext)
where
    S: Sink,
    F: FnMut(&SinkContext) -> Result<S, SinkError> + Send + 'static,
{
    let name = cx.name;
    let (store, mut signals, ctl) = (cx.store.clone(), cx.signals.clone(), cx.ctl.clone());
    let m = cx.metrics.sink(name);
    let mut sink = loop {
        match open(&cx) {
            Ok(s) => break s,
            Err(e) => {
                m.set_state(SinkState::Failed);
                let why = e.to_string();
                tracing::error!(sink = name, error = %why, "The sink cannot start; its data stays in the local store. Retrying in 60s.");
                record_state(&store, name, format!("cannot start: {why}")).await;
                tokio::select! {
                    _ = ctl.stop.cancelled() => return,
                    _ = ctl.drain.cancelled() => return,
                    _ = tokio::time::sleep(REFUSED_WAIT) => {}
                }
            }
        }
    };
    m.set_state(SinkState::Up);
    record_state(&store, name, "running".into()).await;
    let stream = sink.stream();
    let mut cursor = {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match store.call(move |s| s.cursor(name, stream)).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "Cannot read the sink's cursor; retrying (never restarting from the beginning).");
                    tokio::select! {
                        _ = ctl.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    };
    tracing::info!(sink = name, cursor, "Sink started.");
    let started_at = cursor;
    let mut r = Runner {
        name,
        stream,
        m,
        store,
        fresh: signals.fresh.clone(),
        handoff: signals.handoff.clone(),
        backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
        last_progress: Instant::now(),
        sent_since: 0,
        fail_log: crate::util::Throttle::new(Duration::from_secs(60)),
    };
    let mut pace = sink
        .max_rate()
        .filter(|m| *m > 0)
        .map(|rate| Pace::new(rate, sink.max_items()));
    r.refresh_backlog(cursor, false).await;
    let mut look_anyway = true;
    // Deliveries handed to the sink and not yet answered, oldest first; `next` is where the next chunk starts.
    // A window of more than one keeps the link busy while acknowledgements travel (MQTT PUBACKs).
    let window = sink.window().max(1);
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    // The last fetch filled a chunk: a backlog is draining.
    let mut backlog = false;
    let mut next = cursor;
    // When the first item of a digest was seen (sinks with a `linger`).
    let mut gathering: Option<Instant> = None;
    // The last cursor save handed to the blocking pool.
    let mut saving: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if ctl.stop.is_cancelled() {
            break;
        }
        let newest = match stream {
            Stream::Readings => *signals.readings.borrow_and_update(),
            Stream::Events => *signals.events.borrow_and_update(),
        };
        let draining = ctl.drain.is_cancelled();
        // A backlog never waits out the linger: a digest window or a write interval gathers what trickles in, it
        // must not pace a drain to one chunk per window.
        let linger = if backlog {
            Duration::ZERO
        } else {
            sink.linger()
        };
        if !linger.is_zero()
            && !draining
            && inflight.is_empty()
            && (next < newest || gathering.is_some())
        {
            let since = *gathering.get_or_insert_with(Instant::now);
            let left = linger.saturating_sub(since.elapsed());
            if !left.is_zero() {
                tokio::select! {
                    _ = ctl.stop.cancelled() => break,
                    _ = ctl.drain.cancelled() => {}
                    _ = tokio::time::sleep(left) => {}
                }
                continue;
            }
        }
        if inflight.len() < window && (next < newest || look_anyway || draining) {
            look_anyway = false;
            let limit = sink.max_items().max(1);
            let mut items = match r.fetch(next, limit).await {
                Ok(i) => {
                    backlog = i.count() >= limit as u64;
                    i
                }
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "Cannot read the store; retrying.");
                    let d = r.backoff.next_delay();
                    if inflight.is_empty() && !r.wait(&ctl, d).await {
                        break;
                    }
                    look_anyway = true;
                    continue;
                }
            };
            if !items.is_empty() {
                // A digest starts at the first item seen, however it was seen: a chunk found by a look at the store
                // (at start, after an error) before any commit signal still waits out the linger, so what arrives
                // meanwhile goes into the same delivery.
                if !linger.is_zero()
                    && !draining
                    && inflight.is_empty()
                    && gathering.is_none()
                    && !backlog
                {
                    gathering = Some(Instant::now());
                    look_anyway = true;
                    continue;
                }
                if inflight.is_empty() {
                    // Wait until a delivery can succeed (e.g. MQTT connected); while draining, do not wait for a
                    // peer that is away: what is left stays in the store.
                    tokio::select! {
                        _ = ctl.stop.cancelled() => break,
                        _ = sink.ready() => {}
                        _ = tokio::time::sleep(PROGRESS_EVERY), if draining => break,
                        _ = tokio::time::sleep(PROGRESS_EVERY) => {
                            r.refresh_backlog(cursor, false).await;
                            look_anyway = true;
                            continue;
                        }
                    }
                }
                if let Some(end) = sink.chunk_end().filter(|e| *e > next) {
                    items.keep_through(end);
                }
                let Some(&last) = items.positions().last() else {
                    continue;
                };
                // Whatever one item is, it must not stop the stream: what the sink can never carry is recorded
                // as a dead letter and announced, and the rest of the chunk goes.
                let unfit = sink.screen(&items);
                if !unfit.is_empty() {
                    if let Err(e) = r.skip(&unfit, &signals.control).await {
                        tracing::error!(sink = name, error = %e, "Cannot record a dead letter; retrying.");
                        let d = r.backoff.next_delay();
                        if inflight.is_empty() && !r.wait(&ctl, d).await {
                            break;
                        }
                        look_anyway = true;
                        continue;
                    }
                    items.remove(&unfit);
                }
                let positions = items.positions();
                let task = if items.is_empty() {
                    tokio::spawn(async { Ok(()) })
                } else {
                    tokio::spawn(sink.deliver(&items))
                };
                inflight.push_back(InFlight {
                    last,
                    n: items.count(),
                    positions,
                    task,
                });
                next = last;
                continue;
            }
            if inflight.is_empty() {
                // Caught up with what the store holds.
                r.m.backlog.store(0, Ordering::Relaxed);
                if draining {
                    break;
                }
            }
        }
        if inflight.is_empty() {
            // Nothing in flight and nothing new: wait for the ingest thread's next commit.
            r.m.backlog.store(0, Ordering::Relaxed);
            let changed = match stream {
                Stream::Readings => &mut signals.readings,
                Stream::Events => &mut signals.events,
            };
            tokio::select! {
                _ = ctl.stop.cancelled() => break,
                _ = ctl.drain.cancelled(), if !draining => {}
                _ = changed.changed() => {}
                _ = tokio::time::sleep(IDLE_CHECK) => look_anyway = true,
            }
            continue;
        }
        // Wait for the oldest answer, or for news while there is room in the window (a new alert must not wait
        // behind the acknowledgement of the previous one).
        let room = inflight.len() < window;
        let changed = match stream {
            Stream::Readings => &mut signals.readings,
            Stream::Events => &mut signals.events,
        };
        let Some(front) = inflight.front_mut() else {
            continue;
        };
        let joined = tokio::select! {
            _ = ctl.stop.cancelled() => break,
            j = &mut front.task => j,
            _ = changed.changed(), if room => continue,
        };
        let Some(done) = inflight.pop_front() else {
            continue;
        };
        let outcome = joined.unwrap_or_else(|e| {
            Err(SinkError::Retry {
                after: None,
                reason: format!("delivery task failed: {e}"),
            })
        });
        let (n, last) = (done.n, done.last);
        if !matches!(
            outcome,
            Err(SinkError::Retry { .. } | SinkError::Refused { .. })
        ) {
            // Delivered or dead-lettered: the next item starts a new digest (a retry keeps the old one's start).
            gathering = None;
        }
        match outcome {
            Ok(()) => {
                // Saved with the ingest thread's next commit while readings flow (store/handoff.rs), else here,
                // not waited for (the async thread is not woken for it): the in-memory cursor leads, the store's
                // never moves back (`max`), and the runner saves its last cursor itself before it ends.
                if !r.handoff.hand(name, stream, last) {
                    saving = Some(save_cursor(&r.store, name, stream, last));
                }
                cursor = last;
                r.delivered(n);
                if let Some(p) = pace.as_mut() {
                    let wait = p.take(n, Instant::now());
                    if !wait.is_zero() && !r.wait(&ctl, wait).await {
                        break;
                    }
                }
            }
            Err(SinkError::Rejected { reason }) => {
                tracing::warn!(sink = name, items = n, server = %reason,
                    "The far side rejected the data as malformed; dead-lettering it (kept in the store) and moving on.");
                let positions = done.positions;
                let res = r
                    .store
                    .call(move |s| {
                        for p in positions {
                            s.dead_letter(name, stream, p, &reason)?;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = res {
                    tracing::error!(sink = name, error = %e, "Cannot record the dead letter; retrying the chunk.");
                    abandon(&mut inflight);
                    next = cursor;
                    continue;
                }
                r.m.dead.fetch_add(n, Ordering::Relaxed);
                cursor = last;
            }
            Err(e) => {
                // Nothing after the cursor counts as delivered: start again from it (at least once).
                abandon(&mut inflight);
                next = cursor;
                r.failing();
                r.m.retries.fetch_add(1, Ordering::Relaxed);
                let wait = match e {
                    SinkError::Refused { reason } => {
                        if let Some(quiet) = r.fail_log.ready() {
                            tracing::error!(sink = name, error = %reason, not_logged_since = quiet, "The far side refused the delivery; data is kept; retrying in 60s.");
                        }
                        REFUSED_WAIT
                    }
                    SinkError::Retry { after, reason } => {
                        let wait = after.unwrap_or_else(|| r.backoff.next_delay());
                        if let Some(quiet) = r.fail_log.ready() {
                            tracing::warn!(sink = name, reason = %reason, retry_in_ms = wait.as_millis() as u64, not_logged_since = quiet, "Delivery failed; will retry (repeats are logged once a minute).");
                        } else {
                            tracing::debug!(sink = name, reason = %reason, "Delivery failed again.");
                        }
                        wait
                    }
                    SinkError::Rejected { .. } => Duration::ZERO,
                };
                r.refresh_backlog(cursor, false).await;
                if ctl.drain.is_cancelled() || !r.wait(&ctl, wait).await {
                    break;
                }
                look_anyway = true;
                continue;
            }
        }
        if r.last_progress.elapsed() >= PROGRESS_EVERY {
            r.refresh_backlog(cursor, true).await;
        }
    }
    abandon(&mut inflight);
    if let Some(last) = saving {
        let _ = last.await;
    }
    // A move handed to the ingest thread may not be committed yet (it stops too): saved here, for certain.
    if cursor > started_at {
        let _ = save_cursor(&r.store, name, stream, cursor).await;
    }
    sink.close().await;
}

/// Save a cursor on the blocking pool (never moves it back); a failure is logged, the data re-sent after a restart.
fn save_cursor(
    store: &SharedStore,
    name: &'static str,
    stream: Stream,
    pos: i64,
) -> tokio::task::JoinHandle<()> {
    store.spawn(move |s| {
        if let Err(e) = s.ack(name, stream, pos) {
            tracing::error!(sink = name, error = %e, "Cannot save the cursor; the data will be re-sent after a restart.");
        }
    })
}

/// A chunk handed to the sink, not yet answered.
struct InFlight {
    last: i64,
    n: u64,
    positions: Vec<i64>,
    task: tokio::task::JoinHandle<Result<(), SinkError>>,
}

/// Stop waiting for deliveries that no longer count (their chunks will be sent again from the cursor).
fn abandon(inflight: &mut VecDeque<InFlight>) {
    for f in inflight.drain(..) {
        f.task.abort();
    }
}

struct Runner {
    name: &'static str,
    stream: Stream,
    m: Arc<SinkMetrics>,
    store: SharedStore,
    fresh: crate::store::Fresh,
    /// Cursor moves for the ingest thread's next commit.
    handoff: crate::store::Handoff,
    backoff: Backoff,
    last_progress: Instant,
    sent_since: u64,
    /// A sink that keeps failing logs its failure once a minute with a count, not once per retry.
    fail_log: crate::util::Throttle,
}

impl Runner {
    /// Up to about `limit` items after `cursor`, oldest first: the last commit's from memory when they follow
    /// `cursor` directly (a sink that is caught up), else from the store.
    async fn fetch(&self, cursor: i64, limit: usize) -> Result<Items, StoreError> {
        let fresh = match self.stream {
            Stream::Readings => self.fresh.readings_after(cursor).map(Items::Readings),
            Stream::Events => self.fresh.events_after(cursor, limit).map(Items::Events),
        };
        if let Some(items) = fresh {
            return Ok(items);
        }
        self.m.store_reads.fetch_add(1, Ordering::Relaxed);
        match self.stream {
            Stream::Events => {
                let ev = self
                    .store
                    .call(move |s| s.events_after(cursor, limit))
                    .await?;
                Ok(Items::Events(ev))
            }
            Stream::Readings => {
                let b = self
                    .store
                    .call(move |s| {
                        let mut out = Vec::new();
                        let mut n = 0;
                        let mut after = cursor;
                        loop {
                            let got =
                                s.batches_for(after, BATCHES_PER_QUERY, limit.saturating_sub(n))?;
                            if got.is_empty() {
                                break;
                            }
                            for b in got {
                                after = b.id;
                                n += b.readings.len();
                                out.push(b);
                                if n >= limit {
                                    return Ok(out);
                                }
                            }
                        }
                        Ok(out)
                    })
                    .await?;
                Ok(Items::Readings(b.into_iter().map(Arc::new).collect()))
            }
        }
    }

    /// Record items the sink can never carry as dead letters (the cursor moves past them with the chunk) and
    /// announce each once: a WARN, the dead-letter counter and a DEAD_LETTER event.
    async fn skip(
        &self,
        unfit: &[Unfit],
        control: &tokio::sync::mpsc::Sender<Control>,
    ) -> Result<(), StoreError> {
        let (name, stream) = (self.name, self.stream);
        let list = unfit.to_vec();
        let fresh = self
            .store
            .call(move |s| {
                let mut fresh = Vec::new();
                for u in list {
                    if s.record_skip(name, stream, u.position, &u.reason)? {
                        fresh.push(u);
                    }
                }
                Ok(fresh)
            })
            .await?;
        for u in fresh {
            tracing::warn!(sink = name, stream = stream.as_str(), position = u.position, reason = %u.reason,
                "Dead-lettered an item this sink can never carry (it stays in the store); delivery goes on.");
            self.m.dead.fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "sink {name} skipped {} item {}: {}",
                stream.as_str(),
                u.position,
                u.reason
            );
            let _ = control.send(Control::DeadLetter { reason }).await;
        }
        Ok(())
    }

    fn delivered(&mut self, n: u64) {
        self.m.delivered.fetch_add(n, Ordering::Relaxed);
        self.sent_since += n;
        self.backoff.reset();
        if self.m.state() != SinkState::Up {
            self.m.set_state(SinkState::Up);
            tracing::info!(sink = self.name, "Deliveries succeed again.");
            // The next outage is logged at once.
            self.fail_log.reset();
        }
    }

    fn failing(&mut self) {
        if self.m.state() == SinkState::Up {
            self.m.set_state(SinkState::Failing);
        }
    }

    /// Sleep `d` unless stopped; false when stopped.
    async fn wait(&self, ctl: &SinkCtl, d: Duration) -> bool {
        tokio::select! {
            _ = ctl.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Refresh the backlog gauge; with `log`, report drain progress (rate and ETA over the last period).
    async fn refresh_backlog(&mut self, cursor: i64, log: bool) {
        let (name, stream) = (self.name, self.stream);
        let pending = self
            .store
            .call(move |s| s.pending(stream, cursor))
            .await
            .unwrap_or(0);
        self.m.backlog.store(pending as i64, Ordering::Relaxed);
        if log && pending > 0 {
            let secs = self.last_progress.elapsed().as_secs_f64();
            let rate = self.sent_since as f64 / secs.max(1e-3);
            let eta = if rate > 0.0 {
                pending as f64 / rate
            } else {
                f64::INFINITY
            };
            tracing::info!(
                sink = name,
                sent = self.sent_since,
                remaining = pending,
                rate_per_s = rate as u64,
                eta_s = eta as u64,
                "Draining backlog."
            );
        }
        if log {
            self.last_progress = Instant::now();
            self.sent_since = 0;
        }
    }
}

async fn record_state(store: &SharedStore, name: &'static str, state: String) {
    let now = Timestamp::now();
    let res = store
        .call(move |s: &mut Store| s.set_sink_state(name, &state, now))
        .await;
    if let Err(e) = res {
        tracing::debug!(sink = name, error = %e, "Cannot record the sink state.");
    }
}

mod pace;
#[cfg(test)]
mod tests;
