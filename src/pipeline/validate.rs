//! Validation: decides each reading's quality before any threshold sees it. Pure: no I/O, no clock.
//!
//! NaN/∞ → `invalid`; outside `valid` → `out_of_range`; the same value for `stuck_after` → `stuck` (these three
//! raise SENSOR_FAULT); faster than `max_rate` → `spike` (up to three in a row, then the new level is believed).
//! Text readings (a Modbus STRING) are good as read: there is no number to check.

use super::alarm::SensorState;
use super::SensorRules;
use crate::model::{Direction, Quality, Reading};

/// Why a reading is a fault, and the bound it violated.
pub(super) struct Fault {
    pub reason: String,
    pub bound: Option<f64>,
    pub direction: Option<Direction>,
}

/// Set `r.quality`; return the fault to raise, if any. Updates the stuck and spike references in `st`.
pub(super) fn check(r: &mut Reading, rules: &SensorRules, st: &mut SensorState) -> Option<Fault> {
    if r.is_text() {
        // Text is not a number: nothing to range-check, compare or call stuck; it still says the sensor answers.
        r.quality = Quality::Good;
        return None;
    }
    let v = r.value;
    let now = r.ts;
    if !v.is_finite() {
        r.quality = Quality::Invalid;
        return Some(Fault {
            reason: format!("value is {v}"),
            bound: None,
            direction: None,
        });
    }
    if let Some(range) = rules.valid {
        if let Some(min) = range.min.filter(|m| v < *m) {
            r.quality = Quality::OutOfRange;
            return Some(Fault {
                reason: format!("value {v} below valid.min {min}"),
                bound: Some(min),
                direction: Some(Direction::Low),
            });
        }
        if let Some(max) = range.max.filter(|m| v > *m) {
            r.quality = Quality::OutOfRange;
            return Some(Fault {
                reason: format!("value {v} above valid.max {max}"),
                bound: Some(max),
                direction: Some(Direction::High),
            });
        }
    }
    if let Some(limit) = rules.stuck_after {
        match st.same_since {
            Some((same, since)) if same == v => {
                if now.since(since) >= limit {
                    r.quality = Quality::Stuck;
                    return Some(Fault {
                        reason: format!(
                            "value stuck at {v} for {}",
                            humantime::format_duration(now.since(since))
                        ),
                        bound: None,
                        direction: None,
                    });
                }
            }
            _ => st.same_since = Some((v, now)),
        }
    }
    if let (Some(rate), Some((pt, pv))) = (rules.max_rate, st.last_value) {
        let dt = (now.0 - pt.0) as f64 / 1000.0;
        if dt > 0.0 && ((v - pv).abs() / dt) > rate && st.spikes < 3 {
            r.quality = Quality::Spike;
            st.spikes += 1;
        }
    }
    None
}
