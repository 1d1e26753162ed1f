//! `watchpost alarms report`: the alarm KPIs (EEMUA 191 / ISA-18.2) of a period, from the local store.

use crate::config::Config;
use crate::model::kpi::Kpi;
use crate::model::Timestamp;
use crate::store::Store;
use clap::{Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum AlarmsCmd {
    /// The alarm KPIs of a period: annunciated alarms per 10 minutes and per hour, flood time, bad actors,
    /// chattering, standing and stale alarms.
    Report {
        /// The period: from this long ago until now (e.g. `24h`, `7d`, `30d`).
        #[arg(long, default_value = "7d")]
        since: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum ReportFormat {
    /// A table for people.
    Table,
    /// `metric,value` lines.
    Csv,
    /// One JSON document (as published on `{prefix}/{gw}/alarms/kpi`).
    Json,
}

pub(super) fn alarms(cmd: AlarmsCmd, cfg: &Config) -> ExitCode {
    let AlarmsCmd::Report { since, format } = cmd;
    let period = match humantime::parse_duration(since.trim()) {
        Ok(d) if d <= crate::config::Dur::MAX => d,
        Ok(_) => {
            eprintln!("watchpost alarms report: --since: at most 100 years");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("watchpost alarms report: --since: {e} (write e.g. 24h, 7d, 30d)");
            return ExitCode::from(1);
        }
    };
    let store = match Store::open_existing(&cfg.gateway.data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("watchpost alarms report: {e}");
            return ExitCode::from(2);
        }
    };
    let now = Timestamp::now();
    let from = Timestamp(now.0.saturating_sub(period.as_millis() as i64));
    let read = store.kpi_tally(from, now).and_then(|tally| {
        let all = store.events_between(Timestamp(i64::MIN), Timestamp(i64::MAX))?;
        Ok((tally, all))
    });
    let (tally, all) = match read {
        Ok(r) => r,
        Err(e) => {
            eprintln!("watchpost alarms report: {e}");
            return ExitCode::from(2);
        }
    };
    let a = &cfg.alarms;
    let kpi = tally.finish(&Kpi::standing(&all), a.flood_count, a.stale_after.0);
    match format {
        ReportFormat::Table => print!("{}", kpi.table()),
        ReportFormat::Csv => print!("{}", kpi.csv()),
        ReportFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&kpi).unwrap_or_default())
        }
    }
    ExitCode::SUCCESS
}
