//! `Set-Session`: parsing the upstream's instructions and planning their
//! effect on a session.
//!
//! Values: a JSON object (an RFC 7396 merge patch), `regenerate`,
//! `destroy` or `destroy-all`. Several headers apply in order. [`plan`] is the one place that
//! decides what a list of operations does; every store calls it inside its
//! own atomic section, so all stores agree on the semantics.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;

use super::lifetime::STAMP_KEY;
pub use super::patch::Patch;
use super::{text_patch, SessionData};

/// Top-level key reserved for the cookie metadata of connect-redis records.
pub const RESERVED_KEY: &str = "cookie";

/// Every top-level key a patch may not touch: the cookie metadata and the
/// session's lifetime stamp.
pub const RESERVED_KEYS: [&str; 2] = [RESERVED_KEY, STAMP_KEY];

/// One instruction from the upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOp {
    /// RFC 7396 merge patch on the session data.
    Patch(Patch),
    /// Move the session to a fresh id, keeping its data.
    Regenerate,
    /// End the session: delete it and clear the cookie.
    Destroy,
    /// "Remember me": the session lives this long (its idle and absolute
    /// timeouts at least this long, its cookie persistent for it).
    Remember(Duration),
    /// End every session of the session's user, this one included (log out
    /// everywhere). For this session it is [`SessionOp::Destroy`]; the
    /// proxy ends the user's other sessions through the user index.
    DestroyAll,
}

/// Why a `Set-Session` value or its result was refused. The upstream is at
/// fault for every one of these.
#[derive(Debug, Error, PartialEq)]
pub enum SetSessionError {
    #[error("Set-Session value of {0} bytes is over the limit of {1}")]
    TooLong(usize, usize),
    #[error("Set-Session value is neither a JSON object nor `regenerate` / `destroy` / `destroy-all` / `remember=<duration>`")]
    UnknownVerb,
    #[error("Set-Session `remember=`: {0}")]
    BadRemember(String),
    #[error("Set-Session JSON is invalid: {0}")]
    InvalidJson(String),
    #[error("Set-Session JSON must be an object, got {0}")]
    NotAnObject(&'static str),
    #[error("Set-Session may not change the reserved keys `cookie` and `__cloakroom`")]
    ReservedKey,
    #[error("session would be {0} bytes, over the limit of {1}")]
    SessionTooLarge(usize, usize),
}

/// Parses one `Set-Session` header value (raw bytes: the upstream may send
/// anything).
pub fn parse(value: &[u8], max_len: usize) -> Result<SessionOp, SetSessionError> {
    if value.len() > max_len {
        return Err(SetSessionError::TooLong(value.len(), max_len));
    }
    let text = value.trim_ascii();
    match text {
        b"regenerate" => return Ok(SessionOp::Regenerate),
        b"destroy" => return Ok(SessionOp::Destroy),
        b"destroy-all" => return Ok(SessionOp::DestroyAll),
        _ => {}
    }
    if let Some(lifetime) = text.strip_prefix(b"remember=") {
        let lifetime = std::str::from_utf8(lifetime)
            .map_err(|_| SetSessionError::BadRemember("not a duration".into()))
            .and_then(|text| {
                crate::util::duration::parse_duration(text).map_err(SetSessionError::BadRemember)
            })?;
        if lifetime.is_zero() {
            return Err(SetSessionError::BadRemember(
                "must be more than zero".into(),
            ));
        }
        return Ok(SessionOp::Remember(lifetime));
    }
    if text.first() != Some(&b'{') {
        return Err(SetSessionError::UnknownVerb);
    }
    // The common patch, kept as written (see `patch`).
    if let Some(patch) = Patch::plain(text) {
        if patch.names_any(&RESERVED_KEYS) {
            return Err(SetSessionError::ReservedKey);
        }
        return Ok(SessionOp::Patch(patch));
    }
    let value: Value =
        serde_json::from_slice(text).map_err(|e| SetSessionError::InvalidJson(e.to_string()))?;
    match value {
        Value::Object(map) if RESERVED_KEYS.iter().any(|key| map.contains_key(*key)) => {
            Err(SetSessionError::ReservedKey)
        }
        Value::Object(map) => Ok(SessionOp::Patch(map.into())),
        other => Err(SetSessionError::NotAnObject(kind(&other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 7396: `null` deletes, objects merge recursively, anything else replaces.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot) = slot {
                    merge_patch(slot, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Whether a patch among `ops` names the top-level key `key`: no other
/// operation changes a key's value but to end the session.
pub fn names(ops: &[SessionOp], key: &str) -> bool {
    ops.iter()
        .any(|op| matches!(op, SessionOp::Patch(patch) if patch.names(key)))
}

/// What a list of operations does to a session, decided without I/O.
#[derive(Debug)]
pub enum Plan {
    /// Nothing to write.
    Keep,
    /// Store this data. `fresh_id`: under a new id (the old one, if any, is
    /// removed); otherwise under the current id.
    Write {
        data: Arc<SessionData>,
        fresh_id: bool,
        /// "Remember me" asked for this lifetime.
        remember: Option<Duration>,
    },
    /// Delete the current session (if any) and clear the cookie.
    Delete,
}

/// Plans `ops` on the current data (`None`: no session). A patch on no
/// session creates one under a fresh id: ids are never adopted from clients.
///
/// `rotate_on`: the identity key. When the operations make it present (not
/// null) where it was absent or null, or change its value, the session moves
/// to a fresh id even without `regenerate`: a login never keeps the id the
/// visitor had before it (session fixation).
pub fn plan(
    current: Option<&SessionData>,
    ops: &[SessionOp],
    max_bytes: usize,
    rotate_on: Option<&str>,
) -> Result<Plan, SetSessionError> {
    if ops.is_empty() {
        return Ok(Plan::Keep);
    }
    if let Some(planned) = current
        .and_then(SessionData::text_only)
        .and_then(|text| plan_on_text(text, ops, max_bytes, rotate_on))
    {
        return planned;
    }
    let mut state: Option<Map<String, Value>> = current.map(SessionData::to_map);
    let mut fresh_id = current.is_none();
    let mut destroyed = false;
    let mut remember = None;
    for op in ops {
        match op {
            SessionOp::Patch(patch) => {
                let map = state.get_or_insert_with(|| {
                    fresh_id = true;
                    Map::new()
                });
                merge_patch(map, patch.map());
            }
            SessionOp::Regenerate => fresh_id |= state.is_some(),
            SessionOp::Destroy | SessionOp::DestroyAll => {
                state = None;
                destroyed = true;
                remember = None;
            }
            SessionOp::Remember(lifetime) => remember = Some(*lifetime),
        }
    }
    // Remembering alone changes no data: nothing to remember without a
    // session.
    let remember = remember.filter(|_| state.is_some());
    // Only a patch naming the key can change it (a session destroyed and
    // patched again is moved anyway): most writes skip reading it.
    if let (Some(current), Some(key), Some(map)) = (current, rotate_on, &state) {
        if let Some(after) = map.get(key).filter(|v| !v.is_null() && names(ops, key)) {
            // The value before, read without building the current map.
            let before = current.lookup(&[key.to_owned()]);
            if before.as_deref().filter(|v| !v.is_null()) != Some(after) {
                fresh_id = true;
            }
        }
    }
    match state {
        None if destroyed => Ok(Plan::Delete),
        None => Ok(Plan::Keep),
        Some(map) => {
            let data = SessionData::new(map);
            let size = data.ascii_json().len();
            if size > max_bytes {
                return Err(SetSessionError::SessionTooLarge(size, max_bytes));
            }
            Ok(Plan::Write {
                data: Arc::new(data),
                fresh_id,
                remember,
            })
        }
    }
}

/// [`plan`] for the common write, on the text of a session kept as text
/// (see [`text_patch`]): patches, and `remember=`, none naming the
/// identity key. `None`: the map path decides. A store that keeps the text
/// calls it on its own bytes first, without building a [`SessionData`].
pub fn plan_on_text(
    text: &[u8],
    ops: &[SessionOp],
    max_bytes: usize,
    rotate_on: Option<&str>,
) -> Option<Result<Plan, SetSessionError>> {
    let mut remember = None;
    let mut patched = false;
    for op in ops {
        match op {
            SessionOp::Patch(patch) if !rotate_on.is_some_and(|key| patch.names(key)) => {
                patched = true;
            }
            SessionOp::Remember(lifetime) => remember = Some(*lifetime),
            _ => return None,
        }
    }
    if !patched {
        return None;
    }
    let patches = ops.iter().filter_map(|op| match op {
        SessionOp::Patch(patch) => Some(patch),
        _ => None,
    });
    let mut rendered = text_patch::apply(text, patches)?;
    // `Bytes` takes a buffer with spare room only with a second allocation
    // to track it; the allocator shrinks a block by less than half in place.
    rendered.shrink_to_fit();
    if rendered.len() > max_bytes {
        return Some(Err(SetSessionError::SessionTooLarge(
            rendered.len(),
            max_bytes,
        )));
    }
    Some(Ok(Plan::Write {
        data: Arc::new(SessionData::from_ascii_json(rendered.into())),
        fresh_id: false,
        remember,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn data(v: Value) -> SessionData {
        SessionData::new(obj(v))
    }

    #[test]
    fn parses_verbs_and_patches() {
        assert_eq!(parse(b" regenerate ", 100), Ok(SessionOp::Regenerate));
        assert_eq!(parse(b"destroy", 100), Ok(SessionOp::Destroy));
        assert_eq!(parse(b"destroy-all", 100), Ok(SessionOp::DestroyAll));
        assert_eq!(
            parse(br#"{"a":1}"#, 100),
            Ok(SessionOp::Patch(obj(json!({"a": 1})).into()))
        );
    }

    #[test]
    fn refuses_malformed_values() {
        assert_eq!(parse(b"Destroy", 100), Err(SetSessionError::UnknownVerb));
        assert_eq!(
            parse(b"destroy_all", 100),
            Err(SetSessionError::UnknownVerb)
        );
        assert_eq!(parse(b"[1]", 100), Err(SetSessionError::UnknownVerb));
        assert!(matches!(
            parse(b"{nope", 100),
            Err(SetSessionError::InvalidJson(_))
        ));
        assert!(matches!(
            parse(b"{\"a\":1} x", 100),
            Err(SetSessionError::InvalidJson(_))
        ));
        assert_eq!(
            parse(br#"{"cookie":{}}"#, 100),
            Err(SetSessionError::ReservedKey)
        );
        assert_eq!(
            parse(&[b' '; 101], 100),
            Err(SetSessionError::TooLong(101, 100))
        );
        assert!(matches!(
            parse(b"{\"a\":\"\xff\"}", 100),
            Err(SetSessionError::InvalidJson(_))
        ));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = obj(json!({"a": "b", "c": {"d": "e", "f": "g"}, "x": 1}));
        merge_patch(
            &mut target,
            &obj(json!({"a": "z", "c": {"f": null}, "x": {"y": 2}})),
        );
        assert_eq!(
            Value::Object(target),
            json!({"a": "z", "c": {"d": "e"}, "x": {"y": 2}})
        );
    }

    #[test]
    fn patch_on_no_session_creates_one_under_a_fresh_id() {
        let ops = [SessionOp::Patch(obj(json!({"user": "ada"})).into())];
        match plan(None, &ops, 1000, None).unwrap() {
            Plan::Write { data, fresh_id, .. } => {
                assert!(fresh_id);
                assert_eq!(data.ascii_json().as_ref(), br#"{"user":"ada"}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn regenerate_keeps_data_under_a_fresh_id() {
        let current = data(json!({"cart": [1]}));
        let ops = [
            SessionOp::Regenerate,
            SessionOp::Patch(obj(json!({"user": "ada"})).into()),
        ];
        match plan(Some(&current), &ops, 1000, None).unwrap() {
            Plan::Write { data, fresh_id, .. } => {
                assert!(fresh_id);
                assert_eq!(
                    Value::Object(data.map().clone()),
                    json!({"cart": [1], "user": "ada"})
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn destroy_deletes_and_a_later_patch_starts_afresh() {
        let current = data(json!({"user": "ada"}));
        assert!(matches!(
            plan(Some(&current), &[SessionOp::Destroy], 1000, None),
            Ok(Plan::Delete)
        ));
        assert!(matches!(
            plan(None, &[SessionOp::Destroy], 1000, None),
            Ok(Plan::Delete)
        ));
        assert!(matches!(
            plan(Some(&current), &[SessionOp::DestroyAll], 1000, None),
            Ok(Plan::Delete)
        ));
        let ops = [
            SessionOp::Destroy,
            SessionOp::Patch(obj(json!({"flash": "bye"})).into()),
        ];
        match plan(Some(&current), &ops, 1000, None).unwrap() {
            Plan::Write { data, fresh_id, .. } => {
                assert!(fresh_id);
                assert_eq!(Value::Object(data.map().clone()), json!({"flash": "bye"}));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn regenerate_without_a_session_does_nothing() {
        assert!(matches!(
            plan(None, &[SessionOp::Regenerate], 1000, None),
            Ok(Plan::Keep)
        ));
    }

    #[test]
    fn oversized_result_is_refused() {
        let ops = [SessionOp::Patch(
            obj(json!({"big": "x".repeat(100)})).into(),
        )];
        assert!(matches!(
            plan(None, &ops, 50, None),
            Err(SetSessionError::SessionTooLarge(_, 50))
        ));
    }

    /// Whether `ops` on `current` move the session when rotation follows
    /// the key `user`; the same whether the current map is built or the
    /// data is its rendering alone (as the memory store keeps it).
    fn moves(current: Value, ops: &[SessionOp]) -> bool {
        let built = data(current);
        let text_only = SessionData::from_ascii_json(built.ascii_json().clone());
        let [on_map, on_text] = [built, text_only].map(|current| {
            match plan(Some(&current), ops, 1000, Some("user")).unwrap() {
                Plan::Write { fresh_id, data, .. } => (fresh_id, data.ascii_json().clone()),
                other => panic!("expected a write, got {other:?}"),
            }
        });
        assert_eq!(on_map, on_text, "the built map and the text disagree");
        on_map.0
    }

    #[test]
    fn a_login_moves_the_session_without_regenerate() {
        let login = [SessionOp::Patch(obj(json!({"user": {"id": 7}})).into())];
        assert!(moves(json!({"cart": 1}), &login), "absent to present");
        assert!(moves(json!({"user": null}), &login), "null to present");
        assert!(moves(json!({"user": {"id": 6}}), &login), "another user");
        assert!(!moves(json!({"user": {"id": 7}}), &login), "the same user");
        let other = [SessionOp::Patch(obj(json!({"cart": 2})).into())];
        assert!(!moves(json!({"user": {"id": 7}}), &other), "other keys");
        let logout = [SessionOp::Patch(obj(json!({"user": null})).into())];
        assert!(!moves(json!({"user": {"id": 7}}), &logout), "a logout");
        // Off: only `regenerate` moves it.
        match plan(Some(&data(json!({}))), &login, 1000, None).unwrap() {
            Plan::Write { fresh_id, .. } => assert!(!fresh_id),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn remember_parses_a_duration_and_writes_only_with_a_session() {
        assert_eq!(
            parse(b"remember=30d", 100),
            Ok(SessionOp::Remember(Duration::from_secs(30 * 86_400)))
        );
        for bad in [&b"remember=0s"[..], b"remember=forever", b"remember="] {
            assert!(matches!(
                parse(bad, 100),
                Err(SetSessionError::BadRemember(_))
            ));
        }
        assert_eq!(
            parse(br#"{"__cloakroom":{"absolute":1}}"#, 100),
            Err(SetSessionError::ReservedKey)
        );
        let remember = [SessionOp::Remember(Duration::from_secs(60))];
        assert!(matches!(plan(None, &remember, 1000, None), Ok(Plan::Keep)));
        match plan(Some(&data(json!({"user": 1}))), &remember, 1000, None).unwrap() {
            Plan::Write {
                fresh_id, remember, ..
            } => {
                assert!(!fresh_id);
                assert_eq!(remember, Some(Duration::from_secs(60)));
            }
            other => panic!("{other:?}"),
        }
    }

    /// What a plan comes to, as text to compare.
    fn outcome(planned: Result<Plan, SetSessionError>) -> String {
        match planned {
            Ok(Plan::Write {
                data,
                fresh_id,
                remember,
            }) => format!(
                "write {} fresh={fresh_id} remember={remember:?}",
                String::from_utf8_lossy(data.ascii_json())
            ),
            Ok(Plan::Keep) => "keep".into(),
            Ok(Plan::Delete) => "delete".into(),
            Err(error) => error.to_string(),
        }
    }

    fn random_patch(rng: &mut impl rand::Rng) -> Map<String, Value> {
        const KEYS: [&str; 7] = ["user", "name", "0", "a/b", "n", "\u{e9}", "q\"k"];
        (0..rng.random_range(1..4))
            .map(|_| {
                let key = KEYS[rng.random_range(0..KEYS.len())].to_owned();
                let value = match rng.random_range(0..10) {
                    0..3 => Value::Null,
                    3 => super::super::test_json::random_value(rng, 1),
                    _ => super::super::test_json::random_value(rng, 0),
                };
                (key, value)
            })
            .collect()
    }

    /// A random session, with its map built and as its text alone.
    fn random_session(rng: &mut impl rand::Rng) -> (SessionData, SessionData) {
        let with_map = SessionData::new(super::super::test_json::random_object(rng, 2));
        let text_only = SessionData::from_ascii_json(with_map.ascii_json().clone());
        (with_map, text_only)
    }

    #[test]
    fn a_write_planned_on_the_text_is_the_one_planned_on_the_map() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut on_text = 0;
        for _ in 0..3000 {
            let (with_map, text_only) = random_session(&mut rng);
            let ops: Vec<SessionOp> = (0..rng.random_range(1..4))
                .map(|_| match rng.random_range(0..10) {
                    0 => SessionOp::Remember(Duration::from_secs(60)),
                    1 => SessionOp::Regenerate,
                    _ => SessionOp::Patch(random_patch(&mut rng).into()),
                })
                .collect();
            let max_bytes = if rng.random_range(0..10) == 0 {
                40
            } else {
                1 << 16
            };
            for rotate_on in [None, Some("user")] {
                assert_eq!(
                    outcome(plan(Some(&text_only), &ops, max_bytes, rotate_on)),
                    outcome(plan(Some(&with_map), &ops, max_bytes, rotate_on)),
                    "{ops:?} on {:?} (rotate on {rotate_on:?})",
                    String::from_utf8_lossy(with_map.ascii_json())
                );
            }
            on_text +=
                usize::from(plan_on_text(text_only.ascii_json(), &ops, max_bytes, None).is_some());
        }
        // Most writes took the text path: the comparison covers it.
        assert!(on_text > 1500, "{on_text} of 3000 planned on the text");
    }

    #[test]
    fn a_patch_kept_as_written_plans_as_its_map_does() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut plain = 0;
        for _ in 0..3000 {
            let (with_map, text_only) = random_session(&mut rng);
            let patch = random_patch(&mut rng);
            let written = super::super::ascii_json::object_to_ascii(&patch);
            let parsed = parse(&written, 1 << 16).expect("a rendered patch parses");
            plain += usize::from(Patch::plain(&written).is_some());
            let as_written = [parsed];
            let as_map = [SessionOp::Patch(patch.into())];
            assert_eq!(as_written, as_map);
            for current in [None, Some(&text_only), Some(&with_map)] {
                for rotate_on in [None, Some("user")] {
                    assert_eq!(
                        outcome(plan(current, &as_written, 1 << 16, rotate_on)),
                        outcome(plan(current, &as_map, 1 << 16, rotate_on)),
                        "{} on {:?} (rotate on {rotate_on:?})",
                        String::from_utf8_lossy(&written),
                        String::from_utf8_lossy(with_map.ascii_json())
                    );
                }
            }
        }
        // Most patches were kept as written: the comparison covers them.
        assert!(plain > 1000, "{plain} of 3000 kept as written");
    }
}
