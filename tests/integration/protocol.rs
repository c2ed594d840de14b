//! The header protocol and spoofing: what a client may not tell the upstream
//! (session, field and forwarding headers, `Set-Session`), hop-by-hop
//! hygiene both ways, and which cookies make a session.

use cloakroom::config::Secret;
use cloakroom::SessionId;
use cloakroom::Signer;
use serde_json::json;

use crate::routes::{raw_request, status};
use crate::support::*;

const FIELDS: &str = "session.headers.fields = { \"X-User\" = \"/user/name\" }\n";

/// A cookie value shaped exactly like ours (`s:<43 id chars>.<43 base64
/// chars>`, URI-encoded) whose signature no secret made.
const FORGED: &str = "sid=s%3AAbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Header names as some backends read them: case folded, `_` as `-`.
fn folded_names(seen: &Seen) -> Vec<String> {
    seen.headers
        .keys()
        .map(|name| name.as_str().to_ascii_lowercase().replace('_', "-"))
        .collect()
}

/// Session headers the upstream received, in any spelling.
fn session_names(seen: &Seen) -> Vec<String> {
    folded_names(seen)
        .into_iter()
        .filter(|n| n.starts_with("x-session") || n == "set-session" || n == "x-user")
        .collect()
}

/// The `Secure` attribute is set on a `Set-Cookie` line.
fn is_secure(set_cookie: &str) -> bool {
    set_cookie
        .split(';')
        .skip(1)
        .any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"))
}

/// express-session's encoding of a signed value.
fn cookie_value(signed: &str) -> String {
    signed
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('+', "%2B")
}

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

#[tokio::test]
async fn other_cookies_reach_the_upstream_untouched_and_ours_does_not() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let pair = sid_pair(&log_in(&browser(), &proxy, "ada").await);

    let others = "theme=dark; lang=en-GB; pref=\"a=b\"";
    visit(&proxy, others).await;
    assert_eq!(upstream.last().all("cookie"), [others]);

    bare()
        .get(proxy.url("/"))
        .header("cookie", format!("theme=dark; {pair}; lang=en-GB"))
        .send()
        .await
        .unwrap();
    let seen = upstream.last();
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
    assert_eq!(seen.all("cookie"), ["theme=dark; lang=en-GB"]);

    visit(&proxy, &pair).await;
    let seen = upstream.last();
    assert!(seen.session().is_some());
    assert_eq!(seen.all("cookie"), Vec::<String>::new(), "no empty Cookie");
}

#[tokio::test]
async fn forward_to_upstream_keeps_our_cookie() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[cookie]\nforward_to_upstream = true\n").await;
    let pair = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    let cookie = format!("theme=dark; {pair}");
    visit(&proxy, &cookie).await;
    let seen = upstream.last();
    assert_eq!(seen.all("cookie"), [cookie]);
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
}

#[tokio::test]
async fn a_forged_cookie_means_no_session_and_a_normal_response() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let pair = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    let (id_part, _signature) = pair.rsplit_once('.').unwrap();
    let tampered = format!("{id_part}.{}", "A".repeat(43));
    for cookie in [FORGED.to_owned(), tampered] {
        let response = visit(&proxy, &cookie).await;
        assert_eq!(response.status(), 200, "{cookie}");
        assert_eq!(set_cookies(&response, "sid"), Vec::<String>::new());
        let seen = upstream.last();
        assert_eq!(session_names(&seen), Vec::<String>::new(), "{cookie}");
    }
}

#[tokio::test]
async fn garbage_cookie_values_mean_no_session_and_a_normal_response() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let long_shaped = format!("sid=s%3A{}.{}", "a".repeat(3000), "A".repeat(3000));
    let cookies = [
        "sid=%zz".to_owned(),
        "sid=%".to_owned(),
        "sid=".to_owned(),
        "sid=s:".to_owned(),
        "sid=s%3A".to_owned(),
        "sid=s%3A.".to_owned(),
        "sid=\"\"".to_owned(),
        "sid=%C3%28".to_owned(),
        format!("sid={}", "x".repeat(8000)),
        long_shaped,
    ];
    for cookie in &cookies {
        let response = visit(&proxy, cookie).await;
        assert_eq!(response.status(), 200, "{:.40}", cookie);
        assert_eq!(set_cookies(&response, "sid"), Vec::<String>::new());
        assert_eq!(session_names(&upstream.last()), Vec::<String>::new());
    }
    assert_eq!(upstream.count(), cookies.len());
}

#[tokio::test]
async fn a_correctly_signed_id_the_store_never_issued_is_not_a_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let planted = SessionId::generate();
    let signer = Signer::new(&[Secret::new(SECRET.to_owned())]);
    let cookie = format!("sid={}", cookie_value(&signer.sign(&planted)));

    let response = visit(&proxy, &cookie).await;
    assert_eq!(response.status(), 200);
    assert_eq!(session_names(&upstream.last()), Vec::<String>::new());

    let write = bare()
        .get(proxy.url("/"))
        .header("cookie", &cookie)
        .header("x-test-set-session", r#"{"cart":[1]}"#)
        .send()
        .await
        .unwrap();
    let issued = sid_pair(&write);
    assert!(
        !issued.contains(planted.as_str()),
        "a planted id is never adopted"
    );
    visit(&proxy, &cookie).await;
    assert_eq!(upstream.last().header("x-session"), None);
}

#[tokio::test]
async fn two_different_live_sessions_in_one_request_mean_no_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, FIELDS).await;
    let ada = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    let bob = sid_pair(&log_in(&browser(), &proxy, "bob").await);
    assert_ne!(ada, bob);
    for cookie in [format!("{ada}; {bob}"), format!("{bob}; theme=x; {ada}")] {
        let response = visit(&proxy, &cookie).await;
        assert_eq!(response.status(), 200);
        assert_eq!(session_names(&upstream.last()), Vec::<String>::new());
    }
}

#[tokio::test]
async fn the_same_cookie_twice_is_that_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let ada = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    bare()
        .get(proxy.url("/"))
        .header("cookie", format!("{ada}; {ada}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}}))
    );
}

#[tokio::test]
async fn a_forged_cookie_beside_a_valid_one_does_not_hide_it() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let ada = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    for cookie in [format!("{FORGED}; {ada}"), format!("{ada}; {FORGED}")] {
        visit(&proxy, &cookie).await;
        assert_eq!(
            upstream.last().session(),
            Some(json!({"user": {"name": "ada"}})),
            "{cookie}"
        );
    }
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
