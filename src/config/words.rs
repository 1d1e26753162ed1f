//! Config errors in people's words: serde's type names said as a person would, and a did-you-mean for a
//! misspelt key or section.

/// ` (did you mean `x`?)` for the known name nearest to `got`, when one is near enough to be a typo.
pub(super) fn did_you_mean<'a>(got: &str, known: impl Iterator<Item = &'a str>) -> String {
    let best = known
        .map(|k| (strsim::levenshtein(got, k), k))
        .filter(|(d, _)| *d > 0 && *d <= (got.len() / 4).max(1))
        .min();
    match best {
        Some((_, k)) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// serde's type names in people's words: "expected a number", not "expected f64".
pub(super) fn people(msg: &str) -> String {
    let mut m = msg.to_string();
    for t in ["f64", "f32"] {
        m = m.replace(&format!("expected {t}"), "expected a number");
    }
    for t in [
        "u64", "u32", "u16", "u8", "i64", "i32", "i16", "i8", "usize",
    ] {
        m = m.replace(&format!("expected {t}"), "expected a whole number");
    }
    m.replace("expected a borrowed string", "expected a string")
}

/// Why `url` is refused when its host (between `://` and the path) is not ASCII: the binary carries no Unicode IDNA
/// tables (docs/dependencies.md), so an internationalised domain name is written in its punycode form.
pub(super) fn non_ascii_host(url: &str) -> Option<String> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    (!authority.is_ascii()).then(|| {
        format!("{url:?}: write the host name in ASCII (an internationalised domain name in its xn-- punycode form)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_in_peoples_words() {
        assert_eq!(
            people("invalid type: string \"80\", expected f64"),
            "invalid type: string \"80\", expected a number"
        );
        assert_eq!(
            people("invalid value: integer `-1`, expected u16"),
            "invalid value: integer `-1`, expected a whole number"
        );
        assert_eq!(
            did_you_mean("intervall", ["id", "interval", "unit"].into_iter()),
            " (did you mean `interval`?)"
        );
        assert_eq!(did_you_mean("zzz", ["id", "interval"].into_iter()), "");
    }
}
