//! The alarm engine's state in the store: restored when the thread starts; with each commit either all of it
//! (every SNAPSHOT_EVERY, after an operator command or a reload, at shutdown) or only what the commit's alert
//! transitions changed (see store/engine_state.rs).

use super::{Writer, SNAPSHOT_EVERY};
use crate::model::Timestamp;
use crate::pipeline::snapshot::Changes;
use crate::pipeline::Engine;
use crate::store::{EngineState, SavedState};
use std::time::Instant;

/// The alarm state one commit carries.
pub(super) enum Snap {
    /// Every sensor (JSON of the whole engine).
    Full(String),
    /// What the commit's transitions changed.
    Changes(Changes),
}

impl Snap {
    pub(super) fn as_state(&self) -> EngineState<'_> {
        match self {
            Snap::Full(s) => EngineState::Full(s),
            Snap::Changes(c) => EngineState::Changes {
                head: &c.head,
                sensors: &c.sensors,
            },
        }
    }
}

impl Writer {
    /// The alarm state for a commit: everything when a full snapshot is due, else the states of the sensors
    /// whose transitions wait in `unsaved_alerts`.
    pub(super) fn snap(&self) -> Snap {
        if self.full_snapshot_due() {
            return Snap::Full(self.engine.snapshot());
        }
        let ids = self.unsaved_alerts.iter().map(|a| a.sensor.as_str());
        Snap::Changes(self.engine.changes(ids))
    }

    /// Whether the next commit carries every sensor's state.
    pub(super) fn full_snapshot_due(&self) -> bool {
        self.snap_at.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY)
    }

    /// `snap` is committed.
    pub(super) fn snap_saved(&mut self, snap: &Snap) {
        if matches!(snap, Snap::Full(_)) {
            self.snap_at = Some(Instant::now());
        }
    }
}

/// Restore what the store saved: the full snapshot, then the changes since it.
pub(super) fn restore(engine: &mut Engine, saved: &SavedState, now: Timestamp) {
    let full = match saved.full.as_deref() {
        Some(full) => engine.restore(full, now),
        None => Ok(Default::default()),
    };
    let changes = full.and_then(|f| {
        engine
            .restore_changes(saved.head.as_deref(), &saved.sensors, now)
            .map(|c| (f, c))
    });
    match changes {
        Ok((f, c)) => tracing::debug!(
            sensors = f.sensors,
            changed = c.sensors,
            unreadable = f.unreadable.len() + c.unreadable.len(),
            "Alarm state restored."
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Saved alarm state is unreadable; starting with no active alarms.")
        }
    }
}
