//! The Redis store failing and coming back, through the real proxy: 503
//! with `Retry-After` and no cookie change while Redis is down or slow,
//! anonymous traffic unharmed, recovery without a restart with the sessions
//! intact (one server and a cluster), and start-up against an unreachable
//! Redis (library and binary).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::redis::{no_set_cookie, redis_store, until_not_503};
use crate::support::*;
use crate::test_server::{RedisCluster, RedisServer};

#[tokio::test]
async fn a_redis_outage_is_a_503_that_keeps_the_cookie_and_recovery_needs_no_restart() {
    let test = "a_redis_outage_is_a_503_that_keeps_the_cookie_and_recovery_needs_no_restart";
    let Some(mut server) = RedisServer::start_persistent(test) else {
        return;
    };
    let upstream = Upstream::start().await;
    let extra = format!(
        "{}\n[[auth.protect]]\nprefix = \"/account\"\ndeny = \"401\"\n",
        redis_store(&server.url(), "command_timeout = \"300ms\"")
    );
    let proxy = Proxy::start(&upstream, &extra).await;
    let eager = format!("session.save_uninitialized = true\n{extra}");
    let eager = Proxy::start(&upstream, &eager).await;
    // Made through the other instance: one made here would be in this
    // instance's cache, which answers reads until the outage is noticed.
    let cookie = sid_pair(&log_in(&bare(), &eager, "ada").await);
    let with_cookie = |path: &str| bare().get(proxy.url(path)).header("cookie", &cookie);

    server.kill();
    let started = Instant::now();
    for (what, request) in [
        ("a protected route", with_cookie("/account")),
        ("a public route with a session cookie", with_cookie("/")),
        (
            "a write",
            with_cookie("/").header("x-test-set-session", r#"{"cart":[2]}"#),
        ),
        (
            "a logout",
            with_cookie("/logout").header("x-test-set-session", "destroy"),
        ),
        (
            "a new session",
            bare()
                .post(proxy.url("/login"))
                .header("x-test-set-session", r#"{"user":"eve"}"#),
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 503, "{what}");
        assert_eq!(response.headers()["retry-after"], "5", "{what}");
        no_set_cookie(&response, what);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503s come within the timeouts: {:?}",
        started.elapsed()
    );
    let seen_before = upstream.count();
    let anonymous = bare().get(proxy.url("/public")).send().await.unwrap();
    assert_eq!(
        anonymous.status(),
        200,
        "anonymous public requests still pass"
    );
    no_set_cookie(&anonymous, "an anonymous request");
    assert_eq!(upstream.count(), seen_before + 1);
    assert_eq!(upstream.last().header("x-session"), None);
    let uninitialized = bare().get(eager.url("/public")).send().await.unwrap();
    assert_eq!(
        uninitialized.status(),
        200,
        "with save_uninitialized too: the empty session is skipped"
    );
    no_set_cookie(&uninitialized, "save_uninitialized while the store is down");

    server.restart();
    let back = until_not_503(|| with_cookie("/account")).await;
    assert_eq!(
        back.status(),
        200,
        "recovered without a restart of the proxy"
    );
    no_set_cookie(&back, "a read after recovery");
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}})),
        "the session survived; the failed write and logout did not happen"
    );
}

#[tokio::test]
async fn a_redis_slower_than_the_command_timeout_is_a_503() {
    let Some(server) = RedisServer::start("a_redis_slower_than_the_command_timeout_is_a_503")
    else {
        return;
    };
    let upstream = Upstream::start().await;
    let store = redis_store(&server.url(), "command_timeout = \"200ms\"");
    let proxy = Proxy::start(&upstream, &store).await;
    // Made through another instance: one made here would be in this
    // instance's cache, and its reads would not need Redis.
    let elsewhere = Proxy::start(&upstream, &store).await;
    let cookie = sid_pair(&log_in(&bare(), &elsewhere, "ada").await);
    // Redis stops answering clients for 1.5 s.
    assert_eq!(
        server.command(&["CLIENT", "PAUSE", "1500", "ALL"]).unwrap(),
        "+OK"
    );
    let started = Instant::now();
    let response = visit(&proxy, &cookie).await;
    assert_eq!(response.status(), 503);
    no_set_cookie(&response, "a slow read");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let back = until_not_503(|| bare().get(proxy.url("/")).header("cookie", &cookie)).await;
    assert_eq!(back.status(), 200);
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_outage_is_a_503_and_recovery_needs_no_restart() {
    let test = "a_cluster_outage_is_a_503_and_recovery_needs_no_restart";
    let Some(mut cluster) = RedisCluster::start_persistent(test) else {
        return;
    };
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let store = format!(
        "[store]\nkind = \"redis\"\ncluster_urls = [{}]\ncommand_timeout = \"300ms\"\n",
        urls.join(", ")
    );
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, &store).await;
    let cookie = sid_pair(&log_in(&bare(), &proxy, "ada").await);
    let with_cookie = || bare().get(proxy.url("/")).header("cookie", &cookie);

    cluster.kill();
    let response = with_cookie().send().await.unwrap();
    assert_eq!(response.status(), 503);
    no_set_cookie(&response, "a read while the cluster is down");
    let anonymous = bare().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 200);

    cluster.restart();
    let back = until_not_503(with_cookie).await;
    assert_eq!(
        back.status(),
        200,
        "recovered without a restart of the proxy"
    );
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}}))
    );
}

#[tokio::test]
async fn start_up_fails_clearly_when_redis_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "upstream.url = \"http://127.0.0.1:1\"\nsession.secrets = [\"{SECRET}\"]\n{}",
        redis_store(
            &format!("redis://:s3cret@127.0.0.1:{port}"),
            "connect_timeout = \"300ms\""
        )
    );
    let config = crate::support::config(&text).expect("the config is valid offline");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let error = cloakroom::run(config, listener, std::future::pending())
        .await
        .expect_err("nothing listens on that port");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, cloakroom::Error::StoreUnavailable(_)),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains(&format!("redis://:***@127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(shown.contains("store.url"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn the_binary_checks_offline_and_refuses_to_serve_without_redis_before_binding() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Taken for the whole test: a binary that bound before connecting to
    // Redis would fail on this port instead, and say so.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = occupied.local_addr().unwrap();
    let path = std::env::temp_dir().join(format!(
        "cloakroom-redis-test-{}-{port}.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        format!(
            "server.listen = \"{listen}\"\nupstream.url = \"http://127.0.0.1:1\"\nsession.secrets = [\"{SECRET}\"]\n{}",
            redis_store(&format!("redis://127.0.0.1:{port}"), "connect_timeout = \"300ms\"")
        ),
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_cloakroom");
    let check = std::process::Command::new(binary)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let serve = std::process::Command::new(binary)
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    drop(occupied);
    assert_eq!(
        check.status.code(),
        Some(0),
        "check does not connect: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot use the Redis session store at redis://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("server.listen"),
        "the store is connected before any port is bound: {stderr}"
    );
}
