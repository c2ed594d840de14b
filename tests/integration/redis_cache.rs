//! The Redis store's client-side cache, through the proxy: reads are served
//! from it, a write is read back from it, a change made anywhere else
//! (another instance, a plain Redis command) reaches every instance once
//! Redis has sent its invalidation, and a lost tracking connection empties
//! the cache until tracking is back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::redis::{redis_client, redis_store, some_redis};
use crate::support::*;

/// A counter or gauge of `/metrics`: every one named here is registered
/// for a Redis store, so one missing is a failure.
async fn metric(ops: SocketAddr, name: &str) -> f64 {
    let text = metrics_text(ops).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A proxy on the Redis store at `url` with an operations listener, once
/// its cache is tracking.
async fn cached_proxy(upstream: &Upstream, url: &str) -> (Proxy, SocketAddr) {
    let (proxy, ops) = Proxy::start_with_ops(upstream, &redis_store(url, "")).await;
    tracking_is(ops, true).await;
    (proxy, ops)
}

/// Waits until `/metrics` says tracking is `on`.
async fn tracking_is(ops: SocketAddr, on: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while (metric(ops, "cloakroom_redis_cache_tracking").await == 1.0) != on {
        assert!(Instant::now() < deadline, "tracking never became {on}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Visits `proxy` until the session the upstream sees satisfies `fresh`;
/// how long that took, and how many answers were stale before.
async fn until_seen(
    proxy: &Proxy,
    upstream: &Upstream,
    cookie: &str,
    fresh: impl Fn(Option<Value>) -> bool,
) -> (Duration, usize) {
    let start = Instant::now();
    let mut stale = 0;
    loop {
        visit(proxy, cookie).await;
        if fresh(upstream.last().session()) {
            return (start.elapsed(), stale);
        }
        stale += 1;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "a changed session was still served from the cache after 3 s"
        );
    }
}

/// The Redis key of the session in a `sid=s%3A<id>.<sig>` pair.
fn key_of(pair: &str) -> String {
    let value = pair.trim_start_matches("sid=s%3A");
    format!("sess:{}", value.split('.').next().unwrap())
}

/// Rewrites the session's user name directly in Redis, keeping its TTL.
async fn rename_in_redis(url: &str, pair: &str, from: &str, to: &str) {
    let mut redis = redis_client(url).await;
    let key = key_of(pair);
    let record: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let renamed = record.replace(&format!("\"{from}\""), &format!("\"{to}\""));
    assert_ne!(record, renamed);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(renamed)
        .arg("KEEPTTL")
        .query_async(&mut redis)
        .await
        .unwrap();
}

fn user_is(name: &'static str) -> impl Fn(Option<Value>) -> bool {
    move |session| session.is_some_and(|s| s["user"]["name"] == name)
}

#[tokio::test]
async fn reads_are_cached_and_changes_elsewhere_reach_every_instance() {
    let test = "redis_cache::reads_are_cached_and_changes_elsewhere_reach_every_instance";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (first, ops) = cached_proxy(&upstream, &url).await;
    let second = Proxy::start(&upstream, &redis_store(&url, "")).await;
    let cookie = sid_pair(&log_in(&bare(), &first, "ada").await);

    // Read three times: one miss, then hits.
    for _ in 0..3 {
        visit(&first, &cookie).await;
        assert_eq!(
            upstream.last().session(),
            Some(json!({"user": {"name": "ada"}}))
        );
    }
    let hits = metric(ops, "cloakroom_redis_cache_hits_total").await;
    assert!(
        hits >= 2.0,
        "reads were not served from the cache: {hits} hits"
    );

    // Patches through the other instance, each read back at once here.
    let mut windows = Vec::new();
    let mut stale_reads = 0;
    for n in 0..20 {
        let write = bare()
            .get(second.url("/"))
            .header("cookie", &cookie)
            .header("x-test-set-session", format!(r#"{{"n":{n}}}"#));
        assert_eq!(write.send().await.unwrap().status(), 200);
        let (took, stale) = until_seen(&first, &upstream, &cookie, |session| {
            session.and_then(|s| s.get("n").cloned()) == Some(json!(n))
        })
        .await;
        windows.push(took);
        stale_reads += stale;
        // Cached again before the next change.
        visit(&first, &cookie).await;
    }
    windows.sort();
    eprintln!(
        "{test}: 20 patches through another instance, read back at once: {stale_reads} stale \
         answers; fresh after {:?} (median), {:?} (max)",
        windows[10], windows[19]
    );
    let invalidations = metric(ops, "cloakroom_redis_cache_invalidations_total").await;
    assert!(invalidations >= 20.0, "{invalidations} invalidations");

    // A plain Redis command (an Express app, an operator) is seen too.
    rename_in_redis(&url, &cookie, "ada", "bea").await;
    until_seen(&first, &upstream, &cookie, user_is("bea")).await;
    let mut redis = redis_client(&url).await;
    let _: i64 = redis::cmd("DEL")
        .arg(key_of(&cookie))
        .query_async(&mut redis)
        .await
        .unwrap();
    until_seen(&first, &upstream, &cookie, |session| session.is_none()).await;
}

#[tokio::test]
async fn a_session_made_here_is_read_from_the_cache_at_once_and_changes_elsewhere_still_arrive() {
    let test = "redis_cache::a_session_made_here_is_read_from_the_cache_at_once_and_changes_elsewhere_still_arrive";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (proxy, ops) = cached_proxy(&upstream, &url).await;
    for name in ["ada", "bob", "cy"] {
        let misses = metric(ops, "cloakroom_redis_cache_misses_total").await;
        let hits = metric(ops, "cloakroom_redis_cache_hits_total").await;
        let cookie = sid_pair(&log_in(&bare(), &proxy, name).await);
        // The login's own record answers the next request: no read of
        // Redis between the two.
        visit(&proxy, &cookie).await;
        assert_eq!(
            upstream.last().session(),
            Some(json!({"user": {"name": name}}))
        );
        let missed = metric(ops, "cloakroom_redis_cache_misses_total").await - misses;
        let hit = metric(ops, "cloakroom_redis_cache_hits_total").await - hits;
        assert_eq!(
            (hit, missed),
            (1.0, 0.0),
            "the first read after a login: {hit} from the cache, {missed} from Redis"
        );
        // Redis tracks the new key for this instance: a plain Redis
        // command's change reaches it.
        rename_in_redis(&url, &cookie, name, "eve").await;
        until_seen(&proxy, &upstream, &cookie, user_is("eve")).await;
    }

    // A login on a session that exists moves it to a new id: the record
    // under the new id is cached and tracked the same way, and the old id
    // is not served from the cache.
    let old = sid_pair(&log_in(&bare(), &proxy, "dan").await);
    visit(&proxy, &old).await;
    let misses = metric(ops, "cloakroom_redis_cache_misses_total").await;
    let hits = metric(ops, "cloakroom_redis_cache_hits_total").await;
    let login = bare()
        .post(proxy.url("/login"))
        .header("cookie", &old)
        .header("x-test-set-session", "regenerate")
        .header("x-test-set-session", r#"{"user":{"name":"fay"}}"#);
    let moved = sid_pair(&login.send().await.unwrap());
    assert_ne!(moved, old);
    visit(&proxy, &moved).await;
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "fay"}}))
    );
    let missed = metric(ops, "cloakroom_redis_cache_misses_total").await - misses;
    let hit = metric(ops, "cloakroom_redis_cache_hits_total").await - hits;
    assert_eq!(
        (hit, missed),
        (2.0, 0.0),
        "the login and the first read after it: {hit} from the cache, {missed} from Redis"
    );
    visit(&proxy, &old).await;
    assert_eq!(upstream.last().session(), None);
    rename_in_redis(&url, &moved, "fay", "gus").await;
    until_seen(&proxy, &upstream, &moved, user_is("gus")).await;
}

/// A change made elsewhere while this instance's worker cannot run (here
/// the process is stopped, as a busy or descheduled worker is), and a
/// request that was sent after it on a connection the worker already
/// holds, reach the worker in the same turn of its loop. The invalidation,
/// which came first, is applied first: the request gets the changed
/// session, never the cached one.
#[tokio::test]
async fn an_invalidation_that_arrived_before_a_request_is_applied_before_it() {
    let test = "redis_cache::an_invalidation_that_arrived_before_a_request_is_applied_before_it";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (port, ops_port) = (free_port(), free_port());
    let config = TempFile::new(
        "stopped-worker",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 1\n\
             [upstream]\nurl = \"{}\"\n[session]\nsecrets = [\"{SECRET}\"]\n\
             [ops]\nlisten = \"127.0.0.1:{ops_port}\"\n{}",
            upstream.url(),
            redis_store(&url, "")
        ),
    );
    let (mut child, _log) = spawn_logging_binary(config.path());
    wait_for_port(port, &mut child).await;
    let ops = SocketAddr::from(([127, 0, 0, 1], ops_port));
    tracking_is(ops, true).await;

    // One connection, kept alive: every request below reaches the worker
    // as bytes on a socket it already watches.
    let client = bare();
    let page = format!("http://127.0.0.1:{port}/");
    let login = client
        .post(&page)
        .header("x-test-set-session", r#"{"user":{"name":"ada"}}"#)
        .send()
        .await
        .unwrap();
    let cookie = sid_pair(&login);
    let read = || client.get(&page).header("cookie", &cookie).send();
    for _ in 0..2 {
        assert_eq!(read().await.unwrap().status(), 200);
    }
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}}))
    );
    let hits = metric(ops, "cloakroom_redis_cache_hits_total").await;
    assert!(hits >= 1.0, "the session was not cached: {hits} hits");

    signal(&child, "STOP");
    // Redis sends the invalidation to the stopped worker's tracked
    // connection as it answers this write...
    rename_in_redis(&url, &cookie, "ada", "bea").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...and the request follows it.
    let request = tokio::spawn(read());
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&child, "CONT");
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "bea"}})),
        "the request was served the record the invalidation had dropped"
    );
    assert!(terminate(&mut child).await.success());
}

/// `PATCH`es the session through `proxy` with `{"n": n}`, on a connection
/// of its own (so a two-worker proxy takes them on both workers in turn).
async fn write_n(proxy: &Proxy, cookie: &str, n: u64) {
    let write = bare()
        .get(proxy.url("/"))
        .header("cookie", cookie)
        .header("x-test-set-session", format!(r#"{{"n":{n}}}"#));
    assert_eq!(write.send().await.unwrap().status(), 200);
}

fn n_is(n: u64) -> impl Fn(Option<Value>) -> bool {
    move |session| session.and_then(|s| s.get("n").cloned()) == Some(json!(n))
}

#[tokio::test]
async fn a_write_is_read_back_from_the_cache_and_later_changes_elsewhere_still_arrive() {
    let test =
        "redis_cache::a_write_is_read_back_from_the_cache_and_later_changes_elsewhere_still_arrive";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    // Two workers, each with its own tracked connection, taking the
    // requests' connections in turn.
    let config = format!("server.workers = 2\n{}", redis_store(&url, ""));
    let (first, ops) = Proxy::start_with_ops(&upstream, &config).await;
    tracking_is(ops, true).await;
    let second = Proxy::start(&upstream, &redis_store(&url, "")).await;
    let cookie = sid_pair(&log_in(&bare(), &first, "ada").await);

    // Each write read back at once, twice: always what was just written,
    // and from the cache (the write's own load as well as the reads after
    // it). Three connections a round, so the writes alternate between the
    // workers, and each worker's write replaces a record the other guards.
    visit(&first, &cookie).await;
    let misses = metric(ops, "cloakroom_redis_cache_misses_total").await;
    let hits = metric(ops, "cloakroom_redis_cache_hits_total").await;
    for n in 0..20 {
        write_n(&first, &cookie, n).await;
        for _ in 0..2 {
            visit(&first, &cookie).await;
            assert!(
                n_is(n)(upstream.last().session()),
                "write {n} was not read back: {:?}",
                upstream.last().session()
            );
        }
    }
    let missed = metric(ops, "cloakroom_redis_cache_misses_total").await - misses;
    let hit = metric(ops, "cloakroom_redis_cache_hits_total").await - hits;
    assert!(
        hit >= 57.0 && missed <= 3.0,
        "60 loads around 20 writes: {hit} from the cache, {missed} from Redis"
    );

    // A change made elsewhere after a write here, which the cache now
    // holds, still reaches this instance: through another instance, and
    // by a plain Redis command.
    for round in 0..5 {
        write_n(&first, &cookie, 100 + round).await;
        visit(&first, &cookie).await;
        write_n(&second, &cookie, 200 + round).await;
        until_seen(&first, &upstream, &cookie, n_is(200 + round)).await;
    }
    write_n(&first, &cookie, 300).await;
    visit(&first, &cookie).await;
    rename_in_redis(&url, &cookie, "ada", "bea").await;
    until_seen(&first, &upstream, &cookie, user_is("bea")).await;
}

#[tokio::test]
async fn a_lost_tracking_connection_empties_the_cache_until_it_is_back() {
    let test = "redis_cache::a_lost_tracking_connection_empties_the_cache_until_it_is_back";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (proxy, ops) = cached_proxy(&upstream, &url).await;
    let cookie = sid_pair(&log_in(&bare(), &proxy, "ada").await);
    visit(&proxy, &cookie).await;
    visit(&proxy, &cookie).await;
    let hits = metric(ops, "cloakroom_redis_cache_hits_total").await;
    assert!(hits >= 1.0, "not cached");

    // Cut the tracking connection, then change the session behind it: no
    // invalidation can come, so only emptying the cache gets it right.
    let mut redis = redis_client(&url).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut redis)
        .await
        .unwrap();
    // One with a Redis of its own; kill every one on a shared Redis.
    let tracking: Vec<&str> = list
        .lines()
        .filter(|line| line.contains("name=cloakroom-tracking "))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert!(!tracking.is_empty(), "no tracking connection: {list}");
    for id in tracking {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(killed, 1);
    }
    rename_in_redis(&url, &cookie, "ada", "bea").await;
    until_seen(&proxy, &upstream, &cookie, user_is("bea")).await;

    // Tracking comes back by itself, and caching with it.
    tracking_is(ops, true).await;
    visit(&proxy, &cookie).await;
    visit(&proxy, &cookie).await;
    let later = metric(ops, "cloakroom_redis_cache_hits_total").await;
    assert!(
        later > hits,
        "the cache was not used again: {hits} then {later}"
    );
    rename_in_redis(&url, &cookie, "bea", "cy").await;
    until_seen(&proxy, &upstream, &cookie, user_is("cy")).await;
}

#[tokio::test]
async fn cache_sessions_0_turns_the_cache_off() {
    let test = "redis_cache::cache_sessions_0_turns_the_cache_off";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (proxy, ops) =
        Proxy::start_with_ops(&upstream, &redis_store(&url, "cache_sessions = 0")).await;
    let cookie = sid_pair(&log_in(&bare(), &proxy, "ada").await);
    visit(&proxy, &cookie).await;
    visit(&proxy, &cookie).await;
    assert_eq!(metric(ops, "cloakroom_redis_cache_hits_total").await, 0.0);
    // Without a cache, a change in Redis is seen on the next read.
    rename_in_redis(&url, &cookie, "ada", "bea").await;
    visit(&proxy, &cookie).await;
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "bea"}}))
    );
}

#[tokio::test]
async fn a_server_that_refuses_tracking_leaves_the_cache_off_and_sessions_working() {
    let test =
        "redis_cache::a_server_that_refuses_tracking_leaves_the_cache_off_and_sessions_working";
    let Some((url, _server)) = some_redis(test) else {
        return;
    };
    if url.contains('@') {
        // A REDIS_URL with credentials of its own: no room for ours.
        eprintln!("*** SKIPPED {test}: REDIS_URL carries credentials ***");
        return;
    }
    // A user that may do everything but ask for key tracking, as behind a
    // proxy that does not pass CLIENT TRACKING on.
    let user = format!("no-tracking-{}", std::process::id());
    let mut admin = redis_client(&url).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">secret")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-client|tracking")
        .query_async(&mut admin)
        .await
        .unwrap();
    let limited = url.replacen("redis://", &format!("redis://{user}:secret@"), 1);
    let upstream = Upstream::start().await;
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &redis_store(&limited, "")).await;
    let cookie = sid_pair(&log_in(&bare(), &proxy, "ada").await);
    for n in 0..5 {
        write_n(&proxy, &cookie, n).await;
        visit(&proxy, &cookie).await;
        assert!(
            n_is(n)(upstream.last().session()),
            "write {n} not read back"
        );
    }
    // Every worker has been refused by now (its first attempt comes at
    // start-up); nothing was served from a cache.
    tracking_is(ops, false).await;
    assert_eq!(metric(ops, "cloakroom_redis_cache_hits_total").await, 0.0);
    rename_in_redis(&url, &cookie, "ada", "bea").await;
    visit(&proxy, &cookie).await;
    assert!(user_is("bea")(upstream.last().session()));
    let _: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .unwrap();
}
