//! Command line: `run`, `check-config`, `buffer status|export`, `bench`.
//! Exit codes: 0 ok, 1 bad config or usage, 2 runtime failure.

use crate::config::{self, Config};
use crate::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};

#[cfg(feature = "mqtt")]
mod alerts;
mod buffer;
mod remote;
mod report;
use buffer::{buffer, BufferCmd};
use report::{alarms, AlarmsCmd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `--version`: the release, the git revision it was built from, the target and the compiled-in features.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WATCHPOST_GIT_REV"),
    ", ",
    env!("WATCHPOST_TARGET"),
    ")\nfeatures: ",
    env!("WATCHPOST_FEATURES")
);

#[derive(Parser, Debug)]
#[command(
    name = "watchpost",
    version,
    long_version = LONG_VERSION,
    about = "Edge IoT ingestion gateway: Modbus/I2C sensors → validation and ISA-18.2 alarms → durable buffer → InfluxDB, MQTT (alerts, shadow, telemetry, operator commands), email"
)]
struct Cli {
    /// Config file (default: $WATCHPOST_CONFIG, else /etc/watchpost/watchpost.toml). Given (or in
    /// $WATCHPOST_CONFIG) with no command, runs the daemon; with neither, `watchpost` prints this help.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Default log filter (RUST_LOG overrides it).
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon.
    Run,
    /// Validate a config file: print `ok`, or every problem with file:line:column and key path.
    CheckConfig {
        /// The file to check (default: --config, $WATCHPOST_CONFIG, /etc/watchpost/watchpost.toml).
        path: Option<PathBuf>,
        /// Also list the alarm settings remote changes override (the overlay in the data directory).
        #[arg(long)]
        effective: bool,
        /// Check the file alone, not the secrets, certificates and devices it names (e.g. on a workstation before
        /// deploying it; the unit's ExecStartPre, so that a missing certificate stops one sink, not the buffering).
        #[arg(long)]
        file_only: bool,
    },
    /// Print the config file's JSON Schema (for editors: Taplo / Even Better TOML; see the README).
    Schema,
    /// Remote settings: `config reset-remote` removes overrides set through the device shadow.
    Config {
        #[command(subcommand)]
        cmd: remote::ConfigCmd,
    },
    /// Read sensors once and print decoded values with the raw registers or bytes — for commissioning.
    Read {
        /// Sensor ids (default: all).
        sensors: Vec<String>,
        /// Print JSON (`{"sensor": value}`).
        #[arg(long)]
        json: bool,
    },
    /// Find devices on a bus.
    Scan {
        #[command(subcommand)]
        cmd: ScanCmd,
    },
    /// Inspect the local buffer.
    Buffer {
        #[command(subcommand)]
        cmd: BufferCmd,
    },
    /// Alarm-system performance: `alarms report` prints the alarm KPIs of a period from the local store.
    Alarms {
        #[command(subcommand)]
        cmd: AlarmsCmd,
    },
    /// Watch a gateway's alerts on the broker (the standing ones first, then live), or acknowledge, shelve and
    /// take sensors out of service (`[mqtt.commands]` on the gateway).
    #[cfg(feature = "mqtt")]
    Alerts(Box<alerts::AlertsArgs>),
    /// Measure against live servers (built with `--features bench`).
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    Bench {
        /// Readings to push through.
        #[arg(long, default_value_t = 2_000_000)]
        readings: usize,
        /// Also measure alert latency and backlog drain through a real MQTT broker at this URL.
        #[arg(long)]
        mqtt: Option<String>,
        /// Measure the telemetry drain (raw and aggregate) through a real MQTT broker at this URL.
        #[arg(long)]
        telemetry: Option<String>,
        /// Measure mail latency and a 1,000-alert storm through an SMTP server at this URL (smtp://HOST:PORT, plain).
        #[arg(long)]
        email: Option<String>,
        /// Measure Modbus TCP polling against a device at this URL (tcp://HOST:PORT).
        #[arg(long)]
        modbus: Option<String>,
        /// Measure the backlog drain to an InfluxDB v2 write API at this URL (http://HOST:PORT).
        #[arg(long)]
        influxdb: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ScanCmd {
    /// Which addresses answer on an I2C bus (probed like i2cdetect), with the likely chip.
    #[cfg(feature = "i2c")]
    I2c {
        /// The bus device, e.g. /dev/i2c-1.
        #[arg(long)]
        bus: String,
    },
    /// Which Modbus units answer, with the registers shown in every decoding.
    #[cfg(feature = "modbus")]
    Modbus {
        /// tcp://HOST:PORT or rtu:///dev/ttyUSB0?baud=9600&parity=N
        #[arg(long)]
        url: String,
        /// Unit ids, e.g. `1-247` or `1,2,5-9`.
        #[arg(long, default_value = "1-247")]
        units: String,
        /// Table: holding, input, coil, discrete.
        #[arg(long, default_value = "holding", value_parser = ["holding", "input", "coil", "discrete"])]
        table: String,
        /// First (0-based) address.
        #[arg(long, default_value_t = 0)]
        address: u16,
        /// Registers to read.
        #[arg(long, default_value_t = 4)]
        count: u16,
        /// Per-unit timeout.
        #[arg(long, default_value = "300ms")]
        timeout: String,
    },
}

/// The command-line definition, for generated shell completions and the man page (`tests/generated.rs`).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    crate::memory::tune();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if !matches!(cli.cmd, Some(Cmd::Run) | None) {
        // A command's output piped into `head` or `less` that closes early ends the command quietly, as any Unix
        // tool does, instead of a panic on the broken pipe. (The daemon keeps Rust's default: a closed log pipe
        // is an error there, not a reason to die.)
        // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.cmd {
        Some(Cmd::Schema) => {
            print!("{}", include_str!("../../docs/config.schema.json"));
            ExitCode::SUCCESS
        }
        Some(Cmd::Config { cmd }) => {
            let Some(cfg) = load_or_exit(cli.config.as_deref()) else {
                return ExitCode::from(1);
            };
            remote::run(&cfg, cmd)
        }
        Some(Cmd::CheckConfig {
            path,
            effective,
            file_only,
        }) => {
            let path = config_path(path.or(cli.config).as_deref());
            match config::load(&path) {
                Ok(cfg) => {
                    let files = if file_only {
                        Vec::new()
                    } else {
                        config::unreadable_files(&cfg)
                    };
                    let (errors, warnings): (Vec<_>, Vec<_>) =
                        files.into_iter().partition(|f| f.error);
                    for f in &warnings {
                        eprintln!("warning: {}: {}: cannot read {}: {} (as this user; the service user may read it — if not, what needs it will not start)", path.display(), f.key, f.path.display(), f.why);
                    }
                    for f in &errors {
                        eprintln!(
                            "{}: {}: cannot read {}: {}: what needs it cannot start",
                            path.display(),
                            f.key,
                            f.path.display(),
                            f.why
                        );
                    }
                    if !errors.is_empty() {
                        eprintln!("{} problem(s) found in {}", errors.len(), path.display());
                        return ExitCode::from(1);
                    }
                    match warnings.len() {
                        0 => println!("ok"),
                        1 => println!("ok, with 1 warning"),
                        n => println!("ok, with {n} warnings"),
                    }
                    if effective {
                        remote::print_effective(&cfg);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("{} problem(s) found in {}", e.0.len(), path.display());
                    ExitCode::from(1)
                }
            }
        }
        #[cfg(feature = "bench")]
        Some(Cmd::Bench {
            readings,
            mqtt,
            modbus,
            influxdb,
            email,
            telemetry: telemetry_url,
        }) => {
            telemetry::init(cli.log_format, "warn");
            #[cfg(feature = "mqtt")]
            if let Some(url) = telemetry_url {
                return bench_exit(crate::bench::run_telemetry(&url, 1_000_000));
            }
            #[cfg(not(feature = "mqtt"))]
            let _ = telemetry_url;
            #[cfg(feature = "email")]
            if let Some(url) = email {
                return bench_exit(crate::bench::run_email(&url));
            }
            #[cfg(not(feature = "email"))]
            let _ = email;
            #[cfg(feature = "influxdb")]
            if let Some(url) = influxdb {
                return bench_exit(crate::bench::run_influx(&url, 1_000_000));
            }
            #[cfg(not(feature = "influxdb"))]
            let _ = influxdb;
            #[cfg(feature = "modbus")]
            if let Some(url) = modbus {
                return bench_exit(crate::bench::run_modbus(&url));
            }
            #[cfg(not(feature = "modbus"))]
            let _ = modbus;
            #[cfg(feature = "mqtt")]
            if let Some(url) = mqtt {
                return bench_exit(crate::bench::run_mqtt(&url, 100_000));
            }
            #[cfg(not(feature = "mqtt"))]
            let _ = mqtt;
            bench_exit(crate::bench::run(readings))
        }
        #[cfg(feature = "mqtt")]
        Some(Cmd::Alerts(args)) => alerts::run(*args, cli.config.as_deref()),
        Some(Cmd::Read { sensors, json }) => {
            let Some(cfg) = load_or_exit(cli.config.as_deref()) else {
                return ExitCode::from(1);
            };
            crate::commission::read(&cfg, &sensors, json)
        }
        Some(Cmd::Scan { cmd }) => match cmd {
            #[cfg(feature = "i2c")]
            ScanCmd::I2c { bus } => crate::commission::scan_i2c(&bus),
            #[cfg(feature = "modbus")]
            ScanCmd::Modbus {
                url,
                units,
                table,
                address,
                count,
                timeout,
            } => crate::commission::scan_modbus(&url, &units, &table, address, count, &timeout),
        },
        Some(Cmd::Buffer { cmd }) => {
            let Some(cfg) = load_or_exit(cli.config.as_deref()) else {
                return ExitCode::from(1);
            };
            buffer(cmd, &cfg)
        }
        Some(Cmd::Alarms { cmd }) => {
            let Some(cfg) = load_or_exit(cli.config.as_deref()) else {
                return ExitCode::from(1);
            };
            alarms(cmd, &cfg)
        }
        None if cli.config.is_none() && std::env::var_os("WATCHPOST_CONFIG").is_none() => {
            // A bare `watchpost` (often `sudo watchpost`, looking for help) must not start a daemon as root on
            // the default config.
            let _ = command().print_help();
            eprintln!("\n(to run the daemon: watchpost run [--config PATH])");
            ExitCode::from(1)
        }
        Some(Cmd::Run) | None => {
            let path = config_path(cli.config.as_deref());
            telemetry::init(cli.log_format, &cli.log_level);
            let Some(cfg) = load_or_exit(Some(&path)) else {
                return ExitCode::from(1);
            };
            run_daemon(path, cfg)
        }
    }
}

#[cfg(feature = "bench")]
fn bench_exit(r: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::from(2)
        }
    }
}

/// The config file: `--config`, else `WATCHPOST_CONFIG`, else the packaged `/etc/watchpost/watchpost.toml`.
pub(crate) fn config_path(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WATCHPOST_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Where the Debian package installs the config.
const DEFAULT_CONFIG: &str = "/etc/watchpost/watchpost.toml";

fn load_or_exit(path: Option<&Path>) -> Option<Config> {
    let path = &config_path(path);
    match config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn run_daemon(path: PathBuf, cfg: Config) -> ExitCode {
    // One async thread is plenty on a 1–4 core gateway: nothing blocks it (the store writer has its own thread,
    // sink store reads run on the blocking pool, which keeps at most four threads).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("watchpost: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let (reload_tx, reload_rx) = mpsc::channel(4);
        tokio::spawn(signals(path, shutdown.clone(), reload_tx));
        crate::app::run(cfg, shutdown, reload_rx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "watchpost failed.");
            eprintln!("watchpost: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// SIGTERM/SIGINT: orderly shutdown; a second one (more than a second later) exits at once. SIGHUP: reload the
/// config file.
async fn signals(path: PathBuf, shutdown: CancellationToken, reload: mpsc::Sender<Config>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("Cannot install signal handlers.");
        return;
    };
    let mut first_stop: Option<std::time::Instant> = None;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration.");
                match config::load(&path) {
                    Ok(c) => { let _ = reload.send(c).await; }
                    Err(errs) => {
                        for e in &errs.0 {
                            tracing::error!("{e}");
                        }
                        tracing::error!(problems = errs.0.len(), "The new configuration is invalid; keeping the old one.");
                    }
                }
                continue;
            }
        };
        if let Some(first) = first_stop {
            // `timeout -s TERM … runuser … watchpost run` delivers the same request twice (the wrapper forwards
            // what the process group already got): within a second it is one request, not an impatient second.
            if first.elapsed() < std::time::Duration::from_secs(1) {
                tracing::info!(
                    signal = name,
                    "The same stop request again (forwarded); still shutting down in order."
                );
                continue;
            }
            tracing::warn!(signal = name, "Second signal: exiting at once.");
            std::process::exit(2);
        }
        tracing::info!(signal = name, "Shutting down.");
        first_stop = Some(std::time::Instant::now());
        shutdown.cancel();
    }
}
