//! I2C: one OS thread per bus owns the bus (Linux i2c-dev, or the register-map simulation) and reads its sensors
//! serially, each on its own interval; the devices share the bus through `embedded-hal-bus`. A failed read (NACK,
//! bus error, CRC mismatch, implausible value) is logged (once per change), counted, and sent as a NaN reading, so
//! validation raises SENSOR_FAULT for that sensor and clears it when good readings return; the device is
//! initialised again before its next read (a chip reset by a brown-out gets its configuration back). An async
//! supervisor reports a transfer that does not complete within the bus `timeout` (a wedged bus), which a thread
//! blocked in the kernel cannot report itself.

pub mod bus;
pub mod chips;
pub mod sim;

use crate::config::{I2cConfig, I2cSource, SensorConfig, SourceConfig};
use crate::metrics::SharedMetrics;
use crate::model::{Reading, Readings, Timestamp};
use bus::{dev, Bus};
use chips::{ChipError, Device};
use sim::SimBus;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

/// A device on the bus and the sensors it serves.
struct Slot {
    address: u8,
    device: Box<dyn Device>,
    ready: bool,
    last_error: Option<String>,
}

/// A sensor and when it is due.
struct Due {
    id: Arc<str>,
    src: I2cSource,
    slot: usize,
    interval: Duration,
    next: Instant,
    failing: bool,
    /// The last fault logged for this sensor: each kind is logged once per change, whatever its neighbours on the
    /// same device do (a full-scale ADS1115 channel beside healthy ones logged on every read before).
    last_error: Option<String>,
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
fn open(cfg: &I2cConfig, sensors: &[(SensorConfig, I2cSource)]) -> Result<Opened, String> {
    let sim = (cfg.device == "simulated").then(|| simulation(cfg, sensors));
    let bus = Rc::new(RefCell::new(Bus::open(&cfg.device, sim)?));
    let mut slots: Vec<Slot> = Vec::new();
    let mut due = Vec::new();
    let now = Instant::now();
    for (s, src) in sensors {
        let slot = match slots.iter().position(|x| x.address == src.address) {
            Some(i) => i,
            None => {
                slots.push(Slot {
                    address: src.address,
                    device: chips::open(src, dev(&bus), dev(&bus)),
                    ready: false,
                    last_error: None,
                });
                slots.len() - 1
            }
        };
        due.push(Due {
            id: Arc::from(s.id.as_str()),
            src: src.clone(),
            slot,
            interval: s.interval.0,
            next: now,
            failing: false,
            last_error: None,
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

/// Run one bus until `token` is cancelled.
pub async fn run(
    cfg: I2cConfig,
    sensors: Vec<SensorConfig>,
    tx: mpsc::Sender<Readings>,
    token: CancellationToken,
    metrics: SharedMetrics,
) {
    let busy = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let opened = Instant::now();
    let (done_tx, mut done) = tokio::sync::oneshot::channel::<()>();
    let thread = {
        let (cfg, busy, token, metrics) = (
            cfg.clone(),
            Arc::clone(&busy),
            token.clone(),
            Arc::clone(&metrics),
        );
        std::thread::Builder::new()
            .name(format!("i2c-{}", cfg.name))
            .spawn(move || {
                bus_thread(&cfg, &sensors, &tx, &token, &metrics, busy, opened);
                let _ = done_tx.send(());
            })
    };
    if let Err(e) = thread {
        tracing::error!(bus = %cfg.name, error = %e, "Cannot start the I2C bus thread.");
        return;
    }
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut wedged = false;
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = check.tick() => {
                let since = busy.load(Ordering::Relaxed);
                let stuck = since != 0 && opened.elapsed().as_millis() as u64 > since + cfg.timeout.0.as_millis() as u64;
                if stuck && !wedged {
                    metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(bus = %cfg.name, device = %cfg.device, timeout_ms = cfg.timeout.0.as_millis() as u64,
                        "An I2C transfer has not completed within the timeout: the bus looks wedged (a device holding SDA low?). Its sensors will go offline until it recovers.");
                } else if !stuck && wedged {
                    tracing::info!(bus = %cfg.name, "The I2C bus completes transfers again.");
                }
                wedged = stuck;
            }
        }
    }
}

fn bus_thread(
    cfg: &I2cConfig,
    sensors: &[SensorConfig],
    tx: &mpsc::Sender<Readings>,
    token: &CancellationToken,
    metrics: &SharedMetrics,
    busy: Arc<std::sync::atomic::AtomicU64>,
    opened: Instant,
) {
    let sensors = sensors_on(sensors, &cfg.name);
    let mut backoff = crate::util::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let (bus, mut slots, mut due) = loop {
        match open(cfg, &sensors) {
            Ok(x) => break x,
            Err(e) => {
                metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next_delay();
                tracing::error!(bus = %cfg.name, error = %e, retry_in_ms = wait.as_millis() as u64, "Cannot open the I2C bus.");
                if sleep_until(Instant::now() + wait, token) {
                    return;
                }
            }
        }
    };
    {
        let mut b = bus.borrow_mut();
        b.busy_since = busy;
        b.set_epoch(opened);
    }
    tracing::info!(bus = %cfg.name, device = %cfg.device, sensors = due.len(), devices = slots.len(), "I2C bus open.");
    let mut cycle = 0u64;
    loop {
        let Some(next) = due.iter().map(|d| d.next).min() else {
            while !sleep_until(Instant::now() + Duration::from_secs(3600), token) {}
            return;
        };
        if sleep_until(next, token) {
            return;
        }
        cycle += 1;
        let now = Instant::now();
        // A reading is stamped when it was measured. The readings of one cycle share a stamp (they travel together:
        // telemetry sends them as one message) as long as they were measured within STAMP_SPREAD of it; a reading
        // measured later (a slow or hung transfer before it) starts a new stamp.
        let mut ts = Timestamp::now();
        let mut ts_at = Instant::now();
        // A device measures once per cycle (a BME280's three quantities come from one conversion): the stamp of
        // its first read this cycle.
        let mut device_ts: Vec<(usize, Timestamp)> = Vec::new();
        let mut batch: Readings = Vec::new();
        for d in due.iter_mut().filter(|d| d.next <= now) {
            d.next += d.interval;
            if d.next < now {
                d.next = now + d.interval;
            }
            let slot = &mut slots[d.slot];
            let started = Instant::now();
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
            metrics.polls.fetch_add(1, Ordering::Relaxed);
            metrics
                .poll_latency_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            match r {
                Ok(v) => {
                    if d.failing {
                        tracing::info!(bus = %cfg.name, sensor = %d.id, address = format!("0x{:02x}", slot.address), "I2C sensor reads again.");
                    }
                    d.failing = false;
                    d.last_error = None;
                    slot.last_error = None;
                    batch.push(Reading::new(Arc::clone(&d.id), ts, v));
                }
                Err(e) => {
                    metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                    let msg = e.to_string();
                    // Once per kind of fault: the measured value in the message ("3.41 mA") does not make a new one.
                    let kind = fault_kind(&msg);
                    if d.last_error.as_deref() != Some(kind.as_str()) {
                        tracing::warn!(bus = %cfg.name, sensor = %d.id, chip = d.src.chip.spec().name,
                            address = format!("0x{:02x}", slot.address), error = %msg, "I2C read failed; the sensor reports a fault (logged once until it changes) and the device is initialised again before its next read.");
                        d.last_error = Some(kind);
                    }
                    slot.last_error = Some(msg);
                    d.failing = true;
                    // NaN: validation marks it invalid and raises SENSOR_FAULT; the good readings that follow clear it.
                    batch.push(Reading::new(Arc::clone(&d.id), ts, f64::NAN));
                }
            }
        }
        bus.borrow_mut().take_raw();
        if !batch.is_empty() && tx.blocking_send(batch).is_err() {
            return;
        }
    }
}

/// Readings of one cycle measured within this of its stamp share it.
const STAMP_SPREAD: Duration = Duration::from_millis(100);

/// A fault message without its numbers: what "the same fault" means for logging once per change.
fn fault_kind(msg: &str) -> String {
    msg.chars()
        .filter(|c| !c.is_ascii_digit() && *c != '.' && *c != '-')
        .collect()
}

/// Sleep until `t` in short steps; true when cancelled.
fn sleep_until(t: Instant, token: &CancellationToken) -> bool {
    loop {
        if token.is_cancelled() {
            return true;
        }
        let now = Instant::now();
        if now >= t {
            return false;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}

/// One reading of each sensor (commissioning): value, or the error, with the raw bytes read.
pub fn read_once(
    cfg: &I2cConfig,
    sensors: &[(SensorConfig, I2cSource)],
) -> Result<Vec<OneRead>, String> {
    let (bus, mut slots, due) = open(cfg, sensors)?;
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
pub fn scan(device: &str) -> Result<Vec<(u8, String)>, String> {
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
