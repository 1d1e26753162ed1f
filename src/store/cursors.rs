//! What each sink has passed: its cursor per stream, its backlog, its state and own values, and the items it
//! could never carry (dead letters).

use super::{Store, StoreError, Stream};
use crate::model::Timestamp;
use rusqlite::{params, OptionalExtension};

/// A cursor only moves forward (a late acknowledgement never moves it back).
const UPSERT_CURSOR: &str = "INSERT INTO cursors (sink, stream, pos) VALUES (?1, ?2, ?3)
     ON CONFLICT(sink, stream) DO UPDATE SET pos = max(pos, excluded.pos)";

/// Advance a cursor (never back) on `conn`, or in a transaction on it.
pub(super) fn save(
    conn: &rusqlite::Connection,
    sink: &str,
    stream: Stream,
    pos: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(UPSERT_CURSOR)?
        .execute(params![sink, stream.as_str(), pos])?;
    Ok(())
}

impl Store {
    /// A sink's own persistent value (e.g. how far telemetry windows were published).
    pub fn sink_meta(&self, sink: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.meta(&format!("sink.{sink}.{key}"))
    }

    /// Set a sink's own persistent value.
    pub fn set_sink_meta(&self, sink: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.set_meta(&format!("sink.{sink}.{key}"), value)
    }

    /// A sink's position in a stream (0 = nothing delivered).
    pub fn cursor(&self, sink: &str, stream: Stream) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT pos FROM cursors WHERE sink = ?1 AND stream = ?2")?
            .query_row(params![sink, stream.as_str()], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Advance a sink's cursor (after the far side acknowledged everything up to `pos`).
    pub fn ack(&mut self, sink: &str, stream: Stream, pos: i64) -> Result<(), StoreError> {
        save(&self.conn, sink, stream, pos)
    }

    /// Items of `stream` after `pos` (readings, or events): a sink's backlog.
    pub fn pending(&self, stream: Stream, pos: i64) -> Result<u64, StoreError> {
        let sql = match stream {
            Stream::Readings => "SELECT coalesce(sum(count), 0) FROM batches WHERE id > ?1",
            Stream::Events => "SELECT count(*) FROM events WHERE seq > ?1",
        };
        let n: i64 = self
            .conn
            .prepare_cached(sql)?
            .query_row([pos], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Record how a sink is doing (shown by `buffer status`).
    pub fn set_sink_state(
        &self,
        sink: &str,
        state: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.set_meta(
            &format!("sink_state.{sink}"),
            &format!("{state} (since {})", now.rfc3339()),
        )
    }

    /// Record that the far side rejected item `pos` as malformed, and move the cursor past it.
    pub fn dead_letter(
        &mut self,
        sink: &str,
        stream: Stream,
        pos: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO dead_letters (sink, stream, pos, ts, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![sink, stream.as_str(), pos, Timestamp::now().0, reason],
        )?;
        tx.execute(UPSERT_CURSOR, params![sink, stream.as_str(), pos])?;
        tx.commit()?;
        Ok(())
    }

    /// Record that a sink skipped item `pos` (it can never carry it) without moving the cursor — the runner moves
    /// it in order with the deliveries around it. False when it was recorded already (a crash came between the
    /// record and the cursor): the skip is then not announced again.
    pub fn record_skip(
        &mut self,
        sink: &str,
        stream: Stream,
        pos: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO dead_letters (sink, stream, pos, ts, reason) SELECT ?1, ?2, ?3, ?4, ?5
             WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE sink = ?1 AND stream = ?2 AND pos = ?3)",
            params![sink, stream.as_str(), pos, Timestamp::now().0, reason],
        )?;
        Ok(n == 1)
    }
}
