//! The conformance suite every store must pass: the semantics of the store
//! verbs, written once. A store's test module calls `suite!(constructor)`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Commit, Committed, Loaded, SessionStore, StoreError};
use crate::domain::session::lifetime::Lifetimes;
use crate::domain::session::ops::SessionOp;
use crate::domain::session::SessionId;

const TTL: Duration = Duration::from_secs(60);
const MAX: usize = 64 * 1024;

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn patch(value: Value) -> SessionOp {
    SessionOp::Patch(obj(value).into())
}

async fn commit<S: SessionStore>(
    store: &S,
    current: Option<&SessionId>,
    ops: &[SessionOp],
) -> Result<Committed, StoreError> {
    let commit = Commit {
        current,
        ops,
        fresh_id: None,
        ttl: TTL,
        max_bytes: MAX,
        rotate_on: None,
        lifetimes: Default::default(),
    };
    store.commit(commit).await
}

/// Creates a session holding `data` and returns its id.
pub async fn create<S: SessionStore>(store: &S, data: Value, ttl: Duration) -> SessionId {
    let ops = [SessionOp::Patch(obj(data).into())];
    let commit = Commit {
        current: None,
        ops: &ops,
        fresh_id: None,
        ttl,
        max_bytes: MAX,
        rotate_on: None,
        lifetimes: Default::default(),
    };
    match store.commit(commit).await.unwrap() {
        Committed::Saved { id, .. } => id,
        other => panic!("create gave {other:?}"),
    }
}

async fn data_of<S: SessionStore>(store: &S, id: &SessionId) -> Option<Value> {
    let data = store.load(id, true).await.unwrap().live()?;
    Some(Value::Object(data.map().clone()))
}

pub async fn unknown_id_loads_nothing<S: SessionStore>(store: S) {
    assert!(store
        .load(&SessionId::generate(), true)
        .await
        .unwrap()
        .live()
        .is_none());
}

pub async fn patch_without_session_creates_one_under_the_fresh_id<S: SessionStore>(store: S) {
    let ops = [patch(json!({"user": {"name": "ada"}}))];
    let fresh = SessionId::generate();
    let commit = Commit {
        current: None,
        ops: &ops,
        fresh_id: Some(fresh.clone()),
        ttl: TTL,
        max_bytes: MAX,
        rotate_on: None,
        lifetimes: Default::default(),
    };
    match store.commit(commit).await.unwrap() {
        Committed::Saved { id, .. } => assert_eq!(id, fresh),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        data_of(&store, &fresh).await,
        Some(json!({"user": {"name": "ada"}}))
    );
}

pub async fn patch_merges_into_the_existing_session<S: SessionStore>(store: S) {
    let id = create(&store, json!({"a": 1, "b": {"c": 2}}), TTL).await;
    let saved = commit(
        &store,
        Some(&id),
        &[patch(json!({"b": {"d": 3}, "a": null}))],
    )
    .await;
    assert!(matches!(saved, Ok(Committed::Saved { id: ref same, .. }) if *same == id));
    assert_eq!(
        data_of(&store, &id).await,
        Some(json!({"b": {"c": 2, "d": 3}}))
    );
}

pub async fn regenerate_moves_the_data_and_kills_the_old_id<S: SessionStore>(store: S) {
    let old = create(&store, json!({"cart": [1, 2]}), TTL).await;
    let ops = [SessionOp::Regenerate, patch(json!({"user": "ada"}))];
    let Committed::Saved { id: new, .. } = commit(&store, Some(&old), &ops).await.unwrap() else {
        panic!("regenerate did not save");
    };
    assert_ne!(new, old);
    assert_eq!(data_of(&store, &old).await, None);
    assert_eq!(
        data_of(&store, &new).await,
        Some(json!({"cart": [1, 2], "user": "ada"}))
    );
}

pub async fn destroy_deletes_the_session<S: SessionStore>(store: S) {
    let id = create(&store, json!({"user": "ada"}), TTL).await;
    let result = commit(&store, Some(&id), &[SessionOp::Destroy])
        .await
        .unwrap();
    assert!(matches!(result, Committed::Destroyed));
    assert_eq!(data_of(&store, &id).await, None);
}

pub async fn patch_never_recreates_a_session_ended_meanwhile<S: SessionStore>(store: S) {
    let id = create(&store, json!({"user": "ada"}), TTL).await;
    commit(&store, Some(&id), &[SessionOp::Destroy])
        .await
        .unwrap();
    let late = commit(&store, Some(&id), &[patch(json!({"visits": 2}))])
        .await
        .unwrap();
    assert!(matches!(late, Committed::Vanished), "{late:?}");
    assert_eq!(data_of(&store, &id).await, None);
}

pub async fn rejected_operations_leave_the_session_unchanged<S: SessionStore>(store: S) {
    let id = create(&store, json!({"user": "ada"}), TTL).await;
    let ops = [
        patch(json!({"user": "eve"})),
        patch(json!({"big": "x".repeat(MAX)})),
    ];
    let result = commit(&store, Some(&id), &ops).await;
    assert!(matches!(result, Err(StoreError::Rejected(_))), "{result:?}");
    assert_eq!(data_of(&store, &id).await, Some(json!({"user": "ada"})));
}

pub async fn sessions_expire_at_their_ttl<S: SessionStore>(store: S) {
    let id = create(&store, json!({"user": "ada"}), Duration::from_millis(300)).await;
    assert!(data_of(&store, &id).await.is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(data_of(&store, &id).await, None);
}

pub async fn touch_extends_life_without_changing_data<S: SessionStore>(store: S) {
    let id = create(&store, json!({"user": "ada"}), Duration::from_millis(400)).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.touch(&id, Duration::from_secs(5)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(data_of(&store, &id).await, Some(json!({"user": "ada"})));
    assert!(!store.touch(&SessionId::generate(), TTL).await.unwrap());
}

/// A session created under `lifetimes`; its id.
async fn create_with<S: SessionStore>(
    store: &S,
    lifetimes: Lifetimes,
    ops: &[SessionOp],
) -> SessionId {
    let commit = Commit {
        current: None,
        ops,
        fresh_id: None,
        ttl: TTL,
        max_bytes: MAX,
        rotate_on: None,
        lifetimes,
    };
    match store.commit(commit).await.unwrap() {
        Committed::Saved { id, .. } => id,
        other => panic!("create gave {other:?}"),
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub async fn an_idle_session_dies_and_touching_keeps_it_alive<S: SessionStore>(store: S) {
    let lifetimes = Lifetimes {
        idle: Some(ms(400)),
        absolute: None,
    };
    let ops = [patch(json!({"user": "ada"}))];
    let idle = create_with(&store, lifetimes, &ops).await;
    let busy = create_with(&store, lifetimes, &ops).await;
    let Loaded::Live(stored) = store.load(&busy, true).await.unwrap() else {
        panic!("a new session is live");
    };
    assert_eq!(stored.times.idle, Some(ms(400)));
    let left = stored.times.expires_in.unwrap();
    assert!(
        left <= ms(400) && left > ms(200),
        "the store expiry follows the idle timeout: {left:?}"
    );
    for _ in 0..4 {
        tokio::time::sleep(ms(250)).await;
        assert!(store.touch(&busy, ms(400)).await.unwrap());
    }
    assert!(
        data_of(&store, &busy).await.is_some(),
        "kept alive by touches"
    );
    assert_eq!(
        data_of(&store, &idle).await,
        None,
        "unused for longer than the idle timeout"
    );
}

pub async fn a_busy_session_dies_at_its_absolute_deadline<S: SessionStore>(store: S) {
    let lifetimes = Lifetimes {
        idle: Some(ms(5_000)),
        absolute: Some(ms(600)),
    };
    let id = create_with(&store, lifetimes, &[patch(json!({"user": "ada"}))]).await;
    let Loaded::Live(stored) = store.load(&id, true).await.unwrap() else {
        panic!("a new session is live");
    };
    assert!(stored.times.absolute_in.unwrap() <= ms(600));
    assert!(
        stored.times.expires_in.unwrap() <= ms(600),
        "the nearest deadline"
    );
    // Touched with more than what is left: the absolute deadline holds.
    for _ in 0..3 {
        tokio::time::sleep(ms(150)).await;
        assert!(store.touch(&id, ms(5_000)).await.unwrap());
        commit(&store, Some(&id), &[patch(json!({"seen": true}))])
            .await
            .unwrap();
    }
    tokio::time::sleep(ms(300)).await;
    assert!(
        matches!(
            store.load(&id, true).await.unwrap(),
            Loaded::Expired | Loaded::Missing
        ),
        "past its absolute deadline"
    );
    let after = commit(&store, Some(&id), &[patch(json!({"again": 1}))])
        .await
        .unwrap();
    assert!(
        matches!(after, Committed::Vanished),
        "never brought back: {after:?}"
    );
    assert_eq!(data_of(&store, &id).await, None);
}

pub async fn remember_me_lengthens_one_session<S: SessionStore>(store: S) {
    let lifetimes = Lifetimes {
        idle: Some(ms(300)),
        absolute: Some(ms(400)),
    };
    let ops = [
        patch(json!({"user": "ada"})),
        SessionOp::Remember(ms(5_000)),
    ];
    let remembered = create_with(&store, lifetimes, &ops).await;
    let plain = create_with(&store, lifetimes, &ops[..1]).await;
    tokio::time::sleep(ms(600)).await;
    assert_eq!(data_of(&store, &plain).await, None);
    let Loaded::Live(stored) = store.load(&remembered, true).await.unwrap() else {
        panic!("the remembered session outlives the configured timeouts");
    };
    assert_eq!(stored.times.remember, Some(ms(5_000)));
    assert_eq!(stored.times.idle, Some(ms(5_000)));
}

pub async fn concurrent_patches_on_distinct_keys_all_survive<S: SessionStore>(store: S) {
    let store = Arc::new(store);
    let id = create(&*store, json!({}), TTL).await;
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let ops = [patch(json!({ format!("k{n}"): n }))];
                commit(&*store, Some(&id), &ops).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Committed::Saved { .. }));
    }
    let data = data_of(&*store, &id).await.unwrap();
    for n in 0..100 {
        assert_eq!(data[format!("k{n}")], json!(n), "k{n} lost");
    }
}

/// Expands to one `#[tokio::test]` per conformance check, each on a new
/// store: `suite!(paused make)` with a plain constructor of a store whose
/// expiry follows tokio's clock (the checks of expiry then run on paused
/// time, the others on two threads), or `suite!(async make)` with an async
/// one returning `Option<store>`, where `None` means the backend is not
/// available here (the constructor says so loudly); its expiry checks
/// sleep for real.
macro_rules! suite {
    (async $make:expr) => {
        $crate::store::conformance::suite!(@all { $make().await }, (flavor = "multi_thread", worker_threads = 2));
    };
    (paused $make:expr) => {
        $crate::store::conformance::suite!(@all { Some($make()) }, (start_paused = true));
    };
    (@all $make:block, $timed:tt) => {
        mod conformance_suite {
            #[allow(unused_imports)]
            use super::*;
            $crate::store::conformance::suite!(@tests $make, (flavor = "multi_thread", worker_threads = 2);
                unknown_id_loads_nothing,
                patch_without_session_creates_one_under_the_fresh_id,
                patch_merges_into_the_existing_session,
                regenerate_moves_the_data_and_kills_the_old_id,
                destroy_deletes_the_session,
                patch_never_recreates_a_session_ended_meanwhile,
                rejected_operations_leave_the_session_unchanged,
                concurrent_patches_on_distinct_keys_all_survive,
            );
            $crate::store::conformance::suite!(@tests $make, $timed;
                sessions_expire_at_their_ttl,
                touch_extends_life_without_changing_data,
                an_idle_session_dies_and_touching_keeps_it_alive,
                a_busy_session_dies_at_its_absolute_deadline,
                remember_me_lengthens_one_session,
            );
        }
    };
    (@tests $make:block, $flavor:tt; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test $flavor]
            async fn $name() {
                let Some(store) = ($make) else { return };
                $crate::store::conformance::$name(store).await;
            }
        )*
    };
}
pub(crate) use suite;
