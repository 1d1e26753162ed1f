//! Serde structs of the config file (`[mqtt]` in `mqtt.rs`; `[email]`, `[alarms]`, `[sparkplug]` and the sources
//! in their own modules). Validation beyond types lives in `validate.rs`.

use super::MqttConfig;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A human duration such as `"500ms"`, `"5s"`, `"7d"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Dur(#[serde(serialize_with = "ser_dur")] pub Duration);

fn ser_dur<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl Dur {
    /// The longest duration any key accepts (100 years).
    pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);
}

/// A string, or an error in the user's words: "expected a duration such as \"10s\"" rather than "expected a
/// string".
struct Text(&'static str);

impl serde::de::Visitor<'_> for Text {
    type Value = String;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_str(Text("a duration such as \"10s\" or \"500ms\""))?;
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (write e.g. \"500ms\", \"5s\", \"2m\", \"7d\")"
            ))
        })?;
        // No timer, clock or date computation may overflow, whatever the file says; each key has its own, smaller
        // limit in `validate`.
        if d > Dur::MAX {
            return Err(serde::de::Error::custom(format!(
                "duration {s:?} is too long: at most 100 years"
            )));
        }
        Ok(Dur(d))
    }
}

/// A human size such as `"64MiB"`, `"1GiB"`, `"500kB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_str(Text("a size such as \"64MiB\" or \"1GiB\""))?;
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?}: {e} (write e.g. \"512MiB\", \"1GiB\")"
                ))
            })
            .and_then(|b| {
                if b.as_u64() > 1 << 50 {
                    Err(serde::de::Error::custom(format!(
                        "size {s:?} is too large: at most 1PiB"
                    )))
                } else {
                    Ok(Size(b.as_u64()))
                }
            })
    }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity and storage location.
    pub gateway: GatewayConfig,
    /// Local durable buffer.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// InfluxDB v2 write API sink.
    pub influxdb: Option<InfluxConfig>,
    /// MQTT sink.
    pub mqtt: Option<MqttConfig>,
    /// Critical alerts by mail.
    pub email: Option<super::EmailConfig>,
    /// Sparkplug B edge node.
    pub sparkplug: Option<super::SparkplugConfig>,
    /// Prometheus metrics endpoint.
    pub metrics: Option<MetricsConfig>,
    /// Modbus TCP devices and RTU lines.
    #[serde(default)]
    pub modbus: Vec<ModbusConfig>,
    /// I2C buses.
    #[serde(default)]
    pub i2c: Vec<super::I2cConfig>,
    /// Alarm management: floods, chattering, stale alarms, KPIs.
    #[serde(default)]
    pub alarms: super::AlarmsConfig,
    /// Sensors.
    #[serde(default)]
    pub sensor: Vec<SensorConfig>,
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Device id in every reading, alert and topic.
    pub id: String,
    /// Free-text location.
    #[serde(default)]
    pub location: String,
    /// Where the store lives. Env: `WATCHPOST__GATEWAY__DATA_DIR`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/watchpost")
}

/// `[buffer]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Size cap; oldest readings are dropped beyond it, alerts never.
    #[serde(default = "default_max_size")]
    pub max_size: Size,
    /// A reading is durable within this.
    #[serde(default = "default_flush")]
    pub flush_interval: Dur,
    /// Delivered data is kept locally this long (for `buffer export`).
    #[serde(default = "default_retention")]
    pub retention: Dur,
    /// A batch is written early once it holds this many readings.
    #[serde(default = "default_batch_max")]
    pub batch_max_readings: usize,
}

fn default_max_size() -> Size {
    Size(1 << 30)
}
fn default_flush() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_retention() -> Dur {
    Dur(Duration::from_secs(7 * 86400))
}
fn default_batch_max() -> usize {
    10_000
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_size: default_max_size(),
            flush_interval: default_flush(),
            retention: default_retention(),
            batch_max_readings: default_batch_max(),
        }
    }
}

/// A secret: inline (discouraged), from a file, an environment variable or a systemd credential.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Path of a file holding the secret (trailing newline stripped).
    pub file: Option<PathBuf>,
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// Name of a systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    pub credential: Option<String>,
}

/// `[influxdb]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Organisation.
    #[serde(default)]
    pub org: String,
    /// Bucket.
    #[serde(default)]
    pub bucket: String,
    /// Token inline (prefer `token_file`). Env: `WATCHPOST__INFLUXDB__TOKEN`.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    /// Token from a file.
    pub token_file: Option<PathBuf>,
    /// Token from an environment variable.
    pub token_env: Option<String>,
    /// Token from a systemd credential.
    pub token_credential: Option<String>,
    /// Measurement name for all readings.
    #[serde(default = "default_measurement")]
    pub measurement: String,
    /// Timestamp precision: `s`, `ms`, `us`, `ns`.
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Batch size before gzip.
    #[serde(default = "default_batch_bytes")]
    pub batch_size: Size,
    /// Upper bound of the replay rate in readings per second (0 = unlimited).
    #[serde(default)]
    pub max_rate: u64,
    /// Request timeout.
    #[serde(default = "default_http_timeout")]
    pub timeout: Dur,
    /// Gzip the body.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Once caught up, write at most this often: what is committed meanwhile goes into one request (fewer requests
    /// on a metered uplink, less CPU; InfluxDB then lags by up to this much). 0 = each commit as it comes. A
    /// backlog drains at full speed regardless.
    #[serde(default)]
    pub write_interval: Dur,
    /// PEM file with the CA certificate(s) to trust for `https://` (default: the system trust store).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Extra tags on every point.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl InfluxConfig {
    /// Every key at its default (no server): the data model `buffer export` uses without `[influxdb]`.
    pub fn defaults() -> InfluxConfig {
        InfluxConfig {
            url: String::new(),
            org: String::new(),
            bucket: String::new(),
            token: None,
            token_file: None,
            token_env: None,
            token_credential: None,
            measurement: default_measurement(),
            precision: default_precision(),
            batch_size: default_batch_bytes(),
            max_rate: 0,
            timeout: default_http_timeout(),
            gzip: true,
            write_interval: Dur(Duration::ZERO),
            ca_file: None,
            tags: BTreeMap::new(),
        }
    }
}

fn default_measurement() -> String {
    "sensor".into()
}
fn default_precision() -> String {
    "ms".into()
}
fn default_batch_bytes() -> Size {
    Size(1_000_000)
}
fn default_http_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Whether alarm commands are on (and so acknowledgements tracked).
    pub fn commands_enabled(&self) -> bool {
        self.mqtt
            .as_ref()
            .and_then(|m| m.commands.as_ref())
            .is_some_and(|c| c.enabled)
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address, e.g. `127.0.0.1:9898`.
    pub listen: String,
}

/// `[[modbus]]`: a Modbus TCP device or RTU line.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// Name sensors refer to.
    pub name: String,
    /// `tcp://host:port` or `rtu:///dev/ttyUSB0?baud=9600&parity=E&data_bits=8&stop_bits=1`.
    pub url: String,
    /// Per-request timeout.
    #[serde(default = "default_modbus_timeout")]
    pub timeout: Dur,
    /// Retries after a timeout before the poll counts as failed.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause between frames on an RTU line.
    #[serde(default = "default_frame_delay")]
    pub frame_delay: Dur,
    /// Registers further apart than this are read with separate requests.
    #[serde(default = "default_gap")]
    pub max_gap: u16,
    /// Addresses in the config are 0-based protocol addresses (default) or 1-based.
    #[serde(default)]
    pub one_based: bool,
}

fn default_modbus_timeout() -> Dur {
    Dur(Duration::from_millis(1000))
}
fn default_retries() -> u32 {
    1
}
fn default_frame_delay() -> Dur {
    Dur(Duration::from_millis(5))
}
fn default_gap() -> u16 {
    10
}

/// A threshold pair.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Default)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Alarm at or above.
    pub high: Option<f64>,
    /// Alarm at or below.
    pub low: Option<f64>,
}

/// Plausible range.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ValidRange {
    /// Lowest plausible value.
    pub min: Option<f64>,
    /// Highest plausible value.
    pub max: Option<f64>,
}

/// `[[sensor]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Unique id.
    pub id: String,
    /// Where values come from. A sensor with a `formula` has none.
    #[serde(default)]
    pub source: super::SourceConfig,
    /// A derived (calculated) sensor: computed every `interval` from other sensors' latest good values.
    pub formula: Option<String>,
    /// Alarms of this sensor are evaluated only while this condition (a formula) holds (state-based suppression).
    pub enabled_when: Option<String>,
    /// Rate-of-change alarm.
    pub rate: Option<super::RateConfig>,
    /// Deviation alarm against another sensor.
    pub deviation: Option<super::DeviationConfig>,
    /// Priority of this sensor's alarms (default: WARNING → medium, CRITICAL → high).
    pub priority: Option<crate::model::Priority>,
    /// Poll interval.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Engineering unit.
    pub unit: Option<String>,
    /// Plausible range; outside → bad reading and SENSOR_FAULT.
    pub valid: Option<ValidRange>,
    /// Warning limits.
    pub warning: Option<Limits>,
    /// Critical limits.
    pub critical: Option<Limits>,
    /// Hysteresis for clearing.
    #[serde(default)]
    pub deadband: f64,
    /// On-delay: condition must persist this long before raising.
    pub delay: Option<Dur>,
    /// Off-delay: normal must persist this long before clearing.
    pub off_delay: Option<Dur>,
    /// No good reading for this long → SENSOR_OFFLINE (default: 3 × interval, at least 5 s).
    pub stale_after: Option<Dur>,
    /// Identical value for this long → SENSOR_FAULT (stuck).
    pub stuck_after: Option<Dur>,
    /// Largest plausible change per second; faster → spike (bad reading).
    pub max_rate: Option<f64>,
    /// Extra tags for the time-series store.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(1))
}

impl SensorConfig {
    /// Effective staleness limit.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
            .map(|d| d.0)
            .unwrap_or_else(|| (self.interval.0 * 3).max(Duration::from_secs(5)))
    }
}
