//! The formula language: precedence, functions, names, errors, and garbage that must not panic.

use super::*;

fn ev(text: &str, vals: &[(&str, f64)]) -> f64 {
    let f = Formula::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let v: Vec<f64> = f
        .inputs()
        .iter()
        .map(|n| vals.iter().find(|(k, _)| k == n).map(|(_, v)| *v).unwrap())
        .collect();
    f.eval(&v)
}

#[test]
fn arithmetic_follows_the_usual_precedence() {
    assert_eq!(
        ev("volts * amps / 1000", &[("volts", 230.0), ("amps", 5.0)]),
        1.15
    );
    assert_eq!(ev("1 + 2 * 3", &[]), 7.0);
    assert_eq!(ev("(1 + 2) * 3", &[]), 9.0);
    assert_eq!(ev("2 ^ 3 ^ 2", &[]), 512.0);
    assert_eq!(ev("-2 ^ 2", &[]), -4.0);
    assert_eq!(ev("10 - 4 - 3", &[]), 3.0);
    assert_eq!(ev("7 % 4", &[]), 3.0);
    assert_eq!(ev("1.5e3 + 2E-1", &[]), 1500.2);
    assert!(ev("1 / 0", &[]).is_infinite());
}

#[test]
fn comparisons_logic_and_functions() {
    assert_eq!(ev("pump > 0.5", &[("pump", 1.0)]), 1.0);
    assert_eq!(
        ev(
            "pump > 0.5 and level <= 3",
            &[("pump", 1.0), ("level", 4.0)]
        ),
        0.0
    );
    assert_eq!(ev("not a || b", &[("a", 1.0), ("b", 0.0)]), 0.0);
    assert_eq!(ev("!a && b != 2", &[("a", 0.0), ("b", 3.0)]), 1.0);
    assert_eq!(ev("if(a > 1, 10, 20)", &[("a", 2.0)]), 10.0);
    assert_eq!(
        ev("max(a, b, 3) + min(a, b)", &[("a", 1.0), ("b", 2.0)]),
        4.0
    );
    assert_eq!(
        ev("avg(a, b, c)", &[("a", 1.0), ("b", 2.0), ("c", 6.0)]),
        3.0
    );
    assert_eq!(ev("abs(a - b)", &[("a", 1.0), ("b", 4.0)]), 3.0);
    assert_eq!(ev("clamp(a, 0, 100)", &[("a", 140.0)]), 100.0);
    assert_eq!(ev("round(2.5) + floor(1.7) + ceil(1.2)", &[]), 6.0);
    assert!(ev("max(a, 1)", &[("a", f64::NAN)]).is_nan());
    assert!(ev("min(1, a)", &[("a", f64::NAN)]).is_nan());
}

#[test]
fn quoted_names_and_inputs_in_order() {
    let f = Formula::parse("`tank-a level` - b + `tank-a level`").unwrap();
    assert_eq!(f.inputs(), ["tank-a level", "b"]);
    assert_eq!(f.eval(&[5.0, 1.0]), 9.0);
}

#[test]
fn errors_say_where_and_what() {
    let e = |t: &str| Formula::parse(t).unwrap_err().to_string();
    assert_eq!(e(""), "column 1: empty formula");
    assert_eq!(
        e("a +"),
        "column 4: the formula ends where a value was expected"
    );
    assert_eq!(e("a = 1"), "column 3: `=` is not a comparison: write `==`");
    assert_eq!(e("(a + 1"), "column 7: expected `)`");
    assert!(e("foo(a)").starts_with("column 1: unknown function `foo` (functions: abs, min"));
    assert_eq!(e("if(a, 1)"), "column 1: `if` takes 3 arguments, not 2");
    assert_eq!(e("a b"), "column 3: unexpected 'b'");
    assert_eq!(e("`abc"), "column 1: a `quoted name` is not closed");
    assert_eq!(e("1.2.3"), "column 1: \"1.2.3\" is not a number");
    assert!(e(&"(".repeat(100)).contains("nested deeper than 32"));
    assert!(e(&vec!["a"; 300].join("+")).contains("more than 256 terms"));
    assert!(e(&"1".repeat(1001)).contains("longer than 1000"));
    assert_eq!(
        e("a and"),
        "column 6: the formula ends where a value was expected"
    );
}

#[test]
fn garbage_never_panics() {
    for t in [
        "((((", "))", "-", "!!!!", "`", "1e", "1e+", "max()", "a..b", "é + ü", "∞",
    ] {
        let _ = Formula::parse(t).map(|f| f.eval(&vec![1.0; f.inputs().len()]));
    }
}
