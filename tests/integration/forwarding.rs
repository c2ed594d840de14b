//! Forwarding and hop-by-hop headers: what an untrusted peer or a trusted proxy
//! may claim (X-Forwarded-*, Forwarded, HTTPS for the cookie), Via, hop-by-hop hygiene.

use crate::cookies::folded_names;
use crate::routes::{raw_request, status};
use crate::support::*;

/// The `Secure` attribute is set on a `Set-Cookie` line.
fn is_secure(set_cookie: &str) -> bool {
    set_cookie
        .split(';')
        .skip(1)
        .any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"))
}

fn forwarding_claims(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request
        .header("X-Forwarded-For", "1.2.3.4")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil")
        .header("X_Forwarded_Port", "443")
        .header("Forwarded", "for=1.2.3.4;proto=https;host=evil")
        .header("X-Real-IP", "1.2.3.4")
        .header("X-Original-URL", "/account")
        .header("X-Rewrite-URL", "/account")
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced_with_the_truth() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    forwarding_claims(bare().get(proxy.url("/")))
        .send()
        .await
        .unwrap();
    let seen = upstream.last();
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.all("x-forwarded-host"), [proxy.addr.to_string()]);
    for name in [
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(
            !folded_names(&seen).iter().any(|n| n == name),
            "{name} was forwarded: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_extended() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream,
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    )
    .await;
    forwarding_claims(bare().get(proxy.url("/")))
        .send()
        .await
        .unwrap();
    let seen = upstream.last();
    assert_eq!(seen.all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.all("x-forwarded-host"), ["evil"]);
    assert_eq!(seen.header("x-real-ip"), Some("1.2.3.4"));

    // A chain in two fields becomes one, on a GET and on a POST alike.
    for request in [
        bare().get(proxy.url("/")),
        bare().post(proxy.url("/echo")).body("x"),
    ] {
        request
            .header("X-Forwarded-For", "1.2.3.4")
            .header("X-Forwarded-For", "5.6.7.8")
            .send()
            .await
            .unwrap();
        let seen = upstream.last();
        assert_eq!(seen.all("x-forwarded-for"), ["1.2.3.4, 5.6.7.8, 127.0.0.1"]);
        assert_eq!(seen.all("x-forwarded-proto"), ["http"]);
    }

    bare().get(proxy.url("/")).send().await.unwrap();
    let seen = upstream.last();
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"], "chain starts");
    assert_eq!(seen.all("x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn https_reported_by_a_trusted_proxy_makes_the_auto_cookie_secure() {
    let upstream = Upstream::start().await;
    let trusting = Proxy::start(
        &upstream,
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[cookie]\nsecure = \"auto\"\n",
    )
    .await;
    let login = log_in(&bare(), &trusting, "ada").await;
    let plain = &set_cookies(&login, "sid")[0];
    assert!(!is_secure(plain), "plain HTTP: {plain}");

    let response = bare()
        .post(trusting.url("/login"))
        .header("X-Forwarded-Proto", "https")
        .header("x-test-set-session", r#"{"user":{"name":"ada"}}"#)
        .send()
        .await
        .unwrap();
    let cookie = &set_cookies(&response, "sid")[0];
    assert!(is_secure(cookie), "{cookie}");
}

#[tokio::test]
async fn https_claimed_by_an_untrusted_peer_does_not_make_the_cookie_secure() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[cookie]\nsecure = \"auto\"\n").await;
    let response = bare()
        .post(proxy.url("/login"))
        .header("X-Forwarded-Proto", "https")
        .header("x-test-set-session", r#"{"user":{"name":"ada"}}"#)
        .send()
        .await
        .unwrap();
    let cookie = &set_cookies(&response, "sid")[0];
    assert!(!is_secure(cookie), "{cookie}");
    assert_eq!(upstream.last().header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn via_is_added_both_ways_only_when_enabled() {
    let upstream = Upstream::start().await;
    let quiet = Proxy::start(&upstream, "").await;
    let response = bare().get(quiet.url("/")).send().await.unwrap();
    assert!(response.headers().get("via").is_none());
    assert_eq!(upstream.last().header("via"), None);

    let proxy = Proxy::start(&upstream, "[server]\nvia = true\n").await;
    let response = bare().get(proxy.url("/")).send().await.unwrap();
    let via: Vec<_> = response
        .headers()
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(via, ["1.1 cloakroom"]);
    assert_eq!(upstream.last().all("via"), ["1.1 cloakroom"]);

    // A request that came through another proxy: the list is extended,
    // ours last, on a GET and on a POST alike (each client of the
    // upstream writes the headers the proxy adds).
    for request in [
        bare().get(proxy.url("/")),
        bare().post(proxy.url("/echo")).body("x"),
    ] {
        request.header("Via", "1.1 edge").send().await.unwrap();
        let seen = upstream.last();
        assert_eq!(seen.all("via"), ["1.1 edge", "1.1 cloakroom"]);
        assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    }
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let request = format!(
        "GET /hop HTTP/1.1\r\nHost: {addr}\r\nConnection: close, X-Private\r\n\
         X-Private: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Proxy-Connection: keep-alive\r\nX-Public: 1\r\n\r\n",
        addr = proxy.addr
    );
    let response = raw_request(proxy.addr, request.as_bytes()).await;
    assert_eq!(status(&response), 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.uri, "/hop");
    assert_eq!(
        seen.header("x-public"),
        Some("1"),
        "end-to-end headers pass"
    );
    for name in ["x-private", "keep-alive", "te", "proxy-connection"] {
        assert_eq!(seen.header(name), None, "{name} was forwarded");
    }
    assert!(
        !seen
            .all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("x-private")),
        "the client's Connection header is not forwarded"
    );
}

#[tokio::test]
async fn response_headers_named_in_the_upstream_connection_header_are_dropped() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let response = bare()
        .get(proxy.url("/"))
        .header("x-test-header", "Connection: x-secret")
        .header("x-test-header", "X-Secret: 1")
        .header("x-test-header", "X-Visible: 1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-visible"], "1");
    assert!(
        response.headers().get("x-secret").is_none(),
        "{:?}",
        response.headers()
    );
}
