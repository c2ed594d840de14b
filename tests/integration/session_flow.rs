//! The session life cycle through the proxy: login, reads, writes,
//! regenerate, destroy, and the cookie that goes with each.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn anonymous_requests_pass_without_session_headers_or_cookie() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let response = browser().get(proxy.url("/hello?x=1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(set_cookies(&response, "sid").is_empty());
    assert_eq!(
        response.text().await.unwrap(),
        "upstream saw GET /hello?x=1 (0 body bytes)"
    );
    let seen = upstream.last();
    assert_eq!(seen.header("x-session"), None);
    assert_eq!(seen.header("x-session-id"), None);
}

#[tokio::test]
async fn login_sets_an_express_style_cookie_and_later_requests_carry_the_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream,
        "session.headers.fields = { \"X-User\" = \"/user/name\" }\n",
    )
    .await;
    let client = browser();
    let login = log_in(&client, &proxy, "ada").await;
    assert!(
        login.headers().get("set-session").is_none(),
        "Set-Session must not reach the client"
    );
    let cookie = &set_cookies(&login, "sid")[0];
    assert!(cookie.starts_with("sid=s%3A"), "{cookie}");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP with secure=auto: {cookie}"
    );

    client.get(proxy.url("/me")).send().await.unwrap();
    let seen = upstream.last();
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
    assert_eq!(seen.header("x-user"), Some("ada"));
    let id = seen.header("x-session-id").unwrap();
    assert_eq!(id.len(), 43);
    assert!(
        cookie.contains(id),
        "the cookie carries the id the upstream sees"
    );
    assert!(
        !seen.all("cookie").iter().any(|c| c.contains("sid=")),
        "our cookie is not forwarded"
    );
}

#[tokio::test]
async fn patches_merge_and_null_deletes() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    client
        .get(proxy.url("/"))
        .header(
            "x-test-set-session",
            r#"{"cart":[1,2],"user":{"role":"admin"}}"#,
        )
        .send()
        .await
        .unwrap();
    client
        .get(proxy.url("/"))
        .header("x-test-set-session", r#"{"cart":null}"#)
        .send()
        .await
        .unwrap();
    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada", "role": "admin"}}))
    );
}

#[tokio::test]
async fn several_set_session_headers_apply_in_order() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    client
        .get(proxy.url("/"))
        .header("x-test-set-session", r#"{"a":1}"#)
        .header("x-test-set-session", "destroy")
        .header("x-test-set-session", r#"{"b":2}"#)
        .send()
        .await
        .unwrap();
    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(upstream.last().session(), Some(json!({"b": 2})));
}

#[tokio::test]
async fn regenerate_issues_a_new_id_and_the_old_cookie_stops_working() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    let first = sid_pair(&log_in(&client, &proxy, "ada").await);
    let again = client
        .get(proxy.url("/"))
        .header("x-test-set-session", "regenerate")
        .send()
        .await
        .unwrap();
    let second = sid_pair(&again);
    assert_ne!(first, second);

    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}})),
        "data kept"
    );

    visit(&proxy, &first).await;
    assert_eq!(
        upstream.last().header("x-session"),
        None,
        "the old id is dead"
    );
}

#[tokio::test]
async fn destroy_clears_the_cookie_and_ends_the_session_in_the_store() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    let pair = sid_pair(&log_in(&client, &proxy, "ada").await);
    let logout = client
        .post(proxy.url("/logout"))
        .header("x-test-set-session", "destroy")
        .send()
        .await
        .unwrap();
    let cleared = &set_cookies(&logout, "sid")[0];
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // Even a client that ignores the expired cookie has no session left.
    visit(&proxy, &pair).await;
    assert_eq!(upstream.last().header("x-session"), None);
}

#[tokio::test]
async fn unknown_but_signed_ids_are_never_adopted() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    let pair = sid_pair(&log_in(&client, &proxy, "ada").await);
    client
        .post(proxy.url("/logout"))
        .header("x-test-set-session", "destroy")
        .send()
        .await
        .unwrap();

    // A write arriving with the destroyed id creates a fresh session.
    let write = bare()
        .get(proxy.url("/"))
        .header("cookie", &pair)
        .header("x-test-set-session", r#"{"cart":[1]}"#)
        .send()
        .await
        .unwrap();
    let fresh = sid_pair(&write);
    assert_ne!(fresh, pair);
    visit(&proxy, &fresh).await;
    assert_eq!(upstream.last().session(), Some(json!({"cart": [1]})));
}

#[tokio::test]
async fn save_uninitialized_gives_every_visitor_a_session() {
    let upstream = Upstream::start().await;
    let off = Proxy::start(&upstream, "").await;
    let response = browser().get(off.url("/")).send().await.unwrap();
    assert!(set_cookies(&response, "sid").is_empty());

    let on = Proxy::start(&upstream, "session.save_uninitialized = true\n").await;
    let client = browser();
    let response = client.get(on.url("/")).send().await.unwrap();
    assert_eq!(set_cookies(&response, "sid").len(), 1);
    client.get(on.url("/")).send().await.unwrap();
    assert_eq!(upstream.last().session(), Some(json!({})));
}

#[tokio::test]
async fn rolling_refreshes_the_cookie_on_every_response() {
    let upstream = Upstream::start().await;
    let plain = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &plain, "ada").await;
    let read = client.get(plain.url("/")).send().await.unwrap();
    assert!(
        set_cookies(&read, "sid").is_empty(),
        "no cookie on plain reads"
    );

    let rolling = Proxy::start(&upstream, "[cookie]\nrolling = true\nmax_age = \"1h\"\n").await;
    let client = browser();
    let login = sid_pair(&log_in(&client, &rolling, "ada").await);
    let read = client.get(rolling.url("/")).send().await.unwrap();
    assert_eq!(sid_pair(&read), login, "same id, fresh expiry");
    assert!(set_cookies(&read, "sid")[0].contains("Max-Age=3600"));
}

#[tokio::test]
async fn a_refreshed_cookie_is_signed_with_the_first_secret_whichever_signed_the_request() {
    const OLDER: &str = "an-older-secret-still-verifying-0123456789";
    let upstream = Upstream::start().await;
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\", \"{OLDER}\"]\n\
         [cookie]\nrolling = true\nmax_age = \"1h\"\n",
        upstream.url()
    ))
    .await;
    let login = sid_pair(&log_in(&browser(), &proxy, "ada").await);
    let refreshed = visit(&proxy, &login).await;
    assert_eq!(sid_pair(&refreshed), login, "the same cookie again");

    let id = upstream.last().header("x-session-id").unwrap().to_owned();
    let signed = |secret: &str| {
        cloakroom::Signer::new(&[cloakroom::config::Secret::new(secret.into())])
            .sign(&cloakroom::SessionId::parse(&id).unwrap())
            .replace(':', "%3A")
            .replace('/', "%2F")
            .replace('+', "%2B")
    };
    assert_eq!(login, format!("sid={}", signed(SECRET)));
    let older = format!("sid={}", signed(OLDER));
    let refreshed = visit(&proxy, &older).await;
    assert_eq!(upstream.last().header("x-session-id"), Some(id.as_str()));
    assert_eq!(
        sid_pair(&refreshed),
        login,
        "a cookie the older secret signed comes back signed with the first"
    );
}

#[tokio::test]
async fn concurrent_writes_to_different_keys_all_survive() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let writes = (0..50).map(|n| {
        let client = client.clone();
        let url = proxy.url("/");
        async move {
            let patch = json!({ format!("k{n}"): n }).to_string();
            client
                .get(url)
                .header("x-test-set-session", patch)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures_join_all(writes).await {
        assert_eq!(status, 200);
    }
    client.get(proxy.url("/")).send().await.unwrap();
    let session = upstream.last().session().unwrap();
    for n in 0..50 {
        assert_eq!(session[format!("k{n}")], json!(n), "k{n} was lost");
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn non_ascii_session_data_reaches_the_upstream_as_ascii_json() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream,
        "session.headers.fields = { \"X-User\" = \"/user/name\" }\n",
    )
    .await;
    let client = browser();
    log_in(&client, &proxy, "Zoë ✓ \r\nX-Evil: 1").await;
    client.get(proxy.url("/")).send().await.unwrap();
    let seen = upstream.last();
    let raw = seen.headers.get("x-session").unwrap().as_bytes();
    assert!(
        raw.iter().all(|b| (0x20..0x7f).contains(b)),
        "printable ASCII only"
    );
    assert_eq!(
        seen.session(),
        Some(json!({"user": {"name": "Zoë ✓ \r\nX-Evil: 1"}}))
    );
    let user = seen.header("x-user").unwrap();
    let decoded: serde_json::Value =
        serde_json::from_str(user.strip_prefix("json:").unwrap()).unwrap();
    assert_eq!(decoded, json!("Zoë ✓ \r\nX-Evil: 1"));
    assert!(seen.header("x-evil").is_none());
}

#[tokio::test]
async fn a_session_over_the_header_budget_is_omitted_not_truncated() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "session.headers.max_bytes = 100\n").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    client
        .get(proxy.url("/"))
        .header(
            "x-test-set-session",
            json!({"notes": "x".repeat(200)}).to_string(),
        )
        .send()
        .await
        .unwrap();
    client.get(proxy.url("/")).send().await.unwrap();
    let seen = upstream.last();
    assert_eq!(seen.header("x-session"), None);
    assert_eq!(seen.header("x-session-omitted"), Some("too-large"));
    assert!(
        seen.header("x-session-id").is_some(),
        "the session itself is intact"
    );

    let keyed = Proxy::start(
        &upstream,
        "session.headers.max_bytes = 100\nsession.headers.keys = [\"user\"]\n",
    )
    .await;
    let client = browser();
    log_in(&client, &keyed, "ada").await;
    client
        .get(keyed.url("/"))
        .header(
            "x-test-set-session",
            json!({"notes": "x".repeat(200)}).to_string(),
        )
        .send()
        .await
        .unwrap();
    client.get(keyed.url("/")).send().await.unwrap();
    assert_eq!(
        upstream.last().session(),
        Some(json!({"user": {"name": "ada"}})),
        "the allow-list keeps it in budget"
    );
}

#[tokio::test]
async fn set_session_on_an_error_response_is_applied_and_stripped() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    let response = client
        .get(proxy.url("/"))
        .header("x-test-status", "500")
        .header("x-test-set-session", r#"{"flash":"oops"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.headers().get("set-session").is_none());
    client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(upstream.last().session(), Some(json!({"flash": "oops"})));
}
