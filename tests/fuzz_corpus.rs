//! Replays every saved fuzz input (`fuzz/corpus/<target>/*`) through the same entry points `cargo fuzz` drives,
//! on stable Rust: a finding, once saved, stays fixed. Fuzzing itself: `fuzz/run.sh` (nightly).

use std::path::Path;

fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let data = std::fs::read(e.path()).expect("read input");
        f(&data);
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn config_corpus() {
    replay("config", watchpost::fuzz::config);
}

#[test]
fn modbus_decode_corpus() {
    replay("modbus_decode", watchpost::fuzz::modbus_decode);
}

#[test]
fn store_codec_corpus() {
    replay("store_codec", watchpost::fuzz::store_codec);
}

#[test]
fn shadow_corpus() {
    replay("shadow", watchpost::fuzz::shadow);
}

#[test]
fn line_protocol_corpus() {
    replay("line_protocol", |data| {
        if let Some((s, line)) = watchpost::fuzz::line_protocol(data) {
            let p = influxdb_line_protocol::parse_lines(&line)
                .next()
                .expect("one line")
                .unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(
                p.tag_value("sensor").map(|v| v.to_string()).as_deref(),
                Some(s.as_str())
            );
            assert_eq!(
                p.tag_value("k").map(|v| v.to_string()).as_deref(),
                Some(s.as_str())
            );
        }
    });
}
