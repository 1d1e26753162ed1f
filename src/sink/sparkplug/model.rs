//! What the edge node announces: its devices (a Modbus unit, an I2C chip, the simulated sensors) and their
//! metrics (the sensors), with stable aliases and the Sparkplug data type of each configured register type; and
//! the payloads built from them.

use super::payload::{
    datatype as dt, Metric, Payload, PropValue, PropertySet, PropertyValue, Value,
};
use crate::config::{Config, DataType, SourceConfig};
use crate::model::SensorId;
use crate::model::{Exact, Quality, Reading};
use std::collections::HashMap;

/// One sensor as a device metric.
#[derive(Debug, Clone)]
pub(super) struct MetricDef {
    pub sensor: SensorId,
    pub alias: u64,
    pub datatype: u32,
    pub unit: Option<String>,
    pub device: usize,
}

/// The node's devices and metrics.
#[derive(Debug, Clone, Default)]
pub(super) struct Model {
    pub devices: Vec<String>,
    pub metrics: Vec<MetricDef>,
    pub by_sensor: HashMap<SensorId, usize>,
    /// Sensors with limits: their alarm metrics (`Alarms/<sensor>/…`), by metric index, with the first alias.
    pub alarms: Vec<(usize, u64)>,
}

/// The alarm metrics of a sensor with alarms (limits, rate of change or deviation): its ISA-18.2 state, the
/// severity, acknowledged, shelved, and the priority.
pub(super) const ALARM_METRICS: [(&str, u32); 5] = [
    ("State", dt::STRING),
    ("Severity", dt::STRING),
    ("Acked", dt::BOOLEAN),
    ("Shelved", dt::BOOLEAN),
    ("Priority", dt::STRING),
];

/// A sensor's alarm as the five metric values, from the live state: `NORMAL`, `UNACK`, `ACKED`, `RTN_UNACK` or
/// `SHELVED`; the severity and the priority (empty when normal). With several process alarms active (a limit, a
/// rate, a deviation), the most severe speaks.
pub(super) fn alarm_values(live: &crate::model::Live, sensor: &str) -> [Value; 5] {
    use crate::model::AlertType;
    let a = live
        .alerts
        .iter()
        .filter(|a| {
            a.sensor == sensor
                && matches!(
                    a.kind,
                    AlertType::Alert | AlertType::RateOfChange | AlertType::Deviation
                )
        })
        .max_by_key(|a| (a.severity, a.priority));
    let Some(a) = a else {
        return [
            Value::String("NORMAL".into()),
            Value::String(String::new()),
            Value::Boolean(true),
            Value::Boolean(false),
            Value::String(String::new()),
        ];
    };
    let acked = a.acked.unwrap_or(false);
    let shelved = a.shelved_until.is_some();
    let state = if shelved {
        "SHELVED"
    } else if a.returned {
        "RTN_UNACK"
    } else if acked {
        "ACKED"
    } else {
        "UNACK"
    };
    [
        Value::String(state.into()),
        Value::String(a.severity.as_str().into()),
        Value::Boolean(acked),
        Value::Boolean(shelved),
        Value::String(a.priority.map(|p| p.as_str()).unwrap_or("").into()),
    ]
}

/// A device id usable as a topic level.
fn token(s: &str) -> String {
    s.chars()
        .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
        .collect()
}

/// The Sparkplug data type of a sensor's values.
fn datatype(src: &SourceConfig) -> u32 {
    let SourceConfig::Modbus(m) = src else {
        return dt::DOUBLE;
    };
    let scaled = m.scale != 1.0 || m.add != 0.0;
    match m.data_type {
        DataType::String(_) => dt::STRING,
        _ if m.table.is_bits() => dt::BOOLEAN,
        DataType::Bool | DataType::Bit(_) if !scaled => dt::BOOLEAN,
        _ if scaled => dt::DOUBLE,
        DataType::U8Low | DataType::U8High => dt::UINT8,
        DataType::I8Low | DataType::I8High => dt::INT8,
        DataType::U16 => dt::UINT16,
        DataType::I16 => dt::INT16,
        DataType::U32 => dt::UINT32,
        DataType::I32 => dt::INT32,
        DataType::U64 => dt::UINT64,
        DataType::I64 => dt::INT64,
        DataType::F16 | DataType::F32 => dt::FLOAT,
        _ => dt::DOUBLE,
    }
}

impl Model {
    /// From the configuration: a Modbus unit, an I2C chip or the simulated sensors are a device each; the
    /// sensors keep the order of the file, and their aliases follow it (1, 2, …).
    pub(super) fn new(cfg: &Config) -> Model {
        let mut m = Model::default();
        for s in &cfg.sensor {
            let device = match &s.source {
                SourceConfig::Modbus(x) => token(&format!("{}-unit{}", x.bus, x.unit)),
                SourceConfig::I2c(x) => token(&format!(
                    "{}-{}-{:02x}",
                    x.bus,
                    x.chip.spec().name,
                    x.address
                )),
                SourceConfig::Simulated(_) => "simulated".to_string(),
                SourceConfig::Derived => "derived".to_string(),
            };
            let d = match m.devices.iter().position(|x| *x == device) {
                Some(i) => i,
                None => {
                    m.devices.push(device);
                    m.devices.len() - 1
                }
            };
            let sensor: SensorId = SensorId::from(s.id.as_str());
            m.by_sensor.insert(sensor, m.metrics.len());
            m.metrics.push(MetricDef {
                sensor,
                alias: m.metrics.len() as u64 + 1,
                datatype: datatype(&s.source),
                unit: s.unit.clone(),
                device: d,
            });
        }
        // Alarm metrics after every sensor's, so the sensors' aliases stay their place in the file.
        let mut next = m.metrics.len() as u64 + 1;
        for (i, s) in cfg.sensor.iter().enumerate() {
            if s.warning.is_some()
                || s.critical.is_some()
                || s.rate.is_some()
                || s.deviation.is_some()
            {
                m.alarms.push((i, next));
                next += ALARM_METRICS.len() as u64;
            }
        }
        m
    }

    /// The alarm metrics of device `d` with their values in `live` (in births: names and types too).
    pub(super) fn alarm_metrics(
        &self,
        d: usize,
        live: &crate::model::Live,
        birth: bool,
        now: u64,
    ) -> Vec<Metric> {
        let mut out = Vec::new();
        for &(i, alias) in &self.alarms {
            let def = &self.metrics[i];
            if def.device != d {
                continue;
            }
            let values = alarm_values(live, &def.sensor);
            for (k, ((name, datatype), value)) in ALARM_METRICS.iter().zip(values).enumerate() {
                out.push(Metric {
                    name: birth.then(|| format!("Alarms/{}/{name}", def.sensor)),
                    alias: Some(alias + k as u64),
                    timestamp: Some(now),
                    datatype: Some(*datatype),
                    value: Some(value),
                    ..Metric::default()
                });
            }
        }
        out
    }

    /// The DBIRTH metrics of device `d`: name, alias, data type, engineering unit, and no value yet (null).
    pub(super) fn birth_metrics(&self, d: usize, now: u64) -> Vec<Metric> {
        self.metrics
            .iter()
            .filter(|x| x.device == d)
            .map(|x| Metric {
                name: Some(x.sensor.to_string()),
                alias: Some(x.alias),
                timestamp: Some(now),
                datatype: Some(x.datatype),
                is_null: Some(true),
                properties: x.unit.as_ref().map(|u| PropertySet {
                    keys: vec!["engUnit".into()],
                    values: vec![PropertyValue {
                        r#type: Some(dt::STRING),
                        is_null: None,
                        value: Some(PropValue::String(u.clone())),
                    }],
                }),
                ..Metric::default()
            })
            .collect()
    }

    /// One reading as a data metric: alias only, its own timestamp, its value in the metric's type (null when it
    /// has none), a `Quality` property when it is not good (0, bad, as Ignition reads it), `is_historical` when
    /// it is sent late (store and forward).
    pub(super) fn data_metric(&self, r: &Reading, historical: bool) -> Option<(usize, Metric)> {
        let def = &self.metrics[*self.by_sensor.get(&r.sensor)?];
        let value = value(def.datatype, r);
        let mut m = Metric {
            alias: Some(def.alias),
            // The 3.0 specification lets data messages leave the type out; hosts built on Tahu 1.x (its JavaScript
            // decoder among them) cannot read a value without it: it costs a byte.
            datatype: Some(def.datatype),
            timestamp: Some(u64::try_from(r.ts.0).unwrap_or(0)),
            is_null: value.is_none().then_some(true),
            is_historical: historical.then_some(true),
            value,
            ..Metric::default()
        };
        if r.quality != Quality::Good {
            m.properties = Some(PropertySet {
                keys: vec!["Quality".into()],
                values: vec![PropertyValue {
                    r#type: Some(dt::INT32),
                    is_null: None,
                    value: Some(PropValue::Int(0)),
                }],
            });
        }
        Some((def.device, m))
    }
}

/// A reading's value in the metric's data type; `None` when it has no value (NaN, a fault).
fn value(datatype: u32, r: &Reading) -> Option<Value> {
    if let Some(Exact::Text(t)) = &r.exact {
        return Some(Value::String(t.to_string()));
    }
    let v = r.value;
    if !v.is_finite() {
        return None;
    }
    Some(match datatype {
        dt::BOOLEAN => Value::Boolean(v != 0.0),
        // Signed types travel as their two's complement at their own width in the unsigned field (Int16 −2 is
        // 65534, not 4294967294: what pysparkplug and the 3.0 TCK read).
        dt::INT8 => Value::Int(u32::from(v as i8 as u8)),
        dt::INT16 => Value::Int(u32::from(v as i16 as u16)),
        dt::INT32 => Value::Int(v as i32 as u32),
        dt::UINT8 | dt::UINT16 | dt::UINT32 => Value::Int(v as u32),
        dt::INT64 => Value::Long(match r.exact {
            Some(Exact::Int(i)) => i as u64,
            _ => v as i64 as u64,
        }),
        dt::UINT64 => Value::Long(match r.exact {
            Some(Exact::UInt(u)) => u,
            _ => v as u64,
        }),
        dt::FLOAT => Value::Float(v as f32),
        dt::STRING => Value::String(v.to_string()),
        _ => Value::Double(v),
    })
}

/// The gateway's own state as node metrics: this node's readings not yet sent (its backlog in the store) and the
/// readings the buffer cap dropped so far.
pub(super) fn gateway_metrics(metrics: &crate::metrics::Metrics, now: u64) -> Vec<Metric> {
    use std::sync::atomic::Ordering;
    let backlog = metrics
        .sink_if_running(super::SINK)
        .map_or(0, |m| m.backlog.load(Ordering::Relaxed));
    let dropped = metrics.dropped.load(Ordering::Relaxed);
    vec![
        Metric {
            name: Some("Gateway/Backlog".into()),
            timestamp: Some(now),
            datatype: Some(dt::INT64),
            value: Some(Value::Long(backlog as u64)),
            ..Metric::default()
        },
        Metric {
            name: Some("Gateway/Dropped Readings".into()),
            timestamp: Some(now),
            datatype: Some(dt::UINT64),
            value: Some(Value::Long(dropped)),
            ..Metric::default()
        },
    ]
}

/// The node's own metrics in NBIRTH: `bdSeq`, `Node Control/Rebirth` and `Next Server` (writable), and what it is.
pub(super) fn node_birth(bd_seq: u64, cfg: &Config, now: u64) -> Vec<Metric> {
    let m = |name: &str, datatype: u32, value: Value| Metric {
        name: Some(name.into()),
        timestamp: Some(now),
        datatype: Some(datatype),
        value: Some(value),
        ..Metric::default()
    };
    vec![
        m("bdSeq", dt::INT64, Value::Long(bd_seq)),
        m("Node Control/Rebirth", dt::BOOLEAN, Value::Boolean(false)),
        m(
            "Node Control/Next Server",
            dt::BOOLEAN,
            Value::Boolean(false),
        ),
        m(
            "Properties/Gateway",
            dt::STRING,
            Value::String(cfg.gateway.id.clone()),
        ),
        m(
            "Properties/Location",
            dt::STRING,
            Value::String(cfg.gateway.location.clone()),
        ),
        m(
            "Properties/Version",
            dt::STRING,
            Value::String(env!("CARGO_PKG_VERSION").into()),
        ),
    ]
}

/// The NDEATH payload (the Will): `bdSeq` only, no `seq`.
pub(super) fn node_death(bd_seq: u64) -> Vec<u8> {
    use prost::Message;
    Payload {
        timestamp: None,
        metrics: vec![Metric {
            name: Some("bdSeq".into()),
            datatype: Some(dt::INT64),
            value: Some(Value::Long(bd_seq)),
            ..Metric::default()
        }],
        seq: None,
    }
    .encode_to_vec()
}
