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

/// Room kept free beside the database for its write-ahead log (the WAL is checkpointed at this size).
pub(super) const WAL_BUDGET: u64 = 4 * 1024 * 1024;

/// Widen a C size (32 bits on armv7, 64 on the rest) to u64.
#[allow(clippy::useless_conversion)]
fn wide<T: Into<u64>>(v: T) -> u64 {
    v.into()
}

/// The process's file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`), if any: the database file and its WAL
/// can each grow only to it.
pub(super) fn file_size_limit() -> Option<u64> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `l`, a live local of the right type.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut l) } == 0;
    (ok && l.rlim_cur != libc::RLIM_INFINITY).then_some(wide(l.rlim_cur))
}

/// Free bytes for an unprivileged writer on the file system holding `path`.
fn free_space(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the right type; statvfs fills it on success.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    Some(wide(st.f_bavail).saturating_mul(wide(st.f_frsize)))
}

/// What the store may hold, from the configured cap and what the machine leaves: the file-size limit (the
/// database must stay below it with room to grow between two checks) and the free space (the files as they are
/// plus what is free, less the WAL's budget). Enforced before every write fails rather than after.
pub(super) fn room(max_bytes: u64, fsize_limit: Option<u64>, files_and_free: Option<u64>) -> u64 {
    let mut room = max_bytes;
    if let Some(l) = fsize_limit {
        room = room.min(l / 10 * 7);
    }
    if let Some(total) = files_and_free {
        room = room.min(total.saturating_sub(WAL_BUDGET) / 10 * 9);
    }
    room
}

impl Store {
    /// What this store may hold now: `max_bytes` lowered to what the file system and the file-size limit leave
    /// (see [`room`]).
    pub fn room(&self, max_bytes: u64) -> u64 {
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let files = size(&self.path) + size(std::path::Path::new(&wal));
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        room(
            max_bytes,
            file_size_limit(),
            free_space(dir).map(|f| f.saturating_add(files)),
        )
    }

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
