//! `[sparkplug]`: the gateway as a Sparkplug B 3.0 edge node on its own MQTT session.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[sparkplug]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SparkplugConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (the SCADA broker; may differ from `[mqtt]`'s).
    pub url: String,
    /// The Sparkplug group id.
    pub group_id: String,
    /// The edge node id (default: the gateway id).
    pub edge_node_id: Option<String>,
    /// MQTT client id (default: `<edge_node_id>-spb`).
    pub client_id: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Password inline (prefer `password_file`). Env: `WATCHPOST__SPARKPLUG__PASSWORD`.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// Password from a file.
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) for `mqtts://` (default: the system's trust store).
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: super::Dur,
    /// Report by exception: a reading goes out when it moved more than this from the last one sent (absolute).
    /// Neither this nor `deadband_percent`: every reading goes out.
    pub deadband: Option<f64>,
    /// Report by exception: moved more than this percentage of the last value sent.
    pub deadband_percent: Option<f64>,
    /// With a deadband: a sensor goes out at least this often, changed or not.
    #[serde(default = "default_max_interval")]
    pub max_interval: super::Dur,
    /// The primary host application's id: births and data wait until its retained `spBv1.0/STATE/{id}` says
    /// `online`, and data waits in the store again while it says it is offline.
    pub primary_host: Option<String>,
}

fn default_max_interval() -> super::Dur {
    super::Dur(std::time::Duration::from_secs(300))
}

fn default_keep_alive() -> super::Dur {
    super::Dur(std::time::Duration::from_secs(30))
}

impl SparkplugConfig {
    /// The edge node id in force.
    pub fn node_id<'a>(&'a self, gateway: &'a str) -> &'a str {
        self.edge_node_id.as_deref().unwrap_or(gateway)
    }
}

/// Why a Sparkplug id cannot be used: the spec's topic tokens exclude `/`, `+`, `#` and must not be empty.
pub fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("must not be empty")
    } else if id.contains(['/', '+', '#']) {
        Some("must not contain '/', '+' or '#' (it is an MQTT topic level)")
    } else {
        None
    }
}
