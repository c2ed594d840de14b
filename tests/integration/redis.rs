//! The Redis store through the real proxy: sessions shared by instances and
//! with connect-redis, concurrent writers, a Redis Cluster. Each test starts
//! its own `redis-server` (see `test_server`); without one the test is
//! skipped loudly, and fails under CI=true. Failures and recovery are in
//! `redis_failures`.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cloakroom::config::Secret;
use cloakroom::SessionId;
use cloakroom::Signer;
use serde_json::{json, Value};

use crate::support::*;
use crate::test_server::{external_url, RedisCluster, RedisServer};

/// A Redis for tests that only need some Redis: `REDIS_URL` or a fresh
/// server (kept alive by the returned handle).
pub fn some_redis(test: &str) -> Option<(String, Option<RedisServer>)> {
    if let Some(url) = external_url() {
        return Some((url, None));
    }
    let server = RedisServer::start(test)?;
    Some((server.url(), Some(server)))
}

pub fn redis_store(url: &str, extra: &str) -> String {
    format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\n{extra}")
}

pub async fn redis_client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// express-session's encoding of a signed value in a cookie.
fn cookie_value(signed: &str) -> String {
    signed
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('+', "%2B")
}

/// The id part of a `sid=s%3A<id>.<sig>` pair.
fn id_of(pair: &str) -> String {
    let value = pair.trim_start_matches("sid=s%3A");
    value.split('.').next().unwrap().to_owned()
}

pub fn no_set_cookie(response: &reqwest::Response, what: &str) {
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert!(cookies.is_empty(), "{what}: a cookie was sent: {cookies:?}");
}

#[tokio::test]
async fn two_instances_on_one_redis_share_a_session() {
    let Some((url, _server)) = some_redis("two_instances_on_one_redis_share_a_session") else {
        return;
    };
    instances_share_a_session(&url, &url).await;
}

#[tokio::test]
async fn an_instance_on_a_unix_socket_shares_sessions_with_one_on_tcp() {
    let Some(server) = RedisServer::start_with_socket("an_instance_on_a_unix_socket_shares") else {
        return;
    };
    instances_share_a_session(&server.url(), &server.socket_url()).await;
    instances_share_a_session(&server.socket_url(), &server.url()).await;
}

/// Logs in through an instance on `first_url`, then reads, writes and
/// destroys the session through one on `second_url`, each step seen by the
/// first.
async fn instances_share_a_session(first_url: &str, second_url: &str) {
    let upstream = Upstream::start().await;
    let first = Proxy::start(&upstream, &redis_store(first_url, "")).await;
    let second = Proxy::start(&upstream, &redis_store(second_url, "")).await;
    let login = log_in(&bare(), &first, "ada").await;
    let cookie = sid_pair(&login);

    let read = bare().get(second.url("/")).header("cookie", &cookie);
    assert_eq!(read.send().await.unwrap().status(), 200);
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}}))
    );

    let write = bare()
        .get(second.url("/"))
        .header("cookie", &cookie)
        .header("x-test-set-session", r#"{"cart":[1]}"#);
    assert_eq!(write.send().await.unwrap().status(), 200);
    visit(&first, &cookie).await;
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}, "cart": [1]}))
    );

    let logout = bare()
        .get(second.url("/logout"))
        .header("cookie", &cookie)
        .header("x-test-set-session", "destroy");
    let logout = logout.send().await.unwrap();
    assert!(set_cookies(&logout, "sid")[0].contains("Expires=Thu, 01 Jan 1970"));
    visit(&first, &cookie).await;
    assert_eq!(
        upstream.last().session(),
        None,
        "destroyed on every instance"
    );
}

#[tokio::test]
async fn a_connect_redis_record_written_with_plain_commands_is_served() {
    let Some((url, _server)) =
        some_redis("a_connect_redis_record_written_with_plain_commands_is_served")
    else {
        return;
    };
    // What express-session + connect-redis store: a 32-character id, the
    // cookie object first, `SET sess:<id> <json> EX <seconds>`.
    let mut random = [0u8; 24];
    getrandom::fill(&mut random).unwrap();
    let id = SessionId::parse(&URL_SAFE_NO_PAD.encode(random)).unwrap();
    let key = format!("sess:{}", id.as_str());
    let record = json!({
        "cookie": {"originalMaxAge": 3_600_000, "expires": "2099-01-01T00:00:00.000Z", "secure": false, "httpOnly": true, "path": "/", "sameSite": "strict"},
        "user": {"name": "grace"},
        "views": 7
    });
    let mut redis = redis_client(&url).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(record.to_string())
        .arg("EX")
        .arg(3600)
        .query_async(&mut redis)
        .await
        .unwrap();

    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, &redis_store(&url, "")).await;
    let signer = Signer::new(&[Secret::new(SECRET.to_owned())]);
    let cookie = format!("sid={}", cookie_value(&signer.sign(&id)));
    let response = visit(&proxy, &cookie).await;
    assert_eq!(response.status(), 200);
    no_set_cookie(&response, "a read");
    let seen = upstream.last();
    assert_eq!(
        seen.session(),
        Some(json!({"user": {"name": "grace"}, "views": 7})),
        "the data, without the cookie object"
    );
    assert_eq!(seen.header("x-session-id"), Some(id.as_str()));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        (3590..=3600).contains(&ttl),
        "a read leaves the expiry alone: {ttl}"
    );

    let write = bare()
        .get(proxy.url("/"))
        .header("cookie", &cookie)
        .header("x-test-set-session", r#"{"views":8}"#);
    assert_eq!(write.send().await.unwrap().status(), 200);
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["views"], json!(8));
    assert_eq!(stored["user"], json!({"name": "grace"}));
    assert_eq!(
        stored["cookie"]["sameSite"],
        json!("strict"),
        "the express cookie settings are kept"
    );
    assert_eq!(stored["cookie"]["secure"], json!(false));
}

#[tokio::test]
async fn a_session_written_by_cloakroom_is_a_connect_redis_record() {
    let Some((url, _server)) =
        some_redis("a_session_written_by_cloakroom_is_a_connect_redis_record")
    else {
        return;
    };
    let upstream = Upstream::start().await;
    let extra = format!(
        "cookie.max_age = \"2h\"\ncookie.same_site = \"strict\"\ncookie.domain = \"example.test\"\n{}",
        redis_store(&url, "prefix = \"myapp:\"")
    );
    let proxy = Proxy::start(&upstream, &extra).await;
    let login = log_in(&bare(), &proxy, "ada").await;
    let id = id_of(&sid_pair(&login));

    let mut redis = redis_client(&url).await;
    let key = format!("myapp:{id}");
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(stored.starts_with("{\"cookie\":{"), "{stored}");
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["user"], json!({"name": "ada"}));
    let cookie = &stored["cookie"];
    assert_eq!(cookie["originalMaxAge"], json!(7_200_000));
    assert_eq!(cookie["httpOnly"], json!(true));
    assert_eq!(cookie["path"], json!("/"));
    assert_eq!(cookie["domain"], json!("example.test"));
    assert_eq!(cookie["sameSite"], json!("strict"));
    assert!(
        cookie.get("secure").is_none(),
        "secure = auto is decided per request"
    );
    // connect-redis's TTL: until cookie.expires.
    let expires = cookie["expires"].as_str().unwrap();
    let expires = cloakroom::store::redis::record::parse_js_date(expires).unwrap();
    let until_expires = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let pttl = Duration::from_millis(pttl as u64);
    assert!(
        pttl.abs_diff(until_expires) < Duration::from_secs(2),
        "{pttl:?} vs {until_expires:?}"
    );
    assert!(pttl > Duration::from_secs(7190), "{pttl:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_patches_on_one_session_all_survive() {
    let Some((url, _server)) =
        some_redis("a_hundred_concurrent_patches_on_one_session_all_survive")
    else {
        return;
    };
    let upstream = Upstream::start().await;
    let proxies = [
        Proxy::start(&upstream, &redis_store(&url, "")).await,
        Proxy::start(&upstream, &redis_store(&url, "")).await,
    ];
    let cookie = sid_pair(&log_in(&bare(), &proxies[0], "ada").await);
    let client = bare();
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let request = client
                .get(proxies[n % 2].url("/"))
                .header("cookie", &cookie)
                .header(
                    "x-test-set-session",
                    json!({ format!("k{n}"): n }).to_string(),
                );
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status(), response.text().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    client
        .get(proxies[1].url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let session = upstream.last().session().unwrap();
    for n in 0..100 {
        assert_eq!(session[format!("k{n}")], json!(n), "k{n} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_serves_sessions() {
    let Some(cluster) = RedisCluster::start("a_redis_cluster_serves_sessions") else {
        return;
    };
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let store = format!(
        "[store]\nkind = \"redis\"\ncluster_urls = [{}]\n",
        urls.join(", ")
    );
    let upstream = Upstream::start().await;
    let first = Proxy::start(&upstream, &store).await;
    let second = Proxy::start(&upstream, &store).await;
    let anonymous_visit = bare()
        .get(first.url("/"))
        .header("x-test-set-session", r#"{"cart":[1]}"#)
        .send()
        .await
        .unwrap();
    let before_login = sid_pair(&anonymous_visit);
    // Login regenerates: the new id is (almost surely) in another slot.
    let login = bare()
        .post(second.url("/login"))
        .header("cookie", &before_login)
        .header("x-test-set-session", "regenerate")
        .header("x-test-set-session", r#"{"user":{"name":"ada"}}"#)
        .send()
        .await
        .unwrap();
    let cookie = sid_pair(&login);
    assert_ne!(cookie, before_login);
    visit(&first, &before_login).await;
    assert_eq!(upstream.last().session(), None, "the old id is gone");
    visit(&first, &cookie).await;
    assert_eq!(
        upstream.last().session(),
        Some(json!({"cart": [1], "user": {"name": "ada"}}))
    );
    let logout = bare()
        .get(second.url("/logout"))
        .header("cookie", &cookie)
        .header("x-test-set-session", "destroy")
        .send()
        .await
        .unwrap();
    assert!(set_cookies(&logout, "sid")[0].contains("Expires=Thu, 01 Jan 1970"));
    visit(&first, &cookie).await;
    assert_eq!(upstream.last().session(), None);
}

/// Sends `request` until it is answered with something else than 503, for
/// up to 10 s.
pub async fn until_not_503(request: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = request().send().await.unwrap();
        if response.status() != 503 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
