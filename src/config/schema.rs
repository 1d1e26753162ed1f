//! The config file's JSON Schema (`docs/config.schema.json`, printed by `watchpost schema`), generated from the
//! config types by this test module with schemars (a dev-dependency: the binary carries only the generated text).
//! Editors that read JSON Schema for TOML (Taplo / Even Better TOML in VS Code) then complete keys and flag typos.
//! `WATCHPOST_BLESS=1 cargo test --lib config::schema` rewrites the file; the test fails when it is stale.

use super::{Dur, Size, SourceConfig};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit (ms, s, m, h, d), e.g. \"500ms\", \"5s\", \"2h\".",
            "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zµ]+(\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zµ]+)*\\s*$"
        })
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A size in bytes with a unit, e.g. \"256MiB\", \"1GB\"."
        })
    }
}

impl JsonSchema for SourceConfig {
    fn schema_name() -> Cow<'static, str> {
        "Source".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        // One strict table per kind, named by its key (`simulated = …`, `modbus = …`, `i2c = …`).
        let kinds = [
            g.subschema_for::<super::source::SimulatedKeys>(),
            g.subschema_for::<super::source::ModbusKeys>(),
            g.subschema_for::<super::i2c::I2cKeys>(),
        ];
        json_schema!({ "oneOf": kinds })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn config_schema_matches_the_config_types() {
        let schema = schemars::schema_for!(crate::config::Config);
        let text = serde_json::to_string_pretty(&schema).expect("json") + "\n";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.schema.json");
        if std::env::var_os("WATCHPOST_BLESS").is_some() {
            std::fs::write(&path, &text).expect("write");
            return;
        }
        assert!(
            std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()),
            "docs/config.schema.json is stale: WATCHPOST_BLESS=1 cargo test --lib config::schema"
        );
        // The schema accepts the annotated example and the examples directory, and catches a typo.
        let v =
            jsonschema::validator_for(&serde_json::to_value(&schema).expect("v")).expect("schema");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut files = vec![dir.join("watchpost.toml"), dir.join("default.toml")];
        files.extend(
            std::fs::read_dir(dir.join("examples"))
                .expect("examples")
                .flatten()
                .map(|e| e.path()),
        );
        for f in files {
            let doc: toml::Value =
                toml::from_str(&std::fs::read_to_string(&f).expect("read")).expect("toml");
            let doc = serde_json::to_value(doc).expect("json");
            let errors: Vec<String> = v
                .iter_errors(&doc)
                .map(|e| format!("{e} at {}", e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        }
        let typo: serde_json::Value = serde_json::json!({"gateway": {"id": "g", "lcoation": "x"}});
        assert!(!v.is_valid(&typo), "an unknown key is flagged");
    }
}
