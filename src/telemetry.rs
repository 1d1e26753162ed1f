//! Logging setup: human-readable lines or JSON, filtered like `RUST_LOG`. Under systemd (stderr is the journal
//! stream named by `JOURNAL_STREAM`) text lines carry no timestamp of their own and start with a `<N>` syslog
//! priority, so `journalctl -p warning` shows alarms and errors.

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
        LogFormat::Text if stderr_is_journal() => registry
            .with(
                fmt.event_format(Journald(
                    tracing_subscriber::fmt::format()
                        .without_time()
                        .with_target(false)
                        .with_ansi(false),
                )),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt.with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
}

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM=dev:inode` matches stderr).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let v = v.to_string_lossy();
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes into `st`; fd 2 may be closed, which fstat reports as an error.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32-bit ARM has a 32-bit st_ino).
    #[allow(clippy::unnecessary_cast)]
    let same = st.st_dev as u64 == dev && st.st_ino as u64 == ino;
    same
}

/// Prefixes each line with its syslog priority (`<3>` error … `<7>` debug) for the journal.
struct Journald<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Journald<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let p = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{p}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// One log line per alert transition. The level follows the alarm (raise/escalation WARN or ERROR by severity,
/// de-escalation WARN, clear INFO), so `--log-level warn` or `journalctl -p warning` still shows every raise.
pub fn log_alert(a: &crate::model::Alert) {
    use crate::model::{AlertState, Severity};
    let (id, sensor, sev) = (&a.id, &a.sensor, a.severity.as_str());
    // Only what calls for attention is WARN/ERROR: raises, escalations, an active alarm unshelved. Clears and
    // operator actions (acknowledge, shelve), and raises of shelved alarms, are INFO.
    let attention = a.annunciates() || a.state == AlertState::Deescalated;
    match (a.state, a.severity) {
        _ if !attention => {
            tracing::info!(target: "watchpost::alert", alert_id = %id, sensor = %sensor, severity = sev, "{}", a.log_message())
        }
        (_, Severity::Critical) => {
            tracing::error!(target: "watchpost::alert", alert_id = %id, sensor = %sensor, severity = sev, "{}", a.log_message())
        }
        (_, Severity::Warning) => {
            tracing::warn!(target: "watchpost::alert", alert_id = %id, sensor = %sensor, severity = sev, "{}", a.log_message())
        }
    }
}
