//! Names and values that reach the time-series store: each must come back exactly through InfluxDB's line-protocol
//! parsers, and tag names must not collide with InfluxDB's reserved ones or watchpost's own.

use super::{Config, Issue, KeyPath, Seg};
use std::time::Duration;

/// Tags watchpost writes itself; a configured tag of the same name would silently replace or be replaced.
const BUILT_IN_TAGS: [&str; 3] = ["device", "location", "sensor"];

/// Every string that reaches line protocol must be read back exactly by InfluxDB's parsers (see
/// `lineproto::problem`), and names must not collide with InfluxDB's reserved ones or watchpost's own tags.
pub(super) fn validate(cfg: &Config, issues: &mut Vec<Issue>) {
    use crate::lineproto::problem;
    let p = KeyPath::parse;
    let check = |path: KeyPath, v: &str, issues: &mut Vec<Issue>| {
        if let Some(why) = problem(v) {
            issues.push(Issue::new(path, format!("{v:?} {why}")));
        }
    };
    check(p("gateway.id"), &cfg.gateway.id, issues);
    check(p("gateway.location"), &cfg.gateway.location, issues);
    let tag_key = |path: KeyPath, k: &str, issues: &mut Vec<Issue>| {
        if k.is_empty() {
            issues.push(Issue::new(path, "a tag name must not be empty"));
        } else if k.starts_with('_') {
            issues.push(Issue::new(
                path,
                format!("tag {k:?}: names starting with '_' are reserved by InfluxDB"),
            ));
        } else if k == "time" {
            issues.push(Issue::new(
                path,
                "tag \"time\": InfluxDB 1.x drops every point that has it",
            ));
        } else if BUILT_IN_TAGS.contains(&k) {
            issues.push(Issue::new(
                path,
                format!("tag {k:?} is written by watchpost itself (device, location, sensor); use another name"),
            ));
        }
    };
    if let Some(i) = &cfg.influxdb {
        let m = &i.measurement;
        if m.is_empty() {
            issues.push(Issue::new(p("influxdb.measurement"), "must not be empty"));
        } else if m.starts_with('#') {
            issues.push(Issue::new(
                p("influxdb.measurement"),
                "must not start with '#' (the line would be a comment)",
            ));
        } else if m.starts_with('_') {
            issues.push(Issue::new(
                p("influxdb.measurement"),
                "names starting with '_' are reserved by InfluxDB",
            ));
        }
        check(p("influxdb.measurement"), m, issues);
        for (k, v) in &i.tags {
            let path = p("influxdb.tags").key(k);
            tag_key(path.clone(), k, issues);
            check(path.clone(), k, issues);
            if v.is_empty() {
                issues.push(Issue::new(path.clone(), "a tag value must not be empty"));
            }
            check(path, v, issues);
        }
        if i.precision == "s" {
            if let Some((n, s)) = cfg
                .sensor
                .iter()
                .enumerate()
                .find(|(_, s)| s.interval.0 < Duration::from_secs(1))
            {
                issues.push(Issue::new(
                    p("influxdb.precision"),
                    format!(
                        "\"s\" would write several readings of sensor {:?} (sensor[{n}], interval {}) on one timestamp, and InfluxDB keeps only the last: use \"ms\"",
                        s.id,
                        humantime::format_duration(s.interval.0)
                    ),
                ));
            }
        }
    }
    for (n, s) in cfg.sensor.iter().enumerate() {
        let base = KeyPath(vec![Seg::Key("sensor".into()), Seg::Index(n)]);
        check(base.key("id"), &s.id, issues);
        for (k, v) in &s.tags {
            let path = base.key("tags").key(k);
            tag_key(path.clone(), k, issues);
            check(path.clone(), k, issues);
            if v.is_empty() {
                issues.push(Issue::new(path.clone(), "a tag value must not be empty"));
            }
            check(path, v, issues);
        }
    }
}
