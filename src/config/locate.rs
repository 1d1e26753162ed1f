//! Where in the file a key path is: spans from `toml_edit`, so every error can say `file:line:column`.

use super::{KeyPath, Seg};

/// 1-based line and column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|p| before[p + 1..].chars().count() + 1)
        .unwrap_or_else(|| before.chars().count() + 1);
    (line, col)
}

/// Find the source position of a key path, or of its nearest existing parent.
/// Byte offset of the place in the file that `path` names (the deepest part of it that exists).
pub(super) fn locate(doc: &toml_edit::Document<String>, path: &KeyPath) -> Option<usize> {
    enum Node<'a> {
        Table(&'a dyn toml_edit::TableLike),
        Tables(&'a toml_edit::ArrayOfTables),
        Value(&'a toml_edit::Value),
    }
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut node = Node::Table(doc.as_table());
    for seg in &path.0 {
        node = match (node, seg) {
            (Node::Table(t), Seg::Key(k)) => {
                let Some((key, it)) = t.get_key_value(k) else {
                    break;
                };
                best = key.span().or_else(|| it.span()).or(best);
                match it {
                    toml_edit::Item::Value(v) => Node::Value(v),
                    toml_edit::Item::ArrayOfTables(a) => Node::Tables(a),
                    other => match other.as_table_like() {
                        Some(tl) => Node::Table(tl),
                        None => break,
                    },
                }
            }
            (Node::Tables(a), Seg::Index(i)) => {
                let Some(t) = a.get(*i) else { break };
                let first_key = t
                    .iter()
                    .next()
                    .and_then(|(k, _)| t.key(k))
                    .and_then(|k| k.span());
                best = t.span().or(first_key).or(best);
                Node::Table(t)
            }
            (Node::Value(v), Seg::Key(k)) => {
                let Some(t) = v.as_inline_table() else { break };
                let (Some(key), Some(val)) = (t.key(k), t.get(k)) else {
                    break;
                };
                best = key.span().or_else(|| val.span()).or(best);
                Node::Value(val)
            }
            (Node::Value(v), Seg::Index(i)) => {
                let Some(x) = v.as_array().and_then(|a| a.get(*i)) else {
                    break;
                };
                best = x.span().or(best);
                Node::Value(x)
            }
            _ => break,
        };
    }
    best.map(|s| s.start)
}
