//! Failures and who they are blamed on: an unreachable or slow upstream, a
//! malformed `Set-Session` (refused whole, store untouched, never shown to
//! the client), and the store write finishing before the response leaves.

use serde_json::json;

use crate::support::*;

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Every malformed `Set-Session` the proxy must refuse: what it is, the
/// value, and the extra config that makes it malformed.
fn malformed_set_sessions() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("plain text", "not json".into(), ""),
        ("a JSON array", "[1,2]".into(), ""),
        ("a JSON string", "\"str\"".into(), ""),
        ("broken JSON", "{broken".into(), ""),
        ("a verb in the wrong case", "Regenerate".into(), ""),
        (
            "a value over max_set_session_bytes",
            json!({"notes": "x".repeat(120)}).to_string(),
            "session.max_set_session_bytes = 100\n",
        ),
        (
            "a patch that grows the session over max_bytes",
            json!({"notes": "x".repeat(250)}).to_string(),
            "session.max_bytes = 200\n",
        ),
        ("the reserved key", r#"{"cookie":{}}"#.into(), ""),
    ]
}

/// Asserts the response is the proxy's 502 and carries neither the
/// upstream's `Set-Session` nor a session cookie.
async fn assert_refused(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 502, "{what}");
    assert!(
        response.headers().get("set-session").is_none(),
        "{what}: Set-Session reached the client"
    );
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{what}: a cookie was set: {:?}",
        response.headers().get_all("set-cookie")
    );
    assert_eq!(response.text().await.unwrap(), "bad gateway\n", "{what}");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_with_a_short_body() {
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"http://127.0.0.1:{}\"\nsession.secrets = [\"{SECRET}\"]\n",
        dead_port()
    ))
    .await;
    let response = browser().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert_eq!(body, "bad gateway\n", "short, and reveals nothing internal");
}

#[tokio::test]
async fn an_upstream_slower_than_the_response_timeout_is_a_504() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "upstream.response_timeout = \"300ms\"\n").await;
    let response = browser()
        .get(proxy.url("/slow"))
        .header("x-test-delay-ms", "2000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.text().await.unwrap(), "upstream timed out\n");
    assert_eq!(upstream.count(), 1, "the upstream did get the request");
}

#[tokio::test]
async fn malformed_set_session_is_a_502_and_leaves_a_logged_in_session_unchanged() {
    let upstream = Upstream::start().await;
    for (what, value, extra) in malformed_set_sessions() {
        let proxy = Proxy::start(&upstream, extra).await;
        let client = browser();
        log_in(&client, &proxy, "ada").await;
        client.get(proxy.url("/")).send().await.unwrap();
        let id = upstream.last().header("x-session-id").unwrap().to_owned();

        let response = client
            .post(proxy.url("/save"))
            .header("x-test-set-session", &value)
            .send()
            .await
            .unwrap();
        assert_refused(response, what).await;

        client.get(proxy.url("/")).send().await.unwrap();
        let seen = upstream.last();
        assert_eq!(
            seen.session(),
            Some(json!({"user": {"name": "ada"}})),
            "{what}: session data changed"
        );
        assert_eq!(
            seen.header("x-session-id"),
            Some(id.as_str()),
            "{what}: session moved"
        );
    }
}

#[tokio::test]
async fn malformed_set_session_creates_no_session_for_an_anonymous_client() {
    let upstream = Upstream::start().await;
    for (what, value, extra) in malformed_set_sessions() {
        let proxy = Proxy::start(&upstream, extra).await;
        let client = browser();
        let response = client
            .get(proxy.url("/"))
            .header("x-test-set-session", &value)
            .send()
            .await
            .unwrap();
        assert_refused(response, what).await;

        client.get(proxy.url("/")).send().await.unwrap();
        let seen = upstream.last();
        assert_eq!(seen.header("x-session"), None, "{what}");
        assert_eq!(seen.header("x-session-id"), None, "{what}");
    }
}

#[tokio::test]
async fn a_good_and_a_bad_set_session_in_one_response_apply_neither() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "session.max_bytes = 200\n").await;

    // Logged in: a valid patch followed by garbage.
    let client = browser();
    let pair = sid_pair(&log_in(&client, &proxy, "ada").await);
    let response = client
        .get(proxy.url("/"))
        .header("x-test-set-session", r#"{"cart":[1]}"#)
        .header("x-test-set-session", "not json")
        .send()
        .await
        .unwrap();
    assert_refused(response, "patch + garbage").await;

    // Logged in: regenerate, then a patch that parses but is too big.
    let response = client
        .get(proxy.url("/"))
        .header("x-test-set-session", "regenerate")
        .header(
            "x-test-set-session",
            json!({"notes": "x".repeat(250)}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_refused(response, "regenerate + oversized patch").await;

    visit(&proxy, &pair).await;
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}})),
        "neither the patch nor the regenerate was applied"
    );

    // Anonymous: the good patch would have created a session and a cookie.
    let anonymous = browser();
    let response = anonymous
        .get(proxy.url("/"))
        .header("x-test-set-session", r#"{"cart":[1]}"#)
        .header("x-test-set-session", "[1,2]")
        .send()
        .await
        .unwrap();
    assert_refused(response, "anonymous patch + array").await;
    anonymous.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(upstream.last().header("x-session-id"), None);
}

#[tokio::test]
async fn error_responses_never_carry_set_session_to_the_client() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "upstream.response_timeout = \"300ms\"\n").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;

    let refused = client
        .get(proxy.url("/"))
        .header("x-test-status", "404")
        .header("x-test-set-session", r#"{"secret_note":"hush"}"#)
        .header("x-test-set-session", "Destroy")
        .header("x-test-header", r#"set_session: {"secret_note":"hush"}"#)
        .send()
        .await
        .unwrap();
    let timed_out = client
        .get(proxy.url("/"))
        .header("x-test-delay-ms", "2000")
        .header("x-test-set-session", r#"{"secret_note":"hush"}"#)
        .send()
        .await
        .unwrap();
    let failed = client
        .get(proxy.url("/"))
        .header("x-test-status", "500")
        .header("x-test-set-session", r#"{"secret_note":"hush"}"#)
        .header("x-test-header", r#"set_session: {"secret_note":"hush"}"#)
        .send()
        .await
        .unwrap();

    for (response, status) in [(refused, 502), (timed_out, 504), (failed, 500)] {
        assert_eq!(response.status(), status);
        for (name, value) in response.headers() {
            let name = name.as_str().replace('_', "-");
            assert_ne!(name, "set-session", "{status}: Set-Session leaked");
            assert!(
                !value.as_bytes().windows(4).any(|w| w == b"hush"),
                "{status}: session data leaked in {name}"
            );
        }
        let body = response.text().await.unwrap();
        assert!(!body.contains("hush"), "{status}: session data in {body:?}");
    }
}

#[tokio::test]
async fn the_store_write_completes_before_the_login_response_leaves() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    for n in 0..20 {
        let name = format!("user{n}");
        let pair = sid_pair(&log_in(&browser(), &proxy, &name).await);
        // A fresh client: a new connection, racing nothing but the store.
        let response = bare()
            .get(proxy.url("/me"))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            upstream.last().session(),
            Some(json!({"user": {"name": name}})),
            "round {n}: the session was not yet in the store"
        );
    }
}
