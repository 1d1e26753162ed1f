//! What telemetry sends, as pure functions of the readings: every reading grouped per poll (`raw`), report by
//! exception with a heartbeat (`on_change`), and epoch-aligned windows (`aggregate`). The sink around them deals
//! with the connection, the cursor and rewinds.

use crate::config::TopicLayout;
use crate::model::SensorId;
use crate::model::{Exact, Quality, Reading};
use serde_json::{json, Map, Value};
// (Map and Value build the rare aggregate messages; raw and on_change write JSON directly.)
use std::collections::{BTreeMap, HashMap};

/// One message: the sensor (for the per-sensor topic layout) and the JSON body (an object).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `Some(sensor)` with the per-sensor layout.
    pub sensor: Option<String>,
    /// The payload: a JSON object, written directly (the hot path of `raw`).
    pub body: Vec<u8>,
    /// Newest sample time in it (ms), for the historical mark.
    pub newest: i64,
}

impl Message {
    /// Add `"historical": true` to the object.
    pub fn mark_historical(&mut self) {
        if self.body.last() == Some(&b'}') {
            self.body.pop();
            self.body.extend_from_slice(b",\"historical\":true}");
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // A string is always serialisable; the writer is a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_value(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A reading's value in JSON: exact where it is kept exact (a string, an integer beyond 2^53 digit for digit).
fn push_reading(out: &mut Vec<u8>, r: &Reading) {
    match &r.exact {
        Some(Exact::Text(t)) => push_str(out, t),
        Some(Exact::Int(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        Some(Exact::UInt(u)) => out.extend_from_slice(u.to_string().as_bytes()),
        None => push_value(out, r.value),
    }
}

fn push_head(out: &mut Vec<u8>, device: &str, ts: i64) {
    out.extend_from_slice(b"{\"device\":");
    push_str(out, device);
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(ts.to_string().as_bytes());
}

/// Readings grouped per poll (same sample time) into one message per device, or one per reading per sensor.
pub fn per_poll(device: &str, layout: TopicLayout, readings: &[&Reading]) -> Vec<Message> {
    let mut out = Vec::new();
    match layout {
        TopicLayout::Sensor => {
            for r in readings {
                let mut b = Vec::with_capacity(96);
                push_head(&mut b, device, r.ts.0);
                b.extend_from_slice(b",\"sensor\":");
                push_str(&mut b, &r.sensor);
                b.extend_from_slice(b",\"value\":");
                push_reading(&mut b, r);
                if r.quality != Quality::Good {
                    b.extend_from_slice(b",\"quality\":");
                    push_str(&mut b, r.quality.as_str());
                }
                b.push(b'}');
                out.push(Message {
                    sensor: Some(r.sensor.to_string()),
                    body: b,
                    newest: r.ts.0,
                });
            }
        }
        TopicLayout::Device => {
            // Polls in arrival order; a poll is the readings of one sample time.
            let mut polls: Vec<(i64, Vec<&Reading>)> = Vec::new();
            let mut at: HashMap<i64, usize> = HashMap::new();
            for r in readings {
                let i = *at.entry(r.ts.0).or_insert_with(|| {
                    polls.push((r.ts.0, Vec::new()));
                    polls.len() - 1
                });
                polls[i].1.push(r);
            }
            for (ts, rs) in polls {
                let mut b = Vec::with_capacity(48 + rs.len() * 20);
                push_head(&mut b, device, ts);
                b.extend_from_slice(b",\"readings\":{");
                for (i, r) in rs.iter().enumerate() {
                    if i > 0 {
                        b.push(b',');
                    }
                    push_str(&mut b, &r.sensor);
                    b.push(b':');
                    push_reading(&mut b, r);
                }
                b.push(b'}');
                let bad: Vec<&&Reading> =
                    rs.iter().filter(|r| r.quality != Quality::Good).collect();
                if !bad.is_empty() {
                    b.extend_from_slice(b",\"quality\":{");
                    for (i, r) in bad.iter().enumerate() {
                        if i > 0 {
                            b.push(b',');
                        }
                        push_str(&mut b, &r.sensor);
                        b.push(b':');
                        push_str(&mut b, r.quality.as_str());
                    }
                    b.push(b'}');
                }
                b.push(b'}');
                out.push(Message {
                    sensor: None,
                    body: b,
                    newest: ts,
                });
            }
        }
    }
    out
}

/// Report by exception: what was last sent per sensor.
#[derive(Debug, Clone, Default)]
pub struct OnChange {
    /// Sensor → (value sent, its time in ms, its quality).
    pub last: HashMap<SensorId, (f64, i64, Quality)>,
    /// Absolute deadband.
    pub deadband: f64,
    /// Deadband in percent of the last sent value.
    pub percent: f64,
    /// Heartbeat (ms).
    pub max_interval_ms: i64,
}

impl OnChange {
    /// Whether `r` is sent; remembers it when it is.
    pub fn pass(&mut self, r: &Reading) -> bool {
        // Text has no deadband: it is sent when it changes (remembered by a digest of it).
        let text = r.exact.as_ref().and_then(Exact::text).map(|t| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut h);
            (h.finish() >> 12) as f64
        });
        let value = text.unwrap_or(r.value);
        let send = match self.last.get(&r.sensor) {
            None => true,
            Some(&(v, ts, q)) => {
                let moved = (value - v).abs();
                let changed = match text {
                    Some(_) => value != v,
                    None => {
                        value.is_finite() != v.is_finite()
                            || moved > self.deadband.max(v.abs() * self.percent / 100.0)
                    }
                };
                q != r.quality || changed || r.ts.0 - ts >= self.max_interval_ms
            }
        };
        if send {
            self.last.insert(r.sensor, (value, r.ts.0, r.quality));
        }
        send
    }
}

/// One sensor's statistics in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Agg {
    /// Good readings.
    pub count: u64,
    /// Readings that were not good (invalid, out of range, stuck, spike).
    pub bad: u64,
    /// Over good readings.
    pub min: f64,
    /// Over good readings.
    pub max: f64,
    /// Sum of good readings.
    pub sum: f64,
    /// First good reading (ms, value).
    pub first: Option<(i64, f64)>,
    /// Last good reading (ms, value).
    pub last: Option<(i64, f64)>,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            count: 0,
            bad: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            first: None,
            last: None,
        }
    }
}

impl Agg {
    fn add(&mut self, r: &Reading) {
        if r.quality != Quality::Good || !r.value.is_finite() {
            self.bad += 1;
            return;
        }
        self.count += 1;
        self.min = self.min.min(r.value);
        self.max = self.max.max(r.value);
        self.sum += r.value;
        if self.first.is_none_or(|(t, _)| r.ts.0 < t) {
            self.first = Some((r.ts.0, r.value));
        }
        if self.last.is_none_or(|(t, _)| r.ts.0 >= t) {
            self.last = Some((r.ts.0, r.value));
        }
    }
    /// As JSON.
    pub fn json(&self) -> Value {
        let n = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        json!({
            "count": self.count,
            "bad": self.bad,
            "min": n(self.min),
            "max": n(self.max),
            "mean": if self.count > 0 { json!(self.sum / self.count as f64) } else { Value::Null },
            "first": self.first.map(|f| f.1),
            "last": self.last.map(|l| l.1),
            "first_ts": self.first.map(|f| f.0),
            "last_ts": self.last.map(|l| l.0),
        })
    }
}

/// Epoch-aligned windows per sensor. A window is closed once a reading `grace_ms` past its end has been seen;
/// readings of a window already closed are `late` (counted in the next message, kept in the store).
#[derive(Debug, Clone)]
pub struct Windows {
    /// Window length (ms).
    pub width: i64,
    /// How long after a window's end readings for it are still waited for (ms).
    pub grace: i64,
    /// Open windows by index (start = index · width).
    pub open: BTreeMap<i64, BTreeMap<SensorId, Agg>>,
    /// Every window up to this index was closed (published, or before the start).
    pub closed_through: i64,
    /// Newest sample time seen.
    pub newest: i64,
    /// Late readings not yet reported.
    pub late: u64,
}

impl Windows {
    /// Windows of `width` ms; windows up to `closed_through` count as published.
    pub fn new(width: i64, grace: i64, closed_through: i64) -> Self {
        Windows {
            width: width.max(1),
            grace,
            open: BTreeMap::new(),
            closed_through,
            newest: i64::MIN,
            late: 0,
        }
    }
    /// The window index of a sample time.
    pub fn index(&self, ts: i64) -> i64 {
        ts.div_euclid(self.width)
    }
    /// Add a reading.
    pub fn add(&mut self, r: &Reading) {
        let i = self.index(r.ts.0);
        if i <= self.closed_through {
            self.late += 1;
            return;
        }
        self.newest = self.newest.max(r.ts.0);
        self.open
            .entry(i)
            .or_default()
            .entry(r.sensor)
            .or_default()
            .add(r);
    }
    /// Close the windows whose end plus grace has been passed by a reading; their index and statistics.
    pub fn close_ready(&mut self) -> Vec<(i64, BTreeMap<SensorId, Agg>)> {
        let mut out = Vec::new();
        while let Some((&i, _)) = self.open.first_key_value() {
            if (i + 1) * self.width + self.grace > self.newest {
                break;
            }
            if let Some((i, aggs)) = self.open.pop_first() {
                self.closed_through = self.closed_through.max(i);
                out.push((i, aggs));
            }
        }
        out
    }
    /// The messages of closed windows.
    pub fn messages(
        &mut self,
        device: &str,
        layout: TopicLayout,
        closed: Vec<(i64, BTreeMap<SensorId, Agg>)>,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        let secs = self.width as f64 / 1000.0;
        for (i, aggs) in closed {
            let (from, to) = (i * self.width, (i + 1) * self.width);
            let window = json!({"from": from, "to": to, "seconds": secs});
            let late = std::mem::take(&mut self.late);
            match layout {
                TopicLayout::Device => {
                    let sensors: Map<String, Value> = aggs
                        .iter()
                        .map(|(s, a)| (s.to_string(), a.json()))
                        .collect();
                    let mut b = json!({"device": device, "window": window, "sensors": sensors});
                    if late > 0 {
                        b["late"] = json!(late);
                    }
                    out.push(Message {
                        sensor: None,
                        body: serde_json::to_vec(&b).unwrap_or_default(),
                        newest: to - 1,
                    });
                }
                TopicLayout::Sensor => {
                    for (s, a) in &aggs {
                        let mut b = a.json();
                        b["device"] = json!(device);
                        b["sensor"] = json!(&**s);
                        b["window"] = window.clone();
                        out.push(Message {
                            sensor: Some(s.to_string()),
                            body: serde_json::to_vec(&b).unwrap_or_default(),
                            newest: to - 1,
                        });
                    }
                }
            }
        }
        out
    }
}
