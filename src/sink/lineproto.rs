//! InfluxDB line protocol encoding, escaping exactly as InfluxDB's own parsers read it back: the measurement
//! escapes `,` and space; tag keys, tag values and field keys escape `,`, `=` and space; string field values escape
//! `"` and `\`. Any other backslash is written as it is (the parsers keep a `\` before an ordinary character).
//! What no parser reads back the same — control characters, a trailing `\`, a `\` before space, `,`, `=` or `\`
//! (InfluxDB 1.x keeps `\\`, InfluxDB 3 reads it as `\`), an
//! empty or `#`-led measurement, `_`-led names — is refused by `check-config` ([`problem`], in the leaf module [`crate::lineproto`] that the config
//! checks share), so it never gets here.
//! Empty tag values are omitted (line protocol forbids them).
//!
//! Data model: one measurement (default `sensor`) with tags `device`, `location`, `sensor` and configured tags;
//! field `value` (float); for a 64-bit integer register also `value_int` (`i`) or `value_uint` (`u`), exact; for a
//! text register `value_text` (string) instead of `value`; field `quality` (string) only when the quality is not
//! good; NaN/∞ readings carry only `quality`. Timestamp = sample time at the configured precision, so replays overwrite instead of duplicating.

use crate::config::{Config, InfluxConfig};
pub use crate::lineproto::{key, measurement, problem, string_value};
use crate::model::SensorId;
use crate::model::{Exact, Quality, Reading};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Pre-escaped tag set per sensor, so encoding a point is one lookup and a few copies.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    measurement: String,
    precision_div: i64,
    precision_mul: i64,
    common: BTreeMap<String, String>,
    per_sensor: BTreeMap<String, BTreeMap<String, String>>,
    cache: crate::util::SeqMap<crate::model::SensorId, String>,
}

impl Encoder {
    /// The encoder of the `[influxdb]` sink: its measurement, precision and tags, the gateway's `device` and
    /// `location`, each sensor's `tags`. Without `[influxdb]`, the defaults (measurement `sensor`). `precision`
    /// overrides the configured one (`buffer export --precision`).
    pub fn from_config(cfg: &Config, precision: Option<&str>) -> Encoder {
        let default = InfluxConfig::defaults();
        let i = cfg.influxdb.as_ref().unwrap_or(&default);
        let mut common = i.tags.clone();
        common.insert("device".into(), cfg.gateway.id.clone());
        common.insert("location".into(), cfg.gateway.location.clone());
        let per: BTreeMap<String, BTreeMap<String, String>> = cfg
            .sensor
            .iter()
            .filter(|s| !s.tags.is_empty())
            .map(|s| (s.id.clone(), s.tags.clone()))
            .collect();
        Encoder::new(
            &i.measurement,
            precision.unwrap_or(&i.precision),
            common,
            per,
        )
    }

    /// `precision` is one of `s`, `ms`, `us`, `ns`.
    pub fn new(
        measurement_name: &str,
        precision: &str,
        common: BTreeMap<String, String>,
        per_sensor: BTreeMap<String, BTreeMap<String, String>>,
    ) -> Self {
        let (div, mul) = match precision {
            "s" => (1000, 1),
            "us" => (1, 1000),
            "ns" => (1, 1_000_000),
            _ => (1, 1),
        };
        let mut m = String::new();
        measurement(&mut m, measurement_name);
        Encoder {
            measurement: m,
            precision_div: div,
            precision_mul: mul,
            common,
            per_sensor,
            cache: Default::default(),
        }
    }

    fn prefix(&mut self, sensor: &SensorId) -> &str {
        if self.cache.get(sensor).is_none() {
            let mut tags = self.common.clone();
            if let Some(extra) = self.per_sensor.get(&**sensor) {
                tags.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            tags.insert("sensor".into(), sensor.to_string());
            let mut p = self.measurement.clone();
            for (k, v) in &tags {
                if k.is_empty() || v.is_empty() {
                    continue;
                }
                p.push(',');
                key(&mut p, k);
                p.push('=');
                key(&mut p, v);
            }
            p.push(' ');
            self.cache.insert(*sensor, p);
        }
        self.cache.get(sensor).map(String::as_str).unwrap_or("")
    }

    /// Append one line (with trailing newline).
    pub fn line(&mut self, out: &mut String, r: &Reading) {
        let (div, mul) = (self.precision_div, self.precision_mul);
        out.push_str(self.prefix(&r.sensor));
        let mut finite = r.value.is_finite();
        if finite {
            // zmij (serde_json's float printer): shortest round-trip digits, 4x faster than `{:?}` (a tenth of a
            // backlog drain's encoding); exponents as `1e+16`, the form the line protocol reference shows.
            out.push_str("value=");
            out.push_str(zmij::Buffer::new().format_finite(r.value));
        }
        // Exact values in fields of their own type, so `value` stays a float in every series of the measurement
        // (InfluxDB refuses a field whose type changes between writes).
        match &r.exact {
            Some(Exact::Int(i)) => {
                let _ = write!(out, ",value_int={i}i");
            }
            Some(Exact::UInt(u)) => {
                let _ = write!(out, ",value_uint={u}u");
            }
            Some(Exact::Text(t)) => {
                out.push_str("value_text=\"");
                string_value(out, t);
                out.push('"');
                finite = true;
            }
            None => {}
        }
        if r.quality != Quality::Good {
            if finite {
                out.push(',');
            }
            out.push_str("quality=\"");
            string_value(out, r.quality.as_str());
            out.push('"');
        } else if !finite {
            out.push_str("quality=\"invalid\"");
        }
        out.push(' ');
        out.push_str(itoa::Buffer::new().format(r.ts.0.div_euclid(div) * mul));
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    #[test]
    fn escaping_per_spec() {
        let mut common = BTreeMap::new();
        common.insert("device".to_string(), "gw 1".to_string());
        common.insert("location".to_string(), "a,b=c".to_string());
        common.insert("empty".to_string(), String::new());
        let mut e = Encoder::new("my meas,x", "ms", common, BTreeMap::new());
        let mut out = String::new();
        let r = Reading {
            sensor: SensorId::from("t\\emp \"1\""),
            ts: Timestamp(1_700_000_000_123),
            value: 21.5,
            quality: Quality::Good,
            exact: None,
        };
        e.line(&mut out, &r);
        assert_eq!(
            out,
            "my\\ meas\\,x,device=gw\\ 1,location=a\\,b\\=c,sensor=t\\emp\\ \"1\" value=21.5 1700000000123\n"
        );
        let mut out = String::new();
        let bad = Reading {
            sensor: SensorId::from("s"),
            ts: Timestamp(1_700_000_000_999),
            value: f64::NAN,
            quality: Quality::Invalid,
            exact: None,
        };
        let mut e = Encoder::new("m", "s", BTreeMap::new(), BTreeMap::new());
        e.line(&mut out, &bad);
        assert_eq!(out, "m,sensor=s quality=\"invalid\" 1700000000\n");
        let mut out = String::new();
        let oor = Reading {
            sensor: SensorId::from("s"),
            ts: Timestamp(1),
            value: 300.0,
            quality: Quality::OutOfRange,
            exact: None,
        };
        let mut e = Encoder::new("m", "ns", BTreeMap::new(), BTreeMap::new());
        e.line(&mut out, &oor);
        assert_eq!(
            out,
            "m,sensor=s value=300.0,quality=\"out_of_range\" 1000000\n"
        );
        let mut e = Encoder::new("m", "ms", BTreeMap::new(), BTreeMap::new());
        let mut out = String::new();
        let big = 18_446_744_073_709_551_615u64;
        e.line(
            &mut out,
            &Reading::exact(SensorId::from("c"), Timestamp(5), Exact::UInt(big)),
        );
        e.line(
            &mut out,
            &Reading::exact(
                SensorId::from("d"),
                Timestamp(5),
                Exact::Int(-9_007_199_254_740_993),
            ),
        );
        e.line(
            &mut out,
            &Reading::exact(
                SensorId::from("n"),
                Timestamp(5),
                Exact::Text("PUMP \"7\"".into()),
            ),
        );
        assert_eq!(
            out,
            "m,sensor=c value=1.8446744073709552e+19,value_uint=18446744073709551615u 5\n\
             m,sensor=d value=-9007199254740992.0,value_int=-9007199254740993i 5\n\
             m,sensor=n value_text=\"PUMP \\\"7\\\"\" 5\n"
        );
    }
}
