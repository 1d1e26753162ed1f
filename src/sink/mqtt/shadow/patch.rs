//! AWS IoT merges an update into the stored shadow (RFC 7396 style: objects merge, `null` deletes, anything else
//! replaces), so a document that drops a key leaves the stored one behind. This turns "what it should be" into
//! the update that makes it so.

use serde_json::{Map, Value};

/// `next`, with `null` for every key `prev` holds and `next` does not (at any depth): merged into `prev`, it
/// gives `next`.
pub(super) fn merge_patch(prev: &Value, next: &Value) -> Value {
    match (prev, next) {
        (Value::Object(p), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, v) in n {
                let v = match p.get(k) {
                    Some(pv) => merge_patch(pv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            for k in p.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => next.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The patch merged as the AWS emulator of the shadow tests merges an update.
    fn apply(target: &Value, patch: &Value) -> Value {
        let mut t = target.as_object().cloned().unwrap_or_default();
        super::super::tests::merge(&mut t, patch.as_object().expect("an object patch"));
        Value::Object(t)
    }

    #[test]
    fn the_patch_merged_into_the_old_document_gives_the_new_one() {
        let cases = [
            (json!(null), json!({"t": {"delay": "5s"}})),
            (
                json!({"t": {"warning": {"high": 70}, "delay": "1s"}, "p": {"deadband": 2}}),
                json!({"t": {"warning": {"high": 70}}}),
            ),
            (json!({"t": {"warning": {"high": 70}}}), json!({})),
            (json!({"t": 1}), json!({"t": {"a": 2}})),
            (json!({"t": {"a": 2}}), json!({"t": 1})),
        ];
        for (prev, next) in cases {
            let p = merge_patch(&prev, &next);
            assert_eq!(apply(&prev, &p), next, "{prev} → {next} by {p}");
        }
        assert_eq!(
            merge_patch(&json!({"a": {"b": 1, "c": 2}}), &json!({"a": {"b": 1}})),
            json!({"a": {"b": 1, "c": null}})
        );
    }
}
