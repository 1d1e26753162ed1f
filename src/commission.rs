//! Commissioning tools: `watchpost read` (read sensors once) and `watchpost scan modbus` (find units).

use crate::config::Config;
use crate::model::Timestamp;
use std::process::ExitCode;

/// A single-threaded runtime for a one-shot command; prints the error and returns `None` if it cannot start.
pub fn command_runtime(cmd: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("watchpost {cmd}: {e}");
            None
        }
    }
}

/// A reading for people: 7 significant digits (an f32's precision; a driver's raw f64 arithmetic shows more
/// digits than any sensor resolves).
fn shown(v: f64) -> String {
    crate::util::significant(v, 7)
}

/// One sensor in `read --json`: the value (full precision), its unit, where it came from and the raw registers
/// or bytes.
fn entry(v: Option<f64>, unit: &str, from: &str, raw: Vec<String>) -> serde_json::Value {
    serde_json::json!({ "value": v, "unit": unit, "from": from, "raw": raw })
}

/// One sensor that could not be read, in `read --json`.
#[cfg(any(feature = "modbus", feature = "i2c"))]
fn failure(e: &dyn std::fmt::Display) -> serde_json::Value {
    serde_json::json!({ "value": null, "error": e.to_string() })
}

/// Read the selected sensors once and print their values (with `json`: one object per sensor with its value,
/// unit, origin and raw registers or bytes).
#[cfg_attr(
    not(any(feature = "modbus", feature = "i2c")),
    allow(unused_mut, unused_variables)
)]
pub fn read(cfg: &Config, only: &[String], json: bool) -> ExitCode {
    for id in only {
        if !cfg.sensor.iter().any(|s| &s.id == id) {
            eprintln!("watchpost read: no sensor {id:?} in the config");
            return ExitCode::from(1);
        }
    }
    let selected: Vec<_> = cfg
        .sensor
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.id))
        .collect();
    let Some(rt) = command_runtime("read") else {
        return ExitCode::from(2);
    };
    let mut out = serde_json::Map::new();
    let mut failed = 0;
    for s in selected {
        let unit = s.unit.as_deref().unwrap_or("");
        if let (crate::config::SourceConfig::Derived, Some(f)) = (&s.source, &s.formula) {
            // Nothing to read on a bus: the daemon computes it from the others' latest values.
            if !json {
                println!("{:<24} (derived: `{f}`, computed by the daemon)", s.id);
            }
            continue;
        }
        if let crate::config::SourceConfig::Simulated(src) = &s.source {
            let v = crate::source::simulated::Simulated::new(src).sample(Timestamp::now());
            if !json {
                match v {
                    Some(v) => println!("{:<24} {} {unit}  (simulated)", s.id, shown(v)),
                    None => println!("{:<24} (silent)  (simulated)", s.id),
                }
            }
            out.insert(s.id.clone(), entry(v, unit, "simulated", Vec::new()));
            continue;
        }
        #[cfg(feature = "modbus")]
        if let Some(bus) = match &s.source {
            crate::config::SourceConfig::Modbus(m) => cfg.modbus.iter().find(|b| b.name == m.bus),
            _ => None,
        } {
            use crate::source::modbus;
            let Some(p) = modbus::Point::from_config(s, bus) else {
                eprintln!("{:<24} invalid register map", s.id);
                failed += 1;
                continue;
            };
            let req = modbus::coalesce(std::slice::from_ref(&p), 0).remove(0);
            let res = rt.block_on(async {
                let mut ctx = modbus::connect(&bus.url, bus.timeout.0)
                    .await
                    .map_err(|e| e.to_string())?;
                modbus::read(&mut ctx, &req, bus.timeout.0)
                    .await
                    .map_err(|e| e.to_string())
            });
            match res {
                Ok(words) => {
                    let (_, raw, v, exact) = modbus::split(&req, &words).remove(0);
                    let hex: Vec<String> = raw.iter().map(|w| format!("0x{w:04x}")).collect();
                    let at = format!("unit {} {:?} @{}", p.unit, p.table, p.address);
                    let text = match &exact {
                        Some(crate::model::Exact::Text(t)) => format!("{t:?}"),
                        Some(crate::model::Exact::Int(i)) => i.to_string(),
                        Some(crate::model::Exact::UInt(u)) => u.to_string(),
                        None => v.map(shown).unwrap_or_else(|| "?".into()),
                    };
                    if !json {
                        println!(
                            "{:<24} {text} {unit}  ({at} raw [{}])",
                            s.id,
                            hex.join(", ")
                        );
                    }
                    let mut e = entry(v, unit, &at, hex);
                    // The exact value as JSON keeps it: a string, or an integer beyond 2^53 digit for digit.
                    match exact {
                        Some(crate::model::Exact::Text(t)) => e["value"] = serde_json::json!(&*t),
                        Some(crate::model::Exact::Int(i)) => e["value"] = serde_json::json!(i),
                        Some(crate::model::Exact::UInt(u)) => e["value"] = serde_json::json!(u),
                        None => {}
                    }
                    out.insert(s.id.clone(), e);
                }
                Err(e) => {
                    failed += 1;
                    if !json {
                        println!("{:<24} ERROR {e}", s.id);
                    }
                    out.insert(s.id.clone(), failure(&e));
                }
            }
        }
    }
    #[cfg(feature = "i2c")]
    for bus in &cfg.i2c {
        let chosen: Vec<crate::config::SensorConfig> = cfg
            .sensor
            .iter()
            .filter(|s| only.is_empty() || only.contains(&s.id))
            .cloned()
            .collect();
        let sensors = crate::source::i2c::sensors_on(&chosen, &bus.name);
        if sensors.is_empty() {
            continue;
        }
        let results = match crate::source::i2c::read_once(bus, &sensors) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bus {}: {e}", bus.name);
                failed += sensors.len();
                continue;
            }
        };
        for ((s, src), (id, r, raw)) in sensors.iter().zip(results) {
            // A mapped or scaled value is no longer in the chip's unit (a 4–20 mA loop mapped to bar is not mA).
            let native = src.map.is_none() && src.scale == 1.0 && src.add == 0.0;
            let unit = s
                .unit
                .as_deref()
                .unwrap_or(if native { src.native_unit() } else { "" });
            let hex: Vec<String> = raw.iter().map(|b| format!("0x{b:02x}")).collect();
            let at = format!(
                "{} 0x{:02x} {} on {}",
                src.chip.spec().name,
                src.address,
                src.quantity,
                bus.name
            );
            match r {
                Ok(v) => {
                    if !json {
                        println!(
                            "{id:<24} {} {unit}  ({at}, raw [{}])",
                            shown(v),
                            hex.join(" ")
                        );
                    }
                    out.insert(id, entry(Some(v), unit, &at, hex));
                }
                Err(e) => {
                    failed += 1;
                    if !json {
                        println!("{id:<24} ERROR {e}  ({at})");
                    }
                    out.insert(id, failure(&e));
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(out));
    }
    if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Probe `device` for I2C devices and print the addresses that answer, with the likely chip.
#[cfg(feature = "i2c")]
pub fn scan_i2c(device: &str) -> ExitCode {
    match crate::source::i2c::scan(device) {
        Ok(found) => {
            println!("{} device(s) answer on {device}:", found.len());
            for (a, chip) in found {
                println!("0x{a:02x}  {chip}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("watchpost scan i2c: {e}");
            ExitCode::from(2)
        }
    }
}

/// A unit list for `scan modbus` (`1-3,7`).
#[cfg(feature = "modbus")]
fn parse_units(s: &str) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u8 = a.trim().parse().map_err(|_| format!("bad unit {a:?}"))?;
        let b: u8 = b.trim().parse().map_err(|_| format!("bad unit {b:?}"))?;
        if a == 0 || b > 247 || a > b {
            return Err(format!("unit range {part:?} must be within 1-247"));
        }
        v.extend(a..=b);
    }
    Ok(v)
}

/// Probe units on a Modbus endpoint and print what answers, with registers in every decoding.
#[cfg(feature = "modbus")]
pub fn scan_modbus(
    url: &str,
    units: &str,
    table: &str,
    address: u16,
    count: u16,
    timeout: &str,
) -> ExitCode {
    use crate::source::modbus::decode::{decode, DataType, WordOrder};
    use crate::source::modbus::{self, Table};
    let units = match parse_units(units) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("watchpost scan: --units: {e}");
            return ExitCode::from(1);
        }
    };
    let Some(table) = Table::parse(table) else {
        eprintln!("watchpost scan: --table must be holding, input, coil or discrete");
        return ExitCode::from(1);
    };
    let timeout = match humantime::parse_duration(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("watchpost scan: --timeout: {e}");
            return ExitCode::from(1);
        }
    };
    let count = count.clamp(1, 125);
    let Some(rt) = command_runtime("scan") else {
        return ExitCode::from(2);
    };
    let found = rt.block_on(async {
        let mut ctx =
            match modbus::connect(url, timeout.max(std::time::Duration::from_secs(2))).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("watchpost scan: {e}");
                    return None;
                }
            };
        let mut found = 0;
        for unit in units {
            let req = modbus::Request {
                unit,
                table,
                start: address,
                count,
                interval: timeout,
                points: Vec::new(),
            };
            match modbus::read(&mut ctx, &req, timeout).await {
                Ok(words) => {
                    found += 1;
                    println!(
                        "unit {unit}: answers ({table:?} {address}..{})",
                        u32::from(address) + u32::from(count) - 1
                    );
                    for (i, w) in words.iter().enumerate() {
                        let a = u32::from(address) + i as u32;
                        let mut line =
                            format!("  @{a:<5} 0x{w:04x}  u16 {w:<5}  i16 {:<6}", *w as i16);
                        if let Some(next) = words.get(i + 1) {
                            for (name, o) in WordOrder::all() {
                                let pair = [*w, *next];
                                let f = decode(&pair, DataType::F32, o).unwrap_or(f64::NAN);
                                let u = decode(&pair, DataType::U32, o).unwrap_or(f64::NAN);
                                line.push_str(&format!(
                                    "  {name}: f32 {:<14} u32 {u}",
                                    crate::util::significant(f, 7)
                                ));
                            }
                        }
                        println!("{line}");
                    }
                }
                Err(modbus::ReadError::Exception(c)) => {
                    found += 1;
                    println!("unit {unit}: answers with {c}");
                }
                Err(modbus::ReadError::Timeout) => {}
                Err(e @ (modbus::ReadError::Transport(_) | modbus::ReadError::Config(_))) => {
                    eprintln!("unit {unit}: {e}; reconnecting");
                    match modbus::connect(url, timeout.max(std::time::Duration::from_secs(2))).await
                    {
                        Ok(c) => ctx = c,
                        Err(e) => {
                            eprintln!("watchpost scan: {e}");
                            return None;
                        }
                    }
                }
            }
        }
        Some(found)
    });
    match found {
        Some(0) => {
            println!("no unit answered");
            ExitCode::from(2)
        }
        Some(n) => {
            println!("{n} unit(s) answered");
            ExitCode::SUCCESS
        }
        None => ExitCode::from(2),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(feature = "modbus")]
    fn unit_ranges() {
        assert_eq!(super::parse_units("1-3,7"), Ok(vec![1, 2, 3, 7]));
        assert!(super::parse_units("0-3").is_err());
        assert!(super::parse_units("5-2").is_err());
    }
}
