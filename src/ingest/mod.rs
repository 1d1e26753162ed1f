//! Ingest: the one thread that owns the store's writer connection.
//!
//! Sources hand their readings to the [`Intake`]: validated and evaluated ([`Engine`]) at once on the source's own
//! thread when the writer is free (inline.rs), else queued in a bounded channel for this thread, which does the
//! same. This thread commits alert transitions at once (fsync'd) and reading batches every `flush_interval`,
//! enforces the size cap and prunes delivered data. It runs on its own OS thread with a small current-thread
//! runtime for its timers, so an fsync or a busy store never stalls a Modbus timeout or an MQTT keep-alive on the
//! async workers. After each commit it bumps the [`Signals`] the sinks wait on and leaves the commit's items in
//! [`Signals::fresh`] for the sinks that are caught up.

use crate::channels::{Control, Intake, Signals};
use crate::config::Config;
use crate::metrics::SharedMetrics;
use crate::model::{Alert, AlertState, Live, Quality, Reading, Readings, Timestamp};
use crate::pipeline::Engine;
use crate::store::{Consumer, Fresh, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// A BUFFER_OVERFLOW episode ends (the alert clears) after this long without drops.
const OVERFLOW_CLEAR_AFTER: Duration = Duration::from_secs(600);
/// Readings held in memory while the disk refuses writes, before the oldest are dropped (≈ 40 bytes each:
/// ≈ 8 MB, within a small gateway's budget).
const MAX_PENDING: usize = 200_000;
/// Alert transitions held in memory while the disk refuses writes (≈ 300 bytes each: ≈ 3 MB).
const MAX_UNSAVED_ALERTS: usize = 10_000;
/// Polls taken from the channel in one go before alerts are committed.
const TAKE_AT_ONCE: usize = 256;
/// The full alarm snapshot goes with a commit this often; alert commits in between carry the states of the
/// sensors their transitions belong to (alarm_state.rs). What else moves between transitions is pending delays
/// and windows: a crash loses at most this much of their progress (a pending delay then runs again from its
/// start: an alarm later, never earlier), and the engine is not serialized, compressed and written with every
/// commit (most of the per-reading cost at 2,000 sensors).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// How often the size cap and the room on disk are looked at while readings are committed slowly (commit.rs).
const CAP_EVERY: Duration = Duration::from_secs(10);
/// Operator commands queued for the alarm engine (more are refused as busy by the MQTT side).
const CONTROL_QUEUE: usize = 64;

/// The running ingest thread.
pub struct Ingest {
    /// New configurations (SIGHUP) with the sinks they configure, applied between readings.
    pub reload: mpsc::Sender<(Arc<Config>, Vec<Consumer>)>,
    /// What the sinks wait on.
    pub signals: Signals,
    /// Where the sources hand over their readings.
    pub intake: Intake,
    stop: CancellationToken,
    done: oneshot::Receiver<()>,
}

impl Ingest {
    /// Open the store, restore the alarm state and start the thread. Fails if the store cannot be opened.
    /// `consumers` are the configured sinks: data they have not passed is never pruned. Up to `queue` batches wait
    /// for the thread before a source is held back.
    pub async fn start(
        cfg: Arc<Config>,
        consumers: Vec<Consumer>,
        queue: usize,
        metrics: SharedMetrics,
    ) -> anyhow::Result<Ingest> {
        let (tx, readings) = mpsc::channel::<Readings>(queue.max(1));
        // The ingest thread proves the async runtime alive by running a task on it (see `watchdog.rs`).
        let async_rt = tokio::runtime::Handle::current();
        let (ready_tx, ready_rx) =
            oneshot::channel::<Result<(Signals, Arc<inline::Shared>), String>>();
        let (done_tx, done) = oneshot::channel();
        let (reload, reload_rx) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("watchpost-ingest".into())
            .spawn(move || {
                // tokio counts its timer's milliseconds from the runtime's start: the beat is set on that grid.
                let origin = std::time::Instant::now();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the ingest runtime: {e}")));
                        return;
                    }
                };
                match Writer::open(cfg, consumers, metrics) {
                    Ok((w, signals, control_rx)) => {
                        let shared = Arc::new(inline::Shared::new(w));
                        let _ = ready_tx.send(Ok((signals, Arc::clone(&shared))));
                        rt.block_on(run(
                            shared, readings, reload_rx, control_rx, stop2, origin, async_rt,
                        ));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
                let _ = done_tx.send(());
            })?;
        let (signals, shared) = ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the ingest thread ended before the store was open"))?
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Ingest {
            reload,
            signals,
            intake: Intake::with_inline(tx, shared),
            stop,
            done,
        })
    }

    /// Commit everything still queued, mark the store clean and end the thread.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }
}

/// The state of the ingest thread.
struct Writer {
    cfg: Arc<Config>,
    consumers: Vec<Consumer>,
    store: Store,
    engine: Engine,
    pending: Vec<Reading>,
    unsaved_alerts: Vec<Alert>,
    metrics: SharedMetrics,
    readings_tx: watch::Sender<i64>,
    events_tx: watch::Sender<i64>,
    live_tx: watch::Sender<Arc<Live>>,
    /// Each commit's items, for the sinks that are caught up.
    fresh: Fresh,
    /// Cursor moves handed by the sinks, saved with the next commit (store/handoff.rs).
    handoff: crate::store::Handoff,
    /// The open BUFFER_OVERFLOW alert and when readings were last dropped.
    overflow: Option<(Alert, Instant)>,
    alerts: Vec<Alert>,
    /// Newest timestamp written per sensor.
    last_ts: crate::util::SeqMap<crate::model::SensorId, Timestamp>,
    /// The daemon's timeline: the wall clock, never stepping back (see clock.rs).
    clock: clock::Timeline,
    /// Store failures are logged once a minute with a count, not on every flush.
    fail_log: crate::util::Throttle,
    /// When the last full alarm snapshot was committed; `None`: the next commit carries one (alarm_state.rs).
    snap_at: Option<Instant>,
    /// When the size cap was last looked at and the readings committed since; `None`: at the next flush.
    cap_check: Option<(Instant, u64)>,
    /// When the thread started, until the first reading is logged.
    first_reading: Option<Instant>,
    /// The last flush committed readings: more are expected, the next flush is timed.
    flowing: bool,
    /// Judging on the sources' thread (inline.rs).
    inline: inline::Budget,
    /// Scratch for the live state: per configured sensor, its newest reading held (live.rs).
    newest: Vec<usize>,
    /// The live state's sensors in its map's order: each one's place in the config (live.rs).
    live_order: Vec<Option<usize>>,
    /// Moves the write-ahead log into the database off the commit path; `None` if it could not start (commits
    /// then checkpoint themselves).
    checkpointer: Option<crate::store::Checkpointer>,
}

impl Writer {
    fn open(
        cfg: Arc<Config>,
        consumers: Vec<Consumer>,
        metrics: SharedMetrics,
    ) -> Result<(Writer, Signals, mpsc::Receiver<Control>), String> {
        let started = Timestamp::now();
        let dir = cfg.gateway.data_dir.clone();
        let store = Store::open(&dir).map_err(|e| {
            let hint = if e.is_permission() {
                " (the data directory or its files belong to another user, e.g. after `watchpost run` as root: \
                 chown -R them to the service user; under systemd, StateDirectory= does this for /var/lib/watchpost)"
            } else {
                ""
            };
            format!("cannot open the store in {}: {e}{hint}", dir.display())
        })?;
        let mut engine = Engine::new(&cfg.gateway.id, &cfg.gateway.location, &cfg.sensor, started);
        engine.set_acknowledge(cfg.commands_enabled());
        engine.set_alarms(&cfg.alarms);
        match store.engine_state() {
            Ok(Some(saved)) => alarm_state::restore(&mut engine, &saved, started),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot read the saved alarm state: {e}")),
        }
        let checkpointer = crate::store::Checkpointer::start(&dir)
            .map_err(|e| tracing::warn!(error = %e, "Cannot start the store's checkpointer; commits will checkpoint the write-ahead log themselves."))
            .ok();
        let mut store = store;
        if let Err(e) = store.prune(&consumers, cfg.buffer.retention.0, started) {
            tracing::warn!(error = %e, "Pruning delivered data failed.");
        }
        // A BUFFER_OVERFLOW left open by the last run stays open: its clear comes ten minutes after the last drop,
        // counted from now.
        let overflow = match store.overflow_alert() {
            Ok(a) => a.map(|a| (a, Instant::now())),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the saved BUFFER_OVERFLOW state.");
                None
            }
        };
        // The signals start at what the store holds, so a sink knows at once whether it has anything to do.
        let (newest_batch, newest_event) = store
            .newest()
            .map_err(|e| format!("cannot read the store: {e}"))?;
        let (readings_tx, readings) = watch::channel(newest_batch);
        let (events_tx, events) = watch::channel(newest_event);
        let (live_tx, live) = watch::channel(Arc::new(Live::default()));
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let fresh = Fresh::default();
        let handoff = crate::store::Handoff::default();
        let w = Writer {
            cfg,
            consumers,
            store,
            engine,
            pending: Vec::new(),
            unsaved_alerts: Vec::new(),
            metrics,
            readings_tx,
            events_tx,
            live_tx,
            fresh: fresh.clone(),
            handoff: handoff.clone(),
            overflow,
            alerts: Vec::new(),
            last_ts: Default::default(),
            clock: clock::Timeline::new(Timestamp::now(), Instant::now()),
            fail_log: crate::util::Throttle::new(Duration::from_secs(60)),
            snap_at: Some(Instant::now()),
            cap_check: None,
            first_reading: Some(Instant::now()),
            flowing: false,
            inline: inline::Budget::default(),
            newest: Vec::new(),
            live_order: Vec::new(),
            checkpointer,
        };
        Ok((
            w,
            Signals {
                readings,
                events,
                live,
                fresh,
                handoff,
                control,
                remote: None,
                remote_in_force: None,
            },
            control_rx,
        ))
    }

    /// Take a batch from a source (queued, or judged inline on the source's thread): the clock, then each reading.
    fn take_batch(&mut self, batch: Readings) {
        if let Some(started) = self.first_reading.take() {
            if let Some(r) = batch.first() {
                tracing::info!(after_ms = %format!("{:.1}", started.elapsed().as_secs_f64() * 1e3), sensor = %r.sensor, "First reading.");
            }
        }
        // A step is looked for before each batch too, not only at the beat: a reading stamped after an NTP step must
        // not meet alarm timers that have not moved with it.
        self.watch_clock();
        self.accept_all(batch);
    }

    /// Run the alarm engine's clock (deadlines, windows, derived sensors): its transitions join those to commit.
    fn tick_engine(&mut self, beat: &mut beat::Beat) {
        let mut out = std::mem::take(&mut self.alerts);
        let now_ts = self.clock.now();
        self.engine.tick(now_ts, &mut out);
        for r in self.engine.derive(now_ts, &mut out) {
            self.keep(r);
        }
        self.alerts = out;
        self.check_overflow_cleared();
        beat.engine_ticked(self.engine.next_due(now_ts));
    }

    /// After batches were taken: alert transitions are committed now (with the readings held, when a flush is half
    /// due), a full batch is committed.
    fn settle(&mut self, beat: &mut beat::Beat) {
        // A transition may open a window or end a silence: ask the engine again (a reading alone only moves its
        // deadlines later).
        let alerts = !self.alerts.is_empty();
        if alerts {
            let ids = self.alerts.iter().map(|a| &*a.sensor);
            beat.engine_changed(self.engine.next_due_of(ids, self.clock.now()));
        }
        let now = Instant::now();
        if self.pending.len() >= self.cfg.buffer.batch_max_readings {
            self.flush();
        } else if beat.fold_due(
            alerts,
            self.pending.len(),
            self.cfg.buffer.flush_interval.0,
            now,
        ) {
            // The readings held go with the alerts; the next flush is a whole interval later.
            beat.last_flush = now;
            self.flush();
        } else {
            self.commit_alerts();
        }
        // Awake for a commit anyway: the engine, if due soon, is ticked now (beat.rs, `tick_along`), so an engine
        // ticked every second (an active flood, derived sensors) and alerts committed every second share one
        // wake-up. After the alerts' commit, so their latency does not carry the tick (all sensors at 2,000).
        if alerts && beat.tick_along(self.clock.now()) {
            self.tick_engine(beat);
            self.commit_alerts();
        }
    }
}

async fn run(
    shared: Arc<inline::Shared>,
    mut rx: mpsc::Receiver<Readings>,
    mut reload: mpsc::Receiver<(Arc<Config>, Vec<Consumer>)>,
    mut control: mpsc::Receiver<Control>,
    stop: CancellationToken,
    origin: std::time::Instant,
    async_rt: tokio::runtime::Handle,
) {
    // No fixed beat: the thread sleeps until the next flush, the alarm engine's next deadline or the watchdog (see
    // beat.rs), on the timer wheel's grid, or until a source needs it (inline.rs).
    let mut beat = beat::Beat::new(origin);
    let mut housekeeping = {
        let w = shared.lock();
        beat.engine_ticked(w.engine.next_due(w.clock.now()));
        let every = Duration::from_secs(60).min(w.cfg.alarms.kpi_interval.0);
        crate::util::grid_interval(origin, every)
    };
    let mut last_kpi: Option<Instant> = None;
    let mut watchdog = watchdog::Watchdog::new(async_rt);
    let sleep = tokio::time::sleep_until(Instant::now().into());
    tokio::pin!(sleep);
    loop {
        let wake = {
            let w = shared.lock();
            // Readings flowing (the last commit had some): the next flush is timed whether or not any is held yet,
            // so the first readings a source judges inline need not wake this thread.
            let flush_timed = !w.pending.is_empty() || w.flowing;
            shared.flush_timed.store(flush_timed, Ordering::Release);
            beat.next(
                w.clock.now(),
                &beat::Waiting {
                    pending: flush_timed,
                    flush_every: w.cfg.buffer.flush_interval.0,
                    awake: w.overflow.is_some() || !w.unsaved_alerts.is_empty(),
                    watchdog: watchdog.due(),
                },
            )
        };
        let wake = tokio::time::Instant::from(wake);
        if wake > sleep.deadline() {
            // Later: a new timer. `reset` to a later instant leaves the entry where it was in tokio's wheel (it moves
            // deadlines on lazily): the thread woke at the old deadline only to sleep again — once a second, after
            // each commit, under a steady flow of alerts. Dropping the old sleep takes its entry out.
            sleep.set(tokio::time::sleep_until(wake));
        } else if wake < sleep.deadline() {
            // Earlier: `reset` moves the entry at once.
            sleep.as_mut().reset(wake);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some((new, consumers)) = reload.recv() => {
                let mut w = shared.lock();
                w.consumers = consumers;
                w.reconfigure(new);
                beat.engine_changed(w.engine.next_due(w.clock.now()));
            }
            Some(c) = control.recv() => {
                let mut w = shared.lock();
                w.control(c);
                beat.engine_changed(w.engine.next_due(w.clock.now()));
            }
            Some(batch) = rx.recv() => {
                let mut w = shared.lock();
                w.take_batch(batch);
                shared.dequeued();
                // Take what is already queued without yielding, up to a bound.
                for _ in 0..TAKE_AT_ONCE {
                    match rx.try_recv() {
                        Ok(b) => {
                            w.take_batch(b);
                            shared.dequeued();
                        }
                        Err(_) => break,
                    }
                }
                w.settle(&mut beat);
            }
            _ = shared.nudge.notified() => {
                shared.lock().settle(&mut beat);
            }
            _ = &mut sleep => {
                let mut w = shared.lock();
                w.watch_clock();
                let now = Instant::now();
                beat.last = now;
                if beat.flush_due(w.cfg.buffer.flush_interval.0, now) {
                    beat.last_flush = now;
                    w.flush();
                }
                w.tick_engine(&mut beat);
                watchdog.tick(&w.metrics);
                w.commit_alerts();
            }
            _ = housekeeping.tick() => {
                let mut guard = shared.lock();
                let w = &mut *guard;
                // Give freed heap pages and the code only start-up (or a rare path) used back to the system.
                crate::memory::give_back();
                if let Err(e) = w.store.prune(&w.consumers, w.cfg.buffer.retention.0, Timestamp::now()) {
                    tracing::warn!(error = %e, "Pruning delivered data failed.");
                }
                let kpi_every = w.cfg.alarms.kpi_interval.0;
                if last_kpi.is_none_or(|t: Instant| t.elapsed() + Duration::from_secs(1) >= kpi_every) {
                    last_kpi = Some(Instant::now());
                    w.publish_kpi();
                }
            }
        }
    }
    let mut w = shared.lock();
    // Nothing more is judged inline: what is held now is what the last commit takes.
    w.inline.open = false;
    // The sources have stopped: commit what they sent.
    while let Ok(b) = rx.try_recv() {
        w.take_batch(b);
    }
    w.commit_alerts();
    w.flush();
    w.commit_alerts();
    // No commit is timed any more: the sinks save their own cursors from here on.
    w.commit_moves();
    // The alarm state as it is at the end, whatever the last commit carried.
    let snap = w.engine.snapshot();
    if let Err(e) = w.store.append_readings(&[], Some(&snap)) {
        tracing::warn!(error = %e, "Could not save the alarm state at shutdown.");
    }
    // Stopped before the last checkpoint (mark_clean's), which empties the log.
    w.checkpointer = None;
    if let Err(e) = w.store.mark_clean() {
        tracing::warn!(error = %e, "Could not mark the store as cleanly closed.");
    }
    tracing::info!("Readings committed.");
}

impl Writer {
    /// A wall-clock step (more than 2 s off the monotonic clock since the last look) is logged; a step forward
    /// moves the alarm engine's timers with it, a step back is absorbed by the timeline (clock.rs).
    fn watch_clock(&mut self) {
        let seen = self.clock.observe(Timestamp::now(), Instant::now());
        if seen.step_ms > 0 {
            tracing::warn!(
                step_ms = seen.step_ms,
                "The wall clock stepped forward; alarm timers move with it."
            );
        } else if seen.step_ms < 0 {
            tracing::warn!(step_ms = seen.step_ms, slew_s = -seen.step_ms / 100,
                "The wall clock stepped back; readings keep their order and spacing on a clock that runs 10 % slow until it meets the wall clock again, and alarm delays are not shortened.");
        }
        if seen.shift_ms != 0 {
            self.engine.shift_clock(seen.shift_ms);
        }
    }

    fn reconfigure(&mut self, new: Arc<Config>) {
        self.flush();
        self.engine.set_acknowledge(new.commands_enabled());
        self.engine.set_alarms(&new.alarms);
        let removed = self.engine.reconfigure(&new.sensor, Timestamp::now());
        self.alerts.extend(removed);
        // Sensors came and went: the next commit carries the whole alarm state.
        self.snap_at = None;
        self.cfg = new;
        // Sensors removed by the reload leave the live state (and so the device shadow); the places in the config
        // publish_live keeps for its keys are looked up again.
        self.live_order.clear();
        let cfg = &self.cfg;
        self.live_tx.send_modify(|live| {
            Arc::make_mut(live)
                .sensors
                .retain(|k, _| cfg.sensor.iter().any(|s| s.id == k.as_str()));
        });
        self.commit_alerts();
    }

    fn accept_all(&mut self, batch: Readings) {
        for r in batch {
            self.accept(r);
        }
    }

    fn accept(&mut self, mut r: Reading) {
        r.ts = self.clock.map(r.ts);
        self.forward_only(&mut r);
        self.engine.evaluate(&mut r, &mut self.alerts);
        self.hold(r);
    }

    /// Keep a reading the engine made (a derived sensor's), already validated and evaluated.
    fn keep(&mut self, mut r: Reading) {
        self.forward_only(&mut r);
        self.hold(r);
    }

    /// One sensor's readings never share a timestamp or go back in time (a stepped-back clock): InfluxDB would
    /// overwrite.
    fn forward_only(&mut self, r: &mut Reading) {
        match self.last_ts.get_mut(&r.sensor) {
            Some(last) => {
                if r.ts <= *last {
                    r.ts = Timestamp(last.0.saturating_add(1));
                    self.metrics.clock_adjusted.fetch_add(1, Ordering::Relaxed);
                }
                *last = r.ts;
            }
            None => {
                self.last_ts.insert(r.sensor, r.ts);
            }
        }
    }

    /// Count a judged reading and hold it for the next commit.
    fn hold(&mut self, r: Reading) {
        self.metrics.readings.fetch_add(1, Ordering::Relaxed);
        if r.quality != Quality::Good {
            self.metrics.readings_bad.fetch_add(1, Ordering::Relaxed);
        }
        self.pending.push(r);
    }

    /// Clear the BUFFER_OVERFLOW alert once nothing was dropped for `OVERFLOW_CLEAR_AFTER`.
    fn check_overflow_cleared(&mut self) {
        if let Some((a, last)) = &self.overflow {
            if last.elapsed() >= OVERFLOW_CLEAR_AFTER {
                let mut c = a.clone();
                c.state = AlertState::Cleared;
                c.ts = Timestamp::now();
                c.reason = Some(format!(
                    "no readings dropped for {}",
                    humantime::format_duration(OVERFLOW_CLEAR_AFTER)
                ));
                self.alerts.push(c);
                self.overflow = None;
                if let Err(e) = self.store.set_overflow_alert(None) {
                    tracing::warn!(error = %e, "Cannot save the BUFFER_OVERFLOW state.");
                }
            }
        }
    }
}

mod alarm_state;
mod beat;
mod clock;
mod commit;
mod control;
mod inline;
mod live;
#[cfg(test)]
mod tests;
mod watchdog;
