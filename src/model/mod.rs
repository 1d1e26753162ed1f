//! Core data types shared by sources, the pipeline, the store and sinks.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod alert;
mod control;
pub mod kpi;

mod id;
pub use alert::*;
pub use control::*;
pub use id::SensorId;

/// Milliseconds since the Unix epoch (UTC). The unit of every timestamp in watchpost.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The wall clock now.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_millis() as i64)
    }
    /// `self - other`, zero if `other` is later.
    pub fn since(self, other: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(other.0).max(0) as u64)
    }
    /// RFC 3339 with milliseconds, e.g. `2026-11-27T10:00:00.123Z`. Never panics: times outside the years
    /// 0000–9999 (which RFC 3339 cannot write) are clamped to its first or last millisecond.
    pub fn rfc3339(self) -> String {
        // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in ms since the epoch.
        const MIN: i64 = -62_167_219_200_000;
        const MAX: i64 = 253_402_300_799_999;
        let ms = self.0.clamp(MIN, MAX);
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3_600_000,
            rem / 60_000 % 60,
            rem / 1000 % 60,
            rem % 1000
        )
    }

    /// Parse RFC 3339 (`2026-11-27T10:00:00.123Z`, `…+01:00`; fractions beyond milliseconds are cut).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())?
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut ms = 0i64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let frac = s.get(start..i)?;
            if frac.is_empty() {
                return None;
            }
            let three: String = frac.chars().chain("000".chars()).take(3).collect();
            ms = three.parse().ok()?;
        }
        let offset_min = match s.get(i..)? {
            "Z" | "z" => 0,
            o if o.is_ascii()
                && o.len() == 6
                && matches!(&o[..1], "+" | "-")
                && &o[3..4] == ":" =>
            {
                let v = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
                if &o[..1] == "-" {
                    -v
                } else {
                    v
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
        Some(Timestamp(secs * 1000 + ms))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Serde for alert times: an RFC 3339 string on the wire and in the store, a [`Timestamp`] in memory.
pub mod rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write as RFC 3339.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.rfc3339())
    }

    /// Read RFC 3339.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

/// Serde for an optional [`Timestamp`] as RFC 3339.
pub mod opt_rfc3339 {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write as RFC 3339 (callers skip `None`).
    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.rfc3339()),
            None => s.serialize_none(),
        }
    }

    /// Read RFC 3339 or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => Timestamp::parse_rfc3339(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}"))),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// Quality of a reading, decided by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Quality {
    /// Plausible value; used for thresholds.
    Good = 0,
    /// NaN or infinite.
    Invalid = 1,
    /// Outside the configured `valid` range.
    OutOfRange = 2,
    /// Identical value for longer than `stuck_after`.
    Stuck = 3,
    /// Changed faster than `max_rate`.
    Spike = 4,
}

impl Quality {
    /// Decode from the stored byte; unknown codes map to `Invalid`.
    pub fn from_u8(b: u8) -> Quality {
        match b {
            0 => Quality::Good,
            2 => Quality::OutOfRange,
            3 => Quality::Stuck,
            4 => Quality::Spike,
            _ => Quality::Invalid,
        }
    }
    /// Name used in exports and line protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Invalid => "invalid",
            Quality::OutOfRange => "out_of_range",
            Quality::Stuck => "stuck",
            Quality::Spike => "spike",
        }
    }
}

/// One sample of one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Sensor id from the config.
    pub sensor: SensorId,
    /// Sample time.
    pub ts: Timestamp,
    /// Engineering value (after scaling); for an exact value, its nearest f64 (NaN for text).
    pub value: f64,
    /// Set by validation; sources emit `Good`.
    pub quality: Quality,
    /// The value itself where an f64 cannot hold it: a 64-bit integer register beyond 2^53, or text.
    pub exact: Option<Exact>,
}

/// A value an f64 cannot carry: kept as read through the store, the line protocol and JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Exact {
    /// A signed 64-bit integer.
    Int(i64),
    /// An unsigned 64-bit integer.
    UInt(u64),
    /// Text (a Modbus STRING): never a number, never compared with limits.
    Text(Arc<str>),
}

impl Exact {
    /// The nearest f64 (NaN for text).
    pub fn approx(&self) -> f64 {
        match self {
            Exact::Int(i) => *i as f64,
            Exact::UInt(u) => *u as f64,
            Exact::Text(_) => f64::NAN,
        }
    }
    /// Text, if it is.
    pub fn text(&self) -> Option<&str> {
        match self {
            Exact::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl Reading {
    /// A good reading.
    pub fn new(sensor: SensorId, ts: Timestamp, value: f64) -> Self {
        Reading {
            sensor,
            ts,
            value,
            quality: Quality::Good,
            exact: None,
        }
    }
    /// A good reading of an exact value.
    pub fn exact(sensor: SensorId, ts: Timestamp, e: Exact) -> Self {
        Reading {
            sensor,
            ts,
            value: e.approx(),
            quality: Quality::Good,
            exact: Some(e),
        }
    }
    /// Whether this is text (no number to validate or compare).
    pub fn is_text(&self) -> bool {
        matches!(self.exact, Some(Exact::Text(_)))
    }
}

/// What a source sends into the ingest channel: the readings of one poll (one request, one sensor), so the
/// ingest thread wakes once per poll, not once per value.
pub type Readings = Vec<Reading>;

/// Latest value of one sensor, for the device shadow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatestValue {
    /// Value (absent when not finite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<f64>,
    /// Sample time (ms since epoch).
    pub ts: i64,
    /// Quality.
    pub q: &'static str,
}

/// Live gateway state, latest-value-wins (what the device shadow reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Active alarms.
    pub alerts: Vec<ActiveAlert>,
    /// Latest value per sensor (by id: the live state is cloned with every commit, and interned ids are copied,
    /// where a `String` per sensor was an allocation each — 100 per commit at the gateway workload, 2,000 at the
    /// budget's; ordered by the id's text as before).
    pub sensors: std::collections::BTreeMap<SensorId, LatestValue>,
    /// The alarm KPIs, computed every `[alarms] kpi_interval` over `kpi_period`.
    pub kpi: Option<Arc<kpi::Kpi>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alerts_log_message_says_what_happened_and_its_details() {
        let mut a = Alert {
            kind: AlertType::Alert,
            id: "gw:t:1".into(),
            state: AlertState::Cleared,
            severity: Severity::Warning,
            sensor: "t".into(),
            device: "gw".into(),
            location: String::new(),
            value: Some(79.5),
            unit: Some("°C".into()),
            threshold: Some(80.0),
            direction: Some(Direction::High),
            ts: Timestamp(0),
            since: Timestamp(0),
            reason: Some("back below".into()),
            operator: Default::default(),
        };
        a.operator.acked = Some(false);
        a.operator.by = Some("ann".into());
        assert_eq!(
            a.log_message(),
            "ALERT cleared value=79.5°C threshold=80 (high) reason=\"back below\" unacknowledged by=\"ann\""
        );
        a.value = None;
        a.reason = None;
        a.operator = Default::default();
        assert_eq!(a.log_message(), "ALERT cleared threshold=80 (high)");
    }

    #[test]
    fn wire_names_are_the_serde_names() {
        // The store's `kind` and `state` columns are written from `as_str`, the payload beside them by serde.
        use AlertState as S;
        use AlertType as K;
        let kinds = [
            K::Alert,
            K::SensorFault,
            K::SensorOffline,
            K::BufferOverflow,
            K::OutOfService,
            K::ConfigChange,
            K::RateOfChange,
            K::Deviation,
            K::SuppressedByState,
            K::Chattering,
            K::AlarmFlood,
            K::DeadLetter,
        ];
        for k in kinds {
            assert_eq!(serde_json::to_value(k).expect("json"), k.as_str(), "{k:?}");
        }
        let states = [
            S::Raised,
            S::Escalated,
            S::Deescalated,
            S::Cleared,
            S::Acknowledged,
            S::Shelved,
            S::Unshelved,
            S::Applied,
            S::Rejected,
        ];
        for st in states {
            assert_eq!(
                serde_json::to_value(st).expect("json"),
                st.as_str(),
                "{st:?}"
            );
        }
    }

    #[test]
    fn a_sensor_id_is_one_allocation_however_often_it_is_taken() {
        let a = SensorId::new("model-test-b");
        let b = SensorId::new(&String::from("model-test-b"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        let c = SensorId::new("model-test-a");
        assert_eq!(&*c, "model-test-a");
        assert!(!std::ptr::eq(a.as_str(), c.as_str()));
        assert!(std::ptr::eq(
            SensorId::new("model-test-a").as_str(),
            c.as_str()
        ));
    }

    #[test]
    fn rfc3339_is_exact_and_never_panics() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_795_773_600_123).rfc3339(),
            "2026-11-27T10:00:00.123Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(-1).rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MIN).rfc3339(), "0000-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(i64::MAX).rfc3339(), "9999-12-31T23:59:59.999Z");
        for ms in [
            0,
            1,
            -1,
            1_795_773_600_123,
            -86_400_001,
            253_402_300_799_999,
        ] {
            let t = Timestamp(ms);
            assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()), Some(t), "{ms}");
        }
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-27T11:00:00.123456+01:00"),
            Some(Timestamp(1_795_773_600_123))
        );
        assert_eq!(Timestamp::parse_rfc3339("2026-13-27T11:00:00Z"), None);
    }
}
