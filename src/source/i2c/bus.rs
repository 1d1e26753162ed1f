//! The bus a thread owns: Linux i2c-dev or the register-map simulation, behind one `embedded_hal::i2c::I2c`, with
//! a recorder of the bytes read (for `watchpost read`'s raw column) and a clock per transfer (a wedged bus is
//! reported). Drivers get [`Dev`] handles: `embedded-hal-bus`'s `RcDevice` over the one bus.

pub use super::error::{BusError, OpenError};
use super::sim::SimBus;
use embedded_hal::i2c::{ErrorType, I2c, Operation, SevenBitAddress};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where transfers go.
pub enum Backend {
    /// `/dev/i2c-N`.
    #[cfg(target_os = "linux")]
    Linux(linux_embedded_hal::I2cdev),
    /// The register-map simulation.
    Sim(SimBus),
}

/// The bus with its recorder.
pub struct Bus {
    backend: Backend,
    /// Bytes read since the last [`Bus::take_raw`].
    raw: Vec<u8>,
    /// Start of the transfer in progress (ms since the bus opened, 0 when idle): the supervisor's wedge check.
    pub busy_since: Arc<AtomicU64>,
    opened: std::time::Instant,
}

impl Bus {
    /// Open `device` (`/dev/i2c-N`), or a simulation when `sim` is given.
    pub fn open(device: &str, sim: Option<SimBus>) -> Result<Bus, OpenError> {
        let backend = match sim {
            Some(s) => Backend::Sim(s),
            None => {
                #[cfg(target_os = "linux")]
                {
                    if !std::path::Path::new(device).exists() {
                        return Err(OpenError::Missing(device.to_string()));
                    }
                    Backend::Linux(linux_embedded_hal::I2cdev::new(device).map_err(|e| {
                        OpenError::Refused {
                            device: device.to_string(),
                            reason: e.to_string(),
                        }
                    })?)
                }
                #[cfg(not(target_os = "linux"))]
                return Err(OpenError::NotLinux(device.to_string()));
            }
        };
        Ok(Bus {
            backend,
            raw: Vec::new(),
            busy_since: Arc::default(),
            opened: std::time::Instant::now(),
        })
    }
    /// Measure `busy_since` from `t` (the supervisor's clock).
    pub fn set_epoch(&mut self, t: std::time::Instant) {
        self.opened = t;
    }
    /// The bytes read since the last call.
    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
    }
    /// The simulation, if this is one.
    pub fn sim(&mut self) -> Option<&mut SimBus> {
        match &mut self.backend {
            Backend::Sim(s) => Some(s),
            #[cfg(target_os = "linux")]
            Backend::Linux(_) => None,
        }
    }
}

impl ErrorType for Bus {
    type Error = BusError;
}

impl I2c for Bus {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        let t = self.opened.elapsed().as_millis() as u64;
        self.busy_since.store(t.max(1), Ordering::Relaxed);
        let r = match &mut self.backend {
            #[cfg(target_os = "linux")]
            Backend::Linux(d) => d.transaction(address, operations).map_err(|e| {
                use embedded_hal::i2c::Error;
                BusError {
                    kind: e.kind(),
                    text: linux_error_text(&e.to_string(), address),
                }
            }),
            Backend::Sim(s) => s.transaction(address, operations),
        };
        self.busy_since.store(0, Ordering::Relaxed);
        if r.is_ok() {
            for op in operations.iter() {
                if let Operation::Read(buf) = op {
                    self.raw.extend_from_slice(buf);
                }
            }
        }
        r
    }
}

/// The OS's words, and what to do when they are not enough: EBUSY on `I2C_SLAVE` means a kernel driver has bound
/// the address (an RTC or a sensor overlay), and i2c-dev may not talk to it.
pub fn linux_error_text(text: &str, address: u8) -> String {
    if text.contains("os error 16") {
        format!(
            "{text}: a kernel driver holds address 0x{address:02x} (`ls -l /sys/bus/i2c/devices/*-00{address:02x}/driver` \
             names it); unbind it, or remove the device-tree overlay that loads it"
        )
    } else {
        text.to_string()
    }
}

/// A driver's handle on the shared bus.
pub type Dev = embedded_hal_bus::i2c::RcDevice<Bus>;

/// A new handle on `bus`.
pub fn dev(bus: &Rc<RefCell<Bus>>) -> Dev {
    embedded_hal_bus::i2c::RcDevice::new(Rc::clone(bus))
}
