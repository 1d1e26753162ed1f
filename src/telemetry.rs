//! Logging setup: human-readable lines (journald adds its own timestamps) or JSON, filtered like `RUST_LOG`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Initialise the global subscriber. `RUST_LOG` (`info`, `watchpost=debug,rumqttc=warn`, …: a level per target)
/// wins over `default_level`. A `RUST_LOG` that does not parse is reported and the default is used.
pub fn init(format: LogFormat, default_level: &str) {
    let default = || default_level.parse::<Targets>().unwrap_or_default();
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => v.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("watchpost: RUST_LOG={v:?} is not a filter ({e}); using {default_level:?}");
            default()
        }),
        _ => default(),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry.with(fmt.with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
}
