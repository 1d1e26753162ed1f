//! The bounded alert summary the shadow reports: counts per severity, the most severe few, where the rest are.

use super::cut;
use crate::model::{ActiveAlert, Severity};

/// Counts per severity, the most severe `top` alarms (critical first, oldest first), and where all are retained.
pub(super) fn alert_summary(alerts: &[ActiveAlert], topic: &str, top: usize) -> serde_json::Value {
    let critical = alerts
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .count();
    let mut sorted: Vec<&ActiveAlert> = alerts.iter().collect();
    sorted.sort_by(|a, b| {
        (b.severity == Severity::Critical)
            .cmp(&(a.severity == Severity::Critical))
            .then(a.since.cmp(&b.since))
    });
    let listed: Vec<serde_json::Value> = sorted
        .iter()
        .take(top)
        .map(|a| {
            serde_json::json!({
                "id": cut(&a.id, 96),
                "type": a.kind,
                "sensor": cut(&a.sensor, 64),
                "severity": a.severity,
                "since": a.since.rfc3339(),
            })
        })
        .collect();
    serde_json::json!({
        "active": alerts.len(),
        "critical": critical,
        "warning": alerts.len() - critical,
        "top": listed,
        "all": topic,
    })
}
