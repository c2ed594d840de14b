//! Which cookies make a session: other cookies pass untouched; forged, garbage,
//! planted and conflicting `sid` cookies mean no session.

use cloakroom::config::Secret;
use cloakroom::SessionId;
use cloakroom::Signer;
use serde_json::json;

use crate::session_headers::FIELDS;
use crate::support::*;

/// A cookie value shaped exactly like ours (`s:<43 id chars>.<43 base64
/// chars>`, URI-encoded) whose signature no secret made.
const FORGED: &str = "sid=s%3AAbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Header names as some backends read them: case folded, `_` as `-`.
pub(crate) fn folded_names(seen: &Seen) -> Vec<String> {
    seen.headers
        .keys()
        .map(|name| name.as_str().to_ascii_lowercase().replace(['_', '.'], "-"))
        .collect()
}

/// Session headers the upstream received, in any spelling.
pub(crate) fn session_names(seen: &Seen) -> Vec<String> {
    folded_names(seen)
        .into_iter()
        .filter(|n| n.starts_with("x-session") || n == "set-session" || n == "x-user")
        .collect()
}

/// express-session's encoding of a signed value.
fn cookie_value(signed: &str) -> String {
    signed
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('+', "%2B")
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
