//! What the last commit added, kept in memory for the sinks that are caught up.
//!
//! A sink that has delivered everything up to the newest commit would otherwise read back, on the blocking pool,
//! the batch the ingest thread has just written: a thread hand-off each way and an SQLite read per commit and
//! stream, to get what was in memory a moment before. The ingest thread puts each commit's items here, with the
//! position just before the first of them; a sink whose cursor is at that position takes them from here. Ids only
//! grow (`AUTOINCREMENT`), so nothing can later appear between. Any other sink (behind, after a restart,
//! after a commit it missed) reads the store as before, so what is delivered never depends on this: no gap, no
//! repeat, the same items.
//!
//! The items are what [`super::Store::batches_for`] and [`super::Store::events_after`] would return: the
//! readings as committed (the codec is lossless), the events parsed back from the payload that was stored.

use super::Batch;
use crate::model::Alert;
use std::sync::{Arc, Mutex};

/// One commit's items of one stream, and where the stream stood before them: the store holds nothing between
/// `after` and `first`, so a cursor anywhere in `after..first` is followed by exactly these items.
struct Commit<T> {
    after: i64,
    first: i64,
    items: Arc<Vec<T>>,
}

impl<T> Commit<T> {
    fn follows(&self, cursor: i64) -> bool {
        self.after <= cursor && cursor < self.first
    }
}

#[derive(Default)]
struct Slots {
    readings: Option<Commit<Arc<Batch>>>,
    events: Option<Commit<(i64, Alert)>>,
}

/// The last commit's items per stream, shared between the ingest thread (writes) and the sinks (read).
#[derive(Clone, Default)]
pub struct Fresh(Arc<Mutex<Slots>>);

impl Fresh {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        crate::util::lock(&self.0)
    }

    /// A committed reading batch; `after` is the id just before it.
    pub fn put_readings(&self, after: i64, batch: Batch) {
        self.slots().readings = Some(Commit {
            after,
            first: batch.id,
            items: Arc::new(vec![Arc::new(batch)]),
        });
    }

    /// Committed events with their sequence numbers; `after` is the seq just before the first.
    pub fn put_events(&self, after: i64, events: Vec<(i64, Alert)>) {
        let first = events.first().map(|(seq, _)| *seq);
        self.slots().events = first.map(|first| Commit {
            after,
            first,
            items: Arc::new(events),
        });
    }

    /// The last commit's reading batches, if they follow `cursor` directly (nothing stored between): shared, not
    /// copied (a copy of a second's readings per sink and commit was 1 % of the gateway workload).
    pub fn readings_after(&self, cursor: i64) -> Option<Vec<Arc<Batch>>> {
        let items = {
            let s = self.slots();
            let c = s.readings.as_ref().filter(|c| c.follows(cursor))?;
            Arc::clone(&c.items)
        };
        Some(Vec::clone(&items))
    }

    /// Up to `limit` of the last commit's events, if they follow `cursor` directly.
    pub fn events_after(&self, cursor: i64, limit: usize) -> Option<Vec<(i64, Alert)>> {
        let items = {
            let s = self.slots();
            let c = s.events.as_ref().filter(|c| c.follows(cursor))?;
            Arc::clone(&c.items)
        };
        Some(items.iter().take(limit.max(1)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Quality, Reading, Timestamp};

    fn batch(id: i64) -> Batch {
        Batch {
            id,
            readings: vec![Reading {
                sensor: "s".into(),
                ts: Timestamp(id),
                value: id as f64,
                quality: Quality::Good,
                exact: None,
            }],
        }
    }

    #[test]
    fn caught_up_sinks_share_the_committed_batch() {
        let f = Fresh::default();
        f.put_readings(4, batch(5));
        let a = f.readings_after(4).expect("follows");
        let b = f.readings_after(4).expect("follows");
        assert!(Arc::ptr_eq(&a[0], &b[0]), "shared, not copied");
        assert_eq!(a[0].readings[0].value, 5.0);
    }

    #[test]
    fn only_a_sink_at_the_position_before_the_commit_takes_it() {
        let f = Fresh::default();
        assert!(f.readings_after(0).is_none(), "nothing committed yet");
        f.put_readings(4, batch(5));
        assert!(
            f.readings_after(3).is_none(),
            "behind: batch 4 would be skipped"
        );
        assert!(f.readings_after(5).is_none(), "already past it");
        // Pruned or dropped up to it: a cursor between the newest stored batch and this one is followed by it.
        f.put_readings(2, batch(5));
        assert_eq!(
            f.readings_after(3).expect("nothing stored between")[0].id,
            5
        );
        f.put_readings(4, batch(5));
        let got = f.readings_after(4).expect("caught up");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, 5);
        // A later commit replaces it: a sink still at 4 must read the store (batch 5 is not here any more).
        f.put_readings(5, batch(6));
        assert!(f.readings_after(4).is_none());
    }
}
