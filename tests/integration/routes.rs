//! Login-only routes: who is let through, how everyone else is turned away
//! (redirect or 401), where prefixes end, and that no spelling of a path
//! reaches a protected resource anonymously.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const PROTECT_ACCOUNT: &str = "[[auth.protect]]\nprefix = \"/account\"\n";

/// Sends one HTTP/1.1 request exactly as written, over a fresh connection,
/// and returns the whole response. reqwest normalises paths before sending
/// (dot segments, `%2e`), so bypass attempts need this. The request must
/// ask for `Connection: close`, since the response is read to the end.
pub(crate) async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the proxy closes the connection after answering")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// A `GET` of `target` as written, with `headers`, closing afterwards.
pub(crate) fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.into_bytes()
}

/// The status code of a raw response.
pub(crate) fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// The first value of header `name` in a raw response.
pub(crate) fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// The body of a raw response (not chunked).
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// The decoded `next` parameter of a login redirect.
fn next_of(location: &str) -> String {
    let encoded = location
        .split_once("next=")
        .unwrap_or_else(|| panic!("no next in {location}"))
        .1;
    let bytes = encoded.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&encoded[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

async fn protected(upstream: &Upstream, deny: &str) -> Proxy {
    Proxy::start(
        upstream,
        &format!("[[auth.protect]]\nprefix = \"/account\"\ndeny = \"{deny}\"\n"),
    )
    .await
}

#[tokio::test]
async fn anonymous_page_request_redirects_to_login_with_the_path_and_query_as_next() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let response = browser()
        .get(proxy.url("/account/x?a=1&b=2"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "/login?next=%2Faccount%2Fx%3Fa%3D1%26b%3D2"
    );
    assert_eq!(
        upstream.count(),
        0,
        "a denied request never reaches the app"
    );
}

#[tokio::test]
async fn anonymous_api_request_gets_a_401_json_body() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let response = browser()
        .get(proxy.url("/account/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("location").is_none());
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "a JSON client gets JSON"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "login required"}));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn anonymous_post_from_a_browser_gets_401_not_a_redirect() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let response = browser()
        .post(proxy.url("/account/settings"))
        .header("accept", "text/html")
        .body("email=a%40b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "a redirect would drop the form");
    assert!(response.headers().get("location").is_none());
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn deny_redirect_always_redirects_and_deny_401_never_does() {
    let upstream = Upstream::start().await;
    let redirect = protected(&upstream, "redirect").await;
    let unauthorized = protected(&upstream, "401").await;
    let client = browser();
    for (method, accept) in [
        (reqwest::Method::GET, "text/html"),
        (reqwest::Method::GET, "application/json"),
        (reqwest::Method::POST, "text/html"),
        (reqwest::Method::POST, "application/json"),
    ] {
        let response = client
            .request(method.clone(), redirect.url("/account/x"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302, "redirect: {method} {accept}");
        assert_eq!(
            response.headers()["location"],
            "/login?next=%2Faccount%2Fx",
            "redirect: {method} {accept}"
        );

        let response = client
            .request(method.clone(), unauthorized.url("/account/x"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "401: {method} {accept}");
        assert!(response.headers().get("location").is_none());
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn next_is_always_a_same_origin_relative_path() {
    let upstream = Upstream::start().await;
    let proxy = protected(&upstream, "redirect").await;
    for target in [
        "//account",
        "///account/x",
        "//account//evil.com",
        "//account/..//account/x?//evil.com",
        "/account/%2e%2e//evil.com/../account",
    ] {
        let response = raw_request(proxy.addr, &raw_get(proxy.addr, target, &[])).await;
        assert_eq!(status(&response), 302, "{target}: {response}");
        let location = header(&response, "location").unwrap();
        let encoded = location.strip_prefix("/login?next=").unwrap();
        assert!(
            encoded.starts_with("%2F") && !encoded[3..].starts_with("%2F"),
            "{target}: next must not be protocol-relative: {location}"
        );
        let next = next_of(location);
        assert!(
            next.starts_with('/') && !next.starts_with("//") && !next.contains('\\'),
            "{target}: {next}"
        );
    }
    let response = raw_request(proxy.addr, &raw_get(proxy.addr, "//account", &[])).await;
    assert_eq!(
        header(&response, "location"),
        Some("/login?next=%2Faccount")
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn logged_in_users_reach_protected_paths_with_their_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let response = client
        .get(proxy.url("/account/x?a=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.uri, "/account/x?a=1");
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
}

#[tokio::test]
async fn a_session_without_the_identity_key_is_not_logged_in() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let client = browser();
    let cart = client
        .get(proxy.url("/shop"))
        .header("x-test-set-session", r#"{"cart":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set_cookies(&cart, "sid").len(), 1, "a session exists");

    let before = upstream.count();
    let response = client.get(proxy.url("/account")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(upstream.count(), before);

    client.get(proxy.url("/shop")).send().await.unwrap();
    assert_eq!(
        upstream.last().session(),
        Some(json!({"cart": 1})),
        "the session itself is live"
    );
}

#[tokio::test]
async fn setting_the_identity_key_to_null_logs_out() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let response = client.get(proxy.url("/account")).send().await.unwrap();
    assert_eq!(response.status(), 200, "logged in first");

    client
        .get(proxy.url("/shop"))
        .header("x-test-set-session", r#"{"user":null,"cart":1}"#)
        .send()
        .await
        .unwrap();
    let before = upstream.count();
    let response = client.get(proxy.url("/account")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(upstream.count(), before);

    client.get(proxy.url("/shop")).send().await.unwrap();
    assert_eq!(upstream.last().session(), Some(json!({"cart": 1})));
}

#[tokio::test]
async fn a_prefix_protects_whole_segments_only() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let client = browser();
    for path in ["/account", "/account/", "/account/x", "/account/x/y"] {
        let before = upstream.count();
        let response = client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} is protected");
        assert_eq!(upstream.count(), before, "{path}");
    }
    for path in ["/accounts", "/accountant", "/account-x", "/x/account", "/"] {
        let response = client.get(proxy.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path} is public");
        assert_eq!(upstream.last().uri, path);
    }
}

#[tokio::test]
async fn prefixes_ignore_case_unless_configured_case_sensitive() {
    let upstream = Upstream::start().await;
    let folded = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let client = browser();
    for path in ["/ACCOUNT/x", "/Account", "/aCcOuNt/"] {
        let response = client.get(folded.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    assert_eq!(upstream.count(), 0);

    let sensitive = Proxy::start(
        &upstream,
        &format!("[auth]\ncase_sensitive = true\n{PROTECT_ACCOUNT}"),
    )
    .await;
    let response = client
        .get(sensitive.url("/ACCOUNT/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().uri, "/ACCOUNT/x");
    let response = client
        .get(sensitive.url("/account/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "the exact spelling stays protected");
}

#[tokio::test]
async fn encoded_dot_segments_cannot_reach_a_protected_path() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let denied = [
        "/%61ccount",
        "/ACCOUNT",
        "//account",
        "/./account",
        "/x/../account",
        "/%2e%2e/account",
        "/x/%2E%2E/account",
        "/x/%2e./account",
        "/account/x/../../account",
        "/%41%43%43%4F%55%4E%54/x",
    ];
    for target in denied {
        let request = raw_get(proxy.addr, target, &[("Accept", "text/html")]);
        let response = raw_request(proxy.addr, &request).await;
        assert_eq!(status(&response), 302, "{target}: {response}");
        let next = next_of(header(&response, "location").unwrap()).to_ascii_lowercase();
        assert!(
            next == "/account" || next == "/account/x",
            "{target}: the decision saw the canonical path, next = {next}"
        );
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn ambiguous_spellings_of_a_protected_path_are_refused_with_400() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let refused = [
        "/account%2fx",
        "/account%2Fx",
        "/%2faccount",
        "/account;jsessionid=1",
        "/account%3bx",
        "/%5caccount",
        "/%252e%252e/account",
        "/x/%252e%252e/account",
        "/account%00",
        "/account%0d%0ax",
        "/account%2",
        "/account%zz",
        // Trailing dots and spaces: IIS, ASP.NET and some Java and
        // file-serving stacks read these as `/account`.
        "/account.",
        "/account./x",
        "/account..",
        "/account%20",
        "/account%2e",
    ];
    for target in refused {
        let request = raw_get(proxy.addr, target, &[("Accept", "text/html")]);
        let response = raw_request(proxy.addr, &request).await;
        assert_eq!(status(&response), 400, "{target}: {response}");
        assert!(body(&response).len() < 64, "{target}: short body");
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn ambiguous_paths_are_refused_for_everyone_with_a_short_body() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let login = log_in(&browser(), &proxy, "ada").await;
    let cookie = sid_pair(&login);
    let before = upstream.count();
    for target in ["/public%2f..%2faccount", "/files/a%5cb", "/p;x=1", "/%252e"] {
        for headers in [vec![], vec![("Cookie", cookie.as_str())]] {
            let response = raw_request(proxy.addr, &raw_get(proxy.addr, target, &headers)).await;
            assert_eq!(status(&response), 400, "{target}: {response}");
            assert_eq!(body(&response), "bad request\n", "{target}");
            assert_eq!(
                header(&response, "content-type"),
                Some("text/plain; charset=utf-8")
            );
        }
    }
    assert_eq!(upstream.count(), before, "the upstream never saw them");
}

#[tokio::test]
async fn the_upstream_receives_the_canonical_path_the_route_decision_saw() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, PROTECT_ACCOUNT).await;
    let login = log_in(&browser(), &proxy, "ada").await;
    let cookie = sid_pair(&login);

    let request = raw_get(
        proxy.addr,
        "/x/../account/%7Efoo?q=%2e%2e",
        &[("Cookie", cookie.as_str())],
    );
    let response = raw_request(proxy.addr, &request).await;
    assert_eq!(status(&response), 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.uri, "/account/~foo?q=%2e%2e", "query left as sent");
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));

    let request = raw_get(
        proxy.addr,
        "//%61ccount//./b%c3%a9",
        &[("Cookie", cookie.as_str())],
    );
    let response = raw_request(proxy.addr, &request).await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(upstream.last().uri, "/account/b%C3%A9");
}
