//! What a sink is started with.

use super::{SinkCtl, SinkError};
use crate::channels::Signals;
use crate::config::Config;
use crate::metrics::SharedMetrics;
use crate::store::SharedStore;
use std::sync::Arc;

/// Everything a sink is started with, owned and cheap to clone. A sink's constructor
/// (`fn open(&SinkContext) -> Result<Self, SinkError>`) takes what it needs from it, and is called with it again
/// while it fails; no sink keeps a copy of these handles of its own.
#[derive(Clone)]
pub struct SinkContext {
    /// The sink's name: its cursor in the store, its metrics label, its log field.
    pub name: &'static str,
    /// The whole configuration (its section, the gateway id, the sensors).
    pub cfg: Arc<Config>,
    /// The reader connection the sinks share.
    pub store: SharedStore,
    /// Commit signals, the live state, the control channel.
    pub signals: Signals,
    /// Counters.
    pub metrics: SharedMetrics,
    /// This sink's stop and drain tokens.
    pub ctl: SinkCtl,
}

/// A sink's constructor.
pub type Open<S> = fn(&SinkContext) -> Result<S, SinkError>;

#[cfg(test)]
impl SinkContext {
    /// A context over `store` with idle signals (unit tests of a sink's constructor and deliveries).
    pub(crate) fn for_tests(name: &'static str, cfg: Config, store: SharedStore) -> SinkContext {
        use tokio::sync::{mpsc, watch};
        SinkContext {
            name,
            cfg: Arc::new(cfg),
            store,
            signals: Signals {
                readings: watch::channel(0).1,
                events: watch::channel(0).1,
                live: watch::channel(Arc::default()).1,
                fresh: Default::default(),
                handoff: Default::default(),
                control: mpsc::channel(1).0,
                remote: None,
                remote_in_force: None,
            },
            metrics: Arc::default(),
            ctl: SinkCtl::default(),
        }
    }
}
