//! Semantic checks that serde cannot express. Every check pushes an [`Issue`] and goes on, so the user sees all
//! problems at once.

use super::{Config, Issue, KeyPath, Limits, Seg, SensorConfig, SourceConfig};
use std::collections::HashMap;
use std::time::Duration;

fn topic_safe(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
}

/// An MQTT keep-alive fits the protocol's 16 bits of seconds.
fn at_most_secs(issues: &mut Vec<Issue>, key: KeyPath, d: Duration) {
    if d.as_secs() > 65_535 {
        issues.push(Issue::new(key, "must be at most 65535s (the MQTT limit)"));
    }
}

pub(crate) fn validate(cfg: &Config, issues: &mut Vec<Issue>) {
    let p = KeyPath::parse;
    if let Some(e) = &cfg.email {
        super::email::validate(e, issues);
    }
    super::i2c::validate(cfg, issues);
    super::alarms::validate(&cfg.alarms, issues);
    super::alarms::validate_links(cfg, issues);
    if let Some(t) = cfg.mqtt.as_ref().and_then(|m| m.telemetry.as_ref()) {
        if t.qos > 1 {
            issues.push(Issue::new(
                p("mqtt.telemetry.qos"),
                "must be 0 or 1 (QoS 2 is not used)",
            ));
        }
        if t.window.0 < Duration::from_secs(1) {
            issues.push(Issue::new(
                p("mqtt.telemetry.window"),
                "must be at least 1s",
            ));
        }
        if t.max_interval.0 < Duration::from_secs(1) {
            issues.push(Issue::new(
                p("mqtt.telemetry.max_interval"),
                "must be at least 1s",
            ));
        }
        for (k, v) in [
            ("deadband", t.deadband),
            ("deadband_percent", t.deadband_percent),
        ] {
            if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
                issues.push(Issue::new(
                    p("mqtt.telemetry").key(k),
                    "must be a number ≥ 0",
                ));
            }
        }
    }
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
    // Upper bounds with the unit a user would think in: beyond these a value is a typo, not a choice.
    const DAY: u64 = 86_400;
    let mut at_most = |path: KeyPath, d: Duration, max_s: u64, what: &str| {
        if d > Duration::from_secs(max_s) {
            issues.push(Issue::new(path, format!("must be at most {what}")));
        }
    };
    at_most(
        p("buffer.flush_interval"),
        cfg.buffer.flush_interval.0,
        3600,
        "1h",
    );
    at_most(
        p("buffer.retention"),
        cfg.buffer.retention.0,
        3650 * DAY,
        "3650d (10 years)",
    );
    if let Some(i) = &cfg.influxdb {
        at_most(p("influxdb.timeout"), i.timeout.0, 600, "10m");
        at_most(p("influxdb.write_interval"), i.write_interval.0, 3600, "1h");
    }
    if let Some(m) = &cfg.mqtt {
        at_most(
            p("mqtt.keep_alive"),
            m.keep_alive.0,
            65_535,
            "65535s (the MQTT limit)",
        );
        if let Some(sh) = &m.shadow {
            at_most(p("mqtt.shadow.min_interval"), sh.min_interval.0, DAY, "1d");
        }
        if let Some(c) = &m.commands {
            at_most(
                p("mqtt.commands.max_shelve"),
                c.max_shelve.0,
                30 * DAY,
                "30d",
            );
        }
        if let Some(t) = &m.telemetry {
            at_most(p("mqtt.telemetry.window"), t.window.0, DAY, "1d");
            at_most(
                p("mqtt.telemetry.max_interval"),
                t.max_interval.0,
                DAY,
                "1d",
            );
        }
    }
    for (i, m) in cfg.modbus.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("modbus".into()), Seg::Index(i)]);
        at_most(base.key("timeout"), m.timeout.0, 60, "1m");
        at_most(base.key("frame_delay"), m.frame_delay.0, 1, "1s");
    }
    for (i, s) in cfg.sensor.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("sensor".into()), Seg::Index(i)]);
        at_most(base.key("interval"), s.interval.0, DAY, "1d");
        for (k, d) in [
            ("stale_after", s.stale_after),
            ("stuck_after", s.stuck_after),
            ("delay", s.delay),
            ("off_delay", s.off_delay),
        ] {
            if let Some(d) = d {
                at_most(base.key(k), d.0, 30 * DAY, "30d");
            }
        }
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
        http_url(&mut *issues, p("influxdb.url"), &i.url);
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
    if let Some(m) = &cfg.metrics {
        if m.listen.parse::<std::net::SocketAddr>().is_err() {
            issues.push(Issue::new(
                p("metrics.listen"),
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:9898\" or \"[::1]:9898\"",
                    m.listen
                ),
            ));
        }
    }
    if let Some(sh) = cfg.mqtt.as_ref().and_then(|m| m.shadow.as_ref()) {
        for (k, v) in [("thing", Some(&sh.thing)), ("name", sh.name.as_ref())] {
            if let Some(v) = v {
                if !topic_safe(v) || v.len() > 128 {
                    issues.push(Issue::new(
                        p("mqtt.shadow").key(k),
                        "must be 1–128 characters without '/', '+', '#' or control characters (it is part of the shadow topics)",
                    ));
                }
            }
        }
    }
    if let Some(sp) = &cfg.sparkplug {
        if !(sp.url.starts_with("mqtt://") || sp.url.starts_with("mqtts://")) {
            issues.push(Issue::new(
                p("sparkplug.url"),
                format!("{:?} must start with mqtt:// or mqtts://", sp.url),
            ));
        }
        ascii_host(&mut *issues, p("sparkplug.url"), &sp.url);
        let node = sp.node_id(&cfg.gateway.id);
        for (key, id) in [
            ("sparkplug.group_id", sp.group_id.as_str()),
            ("sparkplug.edge_node_id", node),
        ] {
            if let Some(why) = super::sparkplug_id_problem(id) {
                issues.push(Issue::new(p(key), format!("{id:?} {why}")));
            }
        }
        at_most_secs(&mut *issues, p("sparkplug.keep_alive"), sp.keep_alive.0);
    }
    if let Some(m) = &cfg.mqtt {
        if !(m.url.starts_with("mqtt://") || m.url.starts_with("mqtts://")) {
            issues.push(Issue::new(
                p("mqtt.url"),
                format!("{:?} must start with mqtt:// or mqtts://", m.url),
            ));
        }
        ascii_host(&mut *issues, p("mqtt.url"), &m.url);
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
        if m.max_message_size.0 < 4096 || m.max_message_size.0 > 256 << 20 {
            issues.push(Issue::new(
                p("mqtt.max_message_size"),
                "must be between 4KiB and 256MiB (MQTT's own limit)",
            ));
        }
        if !topic_safe(&m.topic_prefix.replace('/', "x")) {
            issues.push(Issue::new(
                p("mqtt.topic_prefix"),
                "must not be empty or contain '+' or '#'",
            ));
        }
    }
    let mut bus_names: HashMap<&str, (usize, bool)> = HashMap::new();
    for (i, m) in cfg.modbus.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("modbus".into()), Seg::Index(i)]);
        if let Some((prev, _)) = bus_names.insert(m.name.as_str(), (i, m.one_based)) {
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
        super::alarms::validate_sensor(s.rate.as_ref(), s.deviation.as_ref(), &base, issues);
    }
    super::names::validate(cfg, issues);
}

fn validate_sensor(
    s: &SensorConfig,
    base: &KeyPath,
    buses: &HashMap<&str, (usize, bool)>,
    issues: &mut Vec<Issue>,
) {
    if s.interval.0 < Duration::from_millis(10) {
        issues.push(Issue::new(base.key("interval"), "must be at least 10ms"));
    }
    if let super::SourceConfig::Modbus(m) = &s.source {
        if matches!(m.data_type, super::DataType::String(_)) {
            let numeric = [
                ("warning", s.warning.is_some()),
                ("critical", s.critical.is_some()),
                ("valid", s.valid.is_some()),
                ("max_rate", s.max_rate.is_some()),
                ("stuck_after", s.stuck_after.is_some()),
                ("rate", s.rate.is_some()),
                ("deviation", s.deviation.is_some()),
            ];
            for (key, _) in numeric.iter().filter(|(_, set)| *set) {
                issues.push(Issue::new(
                    base.key(key),
                    "this sensor reads text (type = \"string\"): there is no number to compare",
                ));
            }
        }
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
    // --- source (the kind's own keys were checked when it was read; see `source.rs`) ---
    if let SourceConfig::Modbus(m) = &s.source {
        let sp = base.key("source");
        match buses.get(m.bus.as_str()) {
            None => {
                let mut names: Vec<&&str> = buses.keys().collect();
                names.sort();
                let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
                issues.push(Issue::new(
                    sp.key("modbus"),
                    format!(
                        "no [[modbus]] section named {:?} (defined: {})",
                        m.bus,
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            }
            Some(&(_, one_based)) if one_based && m.address == 0 => issues.push(Issue::new(
                sp.key("address"),
                "is 0, but this bus counts addresses from 1 (`one_based = true`): the first register is 1",
            )),
            Some(_) => {}
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

/// An HTTP client's URL: its host ASCII ([`ascii_host`]), then parsed as the client parses it, so what the sink
/// would refuse when it starts (a space in the host, a port out of range) is refused here. Built without InfluxDB
/// support, only the host is looked at.
fn http_url(issues: &mut Vec<Issue>, key: KeyPath, url: &str) {
    let before = issues.len();
    ascii_host(&mut *issues, key.clone(), url);
    #[cfg(feature = "influxdb")]
    if issues.len() == before {
        if let Err(e) = reqwest::Url::parse(url) {
            issues.push(Issue::new(key, format!("{url:?} is not a valid URL: {e}")));
        }
    }
    #[cfg(not(feature = "influxdb"))]
    let _ = (before, key);
}

/// A URL whose host is not ASCII is refused (see `words::non_ascii_host`).
fn ascii_host(issues: &mut Vec<Issue>, key: KeyPath, url: &str) {
    if let Some(why) = super::words::non_ascii_host(url) {
        issues.push(Issue::new(key, why));
    }
}
