//! Drivers against the register-map simulation (whole measurement paths, Bosch's worked example) and against
//! `embedded-hal-mock` transaction scripts (exact bytes on the wire, from the datasheets).

use super::bus::{Bus, BusError};
use super::chips::{self, ChipError, Device};
use super::sim::{self, SimBus};
use crate::config::{Chip, I2cSource, SourceConfig};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
use std::cell::RefCell;
use std::rc::Rc;

fn src(toml: &str) -> I2cSource {
    let cfg = crate::config::parse_str(
        &format!("[gateway]\nid = \"gw\"\n[[i2c]]\nname = \"b\"\ndevice = \"simulated\"\n[[sensor]]\nid = \"s\"\nsource = {{ i2c = \"b\", {toml} }}\n"),
        std::path::Path::new("t.toml"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    match &cfg.sensor[0].source {
        SourceConfig::I2c(s) => s.clone(),
        other => panic!("{other:?}"),
    }
}

/// A simulated bus with one `chip` at `address`, and a driver for it.
fn on_sim(s: &I2cSource) -> (Rc<RefCell<Bus>>, Box<dyn Device>) {
    let mut sb = SimBus::default();
    sb.attach(s.address, SimBus::model(s.chip));
    let bus = Rc::new(RefCell::new(Bus::open("simulated", Some(sb)).expect("bus")));
    let d = chips::open(s, super::bus::dev(&bus), super::bus::dev(&bus));
    (bus, d)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn bme280_gives_boschs_worked_example() {
    // BST-BME280-DS002 §8.1: adc_T 519888 → 25.08 °C; adc_P 415148 → 100653.27 Pa.
    let t = src("chip = \"bme280\", address = 0x76, quantity = \"temperature\"");
    let p = src("chip = \"bme280\", address = 0x76, quantity = \"pressure\"");
    let (_bus, mut d) = on_sim(&t);
    d.init().expect("init");
    let tv = d.read(&t, 1).expect("t");
    let pv = d.read(&p, 1).expect("p");
    assert!(close(tv, 25.08, 0.005), "{tv}");
    assert!(close(pv, 1006.5327, 0.001), "{pv}");
}

#[test]
fn bme280_is_configured_again_after_a_brownout() {
    let t = src("chip = \"bme280\", address = 0x76, quantity = \"temperature\"");
    let (bus, mut d) = on_sim(&t);
    d.init().expect("init");
    assert!(close(d.read(&t, 1).expect("t"), 25.08, 0.01));
    bus.borrow_mut().sim().expect("sim").brownout(0x76);
    // Without reconfiguration the chip would deliver 0x80000 "skipped" samples.
    let v = d.read(&t, 2).expect("read after a brown-out");
    assert!(close(v, 25.08, 0.01), "{v}");
}

#[test]
fn bmp280_has_no_humidity_and_bme280_rejects_implausible_values() {
    let cfg = crate::config::parse_str(
        "[gateway]\nid = \"gw\"\n[[i2c]]\nname = \"b\"\ndevice = \"simulated\"\n[[sensor]]\nid = \"s\"\nsource = { i2c = \"b\", chip = \"bmp280\", address = 0x76, quantity = \"humidity\" }\n",
        std::path::Path::new("t.toml"),
        &[],
    );
    let err = cfg.expect_err("bmp280 humidity").to_string();
    assert!(
        err.contains("a bmp280 measures temperature, pressure; not \"humidity\""),
        "{err}"
    );

    let t = src("chip = \"bme280\", address = 0x77, quantity = \"temperature\"");
    let mut sb = SimBus::default();
    let mut chip = sim::Bme280::new(true);
    chip.adc = (300_000, 415_148, 27_000); // far below −40 °C
    sb.attach(0x77, Box::new(chip));
    let bus = Rc::new(RefCell::new(Bus::open("simulated", Some(sb)).expect("bus")));
    let mut d = chips::open(&t, super::bus::dev(&bus), super::bus::dev(&bus));
    d.init().expect("init");
    match d.read(&t, 1) {
        Err(ChipError::Implausible(m)) => assert!(m.contains("outside the BME280"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sht4x_checks_the_crc_and_recovers() {
    let h = src("chip = \"sht4x\", address = 0x44, quantity = \"humidity\"");
    let mut sb = SimBus::default();
    let mut chip = sim::Sensirion::new(true, 22.0, 51.5);
    chip.corrupt_next = true;
    sb.attach(0x44, Box::new(chip));
    let bus = Rc::new(RefCell::new(Bus::open("simulated", Some(sb)).expect("bus")));
    let mut d = chips::open(&h, super::bus::dev(&bus), super::bus::dev(&bus));
    d.init().expect("init");
    assert_eq!(d.read(&h, 1), Err(ChipError::Crc));
    let v = d.read(&h, 2).expect("next read");
    assert!(close(v, 51.5, 0.01), "{v}");
}

#[test]
fn a_missing_device_is_a_nack() {
    let t = src("chip = \"tmp117\", address = 0x48");
    let bus = Rc::new(RefCell::new(
        Bus::open("simulated", Some(SimBus::default())).expect("bus"),
    ));
    let mut d = chips::open(&t, super::bus::dev(&bus), super::bus::dev(&bus));
    match d.init() {
        Err(ChipError::Bus(BusError { kind, .. })) => {
            assert!(matches!(
                kind,
                embedded_hal::i2c::ErrorKind::NoAcknowledge(_)
            ))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ads1115_scales_a_4_20_ma_loop_and_flags_an_open_loop() {
    // 12 mA through 165 Ω = 1.98 V → the middle of 0–10 bar.
    let s = src("chip = \"ads1115\", address = 0x48, channel = \"a0\", quantity = \"current\", shunt_ohms = 165.0, from = [4.0, 20.0], to = [0.0, 10.0]");
    let (bus, mut d) = on_sim(&s);
    d.init().expect("init");
    let ma = d.read(&s, 1).expect("read");
    assert!(close(ma, 12.0, 0.01), "{ma}");
    assert!(close(s.engineering(ma), 5.0, 0.01));
    // An open loop: 0 V on a3.
    let open = src("chip = \"ads1115\", address = 0x48, channel = \"a3\", quantity = \"current\", shunt_ohms = 165.0, from = [4.0, 20.0], to = [0.0, 10.0]");
    match d.read(&open, 2) {
        Err(ChipError::Implausible(m)) => assert!(m.contains("NAMUR NE 43"), "{m}"),
        other => panic!("{other:?}"),
    }
    let _ = bus;
}

/// TMP117 datasheet table 7-1: 0x0C80 = 25 °C; device id 0x0117.
#[test]
fn tmp117_transactions() {
    let t = src("chip = \"tmp117\", address = 0x48");
    let mut m = Mock::new(&[
        T::write_read(0x48, vec![0x0F], vec![0x01, 0x17]),
        T::write_read(0x48, vec![0x00], vec![0x0C, 0x80]),
        T::write_read(0x48, vec![0x00], vec![0xFF, 0x80]),
    ]);
    {
        let mut d = chips::open(&t, MockBus(m.clone()), MockBus(m.clone()));
        d.init().expect("id");
        assert_eq!(d.read(&t, 1), Ok(25.0));
        assert_eq!(d.read(&t, 2), Ok(-1.0));
    }
    m.done();
}

/// SHT3x datasheet §4.12: CRC of 0xBEEF is 0x92; single shot, high repeatability, no clock stretching (0x2400).
#[test]
fn sht3x_transactions_and_crc() {
    assert_eq!(sim::crc8(&[0xBE, 0xEF]), 0x92);
    let t = src("chip = \"sht3x\", address = 0x44, quantity = \"temperature\"");
    let h = src("chip = \"sht3x\", address = 0x44, quantity = \"humidity\"");
    // T raw 0x6666 → −45 + 175·26214/65535 = 25.0 °C; RH raw 0x8000 → 50.0 %.
    let resp = vec![
        0x66,
        0x66,
        sim::crc8(&[0x66, 0x66]),
        0x80,
        0x00,
        sim::crc8(&[0x80, 0x00]),
    ];
    let mut m = Mock::new(&[
        T::write(0x44, vec![0x30, 0xA2]),
        T::write(0x44, vec![0x24, 0x00]),
        T::read(0x44, resp),
        T::write(0x44, vec![0x24, 0x00]),
        T::read(0x44, vec![0x66, 0x66, 0x00, 0x80, 0x00, 0x00]),
    ]);
    {
        let mut d = chips::open(&t, MockBus(m.clone()), MockBus(m.clone()));
        d.init().expect("reset");
        assert!(close(d.read(&t, 1).expect("t"), 25.0, 0.001));
        assert!(close(d.read(&h, 1).expect("same measurement"), 50.0, 0.001));
        assert_eq!(d.read(&t, 2), Err(ChipError::Crc));
    }
    m.done();
}

/// INA219: configuration 0x399F and the calibration of datasheet §8.5.1 for 0.1 Ω and 3.2 A, then the registers.
#[test]
fn ina219_transactions() {
    let c = src("chip = \"ina219\", address = 0x40, quantity = \"current\", shunt_ohms = 0.1, max_current = 3.2");
    let v = src("chip = \"ina219\", address = 0x40, quantity = \"bus_voltage\"");
    // Current_LSB = 3.2 A / 2^15; Cal = trunc(0.04096 / (Current_LSB · 0.1 Ω)) = 4194, made even: 4194 (0x1062).
    let mut m = Mock::new(&[
        T::write(0x40, vec![0x00, 0x39, 0x9F]),
        T::write(0x40, vec![0x05, 0x10, 0x62]),
        // The conversion-ready bit (CNVR, bus voltage bit 1): clear right after the calibration, then set.
        T::write_read(0x40, vec![0x02], vec![0x5D, 0xC0]),
        T::write_read(0x40, vec![0x02], vec![0x5D, 0xC2]),
        T::write_read(0x40, vec![0x02], vec![0x5D, 0xC2]),
        T::write_read(0x40, vec![0x04], vec![0x0C, 0xFF]),
        T::write_read(0x40, vec![0x02], vec![0x5D, 0xC2]),
    ]);
    {
        let mut d = chips::open(&c, MockBus(m.clone()), MockBus(m.clone()));
        d.init().expect("init");
        let a = d.read(&c, 1).expect("current");
        let lsb = 0.04096 / (4194.0 * 0.1);
        assert!(close(a, 3327.0 * lsb, 1e-9), "{a}");
        // Bus voltage 0x5DC2 >> 3 = 3000 · 4 mV = 12.0 V.
        assert!(close(d.read(&v, 1).expect("bus"), 12.0, 1e-9));
    }
    m.done();
}

/// The generic register sensor: trigger a conversion, wait, read 2 bytes little-endian signed.
#[test]
fn register_sensor_transactions() {
    let s = src("chip = \"register\", address = 0x20, register = 0x10, length = 2, byte_order = \"little\", signed = true, trigger = [0x01, 0x80], wait = \"1ms\", scale = 0.5");
    let mut m = Mock::new(&[
        T::write(0x20, vec![0x01, 0x80]),
        T::write_read(0x20, vec![0x10], vec![0x38, 0xFF]),
    ]);
    {
        let mut d = chips::open(&s, MockBus(m.clone()), MockBus(m.clone()));
        d.init().expect("init");
        let raw = d.read(&s, 1).expect("read");
        assert_eq!(raw, -200.0);
        assert_eq!(s.engineering(raw), -100.0);
    }
    m.done();
}

#[test]
fn every_chip_has_a_simulation_that_reads() {
    for spec in crate::config::CHIPS {
        let extra = match spec.chip {
            Chip::Ads1115 => ", channel = \"a1\"",
            Chip::Ina219 => ", shunt_ohms = 0.1, max_current = 3.2",
            Chip::Register => ", register = 0x00",
            _ => "",
        };
        let s = src(&format!(
            "chip = \"{}\", address = {}, quantity = \"{}\"{extra}",
            spec.name, spec.addresses[0], spec.quantities[0].0
        ));
        let (_bus, mut d) = on_sim(&s);
        d.init().unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        let v = d
            .read(&s, 1)
            .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert!(v.is_finite(), "{}: {v}", spec.name);
    }
}

/// `embedded-hal-mock`'s I2C mock with our error type (the drivers are generic over `I2c<Error = BusError>`).
struct MockBus(Mock);

impl embedded_hal::i2c::ErrorType for MockBus {
    type Error = BusError;
}

fn mock_err(e: embedded_hal::i2c::ErrorKind) -> BusError {
    BusError {
        kind: e,
        text: format!("{e:?}"),
    }
}

impl embedded_hal::i2c::I2c for MockBus {
    fn read(&mut self, address: u8, read: &mut [u8]) -> Result<(), BusError> {
        self.0.read(address, read).map_err(mock_err)
    }
    fn write(&mut self, address: u8, write: &[u8]) -> Result<(), BusError> {
        self.0.write(address, write).map_err(mock_err)
    }
    fn write_read(&mut self, address: u8, write: &[u8], read: &mut [u8]) -> Result<(), BusError> {
        self.0.write_read(address, write, read).map_err(mock_err)
    }
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), BusError> {
        self.0.transaction(address, operations).map_err(mock_err)
    }
}

/// A BME280 at the datasheet's slow end: every conversion takes the maximum for its oversampling. The driver waits
/// for `status.measuring` to clear instead of a fixed 40 ms, so it reads the conversion — also at ×16, whose
/// maximum (112.8 ms) is far beyond 40 ms. Before, the first read after start returned the data registers' reset
/// values (26.46 °C, 820.45 hPa) as a good reading, and later ones the previous cycle's.
#[test]
fn a_slow_bme280_is_read_when_its_conversion_is_done() {
    for os in ["", ", oversampling = 16"] {
        let t = src(&format!(
            "chip = \"bme280\", address = 0x76, quantity = \"temperature\"{os}"
        ));
        let p = src(&format!(
            "chip = \"bme280\", address = 0x76, quantity = \"pressure\"{os}"
        ));
        let mut sb = SimBus::default();
        let mut chip = sim::Bme280::new(true);
        chip.slow = true;
        sb.attach(0x76, Box::new(chip));
        let bus = Rc::new(RefCell::new(Bus::open("simulated", Some(sb)).expect("bus")));
        let mut d = chips::open(&t, super::bus::dev(&bus), super::bus::dev(&bus));
        d.init().expect("init");
        let started = std::time::Instant::now();
        let tv = d.read(&t, 1).expect("temperature");
        let pv = d.read(&p, 1).expect("pressure");
        assert!(close(tv, 25.08, 0.005), "{os}: {tv} °C");
        assert!(close(pv, 1006.5327, 0.001), "{os}: {pv} hPa");
        let took = started.elapsed();
        let max = chips::bme280_max_conversion(t.oversampling);
        assert!(
            took >= max && took < max + std::time::Duration::from_millis(30),
            "{os}: {took:?}"
        );
    }
}

/// A conversion that never ends (a hung or out-of-spec part) is a fault, not the stale registers: the data
/// registers still hold their reset values and would compensate to a plausible 26.46 °C.
#[test]
fn a_bme280_that_does_not_finish_its_conversion_gives_no_reading() {
    let t = src("chip = \"bme280\", address = 0x76, quantity = \"temperature\"");
    let mut sb = SimBus::default();
    let mut chip = sim::Bme280::new(true);
    chip.slow = true;
    chip.extra = std::time::Duration::from_millis(200);
    sb.attach(0x76, Box::new(chip));
    let bus = Rc::new(RefCell::new(Bus::open("simulated", Some(sb)).expect("bus")));
    let mut d = chips::open(&t, super::bus::dev(&bus), super::bus::dev(&bus));
    d.init().expect("init");
    let e = d
        .read(&t, 1)
        .expect_err("no reading from an unfinished conversion");
    assert!(
        e.to_string()
            .contains("did not finish within the datasheet's maximum of 9.3 ms"),
        "{e}"
    );
}

/// The data registers' reset values are never a reading (a conversion skipped, e.g. after a reset).
#[test]
fn the_bme280_reset_values_are_never_a_reading() {
    let t = src("chip = \"bme280\", address = 0x76, quantity = \"temperature\"");
    let mut sb = SimBus::default();
    let mut chip = sim::Bme280::new(true);
    chip.adc = (0x80000, 0x80000, 0x8000);
    sb.attach(0x76, Box::new(chip));
    let bus = Rc::new(RefCell::new(Bus::open("simulated", Some(sb)).expect("bus")));
    let mut d = chips::open(&t, super::bus::dev(&bus), super::bus::dev(&bus));
    d.init().expect("init");
    let e = d.read(&t, 1).expect_err("reset values");
    assert!(e.to_string().contains("reset values"), "{e}");
}

/// The INA219's first current after power-on or a (re-)calibration is read once a conversion is done: before,
/// it read right after writing the calibration and stored a good 0.0 A.
#[test]
fn the_ina219_waits_for_its_first_conversion_after_calibration() {
    let c = src("chip = \"ina219\", address = 0x40, quantity = \"current\", shunt_ohms = 0.1, max_current = 3.2");
    let (_bus, mut d) = on_sim(&c);
    d.init().expect("init");
    let a = d.read(&c, 1).expect("current");
    // 32.5 mV over 0.1 Ω.
    assert!(close(a, 0.325, 0.002), "{a} A");
}

/// The default configuration is what Bosch recommends for forced-mode polling (weather monitoring): oversampling
/// ×1 and the IIR filter off, so a step in temperature shows in the next reading; both are set per device.
#[test]
fn bme280_defaults_to_oversampling_1_and_no_filter() {
    let t = src("chip = \"bme280\", address = 0x76, quantity = \"temperature\"");
    assert_eq!((t.oversampling, t.filter), (1, 0));
    let (bus, mut d) = on_sim(&t);
    d.init().expect("init");
    d.read(&t, 1).expect("t");
    let mut regs = [0u8; 4];
    let mut b = bus.borrow_mut();
    let sim = b.sim().expect("sim");
    sim.transaction(
        0x76,
        &mut [
            embedded_hal::i2c::Operation::Write(&[0xF2]),
            embedded_hal::i2c::Operation::Read(&mut regs),
        ],
    )
    .expect("read back");
    // ctrl_hum osrs_h = 1; ctrl_meas osrs_t = 1, osrs_p = 1 (mode back to sleep); config filter = 0.
    assert_eq!(regs[0] & 7, 1);
    assert_eq!(regs[2] >> 2, 0b001_001);
    assert_eq!((regs[3] >> 2) & 7, 0);
    let bad = crate::config::parse_str(
        "[gateway]\nid = \"gw\"\n[[i2c]]\nname = \"b\"\ndevice = \"simulated\"\n[[sensor]]\nid = \"s\"\nsource = { i2c = \"b\", chip = \"bme280\", address = 0x76, quantity = \"temperature\", oversampling = 3 }\n",
        std::path::Path::new("t.toml"),
        &[],
    );
    assert!(bad
        .expect_err("oversampling 3")
        .to_string()
        .contains("must be 1, 2, 4, 8 or 16"));
}

/// EBUSY from i2c-dev says what holds the address and how to find it.
#[test]
fn a_busy_address_names_the_kernel_driver_to_look_for() {
    let t = super::bus::linux_error_text("Device or resource busy (os error 16)", 0x68);
    assert!(
        t.contains("a kernel driver holds address 0x68")
            && t.contains("/sys/bus/i2c/devices/*-0068/driver"),
        "{t}"
    );
    assert_eq!(
        super::bus::linux_error_text("Remote I/O error (os error 121)", 0x68),
        "Remote I/O error (os error 121)"
    );
}

/// A device whose transfers block while `stall` is set: a wedged bus, as a device holding SDA low makes one.
struct Stalling {
    inner: Box<dyn sim::SimDevice>,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl sim::SimDevice for Stalling {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        while self.stall.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.inner.write(bytes)
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        self.inner.read(buf)
    }
}

/// The bus thread blocked in a transfer cannot say so; the source side sees the transfer clock pass the bus
/// `timeout` and reports a timeout (the sensors go offline) while the thread is stuck, and the answer when it
/// comes back.
#[tokio::test]
async fn a_wedged_transfer_is_a_timeout_and_the_bus_answers_when_it_frees() {
    use crate::source::runner::Source;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let cfg = crate::config::parse_str(
        "[gateway]\nid = \"gw\"\n[[i2c]]\nname = \"b\"\ndevice = \"simulated\"\ntimeout = \"100ms\"\n\
         [[sensor]]\nid = \"t\"\nsource = { i2c = \"b\", chip = \"tmp117\", address = 0x48 }\n",
        std::path::Path::new("t.toml"),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stall = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stall);
    let mut bus = super::I2cBus::with_simulation(
        cfg.i2c[0].clone(),
        &cfg.sensor,
        Arc::new(move || {
            let mut sb = SimBus::default();
            sb.attach(
                0x48,
                Box::new(Stalling {
                    inner: SimBus::model(Chip::Tmp117),
                    stall: Arc::clone(&s2),
                }),
            );
            sb
        }),
    );
    bus.connect().await.expect("open");
    let first = bus.read(0).await.expect("a reading");
    assert_eq!(first.len(), 1);
    assert!(
        first[0]
            .value
            .as_ref()
            .is_ok_and(|v| (v - 21.5).abs() < 0.01),
        "{first:?}"
    );
    stall.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let r = bus.read(0).await;
    assert!(
        matches!(r, Err(crate::source::SourceError::Timeout)),
        "{r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "reported after {:?} (timeout 100 ms)",
        t.elapsed()
    );
    // Still stuck: the next read waits on the same transfer, and says so again.
    assert!(matches!(
        bus.read(0).await,
        Err(crate::source::SourceError::Timeout)
    ));
    stall.store(false, Ordering::Relaxed);
    let back = bus.read(0).await.expect("the bus frees");
    assert!(back[0].value.is_ok(), "{back:?}");
    bus.close().await;
}
