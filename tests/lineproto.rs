//! Line protocol that InfluxDB's own parser reads back exactly.
//!
//! * Golden cases: `tests/lineproto_cases/<case>/watchpost.toml` + `expected.lp`, the exact wire bytes for one
//!   reading of every sensor (adding a case needs no Rust). Each expected line is also parsed by InfluxDB 3's
//!   parser (the `influxdb-line-protocol` crate) and must give back the configured names.
//! * Property: any string `check-config` accepts as a name, tag key or tag value round-trips through the encoder
//!   and that parser to itself.

use influxdb_line_protocol::{parse_lines, FieldValue};
use proptest::prelude::*;
use std::path::Path;
use watchpost::model::SensorId;
use watchpost::model::{Reading, Timestamp};
use watchpost::sink::lineproto::{problem, Encoder};

const TS: i64 = 1_700_000_000_123;

fn encode_all(cfg: &watchpost::config::Config) -> String {
    let mut enc = Encoder::from_config(cfg, None);
    let mut out = String::new();
    for s in &cfg.sensor {
        enc.line(
            &mut out,
            &Reading::new(SensorId::from(s.id.as_str()), Timestamp(TS), 21.5),
        );
    }
    out
}

#[test]
fn golden_cases_are_exact_and_read_back_by_influxdb() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lineproto_cases");
    let mut n = 0;
    for case in std::fs::read_dir(&root).expect("cases").flatten() {
        let dir = case.path();
        let toml = dir.join("watchpost.toml");
        let cfg =
            watchpost::config::load(&toml).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let expected = std::fs::read_to_string(dir.join("expected.lp")).expect("expected.lp");
        let got = encode_all(&cfg);
        assert_eq!(got, expected, "{}", dir.display());
        for (line, s) in parse_lines(&got).zip(&cfg.sensor) {
            let line =
                line.unwrap_or_else(|e| panic!("{}: InfluxDB cannot parse: {e}", dir.display()));
            let tag = |k: &str| line.tag_value(k).map(|v| v.to_string());
            assert_eq!(
                tag("sensor").as_deref(),
                Some(s.id.as_str()),
                "{}",
                dir.display()
            );
            assert_eq!(tag("device").as_deref(), Some(cfg.gateway.id.as_str()));
            if !cfg.gateway.location.is_empty() {
                assert_eq!(
                    tag("location").as_deref(),
                    Some(cfg.gateway.location.as_str())
                );
            }
            for (k, v) in &s.tags {
                assert_eq!(
                    tag(k).as_deref(),
                    Some(v.as_str()),
                    "{}: tag {k}",
                    dir.display()
                );
            }
            let measurement = cfg
                .influxdb
                .as_ref()
                .map(|i| i.measurement.as_str())
                .unwrap_or("sensor");
            assert_eq!(line.series.measurement.to_string(), measurement);
            assert!(matches!(line.field_set[0].1, FieldValue::F64(v) if v == 21.5));
        }
        n += 1;
    }
    assert!(n >= 5, "found {n} cases");
}

fn name_strategy() -> impl Strategy<Value = String> {
    // Letters, the characters line protocol treats specially, backslashes, quotes, '#', '_', unicode.
    proptest::collection::vec(
        prop_oneof![
            8 => prop_oneof![Just('a'), Just('Z'), Just('7'), Just('ü'), Just('温'), Just('\''), Just('#'), Just('_')],
            4 => prop_oneof![Just(' '), Just(','), Just('='), Just('"')],
            2 => Just('\\'),
            1 => prop_oneof![Just('\n'), Just('\t')],
        ],
        1..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_global_rejects: 200_000, ..ProptestConfig::default() })]
    #[test]
    fn every_accepted_string_round_trips_through_influxdb(s in name_strategy(), k in name_strategy()) {
        prop_assume!(problem(&s).is_none() && problem(&k).is_none());
        prop_assume!(!k.starts_with('_') && !["device", "location", "sensor", "time"].contains(&k.as_str()));
        let mut tags = std::collections::BTreeMap::new();
        tags.insert(k.clone(), s.clone());
        let mut common = std::collections::BTreeMap::new();
        common.insert("location".to_string(), s.clone());
        let mut per = std::collections::BTreeMap::new();
        per.insert(s.clone(), tags);
        // `s` as measurement (unless it would be a comment), sensor id, location and tag value; `k` as tag key.
        let meas = if s.starts_with('#') { "m".to_string() } else { s.clone() };
        let mut enc = Encoder::new(&meas, "ms", common, per);
        let mut out = String::new();
        enc.line(&mut out, &Reading::new(SensorId::from(s.as_str()), Timestamp(TS), 1.0));
        let parsed: Vec<_> = parse_lines(&out).collect();
        prop_assert_eq!(parsed.len(), 1, "{}", out);
        let line = parsed.into_iter().next().unwrap().map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        prop_assert_eq!(line.series.measurement.to_string(), meas);
        prop_assert_eq!(line.tag_value("sensor").map(|v| v.to_string()), Some(s.clone()));
        prop_assert_eq!(line.tag_value("location").map(|v| v.to_string()), Some(s.clone()));
        prop_assert_eq!(line.tag_value(&k).map(|v| v.to_string()), Some(s.clone()));
        prop_assert_eq!(line.timestamp, Some(TS));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]
    /// Every finite value comes back bit for bit through InfluxDB's own parser: shortest digits, exponents (`1e+16`,
    /// `5e-324`) and signed zero included.
    #[test]
    fn every_finite_value_round_trips_through_influxdb(bits in any::<u64>(), small in -1.0e6f64..1.0e6) {
        for v in [f64::from_bits(bits), small, small.round(), 1e16, 1e-5, -0.0, f64::MAX, f64::MIN_POSITIVE, 5e-324] {
            prop_assume!(v.is_finite());
            let mut enc = Encoder::new("m", "ms", Default::default(), Default::default());
            let mut out = String::new();
            enc.line(&mut out, &Reading::new(SensorId::from("s"), Timestamp(TS), v));
            let parsed: Vec<_> = parse_lines(&out).collect();
            prop_assert_eq!(parsed.len(), 1, "{}", out);
            let line = parsed.into_iter().next().unwrap().map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            let got = match line.field_set[0].1 {
                FieldValue::F64(x) => x,
                ref other => return Err(TestCaseError::fail(format!("{other:?}: {out}"))),
            };
            prop_assert_eq!(got.to_bits(), v.to_bits(), "{}", out);
        }
    }
}
