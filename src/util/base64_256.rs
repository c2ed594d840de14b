//! Strict decoding of a 256-bit value written as 43 base64 characters
//! without padding: Cloakroom's session ids (URL-safe alphabet) and cookie
//! signatures (standard alphabet). Every session request decodes one of
//! each.
//!
//! It answers exactly what the `base64` crate's `decode_slice` answers for
//! these inputs with its default, strict settings: the bytes, or nothing
//! for another length, a character outside the alphabet, or unused
//! trailing bits that are not zero (so one value has one spelling). It
//! costs about a third of the crate's general decoder, which handles any
//! length, padding and configuration (tested against it below).

/// Which 64-character alphabet.
#[derive(Debug, Clone, Copy)]
pub enum Alphabet {
    /// `A-Z a-z 0-9 + /`.
    Standard,
    /// `A-Z a-z 0-9 - _`.
    UrlSafe,
}

/// The decoded value's length in bytes.
pub const BYTES: usize = 32;
/// Its encoded length: `ceil(32 * 4 / 3)`.
pub const CHARS: usize = 43;

/// Marks a byte outside the alphabet: its two high bits are set, which no
/// 6-bit value has.
const INVALID: u8 = 0xff;

const fn table(sixty_two: u8, sixty_three: u8) -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut value = 0;
    while value < 26 {
        table[(b'A' + value) as usize] = value;
        table[(b'a' + value) as usize] = value + 26;
        value += 1;
    }
    let mut digit = 0;
    while digit < 10 {
        table[(b'0' + digit) as usize] = digit + 52;
        digit += 1;
    }
    table[sixty_two as usize] = 62;
    table[sixty_three as usize] = 63;
    table
}

static STANDARD: [u8; 256] = table(b'+', b'/');
static URL_SAFE: [u8; 256] = table(b'-', b'_');

/// The 32 bytes `text` spells in `alphabet`; `None` unless it is exactly
/// their canonical spelling.
pub fn decode(text: &[u8], alphabet: Alphabet) -> Option<[u8; BYTES]> {
    let text: &[u8; CHARS] = text.try_into().ok()?;
    let table = match alphabet {
        Alphabet::Standard => &STANDARD,
        Alphabet::UrlSafe => &URL_SAFE,
    };
    let sextet = |at: usize| table[usize::from(text[at])];
    let mut out = [0u8; BYTES];
    // Ten groups of four characters make the first 30 bytes.
    for (group, bytes) in out[..30].chunks_exact_mut(3).enumerate() {
        let at = group * 4;
        let (a, b, c, d) = (sextet(at), sextet(at + 1), sextet(at + 2), sextet(at + 3));
        if (a | b | c | d) & 0xc0 != 0 {
            return None;
        }
        let bits = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        bytes.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    // The last three carry 18 bits: two bytes, and two that must be zero.
    let (a, b, c) = (sextet(40), sextet(41), sextet(42));
    if (a | b | c) & 0xc0 != 0 {
        return None;
    }
    let bits = u32::from(a) << 12 | u32::from(b) << 6 | u32::from(c);
    if bits & 0b11 != 0 {
        return None;
    }
    out[30..].copy_from_slice(&((bits >> 2) as u16).to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use rand::{Rng as _, RngCore as _};

    use super::*;

    /// The crate's answer, the reference.
    fn reference(text: &[u8], alphabet: Alphabet) -> Option<[u8; BYTES]> {
        let engine = match alphabet {
            Alphabet::Standard => &STANDARD_NO_PAD,
            Alphabet::UrlSafe => &URL_SAFE_NO_PAD,
        };
        let mut out = [0u8; BYTES];
        match engine.decode_slice(text, &mut out) {
            Ok(BYTES) => Some(out),
            _ => None,
        }
    }

    #[test]
    fn values_round_trip_in_both_alphabets() {
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let mut value = [0u8; BYTES];
            rng.fill_bytes(&mut value);
            let standard = STANDARD_NO_PAD.encode(value);
            let url_safe = URL_SAFE_NO_PAD.encode(value);
            assert_eq!(decode(standard.as_bytes(), Alphabet::Standard), Some(value));
            assert_eq!(decode(url_safe.as_bytes(), Alphabet::UrlSafe), Some(value));
        }
    }

    #[test]
    fn any_text_gets_the_crates_answer() {
        // Mostly alphabet characters, so that many texts are valid or
        // nearly so; the rest are the characters that trip decoders.
        const CHARACTERS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=.% \x00\xff";
        let mut rng = rand::rng();
        for round in 0..50_000 {
            // Mostly 43 characters; some one shorter or longer.
            let length = match round % 10 {
                0 => 42,
                1 => 44,
                _ => CHARS,
            };
            let mut text: Vec<u8> = (0..length)
                .map(|_| CHARACTERS[rng.random_range(0..64)])
                .collect();
            if round % 3 == 0 {
                let at = rng.random_range(0..length);
                text[at] = CHARACTERS[rng.random_range(0..CHARACTERS.len())];
            }
            for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
                assert_eq!(
                    decode(&text, alphabet),
                    reference(&text, alphabet),
                    "{:?} {alphabet:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn stray_trailing_bits_and_foreign_characters_are_refused() {
        let value = [0xa5u8; BYTES];
        let text = STANDARD_NO_PAD.encode(value).into_bytes();
        // The last character carries two unused bits: set either.
        for flip in [1u8, 2] {
            let mut odd = text.clone();
            let last = STANDARD[usize::from(odd[42])] | flip;
            odd[42] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                [usize::from(last)];
            assert_eq!(decode(&odd, Alphabet::Standard), None);
            assert_eq!(reference(&odd, Alphabet::Standard), None);
        }
        let mut padded = text.clone();
        padded.push(b'=');
        assert_eq!(decode(&padded, Alphabet::Standard), None);
        // '+' and '/' belong to one alphabet only.
        let standard = STANDARD_NO_PAD.encode([0xfb; BYTES]);
        assert!(standard.contains('+') || standard.contains('/'));
        assert_eq!(decode(standard.as_bytes(), Alphabet::UrlSafe), None);
        assert_eq!(decode(b"", Alphabet::UrlSafe), None);
    }
}
