//! The line protocol's escaping rules, alone: the encoder (`sink::lineproto`) writes with them and the config
//! checks refuse with them what no InfluxDB parser reads back the same. A leaf: it imports nothing of the crate.

fn esc(out: &mut String, s: &str, extra: &[char]) {
    for c in s.chars() {
        match c {
            // Refused by `check-config`; kept off the wire even if a store from elsewhere carries one.
            c if c.is_control() => out.push(' '),
            c if extra.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// Why `s` cannot be written as a line-protocol name (measurement, tag key or value) that every InfluxDB parser
/// reads back as `s`; `None` when it can.
pub fn problem(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_control) {
        return Some(
            "contains a control character (newline, tab, …), which line protocol cannot carry",
        );
    }
    if s.ends_with('\\') {
        return Some("ends with a backslash, which would escape the separator after it");
    }
    if s.contains("\\ ") || s.contains("\\,") || s.contains("\\=") || s.contains("\\\\") {
        return Some("has a backslash before a space, comma, equals sign or another backslash, which InfluxDB's parsers do not read back the same");
    }
    None
}

/// Escape a measurement name.
pub fn measurement(out: &mut String, s: &str) {
    esc(out, s, &[',', ' ']);
}

/// Escape a tag key, tag value or field key.
pub fn key(out: &mut String, s: &str) {
    esc(out, s, &[',', '=', ' ']);
}

/// Escape a string field value (without the quotes).
pub fn string_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
}
