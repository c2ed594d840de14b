//! Merge patches applied to a session's rendered text, without building
//! its map: the common write (a few top-level keys set or removed, on a
//! session the memory store keeps as text) costs a scan and a copy instead
//! of a parse, a merge and a rendering.
//!
//! The text made is byte for byte the one the map path renders (tested
//! against it in `ops`): members keep their order, a replaced key keeps its
//! place, a new key goes last, and a removed key's place is taken by the
//! last member, as `serde_json::Map::remove` does with `preserve_order`.
//! Anything else (a patch value that is an object, which merges
//! recursively; a key the scan leaves to serde; many members) is left to
//! the map path.

use serde_json::Value;
use smallvec::SmallVec;

use super::ascii_json;
use super::patch::{Member, Patch};
use super::scan;

/// Sessions with more top-level members take the map path (keys are
/// looked up by a linear search here).
const MAX_MEMBERS: usize = 64;

enum Key<'a> {
    /// As written in the text or in a plain patch (no escape in it).
    Written(&'a [u8]),
    Added(&'a str),
}

/// The session's members as the patches leave them: a session's few held
/// inline, without an allocation.
type Fields<'a> = SmallVec<[(Key<'a>, Slot<'a>); 8]>;

enum Slot<'a> {
    /// As written in the text or in a plain patch.
    Written(&'a [u8]),
    Patched(&'a Value),
}

/// The rendering of `patches` merged, in order, into the data rendered as
/// `text`; `None` when the map path must decide.
pub fn apply<'a>(text: &'a [u8], patches: impl Iterator<Item = &'a Patch>) -> Option<Vec<u8>> {
    let written = scan::members(text)?;
    if written.len() > MAX_MEMBERS {
        return None;
    }
    let mut members: Fields<'_> = SmallVec::with_capacity(written.len() + 2);
    for (key, value) in written {
        // Duplicate keys are no rendering of a map.
        if members.iter().any(|(k, _)| key_bytes(k) == key) {
            return None;
        }
        members.push((Key::Written(key), Slot::Written(value)));
    }
    for patch in patches {
        let mut merged = true;
        patch.for_each_member(|member| {
            merged = merged && merge(&mut members, member);
        });
        if !merged {
            return None;
        }
    }
    Some(render(&members))
}

/// Merges one patch member into `members`; `false` when the map path
/// must decide.
fn merge<'a>(members: &mut Fields<'a>, member: Member<'a>) -> bool {
    let (key, slot, removes) = match member {
        Member::Written { key, value } => {
            (Key::Written(key), Slot::Written(value), value == b"null")
        }
        Member::Parsed { value, .. } if value.is_object() => return false,
        Member::Parsed { key, value } => (Key::Added(key), Slot::Patched(value), value.is_null()),
    };
    let at = members
        .iter()
        .position(|(k, _)| key_bytes(k) == key_bytes(&key));
    match (removes, at) {
        (true, Some(at)) => {
            members.swap_remove(at);
        }
        (true, None) => {}
        (false, Some(at)) => members[at].1 = slot,
        (false, None) => members.push((key, slot)),
    }
    members.len() <= MAX_MEMBERS
}

fn key_bytes<'k>(key: &'k Key<'_>) -> &'k [u8] {
    match key {
        Key::Written(bytes) => bytes,
        Key::Added(text) => text.as_bytes(),
    }
}

fn render(members: &[(Key<'_>, Slot<'_>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (index, (key, slot)) in members.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        match key {
            Key::Written(bytes) => {
                out.push(b'"');
                out.extend_from_slice(bytes);
                out.push(b'"');
            }
            Key::Added(text) => out.extend_from_slice(&ascii_json::to_ascii(text)),
        }
        out.push(b':');
        match slot {
            Slot::Written(bytes) => out.extend_from_slice(bytes),
            Slot::Patched(value) => out.extend_from_slice(&ascii_json::to_ascii(value)),
        }
    }
    out.push(b'}');
    out
}
