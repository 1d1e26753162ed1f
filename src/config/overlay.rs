//! Remote alarm settings (`[mqtt.shadow] apply_desired = true`): an overlay on the config file, kept in the data
//! directory, that wins over the file for the keys it sets.
//!
//! Only alarm settings may be set remotely — per sensor `warning`, `critical` (`high`/`low`), `deadband`, `delay`,
//! `off_delay`, `valid` (`min`/`max`) and `stale_after`; anything else in `desired` is refused by name. A desired
//! document is merged into the overlay the way AWS merges shadow documents (`null` removes a key, which returns it
//! to the file's value), applied to the file's config and checked by the same validation as the file — sensor by
//! sensor: what fits is applied, the rest is refused per key and reported, and an override whose sensor left the
//! file is left out without taking the others with it.

use super::{validate, Config, Dur, Limits, ValidRange};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The keys a remote change may set, per sensor.
pub const REMOTE_KEYS: &[&str] = &[
    "warning",
    "critical",
    "deadband",
    "delay",
    "off_delay",
    "valid",
    "stale_after",
];
/// Keys whose value is an object merged key by key.
const OBJECT_KEYS: &[&str] = &["warning", "critical", "valid"];
/// Sensors an overlay may hold.
const MAX_SENSORS: usize = 1000;
/// The overlay's file in the data directory.
pub const OVERLAY_FILE: &str = "remote-overlay.json";

/// The remote overrides in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// Shadow version of the last applied change.
    #[serde(default)]
    pub version: Option<u64>,
    /// When it was last changed (RFC 3339).
    #[serde(default)]
    pub updated: Option<String>,
    /// Per sensor: key → value (objects for `warning`, `critical`, `valid`).
    #[serde(default)]
    pub alarms: BTreeMap<String, Map<String, Value>>,
    /// What was last refused (a digest of the refusals): refused again — after a reconnect, a restart, or with a
    /// new shadow version the gateway's own updates caused — it is not audited again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// An applied change's audit event not yet known to be committed (written with the change, cleared once the
    /// audit is in the store, sent again after a crash in between): no change in force without its audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_pending: Option<Value>,
}

/// Why the overlay file cannot be read or written (its path and the OS's or the parser's words).
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Unreadable, or not an overlay document.
    #[error("{}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The atomic write failed (nothing changed on disk).
    #[error("cannot save {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The overlay file of a data directory.
pub fn overlay_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OVERLAY_FILE)
}

impl Overlay {
    /// Read the overlay of `data_dir` (none yet: empty).
    pub fn load(data_dir: &Path) -> Result<Overlay, OverlayError> {
        let path = overlay_path(data_dir);
        let bad = |reason: String| OverlayError::Read {
            path: path.clone(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overlay::default()),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// Write atomically: a temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, data_dir: &Path) -> Result<(), OverlayError> {
        use std::io::Write;
        let path = overlay_path(data_dir);
        let failed = |reason: String| OverlayError::Write {
            path: path.clone(),
            reason,
        };
        let tmp = data_dir.join(format!("{OVERLAY_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|e| failed(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()
        };
        write().map_err(|e| failed(e.to_string()))
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.alarms.is_empty()
    }

    /// The overlay with a desired document merged in, or every key that may not be set remotely.
    pub fn merged(&self, desired: &Value, known: &[String]) -> Result<Overlay, Vec<String>> {
        let mut errors = Vec::new();
        let mut next = self.clone();
        let Some(top) = desired.as_object() else {
            return Err(vec!["desired: expected an object".into()]);
        };
        for (k, v) in top {
            if k != "alarms" {
                errors.push(format!(
                    "desired.{k}: cannot be set remotely; only alarms.{{sensor}}.{{{}}}",
                    REMOTE_KEYS.join("|")
                ));
                continue;
            }
            match v {
                Value::Null => next.alarms.clear(),
                Value::Object(sensors) => {
                    for (sensor, sv) in sensors {
                        let at = format!("desired.alarms.{sensor}");
                        match sv {
                            Value::Null => {
                                next.alarms.remove(sensor);
                            }
                            Value::Object(keys) => {
                                if !known.iter().any(|s| s == sensor) {
                                    errors.push(format!("{at}: no sensor has this id"));
                                    continue;
                                }
                                let entry = next.alarms.entry(sensor.clone()).or_default();
                                merge_keys(entry, keys, &at, &mut errors);
                                if entry.is_empty() {
                                    next.alarms.remove(sensor);
                                }
                            }
                            _ => errors.push(format!("{at}: expected an object or null")),
                        }
                    }
                }
                _ => errors.push("desired.alarms: expected an object or null".into()),
            }
        }
        if next.alarms.len() > MAX_SENSORS {
            errors.push(format!("desired.alarms: more than {MAX_SENSORS} sensors"));
        }
        if errors.is_empty() {
            Ok(next)
        } else {
            Err(errors)
        }
    }

    /// The file's config with the overlay applied, checked by the same validation as the file; or every problem.
    pub fn apply(&self, file: &Config) -> Result<Config, Vec<String>> {
        let mut cfg = file.clone();
        let mut errors = Vec::new();
        for (sensor, keys) in &self.alarms {
            let Some(s) = cfg.sensor.iter_mut().find(|s| s.id == *sensor) else {
                errors.push(format!(
                    "alarms.{sensor}: no sensor has this id in the configuration"
                ));
                continue;
            };
            for (k, v) in keys {
                let r = match k.as_str() {
                    "warning" => patch(&mut s.warning, Limits::default(), v),
                    "critical" => patch(&mut s.critical, Limits::default(), v),
                    "valid" => patch(
                        &mut s.valid,
                        ValidRange {
                            min: None,
                            max: None,
                        },
                        v,
                    ),
                    "deadband" => serde_json::from_value::<f64>(v.clone())
                        .map(|d| s.deadband = d)
                        .map_err(|e| e.to_string()),
                    "delay" => dur(v).map(|d| s.delay = Some(d)),
                    "off_delay" => dur(v).map(|d| s.off_delay = Some(d)),
                    "stale_after" => dur(v).map(|d| s.stale_after = Some(d)),
                    _ => Err("cannot be set remotely".into()),
                };
                if let Err(e) = r {
                    errors.push(format!("alarms.{sensor}.{k}: {e}"));
                }
            }
        }
        let mut issues = Vec::new();
        validate::validate(&cfg, &mut issues);
        errors.extend(
            issues
                .into_iter()
                .map(|i| format!("{}: {}", i.path, i.message)),
        );
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// Apply sensor by sensor: the file's config with every override that fits, and for those that do not (a
    /// sensor that left the file, a value the file's checks refuse) why, with the sensors left out.
    pub fn apply_each(&self, file: &Config) -> (Config, Vec<String>, Vec<String>) {
        let mut cfg = file.clone();
        let (mut errors, mut left_out) = (Vec::new(), Vec::new());
        for (sensor, keys) in &self.alarms {
            let one = Overlay {
                alarms: BTreeMap::from([(sensor.clone(), keys.clone())]),
                ..Overlay::default()
            };
            match one.apply(&cfg) {
                Ok(c) => cfg = c,
                Err(e) => {
                    errors.extend(e);
                    left_out.push(sensor.clone());
                }
            }
        }
        (cfg, errors, left_out)
    }

    /// Every overridden key with its value in the file and in the overlay: `(sensor, key, file, remote)`.
    pub fn changes(&self, file: &Config) -> Vec<(String, String, Value, Value)> {
        let mut out = Vec::new();
        for (sensor, keys) in &self.alarms {
            let Some(s) = file.sensor.iter().find(|s| s.id == *sensor) else {
                continue;
            };
            for (k, v) in keys {
                let old = match k.as_str() {
                    "warning" => serde_json::to_value(s.warning),
                    "critical" => serde_json::to_value(s.critical),
                    "valid" => serde_json::to_value(s.valid),
                    "deadband" => serde_json::to_value(s.deadband),
                    "delay" => serde_json::to_value(s.delay),
                    "off_delay" => serde_json::to_value(s.off_delay),
                    "stale_after" => serde_json::to_value(s.stale_after),
                    _ => Ok(Value::Null),
                };
                out.push((
                    sensor.clone(),
                    k.clone(),
                    old.unwrap_or_default(),
                    v.clone(),
                ));
            }
        }
        out
    }
}

fn merge_keys(
    entry: &mut Map<String, Value>,
    keys: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<String>,
) {
    for (k, v) in keys {
        if !REMOTE_KEYS.contains(&k.as_str()) {
            errors.push(format!(
                "{at}.{k}: cannot be set remotely; allowed: {}",
                REMOTE_KEYS.join(", ")
            ));
            continue;
        }
        match v {
            Value::Null => {
                entry.remove(k);
            }
            Value::Object(sub) if OBJECT_KEYS.contains(&k.as_str()) => {
                let slot = entry
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Some(o) = slot.as_object_mut() {
                    for (sk, sv) in sub {
                        if sv.is_null() {
                            o.remove(sk);
                        } else {
                            o.insert(sk.clone(), sv.clone());
                        }
                    }
                    if o.is_empty() {
                        entry.remove(k);
                    }
                }
            }
            _ if OBJECT_KEYS.contains(&k.as_str()) => {
                errors.push(format!(
                    "{at}.{k}: expected an object such as {{\"high\": 85}}"
                ));
            }
            v => {
                entry.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Merge the overlay's sub-keys over the file's value of an object key.
fn patch<T: Serialize + serde::de::DeserializeOwned + Copy>(
    field: &mut Option<T>,
    empty: T,
    v: &Value,
) -> Result<(), String> {
    let mut base = serde_json::to_value(field.unwrap_or(empty)).map_err(|e| e.to_string())?;
    if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
        b.retain(|_, x| !x.is_null());
        for (k, x) in o {
            b.insert(k.clone(), x.clone());
        }
    }
    *field = Some(serde_json::from_value(base).map_err(|e| e.to_string())?);
    Ok(())
}

fn dur(v: &Value) -> Result<Dur, String> {
    serde_json::from_value::<Dur>(v.clone()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file() -> Config {
        crate::config::parse_str(
            r#"
[gateway]
id = "gw"
data_dir = "/tmp/x"

[[sensor]]
id = "t"
source = { simulated = "constant", offset = 1.0 }
warning = { high = 80.0 }
critical = { high = 95.0 }
"#,
            Path::new("t.toml"),
            &[],
        )
        .expect("config")
    }

    #[test]
    fn merge_apply_validate_and_reset() {
        let f = file();
        let known = vec!["t".to_string()];
        let o = Overlay::default()
            .merged(
                &json!({"alarms": {"t": {"warning": {"high": 85.0}, "delay": "5s"}}}),
                &known,
            )
            .expect("merge");
        let cfg = o.apply(&f).expect("valid");
        let t = &cfg.sensor[0];
        assert_eq!(t.warning.and_then(|w| w.high), Some(85.0));
        assert_eq!(
            t.critical.and_then(|c| c.high),
            Some(95.0),
            "untouched keys keep the file's value"
        );
        assert_eq!(t.delay.map(|d| d.0.as_secs()), Some(5));
        let ch = o.changes(&f);
        assert_eq!(ch.len(), 2);
        // Refused by name, nothing merged.
        let e = o
            .merged(&json!({"gateway": {"id": "x"}, "alarms": {"t": {"source": 1}, "nope": {"delay": "1s"}}}), &known)
            .unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.starts_with("desired.gateway: cannot be set remotely")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("desired.alarms.t.source: cannot be set remotely")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("desired.alarms.nope: no sensor")),
            "{e:?}"
        );
        // Same validation as the file: warning above critical is refused with the file's message.
        let bad = o
            .merged(
                &json!({"alarms": {"t": {"warning": {"high": 99.0}}}}),
                &known,
            )
            .expect("merge");
        let e = bad.apply(&f).unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.contains("must not be below warning.high")),
            "{e:?}"
        );
        let e = o
            .merged(&json!({"alarms": {"t": {"delay": 5}}}), &known)
            .expect("m")
            .apply(&f)
            .unwrap_err();
        assert!(e[0].starts_with("alarms.t.delay:"), "{e:?}");
        // null removes an override (back to the file), per AWS semantics.
        let back = o
            .merged(
                &json!({"alarms": {"t": {"warning": {"high": null}, "delay": null}}}),
                &known,
            )
            .expect("m");
        assert!(back.is_empty(), "{back:?}");
        assert_eq!(back.apply(&f).expect("ok").sensor[0], f.sensor[0]);
        // Saved atomically and read back.
        let dir = tempfile::tempdir().expect("tmp");
        o.save(dir.path()).expect("save");
        assert_eq!(Overlay::load(dir.path()).expect("load"), o);
    }
}
