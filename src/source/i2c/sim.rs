//! Register-map simulations of the supported chips, behind `embedded_hal::i2c::I2c` semantics: a bus of them is
//! what `device = "simulated"` runs on (demos, the daemon tests) and what the driver tests talk to. Each model
//! follows its datasheet's register map and conversion; the BME280 carries the calibration of Bosch's worked
//! example (BST-BME280-DS002 §8.1), so the compensated values are the datasheet's.

use super::error::BusError;
use crate::config::Chip;
use embedded_hal::i2c::{Operation, SevenBitAddress};
use std::collections::BTreeMap;

/// A simulated device on the bus.
pub trait SimDevice: Send {
    /// A write (register pointer and data, or a command).
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError>;
    /// A read into `buf`.
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError>;
    /// A power glitch: configuration registers back to their reset values.
    fn brownout(&mut self) {}
}

/// Devices by address; an address with none NACKs.
#[derive(Default)]
pub struct SimBus {
    devices: BTreeMap<u8, Box<dyn SimDevice>>,
}

impl SimBus {
    /// Add a device.
    pub fn attach(&mut self, address: u8, dev: Box<dyn SimDevice>) {
        self.devices.insert(address, dev);
    }
    /// Remove a device (it stops answering).
    pub fn detach(&mut self, address: u8) -> Option<Box<dyn SimDevice>> {
        self.devices.remove(&address)
    }
    /// Reset a device's configuration, as a brown-out does.
    pub fn brownout(&mut self, address: u8) {
        if let Some(d) = self.devices.get_mut(&address) {
            d.brownout();
        }
    }
    /// Run one transaction.
    pub fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        let dev = self.devices.get_mut(&address).ok_or_else(BusError::nack)?;
        for op in operations {
            match op {
                Operation::Write(b) => dev.write(b)?,
                Operation::Read(b) => dev.read(b)?,
            }
        }
        Ok(())
    }
    /// A simulated device of `chip` with plausible values.
    pub fn model(chip: Chip) -> Box<dyn SimDevice> {
        match chip {
            Chip::Bme280 => Box::new(Bme280::new(true)),
            Chip::Bmp280 => Box::new(Bme280::new(false)),
            Chip::Sht3x => Box::new(Sensirion::new(false, 25.0, 45.0)),
            Chip::Sht4x => Box::new(Sensirion::new(true, 25.0, 45.0)),
            Chip::Ads1115 => Box::new(Ads1115::new([1.98, 0.66, 3.3, 0.0])),
            Chip::Tmp117 => Box::new(Tmp117::new(21.5)),
            Chip::Ina219 => Box::new(Ina219::new(0.0325, 12.0)),
            Chip::Register => Box::new(Registers::default()),
        }
    }
}

/// A plain register file with an auto-incrementing pointer (the generic register sensor's device).
pub struct Registers {
    /// Register contents.
    pub regs: [u8; 256],
    ptr: u8,
}

impl Default for Registers {
    fn default() -> Self {
        let mut regs = [0u8; 256];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = i as u8;
        }
        Registers { regs, ptr: 0 }
    }
}

impl SimDevice for Registers {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        if let Some((p, data)) = bytes.split_first() {
            self.ptr = *p;
            for d in data {
                self.regs[self.ptr as usize] = *d;
                self.ptr = self.ptr.wrapping_add(1);
            }
        }
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        for b in buf {
            *b = self.regs[self.ptr as usize];
            self.ptr = self.ptr.wrapping_add(1);
        }
        Ok(())
    }
}

/// BME280 / BMP280 (chip id 0x60 / 0x58): calibration at 0x88–0xA1 and 0xE1–0xE7, forced-mode measurement.
pub struct Bme280 {
    r: Registers,
    humidity: bool,
    /// Raw ADC values loaded on the next forced measurement (temperature, pressure, humidity).
    pub adc: (u32, u32, u16),
    n: u32,
    /// A part at the datasheet's slow end: a forced conversion takes the maximum time for the configured
    /// oversampling (status.measuring set meanwhile, the data registers updated only at its end). Off: instant.
    pub slow: bool,
    /// When the running conversion ends.
    converting: Option<std::time::Instant>,
    /// Added to every conversion (an out-of-spec or hung part).
    pub extra: std::time::Duration,
}

impl Bme280 {
    /// The datasheet example: adc_T 519888 → 25.08 °C, adc_P 415148 → 100653.27 Pa.
    pub const EXAMPLE_ADC: (u32, u32, u16) = (519_888, 415_148, 27_000);

    /// A chip with the datasheet's calibration (and typical humidity calibration).
    pub fn new(humidity: bool) -> Self {
        let mut r = Registers {
            regs: [0; 256],
            ptr: 0,
        };
        let t: [u16; 3] = [27504, 26435, (-1000i16) as u16];
        let p: [i32; 9] = [36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000];
        let mut a = 0x88;
        for v in t.iter().map(|v| *v as i32).chain(p) {
            let v = v as u16;
            r.regs[a] = v as u8;
            r.regs[a + 1] = (v >> 8) as u8;
            a += 2;
        }
        // dig_H1..H6 of a production part: H1 75, H2 362, H3 0, H4 313, H5 50, H6 30.
        r.regs[0xA1] = 75;
        let (h2, h4, h5): (i16, i16, i16) = (362, 313, 50);
        r.regs[0xE1] = h2 as u8;
        r.regs[0xE2] = (h2 >> 8) as u8;
        r.regs[0xE3] = 0;
        r.regs[0xE4] = (h4 >> 4) as u8;
        r.regs[0xE5] = ((h4 & 0x0F) as u8) | (((h5 & 0x0F) as u8) << 4);
        r.regs[0xE6] = (h5 >> 4) as u8;
        r.regs[0xE7] = 30;
        r.regs[0xD0] = if humidity { 0x60 } else { 0x58 };
        let mut s = Bme280 {
            r,
            humidity,
            adc: Self::EXAMPLE_ADC,
            n: 0,
            slow: false,
            converting: None,
            extra: std::time::Duration::ZERO,
        };
        s.brownout();
        s
    }

    fn convert(&mut self) {
        let osrs_t = self.r.regs[0xF4] >> 5;
        let osrs_p = (self.r.regs[0xF4] >> 2) & 7;
        let osrs_h = self.r.regs[0xF2] & 7;
        // A skipped measurement reads 0x80000 (0x8000 for humidity): what a chip reset by a brown-out delivers.
        let (t, p, h) = self.adc;
        let t = if osrs_t == 0 {
            0x80000
        } else {
            t + (self.n % 5) * 16
        };
        let p = if osrs_p == 0 { 0x80000 } else { p };
        let h = if osrs_h == 0 || !self.humidity {
            0x8000
        } else {
            h
        };
        self.n = self.n.wrapping_add(1);
        let put20 = |regs: &mut [u8; 256], at: usize, v: u32| {
            regs[at] = (v >> 12) as u8;
            regs[at + 1] = (v >> 4) as u8;
            regs[at + 2] = ((v & 0x0F) << 4) as u8;
        };
        put20(&mut self.r.regs, 0xF7, p);
        put20(&mut self.r.regs, 0xFA, t);
        self.r.regs[0xFD] = (h >> 8) as u8;
        self.r.regs[0xFE] = h as u8;
    }
}

impl SimDevice for Bme280 {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        match bytes {
            [0xE0, 0xB6] => {
                self.brownout();
                Ok(())
            }
            [0xF4, v] if v & 3 != 0 => {
                // Forced (or normal) mode: measure, then back to sleep.
                self.r.write(bytes)?;
                if self.slow {
                    let os = |code: u8| {
                        if code == 0 {
                            0.0
                        } else {
                            f64::from(1u8 << (code.min(5) - 1))
                        }
                    };
                    let (t, p, h) = (
                        os(self.r.regs[0xF4] >> 5),
                        os((self.r.regs[0xF4] >> 2) & 7),
                        os(self.r.regs[0xF2] & 7),
                    );
                    // BST-BME280-DS002 appendix B, maximum: 1.25 + 2.3·T + (2.3·P + 0.575) + (2.3·H + 0.575) ms.
                    let ms = 1.25
                        + 2.3 * t
                        + if p > 0.0 { 2.3 * p + 0.575 } else { 0.0 }
                        + if h > 0.0 { 2.3 * h + 0.575 } else { 0.0 };
                    self.converting = Some(
                        std::time::Instant::now()
                            + std::time::Duration::from_micros((ms * 1000.0) as u64)
                            + self.extra,
                    );
                    self.r.regs[0xF3] |= 0x08;
                } else {
                    self.convert();
                    self.r.regs[0xF4] &= !3;
                }
                Ok(())
            }
            _ => self.r.write(bytes),
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        if self
            .converting
            .is_some_and(|t| std::time::Instant::now() >= t)
        {
            self.converting = None;
            self.convert();
            self.r.regs[0xF4] &= !3;
            self.r.regs[0xF3] &= !0x08;
        }
        self.r.read(buf)
    }
    fn brownout(&mut self) {
        for a in [0xF2, 0xF4, 0xF5] {
            self.r.regs[a] = 0;
        }
        self.r.regs[0xF7..=0xFC].copy_from_slice(&[0x80, 0, 0, 0x80, 0, 0]);
        self.r.regs[0xFD] = 0x80;
        self.r.regs[0xFE] = 0;
    }
}

/// Sensirion CRC-8 (polynomial 0x31, init 0xFF).
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0xFFu8;
    for b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// SHT3x (`sht4 = false`) or SHT4x: a measure command, then 6 bytes T, CRC, RH, CRC.
pub struct Sensirion {
    sht4: bool,
    /// Temperature (°C) and humidity (%RH) the next measurement returns.
    pub values: (f64, f64),
    /// Corrupt the next response's CRC (a line glitch).
    pub corrupt_next: bool,
    pending: Option<[u8; 6]>,
}

impl Sensirion {
    /// A sensor reading `t` °C and `rh` %RH.
    pub fn new(sht4: bool, t: f64, rh: f64) -> Self {
        Sensirion {
            sht4,
            values: (t, rh),
            corrupt_next: false,
            pending: None,
        }
    }
    fn respond(&mut self, a: u16, b: u16) {
        let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
        let mut r = [a[0], a[1], crc8(&a), b[0], b[1], crc8(&b)];
        if std::mem::take(&mut self.corrupt_next) {
            r[2] ^= 0x5A;
        }
        self.pending = Some(r);
    }
}

impl SimDevice for Sensirion {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        let (t, rh) = self.values;
        let st = (((t + 45.0) * 65535.0 / 175.0).round()).clamp(0.0, 65535.0) as u16;
        let measure = if self.sht4 {
            matches!(bytes, [0xFD] | [0xF6] | [0xE0])
        } else {
            matches!(bytes, [0x24, _] | [0x2C, _])
        };
        if measure {
            let srh = if self.sht4 {
                ((rh + 6.0) * 65535.0 / 125.0).round()
            } else {
                (rh * 65535.0 / 100.0).round()
            };
            self.respond(st, srh.clamp(0.0, 65535.0) as u16);
        } else if self.sht4 && bytes == [0x89] {
            self.respond(0x1234, 0x5678);
        }
        // Resets (0x94, 0x30A2), heater and status commands: accepted.
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        // No measurement pending: the chip NACKs the read (datasheet: "not acknowledged while measuring").
        let r = self.pending.take().ok_or_else(BusError::nack)?;
        let n = buf.len().min(6);
        buf[..n].copy_from_slice(&r[..n]);
        Ok(())
    }
}

/// A chip with 16-bit big-endian registers behind a pointer byte.
#[derive(Default)]
struct Regs16 {
    regs: BTreeMap<u8, u16>,
    ptr: u8,
}

impl Regs16 {
    /// Returns the register written, if the write carried data.
    fn write(&mut self, bytes: &[u8]) -> Option<(u8, u16)> {
        let (p, data) = bytes.split_first()?;
        self.ptr = *p;
        if let [hi, lo] = data {
            let v = u16::from_be_bytes([*hi, *lo]);
            self.regs.insert(*p, v);
            return Some((*p, v));
        }
        None
    }
    fn read(&self, buf: &mut [u8]) {
        let v = self.regs.get(&self.ptr).copied().unwrap_or(0).to_be_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = v[i % 2];
        }
    }
}

/// ADS1115: conversion (0) and config (1) registers; a write of config with OS set converts the selected input.
pub struct Ads1115 {
    r: Regs16,
    /// Voltages on AIN0..AIN3.
    pub inputs: [f64; 4],
}

impl Ads1115 {
    /// A converter with these input voltages.
    pub fn new(inputs: [f64; 4]) -> Self {
        let mut r = Regs16::default();
        r.regs.insert(1, 0x8583);
        Ads1115 { r, inputs }
    }
}

impl SimDevice for Ads1115 {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        if let Some((1, cfg)) = self.r.write(bytes) {
            if cfg & 0x8000 != 0 {
                let mux = (cfg >> 12) & 7;
                let fs = [6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256]
                    [((cfg >> 9) & 7) as usize];
                let a = &self.inputs;
                let v = match mux {
                    0 => a[0] - a[1],
                    1 => a[0] - a[3],
                    2 => a[1] - a[3],
                    3 => a[2] - a[3],
                    m => a[(m - 4) as usize],
                };
                let code = (v / fs * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
                self.r.regs.insert(0, code as u16);
                // Conversion done at once: OS reads 1 (not busy).
                self.r.regs.insert(1, cfg | 0x8000);
            }
        }
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        self.r.read(buf);
        Ok(())
    }
}

/// TMP117: temperature (0x00, 7.8125 m°C/LSB), device id (0x0F = 0x0117).
pub struct Tmp117 {
    r: Regs16,
}

impl Tmp117 {
    /// A thermometer reading `t` °C.
    pub fn new(t: f64) -> Self {
        let mut r = Regs16::default();
        r.regs.insert(0x00, ((t / 0.0078125).round() as i16) as u16);
        r.regs.insert(0x01, 0x0220);
        r.regs.insert(0x0F, 0x0117);
        Tmp117 { r }
    }
}

impl SimDevice for Tmp117 {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        self.r.write(bytes);
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        self.r.read(buf);
        Ok(())
    }
}

/// INA219: shunt voltage (0x01, 10 µV/LSB), bus voltage (0x02, 4 mV/LSB in bits 15..3), power (0x03) and current
/// (0x04) from the calibration register (0x05), as the chip computes them (datasheet §8.5.1).
pub struct Ina219 {
    r: Regs16,
    /// Shunt voltage (V) and bus voltage (V).
    pub volts: (f64, f64),
    /// After a configuration or calibration write, the first conversion (shunt and bus at 12 bits: 2 × 532 µs,
    /// datasheet table 5) ends then: until it does, CNVR is clear and current and power read 0.
    converting: Option<std::time::Instant>,
}

impl Ina219 {
    /// A monitor seeing these voltages.
    pub fn new(shunt_v: f64, bus_v: f64) -> Self {
        let mut r = Regs16::default();
        r.regs.insert(0x00, 0x399F);
        let mut s = Ina219 {
            r,
            volts: (shunt_v, bus_v),
            converting: None,
        };
        s.update();
        s
    }
    fn update(&mut self) {
        let shunt = (self.volts.0 / 10e-6).round() as i16;
        let bus = ((self.volts.1 / 4e-3).round() as u16) << 3 | 0b10;
        let cal = self.r.regs.get(&0x05).copied().unwrap_or(0) as i32;
        let current = (shunt as i32 * cal / 4096) as i16;
        let power = (current as i32 * (bus >> 3) as i32 / 5000) as u16;
        self.r.regs.insert(0x01, shunt as u16);
        self.r.regs.insert(0x02, bus);
        self.r.regs.insert(0x03, power);
        self.r.regs.insert(0x04, current as u16);
    }
}

impl SimDevice for Ina219 {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BusError> {
        match self.r.write(bytes) {
            Some((0x00, v)) if v & 0x8000 != 0 => self.brownout(),
            Some((0x00 | 0x05, _)) => {
                // A new configuration or calibration: the results so far are void until the next conversion.
                self.converting =
                    Some(std::time::Instant::now() + std::time::Duration::from_micros(1064));
                self.r.regs.insert(0x03, 0);
                self.r.regs.insert(0x04, 0);
                let bus = self.r.regs.get(&0x02).copied().unwrap_or(0);
                self.r.regs.insert(0x02, bus & !0b10);
            }
            _ => {}
        }
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<(), BusError> {
        if self
            .converting
            .is_some_and(|t| std::time::Instant::now() >= t)
        {
            self.converting = None;
            self.update();
        }
        self.r.read(buf);
        Ok(())
    }
    fn brownout(&mut self) {
        self.r.regs.insert(0x00, 0x399F);
        self.r.regs.insert(0x05, 0);
        self.update();
    }
}
