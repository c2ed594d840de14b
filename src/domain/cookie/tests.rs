use std::time::Duration;

use serde_json::Value;

use super::settings::Secure;
use super::*;
use crate::domain::secret::Secret;

fn config(name: &str) -> CookieSettings {
    CookieSettings {
        name: name.into(),
        path: "/".into(),
        domain: None,
        http_only: true,
        same_site: cookie::SameSite::Lax,
        secure: Secure::Auto,
        max_age: None,
        rolling: false,
        forward_to_upstream: false,
        clear_site_data: false,
    }
}

fn jar(name: &str, secrets: &[&str]) -> SessionCookie {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new((*s).into())).collect();
    SessionCookie::new(config(name), Signer::new(&secrets))
}

fn cookie_header(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
    headers
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../tests/vectors/express_session.json")).unwrap()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn express_session_cookies_verify_and_ours_match_theirs() {
    let vectors = vectors();
    let name = vectors["cookie_name"].as_str().unwrap();
    for case in vectors["cases"].as_array().unwrap() {
        let label = case["name"].as_str().unwrap();
        let jar = jar(name, &strings(&case["secrets"]));
        let id = SessionId::parse(case["id"].as_str().unwrap()).unwrap();
        let cookie_value = case["cookie_value"].as_str().unwrap();

        let ticket = jar.read(&cookie_header(&format!("{name}={cookie_value}")));
        assert_eq!(
            ticket.ids(),
            std::slice::from_ref(&id),
            "{label}: theirs verifies here"
        );

        let raw = case["signed"].as_str().unwrap();
        let ticket = jar.read(&cookie_header(&format!("{name}={raw}")));
        assert_eq!(
            ticket.ids(),
            std::slice::from_ref(&id),
            "{label}: unencoded form verifies too"
        );

        let signing = [case["signing_secret"].as_str().unwrap()];
        let ours = jar_issue(name, &signing, &id);
        assert!(
            ours.starts_with(&format!("{name}={cookie_value};")),
            "{label}: {ours}"
        );
    }
}

fn jar_issue(name: &str, secrets: &[&str], id: &SessionId) -> String {
    jar(name, secrets)
        .issue(id, false)
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn express_session_rejections_are_rejected_here() {
    let vectors = vectors();
    let name = vectors["cookie_name"].as_str().unwrap();
    for case in vectors["negative"].as_array().unwrap() {
        let label = case["name"].as_str().unwrap();
        let jar = jar(name, &strings(&case["secrets"]));
        let ticket = jar.read(&cookie_header(&format!(
            "{name}={}",
            case["cookie_value"].as_str().unwrap()
        )));
        assert!(ticket.candidates.is_empty(), "{label}");
        assert!(ticket.present, "{label}");
    }
}

#[test]
fn several_cookies_give_distinct_candidates_and_flag_forgeries() {
    let jar = jar("sid", &["k"]);
    let a = SessionId::generate();
    let b = SessionId::generate();
    let sa = crate::domain::path::encode_component(&jar.signer().sign(&a));
    let sb = crate::domain::path::encode_component(&jar.signer().sign(&b));
    let mut headers = cookie_header(&format!("sid={sa}; other=1; sid={sa}; sid=s%3Afake.AAAA"));
    headers.append(
        header::COOKIE,
        HeaderValue::from_str(&format!("sid={sb}")).unwrap(),
    );
    let ticket = jar.read(&headers);
    assert_eq!(ticket.ids(), [a, b]);
    assert!(ticket.forged);
}

#[test]
fn percent_escapes_decode_in_either_case_and_only_as_two_hex_digits() {
    let jar = jar("sid", &["k"]);
    let id = SessionId::generate();
    let signed = jar.signer().sign(&id);
    let encoded = crate::domain::path::encode_component(&signed);
    let lower = encoded.replace("%3A", "%3a");
    for spelling in [encoded.as_str(), lower.as_str(), signed.as_str()] {
        let ticket = jar.read(&cookie_header(&format!("sid={spelling}")));
        assert_eq!(ticket.ids(), std::slice::from_ref(&id), "{spelling}");
    }
    for broken in ["%+3A", "%3", "%G1", "%"] {
        let value = encoded.replacen("%3A", broken, 1);
        let ticket = jar.read(&cookie_header(&format!("sid={value}")));
        assert!(ticket.candidates.is_empty(), "{value}");
    }
    for tail in ["%", "%4", "%4G"] {
        let value = format!("{encoded}{tail}");
        let ticket = jar.read(&cookie_header(&format!("sid={value}")));
        assert!(ticket.candidates.is_empty(), "{value}");
    }
}

#[test]
fn strip_removes_only_our_cookie_and_joins_crumbs() {
    let jar = jar("sid", &["k"]);
    let mut headers = cookie_header("a=1; sid=s%3Axyz.abc; b=2");
    headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
    let ticket = jar.read(&headers);
    jar.strip(&mut headers, &ticket);
    assert_eq!(
        headers.get_all(header::COOKIE).iter().collect::<Vec<_>>(),
        ["a=1; b=2; c=3"]
    );

    let mut only_ours = cookie_header("sid=s%3Axyz.abc");
    let ticket = jar.read(&only_ours);
    jar.strip(&mut only_ours, &ticket);
    assert!(!only_ours.contains_key(header::COOKIE));

    let mut untouched = cookie_header("a=1;b=2");
    let ticket = jar.read(&untouched);
    jar.strip(&mut untouched, &ticket);
    assert_eq!(untouched[header::COOKIE], "a=1;b=2");
}

#[test]
fn issued_cookie_carries_the_configured_attributes() {
    let mut cfg = config("sid");
    cfg.max_age = Some(Duration::from_secs(3600));
    cfg.domain = Some("example.com".into());
    cfg.same_site = cookie::SameSite::Strict;
    let jar = SessionCookie::new(cfg, Signer::new(&[Secret::new("k".into())]));
    let id = SessionId::generate();
    let header = jar.issue(&id, true);
    let text = header.to_str().unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
        "Domain=example.com",
        "Max-Age=3600",
        "Expires=",
    ] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
    let cleared = jar.clear(false);
    let cleared = cleared.to_str().unwrap();
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(!cleared.contains("Secure"));
}

#[test]
fn issued_cookies_are_written_as_the_cookie_crate_writes_them() {
    use cookie::time::OffsetDateTime;
    use std::time::UNIX_EPOCH;

    let mut configs = vec![config("sid")];
    let mut strict = config("connect.sid");
    strict.same_site = cookie::SameSite::Strict;
    strict.domain = Some("example.com".into());
    strict.max_age = Some(Duration::from_secs(3600));
    configs.push(strict);
    let mut none = config("sid");
    none.same_site = cookie::SameSite::None;
    none.http_only = false;
    none.path = "/app".into();
    none.max_age = Some(Duration::from_secs(86_400));
    configs.push(none);
    let times = [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(1_764_470_400), // 2025-11-30
        UNIX_EPOCH + Duration::from_secs(1_835_395_199), // 2028-02-29 23:59:59
        UNIX_EPOCH + Duration::from_secs(1_764_513_296), // 2025-11-30 14:34:56
    ];
    for cfg in configs {
        let jar = SessionCookie::new(cfg, Signer::new(&[Secret::new("k".into())]));
        let id = SessionId::generate();
        for now in times {
            for secure in [false, true] {
                let mut expected = jar.base(
                    crate::domain::path::encode_component(&jar.signer().sign(&id)),
                    secure,
                );
                if let Some(max_age) = jar.config.max_age {
                    let lifetime = cookie::time::Duration::seconds(max_age.as_secs() as i64);
                    expected.set_max_age(lifetime);
                    expected.set_expires(OffsetDateTime::from(now) + lifetime);
                }
                assert_eq!(
                    jar.issue_at(&id, None, secure, now, None).to_str().unwrap(),
                    expected.to_string()
                );
            }
        }
    }
}

#[test]
fn a_cookie_issued_again_for_the_requests_id_is_the_same_cookie() {
    // What the browser sends back of a cookie issued: its name=value.
    fn sent_back(issued: &HeaderValue) -> HeaderMap {
        cookie_header(issued.to_str().unwrap().split(';').next().unwrap())
    }
    let jar = jar("sid", &["new", "old"]);
    let id = SessionId::generate();
    let now = SystemTime::now();
    let fresh = jar.issue_at(&id, None, true, now, None);
    let ticket = jar.read(&sent_back(&fresh));
    let candidate = &ticket.candidates[0];
    assert!(candidate.signature.is_some());
    assert_eq!(
        jar.issue_at(&id, candidate.signature.as_ref(), true, now, None),
        fresh
    );
    // A cookie an older secret signed carries no signature to use again.
    let older = self::jar("sid", &["old"]).issue_at(&id, None, true, now, None);
    let ticket = jar.read(&sent_back(&older));
    assert_eq!(ticket.ids(), [id]);
    assert_eq!(ticket.candidates[0].signature, None);
}
