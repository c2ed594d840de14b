//! The session lifecycle through the real proxy, on both stores: a login
//! moves the session to a fresh id by itself (session fixation), and the
//! memory store's eviction spares signed-in sessions.

use std::time::Duration;

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

/// Logs in on `proxy` (any address) and returns the cookie pair.
async fn login_at(base: &str, name: &str, extra: &[&str]) -> String {
    let mut request = bare().post(format!("{base}/login")).header(
        "x-test-set-session",
        json!({"user": {"name": name}}).to_string(),
    );
    for value in extra {
        request = request.header("x-test-set-session", *value);
    }
    let login = request.send().await.unwrap();
    assert_eq!(login.status(), 200);
    sid_pair(&login)
}

/// The session the upstream saw for a visit with `cookie`, and the status
/// of the login-only page.
async fn seen_with(
    base: &str,
    upstream: &Upstream,
    cookie: &str,
) -> (Option<serde_json::Value>, u16) {
    let page = bare()
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let session = upstream.last().session();
    let private = bare()
        .get(format!("{base}/account"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (session, private.status().as_u16())
}

async fn idle_and_absolute_timeouts(redis: bool) {
    let test = "lifecycle::idle_and_absolute_timeouts";
    let upstream = Upstream::start().await;
    let (url, _server) = if redis {
        match some_redis(test) {
            Some(found) => (Some(found.0), found.1),
            None => return,
        }
    } else {
        (None, None)
    };
    let store = url.map_or(String::new(), |url| redis_store(&url, ""));
    let proxy = crate::operations::Operated::start(&format!(
        "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n\
         session.idle_timeout = \"1s\"\nsession.absolute_timeout = \"2500ms\"\n\
         session.touch_interval = \"100ms\"\ncookie.rolling = true\n\
         [[auth.protect]]\nprefix = \"/account\"\n{store}",
        upstream.url()
    ))
    .await;
    let base = format!("http://{}", proxy.proxy);
    let idle = login_at(&base, "idle", &[]).await;
    let busy = login_at(&base, "busy", &[]).await;
    // The busy one is used every 300 ms: alive past the idle timeout.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (session, private) = seen_with(&base, &upstream, &busy).await;
        assert_eq!(session.unwrap()["user"]["name"], "busy");
        assert_eq!(private, 200);
    }
    // 1.5 s without use: the idle one is dead, and served as none.
    let (session, private) = seen_with(&base, &upstream, &idle).await;
    assert_eq!(session, None, "an idle session is treated as none");
    assert_eq!(private, 401, "and login-only routes are denied");
    // The busy one, kept busy with rolling requests, dies at 2.5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (session, _) = seen_with(&base, &upstream, &busy).await;
        if session.is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the absolute timeout did not end a busy session"
        );
    }
    // Redis lets a session go at its deadline by itself (the key's TTL), so
    // a later load cannot tell it from an unknown id; the memory store can.
    if !redis {
        let expired = "cloakroom_sessions_total{event=\"expired\"}";
        assert!(proxy.metric(expired).await >= 1.0);
    }
}

#[tokio::test]
async fn idle_and_absolute_timeouts_memory() {
    idle_and_absolute_timeouts(false).await;
}

#[tokio::test]
async fn idle_and_absolute_timeouts_redis() {
    idle_and_absolute_timeouts(true).await;
}

#[tokio::test]
async fn touches_are_throttled_to_one_per_interval() {
    let upstream = Upstream::start().await;
    let proxy = crate::operations::Operated::start(&format!(
        "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n\
         session.idle_timeout = \"30s\"\nsession.touch_interval = \"1s\"\n",
        upstream.url()
    ))
    .await;
    let base = format!("http://{}", proxy.proxy);
    let cookie = login_at(&base, "ada", &[]).await;
    let touches = "cloakroom_store_operation_seconds_count{store=\"memory\",op=\"touch\"}";
    for _ in 0..50 {
        seen_with(&base, &upstream, &cookie).await;
    }
    assert_eq!(
        proxy.metric(touches).await,
        0.0,
        "no touch within the first interval"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..50 {
        seen_with(&base, &upstream, &cookie).await;
    }
    assert_eq!(
        proxy.metric(touches).await,
        1.0,
        "one touch per interval, not per request"
    );
}

#[tokio::test]
async fn remember_me_makes_a_persistent_cookie_within_the_bound() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "session.remember_max = \"7d\"\n").await;
    let plain = bare()
        .post(proxy.url("/login"))
        .header("x-test-set-session", json!({"user": "ada"}).to_string())
        .send()
        .await
        .unwrap();
    let cookie = &set_cookies(&plain, "sid")[0];
    assert!(
        !cookie.contains("Max-Age"),
        "a browser-session cookie: {cookie}"
    );
    let remembered = bare()
        .post(proxy.url("/login"))
        .header("x-test-set-session", json!({"user": "ada"}).to_string())
        .header("x-test-set-session", "remember=30d")
        .send()
        .await
        .unwrap();
    assert_eq!(remembered.status(), 200);
    let cookie = &set_cookies(&remembered, "sid")[0];
    assert!(
        cookie.contains("Max-Age=604800"),
        "bounded by remember_max: {cookie}"
    );
    assert!(cookie.contains("Expires="), "{cookie}");
    let bad = bare()
        .post(proxy.url("/login"))
        .header("x-test-set-session", "remember=forever")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        502,
        "a malformed directive is the upstream's fault"
    );
}
