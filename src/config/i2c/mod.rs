//! `[[i2c]]` buses and `source = { i2c = "bus1", chip = "bme280", address = 0x76, quantity = "temperature" }`.
//!
//! The chip table ([`CHIPS`]) is what `check-config` knows: each chip's addresses, quantities (with their units)
//! and options; a typo names the valid ones.

use super::Dur;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[[i2c]]`: one I2C bus.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct I2cConfig {
    /// Name sensors refer to.
    pub name: String,
    /// `/dev/i2c-N`, or `simulated` (a register-map simulation of every configured chip: demos and tests).
    pub device: String,
    /// A transfer that takes longer is reported as a wedged bus.
    #[serde(default = "default_i2c_timeout")]
    pub timeout: Dur,
    /// Simulated bus only: addresses whose device does not answer (NACK), to try fault handling.
    #[serde(default)]
    pub absent: Vec<u8>,
}

fn default_i2c_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}

/// A supported chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chip {
    /// Bosch BME280: temperature, humidity, pressure.
    Bme280,
    /// Bosch BMP280: temperature, pressure.
    Bmp280,
    /// Sensirion SHT3x: temperature, humidity (CRC checked).
    Sht3x,
    /// Sensirion SHT4x: temperature, humidity (CRC checked).
    Sht4x,
    /// TI ADS1115 16-bit ADC.
    Ads1115,
    /// TI TMP117 precision thermometer.
    Tmp117,
    /// TI INA219 current/power monitor.
    Ina219,
    /// Any register-mapped device.
    Register,
}

mod chips;
pub use chips::{ChipSpec, CHIPS};

impl Chip {
    /// Its entry in [`CHIPS`].
    pub fn spec(self) -> &'static ChipSpec {
        CHIPS.iter().find(|c| c.chip == self).unwrap_or(&CHIPS[0])
    }
}

/// ADS1115 input: single-ended `a0`…`a3` or differential `a0-a1`, `a0-a3`, `a1-a3`, `a2-a3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AdcChannel {
    /// AINn against GND.
    Single(u8),
    /// AINp − AINn.
    Diff(u8, u8),
}

impl AdcChannel {
    const NAMES: &'static str = "a0, a1, a2, a3, a0-a1, a0-a3, a1-a3, a2-a3";
    fn parse(s: &str) -> Option<AdcChannel> {
        Some(match s {
            "a0" | "0" => AdcChannel::Single(0),
            "a1" | "1" => AdcChannel::Single(1),
            "a2" | "2" => AdcChannel::Single(2),
            "a3" | "3" => AdcChannel::Single(3),
            "a0-a1" => AdcChannel::Diff(0, 1),
            "a0-a3" => AdcChannel::Diff(0, 3),
            "a1-a3" => AdcChannel::Diff(1, 3),
            "a2-a3" => AdcChannel::Diff(2, 3),
            _ => return None,
        })
    }
}

/// ADS1115 full-scale ranges in volts.
pub(super) const ADC_RANGES: &[f64] = &[6.144, 4.096, 2.048, 1.024, 0.512, 0.256];

/// Write-before-read of a register sensor: write `value` to `register`, wait, then read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trigger {
    /// Register written.
    pub register: u8,
    /// Byte written.
    pub value: u8,
    /// Wait before the read (conversion time).
    pub wait: Duration,
}

/// `source = { i2c = "…", chip = "…", address = …, quantity = "…", … }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct I2cSource {
    /// Name of the `[[i2c]]` bus.
    pub bus: String,
    /// The chip.
    pub chip: Chip,
    /// 7-bit address.
    pub address: u8,
    /// Quantity (one of the chip's).
    pub quantity: String,
    /// ADS1115 input.
    pub channel: Option<AdcChannel>,
    /// ADS1115 full-scale range (V).
    pub range: f64,
    /// Shunt resistor (Ω): ADS1115 `current`, INA219.
    pub shunt_ohms: Option<f64>,
    /// INA219 largest expected current (A), for the calibration.
    pub max_current: Option<f64>,
    /// Register sensor: first register.
    pub register: u8,
    /// Register sensor: bytes read (1–8).
    pub length: u8,
    /// Register sensor: most significant byte first.
    pub big_endian: bool,
    /// Register sensor: two's complement.
    pub signed: bool,
    /// Register sensor: write-before-read.
    pub trigger: Option<Trigger>,
    /// BME280/BMP280 oversampling of each quantity (1, 2, 4, 8 or 16; default 1).
    pub oversampling: u8,
    /// BME280/BMP280 IIR filter coefficient (0 = off, the default; 2, 4, 8 or 16).
    pub filter: u8,
    /// value = measured · scale + add (after `from`/`to`).
    pub scale: f64,
    /// Added after scaling.
    pub add: f64,
    /// Two-point linear map: `from = [4.0, 20.0]` → `to = [0.0, 10.0]` (e.g. a 4–20 mA loop to bar).
    pub map: Option<([f64; 2], [f64; 2])>,
}

/// `source = { i2c = "…", … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct I2cKeys {
    /// Name of an `[[i2c]]` section.
    pub i2c: String,
    pub(crate) chip: Option<String>,
    pub(crate) quantity: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) range: Option<f64>,
    pub(crate) shunt_ohms: Option<f64>,
    pub(crate) max_current: Option<f64>,
    pub(crate) register: Option<u8>,
    pub(crate) length: Option<u8>,
    pub(crate) byte_order: Option<String>,
    pub(crate) signed: Option<bool>,
    pub(crate) trigger: Option<[u8; 2]>,
    pub(crate) wait: Option<Dur>,
    pub(crate) from: Option<[f64; 2]>,
    pub(crate) to: Option<[f64; 2]>,
    pub(crate) oversampling: Option<u8>,
    pub(crate) filter: Option<u8>,
    pub(crate) address: Option<u16>,
    pub(crate) scale: Option<f64>,
    pub(crate) add: Option<f64>,
}

impl I2cKeys {
    /// The chip options that are set (each chip accepts some).
    pub(crate) fn set(&self) -> Vec<&'static str> {
        let set = [
            ("chip", self.chip.is_some()),
            ("quantity", self.quantity.is_some()),
            ("channel", self.channel.is_some()),
            ("range", self.range.is_some()),
            ("shunt_ohms", self.shunt_ohms.is_some()),
            ("max_current", self.max_current.is_some()),
            ("register", self.register.is_some()),
            ("length", self.length.is_some()),
            ("byte_order", self.byte_order.is_some()),
            ("signed", self.signed.is_some()),
            ("trigger", self.trigger.is_some()),
            ("wait", self.wait.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("oversampling", self.oversampling.is_some()),
            ("filter", self.filter.is_some()),
        ];
        set.iter().filter(|(_, s)| *s).map(|(k, _)| *k).collect()
    }
}

fn at(key: &str, msg: impl std::fmt::Display) -> String {
    format!("`{key}`: {msg}")
}

/// Build an [`I2cSource`] from the keys; `address`, `scale` and `add` are shared with Modbus.
pub(crate) fn i2c_source(k: &I2cKeys) -> Result<I2cSource, String> {
    let (bus, address, scale, add) = (k.i2c.as_str(), k.address, k.scale, k.add);
    let names = || CHIPS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    let Some(chip_name) = &k.chip else {
        return Err(format!("missing `chip` (one of {})", names()));
    };
    let spec = CHIPS
        .iter()
        .find(|c| c.name == chip_name.to_ascii_lowercase())
        .ok_or_else(|| {
            at(
                "chip",
                format!("unknown chip {chip_name:?}; expected one of: {}", names()),
            )
        })?;
    let hexes = |a: &[u8]| {
        if a.len() > 16 {
            "0x03 to 0x77".to_string()
        } else {
            a.iter()
                .map(|x| format!("0x{x:02x}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let address = match address {
        None => {
            return Err(format!(
                "missing `address` ({} for a {})",
                hexes(spec.addresses),
                spec.name
            ))
        }
        Some(a) => u8::try_from(a)
            .ok()
            .filter(|a| spec.addresses.contains(a))
            .ok_or_else(|| {
                at(
                    "address",
                    format!(
                        "0x{a:02x} is not an address of a {}: {}",
                        spec.name,
                        hexes(spec.addresses)
                    ),
                )
            })?,
    };
    let quantities = || {
        spec.quantities
            .iter()
            .map(|(q, _)| *q)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let quantity = match (&k.quantity, spec.quantities) {
        (Some(q), _) if spec.quantities.iter().any(|(n, _)| n == q) => q.clone(),
        (Some(q), _) => {
            return Err(at(
                "quantity",
                format!("a {} measures {}; not {q:?}", spec.name, quantities()),
            ))
        }
        (None, [(only, _)]) => only.to_string(),
        (None, _) => {
            return Err(format!(
                "missing `quantity` (a {} measures {})",
                spec.name,
                quantities()
            ))
        }
    };
    for opt in k.set() {
        if ["chip", "quantity", "from", "to"].contains(&opt) || spec.options.contains(&opt) {
            continue;
        }
        let valid = if spec.options.is_empty() {
            "none".to_string()
        } else {
            spec.options.join(", ")
        };
        return Err(at(
            opt,
            format!("is not an option of a {} (its options: {valid})", spec.name),
        ));
    }
    let finite_pos = |key: &str, v: Option<f64>| -> Result<Option<f64>, String> {
        match v {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(at(key, "must be a positive number")),
            other => Ok(other),
        }
    };
    let shunt_ohms = finite_pos("shunt_ohms", k.shunt_ohms)?;
    let oversampling = k.oversampling.unwrap_or(1);
    if ![1, 2, 4, 8, 16].contains(&oversampling) {
        return Err(at("oversampling", "must be 1, 2, 4, 8 or 16"));
    }
    let filter = k.filter.unwrap_or(0);
    if ![0, 2, 4, 8, 16].contains(&filter) {
        return Err(at("filter", "must be 0 (off), 2, 4, 8 or 16"));
    }
    let max_current = finite_pos("max_current", k.max_current)?;
    let mut channel = None;
    let mut range = 4.096;
    if spec.chip == Chip::Ads1115 {
        let c = k
            .channel
            .as_deref()
            .ok_or_else(|| format!("missing `channel` ({})", AdcChannel::NAMES))?;
        channel = Some(AdcChannel::parse(c).ok_or_else(|| {
            at(
                "channel",
                format!(
                    "unknown input {c:?}; expected one of: {}",
                    AdcChannel::NAMES
                ),
            )
        })?);
        if let Some(r) = k.range {
            if !ADC_RANGES.contains(&r) {
                return Err(at("range", format!("{r} V is not a range of the ADS1115: 6.144, 4.096, 2.048, 1.024, 0.512, 0.256")));
            }
            range = r;
        }
        if quantity == "current" && shunt_ohms.is_none() {
            return Err(
                "quantity = \"current\" needs `shunt_ohms` (the loop's sense resistor, e.g. 150.0)"
                    .into(),
            );
        }
    }
    if spec.chip == Chip::Ina219
        && shunt_ohms.is_none()
        && ["current", "power"].contains(&quantity.as_str())
    {
        return Err(format!(
            "quantity = {quantity:?} needs `shunt_ohms` (e.g. 0.1) and `max_current` (A)"
        ));
    }
    let length = k.length.unwrap_or(2);
    if spec.chip == Chip::Register {
        if k.register.is_none() {
            return Err("missing `register` (the first register to read, e.g. 0x00)".into());
        }
        if !(1..=8).contains(&length) {
            return Err(at("length", "must be from 1 to 8 bytes"));
        }
    }
    let big_endian = match k.byte_order.as_deref() {
        None | Some("big") => true,
        Some("little") => false,
        Some(o) => {
            return Err(at(
                "byte_order",
                format!("unknown order {o:?}; expected big or little"),
            ))
        }
    };
    let trigger = match (k.trigger, k.wait) {
        (Some([register, value]), wait) => Some(Trigger {
            register,
            value,
            wait: wait.map(|w| w.0).unwrap_or(Duration::ZERO),
        }),
        (None, Some(_)) => {
            return Err(at(
                "wait",
                "only applies with `trigger = [register, value]`",
            ))
        }
        (None, None) => None,
    };
    if trigger.is_some_and(|t| t.wait > Duration::from_secs(1)) {
        return Err(at("wait", "must be at most 1s (it holds the bus)"));
    }
    let map = match (k.from, k.to) {
        (Some(f), Some(t)) => {
            if f.iter().chain(t.iter()).any(|v| !v.is_finite()) || f[0] == f[1] {
                return Err(at(
                    "from",
                    "needs two different finite numbers, e.g. from = [4.0, 20.0], to = [0.0, 10.0]",
                ));
            }
            Some((f, t))
        }
        (None, None) => None,
        _ => {
            return Err(
                "`from` and `to` go together, e.g. from = [4.0, 20.0], to = [0.0, 10.0]".into(),
            )
        }
    };
    for (key, v) in [("scale", scale), ("add", add)] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(at(key, "must be a finite number"));
        }
    }
    Ok(I2cSource {
        bus: bus.to_string(),
        chip: spec.chip,
        address,
        quantity,
        channel,
        range,
        shunt_ohms,
        max_current,
        register: k.register.unwrap_or(0),
        length,
        big_endian,
        signed: k.signed.unwrap_or(false),
        trigger,
        oversampling,
        filter,
        scale: scale.unwrap_or(1.0),
        add: add.unwrap_or(0.0),
        map,
    })
}

impl I2cSource {
    /// The engineering value from what the chip measured.
    pub fn engineering(&self, v: f64) -> f64 {
        let v = match self.map {
            Some(([f0, f1], [t0, t1])) => t0 + (v - f0) * (t1 - t0) / (f1 - f0),
            None => v,
        };
        v * self.scale + self.add
    }
    /// The unit of the quantity as measured.
    pub fn native_unit(&self) -> &'static str {
        self.chip
            .spec()
            .quantities
            .iter()
            .find(|(q, _)| *q == self.quantity)
            .map(|(_, u)| *u)
            .unwrap_or("")
    }
}

/// Checks across sections: bus names and devices, sensors on known buses, one chip per address.
pub(crate) fn validate(cfg: &super::Config, issues: &mut Vec<super::Issue>) {
    use super::{Issue, KeyPath, Seg, SourceConfig};
    use std::collections::HashMap;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, b) in cfg.i2c.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("i2c".into()), Seg::Index(i)]);
        if let Some(prev) = names.insert(b.name.as_str(), i) {
            issues.push(Issue::new(
                base.key("name"),
                format!("duplicate name {:?} (also i2c[{prev}])", b.name),
            ));
        }
        if b.device != "simulated" && !b.device.starts_with('/') {
            issues.push(Issue::new(
                base.key("device"),
                format!(
                    "{:?}: give the device node, e.g. \"/dev/i2c-1\" (or \"simulated\")",
                    b.device
                ),
            ));
        }
        if !b.absent.is_empty() && b.device != "simulated" {
            issues.push(Issue::new(
                base.key("absent"),
                "only applies to device = \"simulated\"",
            ));
        }
        if b.timeout.0 < Duration::from_millis(10) || b.timeout.0 > Duration::from_secs(60) {
            issues.push(Issue::new(base.key("timeout"), "must be from 10ms to 60s"));
        }
    }
    let mut chips: HashMap<(&str, u8), (Chip, usize)> = HashMap::new();
    for (i, s) in cfg.sensor.iter().enumerate() {
        let SourceConfig::I2c(src) = &s.source else {
            continue;
        };
        let sp = KeyPath(vec![
            Seg::Key("sensor".into()),
            Seg::Index(i),
            Seg::Key("source".into()),
        ]);
        if !names.contains_key(src.bus.as_str()) {
            let mut defined: Vec<&str> = names.keys().copied().collect();
            defined.sort();
            issues.push(Issue::new(
                sp.key("i2c"),
                format!(
                    "no [[i2c]] section named {:?} (defined: {})",
                    src.bus,
                    if defined.is_empty() {
                        "none".to_string()
                    } else {
                        defined.join(", ")
                    }
                ),
            ));
            continue;
        }
        match chips.get(&(src.bus.as_str(), src.address)) {
            Some((other, j)) if *other != src.chip => issues.push(Issue::new(
                sp.key("address"),
                format!(
                    "0x{:02x} on bus {:?} is already a {} (sensor[{j}]); one address is one device",
                    src.address,
                    src.bus,
                    other.spec().name
                ),
            )),
            Some(_) => {}
            None => {
                chips.insert((src.bus.as_str(), src.address), (src.chip, i));
            }
        }
    }
}
