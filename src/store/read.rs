//! The store's read side: reading batches for the sinks, `buffer export` and the tests; alert events for the
//! sinks, the KPI report and `alerts`; the counts `buffer status` shows. The write side (registering sensors,
//! appending, the cursors' moves) is in the module root.

use super::{codec, Batch, Store, StoreError};
use crate::model::kpi::Tally;
use crate::model::{Alert, AlertState, Reading, Timestamp};
use rusqlite::params;

impl Store {
    /// Up to `limit` reading batches with id > `after`, oldest first, ending with the batch that brings the
    /// readings to `readings` (by the count stored beside each batch): a sink that takes 1,000 readings at a time
    /// does not decompress and decode 16 batches of 10,000 to use one. Batches that fail to decode are returned
    /// empty (and logged) so a cursor can move past them.
    pub fn batches_for(
        &mut self,
        after: i64,
        limit: usize,
        readings: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        self.batches_where(after, Timestamp(i64::MIN), limit, readings)
    }

    /// Up to `limit` reading batches with id > `after`, however many readings they hold (the tests' view).
    #[cfg(test)]
    pub fn batches_after(&mut self, after: i64, limit: usize) -> Result<Vec<Batch>, StoreError> {
        self.batches_for(after, limit, usize::MAX)
    }

    /// Up to `limit` reading batches with id > `after` whose newest sample is at or after `since`, oldest first.
    pub(crate) fn batches_where(
        &mut self,
        after: i64,
        since: Timestamp,
        limit: usize,
        readings: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let raw: Vec<(i64, Vec<u8>)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, count, data FROM batches WHERE id > ?1 AND last_ts >= ?2 ORDER BY id LIMIT ?3",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![after, since.0, limit])?;
            let mut raw = Vec::new();
            let mut n = 0usize;
            while n < readings {
                let Some(r) = rows.next()? else { break };
                // The stored count only bounds the work; what is returned is what the batch decodes to.
                n = n.saturating_add(usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0));
                raw.push((r.get(0)?, r.get(2)?));
            }
            raw
        };
        let mut out = Vec::with_capacity(raw.len());
        for (id, data) in raw {
            let decoded = codec::inflate(&mut self.zstd, &data).and_then(|raw| {
                codec::decode_map(&raw, |r| {
                    Some(Reading {
                        sensor: self.sensor_name(r.sensor)?,
                        ts: r.ts,
                        value: r.value,
                        quality: r.quality,
                        exact: r.exact,
                    })
                })
            });
            let readings = match decoded {
                Some((n, named)) => {
                    if named.len() < n {
                        // Never invent a name (it would reach InfluxDB as a new series).
                        tracing::error!(
                            batch = id,
                            dropped = n - named.len(),
                            "Readings of a stored batch name no known sensor; they are skipped."
                        );
                    }
                    named
                }
                None => {
                    tracing::error!(
                        batch = id,
                        "A stored reading batch is corrupt and is skipped."
                    );
                    // Counted for `buffer status`; a failure to count must not stop delivery.
                    let _ = self.conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('corrupt_batches', '1')
                         ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                        [],
                    );
                    Vec::new()
                }
            };
            out.push(Batch { id, readings });
        }
        Ok(out)
    }

    /// Up to `limit` alert events with seq > `after`, oldest first.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, Alert)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, payload FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, payload) = row?;
            match serde_json::from_str(&payload) {
                Ok(a) => out.push((seq, a)),
                Err(e) => {
                    tracing::error!(seq, error = %e, "A stored alert event is unreadable and is skipped.")
                }
            }
        }
        Ok(out)
    }

    /// The alert events stamped in `[since, until)`, oldest first (the alarm report's standing alarms).
    pub fn events_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        self.each_event_between(since, until, None, |a| out.push(a))?;
        Ok(out)
    }

    /// The alarm KPIs' counts of `[since, until)`: the period's raises, streamed through a tally (a day of events
    /// is never held).
    pub fn kpi_tally(&self, since: Timestamp, until: Timestamp) -> Result<Tally, StoreError> {
        let mut tally = Tally::new((since, until));
        self.each_event_between(since, until, Some(AlertState::Raised), |a| tally.add(&a))?;
        Ok(tally)
    }

    /// Hand each alert event stamped in `[since, until)` (only those in `state`, when given) to `f`, oldest first,
    /// one at a time: the alarm KPIs read a day of events without holding it.
    pub fn each_event_between(
        &self,
        since: Timestamp,
        until: Timestamp,
        state: Option<AlertState>,
        mut f: impl FnMut(Alert),
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT payload FROM events WHERE ts >= ?1 AND ts < ?2 AND (?3 IS NULL OR state = ?3) ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![since.0, until.0, state.map(AlertState::as_str)])?;
        while let Some(row) = rows.next()? {
            let payload = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            if let Ok(a) = serde_json::from_str(payload) {
                f(a);
            }
        }
        Ok(())
    }

    /// The newest reading batch id and alert event seq held (0 when none).
    pub fn newest(&self) -> Result<(i64, i64), StoreError> {
        let b: i64 = self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM batches", [], |r| r.get(0))?;
        let e: i64 = self
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
        Ok((b, e))
    }

    /// Number of readings and events held.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        let r: i64 =
            self.conn
                .query_row("SELECT coalesce(sum(count), 0) FROM batches", [], |r| {
                    r.get(0)
                })?;
        let e: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        Ok((r as u64, e as u64))
    }

    /// All stored alert events (for tests and export).
    pub fn all_events(&self) -> Result<Vec<(i64, Alert)>, StoreError> {
        self.events_after(0, usize::MAX >> 1)
    }
}
