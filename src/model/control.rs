//! What reaches the ingest thread and the daemon besides readings, as data: operator commands (answered after commit),
//! audit events, and desired states from the device shadow with their outcome.

use super::Timestamp;

/// What a shelve or unshelve applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// One alarm by id.
    Alert(String),
    /// Every alarm of a sensor (for a shelve: also those raised while shelved).
    Sensor(String),
}

/// An operator command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Acknowledge an active or returned-to-normal alarm.
    Ack {
        /// Alert id.
        id: String,
    },
    /// Shelve until a time.
    Shelve {
        /// Alarm or sensor.
        target: Target,
        /// Expiry.
        until: Timestamp,
    },
    /// Lift a shelf.
    Unshelve {
        /// Alarm or sensor.
        target: Target,
    },
    /// Take a sensor out of service.
    OutOfService {
        /// Sensor id.
        sensor: String,
    },
    /// Return a sensor to service.
    InService {
        /// Sensor id.
        sensor: String,
    },
}

/// A command with who gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command.
    pub cmd: Command,
    /// Who (required: the audit trail names a person or system).
    pub by: String,
    /// Why.
    pub note: Option<String>,
    /// The sender's id for this request (its JSON text): a request id seen before is not executed again, also
    /// across restarts (the engine keeps the most recent ones in its snapshot).
    pub request_id: Option<String>,
}

/// The answer to an operator command: the alert ids it changed, or why it was refused.
pub type CommandResult = Result<Vec<String>, String>;

/// A desired state from the device shadow on its way to the remote-configuration overlay.
#[derive(Debug)]
pub struct RemoteChange {
    /// The `desired` (or delta) state document.
    pub desired: serde_json::Value,
    /// Its shadow version.
    pub version: Option<u64>,
    /// The whole desired document (a get answer): the overlay becomes exactly its `alarms`; otherwise a delta
    /// merged into the overlay.
    pub replace: bool,
}

/// The outcome of a remote change, reported back in the shadow.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteResult {
    /// Whether it took effect.
    pub applied: bool,
    /// The shadow version it answered.
    pub version: Option<u64>,
    /// Why not (the same messages as for the file).
    pub errors: Vec<String>,
    /// The overrides now in force (`reported.alarms`, so the delta clears when they match `desired`).
    pub alarms: serde_json::Value,
}
