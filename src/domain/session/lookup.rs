//! One value out of session data, by JSON pointer tokens: from the map, or
//! straight from the rendered JSON without building the map.
//!
//! Why read the text: the memory store keeps a session as its rendering
//! only, and a request that reads a session usually needs one value of it
//! (a per-field header such as `X-User`, the identity key of a login-only
//! route). The byte [`scan`](super::scan) finds the value's text, and only
//! that is parsed; what the scan is unsure of, a walk with serde decides,
//! skipping every other value without allocating. All paths give the same
//! answer (tested below).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::scan::{self, array_index, Scan};

/// A JSON pointer (RFC 6901) as its unescaped tokens; `None` for the
/// empty pointer (the whole document) and for text not starting with `/`.
pub fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// The value at `tokens` in `map`.
pub fn in_map<'a>(map: &'a Map<String, Value>, tokens: &[String]) -> Option<&'a Value> {
    let (first, rest) = tokens.split_first()?;
    let mut value = map.get(first)?;
    for token in rest {
        value = match value {
            Value::Object(object) => object.get(token)?,
            Value::Array(items) => items.get(array_index(token)?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The value at `tokens` in the JSON object `json`; `None` also for text
/// that is not JSON. The tests' reference for [`in_rendering`].
#[cfg(test)]
pub fn in_json(json: &[u8], tokens: &[String]) -> Option<Value> {
    value_in(json, tokens, scan::value_at(json, tokens))
}

/// [`in_json`] in a session's rendering ([`scan::value_at_rendered`]).
pub fn in_rendering(json: &[u8], tokens: &[String]) -> Option<Value> {
    value_in(json, tokens, scan::value_at_rendered(json, tokens))
}

fn value_in(json: &[u8], tokens: &[String], scanned: Scan<&[u8]>) -> Option<Value> {
    if tokens.is_empty() {
        return None;
    }
    match scanned {
        Scan::Found(text) => serde_json::from_slice(text).ok(),
        Scan::Absent => None,
        Scan::Unsure => walk::<Value>(json, tokens),
    }
}

/// Whether the JSON object `json` has `key`, with a value other than
/// null. The tests' reference for [`is_present_in_rendering`].
#[cfg(test)]
pub fn is_present(json: &[u8], key: &str) -> bool {
    let tokens = [key.to_owned()];
    present(json, &tokens, scan::value_at(json, &tokens))
}

/// [`is_present`] in a session's rendering ([`scan::value_at_rendered`]).
pub fn is_present_in_rendering(json: &[u8], key: &str) -> bool {
    let tokens = [key.to_owned()];
    present(json, &tokens, scan::value_at_rendered(json, &tokens))
}

fn present(json: &[u8], tokens: &[String], scanned: Scan<&[u8]>) -> bool {
    match scanned {
        Scan::Found(text) => text != b"null",
        Scan::Absent => false,
        // `Option<IgnoredAny>`: `None` for null, `Some` for any other value.
        Scan::Unsure => matches!(walk::<Option<IgnoredAny>>(json, tokens), Some(Some(_))),
    }
}

fn walk<T: for<'de> Deserialize<'de>>(json: &[u8], tokens: &[String]) -> Option<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let found = Walk::<T>::new(tokens).deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    found
}

/// Deserialises the value at `tokens` as a `T`, skipping everything else.
struct Walk<'t, T> {
    tokens: &'t [String],
    found: PhantomData<T>,
}

impl<'t, T> Walk<'t, T> {
    fn new(tokens: &'t [String]) -> Self {
        Self {
            tokens,
            found: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Walk<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        if self.tokens.is_empty() {
            return T::deserialize(deserializer).map(Some);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Walk<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let Some((first, rest)) = self.tokens.split_first() else {
            return Ok(None);
        };
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(first))? {
            if matches && found.is_none() {
                found = map.next_value_seed(Walk::<T>::new(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        let Some((first, rest)) = self.tokens.split_first() else {
            return Ok(None);
        };
        let wanted = array_index(first);
        let mut found = None;
        let mut index = 0;
        loop {
            if Some(index) == wanted {
                match seq.next_element_seed(Walk::<T>::new(rest))? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }

    // A scalar has nothing inside: no value at the remaining tokens.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// Deserialises an object key as whether it equals a token, without
/// allocating it (unless it has escapes, which serde_json unescapes into a
/// scratch buffer).
struct KeyIs<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::ascii_json;
    use serde_json::json;

    fn tokens(pointer: &str) -> Vec<String> {
        pointer_tokens(pointer).unwrap()
    }

    #[test]
    fn the_text_and_the_map_give_the_same_value_at_every_pointer() {
        let data = json!({
            "user": {"name": "Zoë", "id": 7, "roles": ["a", {"b": [null, 2.5]}], "a/b": {"~": 1}},
            "n": null, "t": true, "f": -1.25e-7, "big": u64::MAX, "neg": i64::MIN,
            "s": "x\"y\\z\u{7f}", "e": {}, "arr": [], "\u{e9}": "accented key",
        });
        let Value::Object(map) = data else {
            unreachable!()
        };
        let json = ascii_json::object_to_ascii(&map);
        let pointers = [
            "/user",
            "/user/name",
            "/user/id",
            "/user/roles",
            "/user/roles/0",
            "/user/roles/1/b/1",
            "/user/roles/1/b/0",
            "/user/roles/2",
            "/user/roles/01",
            "/user/roles/-",
            "/user/a~1b/~0",
            "/user/a~1b",
            "/user/missing",
            "/user/name/x",
            "/n",
            "/n/x",
            "/t",
            "/f",
            "/big",
            "/neg",
            "/s",
            "/s/0",
            "/e",
            "/e/x",
            "/arr",
            "/arr/0",
            "/\u{e9}",
            "/missing",
            "/",
        ];
        for pointer in pointers {
            let tokens = tokens(pointer);
            assert_eq!(
                in_json(&json, &tokens).as_ref(),
                in_map(&map, &tokens),
                "{pointer}"
            );
        }
        let found = ["/user/roles/1/b/1", "/user/a~1b/~0", "/\u{e9}", "/n"];
        for pointer in found {
            assert!(in_json(&json, &tokens(pointer)).is_some(), "{pointer}");
        }
        assert_eq!(
            in_json(&json, &[]),
            None,
            "the empty pointer is never a field"
        );
    }

    #[test]
    fn the_scan_serde_and_the_map_agree_on_random_sessions() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pointers = [
            "/user",
            "/user/name",
            "/user/0",
            "/user/0/name",
            "/name/user/name",
            "/0",
            "/0/0",
            "/a~1b",
            "/a~1b/user",
            "/\u{e9}",
            "/\u{e9}/name",
            "/q\"k",
            "/user/01",
        ];
        let (mut found, mut decided) = (0, 0);
        for _ in 0..2000 {
            let map = super::super::test_json::random_object(&mut rng, 3);
            let json = ascii_json::object_to_ascii(&map);
            for pointer in pointers {
                let tokens = tokens(pointer);
                let by_scan = in_json(&json, &tokens);
                assert_eq!(
                    by_scan.as_ref(),
                    in_map(&map, &tokens),
                    "{pointer} in {map:?}"
                );
                assert_eq!(
                    by_scan,
                    walk::<Value>(&json, &tokens),
                    "{pointer} in {map:?}"
                );
                found += usize::from(by_scan.is_some());
                decided += usize::from(scan::value_at(&json, &tokens) != Scan::Unsure);
                // A rendering gives the same answers with the shorter scan.
                assert_eq!(
                    scan::value_at_rendered(&json, &tokens),
                    scan::value_at(&json, &tokens),
                    "{pointer} in {map:?}"
                );
                assert_eq!(
                    in_rendering(&json, &tokens),
                    by_scan,
                    "{pointer} in {map:?}"
                );
            }
            let key = pointers[0].trim_start_matches('/');
            let present = matches!(
                walk::<Option<IgnoredAny>>(&json, &[key.to_owned()]),
                Some(Some(_))
            );
            assert_eq!(is_present(&json, key), present, "{map:?}");
            assert_eq!(is_present_in_rendering(&json, key), present, "{map:?}");
        }
        // The comparison means something: values were found, and most
        // answers came from the scan itself.
        assert!(found > 2000, "{found} values found");
        assert!(decided > 13_000, "{decided} answers decided by the scan");
    }

    #[test]
    fn presence_means_a_value_other_than_null() {
        let json = br#"{"user":{"id":1},"n":null,"f":false,"z":0,"e":""}"#;
        for key in ["user", "f", "z", "e"] {
            assert!(is_present(json, key), "{key}");
        }
        for key in ["n", "missing", "id"] {
            assert!(!is_present(json, key), "{key}");
        }
        assert!(!is_present(b"not json", "user"));
        assert!(!is_present(br#"{"user":1} trailing"#, "user"));
    }
}
