//! Drivers, generic over `embedded_hal::i2c::I2c`: the `bme280` crate (BME280/BMP280 with Bosch's compensation),
//! `sht4x` and `ads1x1x`; TMP117, SHT3x, INA219 and the generic register sensor are a few registers each and
//! written here from their datasheets. Each checks what it reads (CRC, identity, plausibility) and says so.

use super::error::BusError;
use crate::config::{AdcChannel, Chip, I2cSource};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use std::time::{Duration, Instant};

/// Sleeps the bus thread (drivers wait for conversions).
pub struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

/// Why a device read failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChipError {
    /// NACK, bus error, arbitration loss.
    #[error("{0}")]
    Bus(BusError),
    /// The data's checksum does not match.
    #[error("CRC mismatch (a corrupted transfer)")]
    Crc,
    /// Another chip answers at this address.
    #[error("{0}")]
    Identity(String),
    /// The value cannot be a real measurement.
    #[error("implausible value: {0}")]
    Implausible(String),
}

impl From<BusError> for ChipError {
    fn from(e: BusError) -> Self {
        ChipError::Bus(e)
    }
}

/// One physical device. `read` may measure everything at once and serve the other quantities of the same `cycle`
/// from that measurement (a BME280 gives three sensors from one conversion).
pub trait Device {
    /// (Re-)initialise: identity check, reset, configuration, calibration.
    fn init(&mut self) -> Result<(), ChipError>;
    /// Measure `want.quantity` (in the chip's native unit).
    fn read(&mut self, want: &I2cSource, cycle: u64) -> Result<f64, ChipError>;
}

/// The driver for `src.chip` at `src.address`.
pub fn open<I: I2c<Error = BusError> + 'static>(
    src: &I2cSource,
    i2c: I,
    probe: I,
) -> Box<dyn Device> {
    let a = src.address;
    match src.chip {
        Chip::Bme280 | Chip::Bmp280 => Box::new(Bme280 {
            drv: bme280::i2c::BME280::new(i2c, a),
            probe,
            address: a,
            last: None,
            oversampling: src.oversampling,
            filter: src.filter,
        }),
        Chip::Sht4x => Box::new(Sht4x {
            drv: sht4x::Sht4x::new_with_address(
                i2c,
                match a {
                    0x45 => sht4x::Address::Address0x45,
                    0x46 => sht4x::Address::Address0x46,
                    _ => sht4x::Address::Address0x44,
                },
            ),
            last: None,
        }),
        Chip::Ads1115 => Box::new(Ads1115 {
            drv: ads1x1x::Ads1x1x::new_ads1115(
                i2c,
                match a {
                    0x49 => ads1x1x::TargetAddr::Vdd,
                    0x4a => ads1x1x::TargetAddr::Sda,
                    0x4b => ads1x1x::TargetAddr::Scl,
                    _ => ads1x1x::TargetAddr::Gnd,
                },
            ),
            range: None,
        }),
        Chip::Sht3x => Box::new(Regs {
            i2c,
            address: a,
            kind: Own::Sht3x { last: None },
        }),
        Chip::Tmp117 => Box::new(Regs {
            i2c,
            address: a,
            kind: Own::Tmp117,
        }),
        Chip::Ina219 => Box::new(Regs {
            i2c,
            address: a,
            kind: Own::Ina219 { lsb: 0.0 },
        }),
        Chip::Register => Box::new(Regs {
            i2c,
            address: a,
            kind: Own::Register,
        }),
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), ChipError> {
    if ok {
        Ok(())
    } else {
        Err(ChipError::Implausible(what()))
    }
}

/// BME280/BMP280 through the `bme280` crate (Bosch's compensation); `probe` (a second handle on the same bus)
/// reads ctrl_meas to notice a chip reset by a brown-out, polls the `measuring` status bit while a conversion
/// runs, and reads the raw data registers to refuse their reset values.
struct Bme280<I> {
    drv: bme280::i2c::BME280<I>,
    probe: I,
    address: u8,
    /// (cycle, temperature °C, pressure hPa, humidity %).
    last: Option<(u64, f64, f64, f64)>,
    /// Oversampling of each quantity (1…16) and the IIR filter coefficient (0 = off).
    oversampling: u8,
    filter: u8,
}

/// The datasheet's maximum conversion time in forced mode (BME280 datasheet 9.1, appendix B):
/// 1.25 + 2.3·T + (2.3·P + 0.575) + (2.3·H + 0.575) ms with the same oversampling `os` for all three; 9.3 ms at ×1,
/// 112.8 ms at ×16.
pub fn bme280_max_conversion(os: u8) -> Duration {
    let o = f64::from(os);
    Duration::from_micros(
        ((1.25 + 2.3 * o + (2.3 * o + 0.575) + (2.3 * o + 0.575)) * 1000.0) as u64,
    )
}

/// The wait the `bme280` crate asks for after starting a forced conversion (a fixed 40 ms), done by the chip's own
/// word instead: poll `status.measuring` (0xF3 bit 3) until it clears, at most the datasheet's maximum (and a
/// margin for the bus). Shorter waits (the 2 ms after a soft reset) are slept as asked.
struct Conversion<'a, I> {
    probe: &'a mut I,
    address: u8,
    max: Duration,
    /// Why the conversion did not finish (the crate's measurement is then thrown away).
    failed: Option<ChipError>,
}

impl<I: I2c<Error = BusError>> DelayNs for Conversion<'_, I> {
    fn delay_ns(&mut self, ns: u32) {
        if ns < 10_000_000 {
            std::thread::sleep(Duration::from_nanos(u64::from(ns)));
            return;
        }
        let started = Instant::now();
        let deadline = self.max + Duration::from_millis(5);
        // The typical time is 80 % of the maximum; look a little before it, then every millisecond.
        std::thread::sleep(self.max * 3 / 4);
        loop {
            let mut status = [0u8];
            if let Err(e) = self.probe.write_read(self.address, &[0xF3], &mut status) {
                self.failed = Some(ChipError::Bus(e));
                return;
            }
            if status[0] & 0x08 == 0 {
                return;
            }
            if started.elapsed() > deadline {
                self.failed = Some(ChipError::Implausible(format!(
                    "the conversion did not finish within the datasheet's maximum of {:.1} ms (status 0x{:02x})",
                    self.max.as_secs_f64() * 1e3,
                    status[0]
                )));
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn bme_config(oversampling: u8, filter: u8) -> bme280::Configuration {
    use bme280::{IIRFilter, Oversampling};
    let o = match oversampling {
        16 => Oversampling::Oversampling16X,
        8 => Oversampling::Oversampling8X,
        4 => Oversampling::Oversampling4X,
        2 => Oversampling::Oversampling2X,
        _ => Oversampling::Oversampling1X,
    };
    let f = match filter {
        16 => IIRFilter::Coefficient16,
        8 => IIRFilter::Coefficient8,
        4 => IIRFilter::Coefficient4,
        2 => IIRFilter::Coefficient2,
        _ => IIRFilter::Off,
    };
    bme280::Configuration::default()
        .with_temperature_oversampling(o)
        .with_pressure_oversampling(o)
        .with_humidity_oversampling(o)
        .with_iir_filter(f)
}

fn bme_err(e: bme280::Error<BusError>) -> ChipError {
    match e {
        bme280::Error::Bus(b) => ChipError::Bus(b),
        bme280::Error::UnsupportedChip => {
            ChipError::Identity("the chip id is neither BME280 (0x60) nor BMP280 (0x58)".into())
        }
        other => ChipError::Implausible(format!("{other:?}")),
    }
}

impl<I: I2c<Error = BusError>> Device for Bme280<I> {
    fn init(&mut self) -> Result<(), ChipError> {
        self.last = None;
        self.drv
            .init_with_config(&mut Delay, bme_config(self.oversampling, self.filter))
            .map_err(bme_err)
    }
    fn read(&mut self, want: &I2cSource, cycle: u64) -> Result<f64, ChipError> {
        let (t, p, h) = match self.last {
            Some((c, t, p, h)) if c == cycle => (t, p, h),
            _ => {
                // After a brown-out the oversampling bits are back to 0 ("skipped"): configure again first.
                let mut ctrl = [0u8];
                self.probe.write_read(self.address, &[0xF4], &mut ctrl)?;
                if ctrl[0] >> 5 == 0 {
                    tracing::warn!(address = format!("0x{:02x}", self.address), "BME280 lost its configuration (reset or brown-out); initialising it again.");
                    self.init()?;
                }
                let mut wait = Conversion {
                    probe: &mut self.probe,
                    address: self.address,
                    max: bme280_max_conversion(self.oversampling),
                    failed: None,
                };
                let m = self.drv.measure(&mut wait).map_err(bme_err);
                if let Some(e) = wait.failed {
                    return Err(e);
                }
                let m = m?;
                // 0x80000 (pressure, temperature) and 0x8000 (humidity) are the data registers' reset values: no
                // conversion was done since power-on or reset. Compensated, they look like a plausible 26 °C.
                let mut raw = [0u8; 6];
                self.probe.write_read(self.address, &[0xF7], &mut raw)?;
                if raw[..6] == [0x80, 0, 0, 0x80, 0, 0] {
                    return Err(ChipError::Implausible(
                        "the data registers hold their reset values: no conversion was done".into(),
                    ));
                }
                let (t, p, h) = (
                    f64::from(m.temperature),
                    f64::from(m.pressure) / 100.0,
                    f64::from(m.humidity),
                );
                self.last = Some((cycle, t, p, h));
                (t, p, h)
            }
        };
        check((-40.0..=85.0).contains(&t) && t > -40.0, || {
            format!("{t:.2} °C is outside the BME280's −40…85 °C")
        })?;
        match want.quantity.as_str() {
            "pressure" => {
                check((300.0..=1100.0).contains(&p), || {
                    format!("{p:.2} hPa is outside 300…1100 hPa")
                })?;
                Ok(p)
            }
            "humidity" => {
                check(h > 0.0 && h < 100.0, || {
                    format!("{h:.2} %RH is a saturated compensation (0 or 100 %)")
                })?;
                Ok(h)
            }
            _ => Ok(t),
        }
    }
}

/// SHT4x through the `sht4x` crate (CRC checked by it).
struct Sht4x<I> {
    drv: sht4x::Sht4x<I, Delay>,
    last: Option<(u64, f64, f64)>,
}

impl<I: I2c<Error = BusError>> Device for Sht4x<I> {
    fn init(&mut self) -> Result<(), ChipError> {
        self.last = None;
        self.drv.soft_reset(&mut Delay).map_err(sht4_err)
    }
    fn read(&mut self, want: &I2cSource, cycle: u64) -> Result<f64, ChipError> {
        let (t, h) = match self.last {
            Some((c, t, h)) if c == cycle => (t, h),
            _ => {
                let m = self
                    .drv
                    .measure(sht4x::Precision::High, &mut Delay)
                    .map_err(sht4_err)?;
                let t = f64::from(m.temperature_milli_celsius()) / 1000.0;
                // Sensirion: crop the linear formula's result to 0…100 %RH.
                let h = (f64::from(m.humidity_milli_percent()) / 1000.0).clamp(0.0, 100.0);
                self.last = Some((cycle, t, h));
                (t, h)
            }
        };
        check((-40.0..=125.0).contains(&t), || {
            format!("{t:.2} °C is outside the SHT4x's −40…125 °C")
        })?;
        Ok(if want.quantity == "humidity" { h } else { t })
    }
}

fn sht4_err(e: sht4x::Error<BusError>) -> ChipError {
    match e {
        sht4x::Error::I2c(b) => ChipError::Bus(b),
        sht4x::Error::Crc => ChipError::Crc,
        other => ChipError::Implausible(format!("{other:?}")),
    }
}

/// ADS1115 through the `ads1x1x` crate, one-shot conversions.
struct Ads1115<I> {
    drv: ads1x1x::Ads1x1x<
        I,
        ads1x1x::ic::Ads1115,
        ads1x1x::ic::Resolution16Bit,
        ads1x1x::mode::OneShot,
    >,
    range: Option<f64>,
}

fn ads_err(e: ads1x1x::Error<BusError>) -> ChipError {
    match e {
        ads1x1x::Error::I2C(b) => ChipError::Bus(b),
        ads1x1x::Error::InvalidInputData => ChipError::Implausible("invalid input data".into()),
    }
}

impl<I: I2c<Error = BusError>> Ads1115<I> {
    fn convert(&mut self, ch: AdcChannel) -> Result<i16, ChipError> {
        use ads1x1x::channel as c;
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            let r = match ch {
                AdcChannel::Single(0) => self.drv.read(c::SingleA0),
                AdcChannel::Single(1) => self.drv.read(c::SingleA1),
                AdcChannel::Single(2) => self.drv.read(c::SingleA2),
                AdcChannel::Single(_) => self.drv.read(c::SingleA3),
                AdcChannel::Diff(0, 1) => self.drv.read(c::DifferentialA0A1),
                AdcChannel::Diff(0, _) => self.drv.read(c::DifferentialA0A3),
                AdcChannel::Diff(1, _) => self.drv.read(c::DifferentialA1A3),
                AdcChannel::Diff(_, _) => self.drv.read(c::DifferentialA2A3),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(nb::Error::Other(e)) => return Err(ads_err(e)),
                Err(nb::Error::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(nb::Error::WouldBlock) => {
                    return Err(ChipError::Implausible(
                        "the conversion did not finish within 100 ms".into(),
                    ))
                }
            }
        }
    }
}

impl<I: I2c<Error = BusError>> Device for Ads1115<I> {
    fn init(&mut self) -> Result<(), ChipError> {
        self.range = None;
        Ok(())
    }
    fn read(&mut self, want: &I2cSource, _cycle: u64) -> Result<f64, ChipError> {
        use ads1x1x::FullScaleRange as F;
        if self.range != Some(want.range) {
            let fsr = match want.range {
                r if r >= 6.0 => F::Within6_144V,
                r if r >= 4.0 => F::Within4_096V,
                r if r >= 2.0 => F::Within2_048V,
                r if r >= 1.0 => F::Within1_024V,
                r if r >= 0.5 => F::Within0_512V,
                _ => F::Within0_256V,
            };
            self.drv.set_full_scale_range(fsr).map_err(ads_err)?;
            self.range = Some(want.range);
        }
        let raw = self.convert(want.channel.unwrap_or(AdcChannel::Single(0)))?;
        check(raw != i16::MAX && raw != i16::MIN, || {
            format!("the input is beyond the ±{} V range", want.range)
        })?;
        let volts = f64::from(raw) * want.range / 32768.0;
        if want.quantity != "current" {
            return Ok(volts);
        }
        let ma = volts / want.shunt_ohms.unwrap_or(f64::INFINITY) * 1000.0;
        // A 4–20 mA loop: below 3.6 mA or above 21 mA is a loop fault, not a value (NAMUR NE 43).
        if matches!(want.map, Some(([f0, f1], _)) if f0 == 4.0 && f1 == 20.0) {
            check(ma >= 3.6, || {
                format!("{ma:.2} mA: the 4–20 mA loop is open or the transmitter failed (< 3.6 mA, NAMUR NE 43)")
            })?;
            check(ma <= 21.0, || {
                format!("{ma:.2} mA: the transmitter signals a fault (> 21 mA, NAMUR NE 43)")
            })?;
        }
        Ok(ma)
    }
}

/// The chips driven here register by register.
enum Own {
    Sht3x { last: Option<(u64, f64, f64)> },
    Tmp117,
    Ina219 { lsb: f64 },
    Register,
}

struct Regs<I> {
    i2c: I,
    address: u8,
    kind: Own,
}

impl<I: I2c<Error = BusError>> Regs<I> {
    fn reg16(&mut self, reg: u8) -> Result<u16, ChipError> {
        let mut b = [0u8; 2];
        self.i2c.write_read(self.address, &[reg], &mut b)?;
        Ok(u16::from_be_bytes(b))
    }
    fn write16(&mut self, reg: u8, v: u16) -> Result<(), ChipError> {
        let [hi, lo] = v.to_be_bytes();
        Ok(self.i2c.write(self.address, &[reg, hi, lo])?)
    }
}

impl<I: I2c<Error = BusError>> Device for Regs<I> {
    fn init(&mut self) -> Result<(), ChipError> {
        match &mut self.kind {
            Own::Sht3x { last } => {
                *last = None;
                // Soft reset, then 1.5 ms to idle.
                self.i2c.write(self.address, &[0x30, 0xA2])?;
                std::thread::sleep(Duration::from_micros(1500));
                Ok(())
            }
            Own::Tmp117 => {
                let id = self.reg16(0x0F)?;
                if id & 0x0FFF != 0x0117 {
                    return Err(ChipError::Identity(format!(
                        "device id 0x{id:04x} is not a TMP117 (0x0117)"
                    )));
                }
                Ok(())
            }
            Own::Ina219 { .. } | Own::Register => Ok(()),
        }
    }
    fn read(&mut self, want: &I2cSource, cycle: u64) -> Result<f64, ChipError> {
        match &self.kind {
            Own::Sht3x { last } => {
                let (t, h) = match *last {
                    Some((c, t, h)) if c == cycle => (t, h),
                    _ => {
                        // High repeatability without clock stretching (many Linux adapters mishandle stretching):
                        // command, wait out the 15 ms conversion, read.
                        self.i2c.write(self.address, &[0x24, 0x00])?;
                        std::thread::sleep(Duration::from_millis(16));
                        let mut b = [0u8; 6];
                        self.i2c.read(self.address, &mut b)?;
                        if super::sim::crc8(&b[0..2]) != b[2] || super::sim::crc8(&b[3..5]) != b[5]
                        {
                            return Err(ChipError::Crc);
                        }
                        let t =
                            -45.0 + 175.0 * f64::from(u16::from_be_bytes([b[0], b[1]])) / 65535.0;
                        let h = 100.0 * f64::from(u16::from_be_bytes([b[3], b[4]])) / 65535.0;
                        self.kind = Own::Sht3x {
                            last: Some((cycle, t, h)),
                        };
                        (t, h)
                    }
                };
                check((-40.0..=125.0).contains(&t), || {
                    format!("{t:.2} °C is outside the SHT3x's −40…125 °C")
                })?;
                Ok(if want.quantity == "humidity" { h } else { t })
            }
            Own::Tmp117 => {
                let mut raw = self.reg16(0x00)?;
                if raw == 0x8000 {
                    // The power-on value before the first conversion (SNOSD82 §7.5: 125 ms with the default
                    // averaging of 8). Wait for Data_Ready (configuration bit 13), at most one conversion cycle at
                    // the default settings (1 s), then read the conversion.
                    let deadline = Instant::now() + Duration::from_millis(1100);
                    while self.reg16(0x01)? & 0x2000 == 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    raw = self.reg16(0x00)?;
                }
                check(raw != 0x8000, || {
                    "no conversion yet (0x8000 after power-on)".into()
                })?;
                Ok(f64::from(raw as i16) * 0.0078125)
            }
            Own::Ina219 { lsb } => {
                let mut lsb = *lsb;
                let calibrated = want.shunt_ohms.is_some();
                if calibrated {
                    // A chip reset by a brown-out reads calibration 0: calibrate again.
                    if lsb == 0.0 || self.reg16(0x05)? == 0 {
                        let shunt = want.shunt_ohms.unwrap_or(0.1);
                        let max = want.max_current.unwrap_or(0.32 / shunt);
                        lsb = max / 32768.0;
                        let cal = (0.04096 / (lsb * shunt)).trunc().clamp(1.0, 65534.0) as u16 & !1;
                        lsb = 0.04096 / (f64::from(cal) * shunt);
                        // 32 V range, ±320 mV shunt range, 12-bit, continuous shunt and bus.
                        self.write16(0x00, 0x399F)?;
                        self.write16(0x05, cal)?;
                        self.kind = Own::Ina219 { lsb };
                        // Current and power are computed by the next conversion (2 × 532 µs at 12 bits, datasheet
                        // table 5): until the conversion-ready bit says so they read 0, which is not a reading.
                        let deadline = Instant::now() + Duration::from_millis(5);
                        while self.reg16(0x02)? & 0b10 == 0 {
                            if Instant::now() > deadline {
                                return Err(ChipError::Implausible(
                                    "no conversion within 5 ms of the calibration (CNVR stays clear)".into(),
                                ));
                            }
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                }
                let bus = self.reg16(0x02)?;
                check(bus & 1 == 0, || {
                    "the INA219 reports a math overflow (current or power beyond the calibration)"
                        .into()
                })?;
                Ok(match want.quantity.as_str() {
                    "bus_voltage" => f64::from(bus >> 3) * 0.004,
                    "shunt_voltage" => f64::from(self.reg16(0x01)? as i16) * 0.01,
                    "current" => f64::from(self.reg16(0x04)? as i16) * lsb,
                    _ => f64::from(self.reg16(0x03)?) * 20.0 * lsb,
                })
            }
            Own::Register => {
                if let Some(t) = want.trigger {
                    self.i2c.write(self.address, &[t.register, t.value])?;
                    std::thread::sleep(t.wait);
                }
                let n = usize::from(want.length.clamp(1, 8));
                let mut b = [0u8; 8];
                self.i2c
                    .write_read(self.address, &[want.register], &mut b[..n])?;
                let bytes = &mut b[..n];
                if !want.big_endian {
                    bytes.reverse();
                }
                let raw = bytes.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                let bits = 8 * n as u32;
                Ok(if want.signed && bits < 64 && raw >> (bits - 1) & 1 == 1 {
                    (raw as i64 - (1i64 << bits)) as f64
                } else if want.signed {
                    raw as i64 as f64
                } else {
                    raw as f64
                })
            }
        }
    }
}
