//! Alarm management beyond a sensor's limits: rate-of-change and deviation alarms (per sensor), and the
//! gateway-wide `[alarms]` section (floods, chattering, stale alarms, KPIs) as ISA-18.2 / IEC 62682 and
//! EEMUA 191 describe them.

use super::{Dur, Issue, KeyPath};
use crate::model::Severity;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The severity of a rate or deviation alarm, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// WARNING.
    #[default]
    Warning,
    /// CRITICAL.
    Critical,
}

impl Level {
    /// The alert severity.
    pub fn severity(self) -> Severity {
        match self {
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        }
    }
}

/// `rate = { high = 2.0, per = "1m" }`: a rate-of-change alarm.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Alarm when the value rises by at least this much per `per`.
    pub high: Option<f64>,
    /// Alarm when the value changes by at most this much (a negative number: a fall) per `per`.
    pub low: Option<f64>,
    /// The unit of time of `high` and `low` (default 1m).
    #[serde(default = "one_minute")]
    pub per: Dur,
    /// The change is measured over this window, from its oldest good reading (default: `per`).
    pub window: Option<Dur>,
    /// `warning` (default) or `critical`.
    #[serde(default)]
    pub severity: Level,
    /// Hysteresis, in the units of `high`/`low`.
    #[serde(default)]
    pub deadband: f64,
}

/// `deviation = { from = "tank_a_level", high = 5.0 }`: two sensors (redundant transmitters, or a value and its
/// setpoint) that should agree.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviationConfig {
    /// The other sensor.
    pub from: String,
    /// Alarm when the two differ by at least this much (either way).
    pub high: f64,
    /// `warning` (default) or `critical`.
    #[serde(default)]
    pub severity: Level,
    /// Hysteresis.
    #[serde(default)]
    pub deadband: f64,
}

/// `[alarms]`: the gateway's alarm system as a whole.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// More annunciated alarms than this within `flood_window` is an alarm flood (EEMUA 191: 10 in 10 minutes).
    #[serde(default = "flood_count")]
    pub flood_count: usize,
    /// The flood window.
    #[serde(default = "ten_minutes")]
    pub flood_window: Dur,
    /// The flood ends when fewer than this many alarms fall in the window (default: half of `flood_count`).
    pub flood_clear: Option<usize>,
    /// An alarm raised this many times within `chatter_window` is chattering.
    #[serde(default = "chatter_count")]
    pub chatter_count: usize,
    /// The chattering window.
    #[serde(default = "one_minute")]
    pub chatter_window: Dur,
    /// Shelve a chattering sensor's alarms for this long (audited as a shelve by `watchpost`). Off by default.
    pub auto_shelve_chattering: Option<Dur>,
    /// An alarm active longer than this is stale.
    #[serde(default = "one_day")]
    pub stale_after: Dur,
    /// How often the alarm KPIs are computed and published.
    #[serde(default = "ten_minutes")]
    pub kpi_interval: Dur,
    /// The period the published KPIs cover.
    #[serde(default = "one_day")]
    pub kpi_period: Dur,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            flood_count: flood_count(),
            flood_window: ten_minutes(),
            flood_clear: None,
            chatter_count: chatter_count(),
            chatter_window: one_minute(),
            auto_shelve_chattering: None,
            stale_after: one_day(),
            kpi_interval: ten_minutes(),
            kpi_period: one_day(),
        }
    }
}

impl AlarmsConfig {
    /// When a flood ends.
    pub fn flood_clear(&self) -> usize {
        self.flood_clear.unwrap_or(self.flood_count.div_ceil(2))
    }
}

fn one_minute() -> Dur {
    Dur(Duration::from_secs(60))
}
fn ten_minutes() -> Dur {
    Dur(Duration::from_secs(600))
}
fn one_day() -> Dur {
    Dur(Duration::from_secs(86_400))
}
fn flood_count() -> usize {
    10
}
fn chatter_count() -> usize {
    3
}

/// Checks serde cannot express.
pub(super) fn validate(a: &AlarmsConfig, issues: &mut Vec<Issue>) {
    let base = KeyPath::parse("alarms");
    if a.flood_count == 0 {
        issues.push(Issue::new(base.key("flood_count"), "must be at least 1"));
    }
    if let Some(c) = a.flood_clear {
        if c == 0 || c > a.flood_count {
            issues.push(Issue::new(
                base.key("flood_clear"),
                format!("must be between 1 and `flood_count` ({})", a.flood_count),
            ));
        }
    }
    if a.chatter_count < 2 {
        issues.push(Issue::new(base.key("chatter_count"), "must be at least 2"));
    }
    for (key, d, min) in [
        ("flood_window", a.flood_window.0, 1),
        ("chatter_window", a.chatter_window.0, 1),
        ("kpi_interval", a.kpi_interval.0, 10),
        ("kpi_period", a.kpi_period.0, 600),
        ("stale_after", a.stale_after.0, 60),
    ] {
        if d < Duration::from_secs(min) {
            issues.push(Issue::new(
                base.key(key),
                format!("must be at least {min}s"),
            ));
        }
    }
    for (key, d) in [
        ("flood_window", a.flood_window.0),
        ("chatter_window", a.chatter_window.0),
    ] {
        if d > Duration::from_secs(86_400) {
            issues.push(Issue::new(base.key(key), "must be at most 1 day"));
        }
    }
    if let Some(d) = a.auto_shelve_chattering {
        if d.0.is_zero() || d.0 > Duration::from_secs(7 * 86_400) {
            issues.push(Issue::new(
                base.key("auto_shelve_chattering"),
                "must be between 1s and 7 days",
            ));
        }
    }
}

/// Checks of one sensor's rate and deviation settings; `base` is `sensor[i]`.
pub(super) fn validate_sensor(
    rate: Option<&RateConfig>,
    deviation: Option<&DeviationConfig>,
    base: &KeyPath,
    issues: &mut Vec<Issue>,
) {
    if let Some(r) = rate {
        let k = base.key("rate");
        if r.high.is_none() && r.low.is_none() {
            issues.push(Issue::new(k.clone(), "needs `high`, `low` or both"));
        }
        for (key, v) in [("high", r.high), ("low", r.low)] {
            if v.is_some_and(|v| !v.is_finite()) {
                issues.push(Issue::new(k.key(key), "must be a finite number"));
            }
        }
        if r.per.0 < Duration::from_millis(1) {
            issues.push(Issue::new(k.key("per"), "must be longer than zero"));
        }
        if let Some(w) = r.window {
            if w.0 < Duration::from_secs(1) || w.0 > Duration::from_secs(86_400) {
                issues.push(Issue::new(k.key("window"), "must be between 1s and 1 day"));
            }
        }
        if !(r.deadband.is_finite() && r.deadband >= 0.0) {
            issues.push(Issue::new(k.key("deadband"), "must be zero or more"));
        }
    }
    if let Some(d) = deviation {
        let k = base.key("deviation");
        if !(d.high.is_finite() && d.high > 0.0) {
            issues.push(Issue::new(k.key("high"), "must be a positive number"));
        }
        if d.high > 0.0 && !(d.deadband.is_finite() && d.deadband >= 0.0 && d.deadband < d.high) {
            issues.push(Issue::new(
                k.key("deadband"),
                "must be zero or more and smaller than `high`",
            ));
        }
    }
}

/// The sensors' formulas (`formula`, `enabled_when`) and references (`deviation.from`): each parses, names
/// configured sensors only (with a did-you-mean), reads numbers, and no derived sensor depends on itself.
pub(super) fn validate_links(cfg: &super::Config, issues: &mut Vec<Issue>) {
    use super::{DataType, SourceConfig};
    use crate::formula::Formula;
    use std::collections::HashMap;
    let by_id: HashMap<&str, (usize, &super::SensorConfig)> = cfg
        .sensor
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), (i, s)))
        .collect();
    let text = |s: &super::SensorConfig| matches!(&s.source, SourceConfig::Modbus(m) if matches!(m.data_type, DataType::String(_)));
    // Each reference must name a numeric sensor other than `me`.
    let check_name = |name: &str, me: &str, key: &KeyPath, issues: &mut Vec<Issue>| -> bool {
        match by_id.get(name) {
            None => {
                issues.push(Issue::new(
                    key.clone(),
                    format!(
                        "no sensor {name:?}{}",
                        super::did_you_mean(name, cfg.sensor.iter().map(|s| s.id.as_str()))
                    ),
                ));
                false
            }
            Some((_, s)) if text(s) => {
                issues.push(Issue::new(
                    key.clone(),
                    format!("sensor {name:?} reads text: there is no number to compute with"),
                ));
                false
            }
            Some(_) if name == me => {
                issues.push(Issue::new(key.clone(), "refers to the sensor itself"));
                false
            }
            Some(_) => true,
        }
    };
    let mut graph: Vec<Vec<usize>> = vec![Vec::new(); cfg.sensor.len()];
    for (i, s) in cfg.sensor.iter().enumerate() {
        let base = KeyPath(vec![super::Seg::Key("sensor".into()), super::Seg::Index(i)]);
        match (&s.source, &s.formula) {
            (SourceConfig::Derived, None) => issues.push(Issue::new(
                base.key("source"),
                "missing: give `source = { … }`, or `formula = \"…\"` for a sensor computed from others",
            )),
            (SourceConfig::Derived, Some(_)) if s.interval.0 < Duration::from_secs(1) => {
                issues.push(Issue::new(
                    base.key("interval"),
                    "a derived sensor is computed at most once a second: must be at least 1s",
                ))
            }
            (SourceConfig::Derived, Some(_)) => {}
            (_, Some(_)) => issues.push(Issue::new(
                base.key("formula"),
                "a sensor has a `source` or a `formula`, not both",
            )),
            _ => {}
        }
        for (key, f) in [("formula", &s.formula), ("enabled_when", &s.enabled_when)] {
            let Some(f) = f else { continue };
            let k = base.key(key);
            match Formula::parse(f) {
                Err(e) => issues.push(Issue::new(k, format!("{f:?}: {e}"))),
                Ok(f) => {
                    for name in f.inputs() {
                        // A condition may look at the sensor's own value; a formula may not.
                        let me = if key == "formula" { s.id.as_str() } else { "" };
                        if check_name(name, me, &k, issues) && key == "formula" {
                            if let Some((j, _)) = by_id.get(name.as_str()) {
                                graph[i].push(*j);
                            }
                        }
                    }
                }
            }
        }
        if let Some(d) = &s.deviation {
            check_name(&d.from, &s.id, &base.key("deviation").key("from"), issues);
        }
    }
    // Cycles among derived sensors: a depth-first search from each, reporting the first cycle found once.
    let mut state = vec![0u8; graph.len()]; // 0 unseen, 1 on the path, 2 done
    fn dfs(
        n: usize,
        graph: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        path.push(n);
        for &m in &graph[n] {
            if state[m] == 1 {
                let from = path.iter().position(|x| *x == m).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(m);
                return Some(cycle);
            }
            if state[m] == 0 {
                if let Some(c) = dfs(m, graph, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    for n in 0..graph.len() {
        if state[n] == 0 {
            if let Some(cycle) = dfs(n, &graph, &mut state, &mut Vec::new()) {
                let names: Vec<&str> = cycle.iter().map(|i| cfg.sensor[*i].id.as_str()).collect();
                let first = cycle[0];
                issues.push(Issue::new(
                    KeyPath(vec![
                        super::Seg::Key("sensor".into()),
                        super::Seg::Index(first),
                    ])
                    .key("formula"),
                    format!(
                        "derived sensors depend on each other in a circle: {}",
                        names.join(" → ")
                    ),
                ));
            }
        }
    }
}
