#![no_main]
// Any string check-config accepts is encoded as one line that InfluxDB's own parser reads back exactly.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((s, line)) = watchpost::fuzz::line_protocol(data) {
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&line).collect();
        assert_eq!(parsed.len(), 1, "{line:?}");
        let p = parsed
            .into_iter()
            .next()
            .unwrap()
            .expect("InfluxDB parses it");
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
