//! The durable store: the single point of truth between sources and sinks.
//!
//! # Invariants
//! * **Durable when.** A reading is *accepted* once the batch holding it is committed; the pipeline commits a
//!   batch every `buffer.flush_interval` (or when `batch_max_readings` is reached), so at most one flush interval
//!   of readings is in memory. An alert event is committed (fsync'd, `synchronous=FULL`) before any sink can see it.
//! * **Delivered when.** Each sink has its own cursor per stream (`readings`, `events`) and advances it only after
//!   the far side acknowledged. While readings flow a move is written with the ingest thread's next commit
//!   ([`Handoff`]); otherwise the sink saves it, not fsync'd one by one (`synchronous=NORMAL` on sink
//!   connections). Either way a crash or a power cut can only leave a cursor behind, which re-delivers. A crash between delivery and ack re-delivers (at-least-once); readings carry their
//!   sample timestamp so a time-series store overwrites instead of duplicating.
//! * **Deleted when.** A batch or event is deleted once every *configured* sink that consumes its stream has passed
//!   it and it is older than `buffer.retention`. A sink that is not configured holds nothing back.
//! * **Cap.** Above `buffer.max_size` the oldest reading batches are deleted, sent or not, counted in
//!   `dropped_readings`, logged, and a `BUFFER_OVERFLOW` alert is raised once per episode (cleared after ten
//!   minutes without drops). Alert events are never
//!   deleted to make room for readings.
//! * **Crash recovery.** SQLite in WAL mode discards a torn tail on open. A file that cannot be opened as a
//!   database is moved aside as `watchpost.db.corrupt-<unix time>` with an ERROR, and a fresh store is created.
//!
//! Storage: SQLite (bundled) so a user can inspect it with `sqlite3`. Reading batches are compressed columnar
//! blobs ([`codec`]), ~3–5 bytes per reading; alerts are JSON rows.

mod cap;
mod checkpoint;
pub mod codec;
mod cursors;
mod engine_state;
mod fresh;
mod handoff;
mod open;
mod read;
mod report;
mod shared;

pub use cap::Dropped;
pub use checkpoint::Checkpointer;
pub use engine_state::{EngineState, SavedState};
pub use fresh::Fresh;
pub use handoff::{Handoff, Move};

pub use report::{SinkStatus, Status};
pub use shared::SharedStore;

use crate::model::{Alert, Reading, SensorId};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::PathBuf;

/// File name of the store inside `data_dir`.
pub const DB_FILE: &str = "watchpost.db";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// File system.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// The store was written by a newer watchpost: its schema is unknown here, so nothing is read or changed.
    #[error(
        "store: {path} has schema version {found}, newer than this watchpost understands ({known}); it was \
         written by a newer release (downgraded package?). Install that release again, or move the file aside to \
         start a new store (its undelivered data stays in the moved file)"
    )]
    Newer {
        /// The file.
        path: String,
        /// Its `user_version`.
        found: u32,
        /// The newest this binary knows.
        known: u32,
    },
}

impl StoreError {
    /// SQLite says the file is damaged or not a database at all.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StoreError::Sql(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
    }

    /// This user may not write the store's files (e.g. they belong to root after `watchpost run` as root).
    pub fn is_permission(&self) -> bool {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied
            ),
            StoreError::Io(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
            _ => false,
        }
    }

    /// The disk (or a file-size limit) is full.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure
            ),
            StoreError::Io(e) => e.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }
}

/// A data stream in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Reading batches.
    Readings,
    /// Alert events.
    Events,
}

impl Stream {
    /// `readings` or `events` (the store's and the logs' name).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Readings => "readings",
            Stream::Events => "events",
        }
    }
}

/// A sink and the stream it consumes.
pub type Consumer = (String, Stream);

/// A batch read back for a sink.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Batch id (the cursor position after delivering it).
    pub id: i64,
    /// Its readings in arrival order.
    pub readings: Vec<Reading>,
}

/// What one [`Store::append`] added.
#[derive(Debug, Default)]
pub struct Appended {
    /// The id just before the batch this commit added (nothing is stored between), and that batch's id (if it
    /// had readings).
    pub batch: Option<(i64, i64)>,
    /// The seq just before this commit's first event (when it had events).
    pub events_after: i64,
    /// The events added: their seqs and the alerts as `events_after` reads them back (`None`: unreadable there).
    pub events: Vec<(i64, Option<Alert>)>,
}

impl Appended {
    /// The events' sequence numbers, in order.
    pub fn seqs(&self) -> Vec<i64> {
        self.events.iter().map(|(s, _)| *s).collect()
    }

    /// The events as a sink reads them from the store.
    pub fn readable_events(&mut self) -> Vec<(i64, Alert)> {
        std::mem::take(&mut self.events)
            .into_iter()
            .filter_map(|(s, a)| a.map(|a| (s, a)))
            .collect()
    }
}

/// A connection to the store. Not `Sync`: each task opens its own (SQLite WAL allows concurrent readers).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    ids: crate::util::SeqMap<SensorId, u32>,
    names: Vec<Option<SensorId>>,
    /// The previous run did not shut down cleanly.
    pub was_unclean: bool,
    /// The writer's advisory lock on the data directory (released when the store is dropped).
    lock: Option<std::fs::File>,
    /// Reused compression contexts (one per connection, like the statement cache).
    zstd: codec::Zstd,
}

const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";

impl Store {
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(UPSERT_META)?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Whether readings of `sensor` were ever stored (its id is registered).
    pub fn knows_sensor(&self, sensor: &str) -> bool {
        self.names.iter().flatten().any(|n| &**n == sensor)
    }

    /// Move the write-ahead log into the database and truncate it (best effort: a failure leaves the log as it
    /// was). A WAL that has reached a file-size or disk limit blocks every write until this runs.
    pub fn checkpoint(&mut self) {
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        match r {
            Ok(0) => {}
            Ok(_) => tracing::debug!("WAL checkpoint blocked by a reader."),
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed."),
        }
    }

    /// Record a clean shutdown (the next open skips the integrity check).
    pub fn mark_clean(&mut self) -> Result<(), StoreError> {
        self.set_meta("clean_shutdown", "1")?;
        self.checkpoint();
        Ok(())
    }

    /// Make every later write fail, as a disk that refuses writes would (tests).
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self) {
        let _ = self.conn.pragma_update(None, "query_only", "ON");
    }

    /// Undo [`Store::refuse_writes`].
    #[cfg(test)]
    pub(crate) fn allow_writes(&self) {
        let _ = self.conn.pragma_update(None, "query_only", "OFF");
    }

    /// The open BUFFER_OVERFLOW alert, if the last run left one active (its clear must still come).
    pub fn overflow_alert(&self) -> Result<Option<Alert>, StoreError> {
        Ok(self
            .meta("overflow_alert")?
            .and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Remember (or, with `None`, forget) the open BUFFER_OVERFLOW alert across restarts.
    pub fn set_overflow_alert(&self, a: Option<&Alert>) -> Result<(), StoreError> {
        match a {
            Some(a) => {
                let j = serde_json::to_string(a).map_err(|e| StoreError::Io(e.into()))?;
                self.set_meta("overflow_alert", &j)
            }
            None => {
                self.conn
                    .execute("DELETE FROM meta WHERE key = 'overflow_alert'", [])?;
                Ok(())
            }
        }
    }

    fn sensor_idx(&mut self, name: &SensorId) -> Result<u32, StoreError> {
        if let Some(i) = self.ids.get(name) {
            return Ok(*i);
        }
        self.register(std::slice::from_ref(name))
    }

    /// Give the sensors of `readings` not seen before their ids, all in one transaction (one fsync, where one per
    /// sensor made the first commit of 2,000 sensors wait 0.3 s here and many seconds on an SD card). Their own
    /// transaction, so a failed batch leaves no trace; memory learns them once it is committed.
    fn register_new(&mut self, readings: &[Reading]) -> Result<(), StoreError> {
        // First seen first (ids in reading order); a set, not a scan of the list, for 2,000 new sensors at once.
        let mut seen = std::collections::HashSet::<&str>::new();
        let mut new: Vec<SensorId> = Vec::new();
        for r in readings {
            if !self.ids.contains_key(&r.sensor) && seen.insert(&*r.sensor) {
                new.push(r.sensor);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        self.register(&new).map(drop)
    }

    /// Register `names` (not known yet) in one transaction; the first one's id.
    fn register(&mut self, names: &[SensorId]) -> Result<u32, StoreError> {
        let first = self.names.len() as u32;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO sensors (idx, name) VALUES (?1, ?2)")?;
            for (i, name) in names.iter().enumerate() {
                insert.execute(params![first + i as u32, &**name])?;
            }
        }
        tx.commit()?;
        for (i, name) in names.iter().enumerate() {
            self.names.push(Some(*name));
            self.ids.insert(*name, first + i as u32);
        }
        Ok(first)
    }

    fn sensor_name(&mut self, idx: u32) -> Option<SensorId> {
        if self
            .names
            .get(idx as usize)
            .and_then(|n| n.as_ref())
            .is_none()
        {
            let _ = self.load_sensors();
        }
        self.names.get(idx as usize).and_then(|n| *n)
    }

    /// Commit a batch of readings (and the engine state) in one transaction. Returns the batch id.
    pub fn append_readings(
        &mut self,
        readings: &[Reading],
        engine_state: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .append(readings, &[], engine_state.map(EngineState::Full))?
            .batch
            .map(|(_, id)| id))
    }

    /// Commit alert events (and the engine state) in one transaction; returns their sequence numbers.
    pub fn append_alerts(
        &mut self,
        alerts: &[Alert],
        engine_state: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .append(&[], alerts, engine_state.map(EngineState::Full))?
            .seqs())
    }

    /// Commit a batch of readings, alert events and the engine state, each optional, in one transaction (one
    /// fsync). Returns what was added, with where each stream stood before it (see [`Appended`]).
    pub fn append(
        &mut self,
        readings: &[Reading],
        alerts: &[Alert],
        engine_state: Option<EngineState<'_>>,
    ) -> Result<Appended, StoreError> {
        self.append_all(readings, alerts, engine_state, &[])
    }

    /// [`Store::append`], with sinks' cursor moves in the same transaction (see [`Handoff`]).
    pub fn append_all(
        &mut self,
        readings: &[Reading],
        alerts: &[Alert],
        engine_state: Option<EngineState<'_>>,
        cursors: &[Move],
    ) -> Result<Appended, StoreError> {
        let mut out = Appended::default();
        if readings.is_empty() && alerts.is_empty() && engine_state.is_none() && cursors.is_empty()
        {
            return Ok(out);
        }
        // Sensor ids are registered in their own transaction (rare), so a failed batch leaves no trace: all the
        // batch's new ones at the first unknown id.
        let mut rows = Vec::with_capacity(readings.len());
        for r in readings {
            let sensor = match self.ids.get(&r.sensor) {
                Some(&i) => i,
                None => {
                    self.register_new(readings)?;
                    self.sensor_idx(&r.sensor)?
                }
            };
            rows.push(codec::Row {
                sensor,
                ts: r.ts,
                value: r.value,
                quality: r.quality,
                exact: r.exact.clone(),
            });
        }
        // IMMEDIATE: the write lock first (waiting out a sink's cursor save under the busy timeout). A deferred
        // transaction would read first (the positions below) and then find the lock taken: SQLite answers BUSY
        // at once there, without waiting, rather than risk a deadlock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !rows.is_empty() {
            let data = codec::encode_with(&mut self.zstd, &rows)?;
            let first = rows.iter().map(|r| r.ts.0).min().unwrap_or(0);
            let last = rows.iter().map(|r| r.ts.0).max().unwrap_or(0);
            tx.prepare_cached(
                "INSERT INTO batches (first_ts, last_ts, count, data) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![first, last, rows.len() as i64, data])?;
            // Where the stream stood: the id before this one. `AUTOINCREMENT` ids only grow, so nothing is or
            // will be stored between (an id before it may be pruned: the newest stored one is then older, and a
            // cursor there reads the store). A `SELECT max(id)` with every commit was 22 us of its ~700.
            let id = tx.last_insert_rowid();
            out.batch = Some((id - 1, id));
        }
        for a in alerts {
            let payload = serde_json::to_string(a).unwrap_or_default();
            // The columns hold the wire names (the same as the payload's; model tests hold the two together).
            let (kind, state) = (a.kind.as_str(), a.state.as_str());
            let ts = a.ts.0;
            tx.prepare_cached(
                "INSERT INTO events (ts, sensor, kind, state, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![ts, a.sensor, kind, state, payload])?;
            let seq = tx.last_insert_rowid();
            if out.events.is_empty() {
                // As for batches: the seq before the first (nothing is or will be stored between).
                out.events_after = seq - 1;
            }
            // What `events_after` will read back: the stored payload parsed (an unreadable one is skipped there).
            out.events
                .push((seq, serde_json::from_str::<Alert>(&payload).ok()));
        }
        if let Some(st) = engine_state {
            engine_state::save(&tx, &mut self.zstd, st)?;
        }
        for &(sink, stream, pos) in cursors {
            cursors::save(&tx, sink, stream, pos)?;
        }
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
