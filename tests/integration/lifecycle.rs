//! The session lifecycle through the real proxy, on both stores: a login
//! moves the session to a fresh id by itself (session fixation), and the
//! memory store's eviction spares signed-in sessions.

use serde_json::json;

use crate::redis::{redis_store, some_redis};
use crate::support::*;

/// The proxy on the memory store, or on a Redis (`None` when none can be
/// had: skipped loudly, or failed under CI=true).
async fn on_store(
    upstream: &Upstream,
    redis: bool,
    extra: &str,
    test: &str,
) -> Option<(Proxy, Option<crate::test_server::RedisServer>)> {
    if !redis {
        return Some((Proxy::start(upstream, extra).await, None));
    }
    let (url, server) = some_redis(test)?;
    let proxy = Proxy::start(upstream, &format!("{extra}{}", redis_store(&url, ""))).await;
    Some((proxy, server))
}

async fn a_login_moves_the_session_by_itself(redis: bool) {
    let test = "lifecycle::a_login_moves_the_session_by_itself";
    let upstream = Upstream::start().await;
    let Some((proxy, _redis)) = on_store(&upstream, redis, "", test).await else {
        return;
    };
    let client = browser();
    // An anonymous visitor gets a session (a cart), then logs in with a
    // plain patch: no `regenerate`.
    let cart = client
        .post(proxy.url("/cart"))
        .header("x-test-set-session", json!({"cart": ["tea"]}).to_string())
        .send()
        .await
        .unwrap();
    let before = sid_pair(&cart);
    client.get(proxy.url("/")).send().await.unwrap();
    let old_id = upstream.last().header("x-session-id").unwrap().to_owned();

    let login = client
        .post(proxy.url("/login"))
        .header(
            "x-test-set-session",
            json!({"user": {"name": "ada"}}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let after = sid_pair(&login);
    assert_ne!(after, before, "a new cookie at login");
    client.get(proxy.url("/")).send().await.unwrap();
    let seen = upstream.last();
    let new_id = seen.header("x-session-id").unwrap().to_owned();
    assert_ne!(new_id, old_id, "a fresh id at login");
    assert_eq!(
        seen.session(),
        Some(json!({"cart": ["tea"], "user": {"name": "ada"}})),
        "the data moves with it"
    );
    // The old id is dead: its cookie is anonymous now.
    visit(&proxy, &before).await;
    assert_eq!(upstream.last().header("x-session-id"), None);

    // Another patch of the signed-in session keeps the id.
    client
        .post(proxy.url("/prefs"))
        .header("x-test-set-session", json!({"theme": "dark"}).to_string())
        .send()
        .await
        .unwrap();
    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        upstream.last().header("x-session-id"),
        Some(new_id.as_str())
    );
    // A different user on the same session: moved again.
    client
        .post(proxy.url("/login"))
        .header(
            "x-test-set-session",
            json!({"user": {"name": "grace"}}).to_string(),
        )
        .send()
        .await
        .unwrap();
    client.get(proxy.url("/")).send().await.unwrap();
    assert_ne!(
        upstream.last().header("x-session-id"),
        Some(new_id.as_str())
    );
}

#[tokio::test]
async fn a_login_moves_the_session_by_itself_memory() {
    a_login_moves_the_session_by_itself(false).await;
}

#[tokio::test]
async fn a_login_moves_the_session_by_itself_redis() {
    a_login_moves_the_session_by_itself(true).await;
}

#[tokio::test]
async fn rotation_at_login_can_be_turned_off() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "auth.rotate_on_login = false\n").await;
    let client = browser();
    let cart = client
        .post(proxy.url("/cart"))
        .header("x-test-set-session", json!({"cart": 1}).to_string())
        .send()
        .await
        .unwrap();
    let before = sid_pair(&cart);
    let login = client
        .post(proxy.url("/login"))
        .header("x-test-set-session", json!({"user": "ada"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(set_cookies(&login, "sid").is_empty(), "no new cookie");
    visit(&proxy, &before).await;
    assert_eq!(
        upstream.last().session(),
        Some(json!({"cart": 1, "user": "ada"}))
    );
}

#[tokio::test]
async fn an_anonymous_flood_never_logs_real_users_out() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[store]\nmax_sessions = 30\n").await;
    let mut users = Vec::new();
    for index in 0..10 {
        let client = browser();
        let login = log_in(&client, &proxy, &format!("user-{index}")).await;
        users.push((index, sid_pair(&login)));
    }
    // Ten times the bound in anonymous sessions (a cart each).
    for index in 0..300 {
        let cart = bare()
            .post(proxy.url("/cart"))
            .header("x-test-set-session", json!({"cart": index}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(cart.status(), 200);
    }
    for (index, cookie) in users {
        visit(&proxy, &cookie).await;
        assert_eq!(
            upstream.last().session(),
            Some(json!({"user": {"name": format!("user-{index}")}})),
            "user-{index} was logged out by the flood"
        );
    }
}
