//! The admin API, under `/admin/` on the operations listener, when an
//! admin token is configured (`ops.admin_token_env` or
//! `ops.admin_token_file`); without one every `/admin/...` path is 404.
//!
//! Every call needs `Authorization: Bearer <token>` (compared in constant
//! time); without it, or with another token, the answer is 401 with
//! `WWW-Authenticate: Bearer`, whatever the path. JSON out:
//!
//! | call | answer |
//! |---|---|
//! | `GET /admin/users/{identity}/sessions` | the user's live sessions, by revoke handle |
//! | `DELETE /admin/users/{identity}/sessions/{handle}` | ends one (404 if no such handle) |
//! | `DELETE /admin/users/{identity}/sessions` | ends them all |
//! | `GET /admin/sessions/count` | live sessions in the store |
//!
//! `{identity}` is percent-decoded (UTF-8). Session ids never appear in an
//! answer or a log line: sessions are named by their revoke handle.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::live::Live;
use crate::domain::bearer::BearerToken;
use crate::domain::session::identity::Identity;
use crate::store::StoreError;

/// What an admin request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    List(Identity),
    RevokeAll(Identity),
    Revoke(Identity, String),
    Count,
}

/// Why a path is not a call.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NotFound,
    BadIdentity,
    Method(&'static str),
}

/// Answers one request under `/admin/`.
pub(super) async fn answer<B>(
    live: &Live,
    token: Option<&BearerToken>,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    let Some(token) = token else {
        return reply(StatusCode::NOT_FOUND, &json!({"error": "not found"}));
    };
    let authorization = request.headers().get(header::AUTHORIZATION);
    if !token.authorizes(authorization.map(HeaderValue::as_bytes)) {
        let mut response = reply(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized"}));
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let call = match route(request.method(), request.uri().path()) {
        Ok(call) => call,
        Err(Refusal::NotFound) => {
            return reply(StatusCode::NOT_FOUND, &json!({"error": "not found"}))
        }
        Err(Refusal::BadIdentity) => {
            return reply(StatusCode::BAD_REQUEST, &json!({"error": "bad identity"}))
        }
        Err(Refusal::Method(allow)) => {
            let mut response = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed"}),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return response;
        }
    };
    let proxy = live.current();
    let answered = match &call {
        Call::List(identity) => proxy
            .admin_sessions(identity)
            .await
            .map(|sessions| json!({"identity": identity.as_str(), "sessions": sessions})),
        Call::RevokeAll(identity) => proxy
            .admin_revoke_all(identity)
            .await
            .map(|revoked| json!({"revoked": revoked})),
        Call::Revoke(identity, handle) => match proxy.admin_revoke(identity, handle).await {
            Ok(true) => Ok(json!({"revoked": 1})),
            Ok(false) => return reply(StatusCode::NOT_FOUND, &json!({"error": "no such session"})),
            Err(error) => Err(error),
        },
        Call::Count => proxy
            .admin_count()
            .await
            .map(|count| json!({"sessions": count})),
    };
    match answered {
        Ok(body) => {
            if !matches!(call, Call::List(_) | Call::Count) {
                tracing::info!(call = call.name(), "admin API: sessions revoked");
            }
            reply(StatusCode::OK, &body)
        }
        Err(error) => failed(&error),
    }
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Self::List(_) => "list",
            Self::RevokeAll(_) => "revoke-all",
            Self::Revoke(..) => "revoke",
            Self::Count => "count",
        }
    }
}

/// The call a method and a raw path (still percent-encoded) name.
fn route(method: &Method, path: &str) -> Result<Call, Refusal> {
    let rest = path.strip_prefix("/admin/").ok_or(Refusal::NotFound)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let identity = |raw: &str| {
        percent_decode(raw)
            .and_then(|text| Identity::new(&text))
            .ok_or(Refusal::BadIdentity)
    };
    match (segments.as_slice(), method) {
        (["sessions", "count"], &Method::GET) => Ok(Call::Count),
        (["sessions", "count"], _) => Err(Refusal::Method("GET")),
        (["users", raw, "sessions"], &Method::GET) => Ok(Call::List(identity(raw)?)),
        (["users", raw, "sessions"], &Method::DELETE) => Ok(Call::RevokeAll(identity(raw)?)),
        (["users", _, "sessions"], _) => Err(Refusal::Method("GET, DELETE")),
        (["users", raw, "sessions", handle], &Method::DELETE) if !handle.is_empty() => {
            Ok(Call::Revoke(identity(raw)?, (*handle).to_owned()))
        }
        (["users", _, "sessions", _], _) => Err(Refusal::Method("DELETE")),
        _ => Err(Refusal::NotFound),
    }
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = bytes.get(at + 1..at + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A store failure: 503, the cause logged.
fn failed(error: &StoreError) -> Response<Full<Bytes>> {
    tracing::error!(%error, "admin API: the store failed");
    let mut response = reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "session store unavailable"}),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(text: &str) -> Identity {
        Identity::new(text).unwrap()
    }

    #[test]
    fn paths_name_calls_and_identities_are_percent_decoded() {
        let get = &Method::GET;
        let delete = &Method::DELETE;
        assert_eq!(route(get, "/admin/sessions/count"), Ok(Call::Count));
        assert_eq!(
            route(get, "/admin/users/ada%40example.com/sessions"),
            Ok(Call::List(identity("ada@example.com")))
        );
        assert_eq!(
            route(delete, "/admin/users/a%2Fb/sessions"),
            Ok(Call::RevokeAll(identity("a/b")))
        );
        assert_eq!(
            route(delete, "/admin/users/7/sessions/abc_-"),
            Ok(Call::Revoke(identity("7"), "abc_-".into()))
        );
        assert_eq!(
            route(get, "/admin/users/%C3%A9/sessions"),
            Ok(Call::List(identity("é")))
        );
    }

    #[test]
    fn other_paths_methods_and_identities_are_refused() {
        let get = &Method::GET;
        for path in [
            "/admin/",
            "/admin/users",
            "/admin/users/ada",
            "/admin/users/ada/sessions/x/y",
            "/admin/sessions",
            "/healthz",
        ] {
            assert_eq!(route(get, path), Err(Refusal::NotFound), "{path}");
        }
        for path in [
            "/admin/users//sessions",
            "/admin/users/%zz/sessions",
            "/admin/users/%4/sessions",
            "/admin/users/%ff/sessions",
        ] {
            assert_eq!(route(get, path), Err(Refusal::BadIdentity), "{path}");
        }
        assert_eq!(
            route(&Method::POST, "/admin/users/ada/sessions"),
            Err(Refusal::Method("GET, DELETE"))
        );
        assert_eq!(
            route(get, "/admin/users/ada/sessions/h"),
            Err(Refusal::Method("DELETE"))
        );
        assert_eq!(
            route(&Method::DELETE, "/admin/sessions/count"),
            Err(Refusal::Method("GET"))
        );
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%20b%2f"), Some("a b/".into()));
        assert_eq!(percent_decode("plain"), Some("plain".into()));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%C3"), None, "not UTF-8");
    }
}
