//! Entry points for fuzzing: each takes arbitrary bytes and must neither panic nor hang, whatever they are.
//!
//! The `cargo fuzz` targets under `fuzz/` call these, and `tests/fuzz_corpus.rs` replays every saved input
//! (`fuzz/corpus/<target>/*`) on stable Rust, so a finding stays fixed. `fuzz/run.sh` fuzzes for a while.

use crate::config::{DataType, WordOrder};
use crate::model::SensorId;
use crate::model::{Live, Reading, Timestamp};
use crate::sink::lineproto::{problem, Encoder};
use crate::store::codec;
use std::collections::BTreeMap;

/// The config loader: text → config or located errors, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::parse_str(text, std::path::Path::new("fuzz.toml"), &[]) {
        Ok(cfg) => {
            // A valid config also passes everything built from it.
            let _ = crate::source::groups(&cfg);
            let _ = Encoder::from_config(&cfg, None);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Modbus register decoding: every type in every word order over arbitrary registers.
pub fn modbus_decode(data: &[u8]) {
    let regs: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let types = [
        DataType::Bool,
        DataType::Bit(data.first().map(|b| b % 16).unwrap_or(0)),
        DataType::U8Low,
        DataType::U8High,
        DataType::I8Low,
        DataType::I8High,
        DataType::F16,
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::U64,
        DataType::I64,
        DataType::F32,
        DataType::F64,
    ];
    for ty in types {
        for (_, order) in WordOrder::all() {
            let n = usize::from(ty.registers()).min(regs.len());
            let _ = crate::source::modbus::decode::decode(&regs[..n], ty, order);
        }
    }
}

/// Line-protocol encoding: a string `check-config` accepts yields exactly one line, ending in a newline.
/// Returns the encoded line for the caller's own checks (the fuzz target parses it with InfluxDB's parser).
pub fn line_protocol(data: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(data).ok()?;
    if s.is_empty() || problem(s).is_some() {
        return None;
    }
    let mut tags = BTreeMap::new();
    tags.insert("k".to_string(), s.to_string());
    let mut per = BTreeMap::new();
    per.insert(s.to_string(), tags);
    let measurement = if s.starts_with('#') || s.starts_with('_') {
        "m"
    } else {
        s
    };
    let mut enc = Encoder::new(measurement, "ms", BTreeMap::new(), per);
    let mut out = String::new();
    enc.line(
        &mut out,
        &Reading::new(SensorId::from(s), Timestamp(1), 1.5),
    );
    assert!(
        out.ends_with('\n') && out.matches('\n').count() == 1,
        "one line: {out:?}"
    );
    Some((s.to_string(), out))
}

/// The store codec: arbitrary bytes decode to `None` or to rows that encode and decode to themselves.
pub fn store_codec(data: &[u8]) {
    if let Some(rows) = codec::decode(data) {
        if let Ok(again) = codec::encode(&rows, 1) {
            let back = codec::decode(&again).unwrap_or_default();
            assert_eq!(back.len(), rows.len());
            for (a, b) in rows.iter().zip(&back) {
                assert_eq!((a.sensor, a.ts), (b.sensor, b.ts));
                assert!(
                    a.value.to_bits() == b.value.to_bits()
                        || (a.value.is_nan() && b.value.is_nan())
                );
            }
        }
    }
}

/// The device shadow: any message on any shadow topic is survived, and the next report stays within budget.
pub fn shadow(data: &[u8]) {
    use crate::sink::mqtt::shadow::{Shadow, SHADOW_BUDGET};
    let cfg = crate::config::ShadowConfig {
        thing: "t".into(),
        name: None,
        min_interval: crate::config::Dur(std::time::Duration::ZERO),
        apply_desired: false,
    };
    let metrics = crate::metrics::SharedMetrics::default();
    let mut sh = Shadow::new(&cfg, "gw", "watchpost/gw/alerts/#");
    let _ = sh.on_connect();
    let kinds = [
        "update/accepted",
        "update/rejected",
        "update/delta",
        "get/accepted",
        "get/rejected",
    ];
    let kind = kinds[usize::from(data.first().copied().unwrap_or(0)) % kinds.len()];
    let payload = data.get(1..).unwrap_or(&[]);
    let _ = sh.handle(&format!("$aws/things/t/shadow/{kind}"), payload, &metrics);
    if let Some(o) = sh.maybe_update(&Live::default(), &Default::default(), Timestamp(1)) {
        assert!(
            o.payload.len() <= SHADOW_BUDGET + 512,
            "{} bytes",
            o.payload.len()
        );
    }
}
