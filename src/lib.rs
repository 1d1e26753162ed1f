//! watchpost: an edge IoT ingestion gateway.
//!
//! Sources read sensors, the pure [`pipeline`] validates readings and evaluates alarms, the [`store`] keeps
//! everything durably, and [`sink`]s deliver from the store, each at its own pace. [`app::run`] is the daemon;
//! `src/main.rs` only parses the command line.
#![deny(missing_docs)]

pub mod app;
#[cfg(feature = "bench")]
pub mod bench;
pub mod channels;
pub mod cli;
pub mod commission;
pub mod config;
pub mod formula;
#[cfg(all(feature = "modbus", feature = "mqtt"))]
pub mod fuzz;
pub mod ingest;
pub mod lineproto;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod remote;
pub mod sink;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod util;

pub use app::run;

/// Install ring as the process-wide rustls crypto provider (one TLS stack, one provider). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
