//! JSON rendered as printable ASCII: every non-ASCII character becomes a
//! `\uXXXX` escape (surrogate pairs above U+FFFF), and so does DEL; the other
//! control characters are escaped by serde_json itself. Any JSON parser decodes it to the original
//! values, and any HTTP header parser accepts it as one header line.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, Serializer};
use serde_json::{Map, Value};

struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            // DEL is ASCII but not allowed in a header value.
            if ch.is_ascii() && ch != '\x7f' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..index])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // The remaining methods keep the compact layout.
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        CompactFormatter.begin_array_value(w, first)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        CompactFormatter.begin_object_key(w, first)
    }
}

/// Renders any JSON value as printable ASCII.
pub fn to_ascii(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut ser = Serializer::with_formatter(&mut out, AsciiFormatter);
    // Serialising a serde_json value into a Vec cannot fail: no I/O errors,
    // and map keys are always strings.
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

/// Renders a JSON object as printable ASCII.
pub fn object_to_ascii(map: &Map<String, Value>) -> Vec<u8> {
    to_ascii(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_ascii_is_escaped_and_round_trips() {
        let value = json!({"name": "Zoë 😀 ✓", "line": "a\r\nb\u{7f}", "n": [1, 2.5, null, true]});
        let text = to_ascii(&value);
        assert!(
            text.iter().all(|b| (0x20..0x7f).contains(b)),
            "{}",
            String::from_utf8_lossy(&text)
        );
        let back: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, value);
        assert!(String::from_utf8(text).unwrap().contains("\\ud83d\\ude00"));
    }

    #[test]
    fn output_is_compact() {
        assert_eq!(
            to_ascii(&json!({"a": [1, {"b": "c"}]})),
            br#"{"a":[1,{"b":"c"}]}"#
        );
    }
}
