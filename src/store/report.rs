//! Reading the store back for people: `buffer status` (size, backlog per sink, dead letters, sink state) and
//! `buffer export`.

use super::{Consumer, Store, StoreError, Stream, DB_FILE};
use crate::model::{Reading, Timestamp};
use rusqlite::params;
use std::path::PathBuf;

/// Backlog of one sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    /// Sink name.
    pub sink: String,
    /// Stream.
    pub stream: &'static str,
    /// Items not yet delivered.
    pub pending: u64,
    /// Age of the oldest undelivered item.
    pub oldest_age_s: Option<f64>,
    /// Items dead-lettered: rejected by the far side as malformed, or too large for it ever to carry.
    pub dead_letters: u64,
    /// What the daemon last recorded about this sink (`running`, `cannot start: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `buffer status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Path of the store.
    pub path: PathBuf,
    /// Bytes on disk (database + WAL).
    pub file_bytes: u64,
    /// Bytes in use inside the database.
    pub used_bytes: u64,
    /// Reading batches held.
    pub batches: u64,
    /// Readings held.
    pub readings: u64,
    /// Alert events held.
    pub events: u64,
    /// Oldest reading held.
    pub oldest_reading: Option<String>,
    /// Newest reading held.
    pub newest_reading: Option<String>,
    /// Readings dropped by the size cap since the store was created.
    pub dropped_readings: u64,
    /// Corrupt reading batches met (and skipped) by sinks or export.
    pub corrupt_batches: u64,
    /// Per sink.
    pub sinks: Vec<SinkStatus>,
}

impl Store {
    /// Backlog and size report.
    pub fn status(&self, consumers: &[Consumer], now: Timestamp) -> Result<Status, StoreError> {
        let (readings, events) = self.counts()?;
        let batches: i64 = self
            .conn
            .query_row("SELECT count(*) FROM batches", [], |r| r.get(0))?;
        let (oldest, newest): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT min(first_ts), max(last_ts) FROM batches", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let file_bytes = [DB_FILE.to_string(), format!("{DB_FILE}-wal")]
            .iter()
            .filter_map(|f| self.path.parent().map(|d| d.join(f)))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let mut sinks = Vec::new();
        for (sink, stream) in consumers {
            let pos = self.cursor(sink, *stream)?;
            let (pending, oldest_ts): (i64, Option<i64>) = match stream {
                Stream::Readings => self.conn.query_row(
                    "SELECT coalesce(sum(count), 0), min(first_ts) FROM batches WHERE id > ?1",
                    [pos],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?,
                Stream::Events => self.conn.query_row(
                    "SELECT count(*), min(ts) FROM events WHERE seq > ?1",
                    [pos],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?,
            };
            let dead: i64 = self.conn.query_row(
                "SELECT count(*) FROM dead_letters WHERE sink = ?1 AND stream = ?2",
                params![sink, stream.as_str()],
                |r| r.get(0),
            )?;
            sinks.push(SinkStatus {
                sink: sink.clone(),
                stream: stream.as_str(),
                pending: pending as u64,
                oldest_age_s: oldest_ts.map(|t| (now.0 - t).max(0) as f64 / 1000.0),
                dead_letters: dead as u64,
                state: self.meta(&format!("sink_state.{sink}"))?,
            });
        }
        Ok(Status {
            path: self.path.clone(),
            file_bytes,
            used_bytes: self.used_bytes()?,
            batches: batches as u64,
            readings,
            events,
            oldest_reading: oldest.map(|t| Timestamp(t).rfc3339()),
            newest_reading: newest.map(|t| Timestamp(t).rfc3339()),
            dropped_readings: self.dropped_readings()?,
            corrupt_batches: self
                .meta("corrupt_batches")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            sinks,
        })
    }

    /// Readings decoded at a time by [`Store::export`] (64 bytes each in memory; one batch more at most).
    const EXPORT_READINGS: usize = 65_536;

    /// Call `f` for every stored reading with sample time ≥ `since` (and of `sensor`, if given), oldest batch first.
    pub fn export(
        &mut self,
        since: Timestamp,
        sensor: Option<&str>,
        mut f: impl FnMut(&Reading),
    ) -> Result<u64, StoreError> {
        let mut after = 0;
        let mut n = 0;
        loop {
            // Only the batches that can hold readings at or after `since`, in id order, about EXPORT_READINGS at a
            // time (256 batches of a busy gateway's 10,000 readings were 164 MB of decoded readings at once).
            let batches = self.batches_where(after, since, 256, Self::EXPORT_READINGS)?;
            let Some(last) = batches.last().map(|b| b.id) else {
                break;
            };
            for b in &batches {
                for r in &b.readings {
                    if r.ts >= since && sensor.is_none_or(|s| &*r.sensor == s) {
                        f(r);
                        n += 1;
                    }
                }
            }
            after = last;
        }
        Ok(n)
    }
}
