//! `watchpost buffer status|export`: what the local store holds, and its readings written out.

use crate::config::Config;
use crate::model::Timestamp;
use crate::store::Store;
use clap::{Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum BufferCmd {
    /// Size, backlog per sink, oldest undelivered age, drops.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export stored readings.
    Export {
        /// Only readings newer than this (e.g. `1h`, `2d`).
        #[arg(long)]
        since: Option<String>,
        /// Only this sensor.
        #[arg(long)]
        sensor: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "lp")]
        format: ExportFormat,
        /// Line-protocol timestamp precision (default: `[influxdb] precision`, else ms).
        #[arg(long, value_parser = ["s", "ms", "us", "ns"])]
        precision: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum ExportFormat {
    /// InfluxDB line protocol.
    Lp,
    /// CSV: ts,sensor,value,quality.
    Csv,
}

pub(super) fn buffer(cmd: BufferCmd, cfg: &Config) -> ExitCode {
    let mut store = match Store::open_existing(&cfg.gateway.data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("watchpost buffer: {e}");
            return ExitCode::from(2);
        }
    };
    let now = Timestamp::now();
    match cmd {
        BufferCmd::Status { json } => {
            let st = match store.status(&crate::sink::consumers(cfg), now) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("watchpost buffer status: {e}");
                    return ExitCode::from(2);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            println!("store:            {}", st.path.display());
            println!(
                "size on disk:     {} ({} in use)",
                bytesize::ByteSize(st.file_bytes),
                bytesize::ByteSize(st.used_bytes)
            );
            println!(
                "readings held:    {} in {} batches",
                st.readings, st.batches
            );
            if st.readings > 0 {
                println!(
                    "bytes/reading:    {:.2}",
                    st.used_bytes as f64 / st.readings as f64
                );
            }
            println!(
                "oldest reading:   {}",
                st.oldest_reading.as_deref().unwrap_or("-")
            );
            println!(
                "newest reading:   {}",
                st.newest_reading.as_deref().unwrap_or("-")
            );
            println!("alert events:     {}", st.events);
            println!("dropped (cap):    {}", st.dropped_readings);
            if st.corrupt_batches > 0 {
                println!(
                    "corrupt batches:  {} (skipped; see the log)",
                    st.corrupt_batches
                );
            }
            if st.sinks.is_empty() {
                println!("sinks:            none configured (data stays local; see `watchpost buffer export`)");
            }
            for s in &st.sinks {
                println!(
                    "sink {:<10}  {:<8} pending {:>10}  oldest {:>10}  dead letters {}",
                    s.sink,
                    s.stream,
                    s.pending,
                    s.oldest_age_s
                        .map(|a| format!("{a:.0}s"))
                        .unwrap_or_else(|| "-".into()),
                    s.dead_letters
                );
                if let Some(state) = &s.state {
                    println!("     {:<10}  state: {state}", "");
                }
            }
            if let Ok(lines) = super::remote::overrides(cfg) {
                if !lines.is_empty() {
                    println!("remote overrides: {} (they win over the file)", lines.len());
                    for l in lines {
                        println!("     {l}");
                    }
                }
            }
            ExitCode::SUCCESS
        }
        BufferCmd::Export {
            since,
            sensor,
            format,
            precision,
        } => {
            let since_ts = match since.as_deref().map(humantime::parse_duration) {
                None => Timestamp(i64::MIN),
                Some(Ok(d)) => Timestamp(
                    now.0
                        .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                ),
                Some(Err(e)) => {
                    eprintln!("watchpost buffer export: --since: {e} (write e.g. 30m, 2h, 7d)");
                    return ExitCode::from(1);
                }
            };
            if let Some(id) = sensor.as_deref() {
                if !store.knows_sensor(id) && !cfg.sensor.iter().any(|s| s.id == id) {
                    eprintln!(
                        "watchpost buffer export: no sensor {id:?} in the config or the store"
                    );
                    return ExitCode::from(1);
                }
            }
            match export(
                &mut store,
                cfg,
                since_ts,
                sensor.as_deref(),
                format,
                precision.as_deref(),
            ) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("watchpost buffer export: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Write stored readings to stdout: line protocol exactly as the InfluxDB sink sends it (so a gap can be
/// back-filled with `influx write`), or CSV. A write error (a full disk, a closed pipe) fails the command.
fn export(
    store: &mut Store,
    cfg: &Config,
    since: Timestamp,
    sensor: Option<&str>,
    format: ExportFormat,
    precision: Option<&str>,
) -> Result<u64, String> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut enc = crate::sink::lineproto::Encoder::from_config(cfg, precision);
    let header = match format {
        ExportFormat::Lp => {
            let p = precision
                .or(cfg.influxdb.as_ref().map(|i| i.precision.as_str()))
                .unwrap_or("ms");
            format!("# watchpost export, precision={p} (influx write --precision {p})\n")
        }
        ExportFormat::Csv => "ts,sensor,value,quality\n".to_string(),
    };
    out.write_all(header.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let mut failed: Option<std::io::Error> = None;
    let n = store
        .export(since, sensor, |r| {
            if failed.is_some() {
                return;
            }
            line.clear();
            match format {
                ExportFormat::Lp => enc.line(&mut line, r),
                ExportFormat::Csv => {
                    let s = if r.sensor.contains([',', '"', '\n', '\r']) {
                        format!("\"{}\"", r.sensor.replace('"', "\"\""))
                    } else {
                        r.sensor.to_string()
                    };
                    // An exact value as it is: an integer digit for digit, text quoted.
                    let value = match &r.exact {
                        Some(crate::model::Exact::Int(i)) => i.to_string(),
                        Some(crate::model::Exact::UInt(u)) => u.to_string(),
                        Some(crate::model::Exact::Text(t)) => {
                            format!("\"{}\"", t.replace('"', "\"\""))
                        }
                        None => r.value.to_string(),
                    };
                    line = format!(
                        "{},{},{},{}\n",
                        r.ts.rfc3339(),
                        s,
                        value,
                        r.quality.as_str()
                    );
                }
            }
            if let Err(e) = out.write_all(line.as_bytes()) {
                failed = Some(e);
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(format!("cannot write the output: {e}"));
    }
    out.flush()
        .map_err(|e| format!("cannot write the output: {e}"))?;
    Ok(n)
}
