//! Sessions per user through the real proxy, on both stores: the limit
//! under `evict-oldest` and `refuse`, `Set-Session: destroy-all` (across
//! two instances on one Redis), and the user index left clean once its
//! sessions expire. Each Redis test starts its own `redis-server`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;
use crate::test_server::RedisServer;

/// The proxy's identity is at `/user/id`; the admin token for tests.
pub const USERS: &str = "auth.identity_pointer = \"/user/id\"\n";
pub const TOKEN: &str = "admin-token-for-tests-0123456789abcdef";

/// A store for a test: `None` for memory, else a fresh `redis-server`
/// (`Err(())` when none can be had: skipped loudly, failed under CI=true).
pub fn store_for(redis: bool, test: &str) -> Result<Option<RedisServer>, ()> {
    if !redis {
        return Ok(None);
    }
    RedisServer::start(test).map(Some).ok_or(())
}

/// The `[store]` table for `server` (empty for memory), with `extra` keys.
pub fn store_table(server: &Option<RedisServer>, extra: &str) -> String {
    match server {
        Some(server) => format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\n{extra}",
            server.url()
        ),
        None => format!("[store]\n{extra}"),
    }
}

/// A browser (a cookie jar) whose `User-Agent` is `agent`.
pub fn browser_as(agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(agent)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs `client` in as the user `id` (a plain patch: the proxy rotates).
pub async fn log_in_as(client: &reqwest::Client, proxy: &Proxy, id: u32) -> reqwest::Response {
    client
        .post(proxy.url("/login"))
        .header(
            "x-test-set-session",
            json!({"user": {"id": id}}).to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// The session id the upstream sees for `client` now (`None`: anonymous).
pub async fn session_of(
    client: &reqwest::Client,
    proxy: &Proxy,
    upstream: &Upstream,
) -> Option<String> {
    let response = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    upstream.last().header("x-session-id").map(str::to_owned)
}

/// An admin call on the operations listener `ops` with `token`.
pub async fn admin(
    ops: SocketAddr,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = bare().request(method, format!("http://{ops}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// `GET /admin/users/{identity}/sessions`'s list.
pub async fn listed(ops: SocketAddr, identity: &str) -> Vec<Value> {
    let path = format!("/admin/users/{identity}/sessions");
    let (status, _, body) = admin(ops, reqwest::Method::GET, &path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["sessions"].as_array().unwrap().clone()
}

/// A file holding the admin token, and the `[ops]` keys naming it.
pub fn token_file() -> (TempFile, String) {
    let file = TempFile::new("admin-token", &format!("{TOKEN}\n"));
    let keys = format!(
        "ops.admin_token_file = \"{}\"\n",
        file.path().display().to_string().replace('\\', "\\\\")
    );
    (file, keys)
}

async fn evict_oldest_ends_the_oldest_sessions_past_the_limit(redis: bool) {
    let test = "users::evict_oldest_ends_the_oldest_sessions_past_the_limit";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let extra = format!(
        "{USERS}auth.max_sessions_per_user = 2\n{}",
        store_table(&server, "")
    );
    let proxy = Proxy::start(&upstream, &extra).await;
    let browsers: Vec<_> = (0..3).map(|n| browser_as(&format!("b{n}"))).collect();
    let other = browser();
    assert_eq!(log_in_as(&other, &proxy, 8).await.status(), 200);
    for browser in &browsers {
        assert_eq!(log_in_as(browser, &proxy, 7).await.status(), 200);
        // Distinct creation times: the oldest is well defined.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        session_of(&browsers[0], &proxy, &upstream).await,
        None,
        "the oldest session of user 7 was ended by the third login"
    );
    for browser in &browsers[1..] {
        assert!(session_of(browser, &proxy, &upstream).await.is_some());
    }
    assert!(
        session_of(&other, &proxy, &upstream).await.is_some(),
        "another user's session is untouched"
    );
    // The evicted browser logs in again: now the second is the oldest.
    assert_eq!(log_in_as(&browsers[0], &proxy, 7).await.status(), 200);
    assert_eq!(session_of(&browsers[1], &proxy, &upstream).await, None);
    assert!(session_of(&browsers[0], &proxy, &upstream).await.is_some());
    assert!(session_of(&browsers[2], &proxy, &upstream).await.is_some());
}

#[tokio::test]
async fn evict_oldest_ends_the_oldest_sessions_past_the_limit_memory() {
    evict_oldest_ends_the_oldest_sessions_past_the_limit(false).await;
}

#[tokio::test]
async fn evict_oldest_ends_the_oldest_sessions_past_the_limit_redis() {
    evict_oldest_ends_the_oldest_sessions_past_the_limit(true).await;
}

async fn refuse_answers_409_and_leaves_the_store_unchanged(redis: bool) {
    let test = "users::refuse_answers_409_and_leaves_the_store_unchanged";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let extra = format!(
        "{USERS}auth.max_sessions_per_user = 1\nauth.session_limit_policy = \"refuse\"\n{}",
        store_table(&server, "")
    );
    let proxy = Proxy::start(&upstream, &extra).await;
    let first = browser();
    assert_eq!(log_in_as(&first, &proxy, 7).await.status(), 200);
    let first_id = session_of(&first, &proxy, &upstream).await.unwrap();

    // A second browser with an anonymous cart tries to log in as user 7.
    let second = browser();
    let cart = second
        .post(proxy.url("/cart"))
        .header("x-test-set-session", json!({"cart": ["tea"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(cart.status(), 200);
    let cart_id = session_of(&second, &proxy, &upstream).await.unwrap();
    let refused = log_in_as(&second, &proxy, 7).await;
    assert_eq!(refused.status(), 409);
    assert!(
        refused.headers().get("set-cookie").is_none(),
        "no cookie on a refused login"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body, json!({"error": "too many sessions", "limit": 1}));
    // The store is unchanged: the cart session as it was, not signed in.
    assert_eq!(
        session_of(&second, &proxy, &upstream).await.as_deref(),
        Some(cart_id.as_str())
    );
    assert_eq!(upstream.last().session(), Some(json!({"cart": ["tea"]})));
    assert_eq!(
        session_of(&first, &proxy, &upstream).await.as_deref(),
        Some(first_id.as_str())
    );
    // The signed-in session writes on as before (the same user).
    let write = first
        .post(proxy.url("/prefs"))
        .header(
            "x-test-set-session",
            json!({"user": {"id": 7, "theme": 1}}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 200);
    // Once the first logs out, the second may log in.
    let logout = first
        .post(proxy.url("/logout"))
        .header("x-test-set-session", "destroy")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    assert_eq!(log_in_as(&second, &proxy, 7).await.status(), 200);
    assert!(session_of(&second, &proxy, &upstream).await.is_some());
    assert_eq!(
        upstream.last().session(),
        Some(json!({"cart": ["tea"], "user": {"id": 7}}))
    );
}

#[tokio::test]
async fn refuse_answers_409_and_leaves_the_store_unchanged_memory() {
    refuse_answers_409_and_leaves_the_store_unchanged(false).await;
}

#[tokio::test]
async fn refuse_answers_409_and_leaves_the_store_unchanged_redis() {
    refuse_answers_409_and_leaves_the_store_unchanged(true).await;
}

#[tokio::test]
async fn destroy_all_ends_every_session_of_the_user_on_one_instance() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, USERS).await;
    let (phone, laptop, other) = (browser(), browser(), browser());
    for (client, user) in [(&phone, 7), (&laptop, 7), (&other, 8)] {
        assert_eq!(log_in_as(client, &proxy, user).await.status(), 200);
    }
    let everywhere = laptop
        .post(proxy.url("/password"))
        .header("x-test-set-session", "destroy-all")
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), 200);
    assert!(set_cookies(&everywhere, "sid")[0].contains("Expires=Thu, 01 Jan 1970"));
    assert_eq!(session_of(&laptop, &proxy, &upstream).await, None);
    assert_eq!(session_of(&phone, &proxy, &upstream).await, None);
    assert!(session_of(&other, &proxy, &upstream).await.is_some());
}

#[tokio::test]
async fn destroy_all_ends_the_users_sessions_on_every_instance() {
    let test = "users::destroy_all_ends_the_users_sessions_on_every_instance";
    let Ok(server) = store_for(true, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let extra = format!("{USERS}{}", store_table(&server, ""));
    let first = Proxy::start(&upstream, &extra).await;
    let second = Proxy::start(&upstream, &extra).await;
    let (here, there, other) = (browser(), browser(), browser());
    assert_eq!(log_in_as(&here, &first, 7).await.status(), 200);
    assert_eq!(log_in_as(&there, &second, 7).await.status(), 200);
    assert_eq!(log_in_as(&other, &second, 8).await.status(), 200);
    assert!(session_of(&there, &second, &upstream).await.is_some());

    let everywhere = here
        .post(first.url("/password"))
        .header("x-test-set-session", "destroy-all")
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), 200);
    assert_eq!(session_of(&here, &first, &upstream).await, None);
    assert_eq!(
        session_of(&there, &second, &upstream).await,
        None,
        "the session on the other instance is gone from the store"
    );
    assert!(session_of(&other, &second, &upstream).await.is_some());
}

async fn the_index_is_clean_after_sessions_expire(redis: bool) {
    let test = "users::the_index_is_clean_after_sessions_expire";
    let Ok(server) = store_for(redis, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    let extra = format!(
        "{USERS}session.ttl = \"1s\"\n{token_keys}{}",
        store_table(&server, "")
    );
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    for _ in 0..2 {
        assert_eq!(log_in_as(&browser(), &proxy, 7).await.status(), 200);
    }
    assert_eq!(listed(ops, "7").await.len(), 2);
    let mut redis_connection = match &server {
        Some(server) => Some(
            redis::Client::open(server.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap(),
        ),
        None => None,
    };
    if let Some(connection) = &mut redis_connection {
        let ttl: i64 = redis::cmd("PTTL")
            .arg("sess:user:7")
            .query_async(connection)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= 1000,
            "the index lives as its sessions: {ttl}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    if let Some(connection) = &mut redis_connection {
        let exists: i64 = redis::cmd("EXISTS")
            .arg("sess:user:7")
            .query_async(connection)
            .await
            .unwrap();
        assert_eq!(exists, 0, "the abandoned index expired by itself");
    }
    assert!(listed(ops, "7").await.is_empty());
    let (status, _, body) = admin(
        ops,
        reqwest::Method::GET,
        "/admin/sessions/count",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"sessions": 0})
    );
}

#[tokio::test]
async fn the_index_is_clean_after_sessions_expire_memory() {
    the_index_is_clean_after_sessions_expire(false).await;
}

#[tokio::test]
async fn the_index_is_clean_after_sessions_expire_redis() {
    the_index_is_clean_after_sessions_expire(true).await;
}

#[tokio::test]
async fn a_rolling_session_keeps_its_users_index_alive() {
    let test = "users::a_rolling_session_keeps_its_users_index_alive";
    let Ok(server) = store_for(true, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let (_token, token_keys) = token_file();
    let extra = format!(
        "{USERS}session.ttl = \"2s\"\ncookie.rolling = true\n{token_keys}{}",
        store_table(&server, "")
    );
    let (proxy, ops) = Proxy::start_with_ops(&upstream, &extra).await;
    let client = browser();
    assert_eq!(log_in_as(&client, &proxy, 7).await.status(), 200);
    // Each visit extends the session by 2 s, and the index with it: at
    // 3.6 s the index written at login (2 s) would long have expired.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(session_of(&client, &proxy, &upstream).await.is_some());
    }
    assert_eq!(listed(ops, "7").await.len(), 1, "still in the index");
}

/// Without a per-user limit, a login does not read the user's whole
/// index (that made N logins of one user cost O(N²)); the stale members
/// are dropped when a login takes the index to a power of two from 64.
#[tokio::test]
async fn a_redis_index_is_cleaned_when_logins_double_it_not_at_every_login() {
    let test = "users::a_redis_index_is_cleaned_when_logins_double_it_not_at_every_login";
    let Ok(server) = store_for(true, test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let extra = format!("{USERS}{}", store_table(&server, ""));
    let proxy = Proxy::start(&upstream, &extra).await;
    let url = server.as_ref().map(|server| server.url()).unwrap();
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let index_size = |redis: &mut redis::aio::MultiplexedConnection| {
        let mut redis = redis.clone();
        async move {
            let size: u64 = redis::cmd("HLEN")
                .arg("sess:user:7")
                .query_async(&mut redis)
                .await
                .unwrap();
            size
        }
    };
    // Ten sessions, then nine of them gone behind the index's back (as
    // sessions whose keys expired): stale members.
    for _ in 0..10 {
        assert_eq!(log_in_as(&browser(), &proxy, 7).await.status(), 200);
    }
    let ids: Vec<String> = redis::cmd("HKEYS")
        .arg("sess:user:7")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(ids.len(), 10);
    for id in &ids[..9] {
        let deleted: u64 = redis::cmd("DEL")
            .arg(format!("sess:{id}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(deleted, 1, "session {id} was in Redis");
    }
    for _ in 10..63 {
        assert_eq!(log_in_as(&browser(), &proxy, 7).await.status(), 200);
    }
    assert_eq!(index_size(&mut redis).await, 63, "no login read the index");
    assert_eq!(log_in_as(&browser(), &proxy, 7).await.status(), 200);
    assert_eq!(
        index_size(&mut redis).await,
        55,
        "the login that made 64 members dropped the 9 stale ones"
    );
}

#[tokio::test]
async fn the_user_index_works_on_a_redis_cluster() {
    let test = "users::the_user_index_works_on_a_redis_cluster";
    let Some(cluster) = crate::test_server::RedisCluster::start(test) else {
        return;
    };
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let extra = format!(
        "{USERS}auth.max_sessions_per_user = 2\n[store]\nkind = \"redis\"\ncluster_urls = [{}]\n",
        urls.join(", ")
    );
    let upstream = Upstream::start().await;
    let first = Proxy::start(&upstream, &extra).await;
    let second = Proxy::start(&upstream, &extra).await;
    let browsers: Vec<_> = (0..3).map(|_| browser()).collect();
    for (n, browser) in browsers.iter().enumerate() {
        let proxy = if n % 2 == 0 { &first } else { &second };
        assert_eq!(log_in_as(browser, proxy, 7).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        session_of(&browsers[0], &first, &upstream).await,
        None,
        "evicted"
    );
    assert!(session_of(&browsers[1], &first, &upstream).await.is_some());
    let everywhere = browsers[2]
        .post(first.url("/password"))
        .header("x-test-set-session", "destroy-all")
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), 200);
    assert_eq!(session_of(&browsers[1], &second, &upstream).await, None);
    assert_eq!(session_of(&browsers[2], &second, &upstream).await, None);
}
