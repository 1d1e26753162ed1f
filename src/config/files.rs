//! The files a config names (secrets, certificates, I2C devices), checked as `check-config` checks them: missing is
//! an error, unreadable by this user a warning.

use super::Config;
use std::path::{Path, PathBuf};

/// A file the config refers to that this process cannot read now.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProblem {
    /// The key naming it (`mqtt.ca_file`).
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// What the OS said.
    pub why: String,
    /// An error (the file is not there: the sink that needs it cannot start) rather than a warning (it is there
    /// but not readable by this user — often right: the service user may read it, or systemd hands it over).
    pub error: bool,
}

/// Whether an open error means the file is missing (an error) or only unreadable by this user (a warning).
pub fn file_missing(e: &std::io::Error) -> bool {
    e.kind() != std::io::ErrorKind::PermissionDenied
}

/// Files the config refers to that this process cannot read now. `check-config` reports a missing one as an error
/// and an unreadable one as a warning; a sink that cannot start shows as failing at run time.
pub fn unreadable_files(cfg: &Config) -> Vec<FileProblem> {
    let mut refs: Vec<(String, PathBuf)> = Vec::new();
    let mut add = |key: &str, p: &Option<PathBuf>| {
        if let Some(p) = p {
            refs.push((key.to_string(), p.clone()));
        }
    };
    if let Some(i) = &cfg.influxdb {
        add("influxdb.token_file", &i.token_file);
        add("influxdb.ca_file", &i.ca_file);
    }
    if let Some(m) = &cfg.mqtt {
        add("mqtt.password_file", &m.password_file);
        add("mqtt.ca_file", &m.ca_file);
        add("mqtt.cert_file", &m.cert_file);
        add("mqtt.key_file", &m.key_file);
    }
    if let Some(e) = &cfg.email {
        add("email.password_file", &e.password_file);
        add("email.ca_file", &e.ca_file);
    }
    let mut out = Vec::new();
    for (key, path) in refs {
        if let Err(e) = std::fs::File::open(&path) {
            out.push(FileProblem {
                key,
                path,
                error: file_missing(&e),
                why: e.to_string(),
            });
        }
    }
    for (i, b) in cfg.i2c.iter().enumerate() {
        if b.device != "simulated" && !Path::new(&b.device).exists() {
            // A warning: the device may appear later (a module loaded after boot); the bus reports it meanwhile.
            out.push(FileProblem {
                key: format!("i2c[{i}].device"),
                path: PathBuf::from(&b.device),
                why: "does not exist (I2C bus enabled? i2c-dev loaded?)".into(),
                error: false,
            });
        }
    }
    out
}
