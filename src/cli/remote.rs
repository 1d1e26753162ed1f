//! `check-config --effective` and `config reset-remote`: what the remote alarm settings overlay changes, and
//! removing it.

use crate::config::overlay::{overlay_path, Overlay};
use crate::config::Config;
use clap::Subcommand;
use std::process::ExitCode;

/// `watchpost config …`
#[derive(Debug, Subcommand)]
pub(super) enum ConfigCmd {
    /// Remove remote alarm settings (all, or one sensor's, or one key); then reload the daemon
    /// (`systemctl reload watchpost`). Clear the shadow's `desired` too, or it sets them again.
    ResetRemote {
        /// Only this sensor.
        #[arg(long)]
        sensor: Option<String>,
        /// Only this key (with --sensor), e.g. warning or delay.
        #[arg(long, requires = "sensor")]
        key: Option<String>,
    },
}

/// Lines naming every overridden key: `sensor.key = remote (remote, shadow version N; file: value)`.
pub(super) fn overrides(cfg: &Config) -> Result<Vec<String>, String> {
    let o = Overlay::load(&cfg.gateway.data_dir).map_err(|e| e.to_string())?;
    let on = crate::remote::enabled(cfg);
    // What the daemon leaves out (an override the file's checks refuse now) is not in force.
    let (_, _, left_out) = o.apply_each(cfg);
    Ok(o.changes(cfg)
        .into_iter()
        .map(|(s, k, file, remote)| {
            let version = o
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into());
            let state = if !on {
                " — not applied: apply_desired is off"
            } else if left_out.contains(&s) {
                " — left out: it no longer fits the file's configuration"
            } else {
                ""
            };
            format!("{s}.{k} = {remote} (remote, shadow version {version}; file: {file}){state}")
        })
        .collect())
}

/// Print the effective overrides after `ok` (check-config --effective).
pub(super) fn print_effective(cfg: &Config) {
    match overrides(cfg) {
        Ok(lines) if lines.is_empty() => {
            println!("no remote overrides: every alarm setting comes from the file")
        }
        Ok(lines) => {
            println!("remote overrides (they win over the file):");
            for l in lines {
                println!("  {l}");
            }
        }
        Err(e) => eprintln!("warning: cannot read the remote overlay: {e}"),
    }
}

/// `watchpost config reset-remote`.
pub(super) fn run(cfg: &Config, cmd: ConfigCmd) -> ExitCode {
    let ConfigCmd::ResetRemote { sensor, key } = cmd;
    let dir = &cfg.gateway.data_dir;
    let mut o = match Overlay::load(dir) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("watchpost config reset-remote: {e}");
            return ExitCode::from(2);
        }
    };
    let before = o.changes(cfg).len();
    match (&sensor, &key) {
        (None, _) => o.alarms.clear(),
        (Some(s), None) => {
            o.alarms.remove(s);
        }
        (Some(s), Some(k)) => {
            if let Some(m) = o.alarms.get_mut(s) {
                m.remove(k);
                if m.is_empty() {
                    o.alarms.remove(s);
                }
            }
        }
    }
    let removed = before - o.changes(cfg).len();
    if removed == 0 {
        println!("nothing to remove ({})", overlay_path(dir).display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = o.save(dir) {
        eprintln!("watchpost config reset-remote: {e}");
        return ExitCode::from(2);
    }
    println!("removed {removed} remote override(s); reload the daemon to apply (systemctl reload watchpost), and clear them from the shadow's desired state or they come back");
    ExitCode::SUCCESS
}
