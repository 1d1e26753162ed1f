//! What reaches the ingest thread besides readings: operator commands (executed by the alarm engine and answered
//! once their events are committed), audit events and dead letters — each committed like an alarm transition.

use super::Writer;
use crate::channels::Control;
use crate::model::{AlertState, AlertType, Timestamp};

impl Writer {
    /// Handle one control message (on the ingest thread).
    pub(super) fn control(&mut self, c: Control) {
        match c {
            Control::Command(req, answer) => {
                // Readings up to now are evaluated first; the command's events are committed (with the engine
                // snapshot) before it is answered, so an answer never announces a change a crash could lose.
                let mut out = std::mem::take(&mut self.alerts);
                let result = self.engine.command(&req, self.clock.now(), &mut out);
                self.alerts = out;
                // A command may set state beyond its events' sensors: the commit carries all of it.
                self.snap_at = None;
                if self.alerts.is_empty() && self.unsaved_alerts.is_empty() {
                    // No event (a refusal, a shelf on a quiet sensor): the snapshot still records the request id
                    // and any state the command set.
                    let snap = self.engine.snapshot();
                    match self.store.append_alerts(&[], Some(&snap)) {
                        Ok(_) => self.snap_at = Some(std::time::Instant::now()),
                        Err(e) => {
                            tracing::error!(error = %e, "Cannot save the alarm state after an operator command.")
                        }
                    }
                }
                self.commit_alerts();
                self.publish_live_alerts();
                let _ = answer.send(result);
            }
            Control::Audit {
                state,
                reason,
                change,
                done,
            } => {
                let mut a = self.engine.gateway_alert(
                    AlertType::ConfigChange,
                    state,
                    Timestamp::now(),
                    reason,
                );
                a.operator.change = Some(change);
                self.alerts.push(a);
                self.commit_alerts();
                if self.unsaved_alerts.is_empty() {
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                }
            }
            Control::DeadLetter { reason } => {
                let a = self.engine.gateway_alert(
                    AlertType::DeadLetter,
                    AlertState::Rejected,
                    Timestamp::now(),
                    reason,
                );
                self.alerts.push(a);
                self.commit_alerts();
            }
        }
    }
}
