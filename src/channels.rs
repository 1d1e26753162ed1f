//! The channels between the ingest thread and the sinks: what the store publishes after each commit
//! ([`Signals`]) and what the ingest thread is asked to do besides storing readings ([`Control`]). The data they
//! carry is plain [`crate::model`]; the channels live here, so the model stays free of a runtime.

use crate::model::{
    AlertState, CommandResult, Live, Readings, RemoteChange, RemoteResult, Request,
};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// What the ingest thread (the store's writer and the alarm engine's owner) is asked to do besides readings.
#[derive(Debug)]
pub enum Control {
    /// An operator command, answered once its events are committed.
    Command(Request, oneshot::Sender<CommandResult>),
    /// Store and publish an audit event (CONFIG_CHANGE `applied`/`rejected`) with this reason and detail.
    Audit {
        /// `Applied` or `Rejected`.
        state: AlertState,
        /// One line for people.
        reason: String,
        /// The detail for machines.
        change: serde_json::Value,
        /// Told once the event is committed.
        done: Option<oneshot::Sender<()>>,
    },
    /// Store and publish a DEAD_LETTER event: a sink skipped an item it can never carry.
    DeadLetter {
        /// What was skipped, by which sink, and why.
        reason: String,
    },
}

/// New-data signals for sinks: the newest committed batch id and event seq, and the live state.
#[derive(Clone)]
pub struct Signals {
    /// Newest reading batch id.
    pub readings: watch::Receiver<i64>,
    /// Newest alert event seq.
    pub events: watch::Receiver<i64>,
    /// Live state for the device shadow.
    pub live: watch::Receiver<Arc<Live>>,
    /// The last commit's items, for a sink that is caught up (it need not read them back from the store).
    pub fresh: crate::store::Fresh,
    /// Cursor moves the sinks hand to the ingest thread's next commit.
    pub handoff: crate::store::Handoff,
    /// Operator commands and audit events to the ingest thread.
    pub control: mpsc::Sender<Control>,
    /// Remote alarm settings from the device shadow (when `apply_desired` is on).
    pub remote: Option<mpsc::Sender<RemoteChange>>,
    /// The last outcome of remote settings — a change answered, or a reload that changed the overrides
    /// (`watchpost config reset-remote`) — for the shadow's `reported` (a restarted MQTT session starts from it).
    pub remote_in_force: Option<watch::Receiver<Option<RemoteResult>>>,
}

/// Judges a batch of readings at once on the caller's thread, when the ingest thread allows it (`ingest/inline.rs`).
pub trait Inline: Send + Sync {
    /// Judge and hold `batch` now, or give it back to be queued.
    fn take(&self, batch: Readings) -> Result<(), Readings>;
    /// A batch is about to be queued: nothing is judged inline until the ingest thread has taken it (per-sensor
    /// order).
    fn queued(&self);
}

/// Where sources hand over their readings: judged at once where the ingest thread allows it, else queued to it
/// (a bounded channel: a full queue holds the source back).
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Readings>,
    inline: Option<Arc<dyn Inline>>,
}

impl Intake {
    /// Every batch queued to the ingest thread.
    pub fn new(tx: mpsc::Sender<Readings>) -> Intake {
        Intake { tx, inline: None }
    }

    /// Batches judged at once by `inline` where it allows, queued otherwise.
    pub fn with_inline(tx: mpsc::Sender<Readings>, inline: Arc<dyn Inline>) -> Intake {
        Intake {
            tx,
            inline: Some(inline),
        }
    }

    /// Hand over a batch; `Err` once the ingest thread is gone.
    pub async fn send(&self, batch: Readings) -> Result<(), Closed> {
        let batch = match &self.inline {
            Some(i) => match i.take(batch) {
                Ok(()) => return Ok(()),
                Err(b) => {
                    i.queued();
                    b
                }
            },
            None => batch,
        };
        self.tx.send(batch).await.map_err(|_| Closed)
    }
}

/// The ingest thread has stopped taking readings.
#[derive(Debug)]
pub struct Closed;
