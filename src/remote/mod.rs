//! Remote alarm settings: the daemon's side of `[mqtt.shadow] apply_desired`.
//!
//! The shadow client hands over each desired state; this merges it into the overlay ([`Overlay`]), checks the
//! result with the file's validation, saves the overlay (atomically, in the data directory) and gives the daemon
//! the new effective config, which it applies like a SIGHUP reload (alarm state kept). Every applied or refused
//! change is an audit event (CONFIG_CHANGE) in the store and on the `events` topic. Precedence: the overlay wins
//! over the file for the keys it sets; `watchpost config reset-remote` (then a reload) or a desired `null` removes
//! an override.

use crate::channels::Control;
use crate::config::overlay::Overlay;
use crate::config::Config;
use crate::model::{AlertState, RemoteChange, RemoteResult, Timestamp};
use tokio::sync::mpsc;

/// The overlay in force and the last outcome (a desired state seen again is not audited again).
pub struct Remote {
    overlay: Overlay,
    /// The last desired document handled (its text) and its outcome.
    last: Option<(String, RemoteResult)>,
    /// Sensors whose overrides are left out (the sensor left the file, or the file's checks refuse them now).
    left_out: Vec<String>,
}

/// Bytes the overrides may take in the shadow's `reported.alarms`: the whole reported document must stay under
/// AWS IoT's 8 kB, beside the sensors, alerts and gateway health (about 40 sensors with two limits each).
pub const MAX_REPORTED_ALARMS: usize = 4096;

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
            left_out: Vec::new(),
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

    /// An outcome that reports the overrides in force (those left out are not: the shadow must not claim them).
    fn in_force(&self, applied: bool, version: Option<u64>, errors: Vec<String>) -> RemoteResult {
        let alarms: std::collections::BTreeMap<_, _> = self
            .overlay
            .alarms
            .iter()
            .filter(|(s, _)| !self.left_out.contains(s))
            .collect();
        RemoteResult {
            applied,
            version,
            errors,
            alarms: serde_json::to_value(alarms).unwrap_or_default(),
        }
    }

    /// The file's config with the overlay applied (when remote settings are on); a file edit that the overlay
    /// overrides is logged; an override that no longer fits the file (its sensor is gone, or the file's checks
    /// refuse it now) is logged and left out — alone: the others stay in force.
    pub fn effective(&mut self, file: &Config, old_file: Option<&Config>) -> Config {
        self.left_out.clear();
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
        let (cfg, errors, left_out) = self.overlay.apply_each(file);
        if !left_out.is_empty() {
            tracing::error!(sensors = ?left_out, errors = ?bounded(&errors, AUDIT_ERRORS), "Remote overrides that no longer fit the configuration are left out; the others apply.");
        }
        tracing::info!(
            overrides = self.overlay.changes(file).len(),
            left_out = left_out.len(),
            version = self.overlay.version,
            "Remote alarm settings applied over the file."
        );
        self.left_out = left_out;
        cfg
    }

    /// The outcome of the last change handled since the overlay was read.
    pub fn outcome(&self) -> Option<RemoteResult> {
        self.last.as_ref().map(|l| l.1.clone())
    }

    /// An audit written with an applied change whose commit was not confirmed (a crash came between): send it
    /// again, once the ingest thread runs.
    pub async fn flush_pending_audit(&mut self, file: &Config, control: &mpsc::Sender<Control>) {
        let Some(audit) = self.overlay.audit_pending.clone() else {
            return;
        };
        tracing::warn!("An applied remote change's audit event may not have been stored before the daemon stopped; recording it now.");
        self.audit(file, audit, control).await;
    }

    /// Send an audit event (`{"state","reason","change"}`), wait until it is committed, and clear it from the
    /// overlay's write-ahead slot.
    async fn audit(
        &mut self,
        file: &Config,
        audit: serde_json::Value,
        control: &mpsc::Sender<Control>,
    ) {
        let state = if audit["state"] == "applied" {
            AlertState::Applied
        } else {
            AlertState::Rejected
        };
        let (done, committed) = tokio::sync::oneshot::channel();
        let sent = control
            .send(Control::Audit {
                state,
                reason: audit["reason"].as_str().unwrap_or("").to_string(),
                change: audit["change"].clone(),
                done: Some(done),
            })
            .await
            .is_ok();
        // Bounded: a store that refuses writes must not hold up reloads and shutdown; the audit stays written
        // ahead and goes again at the next start.
        let committed = tokio::time::timeout(std::time::Duration::from_secs(10), committed).await;
        if sent && matches!(committed, Ok(Ok(()))) && self.overlay.audit_pending.is_some() {
            self.overlay.audit_pending = None;
            if let Err(e) = self.overlay.save(&file.gateway.data_dir) {
                tracing::warn!(error = %e, "Cannot clear the recorded audit from the overlay; it may be stored twice.");
            }
        }
    }

    /// Handle a desired state: the new effective config when something applies. Sensor by sensor: what fits is
    /// applied, the rest is refused per key (reported in the shadow and the audit). The outcome
    /// ([`Remote::outcome`]) goes back to the shadow, and an audit event to the store (through `control`).
    pub async fn change(
        &mut self,
        file: &Config,
        c: RemoteChange,
        control: &mpsc::Sender<Control>,
    ) -> Option<Config> {
        let key = c.desired.to_string();
        if self.last.as_ref().is_some_and(|(k, _)| *k == key) {
            return None;
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
        let (mut next, errors) = merge_each(base, &desired, &known, file);
        // A refusal is known by what was refused: the same refused keys again (the shadow repeats a delta at
        // every version its own updates bump, after a reconnect, after a restart) are not audited again.
        let refusal = (!errors.is_empty()).then(|| digest(&errors));
        let seen = refusal.is_some() && self.overlay.refused == refusal;
        if next.alarms == self.overlay.alarms {
            let r = self.in_force(
                errors.is_empty(),
                c.version,
                bounded(&errors, REPORTED_ERRORS),
            );
            self.last = Some((key.clone(), r));
            if errors.is_empty() || seen {
                // Nothing to change (a get answer matching what is in force), or a refusal already audited
                // (the same document again after a reconnect, a restart or a version bump): answered only.
                return None;
            }
            tracing::warn!(version = c.version, count = errors.len(), errors = ?bounded(&errors, AUDIT_ERRORS), "Refused a remote change of alarm settings; nothing changed.");
            self.overlay.refused = refusal;
            if let Err(e) = self.overlay.save(&file.gateway.data_dir) {
                tracing::warn!(error = %e, "Cannot record the refusal; it may be audited again after a restart.");
            }
            let reason = format!(
                "remote alarm settings refused (shadow version {}): {}",
                opt(c.version),
                bounded(&errors, 1)
                    .first()
                    .map(String::as_str)
                    .unwrap_or("")
            );
            let change = serde_json::json!({
                "version": c.version,
                "changes": [],
                "errors": bounded(&errors, AUDIT_ERRORS),
            });
            let audit =
                serde_json::json!({"state": "rejected", "reason": reason, "change": change});
            self.audit(file, audit, control).await;
            return None;
        }
        next.version = c.version.or(next.version);
        next.updated = Some(Timestamp::now().rfc3339());
        if refusal.is_some() {
            next.refused = refusal;
        }
        let changes = audit_changes(&self.overlay, &next, file);
        let reason =
            if errors.is_empty() {
                format!(
                    "remote alarm settings applied (shadow version {})",
                    opt(c.version)
                )
            } else {
                format!(
                "remote alarm settings applied in part (shadow version {}): {} refused, e.g. {}",
                opt(c.version),
                errors.len(),
                bounded(&errors, 1).first().map(String::as_str).unwrap_or("")
            )
            };
        let change = serde_json::json!({
            "version": c.version,
            "changes": changes,
            "errors": bounded(&errors, AUDIT_ERRORS),
        });
        let audit = serde_json::json!({"state": "applied", "reason": reason, "change": change});
        // Written ahead with the change: a crash before the audit is committed sends it at the next start.
        next.audit_pending = Some(audit.clone());
        if let Err(e) = next.save(&file.gateway.data_dir) {
            let errors = vec![e.to_string()];
            tracing::error!(errors = ?errors, "Cannot save the remote overlay; the change is not applied.");
            let r = self.in_force(false, c.version, errors);
            self.last = Some((key, r));
            return None;
        }
        self.overlay = next;
        let cfg = self.effective(file, None);
        let r = self.in_force(true, c.version, bounded(&errors, REPORTED_ERRORS));
        self.last = Some((key, r));
        self.audit(file, audit, control).await;
        Some(cfg)
    }
}

/// Merge `desired` into `base` sensor by sensor: a sensor's change that is refused (unknown sensor, a key that may
/// not be set remotely, a value the file's checks refuse, over the shadow's room) is left out with its errors; the
/// rest is taken.
fn merge_each(
    base: Overlay,
    desired: &serde_json::Value,
    known: &[String],
    file: &Config,
) -> (Overlay, Vec<String>) {
    let mut next = base;
    let mut errors = Vec::new();
    let Some(top) = desired.as_object() else {
        return (next, vec!["desired: expected an object".into()]);
    };
    for (k, v) in top {
        let Some(sensors) = v.as_object().filter(|_| k == "alarms") else {
            // Not ours (refused by name), or `alarms: null` (clears every override).
            let one = serde_json::json!({ k: v });
            match next.merged(&one, known) {
                Ok(n) => next = n,
                Err(e) => errors.extend(e),
            }
            continue;
        };
        for (sensor, sv) in sensors {
            let one = serde_json::json!({ "alarms": { sensor: sv } });
            let candidate = match next.merged(&one, known) {
                Ok(n) => n,
                Err(e) => {
                    errors.extend(e);
                    continue;
                }
            };
            if let Some(keys) = candidate.alarms.get(sensor) {
                let single = Overlay {
                    alarms: std::collections::BTreeMap::from([(sensor.clone(), keys.clone())]),
                    ..Overlay::default()
                };
                if let Err(e) = single.apply(file) {
                    errors.extend(
                        e.into_iter()
                            .map(|m| format!("desired.alarms.{sensor}: {m}")),
                    );
                    continue;
                }
            }
            let size = serde_json::to_string(&candidate.alarms).map_or(0, |t| t.len());
            if size > MAX_REPORTED_ALARMS {
                errors.push(format!(
                    "desired.alarms.{sensor}: the overrides would take {size} bytes of the shadow's reported \
                     document, more than the {MAX_REPORTED_ALARMS} they may (AWS IoT keeps 8 kB in all)"
                ));
                continue;
            }
            next = candidate;
        }
    }
    (next, errors)
}

/// The audit's `changes`: every key whose value changed, with the old and new value (`from: "file"` when an
/// override went and the file's value applies again).
fn audit_changes(before: &Overlay, after: &Overlay, file: &Config) -> Vec<serde_json::Value> {
    let before = before.changes(file);
    let after = after.changes(file);
    let mut changes: Vec<_> = after
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
        .chain(
            before
                .iter()
                .filter(|b| !after.iter().any(|a| a.0 == b.0 && a.1 == b.1))
                .map(|(s, k, file_v, old)| {
                    serde_json::json!({"key": format!("{s}.{k}"), "old": old, "new": file_v, "from": "file"})
                }),
        )
        .collect();
    if changes.len() > AUDIT_CHANGES {
        let more = changes.len() - AUDIT_CHANGES;
        changes.truncate(AUDIT_CHANGES);
        changes.push(serde_json::json!({ "more": more }));
    }
    changes
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

/// A short, stable name for a list of refusals.
fn digest(errors: &[String]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    errors.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests;
