//! Random session data for the tests that compare the text paths (the
//! byte scan, the text patch) with the map path.

use serde_json::{json, Map, Value};

/// A random object of up to four members whose values nest up to
/// `depth` deep; keys from a small set (so that pointers hit), one in
/// ten needing an escape.
pub fn random_object(rng: &mut impl rand::Rng, depth: usize) -> Map<String, Value> {
    const PLAIN: [&str; 4] = ["user", "name", "0", "a/b"];
    const ESCAPED: [&str; 2] = ["\u{e9}", "q\"k"];
    (0..rng.random_range(0..5))
        .map(|_| {
            let key = if rng.random_range(0..10) == 0 {
                ESCAPED[rng.random_range(0..ESCAPED.len())]
            } else {
                PLAIN[rng.random_range(0..PLAIN.len())]
            };
            (key.to_owned(), random_value(rng, depth))
        })
        .collect()
}

pub fn random_value(rng: &mut impl rand::Rng, depth: usize) -> Value {
    let pick = if depth == 0 {
        rng.random_range(0..5)
    } else {
        rng.random_range(0..7)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random_range(-1000..1000)),
        3 => json!(f64::from(rng.random_range(-100..100)) / 8.0),
        4 => json!(["bench", "x\"y", "Zo\u{eb}", "]}", "", "a b", " a"][rng.random_range(0..7)]),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(random_object(rng, depth - 1)),
    }
}
