//! `[mqtt]` and its tables: the broker session, telemetry, the device shadow and alarm commands. The topics they
//! make are in `sink::mqtt`; validation beyond types in `validate.rs`.

use super::{Dur, Size};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Client id (default: gateway id).
    pub client_id: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Password inline (prefer `password_file`). Env: `WATCHPOST__MQTT__PASSWORD`.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Password from a file.
    pub password_file: Option<PathBuf>,
    /// Password from an environment variable.
    pub password_env: Option<String>,
    /// Password from a systemd credential (`LoadCredential=`).
    pub password_credential: Option<String>,
    /// CA certificate (PEM) to trust for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// ALPN protocols, e.g. `["x-amzn-mqtt-ca"]` for AWS IoT on port 443.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// Topic prefix.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Keep-alive.
    #[serde(default = "default_keepalive")]
    pub keep_alive: Dur,
    /// Ask the broker to keep the session across reconnects.
    #[serde(default)]
    pub persistent_session: bool,
    /// Maximum unacknowledged publishes.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// The largest MQTT message (payload and topic) the broker takes: an alert event larger than this is
    /// dead-lettered (WARN, counter, a DEAD_LETTER event) instead of stopping the feed. AWS IoT Core's limit is
    /// 128 KiB (the default); mosquitto's `message_size_limit` and `max_packet_size` set it on mosquitto.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: Size,
    /// AWS IoT Device Shadow.
    pub shadow: Option<ShadowConfig>,
    /// Readings to the cloud too: raw, report by exception or windowed aggregates.
    pub telemetry: Option<TelemetryConfig>,
    /// `[mqtt.commands]`: operator commands (acknowledge, shelve, out of service).
    pub commands: Option<CommandsConfig>,
}

/// `[mqtt.telemetry]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `raw`, `on_change` or `aggregate`.
    #[serde(default)]
    pub mode: TelemetryMode,
    /// `device`: one topic `{prefix}/{gateway}/telemetry`; `sensor`: `{prefix}/{gateway}/telemetry/{sensor}`.
    #[serde(default)]
    pub topic: TopicLayout,
    /// 1 (the cursor advances on PUBACK: nothing lost) or 0 (at most once).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Gzip the JSON payload (metered uplinks; the receiver must gunzip).
    #[serde(default)]
    pub gzip: bool,
    /// Only these sensors (exact ids or a prefix ending in `*`); empty: all.
    #[serde(default)]
    pub sensors: Vec<String>,
    /// on_change: send when the value moved more than this (absolute) since the last sent value.
    pub deadband: Option<f64>,
    /// on_change: … or more than this percentage of the last sent value.
    pub deadband_percent: Option<f64>,
    /// on_change: send anyway after this long (a heartbeat: silence means "no change", not "dead").
    #[serde(default = "default_max_interval")]
    pub max_interval: Dur,
    /// aggregate: window length (windows are aligned to the epoch: 60s windows start at whole minutes).
    #[serde(default = "default_window")]
    pub window: Dur,
    /// A message whose newest reading is older than this is marked `"historical": true` (backlog after an outage).
    #[serde(default = "default_historical")]
    pub historical_after: Dur,
}

/// Telemetry mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TelemetryMode {
    /// Every reading.
    #[default]
    Raw,
    /// Report by exception.
    OnChange,
    /// Windowed aggregates.
    Aggregate,
}

/// Telemetry topic layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TopicLayout {
    /// One topic per gateway; a message carries many sensors.
    #[default]
    Device,
    /// One topic per sensor.
    Sensor,
}

fn default_qos() -> u8 {
    1
}
fn default_max_interval() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_window() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_historical() -> Dur {
    Dur(Duration::from_secs(30))
}

fn default_prefix() -> String {
    "watchpost".into()
}
fn default_keepalive() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_inflight() -> u16 {
    100
}

fn default_max_message_size() -> Size {
    Size(128 * 1024)
}

/// `[mqtt.shadow]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// Thing name.
    pub thing: String,
    /// Named shadow (classic shadow when absent).
    pub name: Option<String>,
    /// Minimum time between updates.
    #[serde(default = "default_shadow_interval")]
    pub min_interval: Dur,
    /// Apply alarm settings from the shadow's `desired` (`alarms.{sensor}.{key}`), kept as an overlay in the data
    /// directory that wins over the file for the keys it sets. Off: `desired` is acknowledged, not applied.
    #[serde(default)]
    pub apply_desired: bool,
}

fn default_shadow_interval() -> Dur {
    Dur(Duration::from_secs(5))
}

/// `[mqtt.commands]`: alarm commands over MQTT on `{prefix}/{gateway}/commands/{verb}` (ISA-18.2 states).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Subscribe and accept commands; alarms then also track acknowledgement.
    #[serde(default)]
    pub enabled: bool,
    /// Longest shelf a command may ask for.
    #[serde(default = "default_max_shelve")]
    pub max_shelve: Dur,
}

fn default_max_shelve() -> Dur {
    Dur(Duration::from_secs(24 * 3600))
}
