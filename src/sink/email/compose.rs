//! One digest mail: subject, plain-text and HTML bodies with a table of the alert events, and the same JSON as the
//! MQTT payload attached for machines. Nothing from a sensor name or a config value can reach a header unescaped:
//! the subject is built from counts and a cleaned sensor id, and lettre encodes non-ASCII (RFC 2047).

use crate::model::{Alert, AlertState, AlertType, Direction, Severity, Timestamp};
use std::fmt::Write as _;

/// Table rows shown in one mail; the attachment always holds every event.
pub const MAX_ROWS: usize = 200;

/// What goes into one mail.
pub struct Digest<'a> {
    /// Gateway id.
    pub gateway: &'a str,
    /// Gateway location (may be empty).
    pub location: &'a str,
    /// The events, oldest first.
    pub events: Vec<&'a Alert>,
    /// The hourly cap held mails back: (cap, since when).
    pub folded: Option<(u32, Timestamp)>,
}

/// Subject, plain text, HTML and the JSON attachment.
pub struct Composed {
    /// Subject line (no control characters).
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// `[alert, …]`, the MQTT payloads.
    pub json: String,
}

fn is_active(a: &Alert) -> bool {
    a.annunciates()
}

/// Make the mail's parts.
pub fn compose(d: &Digest) -> Composed {
    let crit = d
        .events
        .iter()
        .filter(|a| is_active(a) && a.severity == Severity::Critical)
        .count();
    let warn = d
        .events
        .iter()
        .filter(|a| is_active(a) && a.severity == Severity::Warning)
        .count();
    let deesc = d
        .events
        .iter()
        .filter(|a| a.state == AlertState::Deescalated)
        .count();
    let cleared = d
        .events
        .iter()
        .filter(|a| a.state == AlertState::Cleared)
        .count();
    let mut parts = Vec::new();
    for (n, what) in [
        (crit, "CRITICAL"),
        (warn, "WARNING"),
        (deesc, "de-escalated"),
        (cleared, "cleared"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let mut subject = format!("[watchpost {}] {}", clean(d.gateway, 64), parts.join(", "));
    if let [a] = d.events.as_slice() {
        subject.push_str(&format!(": {} {}", clean(&a.sensor, 64), what(a)));
    }
    let rows: Vec<Row> = d.events.iter().take(MAX_ROWS).map(|a| row(a)).collect();
    let more = d.events.len().saturating_sub(MAX_ROWS);
    let place = if d.location.is_empty() {
        String::new()
    } else {
        format!(" ({})", d.location)
    };
    let intro = format!(
        "watchpost gateway {}{place}: {} alert event{}.",
        d.gateway,
        d.events.len(),
        if d.events.len() == 1 { "" } else { "s" }
    );
    let folded = d.folded.map(|(cap, since)| {
        format!(
            "The limit of {cap} mails per hour was reached; this mail folds in the {} alert events held back since {}.",
            d.events.len(),
            utc(since)
        )
    });
    let json = serde_json::to_string_pretty(&d.events).unwrap_or_else(|_| "[]".into());

    let mut text = String::new();
    let _ = writeln!(text, "{intro}");
    if let Some(f) = &folded {
        let _ = writeln!(text, "\n{f}");
    }
    let _ = writeln!(text);
    let head = Row::HEADER;
    let mut width = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r.cells()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 8], out: &mut String| {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(width) {
            let _ = write!(l, "{c:<w$}  ");
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(head, &mut text);
    for r in &rows {
        line(r.cells(), &mut text);
    }
    if more > 0 {
        let _ = writeln!(text, "… and {more} more in the attached alerts.json.");
    }
    let _ = writeln!(
        text,
        "\nEach event is also attached as alerts.json (the same JSON as the MQTT alert payload)."
    );

    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">",
    );
    let _ = write!(html, "<p>{}</p>", esc(&intro));
    if let Some(f) = &folded {
        let _ = write!(html, "<p><b>{}</b></p>", esc(f));
    }
    html.push_str("<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\" style=\"border-collapse:collapse\"><tr>");
    for h in head {
        let _ = write!(html, "<th align=\"left\">{}</th>", esc(h));
    }
    html.push_str("</tr>");
    for r in &rows {
        let colour = match (r.active, r.critical) {
            (true, true) => " style=\"background:#fdd\"",
            (true, false) => " style=\"background:#ffd\"",
            _ => "",
        };
        let _ = write!(html, "<tr{colour}>");
        for c in r.cells() {
            let _ = write!(html, "<td>{}</td>", esc(c));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    if more > 0 {
        let _ = write!(
            html,
            "<p>… and {more} more in the attached alerts.json.</p>"
        );
    }
    html.push_str("<p>Every event is attached as alerts.json (the same JSON as the MQTT alert payload).</p></body></html>");
    Composed {
        subject,
        text,
        html,
        json,
    }
}

struct Row {
    cells: [String; 8],
    active: bool,
    critical: bool,
}

impl Row {
    const HEADER: [&'static str; 8] = [
        "State",
        "Severity",
        "Sensor",
        "What",
        "Value",
        "Limit",
        "Time (UTC)",
        "Local time",
    ];
    fn cells(&self) -> [&str; 8] {
        [0, 1, 2, 3, 4, 5, 6, 7].map(|i| self.cells[i].as_str())
    }
}

fn row(a: &Alert) -> Row {
    let unit = a.unit.as_deref().unwrap_or("");
    let with_unit = |v: Option<f64>| match v {
        Some(v) if unit.is_empty() => format!("{v}"),
        Some(v) => format!("{v} {unit}"),
        None => String::new(),
    };
    let state = match a.state {
        AlertState::Deescalated => "de-escalated",
        AlertState::Unshelved if a.operator.active == Some(true) => "unshelved, active",
        AlertState::Cleared if a.operator.acked == Some(false) => "cleared, unacknowledged",
        s => s.as_str(),
    };
    Row {
        cells: [
            state.into(),
            a.severity.as_str().into(),
            clean(&a.sensor, 128),
            clean(
                &match a.operator.priority {
                    // The table says how urgent each process alarm is; the subject stays short.
                    Some(p) if a.is_process_alarm() => {
                        format!("{} — {} priority", what(a), p.as_str())
                    }
                    _ => what(a),
                },
                256,
            ),
            with_unit(a.value),
            with_unit(a.threshold),
            utc(a.ts),
            local(a.ts),
        ],
        active: is_active(a),
        critical: a.severity == Severity::Critical,
    }
}

/// `high alarm`, `sensor fault: NaN`, `offline`, …
fn what(a: &Alert) -> String {
    let base = match (a.kind, a.direction) {
        (AlertType::Alert, Some(Direction::High)) => "high".to_string(),
        (AlertType::Alert, Some(Direction::Low)) => "low".to_string(),
        (AlertType::Alert, None) => "threshold".to_string(),
        (AlertType::SensorFault, _) => "sensor fault".to_string(),
        (AlertType::SensorOffline, _) => "offline".to_string(),
        (AlertType::BufferOverflow, _) => "buffer overflow".to_string(),
        (AlertType::OutOfService, _) => "out of service".to_string(),
        (AlertType::ConfigChange, _) => "remote configuration".to_string(),
        (AlertType::DeadLetter, _) => "dead letter".to_string(),
        (AlertType::RateOfChange, Some(Direction::Low)) => "falling too fast".to_string(),
        (AlertType::RateOfChange, _) => "rising too fast".to_string(),
        (AlertType::Deviation, _) => "deviation".to_string(),
        (AlertType::SuppressedByState, _) => "suppressed by state".to_string(),
        (AlertType::Chattering, _) => "chattering".to_string(),
        (AlertType::AlarmFlood, _) => "alarm flood".to_string(),
    };
    match &a.reason {
        Some(r) => format!("{base}: {r}"),
        None => base,
    }
}

/// Control characters out (a header or a table row is one line), at most `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// HTML-escape text.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `2026-11-30 21:00:01 UTC`
fn utc(t: Timestamp) -> String {
    let s = t.rfc3339();
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// The gateway's local time (TZ, else /etc/localtime), e.g. `2026-11-30 22:00:01 CET`.
fn local(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1000) as libc::time_t;
    // SAFETY: `localtime_r` writes only into `tm`, which we own; a zeroed `tm` is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals of the right types; the result is only compared with null.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return String::new();
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: glibc points tm_zone at a NUL-terminated static string of the time-zone data.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    let off = tm.tm_gmtoff / 60;
    let zone = if zone.is_empty() || zone.chars().any(|c| c.is_control()) {
        format!("{:+03}:{:02}", off / 60, (off % 60).abs())
    } else {
        zone
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {zone}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A high-limit alarm event at 2025-11-30 21:00:01 UTC, for the email tests.
    pub(crate) fn alert(sensor: &str, state: AlertState, sev: Severity) -> Alert {
        Alert {
            kind: AlertType::Alert,
            id: format!("gw:{sensor}:1"),
            state,
            severity: sev,
            sensor: sensor.into(),
            device: "gw".into(),
            location: "Hall 2".into(),
            value: Some(93.5),
            unit: Some("°C".into()),
            threshold: Some(90.0),
            direction: Some(Direction::High),
            ts: Timestamp(1_764_536_401_000),
            since: Timestamp(1_764_536_401_000),
            reason: None,
            operator: Default::default(),
        }
    }

    #[test]
    fn subject_counts_and_single_event() {
        let a = alert("oil_temp", AlertState::Raised, Severity::Critical);
        let d = Digest {
            gateway: "press-line-3",
            location: "Hall 2",
            events: vec![&a],
            folded: None,
        };
        let c = compose(&d);
        assert_eq!(
            c.subject,
            "[watchpost press-line-3] 1 CRITICAL: oil_temp high"
        );
        assert!(c.text.contains("oil_temp"), "{}", c.text);
        assert!(c.text.contains("93.5 °C"), "{}", c.text);
        assert!(c.text.contains("2025-11-30 21:00:01 UTC"), "{}", c.text);
        let b = alert("oil_temp", AlertState::Cleared, Severity::Critical);
        let w = alert("fan", AlertState::Raised, Severity::Warning);
        let d = Digest {
            gateway: "gw",
            location: "",
            events: vec![&a, &a, &a, &w, &b],
            folded: Some((20, Timestamp(0))),
        };
        let c = compose(&d);
        assert_eq!(c.subject, "[watchpost gw] 3 CRITICAL, 1 WARNING, 1 cleared");
        assert!(c.text.contains("limit of 20 mails per hour"), "{}", c.text);
        let v: Vec<Alert> = serde_json::from_str(&c.json).expect("json");
        assert_eq!(v.len(), 5);
    }

    #[test]
    fn hostile_sensor_ids_stay_in_their_cell() {
        let a = alert(
            "x\r\nBcc: victim@example.test\r\n<script>",
            AlertState::Raised,
            Severity::Critical,
        );
        let c = compose(&Digest {
            gateway: "gw",
            location: "",
            events: vec![&a],
            folded: None,
        });
        assert!(!c.subject.contains(['\r', '\n']));
        assert!(!c.html.contains("<script>"));
        assert!(c.html.contains("&lt;script&gt;"));
    }
}
