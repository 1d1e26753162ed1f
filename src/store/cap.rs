//! Space: how much the store uses, the size cap (oldest reading batches go first, alert events never) and
//! retention (what every consumer has passed and is old enough).

use super::{Consumer, Store, StoreError, Stream, UPSERT_META};
use crate::model::Timestamp;
use rusqlite::params;
use std::time::Duration;

/// What the cap dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dropped {
    /// Batches deleted.
    pub batches: u64,
    /// Readings deleted.
    pub readings: u64,
    /// Oldest sample dropped.
    pub first: Timestamp,
    /// Newest sample dropped.
    pub last: Timestamp,
}

impl Store {
    /// Bytes in use inside the database (pages not on the free list), WAL content included.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let one = |sql: &str| -> Result<i64, StoreError> {
            Ok(self.conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
        };
        let (pc, fl, ps) = (
            one("PRAGMA page_count")?,
            one("PRAGMA freelist_count")?,
            one("PRAGMA page_size")?,
        );
        Ok(((pc - fl).max(0) * ps) as u64)
    }

    /// Readings dropped by the cap so far.
    pub fn dropped_readings(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta("dropped_readings")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Delete the oldest reading batches until the store uses at most `max_bytes` (target 90 % of it).
    /// Alert events are never deleted here.
    pub fn enforce_cap(&mut self, max_bytes: u64) -> Result<Option<Dropped>, StoreError> {
        if self.used_bytes()? <= max_bytes {
            return Ok(None);
        }
        let target = max_bytes / 10 * 9;
        let mut d = Dropped {
            first: Timestamp(i64::MAX),
            ..Default::default()
        };
        loop {
            let oldest: Vec<(i64, i64, i64, i64)> = {
                let mut stmt = self.conn.prepare(
                    "SELECT id, first_ts, last_ts, count FROM batches ORDER BY id LIMIT 8",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            if oldest.is_empty() {
                break;
            }
            let max_id = oldest.last().map(|o| o.0).unwrap_or(0);
            for (_, f, l, c) in &oldest {
                d.batches += 1;
                d.readings += *c as u64;
                d.first = d.first.min(Timestamp(*f));
                d.last = d.last.max(Timestamp(*l));
            }
            let total = self.dropped_readings()? + oldest.iter().map(|o| o.3 as u64).sum::<u64>();
            let tx = self.conn.transaction()?;
            tx.execute("DELETE FROM batches WHERE id <= ?1", [max_id])?;
            tx.execute(UPSERT_META, params!["dropped_readings", total.to_string()])?;
            tx.commit()?;
            if self.used_bytes()? <= target {
                break;
            }
        }
        Ok((d.batches > 0).then_some(d))
    }

    /// Delete data every consumer has passed and that is older than `retention`. Returns rows deleted.
    pub fn prune(
        &mut self,
        consumers: &[Consumer],
        retention: Duration,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let cutoff = now.0 - retention.as_millis() as i64;
        let mut deleted = 0;
        for (stream, table, key, ts) in [
            (Stream::Readings, "batches", "id", "last_ts"),
            (Stream::Events, "events", "seq", "ts"),
        ] {
            let mut limit = i64::MAX;
            for (sink, s) in consumers {
                if *s == stream {
                    limit = limit.min(self.cursor(sink, stream)?);
                }
            }
            deleted += self.conn.execute(
                &format!("DELETE FROM {table} WHERE {key} <= ?1 AND {ts} < ?2"),
                params![limit, cutoff],
            )? as u64;
        }
        Ok(deleted)
    }
}
