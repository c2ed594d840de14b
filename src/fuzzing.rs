//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off in
//! every normal build): each feeds arbitrary bytes to one parser that a
//! client or an upstream controls. A panic, a hang or a disagreement is a
//! bug; whatever a fuzzer finds becomes a regression test in the normal
//! suite.

use std::sync::{Arc, Mutex, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE};
use http::{Method, Request, Response, Uri, Version};

use crate::domain::cookie::settings::{CookieSettings, SameSite, Secure};
use crate::domain::cookie::signing::Signer;
use crate::domain::cookie::SessionCookie;
use crate::domain::path;
use crate::domain::routes::{Deny, ProtectRule, Routes};
use crate::domain::secret::Secret;
use crate::domain::session::ops::{self, Patch, SessionOp};
use crate::domain::session::SessionData;
use crate::util::tokens;

pub use crate::edge::http1::fuzz_take;
pub use crate::upstream::fuzz_response as response_head_and_body;

/// The session cookie reader: every line of `data` is one `Cookie` header.
pub fn session_cookie(data: &[u8]) {
    static COOKIE_READER: OnceLock<SessionCookie> = OnceLock::new();
    let reader = COOKIE_READER.get_or_init(|| {
        let settings = CookieSettings {
            name: "sid".into(),
            path: "/".into(),
            domain: None,
            http_only: true,
            same_site: SameSite::Lax,
            secure: Secure::Auto,
            max_age: None,
            rolling: false,
            forward_to_upstream: false,
            clear_site_data: false,
        };
        let secrets = [Secret::new("fuzzing-secret-0123456789abcdef".into())];
        SessionCookie::new(settings, Signer::new(&secrets))
    });
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    let ticket = reader.read(&headers);
    assert!(ticket.candidates.len() <= crate::domain::cookie::MAX_CANDIDATES);
    reader.strip(&mut headers, &ticket);
}

/// `Set-Session`: each line of `data` one value, parsed, then planned on
/// a small session (the merge included). A patch kept as written is the
/// map serde_json parses from the same text.
pub fn set_session(data: &[u8]) {
    const MAX: usize = 16 * 1024;
    for line in data.split(|&b| b == b'\n') {
        if let Some(patch) = Patch::plain(line) {
            let parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).expect("a plain patch is JSON");
            assert_eq!(patch.map(), &parsed, "a plain patch is serde's map");
        }
    }
    let parsed: Result<Vec<_>, _> = data
        .split(|&b| b == b'\n')
        .map(|line| ops::parse(line, MAX))
        .collect();
    let Ok(parsed) = parsed else {
        return;
    };
    let mut map = serde_json::Map::new();
    map.insert(
        "user".into(),
        serde_json::json!({"name": "ada", "roles": ["a"]}),
    );
    let current = SessionData::new(map);
    let _ = ops::plan(Some(&current), &parsed, 64 * 1024, Some("user"));
    let _ = ops::plan(None, &parsed, 64 * 1024, None);
    // Patches kept as written plan, on a session kept as text, exactly as
    // their maps do.
    let as_maps: Vec<SessionOp> = parsed
        .iter()
        .map(|op| match op {
            SessionOp::Patch(patch) => SessionOp::Patch(patch.map().clone().into()),
            other => other.clone(),
        })
        .collect();
    let text_only = SessionData::from_ascii_json(current.ascii_json().clone());
    for rotate_on in [None, Some("user")] {
        assert_eq!(
            outcome(ops::plan(Some(&text_only), &parsed, 64 * 1024, rotate_on)),
            outcome(ops::plan(Some(&text_only), &as_maps, 64 * 1024, rotate_on)),
            "a patch as written and its map planned differently"
        );
    }
}

/// What a plan comes to, as text to compare.
fn outcome(planned: Result<ops::Plan, ops::SetSessionError>) -> String {
    match planned {
        Ok(ops::Plan::Write {
            data,
            fresh_id,
            remember,
        }) => format!(
            "write {:?} fresh={fresh_id} remember={remember:?}",
            data.ascii_json()
        ),
        Ok(ops::Plan::Keep) => "keep".into(),
        Ok(ops::Plan::Delete) => "delete".into(),
        Err(error) => error.to_string(),
    }
}

/// The path canonicaliser and the route match: what is matched is what is
/// forwarded, and the canonical form is a fixed point.
pub fn path_and_routes(data: &[u8]) {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let rule = |prefix: &str| ProtectRule {
            prefix: prefix.into(),
            deny: Deny::Auto,
        };
        Routes::new(
            &[rule("/admin"), rule("/account"), rule("/api/private")],
            false,
        )
    });
    // As the proxy gets paths: from a request target the `http` crate
    // accepted.
    let Ok(uri) = Uri::try_from(data) else {
        return;
    };
    let Ok(canonical) = path::canonicalize(uri.path()) else {
        return;
    };
    let again = path::canonicalize(&canonical).expect("a canonical path is valid");
    assert_eq!(again, canonical, "canonical paths are fixed points");
    let _ = routes.rule_for(&canonical);
    // What the upstream is sent must parse as the same path.
    if canonical != "*" {
        let uri: Uri = canonical
            .parse()
            .expect("a canonical path is a valid target");
        assert_eq!(uri.path(), canonical);
    }
}

/// The header-list splitter.
pub fn header_lists(data: &[u8]) {
    let all: usize = tokens::split_list(data).map(<[u8]>::len).sum();
    assert!(all <= data.len());
    for element in tokens::elements(data) {
        assert!(!element.is_empty());
        assert_eq!(element, element.trim_ascii());
    }
    let _ = tokens::has_element(data, "close");
}

/// A Redis record (connect-redis's format) as another app may have
/// written it.
pub fn redis_record(data: &[u8]) {
    let _ = crate::store::redis::record::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::store::redis::record::parse_js_date(text);
    }
}

/// What a request looks like to the upstream: method, target, version and
/// headers in order.
type Seen = (Method, Uri, Version, Vec<(HeaderName, HeaderValue)>);

fn seen<B>(request: &Request<B>) -> Seen {
    (
        request.method().clone(),
        request.uri().clone(),
        request.version(),
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    )
}

/// The same bytes through the HTTP/1 front and through hyper's server
/// (with the proxy's settings): when the front takes a request, hyper must
/// read the very same request from them. A disagreement is a smuggling bug
/// by definition.
pub fn front_against_hyper(data: &[u8]) {
    let Some(front) = fuzz_take(data) else {
        return; // the front leaves it to hyper: nothing to compare
    };
    let front = seen(&front);
    let hyper = hyper_reads(data);
    assert_eq!(
        hyper.as_ref(),
        Some(&front),
        "the front and hyper disagree on {:?}",
        String::from_utf8_lossy(data)
    );
}

/// The first request hyper's HTTP/1 server reads from `data`, configured
/// as the proxy configures it.
fn hyper_reads(data: &[u8]) -> Option<Seen> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fuzz target")
    });
    let first: Arc<Mutex<Option<Seen>>> = Arc::default();
    let record = first.clone();
    runtime.block_on(async move {
        use tokio::io::AsyncWriteExt as _;
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let mut slot = record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(seen(&request));
            }
            async {
                Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .max_buf_size(16 * 1024)
            .max_headers(100)
            .keep_alive(false);
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), connection).await;
    });
    let seen = first
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    seen
}
