//! Concurrent writers: two instances, the remembered record, a burst
//! around a regenerate.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::store::redis::commands::Cas;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_from_two_instances_all_survive() {
    let test = "concurrent_patches_from_two_instances_all_survive";
    if let Some(h) = harness_with(test, "").await {
        two_instances_patch_at_once(h).await;
    }
}

/// The same where both instances write with the server's own
/// compare-and-set, one of them tracking (its writes in a transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_from_two_instances_all_survive_the_native_compare_and_set() {
    let test = "concurrent_patches_from_two_instances_all_survive_the_native_compare_and_set";
    if let Some(h) = valkey_harness(test, "").await {
        two_instances_patch_at_once(tracking(h).await).await;
    }
}

async fn two_instances_patch_at_once(h: Harness) {
    // A second store on the same Redis: its own connection and locks, as
    // another Cloakroom instance would have.
    let url = url_of(&h);
    let other = RedisStore::connect(&redis_config(&format!("url = \"{url}\""), ""))
        .await
        .unwrap();
    let id = conformance::create(&h.store, json!({}), Duration::from_secs(60)).await;
    let stores = [h.store.clone(), other];
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let (store, id) = (stores[n % 2].clone(), id.clone());
            tokio::spawn(async move {
                let ops = [patch(json!({ format!("k{n}"): n }))];
                let commit = commit_of(&id, &ops);
                store.commit(commit).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Committed::Saved { .. }));
    }
    let data = h.store.load(&id, true).await.unwrap().live().unwrap();
    for n in 0..100 {
        assert_eq!(data.map()[&format!("k{n}")], json!(n), "k{n} lost");
    }
}

/// A commit of `ops` on the session `id` (a minute's TTL, no limits).
fn commit_of<'a>(id: &'a SessionId, ops: &'a [SessionOp]) -> Commit<'a> {
    Commit {
        current: Some(id),
        ops,
        fresh_id: None,
        ttl: Duration::from_secs(60),
        max_bytes: 65536,
        rotate_on: None,
        lifetimes: Default::default(),
    }
}

/// A commit on `store` moving `id` to a fresh id.
async fn regenerate_on(store: &RedisStore, id: &SessionId) -> Committed {
    let regenerate = [SessionOp::Regenerate];
    let commit = commit_of(id, &regenerate);
    store.commit(commit).await.unwrap()
}

/// Regenerates `id` on `store` and checks the move: the fresh id holds
/// `expected`, the old one nothing.
async fn assert_moved_by_regenerate(
    store: &RedisStore,
    id: &SessionId,
    expected: serde_json::Value,
) {
    let Committed::Saved { id: fresh, .. } = regenerate_on(store, id).await else {
        panic!("the regenerate saved the session");
    };
    assert_ne!(&fresh, id);
    let data = store.load(&fresh, true).await.unwrap().live().unwrap();
    assert_eq!(serde_json::Value::Object(data.map().clone()), expected);
    assert!(store.load(id, true).await.unwrap().live().is_none());
}

/// A commit on `store` patching `value` into `id`.
async fn patch_on(store: &RedisStore, id: &SessionId, value: serde_json::Value) -> Committed {
    patch_with(store, id, value, Default::default()).await
}

#[tokio::test]
async fn what_this_instance_wrote_last_never_hides_another_instances_write() {
    let test = "what_this_instance_wrote_last_never_hides_another_instances_write";
    if let Some(h) = harness_with(test, "").await {
        remembered_never_hides(h).await;
    }
}

#[tokio::test]
async fn what_this_instance_wrote_last_never_hides_another_instances_write_natively() {
    let test = "what_this_instance_wrote_last_never_hides_another_instances_write_natively";
    if let Some(h) = valkey_harness(test, "").await {
        remembered_never_hides(tracking(h).await).await;
    }
}

async fn remembered_never_hides(h: Harness) {
    let url = url_of(&h);
    let other = RedisStore::connect(&redis_config(&format!("url = \"{url}\""), ""))
        .await
        .unwrap();
    let id = conformance::create(&h.store, json!({}), Duration::from_secs(60)).await;
    // `h.store` remembers what it wrote; `other` then changes the record.
    assert!(matches!(
        patch_on(&h.store, &id, json!({"a": 1})).await,
        Committed::Saved { .. }
    ));
    assert!(matches!(
        patch_on(&other, &id, json!({"b": 2})).await,
        Committed::Saved { .. }
    ));
    assert!(matches!(
        patch_on(&h.store, &id, json!({"c": 3})).await,
        Committed::Saved { .. }
    ));
    let data = h.store.load(&id, true).await.unwrap().live().unwrap();
    assert_eq!(
        serde_json::Value::Object(data.map().clone()),
        json!({"a": 1, "b": 2, "c": 3})
    );
    // Destroyed elsewhere: the remembered copy does not bring it back.
    let destroy = [SessionOp::Destroy];
    let commit = commit_of(&id, &destroy);
    assert!(matches!(
        other.commit(commit).await.unwrap(),
        Committed::Destroyed
    ));
    assert!(matches!(
        patch_on(&h.store, &id, json!({"d": 4})).await,
        Committed::Vanished
    ));
    assert!(h.store.load(&id, true).await.unwrap().live().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_around_a_regenerate_keeps_exactly_the_writes_reported_saved() {
    let test = "a_burst_around_a_regenerate_keeps_exactly_the_writes_reported_saved";
    let Some(h) = harness_with(test, "").await else {
        return;
    };
    let old = conformance::create(&h.store, json!({}), Duration::from_secs(60)).await;
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let (store, old) = (h.store.clone(), old.clone());
            tokio::spawn(async move {
                let ops = if n == 20 {
                    vec![SessionOp::Regenerate]
                } else {
                    vec![patch(json!({ format!("k{n}"): n }))]
                };
                let commit = commit_of(&old, &ops);
                (n, store.commit(commit).await.unwrap())
            })
        })
        .collect();
    let mut moved_to = None;
    let mut saved_before_move = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (20, Committed::Saved { id, .. }) => moved_to = Some(id),
            (n, Committed::Saved { id, .. }) if id == old => saved_before_move.push(n),
            (_, Committed::Vanished) => {}
            (n, other) => panic!("commit {n}: {other:?}"),
        }
    }
    let new = moved_to.expect("the regenerate saved the session under a new id");
    assert_ne!(new, old);
    assert!(
        h.store.load(&old, true).await.unwrap().live().is_none(),
        "the old id is gone"
    );
    let data = h.store.load(&new, true).await.unwrap().live().unwrap();
    let mut kept: Vec<usize> = data.map().keys().map(|k| k[1..].parse().unwrap()).collect();
    kept.sort_unstable();
    saved_before_move.sort_unstable();
    assert_eq!(
        kept, saved_before_move,
        "exactly the writes reported saved, no other"
    );
}

/// After a write with the server's own compare-and-set on the tracked
/// connection (which caches what it wrote), a change by another instance
/// still reaches this one: the transaction's read started the key's
/// tracking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_elsewhere_after_a_native_write_drops_the_cached_record() {
    let test = "a_change_elsewhere_after_a_native_write_drops_the_cached_record";
    let Some(h) = valkey_harness(test, "").await else {
        return;
    };
    let h = tracking(h).await;
    let url = url_of(&h);
    let other = RedisStore::connect(&redis_config(&format!("url = \"{url}\""), ""))
        .await
        .unwrap();
    let id = conformance::create(&h.store, json!({}), Duration::from_secs(60)).await;
    for n in 0..20 {
        assert!(matches!(
            patch_on(&h.store, &id, json!({ "mine": n })).await,
            Committed::Saved { .. }
        ));
        let hits = h.store.cache_stats().unwrap().hits;
        let data = h.store.load(&id, true).await.unwrap().live().unwrap();
        assert_eq!(data.map()["mine"], json!(n));
        assert!(
            h.store.cache_stats().unwrap().hits > hits,
            "the write was cached"
        );
        assert!(matches!(
            patch_on(&other, &id, json!({ "theirs": n })).await,
            Committed::Saved { .. }
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let data = h.store.load(&id, true).await.unwrap().live().unwrap();
            if data.map().get("theirs") == Some(&json!(n)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {n}: the other instance's change never reached the cache"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A commit is written inline by the request that made it when no other
/// writer runs for its stripe; commits on the same session that arrive
/// meanwhile queue behind it. If that request goes away mid-write, a
/// writer task takes the queue over: nothing waits forever, and the write
/// already sent is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_goes_away_mid_write_hands_the_writes_behind_it_on() {
    let test = "a_request_that_goes_away_mid_write_hands_the_writes_behind_it_on";
    let Some(h) = own_harness(test).await else {
        return;
    };
    let server = h.own_server();
    // Commands wait out the pause below instead of timing out.
    let config = format!("url = \"{}\"\ncommand_timeout = \"10s\"", url_of(&h));
    let store = RedisStore::connect(&redis_config(&config, ""))
        .await
        .unwrap();
    let id = conformance::create(&store, json!({}), Duration::from_secs(60)).await;
    // One write first, so that Redis has the script (a script Redis lacks
    // is loaded and sent again by the request, which is gone below).
    patch_on(&store, &id, json!({"z": 0})).await;
    // Redis holds every write for a while: the first commit's
    // compare-and-set stays on its way.
    server
        .command(&["CLIENT", "PAUSE", "2000", "WRITE"])
        .unwrap();
    let (writer, first_id) = (store.clone(), id.clone());
    let first = tokio::spawn(async move { patch_on(&writer, &first_id, json!({"a": 1})).await });
    // Until Redis holds the first commit's compare-and-set.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !server
        .command(&["INFO", "clients"])
        .unwrap()
        .contains("blocked_clients:1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first write never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (writer, second_id) = (store.clone(), id.clone());
    let second = tokio::spawn(async move { patch_on(&writer, &second_id, json!({"b": 2})).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "Redis is paused"
    );
    first.abort();
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the queued commit is written once its writer went away")
        .unwrap();
    assert!(matches!(second, Committed::Saved { .. }), "{second:?}");
    let data = store.load(&id, true).await.unwrap().live().unwrap();
    assert_eq!(
        serde_json::Value::Object(data.map().clone()),
        json!({"z": 0, "a": 1, "b": 2}),
        "the write sent before its request went away happened too"
    );
}

/// Redis forgets its scripts when it restarts without persistence or when
/// an operator runs `SCRIPT FLUSH`: the next write and the next
/// regenerate load theirs again, on the tracked connection too.
#[tokio::test]
async fn writes_go_on_after_redis_forgot_the_scripts() {
    let test = "writes_go_on_after_redis_forgot_the_scripts";
    let Some(h) = own_tracked_harness(test).await else {
        return;
    };
    let server = h.own_server();
    let id = conformance::create(&h.store, json!({}), Duration::from_secs(60)).await;
    assert!(matches!(
        patch_on(&h.store, &id, json!({"a": 1})).await,
        Committed::Saved { .. }
    ));
    server.command(&["SCRIPT", "FLUSH"]).unwrap();
    assert!(matches!(
        patch_on(&h.store, &id, json!({"b": 2})).await,
        Committed::Saved { .. }
    ));
    server.command(&["SCRIPT", "FLUSH"]).unwrap();
    assert_moved_by_regenerate(&h.store, &id, json!({"a": 1, "b": 2})).await;
}

/// A login sent on a worker's tracked connection after that connection
/// broke, but before its task noticed, is made on the plain connection
/// instead of failing: a new session, and the move of an existing one to
/// a fresh id.
#[tokio::test]
async fn a_login_on_a_tracked_connection_that_just_broke_is_made_on_the_plain_one() {
    let test = "a_login_on_a_tracked_connection_that_just_broke_is_made_on_the_plain_one";
    let Some(h) = own_tracked_harness(test).await else {
        return;
    };
    let server = h.own_server();
    // Killed with no await between the kill and the login: the store
    // still takes the connection for live, as a worker busy with requests
    // would.
    let killed = kill_tracked_connection(server);
    assert!(h.store.cache_stats().is_some_and(|stats| stats.tracking));
    let id = conformance::create(&h.store, json!({"user": "ann"}), Duration::from_secs(60)).await;
    let data = h.store.load(&id, true).await.unwrap().live().unwrap();
    assert_eq!(
        serde_json::Value::Object(data.map().clone()),
        json!({"user": "ann"})
    );

    // The same for a move, once tracking is back and the session cached.
    wait_for_tracking_again(&h, server, &killed).await;
    h.store.load(&id, true).await.unwrap().live().unwrap();
    kill_tracked_connection(server);
    assert_moved_by_regenerate(&h.store, &id, json!({"user": "ann"})).await;
}

/// A move sent again after a broken connection recognises a first attempt
/// that landed (the old record gone, the new one holding exactly what the
/// move writes) as done; anything else is what the script says.
#[tokio::test]
async fn a_move_that_already_landed_is_its_own() {
    let test = "a_move_that_already_landed_is_its_own";
    let Some(h) = harness_with(test, "").await else {
        return;
    };
    let (old, fresh) = (
        h.store.key(&SessionId::generate()),
        h.store.key(&SessionId::generate()),
    );
    let keys = [old.as_str(), fresh.as_str()];
    let (before, after) = (&b"{\"a\":1}"[..], &b"{\"a\":1,\"b\":2}"[..]);
    // Landed: the old key gone, the new one holding what is written.
    h.store.set_new(&fresh, after, 60_000).await.unwrap();
    let outcome = h.store.move_again(&keys, (before, after, 60_000)).await;
    assert!(matches!(outcome, Ok(Cas::Done)));
    // Not landed, and the old record gone meanwhile: vanished.
    let fresh = h.store.key(&SessionId::generate());
    let keys = [old.as_str(), fresh.as_str()];
    let outcome = h.store.move_again(&keys, (before, after, 60_000)).await;
    assert!(matches!(outcome, Ok(Cas::Changed(None))));
    // Not landed: the script moves it now.
    h.store.set_new(&old, before, 60_000).await.unwrap();
    let outcome = h.store.move_again(&keys, (before, after, 60_000)).await;
    assert!(matches!(outcome, Ok(Cas::Done)));
    assert_eq!(
        raw_get(&h.store, &fresh).await.as_deref(),
        Some("{\"a\":1,\"b\":2}")
    );
    assert_eq!(raw_get(&h.store, &old).await, None);
}

/// The id of the store's tracked connection (the test's only one) in
/// `CLIENT LIST`.
fn tracked_connection(server: &RedisServer) -> Option<String> {
    let clients = server.command(&["CLIENT", "LIST"]).unwrap();
    let name = format!("name={}", super::super::tracking::CONNECTION_NAME);
    clients
        .lines()
        .find(|line| line.split(' ').any(|field| field == name))
        .and_then(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .map(str::to_owned)
}

/// Kills the store's tracked connection; returns its id.
fn kill_tracked_connection(server: &RedisServer) -> String {
    let tracked = tracked_connection(server).expect("the tracked connection is in CLIENT LIST");
    server.command(&["CLIENT", "KILL", "ID", &tracked]).unwrap();
    tracked
}

/// Waits until the store tracks again on a connection other than
/// `killed` (it names a new one only after dropping the old one's
/// state, and turns tracking on once Redis confirmed it).
async fn wait_for_tracking_again(h: &Harness, server: &RedisServer, killed: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let replaced = tracked_connection(server).is_some_and(|id| id != killed);
        if replaced && h.store.cache_stats().is_some_and(|stats| stats.tracking) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tracking never came back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A new session's `SET NX` finding its key taken is an error, unless the
/// key holds exactly what it writes: an earlier attempt of the same write
/// (on a connection that broke before answering) landed.
#[tokio::test]
async fn a_new_sessions_write_that_already_landed_is_its_own() {
    let test = "a_new_sessions_write_that_already_landed_is_its_own";
    let Some(h) = harness_with(test, "").await else {
        return;
    };
    let key = h.store.key(&SessionId::generate());
    h.store.set_new(&key, b"{\"a\":1}", 60_000).await.unwrap();
    h.store.set_new(&key, b"{\"a\":1}", 60_000).await.unwrap();
    assert!(matches!(
        h.store.set_new(&key, b"{\"a\":2}", 60_000).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(raw_get(&h.store, &key).await.as_deref(), Some("{\"a\":1}"));
}
