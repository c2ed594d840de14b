//! A `Set-Session` merge patch (RFC 7396), kept as the upstream wrote it
//! when that text is already what Cloakroom would render: the common write
//! (`{"n": 42}`, `{"flash": "saved"}`) is then applied to a session's text
//! by copying bytes ([`super::text_patch`]), with no `serde_json` map built
//! for it, and none rendered again.
//!
//! The plain form is a JSON object of at most [`MAX_PLAIN_MEMBERS`]
//! members, each key a string of printable ASCII without `"` or `\`, each
//! value `true`, `false`, `null`, an integer of at most 18 digits without
//! a leading zero (and not `-0`), or such a string; spaces and tabs may
//! stand between the tokens, and no key may come twice. For each of these,
//! the text between the tokens is byte for byte what
//! [`ascii_json`](super::ascii_json) renders for the value serde_json
//! parses from it. Any other patch is parsed by serde_json, as before;
//! either way [`Patch::map`] is the map serde_json makes of the text
//! (tested against it below, and by the `set_session` fuzz target).

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// Patches with more members are parsed by serde_json (keys are compared
/// by a linear search here).
pub const MAX_PLAIN_MEMBERS: usize = 8;

/// Longest integer the plain form keeps as written: 18 digits always fit
/// an `i64`, which serde_json renders back as the same digits.
const MAX_INTEGER_DIGITS: usize = 18;

/// One merge patch.
#[derive(Clone)]
pub struct Patch {
    /// The text, when in the plain form, and where its members lie in it.
    plain: Option<Plain>,
    /// The map, built on first use when the patch is plain.
    map: OnceLock<Map<String, Value>>,
}

#[derive(Clone)]
struct Plain {
    text: Box<[u8]>,
    /// The first `count` are the members': the key's span (without its
    /// quotes), then the value's.
    spans: [[u16; 4]; MAX_PLAIN_MEMBERS],
    count: u8,
}

impl Plain {
    fn members(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let span = |start: u16, end: u16| &self.text[usize::from(start)..usize::from(end)];
        self.spans[..usize::from(self.count)]
            .iter()
            .map(move |&[key, key_end, value, value_end]| {
                (span(key, key_end), span(value, value_end))
            })
    }
}

/// A member of a patch: as written (plain form: the key without its
/// quotes, and the value's text), or from the map.
pub enum Member<'a> {
    Written { key: &'a [u8], value: &'a [u8] },
    Parsed { key: &'a str, value: &'a Value },
}

impl Patch {
    /// The patch `text` spells, when it is in the plain form; `None` when
    /// serde_json must parse it.
    pub fn plain(text: &[u8]) -> Option<Self> {
        // Spans fit a `u16`: a longer text is left to serde.
        u16::try_from(text.len()).ok()?;
        let mut spans = [[0; 4]; MAX_PLAIN_MEMBERS];
        let mut count = 0u8;
        scan_plain(text, |at| {
            // Offsets in the text, whose length fits (checked above).
            spans[usize::from(count)] = at.map(|at| at as u16);
            count += 1;
        })?;
        Some(Self {
            plain: Some(Plain {
                text: text.into(),
                spans,
                count,
            }),
            map: OnceLock::new(),
        })
    }

    /// The patch as a map (serde_json's parse of the text).
    pub fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| {
            let text = self.plain.as_ref().map_or(&b"{}"[..], |plain| &plain.text);
            // Plain text is valid JSON by construction (tested).
            serde_json::from_slice(text).unwrap_or_default()
        })
    }

    /// Whether the patch has a member named `key`.
    pub fn names(&self, key: &str) -> bool {
        match &self.plain {
            Some(plain) => plain
                .members()
                .any(|(written, _)| written == key.as_bytes()),
            None => self.map().contains_key(key),
        }
    }

    /// Whether the patch has a member named by one of `keys`.
    pub fn names_any(&self, keys: &[&str]) -> bool {
        keys.iter().any(|key| self.names(key))
    }

    /// Calls `visit` with each member, in order.
    pub fn for_each_member<'a>(&'a self, mut visit: impl FnMut(Member<'a>)) {
        match &self.plain {
            Some(plain) => {
                for (key, value) in plain.members() {
                    visit(Member::Written { key, value });
                }
            }
            None => {
                for (key, value) in self.map() {
                    visit(Member::Parsed { key, value });
                }
            }
        }
    }
}

impl From<Map<String, Value>> for Patch {
    fn from(map: Map<String, Value>) -> Self {
        Self {
            plain: None,
            map: OnceLock::from(map),
        }
    }
}

/// Two patches are equal when their maps are.
impl PartialEq for Patch {
    fn eq(&self, other: &Self) -> bool {
        self.map() == other.map()
    }
}

impl fmt::Debug for Patch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Patch").field(self.map()).finish()
    }
}

/// Scans `text` as a plain-form object, calling `member` with each
/// member's spans (the key's, without its quotes, then the value's), at
/// most [`MAX_PLAIN_MEMBERS`] times; `None` (with `member` perhaps called
/// for the first few) when the text is not in the plain form.
fn scan_plain(text: &[u8], mut member: impl FnMut([usize; 4])) -> Option<()> {
    let mut keys: [&[u8]; MAX_PLAIN_MEMBERS] = [&[]; MAX_PLAIN_MEMBERS];
    let mut count = 0;
    let mut at = skip_blanks(text, 0);
    if text.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_blanks(text, at + 1);
    if text.get(at) == Some(&b'}') {
        return (skip_blanks(text, at + 1) == text.len()).then_some(());
    }
    loop {
        let key_end = plain_string_end(text, at)?;
        let key_start = at + 1;
        let key = &text[key_start..key_end - 1];
        if count == MAX_PLAIN_MEMBERS || keys[..count].contains(&key) {
            return None;
        }
        keys[count] = key;
        count += 1;
        at = skip_blanks(text, key_end);
        if text.get(at) != Some(&b':') {
            return None;
        }
        at = skip_blanks(text, at + 1);
        let value_end = plain_value_end(text, at)?;
        member([key_start, key_end - 1, at, value_end]);
        at = skip_blanks(text, value_end);
        match text.get(at) {
            Some(b',') => at = skip_blanks(text, at + 1),
            Some(b'}') => return (skip_blanks(text, at + 1) == text.len()).then_some(()),
            _ => return None,
        }
    }
}

fn skip_blanks(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// The end (past the closing quote) of the plain string starting at `at`.
fn plain_string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let rest = &text[at + 1..];
    let length = rest
        .iter()
        .position(|&byte| !matches!(byte, 0x20..=0x7e) || byte == b'"' || byte == b'\\')?;
    (rest[length] == b'"').then_some(at + 1 + length + 1)
}

/// The end of the plain value starting at `at`.
fn plain_value_end(text: &[u8], at: usize) -> Option<usize> {
    let rest = &text[at..];
    for word in [&b"true"[..], b"false", b"null"] {
        if rest.starts_with(word) {
            let end = at + word.len();
            // `truex` is no value.
            return (!text.get(end).is_some_and(u8::is_ascii_alphanumeric)).then_some(end);
        }
    }
    match rest.first()? {
        b'"' => plain_string_end(text, at),
        b'-' | b'0'..=b'9' => {
            let digits_at = usize::from(rest[0] == b'-');
            let digits = rest[digits_at..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            let number = &rest[digits_at..digits_at + digits];
            let canonical = match number {
                [] => false,
                [b'0'] => digits_at == 0,
                [b'0', ..] => false,
                _ => digits <= MAX_INTEGER_DIGITS,
            };
            let end = at + digits_at + digits;
            // A fraction or an exponent: serde_json's float, not kept.
            let more = matches!(text.get(end), Some(b'.' | b'e' | b'E'));
            (canonical && !more).then_some(end)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    use super::super::ascii_json;
    use super::*;

    fn members(patch: &Patch) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        patch.for_each_member(|member| match member {
            Member::Written { key, value } => out.push((key.to_vec(), value.to_vec())),
            Member::Parsed { .. } => panic!("a plain patch's members are written"),
        });
        out
    }

    #[test]
    fn plain_patches_keep_their_text() {
        let patch = Patch::plain(br#" { "n" : 42 ,	"flash":"saved", "gone": null, "ok": true } "#)
            .expect("plain");
        assert_eq!(
            members(&patch),
            [
                (b"n".to_vec(), b"42".to_vec()),
                (b"flash".to_vec(), br#""saved""#.to_vec()),
                (b"gone".to_vec(), b"null".to_vec()),
                (b"ok".to_vec(), b"true".to_vec()),
            ]
        );
        assert!(patch.names("flash") && !patch.names("fla"));
        assert_eq!(
            Value::Object(patch.map().clone()),
            json!({"n": 42, "flash": "saved", "gone": null, "ok": true})
        );
        assert!(Patch::plain(b"{}").is_some_and(|empty| empty.map().is_empty()));
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for text in [
            &br#"{"n":1.5}"#[..],
            br#"{"n":1e3}"#,
            br#"{"n":-0}"#,
            br#"{"n":007}"#,
            br#"{"n":1234567890123456789}"#,
            br#"{"a":{"b":1}}"#,
            br#"{"a":[1]}"#,
            br#"{"a":"\u0041"}"#,
            br#"{"\u0061":1}"#,
            "{\"a\":\"\u{e9}\"}".as_bytes(),
            b"{\"a\":\"\x7f\"}",
            br#"{"a":1,"a":2}"#,
            br#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9}"#,
            // Not JSON at all: serde says so.
            br#"{"a":truex}"#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a" 1}"#,
            b"{",
            b"",
        ] {
            assert!(
                Patch::plain(text).is_none(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // Longer than its spans can say.
        let long = format!(r#"{{"a":"{}"}}"#, "x".repeat(1 << 16));
        assert!(Patch::plain(long.as_bytes()).is_none());
        let short = format!(r#"{{"a":"{}"}}"#, "x".repeat(1000));
        assert!(Patch::plain(short.as_bytes()).is_some());
    }

    /// A piece of patch text, often plain, sometimes not, sometimes not
    /// JSON.
    fn random_text(rng: &mut impl Rng) -> String {
        const KEYS: [&str; 6] = [
            "\"n\"",
            "\"user\"",
            "\"a b\"",
            "\"\"",
            "\"n\"",
            "\"\\u0041\"",
        ];
        const VALUES: [&str; 18] = [
            "0",
            "-0",
            "7",
            "-12",
            "007",
            "1.5",
            "2e3",
            "123456789012345678",
            "1234567890123456789",
            "true",
            "false",
            "null",
            "nul",
            "\"x\"",
            "\"\"",
            "\"a\\\"b\"",
            "{\"b\":1}",
            "[1,\"2\"]",
        ];
        fn blank(rng: &mut impl Rng) -> &'static str {
            const BLANKS: [&str; 4] = ["", "", " ", "\t"];
            BLANKS[rng.random_range(0..BLANKS.len())]
        }
        let mut text = format!("{}{{", blank(rng));
        for index in 0..rng.random_range(0..11) {
            if index > 0 {
                text.push_str(if rng.random_range(0..40) == 0 {
                    ";"
                } else {
                    ","
                });
            }
            text.push_str(blank(rng));
            text.push_str(KEYS[rng.random_range(0..KEYS.len())]);
            text.push_str(blank(rng));
            text.push(':');
            text.push_str(blank(rng));
            text.push_str(VALUES[rng.random_range(0..VALUES.len())]);
            text.push_str(blank(rng));
        }
        text.push('}');
        text.push_str(blank(rng));
        text
    }

    #[test]
    fn a_plain_patch_is_what_serde_parses_and_renders_its_values_as_written() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut plain = 0;
        for _ in 0..5000 {
            let text = random_text(&mut rng);
            let Some(patch) = Patch::plain(text.as_bytes()) else {
                continue;
            };
            plain += 1;
            let parsed: Map<String, Value> = serde_json::from_str(&text).expect(&text);
            assert_eq!(patch.map(), &parsed, "{text}");
            let written = members(&patch);
            assert_eq!(written.len(), parsed.len(), "{text}");
            for ((key, value), (parsed_key, parsed_value)) in written.iter().zip(&parsed) {
                assert_eq!(key, parsed_key.as_bytes(), "{text}");
                // Rendered with its quotes and nothing else.
                let quoted = [&b"\""[..], key, b"\""].concat();
                assert_eq!(quoted, ascii_json::to_ascii(parsed_key), "{text}");
                assert_eq!(value, &ascii_json::to_ascii(parsed_value), "{text}");
                assert!(patch.names(parsed_key));
            }
        }
        assert!(plain > 500, "only {plain} of 5000 were plain");
    }
}
