//! Alerts: the transition events of alarms (threshold, fault, offline, overflow, out of service), the operator's
//! side of them (ISA-18.2) and the audit events of remote changes — what is stored, published and mailed.

use super::{opt_rfc3339, rfc3339, Timestamp};
use serde::{Deserialize, Serialize};

/// Alert class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertType {
    /// A threshold alarm.
    Alert,
    /// The sensor delivered implausible values (NaN, out of range, stuck).
    SensorFault,
    /// No good reading for `stale_after`.
    SensorOffline,
    /// The local buffer hit its size cap and dropped the oldest readings.
    BufferOverflow,
    /// A sensor taken out of service for maintenance (`raised` when taken out, `cleared` when back): its alarms
    /// are not evaluated meanwhile.
    OutOfService,
    /// Audit: a remote change of alarm settings (device shadow `desired`), `applied` or `rejected`.
    ConfigChange,
    /// A rate-of-change alarm (`rate = { … }`): the value rose or fell too fast.
    RateOfChange,
    /// A deviation alarm (`deviation = { … }`): the sensor and its reference disagree.
    Deviation,
    /// The sensor's alarms are suppressed by design while its `enabled_when` condition is false (`raised` when
    /// suppression starts, `cleared` when it ends).
    SuppressedByState,
    /// The sensor's alarms chatter: raised `chatter_count` times within `chatter_window`.
    Chattering,
    /// Gateway-wide: more than `flood_count` alarms annunciated within `flood_window`.
    AlarmFlood,
    /// A sink skipped an item it can never carry (e.g. larger than the broker takes): `rejected`, with the sink,
    /// the item and why in `reason`. The item stays in the store (`watchpost buffer status` counts dead letters).
    DeadLetter,
}

impl AlertType {
    /// The wire name (`ALERT`, `SENSOR_FAULT`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Alert => "ALERT",
            AlertType::SensorFault => "SENSOR_FAULT",
            AlertType::SensorOffline => "SENSOR_OFFLINE",
            AlertType::BufferOverflow => "BUFFER_OVERFLOW",
            AlertType::OutOfService => "OUT_OF_SERVICE",
            AlertType::ConfigChange => "CONFIG_CHANGE",
            AlertType::DeadLetter => "DEAD_LETTER",
            AlertType::RateOfChange => "RATE_OF_CHANGE",
            AlertType::Deviation => "DEVIATION",
            AlertType::SuppressedByState => "SUPPRESSED_BY_STATE",
            AlertType::Chattering => "CHATTERING",
            AlertType::AlarmFlood => "ALARM_FLOOD",
        }
    }
}

/// Transition kind of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Newly active.
    Raised,
    /// WARNING became CRITICAL.
    Escalated,
    /// CRITICAL became WARNING.
    Deescalated,
    /// No longer active.
    Cleared,
    /// An operator acknowledged the alarm (`active` says whether it is still in alarm).
    Acknowledged,
    /// An operator shelved the alarm until `shelved_until`: it is not annunciated meanwhile.
    Shelved,
    /// The shelf ended (by command or expiry); an alarm still active is annunciated again.
    Unshelved,
    /// Audit (CONFIG_CHANGE): a remote change took effect.
    Applied,
    /// Audit (CONFIG_CHANGE): a remote change was refused; nothing changed.
    Rejected,
}

impl AlertState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Escalated => "escalated",
            AlertState::Deescalated => "deescalated",
            AlertState::Cleared => "cleared",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Shelved => "shelved",
            AlertState::Unshelved => "unshelved",
            AlertState::Applied => "applied",
            AlertState::Rejected => "rejected",
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

impl Severity {
    /// `WARNING` or `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Alarm priority (ISA-18.2 §10): how soon an operator must respond. Carried by every alarm event; during an
/// alarm flood, `low` alarms are recorded but not annunciated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Respond when convenient.
    Low,
    /// Respond soon.
    Medium,
    /// Respond promptly.
    High,
    /// Respond immediately.
    Urgent,
}

impl Priority {
    /// `low`, `medium`, `high`, `urgent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// The default of an alarm without a configured priority: WARNING → medium, CRITICAL → high.
    pub fn of(severity: Severity) -> Priority {
        match severity {
            Severity::Warning => Priority::Medium,
            Severity::Critical => Priority::High,
        }
    }
}

/// Which side of the normal band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Above a high limit.
    High,
    /// Below a low limit.
    Low,
}

/// An alert transition: the payload published on MQTT, mailed and stored (design.md §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Class of alert.
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// `{device}:{sensor}:{n}`: stable from raise to clear.
    pub id: String,
    /// Transition.
    pub state: AlertState,
    /// Severity after the transition (for `cleared`, the severity that was active).
    pub severity: Severity,
    /// Sensor id (`_gateway` for gateway-wide alerts).
    pub sensor: String,
    /// Gateway id.
    pub device: String,
    /// Gateway location.
    pub location: String,
    /// The value that caused the transition.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<f64>,
    /// Engineering unit of the sensor.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unit: Option<String>,
    /// The limit involved.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub threshold: Option<f64>,
    /// `high` or `low`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub direction: Option<Direction>,
    /// When the transition happened (sample time); RFC 3339 on the wire.
    #[serde(with = "rfc3339")]
    pub ts: Timestamp,
    /// When the alert was first raised; RFC 3339 on the wire.
    #[serde(with = "rfc3339")]
    pub since: Timestamp,
    /// Human-readable cause for faults, offline and overflow alerts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Operator state (ISA-18.2): present when alarm commands are enabled.
    #[serde(flatten, default)]
    pub operator: Operator,
}

/// The operator side of an alert (ISA-18.2): acknowledgement, shelving and who did it. Every field is absent
/// unless alarm commands are enabled (`[mqtt.commands]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    /// Whether the alarm has been acknowledged. A `cleared` event with `acked: false` leaves the alarm standing
    /// (returned to normal, unacknowledged) until it is acknowledged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acked: Option<bool>,
    /// Shelved (not annunciated) until then; RFC 3339 on the wire.
    #[serde(skip_serializing_if = "Option::is_none", default, with = "opt_rfc3339")]
    pub shelved_until: Option<Timestamp>,
    /// For operator events: whether the alarm condition is still active.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub active: Option<bool>,
    /// Who gave the command.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub by: Option<String>,
    /// The operator's note.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    /// CONFIG_CHANGE: `{"version", "client_token", "changes": [{"key","old","new"}], "errors": […]}`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<serde_json::Value>,
    /// The alarm's priority (every sensor alarm and ALARM_FLOOD carry one).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub priority: Option<super::Priority>,
    /// Recorded but not annunciated: a low-priority alarm raised during an alarm flood.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub held: bool,
    /// This transition comes from state-based suppression (the sensor's `enabled_when` turned false).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub suppressed_by_state: bool,
}

impl Alert {
    /// Whether this is an alarm of a sensor's process value (threshold, rate of change, deviation): what floods,
    /// chatters and counts in the alarm KPIs.
    pub fn is_process_alarm(&self) -> bool {
        matches!(
            self.kind,
            AlertType::Alert | AlertType::RateOfChange | AlertType::Deviation
        )
    }
}

impl Alert {
    /// Whether this is a gateway audit event (CONFIG_CHANGE, DEAD_LETTER): the events feed and the store only,
    /// never a retained alarm topic or a mail.
    pub fn is_audit(&self) -> bool {
        matches!(self.kind, AlertType::ConfigChange | AlertType::DeadLetter)
    }

    /// Whether the alarm stays on its retained topic after this event: active alarms do, and so does an alarm that
    /// returned to normal unacknowledged; a clear of an acknowledged alarm (or any clear without acknowledgement
    /// tracking) and the acknowledgement of a returned alarm remove it.
    pub fn standing(&self) -> bool {
        match self.state {
            AlertState::Cleared => self.operator.acked == Some(false),
            AlertState::Acknowledged => self.operator.active != Some(false),
            AlertState::Applied | AlertState::Rejected => false,
            _ => true,
        }
    }

    /// Whether this event should reach a person now: raises and escalations of unshelved alarms not held by a
    /// flood, and an alarm still active when its shelf ends. SUPPRESSED_BY_STATE records never do.
    pub fn annunciates(&self) -> bool {
        // Designed suppression is a state to see, not an alarm to act on.
        if self.kind == AlertType::SuppressedByState {
            return false;
        }
        match self.state {
            AlertState::Raised | AlertState::Escalated => {
                self.operator.shelved_until.is_none() && !self.operator.held
            }
            AlertState::Unshelved => self.operator.active == Some(true),
            _ => false,
        }
    }
}

impl Alert {
    /// One-line summary for the `alerts` viewer.
    pub fn summary(&self) -> String {
        format!(
            "{} {} {} sensor={}{} id={} ts={}",
            self.severity.as_str(),
            self.kind.as_str(),
            self.state.as_str(),
            self.sensor,
            self.details(),
            self.id,
            self.ts
        )
    }

    /// The journal line's message: what happened and the details; the alarm's id, sensor and severity are the
    /// line's fields (not repeated in the text).
    pub fn log_message(&self) -> String {
        let mut s = String::with_capacity(96);
        s.push_str(self.kind.as_str());
        s.push(' ');
        s.push_str(self.state.as_str());
        self.write_details(&mut s);
        s
    }

    /// ` value=… threshold=… reason=…`: what the event says beyond its class and identity.
    fn details(&self) -> String {
        let mut s = String::new();
        self.write_details(&mut s);
        s
    }

    /// [`Alert::details`] written into `s` (one string for a log line, not one per part).
    fn write_details(&self, s: &mut String) {
        use std::fmt::Write;
        if let Some(v) = self.value {
            let _ = write!(s, " value={v}");
            if let Some(u) = &self.unit {
                s.push_str(u);
            }
        }
        if let (Some(t), Some(d)) = (self.threshold, self.direction) {
            let d = match d {
                Direction::High => "high",
                Direction::Low => "low",
            };
            let _ = write!(s, " threshold={t} ({d})");
        }
        if let Some(r) = &self.reason {
            let _ = write!(s, " reason=\"{r}\"");
        }
        if let Some(u) = self.operator.shelved_until {
            let _ = write!(s, " shelved_until={u}");
        }
        if self.operator.acked == Some(false) && self.state == AlertState::Cleared {
            s.push_str(" unacknowledged");
        }
        if let Some(b) = &self.operator.by {
            let _ = write!(s, " by=\"{b}\"");
        }
        if let Some(n) = &self.operator.note {
            let _ = write!(s, " note=\"{n}\"");
        }
    }
}

/// An active alarm in compact form (device shadow, status).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    /// Alert id.
    pub id: String,
    /// Class.
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Sensor id.
    pub sensor: String,
    /// Current severity.
    pub severity: Severity,
    /// `high`/`low` for threshold alarms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Raised at (RFC 3339 in JSON; kept as a time, not text: the live state lists every active alarm with each
    /// commit, and formatting each one's dates there was a third of that list's cost at 2,000 sensors).
    #[serde(with = "rfc3339")]
    pub since: Timestamp,
    /// Acknowledged (present when alarm commands are enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<bool>,
    /// Shelved until (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_rfc3339")]
    pub shelved_until: Option<Timestamp>,
    /// Returned to normal but not yet acknowledged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub returned: bool,
    /// The alarm's priority.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub priority: Option<Priority>,
    /// Active longer than `[alarms] stale_after` (a standing alarm nobody resolves).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub stale: bool,
}
