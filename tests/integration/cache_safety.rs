//! Responses that carry the session cookie are never storable by a shared
//! cache, and only Cloakroom issues its cookie.

use crate::support::*;

async fn login_with(
    proxy: &Proxy,
    client: &reqwest::Client,
    headers: &[&str],
) -> reqwest::Response {
    let mut request = client
        .post(proxy.url("/login"))
        .header("x-test-set-session", r#"{"user":{"name":"ada"}}"#);
    for header in headers {
        request = request.header("x-test-header", *header);
    }
    request.send().await.unwrap()
}

fn all(response: &reqwest::Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_response_that_issues_the_cookie_is_private_whatever_the_upstream_said() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let response = login_with(
        &proxy,
        &browser(),
        &[
            "Cache-Control: public, max-age=600, s-maxage=3600",
            "CDN-Cache-Control: max-age=600",
            "Surrogate-Control: max-age=600",
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        set_cookies(&response, "sid").len(),
        1,
        "the session cookie is issued"
    );
    assert_eq!(all(&response, "cache-control"), ["private, max-age=600"]);
    assert!(all(&response, "cdn-cache-control").is_empty());
    assert!(all(&response, "surrogate-control").is_empty());
}

#[tokio::test]
async fn a_response_without_the_cookie_keeps_its_caching_headers() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let response = bare()
        .get(proxy.url("/public"))
        .header("x-test-header", "Cache-Control: public, max-age=600")
        .send()
        .await
        .unwrap();
    assert_eq!(all(&response, "cache-control"), ["public, max-age=600"]);
}

#[tokio::test]
async fn logout_is_never_stored_and_may_clear_site_data() {
    let upstream = Upstream::start().await;
    for (extra, clears) in [("", false), ("cookie.clear_site_data = true\n", true)] {
        let proxy = Proxy::start(&upstream, extra).await;
        let client = browser();
        log_in(&client, &proxy, "ada").await;
        let response = client
            .post(proxy.url("/logout"))
            .header("x-test-set-session", "destroy")
            .header("x-test-header", "Cache-Control: public, max-age=600")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(all(&response, "cache-control"), ["no-store"]);
        let expected: &[&str] = if clears { &["\"cookies\""] } else { &[] };
        assert_eq!(all(&response, "clear-site-data"), expected);
    }
}

#[tokio::test]
async fn the_upstream_cannot_set_the_session_cookie_itself() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    // Alone: the upstream's cookie is dropped, others pass.
    let response = bare()
        .get(proxy.url("/"))
        .header("x-test-header", "Set-Cookie: sid=planted; Path=/")
        .header("x-test-header", "Set-Cookie: theme=dark")
        .send()
        .await
        .unwrap();
    assert_eq!(all(&response, "set-cookie"), ["theme=dark"]);
    // Beside Cloakroom's own: only Cloakroom's remains.
    let response = login_with(&proxy, &bare(), &["Set-Cookie: sid=planted"]).await;
    let cookies = set_cookies(&response, "sid");
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(!cookies[0].contains("planted"), "{cookies:?}");
}
