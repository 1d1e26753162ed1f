//! The config file: TOML parsed into typed structs, then validated.
//!
//! Every problem names the file, line and column, the key path (e.g. `sensor[2].critical.high`) and what is
//! wrong. Parsing goes section by section so that one wrong type does not hide the problems in other sections.
//! The `toml` crate gives the values and `toml_edit` the source spans; the `config` crate is not used because its
//! errors carry no line numbers (see README, dependency notes).
//!
//! Environment overrides: `WATCHPOST__SECTION__KEY=value` sets `section.key` (e.g.
//! `WATCHPOST__GATEWAY__DATA_DIR=/tmp/wp`, `WATCHPOST__INFLUXDB__TOKEN=…`). A value that parses as a TOML number or
//! boolean is taken as such, anything else as a string.

mod alarms;
mod email;
mod fields;
mod files;
mod i2c;
mod locate;
mod mqtt;
mod names;
mod words;
pub use files::{file_missing, unreadable_files, FileProblem};
use words::{did_you_mean, people};
pub mod overlay;
#[cfg(test)]
mod schema;
mod secret;
mod source;
mod sparkplug;
mod types;
mod validate;

pub use alarms::{AlarmsConfig, DeviationConfig, RateConfig};
pub use email::{check_mailbox, EmailConfig, EmailRoute, MinSeverity, SmtpEndpoint, TlsMode};
pub use i2c::{AdcChannel, Chip, ChipSpec, I2cConfig, I2cSource, Trigger, CHIPS};
pub use locate::line_col;
use locate::locate;
pub use mqtt::{
    CommandsConfig, MqttConfig, ShadowConfig, TelemetryConfig, TelemetryMode, TopicLayout,
};
pub use secret::resolve_secret;
pub use source::*;
pub use sparkplug::{id_problem as sparkplug_id_problem, SparkplugConfig};
pub use types::*;

use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// One element of a key path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A key path such as `sensor[2].critical.high`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// Path from a dotted string with `[n]` indexes.
    pub fn parse(s: &str) -> KeyPath {
        let mut segs = Vec::new();
        for part in s.split('.') {
            if part.is_empty() {
                continue;
            }
            let mut rest = part;
            if let Some(b) = rest.find('[') {
                segs.push(Seg::Key(rest[..b].to_string()));
                rest = &rest[b..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let e = stripped.find(']').unwrap_or(stripped.len());
                    if let Ok(i) = stripped[..e].parse() {
                        segs.push(Seg::Index(i));
                    }
                    rest = stripped.get(e + 1..).unwrap_or("");
                }
            } else {
                segs.push(Seg::Key(rest.to_string()));
            }
        }
        KeyPath(segs)
    }
    /// `self` followed by a key.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub pos: Option<(usize, usize)>,
    /// Key path, empty for file-level problems.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((l, c)) = self.pos {
            write!(f, ":{l}:{c}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A problem found before positions are resolved.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub path: KeyPath,
    pub message: String,
}

impl Issue {
    pub(crate) fn new(path: KeyPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            message: message.into(),
        }
    }
}

/// Read, parse and validate a config file, applying environment overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let fail = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            pos: None,
            path: String::new(),
            message,
        }])
    };
    // A regular file of reasonable size: a FIFO would block, /dev/zero would never end.
    const MAX_CONFIG: u64 = 4 << 20;
    let meta =
        std::fs::metadata(path).map_err(|e| fail(format!("cannot read the config file: {e}")))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG {
        return Err(fail(format!(
            "is {} bytes; a config file is at most 4 MiB",
            meta.len()
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| fail(format!("cannot read the config file: {e}")))?;
    let src = String::from_utf8(bytes).map_err(|e| {
        // Point at the first bad byte.
        let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let text = String::from_utf8_lossy(ok);
        let line = text.matches('\n').count() + 1;
        let col = text
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            pos: Some((line, col)),
            path: String::new(),
            message: "is not valid UTF-8 here (a TOML file is UTF-8 text)".into(),
        }])
    })?;
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("WATCHPOST__"))
        .collect();
    parse_str(&src, path, &env)
}

/// Parse and validate config text. `env` holds `WATCHPOST__…` overrides.
pub fn parse_str(src: &str, file: &Path, env: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let mk = |pos: Option<(usize, usize)>, path: String, message: String| ConfigError {
        file: file.to_path_buf(),
        pos,
        path,
        message,
    };
    let mut table: toml::Table = match toml::from_str(src) {
        Ok(t) => t,
        Err(e) => {
            let pos = e.span().map(|s| line_col(src, s.start));
            return Err(ConfigErrors(vec![mk(
                pos,
                String::new(),
                format!("TOML syntax error: {}", e.message().trim()),
            )]));
        }
    };
    let mut env_paths: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        if let Some(key) = apply_env(&mut table, k, v) {
            env_paths.push((key, k.clone()));
        }
    }

    let mut issues = Vec::new();
    let cfg = build(table, &mut issues);
    if let Some(cfg) = &cfg {
        validate::validate(cfg, &mut issues);
    }
    if issues.is_empty() {
        if let Some(cfg) = cfg {
            return Ok(cfg);
        }
    }
    // The spans come from toml_edit, parsed only to place errors (its document of a 2,000-sensor file is ~15 MB
    // while it lives: the daemon's peak memory if it were parsed on every start), and asked only about a document
    // the `toml` parser accepted: toml_edit 0.23 panics on some malformed documents (found by fuzzing; the input is
    // in fuzz/corpus/config), and no byte of a config file may stop the daemon.
    let doc = match toml_edit::Document::parse(src.to_string()) {
        Ok(d) => d,
        Err(e) => {
            let pos = e.span().map(|s| line_col(src, s.start));
            let msg = e.message().trim().to_string();
            return Err(ConfigErrors(vec![mk(
                pos,
                String::new(),
                format!("TOML syntax error: {msg}"),
            )]));
        }
    };
    // Line starts, found once: each error's position is then a binary search (30k errors stay fast).
    let starts: Vec<usize> = std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let pos_of = |offset: usize| {
        let offset = offset.min(src.len());
        let line = starts.partition_point(|&s| s <= offset);
        let start = starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let col = src
            .get(start..offset)
            .map(|t| t.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    };
    let errors = issues
        .into_iter()
        .map(|i| {
            let p = i.path.to_string();
            let from_env = env_paths
                .iter()
                .find(|(k, _)| p == *k || p.starts_with(&format!("{k}.")))
                .map(|(_, var)| var.clone());
            match from_env {
                Some(var) => mk(
                    None,
                    p,
                    format!("{} (value from environment variable {var})", i.message),
                ),
                None => {
                    // A file-level problem (no key) points at the start of the file.
                    let at = if i.path.0.is_empty() {
                        Some(0)
                    } else {
                        locate(&doc, &i.path)
                    };
                    mk(at.map(pos_of), p, i.message)
                }
            }
        })
        .collect();
    Err(ConfigErrors(errors))
}

/// Apply one `WATCHPOST__A__B=v` override; returns the dotted key it set.
fn apply_env(table: &mut toml::Table, var: &str, val: &str) -> Option<String> {
    let keys: Vec<String> = var
        .strip_prefix("WATCHPOST__")?
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if keys.iter().any(|k| k.is_empty()) {
        return None;
    }
    // Keys that are text by nature stay text whatever they look like: `PASSWORD=73914562` is a password, not a
    // number (and a type error would print the secret).
    const TEXT_KEYS: &[&str] = &[
        "password",
        "token",
        "username",
        "client_id",
        "id",
        "location",
        "thing",
        "name",
        "org",
        "bucket",
        "measurement",
        "url",
        "topic_prefix",
        "listen",
        "data_dir",
        "token_file",
        "token_env",
        "password_file",
        "password_env",
        "token_credential",
        "ca_file",
        "cert_file",
        "key_file",
    ];
    let text = keys.last().is_some_and(|k| TEXT_KEYS.contains(&k.as_str()));
    let value = match toml::from_str::<toml::Table>(&format!("v = {val}")) {
        _ if text => toml::Value::String(val.to_string()),
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => v,
            _ => toml::Value::String(val.to_string()),
        },
        Err(_) => toml::Value::String(val.to_string()),
    };
    let (last, parents) = keys.split_last()?;
    let mut t = table;
    for k in parents {
        let entry = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut()?;
    }
    t.insert(last.clone(), value);
    Some(keys.join("."))
}

fn build(mut table: toml::Table, issues: &mut Vec<Issue>) -> Option<Config> {
    const KNOWN: &[&str] = &[
        "gateway",
        "buffer",
        "influxdb",
        "mqtt",
        "email",
        "metrics",
        "modbus",
        "i2c",
        "sensor",
        "sparkplug",
        "alarms",
    ];
    for k in table.keys() {
        if !KNOWN.contains(&k.as_str()) {
            let hint = match k.as_str() {
                "sensors" => " (did you mean [[sensor]]?)".to_string(),
                _ => did_you_mean(k, KNOWN.iter().copied()),
            };
            issues.push(Issue::new(
                KeyPath::parse(k),
                format!(
                    "unknown section `{k}`{hint}; expected one of: {}",
                    KNOWN.join(", ")
                ),
            ));
        }
    }
    let gateway = match table.remove("gateway") {
        Some(v) => section::<GatewayConfig>(v, KeyPath::parse("gateway"), issues),
        None => {
            issues.push(Issue::new(
                KeyPath::default(),
                "missing section [gateway] (it needs at least `id`)",
            ));
            None
        }
    };
    let buffer = match table.remove("buffer") {
        Some(v) => section::<BufferConfig>(v, KeyPath::parse("buffer"), issues),
        None => Some(BufferConfig::default()),
    };
    let influxdb = opt_section::<InfluxConfig>(&mut table, "influxdb", issues);
    let mqtt = opt_section::<MqttConfig>(&mut table, "mqtt", issues);
    let email = opt_section::<EmailConfig>(&mut table, "email", issues);
    let sparkplug = opt_section::<SparkplugConfig>(&mut table, "sparkplug", issues);
    let metrics = opt_section::<MetricsConfig>(&mut table, "metrics", issues);
    let modbus = array_section::<ModbusConfig>(&mut table, "modbus", issues);
    let i2c = array_section::<I2cConfig>(&mut table, "i2c", issues);
    let alarms = match table.remove("alarms") {
        Some(v) => section::<AlarmsConfig>(v, KeyPath::parse("alarms"), issues),
        None => Some(AlarmsConfig::default()),
    };
    let sensor = array_section::<SensorConfig>(&mut table, "sensor", issues);
    Some(Config {
        gateway: gateway?,
        buffer: buffer?,
        influxdb: influxdb?,
        mqtt: mqtt?,
        email: email?,
        sparkplug: sparkplug?,
        metrics: metrics?,
        modbus: modbus?,
        i2c: i2c?,
        alarms: alarms?,
        sensor: sensor?,
    })
}

fn opt_section<T: DeserializeOwned>(
    table: &mut toml::Table,
    name: &str,
    issues: &mut Vec<Issue>,
) -> Option<Option<T>> {
    match table.remove(name) {
        Some(v) => section::<T>(v, KeyPath::parse(name), issues).map(Some),
        None => Some(None),
    }
}

fn array_section<T: DeserializeOwned>(
    table: &mut toml::Table,
    name: &str,
    issues: &mut Vec<Issue>,
) -> Option<Vec<T>> {
    match table.remove(name) {
        None => Some(Vec::new()),
        Some(toml::Value::Array(items)) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, v) in items.into_iter().enumerate() {
                let p = KeyPath(vec![Seg::Key(name.into()), Seg::Index(i)]);
                match section::<T>(v, p, issues) {
                    Some(t) => out.push(t),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        Some(_) => {
            issues.push(Issue::new(
                KeyPath::parse(name),
                format!("must be an array of tables: write [[{name}]] for each entry"),
            ));
            None
        }
    }
}

fn section<T: DeserializeOwned>(
    v: toml::Value,
    base: KeyPath,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let mut path = base.clone();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => path.0.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => path.0.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { variant } => {
                        path.0.push(Seg::Key(variant.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => {}
                }
            }
            let mut msg = e.inner().message().trim().to_string();
            // Checks that name a key inside the table they validate say "`key`: message" (see `source`).
            if let Some(rest) = msg.strip_prefix('`') {
                if let Some((k, m)) = rest.split_once("`: ") {
                    if !k.is_empty() && !k.contains(' ') {
                        path = path.key(k);
                        msg = m.to_string();
                    }
                }
            }
            // Point at the offending key itself for unknown fields, and suggest the nearest known one.
            if let Some(rest) = msg.strip_prefix("unknown field `") {
                if let Some(end) = rest.find('`') {
                    let k = rest[..end].to_string();
                    let known: Vec<&str> = rest[end..].split('`').skip(2).step_by(2).collect();
                    let hint = did_you_mean(&k, known.into_iter());
                    if !hint.is_empty() {
                        msg = msg.replacen(&format!("`{k}`"), &format!("`{k}`{hint}"), 1);
                    }
                    if path.0.last() != Some(&Seg::Key(k.clone())) {
                        path = path.key(&k);
                    }
                }
            }
            issues.push(Issue::new(path, people(&msg)));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypath_roundtrip() {
        let p = KeyPath::parse("sensor[2].critical.high");
        assert_eq!(p.to_string(), "sensor[2].critical.high");
        assert_eq!(p.0.len(), 4);
    }

    #[test]
    fn numeric_secrets_from_the_environment_stay_text() {
        let src =
            "[gateway]\nid = \"gw\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"u\"\n";
        let env = vec![(
            "WATCHPOST__MQTT__PASSWORD".to_string(),
            "73914562".to_string(),
        )];
        let cfg =
            parse_str(src, Path::new("w.toml"), &env).expect("a numeric password is accepted");
        assert_eq!(
            cfg.mqtt.and_then(|m| m.password).as_deref(),
            Some("73914562")
        );
    }

    #[test]
    fn env_override_sets_data_dir_and_numbers() {
        let src = "[gateway]\nid = \"g\"\n";
        let env = vec![
            (
                "WATCHPOST__GATEWAY__DATA_DIR".to_string(),
                "/tmp/x".to_string(),
            ),
            (
                "WATCHPOST__BUFFER__BATCH_MAX_READINGS".to_string(),
                "5".to_string(),
            ),
        ];
        let c = parse_str(src, Path::new("t.toml"), &env).expect("valid");
        assert_eq!(c.gateway.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.buffer.batch_max_readings, 5);
    }

    #[test]
    fn error_names_line_and_path() {
        let src = "[gateway]\nid = \"g\"\n\n[[sensor]]\nid = \"a\"\nsource = { simulated = \"sine\" }\ncritical = { high = 1.0 }\nwarning = { high = 2.0 }\n";
        let e = parse_str(src, Path::new("t.toml"), &[]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("t.toml:7:"), "{s}");
        assert!(s.contains("sensor[0].critical.high"), "{s}");
    }
}
