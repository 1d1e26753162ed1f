//! The source runner: owns time for every source. A [`Source`] only knows how to connect and how to read one poll
//! group; the runner decides when (each group on its interval), how long (a deadline per attempt, retries after a
//! timeout), what a failure means (back off a silent unit, reconnect after a transport error, a slow retry for a
//! configuration that cannot work), when a reading was measured (the middle of the attempt that answered, unless
//! the source knows better), what a per-sensor fault becomes (a NaN reading, so validation raises SENSOR_FAULT),
//! and what is logged (once per change) and counted.

use super::SourceError;
use crate::metrics::SharedMetrics;
use crate::model::{Exact, Reading, Readings, SensorId, Timestamp};
use crate::util::Backoff;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Sensors read together, on one interval (a coalesced Modbus request, the chips of an I2C bus that share an
/// interval, one simulated sensor).
#[derive(Debug, Clone)]
pub struct Poll {
    /// How often.
    pub interval: Duration,
    /// Groups that fall silent together are backed off together (a Modbus unit); `None`: never backed off.
    pub unit: Option<u32>,
    /// What is read, for the log (`unit 1 holding 0+4`).
    pub what: String,
    /// The sensors it serves (for the log).
    pub sensors: Vec<SensorId>,
}

/// One sensor's outcome of a read.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Which sensor.
    pub sensor: SensorId,
    /// The value in engineering units, or the fault that sensor reports (stored as NaN: SENSOR_FAULT).
    pub value: Result<f64, String>,
    /// When it was measured, when the source knows better than the runner's mid-attempt stamp.
    pub at: Option<Timestamp>,
    /// The value exactly, where an f64 cannot hold it (a 64-bit integer, text); `value` is then its nearest f64.
    pub exact: Option<Exact>,
}

impl Sample {
    /// A good value, stamped by the runner.
    pub fn good(sensor: &SensorId, v: f64) -> Sample {
        Sample {
            sensor: *sensor,
            value: Ok(v),
            at: None,
            exact: None,
        }
    }
    /// A good exact value, stamped by the runner.
    pub fn exact(sensor: &SensorId, e: Exact) -> Sample {
        Sample {
            sensor: *sensor,
            value: Ok(e.approx()),
            at: None,
            exact: Some(e),
        }
    }
}

/// How a source wants failures treated.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The log's name for the kind ("Modbus", "I2C").
    pub kind: &'static str,
    /// Deadline of one attempt (and of a connection).
    pub timeout: Duration,
    /// Attempts after a timed-out one.
    pub retries: u32,
    /// Reconnection backoff: first and longest delay (jittered).
    pub reconnect: (Duration, Duration),
    /// A timed-out read drops the connection (a half-open TCP connection).
    pub timeout_reconnects: bool,
    /// After a lost connection comes back, every group is due at once and silent units are forgiven (TCP:
    /// the silence was the connection's).
    pub fresh_after_reconnect: bool,
    /// What a timeout means for this kind, logged with it.
    pub timeout_hint: &'static str,
}

/// A source of readings. Implementations are small: connect, and read one poll group.
pub trait Source: Send + 'static {
    /// The section's name (`[[modbus]] name`, `[[i2c]] name`, the sensor id), logged as `bus`.
    fn name(&self) -> &str;
    /// Failure handling.
    fn policy(&self) -> Policy;
    /// The poll groups; their indexes are what [`Source::read`] gets.
    fn polls(&self) -> Vec<Poll>;
    /// Open the connection, port or bus. Called before the first read and after a transport error.
    fn connect(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send;
    /// Read poll group `poll` once. An `Err` is the whole group's (no readings: the sensors go stale); a
    /// sensor's own fault is a [`Sample`] with an `Err` value.
    fn read(
        &mut self,
        poll: usize,
    ) -> impl Future<Output = Result<Vec<Sample>, SourceError>> + Send;
    /// Drop the connection (after a transport error or a timeout that asks for it).
    fn disconnect(&mut self) {}
    /// Let go of everything before the runner returns (an I2C bus thread is joined).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

struct Slot {
    poll: Poll,
    due: Instant,
    failures: u32,
    last_error: Option<String>,
}

/// Run `src` until `token` is cancelled or the ingest channel closes. On a runtime with I/O enabled (polls wait on
/// a timerfd: see `timer.rs`).
pub async fn run<S: Source>(
    mut src: S,
    tx: crate::channels::Intake,
    token: CancellationToken,
    metrics: SharedMetrics,
) {
    let policy = src.policy();
    let now = Instant::now();
    let mut slots: Vec<Slot> = src
        .polls()
        .into_iter()
        .map(|poll| Slot {
            poll,
            due: now,
            failures: 0,
            last_error: None,
        })
        .collect();
    let mut faults = Faults::default();
    let mut timer = timer::PollTimer::new();
    let mut deadline = deadline::Deadline::new(policy.timeout);
    let mut unit_backoff: HashMap<u32, (u32, Instant)> = HashMap::new();
    let mut conn_backoff = Backoff::new(policy.reconnect.0, policy.reconnect.1);
    let mut connected = false;
    // The connection was lost (refused, reset): timeouts seen before say nothing about the units.
    let mut lost = false;
    // After a transport error on an open connection: not before this. A peer that accepts connections and then
    // closes them or answers garbage would otherwise be reconnected to in a tight loop.
    let mut reconnect_at: Option<Instant> = None;
    let gate = |s: &Slot, ub: &HashMap<u32, (u32, Instant)>| {
        let held = s.poll.unit.and_then(|u| ub.get(&u)).map(|(_, t)| *t);
        held.map_or(s.due, |t| s.due.max(t))
    };
    // One wait for cancellation for the runner's life: a fresh `token.cancelled()` at each wait registered with
    // the token (a mutex) and unregistered again, twice a poll.
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    'run: loop {
        if token.is_cancelled() {
            break;
        }
        if !connected {
            if let Some(at) = reconnect_at.take() {
                tokio::select! {
                    _ = &mut cancelled => break,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            let r = tokio::select! {
                _ = &mut cancelled => break,
                r = tokio::time::timeout(policy.timeout.max(Duration::from_secs(1)), src.connect()) => r,
            };
            match r.unwrap_or(Err(SourceError::Timeout)) {
                Ok(()) => {
                    // The backoff is reset by an answer, not by the connection: accepting is not answering.
                    connected = true;
                    if lost && policy.fresh_after_reconnect {
                        unit_backoff.clear();
                        for s in &mut slots {
                            s.due = s.due.min(Instant::now());
                        }
                    }
                    lost = false;
                }
                Err(e) => {
                    metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                    lost = true;
                    let wait = conn_backoff.next_delay();
                    let retry_in_ms = wait.as_millis() as u64;
                    if matches!(e, SourceError::Config(_)) {
                        tracing::error!(bus = %src.name(), error = %e, retry_in_ms, "{} source cannot work with this configuration.", policy.kind);
                    } else {
                        tracing::warn!(bus = %src.name(), error = %e, retry_in_ms, "{} connection failed.", policy.kind);
                    }
                    tokio::select! {
                        _ = &mut cancelled => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
        }
        let Some(i) = (0..slots.len()).min_by_key(|&i| gate(&slots[i], &unit_backoff)) else {
            cancelled.await;
            break;
        };
        let at = gate(&slots[i], &unit_backoff);
        deadline.release_before(at);
        tokio::select! {
            _ = &mut cancelled => break,
            _ = timer.until(at) => {}
        }
        let started = Instant::now();
        // A reading is stamped when it was measured: the middle of the attempt that got the answer (a retry's,
        // not the first timed-out one's; a device samples between request and response).
        let mut sent_at = (Timestamp::now(), Instant::now());
        let mut result = attempt(&mut src, i, sent_at.1, &mut deadline, cancelled.as_mut()).await;
        let mut tries = 0;
        while matches!(result, Some(Err(SourceError::Timeout))) && tries < policy.retries {
            tries += 1;
            sent_at = (Timestamp::now(), Instant::now());
            result = attempt(&mut src, i, sent_at.1, &mut deadline, cancelled.as_mut()).await;
        }
        let Some(result) = result else { break 'run };
        metrics.polls.fetch_add(1, Ordering::Relaxed);
        metrics
            .poll_latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let slot = &mut slots[i];
        slot.due += slot.poll.interval;
        if slot.due < Instant::now() {
            slot.due = Instant::now() + slot.poll.interval;
        }
        match result {
            Ok(samples) => {
                conn_backoff.reset();
                let unit_held = slot
                    .poll
                    .unit
                    .is_some_and(|u| unit_backoff.contains_key(&u));
                if slot.failures > 0 || unit_held {
                    tracing::info!(bus = %src.name(), what = %slot.poll.what, "{} source answers again.", policy.kind);
                }
                slot.failures = 0;
                slot.last_error = None;
                if let Some(u) = slot.poll.unit {
                    unit_backoff.remove(&u);
                }
                let rtt = i64::try_from(sent_at.1.elapsed().as_millis()).unwrap_or(0);
                let mid = Timestamp(sent_at.0 .0.saturating_add(rtt / 2));
                let batch: Readings = samples
                    .into_iter()
                    .map(|s| {
                        let v = faults.note(&src, &policy, &s, &metrics);
                        let mut r = Reading::new(s.sensor, s.at.unwrap_or(mid), v);
                        // A fault is NaN whatever the type; a good exact value travels with its f64.
                        r.exact = s.exact.filter(|_| s.value.is_ok());
                        r
                    })
                    .collect();
                if !batch.is_empty() && tx.send(batch).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                slot.failures += 1;
                let msg = e.to_string();
                if slot.last_error.as_deref() != Some(msg.as_str()) {
                    let hint = if matches!(e, SourceError::Timeout) {
                        policy.timeout_hint
                    } else {
                        ""
                    };
                    tracing::warn!(bus = %src.name(), what = %slot.poll.what, sensors = ?slot.poll.sensors, error = %msg,
                        "{} read failed.{}{hint}", policy.kind, if hint.is_empty() { "" } else { " " });
                    slot.last_error = Some(msg);
                }
                match e {
                    // A well-formed answer: the device is there.
                    SourceError::Exception(_) => conn_backoff.reset(),
                    SourceError::Timeout => {
                        if let Some(u) = slot.poll.unit {
                            let (n, _) =
                                unit_backoff.get(&u).copied().unwrap_or((0, Instant::now()));
                            let wait = (slot.poll.interval * 2u32.saturating_pow(n.min(6)))
                                .min(Duration::from_secs(60));
                            unit_backoff.insert(u, (n + 1, Instant::now() + wait));
                        }
                        if policy.timeout_reconnects {
                            src.disconnect();
                            connected = false;
                        }
                    }
                    SourceError::Transport(_) | SourceError::Config(_) => {
                        src.disconnect();
                        connected = false;
                        lost = true;
                        reconnect_at = Some(Instant::now() + conn_backoff.next_delay());
                    }
                }
            }
        }
    }
    src.close().await;
}

/// One attempt, begun at `started`, under the deadline (the runner's kept timer: deadline.rs); `None` when
/// cancelled.
async fn attempt<S: Source>(
    src: &mut S,
    i: usize,
    started: Instant,
    deadline: &mut deadline::Deadline,
    cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
) -> Option<Result<Vec<Sample>, SourceError>> {
    // The read before the deadline: an answer ready at once never arms the timer (`tokio::time::timeout`'s order).
    tokio::select! {
        biased;
        _ = cancelled => None,
        r = src.read(i) => Some(r),
        _ = deadline.of(started) => Some(Err(SourceError::Timeout)),
    }
}

/// Each sensor's current fault, so a fault is logged once per kind and its end once.
#[derive(Default)]
struct Faults(crate::util::FastMap<SensorId, String>);

impl Faults {
    /// The value to store for `s` (NaN for a fault), logging changes.
    fn note<S: Source>(
        &mut self,
        src: &S,
        policy: &Policy,
        s: &Sample,
        metrics: &SharedMetrics,
    ) -> f64 {
        match &s.value {
            Ok(v) => {
                // Most sensors have no fault: no hashing for them.
                if !self.0.is_empty() && self.0.remove(&s.sensor).is_some() {
                    tracing::info!(bus = %src.name(), sensor = %s.sensor, "{} sensor reads again.", policy.kind);
                }
                *v
            }
            Err(msg) => {
                metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                // Once per kind of fault: the measured value in the message ("3.41 mA") does not make a new one.
                let kind = fault_kind(msg);
                if self.0.get(&s.sensor) != Some(&kind) {
                    tracing::warn!(bus = %src.name(), sensor = %s.sensor, error = %msg,
                        "{} read failed; the sensor reports a fault (logged once until it changes).", policy.kind);
                    self.0.insert(s.sensor, kind);
                }
                f64::NAN
            }
        }
    }
}

/// A fault message without its numbers: what "the same fault" means for logging once per change.
fn fault_kind(msg: &str) -> String {
    msg.chars()
        .filter(|c| !c.is_ascii_digit() && *c != '.' && *c != '-')
        .collect()
}

mod deadline;
#[cfg(test)]
mod tests;
mod timer;
