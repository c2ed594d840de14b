//! Who a session belongs to, and how the user index follows it.
//!
//! A session's identity is the value at a JSON pointer in its data
//! (`auth.identity_pointer`, by default `/` + `auth.identity_key`): a
//! string is the identity as it is; any other value (a number, an object)
//! is identified by its compact JSON text. `null`, an empty string, a
//! missing value or one longer than [`MAX_IDENTITY_BYTES`] is no identity.
//!
//! [`index_changes`] decides, without I/O, what a commit does to the user
//! index: a session leaves its old user's index when its identity changes,
//! when it moves to a fresh id, or when it is destroyed, and joins its new
//! user's index.

use std::fmt;

use serde_json::{Map, Value};

use super::SessionId;

/// Longest identity indexed. Session data is the upstream's; a longer value
/// is not an identity the index keys on (it would become a Redis key).
pub const MAX_IDENTITY_BYTES: usize = 512;

/// The user a session belongs to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity(Box<str>);

impl Identity {
    /// An identity named by an operator (the admin API). `None` when empty
    /// or too long, as [`identity_of`] would never give it.
    pub fn new(text: &str) -> Option<Self> {
        (!text.is_empty() && text.len() <= MAX_IDENTITY_BYTES).then(|| Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shown by its length only: an identity is personal data (an e-mail
/// address, a user name) and stays out of logs.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity(<{} bytes>)", self.0.len())
    }
}

/// What `auth.session_limit_policy` does when a login would give a user
/// more than `auth.max_sessions_per_user` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitPolicy {
    /// The new login wins: the user's oldest sessions are destroyed.
    #[default]
    EvictOldest,
    /// The login is refused (409) and the store left unchanged.
    Refuse,
}

/// The value at `pointer` (an RFC 6901 JSON pointer) in session data, as
/// it is: comparing two is cheaper than making their identities.
pub fn identity_value<'a>(data: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let rest = pointer.strip_prefix('/')?;
    let (first, tail) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let value = if first.contains('~') {
        data.get(&first.replace("~1", "/").replace("~0", "~"))?
    } else {
        data.get(first)?
    };
    if tail.is_empty() {
        Some(value)
    } else {
        value.pointer(tail)
    }
}

/// The identity at `pointer` (an RFC 6901 JSON pointer) in session data.
pub fn identity_of(data: &Map<String, Value>, pointer: &str) -> Option<Identity> {
    let value = identity_value(data, pointer)?;
    let text = match value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        // Serialising a JSON value cannot fail.
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    Identity::new(&text)
}

/// One change to the user index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// The session joins the user's index.
    Add(Identity, SessionId),
    /// The session leaves the user's index.
    Remove(Identity, SessionId),
    /// The session moved to a fresh id with the same user (`regenerate`):
    /// its entry moves with it, keeping when and where it was made.
    Move(Identity, SessionId, SessionId),
}

/// A session as the index sees it: its id and its identity, if any.
pub type Indexed<'a> = (&'a SessionId, Option<&'a Identity>);

/// What a commit does to the index: `before` is the session the request
/// came with (if any), `after` the session the commit left (`None`: it was
/// destroyed). Removals come first.
pub fn index_changes(before: Option<Indexed<'_>>, after: Option<Indexed<'_>>) -> Vec<IndexChange> {
    let mut changes = Vec::new();
    match (before, after) {
        (Some(b), Some(a)) if b == a => return changes,
        (Some((old, Some(user))), Some((new, Some(same)))) if user == same => {
            changes.push(IndexChange::Move(user.clone(), old.clone(), new.clone()));
            return changes;
        }
        _ => {}
    }
    if let Some((id, Some(identity))) = before {
        changes.push(IndexChange::Remove(identity.clone(), id.clone()));
    }
    if let Some((id, Some(identity))) = after {
        changes.push(IndexChange::Add(identity.clone(), id.clone()));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn id(text: &str) -> Identity {
        Identity::new(text).unwrap()
    }

    #[test]
    fn the_identity_is_the_value_at_the_pointer() {
        let data = map(json!({"user": {"id": 7, "name": "ada", "a/b": "slash"}, "n": null}));
        assert_eq!(identity_of(&data, "/user/name"), Some(id("ada")));
        assert_eq!(identity_of(&data, "/user/id"), Some(id("7")));
        assert_eq!(identity_of(&data, "/user/a~1b"), Some(id("slash")));
        assert_eq!(
            identity_of(&data, "/user"),
            Some(id(r#"{"id":7,"name":"ada","a/b":"slash"}"#)),
            "a non-string value is its compact JSON"
        );
        assert_eq!(identity_of(&data, "/n"), None, "null");
        assert_eq!(identity_of(&data, "/missing"), None);
        assert_eq!(identity_of(&data, "/user/missing"), None);
        assert_eq!(identity_of(&data, "user"), None, "not a pointer");
        let empty = map(json!({"user": ""}));
        assert_eq!(identity_of(&empty, "/user"), None, "an empty string");
        let long = map(json!({"user": "x".repeat(MAX_IDENTITY_BYTES + 1)}));
        assert_eq!(identity_of(&long, "/user"), None, "too long to index");
    }

    #[test]
    fn identities_stay_out_of_debug_output() {
        assert!(!format!("{:?}", id("ada@example.com")).contains("ada"));
    }

    #[test]
    fn the_index_follows_logins_rotations_and_logouts() {
        let (old, new) = (SessionId::generate(), SessionId::generate());
        let (ada, grace) = (id("ada"), id("grace"));
        // An anonymous session logs in (and moves to a fresh id).
        assert_eq!(
            index_changes(Some((&old, None)), Some((&new, Some(&ada)))),
            vec![IndexChange::Add(ada.clone(), new.clone())]
        );
        // A write that changes nothing of the identity or the id.
        assert_eq!(
            index_changes(Some((&old, Some(&ada))), Some((&old, Some(&ada)))),
            vec![]
        );
        // A regenerate: the entry moves to the new id.
        assert_eq!(
            index_changes(Some((&old, Some(&ada))), Some((&new, Some(&ada)))),
            vec![IndexChange::Move(ada.clone(), old.clone(), new.clone())]
        );
        // Another user on a fresh id: the old id leaves, the new one joins.
        assert_eq!(
            index_changes(Some((&old, Some(&ada))), Some((&new, Some(&grace)))),
            vec![
                IndexChange::Remove(ada.clone(), old.clone()),
                IndexChange::Add(grace.clone(), new.clone())
            ]
        );
        // Another user on the same session.
        assert_eq!(
            index_changes(Some((&old, Some(&ada))), Some((&old, Some(&grace)))),
            vec![
                IndexChange::Remove(ada.clone(), old.clone()),
                IndexChange::Add(grace.clone(), old.clone())
            ]
        );
        // A logout by patch, and a destroy.
        assert_eq!(
            index_changes(Some((&old, Some(&ada))), Some((&old, None))),
            vec![IndexChange::Remove(ada.clone(), old.clone())]
        );
        assert_eq!(
            index_changes(Some((&old, Some(&ada))), None),
            vec![IndexChange::Remove(ada.clone(), old.clone())]
        );
        // A new session created signed in.
        assert_eq!(
            index_changes(None, Some((&new, Some(&grace)))),
            vec![IndexChange::Add(grace, new.clone())]
        );
        assert_eq!(index_changes(None, Some((&new, None))), vec![]);
    }
}
