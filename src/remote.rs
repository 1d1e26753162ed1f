//! Remote alarm settings: the daemon's side of `[mqtt.shadow] apply_desired`.
//!
//! The shadow client hands over each desired state; this merges it into the overlay ([`Overlay`]), checks the
//! result with the file's validation, saves the overlay (atomically, in the data directory) and gives the daemon
//! the new effective config, which it applies like a SIGHUP reload (alarm state kept). Every applied or refused
//! change is an audit event (CONFIG_CHANGE) in the store and on the `events` topic. Precedence: the overlay wins
//! over the file for the keys it sets; `watchpost config reset-remote` (then a reload) or a desired `null` removes
//! an override.

use crate::config::overlay::Overlay;
use crate::config::Config;
use crate::model::{AlertState, Control, RemoteChange, RemoteResult, Timestamp};
use tokio::sync::mpsc;

/// The overlay in force and the last outcome (a desired state seen again is not audited again).
pub struct Remote {
    overlay: Overlay,
    last: Option<(Option<u64>, String, RemoteResult)>,
}

/// Whether remote settings are on for this config.
pub fn enabled(cfg: &Config) -> bool {
    cfg.mqtt
        .as_ref()
        .and_then(|m| m.shadow.as_ref())
        .is_some_and(|s| s.apply_desired)
}

impl Remote {
    /// Load the overlay of the config's data directory (unreadable: logged, none).
    pub fn open(file: &Config) -> Remote {
        let overlay = match Overlay::load(&file.gateway.data_dir) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "The remote settings overlay is unreadable; the file's settings apply.");
                Overlay::default()
            }
        };
        Remote {
            overlay,
            last: None,
        }
    }

    /// Read the overlay again (after `watchpost config reset-remote`): the overrides now in force when they
    /// changed.
    pub fn reload(&mut self, file: &Config) -> Option<RemoteResult> {
        let before = self.overlay.alarms.clone();
        *self = Remote::open(file);
        (enabled(file) && self.overlay.alarms != before)
            .then(|| self.in_force(true, self.overlay.version, Vec::new()))
    }

    /// An outcome that reports the overrides in force.
    fn in_force(&self, applied: bool, version: Option<u64>, errors: Vec<String>) -> RemoteResult {
        RemoteResult {
            applied,
            version,
            errors,
            alarms: serde_json::to_value(&self.overlay.alarms).unwrap_or_default(),
        }
    }

    /// The file's config with the overlay applied (when remote settings are on); a file edit that the overlay
    /// overrides is logged; an overlay that no longer fits the file is logged and left out.
    pub fn effective(&self, file: &Config, old_file: Option<&Config>) -> Config {
        if self.overlay.is_empty() {
            return file.clone();
        }
        if !enabled(file) {
            tracing::warn!(path = %crate::config::overlay::overlay_path(&file.gateway.data_dir).display(),
                "A remote settings overlay exists but [mqtt.shadow] apply_desired is off: the file's settings apply.");
            return file.clone();
        }
        if let Some(old) = old_file {
            let now = self.overlay.changes(file);
            for (sensor, key, was, _) in self.overlay.changes(old) {
                let in_file = now
                    .iter()
                    .find(|(s, k, _, _)| *s == sensor && *k == key)
                    .map(|c| &c.2);
                if in_file != Some(&was) {
                    tracing::warn!(sensor = %sensor, key = %key, "The file changed a setting a remote override sets; the remote value still wins (watchpost config reset-remote removes it).");
                }
            }
        }
        match self.overlay.apply(file) {
            Ok(c) => {
                tracing::info!(
                    overrides = self.overlay.changes(file).len(),
                    version = self.overlay.version,
                    "Remote alarm settings applied over the file."
                );
                c
            }
            Err(errors) => {
                tracing::error!(errors = ?errors, "The remote settings overlay does not fit this configuration; the file's settings apply until the shadow sends new ones.");
                file.clone()
            }
        }
    }

    /// The outcome of the last change handled since the overlay was read.
    pub fn outcome(&self) -> Option<RemoteResult> {
        self.last.as_ref().map(|l| l.2.clone())
    }

    /// Handle a desired state: the new effective config when it applies. The outcome ([`Remote::outcome`]) goes
    /// back to the shadow, and an audit event to the store (through `control`).
    pub async fn change(
        &mut self,
        file: &Config,
        c: RemoteChange,
        control: &mpsc::Sender<Control>,
    ) -> Option<Config> {
        let key = c.desired.to_string();
        if let Some((v, k, _)) = &self.last {
            if *v == c.version && *k == key {
                return None;
            }
        }
        let known: Vec<String> = file.sensor.iter().map(|s| s.id.clone()).collect();
        let base = if c.replace {
            Overlay {
                alarms: Default::default(),
                ..self.overlay.clone()
            }
        } else {
            self.overlay.clone()
        };
        let desired = if c.replace {
            // A get answer: only `alarms` is ours; other desired keys belong to other applications of the
            // shadow and are refused by name below only when they arrive as a change.
            serde_json::json!({ "alarms": c.desired.get("alarms").cloned().unwrap_or_default() })
        } else {
            c.desired.clone()
        };
        let outcome = base
            .merged(&desired, &known)
            .and_then(|next| {
                if next.alarms == self.overlay.alarms {
                    // Nothing to change (a get answer matching what is in force): answered, not audited.
                    Err(Vec::new())
                } else {
                    Ok(next)
                }
            })
            .and_then(|mut next| {
                next.version = c.version.or(next.version);
                next.updated = Some(Timestamp::now().rfc3339());
                let cfg = next.apply(file)?;
                Ok((next, cfg))
            })
            .and_then(|(next, cfg)| {
                next.save(&file.gateway.data_dir)
                    .map(|()| (next, cfg))
                    .map_err(|e| vec![e])
            });
        let (result, new_cfg, state, detail) = match outcome {
            Ok((next, cfg)) => {
                let before = self.overlay.changes(file);
                let after = next.changes(file);
                let changes: Vec<_> = after
                    .iter()
                    .filter(|a| !before.contains(a))
                    .map(|(s, k, file_v, new)| {
                        let old = before
                            .iter()
                            .find(|b| b.0 == *s && b.1 == *k)
                            .map(|b| b.3.clone())
                            .unwrap_or_else(|| file_v.clone());
                        serde_json::json!({"key": format!("{s}.{k}"), "old": old, "new": new})
                    })
                    .chain(before.iter().filter(|b| !after.iter().any(|a| a.0 == b.0 && a.1 == b.1)).map(
                        |(s, k, file_v, old)| {
                            serde_json::json!({"key": format!("{s}.{k}"), "old": old, "new": file_v, "from": "file"})
                        },
                    ))
                    .collect();
                self.overlay = next;
                let r = self.in_force(true, c.version, Vec::new());
                let reason = format!(
                    "remote alarm settings applied (shadow version {})",
                    opt(c.version)
                );
                (
                    r,
                    Some(cfg),
                    AlertState::Applied,
                    (reason, changes, Vec::new()),
                )
            }
            Err(errors) if errors.is_empty() => {
                let r = self.in_force(true, c.version, errors);
                self.last = Some((c.version, key, r));
                return None;
            }
            Err(errors) => {
                let r = self.in_force(false, c.version, bounded(&errors, REPORTED_ERRORS));
                tracing::warn!(version = c.version, count = errors.len(), errors = ?bounded(&errors, AUDIT_ERRORS), "Refused a remote change of alarm settings; nothing changed.");
                let reason = format!(
                    "remote alarm settings refused (shadow version {}): {}",
                    opt(c.version),
                    bounded(&errors, 1)
                        .first()
                        .map(String::as_str)
                        .unwrap_or("")
                );
                let errors = bounded(&errors, AUDIT_ERRORS);
                (r, None, AlertState::Rejected, (reason, Vec::new(), errors))
            }
        };
        let (reason, mut changes, errors) = detail;
        if changes.len() > AUDIT_CHANGES {
            let more = changes.len() - AUDIT_CHANGES;
            changes.truncate(AUDIT_CHANGES);
            changes.push(serde_json::json!({ "more": more }));
        }
        let change = serde_json::json!({
            "version": c.version,
            "changes": changes,
            "errors": errors,
        });
        let _ = control
            .send(Control::Audit {
                state,
                reason,
                change,
            })
            .await;
        self.last = Some((c.version, key, result));
        new_cfg
    }
}

/// Errors listed in an audit event; the rest are counted. An audit event stays a few kilobytes whatever a remote
/// peer sends (a refused document of 6,000 bad keys made one of 296 kB, more than a broker takes).
const AUDIT_ERRORS: usize = 20;
/// Changes listed in an audit event; the rest are counted (`{"more": N}`).
const AUDIT_CHANGES: usize = 100;
/// Errors reported back in the shadow (`reported.config.errors`): the document has 8 kB for everything.
const REPORTED_ERRORS: usize = 5;
/// Characters of one error message (a key name in it comes from the remote peer).
const ERROR_CHARS: usize = 200;

/// The first `n` errors, each at most [`ERROR_CHARS`] long, and a count of the rest.
fn bounded(errors: &[String], n: usize) -> Vec<String> {
    let mut out: Vec<String> = errors
        .iter()
        .take(n)
        .map(|e| {
            if e.chars().count() > ERROR_CHARS {
                let mut s: String = e.chars().take(ERROR_CHARS).collect();
                s.push('…');
                s
            } else {
                e.clone()
            }
        })
        .collect();
    if errors.len() > n {
        out.push(format!("… and {} more errors", errors.len() - n));
    }
    out
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}
