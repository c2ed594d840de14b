//! The session header protocol: a client can neither send the upstream session
//! or field headers nor drive `Set-Session`, and `Set-Session` never reaches it.

use serde_json::json;

use crate::cookies::session_names;
use crate::routes::{raw_request, status};
use crate::support::*;

pub(crate) const FIELDS: &str = "session.headers.fields = { \"X-User\" = \"/user/name\" }\n";

fn spoofed(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("X-Session", r#"{"user":{"name":"admin"}}"#)
        .header(
            "X-Session-Id",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .header("x_session", r#"{"user":{"name":"admin"}}"#)
        .header("X-Session-Anything", "1")
        .header("X-Session-Omitted", "too-large")
        .header("Set-Session", r#"{"user":{"name":"admin"}}"#)
        .header("X-User", "admin")
        .header("X_User", "admin")
        // PHP and CGI read `.` as `_` (and so as `-`).
        .header("X.User", "root")
        .header("X.Session", r#"{"user":{"name":"root"}}"#)
        .header(
            "X.Session.Id",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .header(
            "x.session-id",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .header("Set.Session", r#"{"user":{"name":"root"}}"#)
}

#[tokio::test]
async fn a_proxy_header_never_reaches_the_upstream() {
    // httpoxy: CGI turns `Proxy` into HTTP_PROXY, the outgoing proxy of
    // many HTTP clients.
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let response = bare()
        .get(proxy.url("/"))
        .header("Proxy", "http://attacker.example:8080")
        .header("proxy", "http://attacker.example:8081")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().header("proxy"), None);
}

#[tokio::test]
async fn an_upstream_set_session_in_another_spelling_never_reaches_the_client() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    for name in ["Set.Session", "Set_Session", "set.session"] {
        let response = bare()
            .get(proxy.url("/"))
            .header("x-test-header", format!("{name}: {{\"user\":\"x\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let names: Vec<String> = response
            .headers()
            .keys()
            .map(|n| n.as_str().replace(['_', '.'], "-"))
            .collect();
        assert!(
            !names.iter().any(|n| n == "set-session"),
            "{name}: {names:?}"
        );
    }
}

#[tokio::test]
async fn client_sent_session_and_field_headers_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, FIELDS).await;
    let response = spoofed(bare().get(proxy.url("/")))
        .header("X-Public", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-public"), Some("kept"), "other headers pass");
    assert_eq!(session_names(&seen), Vec::<String>::new());
}

#[tokio::test]
async fn a_logged_in_upstream_sees_only_the_real_session_and_field_headers() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, FIELDS).await;
    let client = browser();
    let pair = sid_pair(&log_in(&client, &proxy, "ada").await);
    spoofed(client.get(proxy.url("/"))).send().await.unwrap();
    let seen = upstream.last();
    assert_eq!(seen.all("x-session"), [r#"{"user":{"name":"ada"}}"#]);
    assert_eq!(seen.all("x-user"), ["ada"]);
    let ids = seen.all("x-session-id");
    assert_eq!(ids.len(), 1);
    assert!(pair.contains(&ids[0]), "the real id: {ids:?} vs {pair}");
    let mut names = session_names(&seen);
    names.sort();
    assert_eq!(names, ["x-session", "x-session-id", "x-user"]);
}

#[tokio::test]
async fn a_connection_header_cannot_remove_the_injected_session_headers() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, FIELDS).await;
    let pair = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    let request = format!(
        "GET /me HTTP/1.1\r\nHost: {addr}\r\nCookie: {pair}\r\n\
         Connection: X-Session, X-Session-Id, X-User, close\r\n\r\n",
        addr = proxy.addr
    );
    let response = raw_request(proxy.addr, request.as_bytes()).await;
    assert_eq!(status(&response), 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.uri, "/me");
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
    assert_eq!(seen.all("x-user"), ["ada"]);
    assert_eq!(seen.all("x-session-id").len(), 1);
}

#[tokio::test]
async fn set_session_sent_by_a_client_creates_no_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    for spelling in ["Set-Session", "set_session"] {
        let response = client
            .get(proxy.url("/"))
            .header(spelling, r#"{"user":{"name":"admin"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(set_cookies(&response, "sid"), Vec::<String>::new());
    }
    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(upstream.last().header("x-session"), None, "nothing stored");
}

#[tokio::test]
async fn set_session_sent_by_a_client_does_not_change_its_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    for command in ["destroy", "regenerate", r#"{"user":{"name":"admin"}}"#] {
        let response = client
            .get(proxy.url("/"))
            .header("Set-Session", command)
            .send()
            .await
            .unwrap();
        assert_eq!(
            set_cookies(&response, "sid"),
            Vec::<String>::new(),
            "{command}"
        );
    }
    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}}))
    );
}

#[tokio::test]
async fn set_session_never_reaches_the_client_in_any_spelling() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let response = client
        .get(proxy.url("/"))
        .header("x-test-set-session", r#"{"cart":[1]}"#)
        .header("x-test-header", r#"Set_Session: {"cart":[2]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let leaked: Vec<_> = response
        .headers()
        .keys()
        .filter(|n| n.as_str().replace('_', "-") == "set-session")
        .collect();
    assert_eq!(leaked, Vec::<&http::HeaderName>::new());
}
