//! Cross-origin request protection: a write that carries a session and
//! comes from another origin, by what browsers say, never reaches the
//! upstream.

use crate::support::*;

async fn post(
    client: &reqwest::Client,
    proxy: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::StatusCode {
    let mut request = client.post(proxy.url(path)).body("x");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn cross_origin_writes_with_a_session_are_refused() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let before = upstream.count();
    for headers in [
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Origin", "https://evil.example")],
        vec![("Origin", "null")],
    ] {
        assert_eq!(
            post(&client, &proxy, "/transfer", &headers).await,
            403,
            "{headers:?}"
        );
    }
    let response = client
        .delete(proxy.url("/account"))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(upstream.count(), before, "nothing reached the upstream");
}

#[tokio::test]
async fn same_origin_non_browser_safe_and_anonymous_requests_pass() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let own_origin = format!("http://{}", proxy.addr);
    for headers in [
        vec![("Sec-Fetch-Site", "same-origin")],
        vec![("Sec-Fetch-Site", "none")],
        vec![("Origin", own_origin.as_str())],
        vec![],
    ] {
        assert_eq!(
            post(&client, &proxy, "/save", &headers).await,
            200,
            "{headers:?}"
        );
    }
    let read = client
        .get(proxy.url("/"))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "a GET is never refused");
    let anonymous = post(
        &bare(),
        &proxy,
        "/comment",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_eq!(anonymous, 200, "no session, nothing to forge");
}

#[tokio::test]
async fn trusted_origins_and_bypassed_paths_pass_and_the_check_can_be_off() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream,
        "[auth.cross_origin]\ntrusted_origins = [\"https://idp.example\"]\nbypass = [\"/auth/callback\"]\n",
    )
    .await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let cross = ("Sec-Fetch-Site", "cross-site");
    assert_eq!(post(&client, &proxy, "/auth/callback", &[cross]).await, 200);
    assert_eq!(
        post(
            &client,
            &proxy,
            "/x",
            &[cross, ("Origin", "https://idp.example")]
        )
        .await,
        200
    );
    assert_eq!(post(&client, &proxy, "/x", &[cross]).await, 403);

    let off = Proxy::start(&upstream, "[auth.cross_origin]\nenabled = false\n").await;
    let client = browser();
    log_in(&client, &off, "ada").await;
    assert_eq!(post(&client, &off, "/x", &[cross]).await, 200);
}
