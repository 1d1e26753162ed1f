//! Opening the store: the schema, the writer's lock on the data directory, crash recovery (`quick_check` after an
//! unclean shutdown) and moving a corrupt file aside.

use super::{Store, StoreError, DB_FILE};
use crate::model::SensorId;
use crate::model::Timestamp;
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL, count INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL,
    sensor TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sensors (idx INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT NOT NULL, stream TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (sink, stream));
CREATE TABLE IF NOT EXISTS dead_letters (sink TEXT NOT NULL, stream TEXT NOT NULL, pos INTEGER NOT NULL,
    ts INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// The schema's version (`PRAGMA user_version`), and how each version is reached from the one before: applied in
/// order, in one transaction, by the writer when it opens a store. Version 1 is the schema of the releases before
/// versioning (their stores read `user_version` 0 and have every table). A store newer than this list is refused.
/// Append a migration for every schema change; never edit one that shipped.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, SCHEMA),
    // record_skip looks a dead letter up by (sink, stream, pos) before writing it.
    (
        2,
        "CREATE INDEX IF NOT EXISTS dead_letters_item ON dead_letters (sink, stream, pos);",
    ),
    // The alarm KPIs read a period's events by time (every `kpi_interval`; a scan of the whole retention before).
    (3, "CREATE INDEX IF NOT EXISTS events_ts ON events (ts);"),
];

/// The schema version this binary writes.
pub(super) const SCHEMA_VERSION: u32 = 3;

/// Bring the store to [`SCHEMA_VERSION`] (writer), or check it is not newer (readers).
fn migrate(conn: &mut Connection, path: &Path, writer: bool) -> Result<(), StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            path: path.display().to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if !writer || found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()?;
    if found > 0 {
        tracing::info!(path = %path.display(), from = found, to = SCHEMA_VERSION, "Store schema upgraded.");
    }
    Ok(())
}

/// One writer per data directory: an advisory lock (`File::try_lock`, flock on Linux) on `watchpost.lock`, held
/// while the store is open. A second daemon on the same directory is refused with a clear message instead of
/// racing the first.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join("watchpost.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Io(std::io::Error::other(format!(
                "another watchpost is using {} (lock file {}); run one daemon per data_dir",
                dir.display(),
                path.display()
            ))))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io(e)),
    }
}

/// The write-ahead log's size at which a commit checkpoints it: 4 MiB (SQLite's default), or a quarter of a
/// file-size limit.
pub(super) fn wal_budget() -> u64 {
    super::cap::file_size_limit().map_or(super::cap::WAL_BUDGET, |l| {
        (l / 4).min(super::cap::WAL_BUDGET)
    })
}

pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // After a checkpoint the WAL file shrinks back to 8 MiB at most: a long outage does not leave a large WAL
    // (and its shared-memory index) behind on a small card.
    conn.pragma_update(None, "journal_size_limit", 8 * 1024 * 1024)?;
    // A commit checkpoints the WAL at its budget: a WAL that reaches a file-size limit blocks every write, the
    // deletes that would make room included. In the daemon the checkpointer thread (checkpoint.rs) keeps it well
    // below, so this is the backstop.
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        (wal_budget() / 4096).max(8) as i64,
    )?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Small page cache: gateways have little RAM and the access pattern is append + sequential read.
    conn.pragma_update(None, "cache_size", "-512")?;
    // Query-planner stability: without it the bundled SQLite (STAT4) re-plans a cached statement whenever a bound
    // value it looked at changes (e.g. `LIMIT ?`), i.e. a full re-prepare on every sink read.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

impl Store {
    /// Open (or create) the store in `dir` for writing, recovering from a corrupt file by moving it aside.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_data_dir(dir)?;
        let path = dir.join(DB_FILE);
        let opened = match Self::open_inner(&path, true) {
            Ok(s) => Ok(s),
            // Only a file SQLite calls corrupt (or not a database) is moved aside; a lock, a permission problem or
            // a full disk is reported and the file is left alone.
            Err(e) if path.exists() && e.is_corrupt() => {
                let aside = dir.join(format!("{DB_FILE}.corrupt-{}", Timestamp::now().0 / 1000));
                tracing::error!(path = %path.display(), moved_to = %aside.display(), error = %e,
                    "The store cannot be opened; moving it aside and starting with a fresh store.");
                std::fs::rename(&path, &aside)?;
                for ext in ["-wal", "-shm"] {
                    let side = dir.join(format!("{DB_FILE}{ext}"));
                    if side.exists() {
                        let _ = std::fs::rename(
                            &side,
                            dir.join(format!(
                                "{DB_FILE}.corrupt-{}{ext}",
                                Timestamp::now().0 / 1000
                            )),
                        );
                    }
                }
                Self::open_inner(&path, true)
            }
            Err(e) => Err(e),
        };
        let mut s = opened?;
        s.lock = Some(lock);
        Ok(s)
    }

    /// Open an existing store for reading and cursor updates (sinks, CLI). Does not create or recover it.
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no store at {} (has the daemon run with this data_dir?)",
                    path.display()
                ),
            )));
        }
        Self::open_inner(&path, false)
    }

    fn open_inner(path: &Path, writer: bool) -> Result<Store, StoreError> {
        let mut conn = connect(path)?;
        if !writer {
            // Sink and CLI connections only move cursors: losing the last few moves to a power cut means a
            // re-delivery (at-least-once), never a loss, so they skip the fsync per commit.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // Readers go through the data once, in order: a small cache is enough.
            conn.pragma_update(None, "cache_size", "-128")?;
        }
        migrate(&mut conn, path, writer)?;
        if !writer {
            // A store created before the daemon ran (the CLI on a fresh data_dir) still has its tables.
            conn.execute_batch(SCHEMA)?;
        }
        let mut s = Store {
            conn,
            path: path.to_path_buf(),
            ids: Default::default(),
            names: Vec::new(),
            was_unclean: false,
            lock: None,
            zstd: Default::default(),
        };
        if writer {
            let clean = s.meta("clean_shutdown")?;
            s.was_unclean = clean.as_deref() == Some("0");
            if s.was_unclean {
                let check: String = s
                    .conn
                    .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
                if check != "ok" {
                    return Err(StoreError::Sql(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                        Some(format!("integrity check failed: {check}")),
                    )));
                }
                tracing::warn!(path = %path.display(), "The previous run did not shut down cleanly; the store was recovered.");
            }
            s.set_meta("clean_shutdown", "0")?;
        }
        s.load_sensors()?;
        Ok(s)
    }

    pub(super) fn load_sensors(&mut self) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("SELECT idx, name FROM sensors")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (idx, name) = row?;
            let name: SensorId = SensorId::from(name);
            if self.names.len() <= idx as usize {
                self.names.resize(idx as usize + 1, None);
            }
            self.names[idx as usize] = Some(name);
            self.ids.insert(name, idx);
        }
        Ok(())
    }
}
