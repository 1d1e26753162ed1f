//! Semantic checks that serde cannot express. Every check pushes an [`Issue`] and goes on, so the user sees all
//! problems at once.

use super::{Config, Issue, KeyPath, Limits, Seg, SensorConfig};
use std::collections::HashMap;
use std::time::Duration;

const SIM_KINDS: &[&str] = &[
    "sine",
    "ramp",
    "random_walk",
    "square",
    "script",
    "constant",
];
const SIM_KEYS: &[&str] = &[
    "offset",
    "amplitude",
    "period",
    "step",
    "min",
    "max",
    "noise",
    "seed",
    "values",
    "silent",
    "repeat",
    "nan_probability",
    "decimals",
];
const MODBUS_KEYS: &[&str] = &[
    "unit",
    "table",
    "address",
    "type",
    "word_order",
    "bit",
    "length",
    "scale",
    "add",
];
/// Modbus register tables accepted in `source.table`.
pub const MODBUS_TABLES: &[&str] = &["coil", "discrete", "input", "holding"];
/// Modbus data types accepted in `source.type`.
pub const MODBUS_TYPES: &[&str] = &[
    "bool", "bit", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64",
];

fn topic_safe(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
}

pub(crate) fn validate(cfg: &Config, issues: &mut Vec<Issue>) {
    let p = KeyPath::parse;
    if !topic_safe(&cfg.gateway.id) {
        issues.push(Issue::new(
            p("gateway.id"),
            "must be non-empty and must not contain '/', '+', '#' or control characters (it is part of MQTT topics)",
        ));
    }
    if cfg.buffer.flush_interval.0.is_zero() {
        issues.push(Issue::new(
            p("buffer.flush_interval"),
            "must be greater than zero",
        ));
    }
    if cfg.buffer.max_size.0 < 1 << 20 {
        issues.push(Issue::new(p("buffer.max_size"), "must be at least 1MiB"));
    }
    if cfg.buffer.batch_max_readings == 0 {
        issues.push(Issue::new(
            p("buffer.batch_max_readings"),
            "must be greater than zero",
        ));
    }
    if let Some(i) = &cfg.influxdb {
        if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
            issues.push(Issue::new(
                p("influxdb.url"),
                format!("{:?} must start with http:// or https://", i.url),
            ));
        }
        if !["s", "ms", "us", "ns"].contains(&i.precision.as_str()) {
            issues.push(Issue::new(
                p("influxdb.precision"),
                format!("{:?} is not one of s, ms, us, ns", i.precision),
            ));
        }
        let n = [
            i.token.is_some(),
            i.token_file.is_some(),
            i.token_env.is_some(),
            i.token_credential.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n > 1 {
            issues.push(Issue::new(
                p("influxdb"),
                "give the token one way only: token, token_file, token_env or token_credential",
            ));
        }
        if i.batch_size.0 < 1024 {
            issues.push(Issue::new(
                p("influxdb.batch_size"),
                "must be at least 1KiB",
            ));
        }
    }
    if let Some(m) = &cfg.mqtt {
        if !(m.url.starts_with("mqtt://") || m.url.starts_with("mqtts://")) {
            issues.push(Issue::new(
                p("mqtt.url"),
                format!("{:?} must start with mqtt:// or mqtts://", m.url),
            ));
        }
        if m.cert_file.is_some() != m.key_file.is_some() {
            issues.push(Issue::new(
                p("mqtt"),
                "cert_file and key_file go together (mutual TLS needs both)",
            ));
        }
        if m.max_inflight == 0 || m.max_inflight > 1000 {
            issues.push(Issue::new(
                p("mqtt.max_inflight"),
                "must be between 1 and 1000",
            ));
        }
        if !topic_safe(&m.topic_prefix.replace('/', "x")) {
            issues.push(Issue::new(
                p("mqtt.topic_prefix"),
                "must not be empty or contain '+' or '#'",
            ));
        }
    }
    let mut bus_names: HashMap<&str, usize> = HashMap::new();
    for (i, m) in cfg.modbus.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("modbus".into()), Seg::Index(i)]);
        if let Some(prev) = bus_names.insert(m.name.as_str(), i) {
            issues.push(Issue::new(
                base.key("name"),
                format!("duplicate name {:?} (also modbus[{prev}])", m.name),
            ));
        }
        if !(m.url.starts_with("tcp://") || m.url.starts_with("rtu://")) {
            issues.push(Issue::new(
                base.key("url"),
                format!(
                    "{:?} must be tcp://HOST:PORT or rtu:///dev/ttyX?baud=9600&parity=N",
                    m.url
                ),
            ));
        }
        if m.timeout.0.is_zero() {
            issues.push(Issue::new(base.key("timeout"), "must be greater than zero"));
        }
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, s) in cfg.sensor.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("sensor".into()), Seg::Index(i)]);
        if !topic_safe(&s.id) {
            issues.push(Issue::new(
                base.key("id"),
                "must be non-empty and must not contain '/', '+', '#' or control characters",
            ));
        }
        if let Some(prev) = ids.insert(s.id.as_str(), i) {
            issues.push(Issue::new(
                base.key("id"),
                format!(
                    "duplicate sensor id {:?} (first defined at sensor[{prev}])",
                    s.id
                ),
            ));
        }
        validate_sensor(s, &base, &bus_names, issues);
    }
}

fn validate_sensor(
    s: &SensorConfig,
    base: &KeyPath,
    buses: &HashMap<&str, usize>,
    issues: &mut Vec<Issue>,
) {
    if s.interval.0 < Duration::from_millis(10) {
        issues.push(Issue::new(base.key("interval"), "must be at least 10ms"));
    }
    if let Some(st) = s.stale_after {
        if st.0 <= s.interval.0 {
            issues.push(Issue::new(
                base.key("stale_after"),
                "must be longer than `interval`, or every poll would count as stale",
            ));
        }
    }
    if let Some(st) = s.stuck_after {
        if st.0 <= s.interval.0 {
            issues.push(Issue::new(
                base.key("stuck_after"),
                "must be longer than `interval`",
            ));
        }
    }
    if let Some(r) = s.max_rate {
        if !(r.is_finite() && r > 0.0) {
            issues.push(Issue::new(
                base.key("max_rate"),
                "must be a positive number (units per second)",
            ));
        }
    }
    // --- source ---
    let src = &s.source;
    let sp = base.key("source");
    let kinds = [src.simulated.is_some(), src.modbus.is_some()];
    match kinds.iter().filter(|b| **b).count() {
        0 => issues.push(Issue::new(
            sp.clone(),
            "needs one of `simulated = \"sine\"` or `modbus = \"<name of a [[modbus]] section>\"`",
        )),
        1 => {}
        _ => issues.push(Issue::new(
            sp.clone(),
            "give only one of `simulated` and `modbus`",
        )),
    }
    let src_json = serde_json::to_value(src).unwrap_or_default();
    let set_keys: Vec<String> = src_json
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(kind) = &src.simulated {
        if !SIM_KINDS.contains(&kind.as_str()) {
            issues.push(Issue::new(
                sp.key("simulated"),
                format!(
                    "unknown waveform {kind:?}; expected one of: {}",
                    SIM_KINDS.join(", ")
                ),
            ));
        }
        for k in &set_keys {
            if MODBUS_KEYS.contains(&k.as_str()) {
                issues.push(Issue::new(
                    sp.key(k),
                    "is a Modbus setting; it does not apply to a simulated source",
                ));
            }
        }
        if kind == "script" && src.values.as_ref().is_none_or(|v| v.is_empty()) {
            issues.push(Issue::new(
                sp.clone(),
                "a script source needs `values = [ … ]`",
            ));
        }
        if matches!(kind.as_str(), "sine" | "square") {
            if let Some(p) = src.period {
                if p.0.is_zero() {
                    issues.push(Issue::new(sp.key("period"), "must be greater than zero"));
                }
            }
        }
        if let Some(np) = src.nan_probability {
            if !(0.0..=1.0).contains(&np) {
                issues.push(Issue::new(
                    sp.key("nan_probability"),
                    "must be between 0 and 1",
                ));
            }
        }
    }
    if let Some(bus) = &src.modbus {
        if !buses.contains_key(bus.as_str()) {
            let mut names: Vec<&&str> = buses.keys().collect();
            names.sort();
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            issues.push(Issue::new(
                sp.key("modbus"),
                format!(
                    "no [[modbus]] section named {bus:?} (defined: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
        for k in &set_keys {
            if SIM_KEYS.contains(&k.as_str()) {
                issues.push(Issue::new(
                    sp.key(k),
                    "is a simulated-source setting; it does not apply to Modbus",
                ));
            }
        }
        match &src.table {
            None => issues.push(Issue::new(
                sp.clone(),
                format!("missing `table` (one of {})", MODBUS_TABLES.join(", ")),
            )),
            Some(t) if !MODBUS_TABLES.contains(&t.as_str()) => issues.push(Issue::new(
                sp.key("table"),
                format!(
                    "unknown table {t:?}; expected one of: {}",
                    MODBUS_TABLES.join(", ")
                ),
            )),
            _ => {}
        }
        if src.address.is_none() {
            issues.push(Issue::new(sp.clone(), "missing `address`"));
        }
        let ty = src.data_type.as_deref().unwrap_or("u16");
        if !MODBUS_TYPES.contains(&ty) {
            issues.push(Issue::new(
                sp.key("type"),
                format!(
                    "unknown type {ty:?}; expected one of: {}",
                    MODBUS_TYPES.join(", ")
                ),
            ));
        }
        if let Some(wo) = &src.word_order {
            if crate::source::decode::WordOrder::parse(wo).is_none() {
                issues.push(Issue::new(
                    sp.key("word_order"),
                    format!("unknown order {wo:?}; expected abcd, cdab, badc, dcba (or the 8-letter forms for 64-bit types)"),
                ));
            }
        }
        if ty == "bit" && src.bit.is_none_or(|b| b > 15) {
            issues.push(Issue::new(
                sp.clone(),
                "type = \"bit\" needs `bit` between 0 and 15",
            ));
        }
        if ty == "string" && src.length.is_none_or(|l| l == 0) {
            issues.push(Issue::new(
                sp.clone(),
                "type = \"string\" needs `length` (registers) of at least 1",
            ));
        }
    }
    // --- ranges and thresholds ---
    if let Some(v) = &s.valid {
        if let (Some(lo), Some(hi)) = (v.min, v.max) {
            if lo >= hi {
                issues.push(Issue::new(
                    base.key("valid").key("min"),
                    format!("min {lo} must be below max {hi}"),
                ));
            }
        }
    }
    let w = s.warning.unwrap_or_default();
    let c = s.critical.unwrap_or_default();
    let wp = base.key("warning");
    let cp = base.key("critical");
    let check_finite = |l: &Limits, path: &KeyPath, issues: &mut Vec<Issue>| {
        for (name, v) in [("high", l.high), ("low", l.low)] {
            if let Some(v) = v {
                if !v.is_finite() {
                    issues.push(Issue::new(path.key(name), "must be a finite number"));
                }
            }
        }
    };
    check_finite(&w, &wp, issues);
    check_finite(&c, &cp, issues);
    for (l, path, name) in [(&w, &wp, "warning"), (&c, &cp, "critical")] {
        if let (Some(lo), Some(hi)) = (l.low, l.high) {
            if lo >= hi {
                issues.push(Issue::new(
                    path.key("low"),
                    format!("{name}.low ({lo}) must be below {name}.high ({hi})"),
                ));
            }
        }
    }
    if let (Some(wh), Some(ch)) = (w.high, c.high) {
        if ch < wh {
            issues.push(Issue::new(
                cp.key("high"),
                format!("critical.high ({ch}) must not be below warning.high ({wh})"),
            ));
        }
    }
    if let (Some(wl), Some(cl)) = (w.low, c.low) {
        if cl > wl {
            issues.push(Issue::new(
                cp.key("low"),
                format!("critical.low ({cl}) must not be above warning.low ({wl})"),
            ));
        }
    }
    if let (Some(wl), Some(ch)) = (w.low, c.high) {
        if wl >= ch {
            issues.push(Issue::new(
                wp.key("low"),
                format!("warning.low ({wl}) must be below critical.high ({ch})"),
            ));
        }
    }
    if let (Some(cl), Some(wh)) = (c.low, w.high) {
        if cl >= wh {
            issues.push(Issue::new(
                cp.key("low"),
                format!("critical.low ({cl}) must be below warning.high ({wh})"),
            ));
        }
    }
    if !(s.deadband.is_finite() && s.deadband >= 0.0) {
        issues.push(Issue::new(
            base.key("deadband"),
            "must be zero or a positive number",
        ));
    } else if s.deadband > 0.0 {
        let db = s.deadband;
        let highs = [w.high, c.high]
            .into_iter()
            .flatten()
            .fold(f64::NAN, f64::min);
        let lows = [w.low, c.low]
            .into_iter()
            .flatten()
            .fold(f64::NAN, f64::max);
        if highs.is_finite() && lows.is_finite() && highs - db <= lows {
            issues.push(Issue::new(
                base.key("deadband"),
                format!(
                    "deadband {db} would never clear: a high alarm at {highs} clears only below {}, which is already in the low alarm band (≤ {lows})",
                    highs - db
                ),
            ));
        }
        if let Some(vmin) = s.valid.and_then(|v| v.min) {
            if highs.is_finite() && highs - db <= vmin {
                issues.push(Issue::new(
                    base.key("deadband"),
                    format!("deadband {db} would never clear: {highs} - {db} is at or below valid.min {vmin}"),
                ));
            }
        }
        if let Some(vmax) = s.valid.and_then(|v| v.max) {
            if lows.is_finite() && lows + db >= vmax {
                issues.push(Issue::new(
                    base.key("deadband"),
                    format!("deadband {db} would never clear: {lows} + {db} is at or above valid.max {vmax}"),
                ));
            }
        }
    }
    if let Some(v) = &s.valid {
        for (l, path) in [(&w, &wp), (&c, &cp)] {
            for (name, t) in [("high", l.high), ("low", l.low)] {
                let Some(t) = t else { continue };
                let outside = v.max.is_some_and(|m| t > m) || v.min.is_some_and(|m| t < m);
                if outside {
                    issues.push(Issue::new(
                        path.key(name),
                        format!("threshold {t} is outside the valid range, so it could never be reached"),
                    ));
                }
            }
        }
    }
}
