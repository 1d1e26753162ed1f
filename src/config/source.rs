//! `source = { … }`: where a sensor's values come from, one typed variant per kind.
//!
//! The TOML is one inline table per sensor (`source = { simulated = "sine", period = "60s" }`,
//! `source = { modbus = "plc1", table = "holding", address = 3, type = "f32" }`). The key that names the kind
//! picks one strict struct of the keys as written ([`SimulatedKeys`], [`ModbusKeys`],
//! [`super::i2c::I2cKeys`]; unknown keys refused, so a typo lists that kind's keys), which is then checked and
//! turned into a [`SourceConfig`]: names parsed into enums, defaults filled in. A problem is reported as
//! "`key`: message" so the loader can point at the key. Cross-references (does the bus exist) are checked in
//! `validate`.
//!
//! Adding a source kind: its keys struct and built struct here, a variant of [`SourceConfig`], a line in
//! `KINDS`, and a module under `src/source/`.

use super::Dur;
use serde::{Deserialize, Serialize};

/// Where a sensor's values come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(try_from = "toml::Table")]
pub enum SourceConfig {
    /// A simulated waveform (demos, tests, the embedded default).
    Simulated(SimulatedSource),
    /// A register on a Modbus device.
    Modbus(ModbusSource),
    /// A quantity of a chip on an I2C bus.
    I2c(super::I2cSource),
    /// None: the sensor is computed from others (`formula`). The default when `source` is not given.
    #[default]
    Derived,
}

/// Simulated waveforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Waveform {
    /// `offset + amplitude · sin(2πt/period)`.
    #[default]
    Sine,
    /// From `offset` by `step` per sample, wrapping between `min` and `max`.
    Ramp,
    /// Random steps of at most `step`, bounded by `min`/`max`.
    RandomWalk,
    /// Alternates `min`/`max` every half `period`.
    Square,
    /// `values` in order (`silent` indexes send nothing).
    Script,
    /// Always `offset`.
    Constant,
}

impl Waveform {
    const ALL: [(&'static str, Waveform); 6] = [
        ("sine", Waveform::Sine),
        ("ramp", Waveform::Ramp),
        ("random_walk", Waveform::RandomWalk),
        ("square", Waveform::Square),
        ("script", Waveform::Script),
        ("constant", Waveform::Constant),
    ];
}

/// `source = { simulated = "…", … }`
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SimulatedSource {
    /// The waveform.
    pub waveform: Waveform,
    /// Centre (sine), start (ramp, random walk), value (constant).
    pub offset: Option<f64>,
    /// Sine amplitude.
    pub amplitude: Option<f64>,
    /// Sine/square period.
    pub period: Option<Dur>,
    /// Step per sample (ramp, random walk).
    pub step: Option<f64>,
    /// Square wave low level; ramp/random walk lower bound.
    pub min: Option<f64>,
    /// Square wave high level; ramp/random walk upper bound.
    pub max: Option<f64>,
    /// Uniform noise amplitude.
    pub noise: Option<f64>,
    /// Random seed (deterministic output).
    pub seed: Option<u64>,
    /// Scripted values (`nan`, `inf` allowed); used in order.
    pub values: Option<Vec<f64>>,
    /// Indexes in `values` at which the sensor stays silent (no reading).
    pub silent: Option<Vec<usize>>,
    /// Repeat the script (default true); when false the sensor goes silent at its end.
    pub repeat: Option<bool>,
    /// Probability of a NaN sample.
    pub nan_probability: Option<f64>,
    /// Round values to this many decimals (like a real ADC).
    pub decimals: Option<u32>,
}

/// Modbus register table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Coils (0x01).
    Coil,
    /// Discrete inputs (0x02).
    Discrete,
    /// Input registers (0x04).
    Input,
    /// Holding registers (0x03).
    Holding,
}

impl Table {
    /// From the config name.
    pub fn parse(s: &str) -> Option<Table> {
        Some(match s {
            "coil" | "coils" => Table::Coil,
            "discrete" | "discrete_input" => Table::Discrete,
            "input" | "input_register" => Table::Input,
            "holding" | "holding_register" => Table::Holding,
            _ => return None,
        })
    }
    /// Coils and discrete inputs hold bits, not registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
    /// Most items one request may read (Modbus application protocol §6.1–6.4).
    pub fn max_count(self) -> u16 {
        if self.is_bits() {
            2000
        } else {
            125
        }
    }
}

/// Byte/word order of multi-register values.
///
/// The letters are the bytes of the value from most to least significant, in the order they appear on the wire.
/// `abcd` = big-endian (Modbus standard), `cdab` = word swap (common on PLCs), `badc` = byte swap, `dcba` =
/// little-endian. For 64-bit types the 8-letter forms `abcdefgh`, `ghefcdab`, `badcfehg`, `hgfedcba` are
/// accepted, and the 4-letter forms mean the same swaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WordOrder {
    /// Registers arrive least significant first.
    pub word_swap: bool,
    /// Bytes inside each register are swapped.
    pub byte_swap: bool,
}

impl WordOrder {
    /// Big-endian `abcd`.
    pub const ABCD: WordOrder = WordOrder {
        word_swap: false,
        byte_swap: false,
    };

    /// Parse a name such as `cdab`.
    pub fn parse(s: &str) -> Option<WordOrder> {
        let (w, b) = match s.to_ascii_lowercase().as_str() {
            "abcd" | "abcdefgh" | "big" => (false, false),
            "cdab" | "ghefcdab" => (true, false),
            "badc" | "badcfehg" => (false, true),
            "dcba" | "hgfedcba" | "little" => (true, true),
            _ => return None,
        };
        Some(WordOrder {
            word_swap: w,
            byte_swap: b,
        })
    }

    /// All four orders with their names.
    pub fn all() -> [(&'static str, WordOrder); 4] {
        let o = |word_swap, byte_swap| WordOrder {
            word_swap,
            byte_swap,
        };
        [
            ("abcd", o(false, false)),
            ("cdab", o(true, false)),
            ("badc", o(false, true)),
            ("dcba", o(true, true)),
        ]
    }
}

/// A register data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DataType {
    /// Coil or discrete input, or register != 0.
    Bool,
    /// One bit of a register.
    Bit(u8),
    /// The low byte of a register, unsigned (Telegraf's UINT8L).
    U8Low,
    /// The high byte of a register, unsigned (UINT8H).
    U8High,
    /// The low byte of a register, signed (INT8L).
    I8Low,
    /// The high byte of a register, signed (INT8H).
    I8High,
    /// IEEE 754 half precision in one register (FLOAT16).
    F16,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
    /// Unsigned 64-bit.
    U64,
    /// Signed 64-bit.
    I64,
    /// IEEE 754 single.
    F32,
    /// IEEE 754 double.
    F64,
    /// ASCII text over this many registers, two characters each (trailing NULs and spaces trimmed): a text
    /// reading, never a number.
    String(u8),
}

/// Modbus data type names accepted in `source.type`.
pub const MODBUS_TYPES: &[&str] = &[
    "bool", "bit", "u8l", "u8h", "i8l", "i8h", "u16", "i16", "f16", "u32", "i32", "u64", "i64",
    "f32", "f64", "string",
];

impl DataType {
    /// Parse the config name (`string` takes its length in registers).
    pub fn parse(s: &str, bit: Option<u8>, length: Option<u8>) -> Option<DataType> {
        Some(match s {
            "string" => DataType::String(length?),
            "bool" => DataType::Bool,
            "bit" => DataType::Bit(bit?),
            "u8l" => DataType::U8Low,
            "u8h" => DataType::U8High,
            "i8l" => DataType::I8Low,
            "i8h" => DataType::I8High,
            "f16" => DataType::F16,
            "u16" => DataType::U16,
            "i16" => DataType::I16,
            "u32" => DataType::U32,
            "i32" => DataType::I32,
            "u64" => DataType::U64,
            "i64" => DataType::I64,
            "f32" => DataType::F32,
            "f64" => DataType::F64,
            _ => return None,
        })
    }

    /// Registers occupied.
    pub fn registers(self) -> u16 {
        match self {
            DataType::Bool
            | DataType::Bit(_)
            | DataType::U8Low
            | DataType::U8High
            | DataType::I8Low
            | DataType::I8High
            | DataType::U16
            | DataType::I16
            | DataType::F16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
            DataType::String(n) => u16::from(n),
        }
    }
}

/// `source = { modbus = "…", … }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModbusSource {
    /// Name of the `[[modbus]]` section (the device or RTU line).
    pub bus: String,
    /// Unit (slave) id; default 1.
    pub unit: u8,
    /// Register table.
    pub table: Table,
    /// Register address as written (0-based unless the bus says `one_based = true`).
    pub address: u16,
    /// Data type (default `bool` for coils/discrete inputs, `u16` for registers).
    pub data_type: DataType,
    /// Word order (default `abcd`).
    pub word_order: WordOrder,
    /// value = raw · scale + add.
    pub scale: f64,
    /// Added after scaling.
    pub add: f64,
}

/// `source = { simulated = "…", … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SimulatedKeys {
    /// Waveform: `sine`, `ramp`, `random_walk`, `square`, `script`, `constant`.
    pub simulated: String,
    offset: Option<f64>,
    amplitude: Option<f64>,
    period: Option<Dur>,
    step: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    noise: Option<f64>,
    seed: Option<u64>,
    values: Option<Vec<f64>>,
    silent: Option<Vec<usize>>,
    repeat: Option<bool>,
    nan_probability: Option<f64>,
    decimals: Option<u32>,
}

/// `source = { modbus = "…", … }` as written.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ModbusKeys {
    /// Name of a `[[modbus]]` section.
    pub modbus: String,
    unit: Option<u8>,
    table: Option<String>,
    address: Option<u16>,
    #[serde(rename = "type")]
    data_type: Option<String>,
    word_order: Option<String>,
    bit: Option<u8>,
    /// Registers of a `type = "string"` (two characters each).
    length: Option<u8>,
    scale: Option<f64>,
    add: Option<f64>,
}

/// The source kinds: the key that names each, how a person calls its settings and the source, and its keys.
struct Kind {
    key: &'static str,
    setting: &'static str,
    source: &'static str,
    fields: fn() -> &'static [&'static str],
}

const KINDS: [Kind; 3] = [
    Kind {
        key: "simulated",
        setting: "a simulated-source setting",
        source: "a simulated source",
        fields: super::fields::of::<SimulatedKeys>,
    },
    Kind {
        key: "modbus",
        setting: "a Modbus setting",
        source: "Modbus",
        fields: super::fields::of::<ModbusKeys>,
    },
    Kind {
        key: "i2c",
        setting: "an I2C setting",
        source: "an I2C source",
        fields: super::fields::of::<super::i2c::I2cKeys>,
    },
];

/// "`key`: message": the loader moves the key into the error's path.
fn at(key: &str, msg: impl std::fmt::Display) -> String {
    format!("`{key}`: {msg}")
}

/// Read `t` as the kind's strict key struct: an unknown key lists that kind's keys, not every kind's.
fn keys<T: serde::de::DeserializeOwned>(t: toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(t)).map_err(|e| e.message().to_string())
}

impl TryFrom<toml::Table> for SourceConfig {
    type Error = String;

    fn try_from(t: toml::Table) -> Result<Self, String> {
        let named: Vec<&Kind> = KINDS.iter().filter(|k| t.contains_key(k.key)).collect();
        let kind = match named.as_slice() {
            [] => return Err(
                "needs one of `simulated = \"sine\"`, `modbus = \"<name of a [[modbus]] section>\"` or `i2c = \"<name of an [[i2c]] section>\"`".into(),
            ),
            [one] => *one,
            _ => return Err("give only one of `simulated`, `modbus` and `i2c`".into()),
        };
        // A key of another kind is named as such ("is a Modbus setting"); anything else is left to the kind's
        // strict struct, whose error lists the keys it has.
        let mine = (kind.fields)();
        for key in t.keys().filter(|k| !mine.contains(&k.as_str())) {
            if let Some(other) = KINDS.iter().find(|o| (o.fields)().contains(&key.as_str())) {
                return Err(at(
                    key,
                    format!("is {}; it does not apply to {}", other.setting, kind.source),
                ));
            }
        }
        match kind.key {
            "simulated" => simulated(&keys(t)?).map(SourceConfig::Simulated),
            "modbus" => modbus(&keys(t)?).map(SourceConfig::Modbus),
            _ => super::i2c::i2c_source(&keys(t)?).map(SourceConfig::I2c),
        }
    }
}

fn simulated(k: &SimulatedKeys) -> Result<SimulatedSource, String> {
    let w = k.simulated.as_str();
    let Some(&(_, waveform)) = Waveform::ALL.iter().find(|(n, _)| *n == w) else {
        let names: Vec<&str> = Waveform::ALL.iter().map(|(n, _)| *n).collect();
        return Err(at(
            "simulated",
            format!(
                "unknown waveform {w:?}; expected one of: {}",
                names.join(", ")
            ),
        ));
    };
    if waveform == Waveform::Script && k.values.as_ref().is_none_or(|v| v.is_empty()) {
        return Err("a script source needs `values = [ … ]`".into());
    }
    if matches!(waveform, Waveform::Sine | Waveform::Square)
        && k.period.is_some_and(|p| p.0.is_zero())
    {
        return Err(at("period", "must be greater than zero"));
    }
    if k.nan_probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(at("nan_probability", "must be between 0 and 1"));
    }
    Ok(SimulatedSource {
        waveform,
        offset: k.offset,
        amplitude: k.amplitude,
        period: k.period,
        step: k.step,
        min: k.min,
        max: k.max,
        noise: k.noise,
        seed: k.seed,
        values: k.values.clone(),
        silent: k.silent.clone(),
        repeat: k.repeat,
        nan_probability: k.nan_probability,
        decimals: k.decimals,
    })
}

fn modbus(k: &ModbusKeys) -> Result<ModbusSource, String> {
    const TABLES: &str = "coil, discrete, input, holding";
    let table = match &k.table {
        None => return Err(format!("missing `table` (one of {TABLES})")),
        Some(t) => Table::parse(t).ok_or_else(|| {
            at(
                "table",
                format!("unknown table {t:?}; expected one of: {TABLES}"),
            )
        })?,
    };
    let address = k.address.ok_or("missing `address`")?;
    let ty = k
        .data_type
        .as_deref()
        .unwrap_or(if table.is_bits() { "bool" } else { "u16" });
    if !MODBUS_TYPES.contains(&ty) {
        return Err(at(
            "type",
            format!(
                "unknown type {ty:?}; expected one of: {}",
                MODBUS_TYPES.join(", ")
            ),
        ));
    }
    if ty == "bit" && k.bit.is_none_or(|b| b > 15) {
        return Err("type = \"bit\" needs `bit` between 0 and 15".into());
    }
    if ty != "bit" && k.bit.is_some() {
        return Err(at("bit", "only applies to type = \"bit\""));
    }
    if ty == "string" && k.length.is_none_or(|n| n == 0 || n > 125) {
        return Err(
            "type = \"string\" needs `length`: its registers, 1 to 125 (two characters each)"
                .into(),
        );
    }
    if ty != "string" && k.length.is_some() {
        return Err(at("length", "only applies to type = \"string\""));
    }
    if ty == "string" && (k.scale.is_some() || k.add.is_some()) {
        let key = if k.scale.is_some() { "scale" } else { "add" };
        return Err(at(key, "a string register is text, not a number to scale"));
    }
    let data_type =
        DataType::parse(ty, k.bit, k.length).ok_or_else(|| at("type", "unknown type"))?;
    if table.is_bits() && data_type != DataType::Bool {
        return Err(at(
            "type",
            format!("coils and discrete inputs hold single bits: use type = \"bool\" (not {ty:?})"),
        ));
    }
    let word_order = match &k.word_order {
        None => WordOrder::ABCD,
        Some(wo) => {
            let o = WordOrder::parse(wo).ok_or_else(|| {
                at(
                    "word_order",
                    format!("unknown order {wo:?}; expected abcd, cdab, badc, dcba (or the 8-letter forms for 64-bit types)"),
                )
            })?;
            if matches!(data_type, DataType::String(_)) && o.word_swap {
                return Err(at(
                    "word_order",
                    format!("{wo:?} swaps registers; a string is read in register order: \"abcd\" (first character in the high byte) or \"badc\" (in the low byte)"),
                ));
            }
            match (data_type.registers(), o.word_swap, o.byte_swap) {
                // Least significant byte first (`dcba`, `little`) of a one-register value is a byte swap.
                (1, true, true) => WordOrder {
                    word_swap: false,
                    byte_swap: true,
                },
                (1, true, false) => {
                    return Err(at(
                        "word_order",
                        format!("{wo:?} swaps registers, but {ty} is a single register: use \"abcd\", or \"badc\" to swap its bytes"),
                    ))
                }
                _ => o,
            }
        }
    };
    for (key, v) in [("scale", k.scale), ("add", k.add)] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(at(key, "must be a finite number"));
        }
    }
    Ok(ModbusSource {
        bus: k.modbus.clone(),
        unit: k.unit.unwrap_or(1),
        table,
        address,
        data_type,
        word_order,
        scale: k.scale.unwrap_or(1.0),
        add: k.add.unwrap_or(0.0),
    })
}
