//! The house rules, checked on the source tree: no import circle between modules (at every level: the crate's
//! top-level modules, and the files of each folder among themselves), and no file of 1,000 lines or more.
//! Test modules (`#[cfg(test)] mod tests`) are left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/source/i2c/bus.rs` → [source, i2c, bus]; `mod.rs` and `lib.rs` name their folder.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        m.pop();
    }
    m
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The modules a file's code names: `crate::a::b`, `use crate::{a, b::c}`, `super::x`.
fn references(file_module: &Module, code: &str) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a, b::c, …}: each item's first two names.
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for item in body.split(',') {
                let names: Module = item
                    .trim()
                    .split("::")
                    .take(2)
                    .filter_map(|n| ident_at(n.trim()).map(String::from))
                    .collect();
                if !names.is_empty() {
                    out.insert(names);
                }
            }
        } else if let Some(first) = ident_at(rest) {
            let mut m = vec![first.to_string()];
            if let Some(second) = rest[first.len()..].strip_prefix("::").and_then(ident_at) {
                m.push(second.to_string());
            }
            out.insert(m);
        }
    }
    // `super::x` names a sibling of this module (for a/mod.rs as for a.rs).
    let parent: Module = file_module[..file_module.len().saturating_sub(1)].to_vec();
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        if let Some(name) = ident_at(&code[i + "super::".len()..]) {
            let mut m = parent.clone();
            m.push(name.to_string());
            out.insert(m);
        }
    }
    out
}

/// The code of a file without its test module.
fn without_tests(code: &str) -> &str {
    let cut = code.find("#[cfg(test)]\nmod tests").unwrap_or(code.len());
    &code[..cut]
}

/// A circle in `g`, if any (depth-first search with colours).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|p| p == m).unwrap_or(0);
                    let mut c = path[from..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_import_circles_and_no_file_of_a_thousand_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "found {} files", files.len());
    // For each folder (a module path prefix): edges between its direct children.
    let mut levels: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut long = Vec::new();
    for f in &files {
        let code = std::fs::read_to_string(f).expect("read");
        let lines = code.lines().count();
        if lines >= 1000 {
            long.push(format!("{} ({lines} lines)", f.display()));
        }
        let me = module_of(&src, f);
        for to in references(&me, without_tests(&code)) {
            let common = me.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < me.len() && common < to.len() {
                levels
                    .entry(me[..common].to_vec())
                    .or_default()
                    .entry(me[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    let circles: Vec<String> = levels
        .iter()
        .filter_map(|(prefix, g)| {
            find_cycle(g).map(|c| format!("in src/{}: {}", prefix.join("/"), c.join(" → ")))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
    assert!(
        long.is_empty(),
        "files of 1,000 lines or more:\n{}",
        long.join("\n")
    );
    // The checker sees real edges (it would pass on an empty graph otherwise).
    let top = &levels[&Vec::new()];
    assert!(
        top["sink"].contains("store") && top["source"].contains("model"),
        "{top:?}"
    );
}

#[test]
fn the_checker_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("bus".into()).or_default().insert("sim".into());
    g.entry("sim".into()).or_default().insert("bus".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec![
            "bus".to_string(),
            "sim".to_string(),
            "bus".to_string()
        ])
    );
    let refs = references(
        &vec!["source".into(), "i2c".into(), "sim".into()],
        "use super::bus::BusError;\nuse crate::{config::Chip, model};\n",
    );
    assert!(refs.contains(&vec!["source".to_string(), "i2c".into(), "bus".into()]));
    assert!(refs.contains(&vec!["config".to_string(), "Chip".into()]));
}

/// Every MQTT connection is made by `sink::mqtt::client` (src/sink/mqtt/net.rs), which turns Nagle off: a client
/// made directly with rumqttc's defaults has it on, and a write that follows an unacknowledged one waits for the
/// peer's delayed ACK, up to 40 ms (docs/mqtt.md, "Subscriber note").
#[test]
fn every_mqtt_connection_is_made_by_the_one_that_turns_nagle_off() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let maker = src.join("sink").join("mqtt").join("net.rs");
    let direct: Vec<_> = files
        .iter()
        .filter(|f| **f != maker)
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .contains("AsyncClient::new(")
        })
        .collect();
    assert!(
        direct.is_empty(),
        "MQTT clients made directly (use crate::sink::mqtt::client): {direct:?}"
    );
}
