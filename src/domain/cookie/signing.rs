//! Cookie signatures in express-session's format, and keyed log tags.
//!
//! A signed value is `s:<id>.<sig>` with `sig` = standard base64 of
//! HMAC-SHA256(secret, id), `=` padding removed (the `cookie-signature` npm
//! package). The first secret signs; every secret verifies, so secrets
//! rotate without logging anyone out. Verification decodes the signature
//! strictly (no padding, no URL-safe alphabet, no stray bits), so exactly one
//! spelling of a signature is accepted, and compares MACs in constant time.
//! HMAC keys are set up once at start-up and cloned per use.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::secret::Secret;
use crate::domain::session::SessionId;
use crate::util::base64_256::{self, Alphabet};

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag's unpadded base64.
const SIG_LEN: usize = base64_256::CHARS;
/// What [`Signer::sign_encoded`] adds to the id, at most: `s%3A`, the dot,
/// and the signature, each of its characters taking three bytes at worst
/// (`+` and `/` are percent-encoded).
pub const ENCODED_EXTRA: usize = 5 + 3 * SIG_LEN;

/// The HMAC-SHA256 tag of a session id under the first (signing) secret,
/// as a request's cookie carried it (its base64, the one spelling
/// verification accepts): a cookie issued again for the same id carries
/// the same tag, so it is neither computed nor encoded a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIG_LEN]);

/// What a cookie value turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by one of our secrets.
    Valid(SessionId),
    /// Shaped like a signed value, but no secret signed it: suspicious.
    Forged,
    /// Not a signed value at all (stale format, garbage).
    Malformed,
}

pub struct Signer {
    keys: Vec<HmacSha256>,
    /// SipHash keys of the log tags.
    log_key: (u64, u64),
    handle_key: HmacSha256,
}

impl Signer {
    /// `secrets` must not be empty; the first one signs.
    pub fn new(secrets: &[Secret]) -> Self {
        let keys: Vec<HmacSha256> = secrets.iter().map(|s| keyed(s.expose())).collect();
        // Log tags use a key derived from the signing secret, so the same
        // session has the same tag across restarts and instances, and a tag
        // reveals nothing usable.
        let mut derive = keys[0].clone();
        derive.update(b"cloakroom log tag v2");
        let derived = derive.finalize().into_bytes();
        let half = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&derived[at..at + 8]);
            u64::from_le_bytes(word)
        };
        // Revoke handles (the admin API) use a key of their own: a log tag
        // is a prefix of nothing an operator can act on.
        let mut derive = keys[0].clone();
        derive.update(b"cloakroom revoke handle v1");
        let handle_key = keyed(&derive.finalize().into_bytes());
        Self {
            keys,
            log_key: (half(0), half(8)),
            handle_key,
        }
    }

    /// The signed value for `id`, before cookie encoding: `s:<id>.<sig>`.
    pub fn sign(&self, id: &SessionId) -> String {
        let mut mac = self.keys[0].clone();
        mac.update(id.as_str().as_bytes());
        let sig = STANDARD_NO_PAD.encode(mac.finalize().into_bytes());
        let mut out = String::with_capacity(3 + id.as_str().len() + sig.len());
        out.push_str("s:");
        out.push_str(id.as_str());
        out.push('.');
        out.push_str(&sig);
        out
    }

    /// [`Self::sign`]'s value as a cookie carries it: percent-encoded as
    /// `encodeURIComponent` encodes it (express-session's encoding), which
    /// for these characters means `:` and the signature's `+` and `/`
    /// (an id's characters are all left as they are). Written directly:
    /// every session write issues a cookie.
    /// `known` is the id's signature when a request's cookie carried it
    /// (see [`Self::check`]); it is used as it is, and computed otherwise.
    pub fn sign_encoded(&self, id: &SessionId, known: Option<&Signature>) -> String {
        let mut out = Vec::with_capacity(id.as_str().len() + ENCODED_EXTRA);
        self.sign_encoded_into(id, known, &mut out);
        // ASCII: the id's characters, base64 and percent escapes.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Self::sign_encoded`], appended to `out` as bytes: the cookie it
    /// goes into becomes a header value, checked there, so no UTF-8 check
    /// is made on the way.
    pub fn sign_encoded_into(&self, id: &SessionId, known: Option<&Signature>, out: &mut Vec<u8>) {
        let mut computed = [0u8; SIG_LEN];
        let sig: &[u8] = match known {
            Some(Signature(text)) => text,
            None => {
                let mut mac = self.keys[0].clone();
                mac.update(id.as_str().as_bytes());
                let tag = mac.finalize().into_bytes();
                let written = STANDARD_NO_PAD
                    .encode_slice(tag, &mut computed)
                    .unwrap_or(0);
                &computed[..written]
            }
        };
        out.extend_from_slice(b"s%3A");
        out.extend_from_slice(id.as_str().as_bytes());
        out.push(b'.');
        // About one character in 32 is `+` or `/`, so runs are long.
        let mut rest = sig;
        while let Some(at) = memchr::memchr2(b'+', b'/', rest) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(if rest[at] == b'+' { b"%2B" } else { b"%2F" });
            rest = &rest[at + 1..];
        }
        out.extend_from_slice(rest);
    }

    /// Checks a signed value (already cookie-decoded), as bytes: a value
    /// that is not UTF-8 cannot hold a valid id and is malformed.
    pub fn verify(&self, value: impl AsRef<[u8]>) -> Verdict {
        self.check(value).0
    }

    /// [`Self::verify`], and for a valid value signed by the first secret
    /// its [`Signature`], for [`Self::sign_encoded`] to use again. One
    /// signed by an older secret has none: a cookie issued again is signed
    /// with the first.
    pub fn check(&self, value: impl AsRef<[u8]>) -> (Verdict, Option<Signature>) {
        let Some(signed) = value.as_ref().strip_prefix(b"s:") else {
            return (Verdict::Malformed, None);
        };
        let Some(dot) = memchr::memrchr(b'.', signed) else {
            return (Verdict::Malformed, None);
        };
        let (id, sig) = (&signed[..dot], &signed[dot + 1..]);
        // The decoder refuses padding and non-zero trailing bits; with the
        // exact length that leaves one spelling per tag.
        let Some(tag) = base64_256::decode(sig, Alphabet::Standard) else {
            return (Verdict::Forged, None);
        };
        let signed_by = self.keys.iter().position(|key| {
            let mut mac = key.clone();
            mac.update(id);
            tags_equal(&mac.finalize().into_bytes().into(), &tag)
        });
        let id = std::str::from_utf8(id).ok().and_then(SessionId::parse);
        match (signed_by, id) {
            (Some(key), Some(id)) => {
                // The decoder took exactly `SIG_LEN` characters.
                let known = <[u8; SIG_LEN]>::try_from(sig).ok().map(Signature);
                (Verdict::Valid(id), known.filter(|_| key == 0))
            }
            // Signed by us but not an id we can use: treat as no session.
            (Some(_), None) => (Verdict::Malformed, None),
            (None, _) => (Verdict::Forged, None),
        }
    }

    /// A short keyed hash of an id: identifies a session in logs without
    /// revealing the id.
    pub fn log_tag(&self, id: &SessionId) -> LogTag {
        // SipHash-2-4, a keyed pseudo-random function made for short
        // inputs: a tag is written on every access line, where HMAC-SHA256
        // cost more than formatting the rest of the line.
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(self.log_key.0, self.log_key.1);
        std::hash::Hasher::write(&mut hasher, id.as_str().as_bytes());
        LogTag::new(std::hash::Hasher::finish(&hasher))
    }
}

/// Whether two MAC tags are equal, in constant time: compared as four
/// 64-bit words, each by `subtle`. The `hmac` crate's `verify_slice`
/// compares byte by byte, each byte behind an optimisation barrier, which
/// cost about 340 instructions on every session request; this costs a
/// tenth of that and is as constant-time (no branch or early exit on the
/// data, one barrier per word).
fn tags_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut same = subtle::Choice::from(1);
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |bytes: &[u8]| {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            u64::from_ne_bytes(word)
        };
        same &= subtle::ConstantTimeEq::ct_eq(&word(a), &word(b));
    }
    same.into()
}

/// A session's tag in logs: 16 lowercase hex digits, kept on the stack
/// (one is made for every access line).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LogTag([u8; 16]);

impl LogTag {
    fn new(hash: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (index, digit) in text.iter_mut().enumerate() {
            *digit = HEX[(hash >> (60 - 4 * index)) as usize & 0xf];
        }
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for LogTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for LogTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Signer {
    /// A session's revoke handle for the admin API: the full keyed hash of
    /// its id, URL-safe base64 (43 characters). The same on every instance
    /// sharing the signing secret; the id cannot be had from it.
    pub fn handle(&self, id: &SessionId) -> String {
        let mut mac = self.handle_key.clone();
        mac.update(id.as_str().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secrets: &[&str]) -> Signer {
        let secrets: Vec<Secret> = secrets
            .iter()
            .map(|s| Secret::new((*s).to_owned()))
            .collect();
        Signer::new(&secrets)
    }

    #[test]
    fn tags_are_equal_exactly_when_every_bit_is() {
        use rand::RngCore as _;
        let mut rng = rand::rng();
        for _ in 0..100 {
            let mut a = [0u8; 32];
            rng.fill_bytes(&mut a);
            assert!(tags_equal(&a, &a));
            // One bit off, anywhere, in either word order.
            for bit in 0..256 {
                let mut b = a;
                b[bit / 8] ^= 1 << (bit % 8);
                assert!(!tags_equal(&a, &b), "bit {bit}");
                assert!(!tags_equal(&b, &a), "bit {bit}");
            }
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            assert_eq!(tags_equal(&a, &b), a == b);
        }
    }

    #[test]
    fn signs_like_cookie_signature() {
        // Vector from tests/vectors/express_session.json (express-session 1.19.0).
        let id = SessionId::parse("tXGk0a3TLJ5B8Hqz-1yjG8ZKhaD6YUHj").unwrap();
        let value = signer(&["keyboard cat"]).sign(&id);
        assert!(value.starts_with("s:tXGk0a3TLJ5B8Hqz-1yjG8ZKhaD6YUHj."));
        assert_eq!(signer(&["keyboard cat"]).verify(&value), Verdict::Valid(id));
    }

    #[test]
    fn the_encoded_signature_is_encode_uri_component_of_the_signature() {
        let s = signer(&["keyboard cat"]);
        // Ours, and express-session's ids (which may hold a dot).
        let mut ids: Vec<SessionId> = (0..500).map(|_| SessionId::generate()).collect();
        ids.extend(
            ["abc.DEF-_1", "x"]
                .iter()
                .filter_map(|t| SessionId::parse(t)),
        );
        let mut escaped = 0;
        for id in &ids {
            let encoded = s.sign_encoded(id, None);
            assert_eq!(
                encoded,
                crate::domain::path::encode_component(&s.sign(id)),
                "{}",
                id.as_str()
            );
            escaped += usize::from(encoded.contains("%2B") || encoded.contains("%2F"));
            // The signature a request's cookie carried gives the same.
            let (_, known) = s.check(s.sign(id));
            let known = known.expect("signed by the first secret");
            assert_eq!(s.sign_encoded(id, Some(&known)), encoded);
        }
        // The escapes of the signature's alphabet were exercised.
        assert!(escaped > 100, "{escaped}");
    }

    #[test]
    fn a_signature_the_first_secret_made_is_used_again_as_it_is() {
        let s = signer(&["new secret", "old secret"]);
        let id = SessionId::generate();
        let (verdict, signature) = s.check(s.sign(&id));
        assert_eq!(verdict, Verdict::Valid(id.clone()));
        let signature = signature.expect("signed by the first secret");
        assert_eq!(
            s.sign_encoded(&id, Some(&signature)),
            s.sign_encoded(&id, None)
        );
        // One an older secret made is not: the cookie is signed anew.
        let (verdict, signature) = s.check(signer(&["old secret"]).sign(&id));
        assert_eq!((verdict, signature), (Verdict::Valid(id), None));
        // Nor one that verifies nothing.
        assert_eq!(s.check("s:id.c2ln").1, None);
    }

    #[test]
    fn any_secret_verifies_but_the_first_signs() {
        let id = SessionId::generate();
        let old = signer(&["old secret"]).sign(&id);
        let rotated = signer(&["new secret", "old secret"]);
        assert_eq!(rotated.verify(&old), Verdict::Valid(id.clone()));
        assert_ne!(rotated.sign(&id), old);
        assert_eq!(signer(&["new secret"]).verify(&old), Verdict::Forged);
    }

    #[test]
    fn only_the_canonical_signature_spelling_verifies() {
        let s = signer(&["k"]);
        let id = SessionId::generate();
        let good = s.sign(&id);
        let url_safe = good.replace('+', "-").replace('/', "_");
        let variants = [
            format!("{good}="),
            format!("{good}A"),
            format!("{good} "),
            good[..good.len() - 1].to_string(),
            good.replacen("s:", "S:", 1),
        ];
        for bad in variants
            .iter()
            .chain((url_safe != good).then_some(&url_safe))
        {
            assert_ne!(s.verify(bad), Verdict::Valid(id.clone()), "{bad}");
        }
        // Flipping the last character's low bits gives a non-canonical encoding.
        let last = good.chars().last().unwrap();
        let flipped = match last {
            'A' => 'B',
            'E' => 'F',
            _ => 'A',
        };
        let tampered = format!("{}{flipped}", &good[..good.len() - 1]);
        assert_eq!(s.verify(&tampered), Verdict::Forged);
    }

    #[test]
    fn garbage_is_malformed_not_forged() {
        let s = signer(&["k"]);
        assert_eq!(s.verify("hello"), Verdict::Malformed);
        assert_eq!(s.verify("s:nodot"), Verdict::Malformed);
        assert_eq!(s.verify("s:id.c2ln"), Verdict::Forged);
    }

    #[test]
    fn log_tags_are_stable_and_do_not_contain_the_id() {
        let s = signer(&["k"]);
        let id = SessionId::generate();
        assert_eq!(s.log_tag(&id), s.log_tag(&id));
        let tag = s.log_tag(&id);
        assert_eq!(tag.as_str().len(), 16);
        assert!(tag.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!id.as_str().contains(tag.as_str()));
        assert_ne!(tag, signer(&["other"]).log_tag(&id));
        // The hash's digits, most significant first.
        assert_eq!(
            LogTag::new(0x0123_4567_89ab_cdef).as_str(),
            "0123456789abcdef"
        );
    }

    #[test]
    fn revoke_handles_are_stable_full_length_and_not_the_id_or_its_tag() {
        let s = signer(&["k"]);
        let id = SessionId::generate();
        let handle = s.handle(&id);
        assert_eq!(handle, signer(&["k"]).handle(&id));
        assert_eq!(handle.len(), 43);
        assert!(handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(handle, id.as_str());
        assert!(!handle.contains(s.log_tag(&id).as_str()));
        assert_ne!(handle, signer(&["other"]).handle(&id));
    }
}
