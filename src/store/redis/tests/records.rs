//! The stored record is connect-redis's, and writes keep its cookie object.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;

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
    let mut connection = h.store.connection();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(written)
        .arg("EX")
        .arg(600)
        .query_async(&mut connection)
        .await
        .unwrap();
    let data = h.store.load(&id, true).await.unwrap().live().unwrap();
    assert_eq!(
        serde_json::Value::Object(data.map().clone()),
        json!({"cart": [1]})
    );
    let ops = [patch(json!({"user": "ada"}))];
    let commit = Commit {
        current: Some(&id),
        ops: &ops,
        fresh_id: SessionId::generate(),
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
