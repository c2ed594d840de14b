//! The stored record is connect-redis's, and writes keep its cookie object.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;
use crate::domain::session::lifetime::{Lifetimes, STAMP_KEY};

#[tokio::test]
async fn records_are_written_in_connect_redis_format() {
    let cookie = "max_age = \"1h\"\nsecure = true\nsame_site = \"strict\"";
    let Some(h) = harness_with("records_are_written_in_connect_redis_format", cookie).await else {
        return;
    };
    let id = conformance::create(
        &h.store,
        json!({"user": {"name": "ada"}}),
        Duration::from_secs(3600),
    )
    .await;
    let stored = raw_get(&h.store, &format!("sess:{}", id.as_str()))
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(value["user"], json!({"name": "ada"}));
    let cookie = &value["cookie"];
    assert_eq!(cookie["originalMaxAge"], json!(3_600_000));
    assert_eq!(cookie["secure"], json!(true));
    assert_eq!(cookie["httpOnly"], json!(true));
    assert_eq!(cookie["path"], json!("/"));
    assert_eq!(cookie["sameSite"], json!("strict"));
    let expires = record::parse_js_date(cookie["expires"].as_str().unwrap()).unwrap();
    let left = expires.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
    assert!(
        stored.starts_with("{\"cookie\":"),
        "cookie first, as express-session"
    );
}

#[tokio::test]
async fn patching_keeps_the_cookie_object_and_the_data_of_other_writers() {
    let Some(h) = harness_with("patching_keeps_the_cookie_object", "").await else {
        return;
    };
    let id = SessionId::generate();
    let key = h.store.key(&id);
    let written = r#"{"cookie":{"originalMaxAge":null,"expires":null,"secure":true,"httpOnly":false,"path":"/app"},"cart":[1]}"#;
    save_as_an_app(&h.store, &key, written, 600).await;
    let data = h.store.load(&id, true).await.unwrap().live().unwrap();
    assert_eq!(
        serde_json::Value::Object(data.map().clone()),
        json!({"cart": [1]})
    );
    let ops = [patch(json!({"user": "ada"}))];
    let commit = Commit {
        current: Some(&id),
        ops: &ops,
        fresh_id: None,
        ttl: Duration::from_secs(60),
        max_bytes: 65536,
        rotate_on: None,
        lifetimes: Default::default(),
    };
    assert!(matches!(
        h.store.commit(commit).await.unwrap(),
        Committed::Saved { .. }
    ));
    let stored: serde_json::Value =
        serde_json::from_str(&raw_get(&h.store, &key).await.unwrap()).unwrap();
    assert_eq!(
        stored,
        json!({"cookie": {"originalMaxAge": null, "expires": null, "secure": true, "httpOnly": false, "path": "/app"}, "cart": [1], "user": "ada"})
    );
}

/// A write that starts from what the cache holds (the request's own load,
/// then this process's last write) treats the record as one read from
/// Redis: an app's record without a stamp gets a fresh one, kept by the
/// next write, and the app's cookie object survives.
#[tokio::test]
async fn a_write_from_the_cache_stamps_an_app_s_record_as_a_read_would() {
    let Some(h) = tracked_harness("a_write_from_the_cache_stamps_an_app_s_record").await else {
        return;
    };
    let id = SessionId::generate();
    let key = h.store.key(&id);
    let cookie = json!({"originalMaxAge": null, "expires": null, "secure": true, "httpOnly": false, "path": "/app"});
    let written = json!({"cookie": cookie, "cart": [1]}).to_string();
    save_as_an_app(&h.store, &key, &written, 600).await;
    for _ in 0..2 {
        assert!(h.store.load(&id, false).await.unwrap().live().is_some());
    }
    assert!(
        h.store.cache_stats().unwrap().hits >= 1,
        "the record is cached"
    );
    let lifetimes = Lifetimes {
        idle: Some(Duration::from_secs(60)),
        absolute: Some(Duration::from_secs(3600)),
    };
    let before = super::unix_millis(SystemTime::now());
    let mut stamps = Vec::new();
    for n in 0..2 {
        assert!(matches!(
            patch_with(&h.store, &id, json!({ "n": n }), lifetimes).await,
            Committed::Saved { .. }
        ));
        let stored: serde_json::Value =
            serde_json::from_str(&raw_get(&h.store, &key).await.unwrap()).unwrap();
        assert_eq!(stored["cookie"], cookie);
        assert_eq!(stored["cart"], json!([1]));
        assert_eq!(stored["n"], json!(n));
        stamps.push(stored[STAMP_KEY].clone());
    }
    let created = stamps[0]["created"].as_u64().unwrap();
    assert!(created >= before, "a fresh stamp: {}", stamps[0]);
    assert_eq!(stamps[0]["idle"], json!(60_000));
    assert_eq!(stamps[0]["absolute"], json!(created + 3_600_000));
    assert_eq!(stamps[1], stamps[0], "the next write keeps it");
}

/// An index larger than one `HSCAN` round is read whole, each member once,
/// and its stale members (session gone, or not ours) are removed.
#[tokio::test]
async fn a_large_user_index_is_read_in_rounds_and_cleaned() {
    let test = "a_large_user_index_is_read_in_rounds_and_cleaned";
    let Some(h) = harness_with(test, "").await else {
        return;
    };
    let identity = crate::domain::session::identity::Identity::new("bulk").unwrap();
    let member = crate::store::users::Member::now("192.0.2.1".parse().unwrap(), "test");
    let key = h.store.user_key(&identity);
    let mut connection = h.store.connection();
    let mut pipeline = redis::pipe();
    let mut live = std::collections::HashSet::new();
    for n in 0..2500 {
        let id = SessionId::generate();
        pipeline
            .cmd("HSET")
            .arg(&key)
            .arg(id.as_str())
            .arg(member.encode());
        // Two in five have a session; the rest are stale.
        if n % 5 < 2 {
            pipeline
                .cmd("SET")
                .arg(h.store.key(&id))
                .arg("{}")
                .arg("PX")
                .arg(60_000);
            live.insert(id);
        }
    }
    pipeline
        .cmd("HSET")
        .arg(&key)
        .arg("not an id")
        .arg("not a member");
    let () = pipeline.query_async(&mut connection).await.unwrap();

    let listed = h.store.index_list(&identity).await.unwrap();
    let ids: std::collections::HashSet<SessionId> =
        listed.iter().map(|session| session.id.clone()).collect();
    assert_eq!(listed.len(), 1000, "each live member once");
    assert_eq!(ids, live);
    let left: u64 = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(left, 1000, "stale members removed");
}

/// A record cached from Redis with a time to live longer than its stamp
/// allows (an Express app's save gives a day, whatever Cloakroom's
/// deadlines): a read from the cache past the absolute deadline finds it
/// expired, and deletes it, as a read from Redis does.
#[tokio::test]
async fn a_cached_record_past_its_absolute_deadline_is_expired_and_deleted() {
    let Some(h) = tracked_harness("a_cached_record_past_its_absolute_deadline").await else {
        return;
    };
    let id = SessionId::generate();
    let key = h.store.key(&id);
    let now = super::unix_millis(SystemTime::now());
    let record = json!({
        "cookie": {"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"},
        "user": "ada",
        STAMP_KEY: {"created": now, "absolute": now + 400},
    });
    save_as_an_app(&h.store, &key, &record.to_string(), 86_400).await;
    for _ in 0..2 {
        assert!(h.store.load(&id, true).await.unwrap().live().is_some());
    }
    let hits = h.store.cache_stats().unwrap().hits;
    assert!(hits >= 1, "the record is cached");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(
        h.store.load(&id, true).await.unwrap(),
        Loaded::Expired
    ));
    assert_eq!(
        h.store.cache_stats().unwrap().hits,
        hits + 1,
        "answered from the cache"
    );
    assert_eq!(raw_get(&h.store, &key).await, None, "deleted");
}

/// Writes `value` under `key` with `seconds` to live, as an app on the
/// same Redis (express-session and connect-redis) saves a session.
async fn save_as_an_app(store: &RedisStore, key: &str, value: &str, seconds: u64) {
    let mut connection = store.connection();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(seconds)
        .query_async(&mut connection)
        .await
        .unwrap();
}
