//! I2C: one OS thread per bus owns the bus (Linux i2c-dev, or the register-map simulation) and reads the sensors
//! of a poll group serially when the source runner asks; the devices share the bus through `embedded-hal-bus`. A
//! failed read (NACK, bus error, CRC mismatch, implausible value) is that sensor's fault: the runner logs it (once
//! per change), counts it and stores NaN, so validation raises SENSOR_FAULT and clears it when good readings
//! return; the device is initialised again before its next read (a chip reset by a brown-out gets its
//! configuration back). A transfer that does not complete within the bus `timeout` (a wedged bus) is reported by
//! the async side, which a thread blocked in the kernel cannot do itself.

pub mod bus;
pub mod chips;
pub mod error;
pub mod sim;

use super::runner::{Policy, Poll, Sample, Source};
use super::SourceError;
use crate::config::{I2cConfig, I2cSource, SensorConfig, SourceConfig};
use crate::model::{SensorId, Timestamp};
use bus::{dev, Bus, OpenError};
use chips::{ChipError, Device};
use sim::SimBus;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The simulation for a `device = "simulated"` bus: a model of every configured chip, minus `absent` addresses.
pub fn simulation(bus: &I2cConfig, sensors: &[(SensorConfig, I2cSource)]) -> SimBus {
    let mut s = SimBus::default();
    for (_, src) in sensors {
        if !bus.absent.contains(&src.address) {
            s.attach(src.address, SimBus::model(src.chip));
        }
    }
    s
}

/// A device on the bus.
struct Slot {
    address: u8,
    device: Box<dyn Device>,
    ready: bool,
}

/// A sensor and the device that serves it.
struct Due {
    id: SensorId,
    src: I2cSource,
    slot: usize,
}

/// Read `want` from `slot`, initialising the device first when needed. Returns the value in engineering units.
fn read_one(slot: &mut Slot, want: &I2cSource, cycle: u64) -> Result<f64, ChipError> {
    if !slot.ready {
        slot.device.init()?;
        slot.ready = true;
    }
    match slot.device.read(want, cycle) {
        Ok(v) => Ok(want.engineering(v)),
        Err(e) => {
            slot.ready = false;
            Err(e)
        }
    }
}

/// An open bus, its devices and its sensors' schedule.
type Opened = (Rc<RefCell<Bus>>, Vec<Slot>, Vec<Due>);

/// One sensor's commissioning read: id, value or error, raw bytes read.
pub type OneRead = (String, Result<f64, String>, Vec<u8>);

/// Open the bus and the drivers of `sensors`.
fn open(
    cfg: &I2cConfig,
    sensors: &[(SensorConfig, I2cSource)],
    given: Option<SimBus>,
) -> Result<Opened, OpenError> {
    let sim = given.or_else(|| (cfg.device == "simulated").then(|| simulation(cfg, sensors)));
    let bus = Rc::new(RefCell::new(Bus::open(&cfg.device, sim)?));
    let mut slots: Vec<Slot> = Vec::new();
    let mut due = Vec::new();
    for (s, src) in sensors {
        let slot = match slots.iter().position(|x| x.address == src.address) {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    address: src.address,
                    device: chips::open(src, dev(&bus), dev(&bus)),
                    ready: false,
                });
                slots.len() - 1
            }
        };
        due.push(Due {
            id: SensorId::new(&s.id),
            src: src.clone(),
            slot,
        });
    }
    Ok((bus, slots, due))
}

/// The I2C sensors of `cfg` on the bus `name`.
pub fn sensors_on(cfg: &[SensorConfig], name: &str) -> Vec<(SensorConfig, I2cSource)> {
    cfg.iter()
        .filter_map(|s| match &s.source {
            SourceConfig::I2c(src) if src.bus == name => Some((s.clone(), src.clone())),
            _ => None,
        })
        .collect()
}

/// What the bus thread is asked: read these sensors (indexes into the bus's sensors), answer here.
type Job = (Vec<usize>, oneshot::Sender<Vec<Sample>>);

/// The thread that owns an open bus.
struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
    done: oneshot::Receiver<()>,
}

/// One `[[i2c]]` bus as a [`Source`]. The bus is blocking (i2c-dev ioctls), so an OS thread owns it and reads the
/// sensors of one poll group per job; this side waits for the answer and watches the transfer clock, so a
/// transfer that does not complete within the bus `timeout` (a wedged bus, which a thread blocked in the kernel
/// cannot report itself) is a timeout while the thread is still stuck.
pub struct I2cBus {
    cfg: I2cConfig,
    sensors: Vec<(SensorConfig, I2cSource)>,
    polls: Vec<(Duration, Vec<usize>)>,
    worker: Option<Worker>,
    /// The answer to a job the thread has not finished (a wedged transfer): the next read waits for it.
    pending: Option<oneshot::Receiver<Vec<Sample>>>,
    busy: Arc<AtomicU64>,
    epoch: Instant,
    /// A given simulation instead of the config's (tests: a bus that wedges).
    sim: Option<SimFactory>,
}

/// Builds the simulated bus at each open.
pub type SimFactory = Arc<dyn Fn() -> SimBus + Send + Sync>;

impl I2cBus {
    /// On a simulation built by `sim` at each open, whatever the config's device says.
    pub fn with_simulation(cfg: I2cConfig, sensors: &[SensorConfig], sim: SimFactory) -> Self {
        I2cBus {
            sim: Some(sim),
            ..I2cBus::new(cfg, sensors)
        }
    }

    /// The bus and its sensors from the config.
    pub fn new(cfg: I2cConfig, sensors: &[SensorConfig]) -> Self {
        let sensors = sensors_on(sensors, &cfg.name);
        let mut polls: Vec<(Duration, Vec<usize>)> = Vec::new();
        for (i, (s, _)) in sensors.iter().enumerate() {
            match polls.iter_mut().find(|(iv, _)| *iv == s.interval.0) {
                Some((_, v)) => v.push(i),
                None => polls.push((s.interval.0, vec![i])),
            }
        }
        I2cBus {
            cfg,
            sensors,
            polls,
            worker: None,
            pending: None,
            busy: Arc::default(),
            epoch: Instant::now(),
            sim: None,
        }
    }

    /// Longest a poll group may take without a wedged transfer: the transfers and the configured waits.
    fn group_budget(&self) -> Duration {
        let waits: Duration = self
            .sensors
            .iter()
            .map(|(_, src)| src.trigger.map_or(Duration::ZERO, |t| t.wait))
            .sum();
        self.cfg.timeout.0 * (self.sensors.len() as u32 + 1) + waits + Duration::from_secs(1)
    }

    /// A transfer has been in progress for longer than the bus timeout.
    fn wedged(&self) -> bool {
        let since = self.busy.load(Ordering::Relaxed);
        since != 0
            && self.epoch.elapsed().as_millis() as u64
                > since + self.cfg.timeout.0.as_millis() as u64
    }
}

impl Source for I2cBus {
    fn name(&self) -> &str {
        &self.cfg.name
    }
    fn policy(&self) -> Policy {
        Policy {
            kind: "I2C",
            timeout: self.group_budget(),
            retries: 0,
            reconnect: (Duration::from_secs(1), Duration::from_secs(60)),
            timeout_reconnects: false,
            fresh_after_reconnect: false,
            timeout_hint: "An I2C transfer has not completed within the timeout: the bus looks wedged (a device holding SDA low?). Its sensors go offline until it recovers.",
        }
    }
    fn polls(&self) -> Vec<Poll> {
        self.polls
            .iter()
            .map(|(interval, idx)| Poll {
                interval: *interval,
                unit: None,
                what: format!("every {}", humantime::format_duration(*interval)),
                sensors: idx
                    .iter()
                    .map(|&i| SensorId::from(self.sensors[i].0.id.as_str()))
                    .collect(),
            })
            .collect()
    }
    async fn connect(&mut self) -> Result<(), SourceError> {
        if self.worker.is_some() {
            return Ok(());
        }
        let (opened_tx, opened) = oneshot::channel();
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (done_tx, done) = oneshot::channel();
        let (cfg, sensors, busy, epoch) = (
            self.cfg.clone(),
            self.sensors.clone(),
            Arc::clone(&self.busy),
            self.epoch,
        );
        let sim = self.sim.as_ref().map(|f| f());
        std::thread::Builder::new()
            .name(format!("i2c-{}", self.cfg.name))
            .spawn(move || {
                bus_thread(&cfg, &sensors, sim, opened_tx, &rx, busy, epoch);
                let _ = done_tx.send(());
            })
            .map_err(|e| SourceError::Transport(format!("cannot start the bus thread: {e}")))?;
        match opened.await {
            Ok(Ok(())) => {
                self.worker = Some(Worker { jobs, done });
                tracing::info!(bus = %self.cfg.name, device = %self.cfg.device, sensors = self.sensors.len(), "I2C bus open.");
                Ok(())
            }
            Ok(Err(e)) => Err(SourceError::Config(format!("cannot open the I2C bus: {e}"))),
            Err(_) => Err(SourceError::Transport("the bus thread stopped".into())),
        }
    }
    async fn read(&mut self, poll: usize) -> Result<Vec<Sample>, SourceError> {
        if self.pending.is_none() {
            let (Some(w), Some((_, idx))) = (&self.worker, self.polls.get(poll)) else {
                return Err(SourceError::Transport("the bus is not open".into()));
            };
            let (tx, rx) = oneshot::channel();
            w.jobs
                .send((idx.clone(), tx))
                .map_err(|_| SourceError::Transport("the bus thread stopped".into()))?;
            self.pending = Some(rx);
        }
        // The first look after 100 ms: a transfer that just came free has time to say so.
        let step = Duration::from_millis(100);
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + step, step);
        loop {
            let Some(rx) = self.pending.as_mut() else {
                return Err(SourceError::Transport("the bus is not open".into()));
            };
            tokio::select! {
                r = rx => {
                    self.pending = None;
                    return r.map_err(|_| SourceError::Transport("the bus thread stopped".into()));
                }
                _ = check.tick() => {
                    if self.wedged() {
                        return Err(SourceError::Timeout);
                    }
                }
            }
        }
    }
    fn disconnect(&mut self) {
        self.worker = None;
        self.pending = None;
    }
    async fn close(&mut self) {
        self.pending = None;
        if let Some(w) = self.worker.take() {
            drop(w.jobs);
            // A thread stuck in a wedged transfer is left behind rather than waited for.
            let _ = tokio::time::timeout(Duration::from_secs(2), w.done).await;
        }
    }
}

/// The bus thread: open the bus, then read one poll group per job until the jobs stop.
fn bus_thread(
    cfg: &I2cConfig,
    sensors: &[(SensorConfig, I2cSource)],
    sim: Option<SimBus>,
    opened: oneshot::Sender<Result<(), OpenError>>,
    jobs: &std::sync::mpsc::Receiver<Job>,
    busy: Arc<AtomicU64>,
    epoch: Instant,
) {
    let (bus, mut slots, due) = match open(cfg, sensors, sim) {
        Ok(x) => x,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    {
        let mut b = bus.borrow_mut();
        b.busy_since = busy;
        b.set_epoch(epoch);
    }
    if opened.send(Ok(())).is_err() {
        return;
    }
    let mut cycle = 0u64;
    while let Ok((idx, reply)) = jobs.recv() {
        cycle += 1;
        // A reading is stamped when it was measured. The readings of one group share a stamp (they travel
        // together: telemetry sends them as one message) as long as they were measured within STAMP_SPREAD of
        // it; a reading measured later (a slow or hung transfer before it) starts a new stamp.
        let mut ts = Timestamp::now();
        let mut ts_at = Instant::now();
        // A device measures once per cycle (a BME280's three quantities come from one conversion): the stamp of
        // its first read this cycle.
        let mut device_ts: Vec<(usize, Timestamp)> = Vec::new();
        let mut out = Vec::with_capacity(idx.len());
        for d in idx.iter().filter_map(|&i| due.get(i)) {
            let slot = &mut slots[d.slot];
            let r = read_one(slot, &d.src, cycle);
            if ts_at.elapsed() > STAMP_SPREAD {
                ts = Timestamp::now();
                ts_at = Instant::now();
            }
            let ts = match device_ts.iter().find(|(s, _)| *s == d.slot) {
                Some((_, t)) => *t,
                None => {
                    device_ts.push((d.slot, ts));
                    ts
                }
            };
            out.push(Sample {
                sensor: d.id,
                value: r.map_err(|e| {
                    format!("{} at 0x{:02x}: {e}", d.src.chip.spec().name, slot.address)
                }),
                at: Some(ts),
                exact: None,
            });
        }
        bus.borrow_mut().take_raw();
        if reply.send(out).is_err() {
            // Nobody waits any more (the source stopped): the jobs channel closes next.
            continue;
        }
    }
}

/// Readings of one group measured within this of its stamp share it.
const STAMP_SPREAD: Duration = Duration::from_millis(100);

/// One reading of each sensor (commissioning): value, or the error, with the raw bytes read.
pub fn read_once(
    cfg: &I2cConfig,
    sensors: &[(SensorConfig, I2cSource)],
) -> Result<Vec<OneRead>, OpenError> {
    let (bus, mut slots, due) = open(cfg, sensors, None)?;
    let mut out = Vec::new();
    for d in &due {
        bus.borrow_mut().take_raw();
        let r = read_one(&mut slots[d.slot], &d.src, 1).map_err(|e| e.to_string());
        out.push((d.id.to_string(), r, bus.borrow_mut().take_raw()));
    }
    Ok(out)
}

/// Which addresses answer on `device` (the way `i2cdetect` probes: a one-byte read at 0x30–0x37 and 0x50–0x5F,
/// where a quick write could change an EEPROM or a write-only chip, a zero-length write elsewhere), with the
/// likely chip from its identity register where one exists.
pub fn scan(device: &str) -> Result<Vec<(u8, String)>, OpenError> {
    use embedded_hal::i2c::I2c;
    let mut bus = Bus::open(device, None)?;
    let mut found = Vec::new();
    for a in 0x03u8..=0x77 {
        let ok = if (0x30..=0x37).contains(&a) || (0x50..=0x5F).contains(&a) {
            let mut b = [0u8];
            bus.read(a, &mut b).is_ok()
        } else {
            bus.write(a, &[]).is_ok()
        };
        if ok {
            found.push((a, identify(&mut bus, a)));
        }
    }
    Ok(found)
}

/// The likely chip at `a`, from identity registers.
pub fn identify<B: embedded_hal::i2c::I2c>(bus: &mut B, a: u8) -> String {
    let mut b = [0u8; 2];
    match a {
        0x76 | 0x77 => {
            let mut id = [0u8];
            match bus.write_read(a, &[0xD0], &mut id).map(|_| id[0]) {
                Ok(0x60) => "BME280 (chip id 0x60)".into(),
                Ok(0x58) => "BMP280 (chip id 0x58)".into(),
                Ok(x) => format!("unknown (register 0xD0 = 0x{x:02x})"),
                Err(_) => "unknown".into(),
            }
        }
        0x48..=0x4B => match bus
            .write_read(a, &[0x0F], &mut b)
            .map(|_| u16::from_be_bytes(b))
        {
            Ok(id) if id & 0x0FFF == 0x0117 => "TMP117 (device id 0x0117)".into(),
            _ => "ADS1115 or TMP117 (no TMP117 id: likely an ADS1x15)".into(),
        },
        0x44..=0x46 => "SHT3x/SHT4x or INA219 (0x40–0x4F)".into(),
        0x40..=0x4F => "INA219 likely (0x40–0x4F)".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
