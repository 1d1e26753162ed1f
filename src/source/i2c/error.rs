//! The bus error both the real bus and the simulation return (a leaf: `bus` names the simulation, the simulation
//! names only this).

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};

/// A bus error, by kind (what the fault handling needs) and with the OS text.
#[derive(Debug, Clone, PartialEq)]
pub struct BusError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The OS or simulation message.
    pub text: String,
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::NoAcknowledge(_) => write!(f, "no acknowledge (NACK): {}", self.text),
            ErrorKind::ArbitrationLoss => write!(f, "arbitration lost: {}", self.text),
            ErrorKind::Bus => write!(f, "bus error: {}", self.text),
            _ => write!(f, "{}", self.text),
        }
    }
}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl BusError {
    /// A NACK on the address.
    pub fn nack() -> BusError {
        BusError {
            kind: ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            text: "the device did not answer".into(),
        }
    }
}

/// Why a bus device cannot be opened, and what to check.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such device node.
    #[error("{0} does not exist (is the I2C bus enabled, e.g. dtparam=i2c_arm=on, and is the i2c-dev module loaded?)")]
    Missing(String),
    /// The node exists but cannot be opened.
    #[error("cannot open {device}: {reason} (is the service user in the i2c group?)")]
    Refused {
        /// The device node.
        device: String,
        /// The OS's words.
        reason: String,
    },
    /// Not a Linux build.
    #[error("{0}: I2C devices are only supported on Linux")]
    NotLinux(String),
}
