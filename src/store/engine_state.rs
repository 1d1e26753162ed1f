//! The alarm engine's saved state: a full snapshot (every sensor, zstd-compressed JSON) written every few seconds
//! and at shutdown, and between two full ones the changes each alert commit carries: the gateway-wide part (id
//! counter, operator request ids, the flood window) and the sensors whose transitions it holds. A commit's share of
//! the state then follows what changed, not how many sensors the gateway has (2,000 sensors ≈ 700 kB of JSON).
//!
//! All of it lives in `meta`: `engine_state_z` (the full snapshot), `engine_head` and `engine_sensor:<id>` (the
//! changes since it, deleted by the next full one). A release that knows only the full snapshot reads it and
//! ignores the rest: at most one full-snapshot interval older than the newest state, nothing after a clean
//! shutdown.

use super::{codec, Store, StoreError, UPSERT_META};
use rusqlite::{params, OptionalExtension};

/// The alarm state a commit carries (see the module doc).
#[derive(Debug, Clone, Copy)]
pub enum EngineState<'a> {
    /// Every sensor's state: replaces everything saved before.
    Full(&'a str),
    /// What changed since the last full snapshot: the gateway-wide part, and states of sensors by id.
    Changes {
        /// The gateway-wide part (a snapshot without sensors).
        head: &'a str,
        /// `(sensor id, its state)`.
        sensors: &'a [(String, String)],
    },
}

/// The alarm state as saved: restore `full`, then `head`, then each of `sensors` over it.
#[derive(Debug, Default, PartialEq)]
pub struct SavedState {
    /// The last full snapshot.
    pub full: Option<String>,
    /// The gateway-wide part of the changes since it.
    pub head: Option<String>,
    /// Sensor states changed since it, by sensor id.
    pub sensors: Vec<(String, String)>,
}

const SENSOR_KEY: &str = "engine_sensor:";
/// Every key that starts with [`SENSOR_KEY`] sorts below this one (`;` follows `:`).
const SENSOR_KEY_END: &str = "engine_sensor;";

/// Write `st` in the commit's transaction.
pub(super) fn save(
    tx: &rusqlite::Transaction<'_>,
    z: &mut codec::Zstd,
    st: EngineState<'_>,
) -> Result<(), StoreError> {
    match st {
        EngineState::Full(json) => {
            // Repetitive JSON: 100 sensors ≈ 35 kB → ≈ 2 kB, a page or two.
            let z = z.compress(json.as_bytes())?;
            tx.prepare_cached(UPSERT_META)?
                .execute(params!["engine_state_z", z])?;
            tx.prepare_cached(
                "DELETE FROM meta WHERE key = 'engine_head' OR (key >= ?1 AND key < ?2)",
            )?
            .execute(params![SENSOR_KEY, SENSOR_KEY_END])?;
        }
        EngineState::Changes { head, sensors } => {
            let mut up = tx.prepare_cached(UPSERT_META)?;
            up.execute(params!["engine_head", head])?;
            for (id, state) in sensors {
                up.execute(params![format!("{SENSOR_KEY}{id}"), state])?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// The saved alarm-engine state; `None` when nothing was ever saved.
    pub fn engine_state(&self) -> Result<Option<SavedState>, StoreError> {
        let z: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'engine_state_z'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let full = match z {
            Some(z) => {
                let raw = zstd::stream::decode_all(z.as_slice())?;
                Some(String::from_utf8(raw).map_err(|e| StoreError::Io(std::io::Error::other(e)))?)
            }
            // Written by 0.1, uncompressed.
            None => self.meta("engine_state")?,
        };
        let head = self.meta("engine_head")?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2 ORDER BY key",
        )?;
        let sensors = stmt
            .query_map(params![SENSOR_KEY, SENSOR_KEY_END], |r| {
                let key: String = r.get(0)?;
                Ok((key[SENSOR_KEY.len()..].to_string(), r.get(1)?))
            })?
            .collect::<Result<Vec<(String, String)>, _>>()?;
        if full.is_none() && head.is_none() && sensors.is_empty() {
            return Ok(None);
        }
        Ok(Some(SavedState {
            full,
            head,
            sensors,
        }))
    }
}
