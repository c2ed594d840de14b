//! Every response the proxy writes itself, for both fronts: errors and
//! denials, and what the proxy adds to every response it sends (the HSTS
//! policy over TLS, `Via` on forwarded responses), and the one guard on
//! interim (1xx) statuses. The body type of every response is here too.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue, STRICT_TRANSPORT_SECURITY};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::client::Client;
use super::error::{Fault, ProxyError};
use crate::domain::routes::Denial;
use crate::upstream::ResponseBody;
use crate::util::additions::AppendHeader;
use crate::util::body::IdleTimeout;

const VIA: HeaderValue = HeaderValue::from_static("1.1 cloakroom");

/// What the proxy sends to clients: the upstream's body, or its own.
pub type ProxyBody = Either<IdleTimeout<ResponseBody>, Full<Bytes>>;

/// A body the proxy makes itself.
#[inline]
/// An empty body.
pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

pub fn full(bytes: Bytes) -> ProxyBody {
    Either::Right(Full::new(bytes))
}

/// Renders responses; built once from the settings.
pub(super) struct Responder {
    via: bool,
    hsts: Option<HeaderValue>,
}

impl Responder {
    #[inline]
    pub fn new(via: bool, hsts: Option<HeaderValue>) -> Self {
        Self { via, hsts }
    }

    /// `Via` on a message the proxy forwards (request or response).
    #[inline]
    pub fn add_via(&self, headers: &mut impl AppendHeader) {
        if self.via {
            headers.append_header(header::VIA, VIA);
        }
    }

    /// The upstream's response, its body streamed with the stall timeout.
    #[inline]
    pub fn forwarded(
        &self,
        mut parts: http::response::Parts,
        body: ResponseBody,
        idle: Duration,
    ) -> Response<ProxyBody> {
        self.add_via(&mut parts.headers);
        Response::from_parts(parts, Either::Left(IdleTimeout::new(body, idle)))
    }

    /// The last touch on every response, forwarded or the proxy's own.
    #[inline]
    pub fn finish(&self, response: &mut Response<ProxyBody>, client: &Client) {
        // A final response cannot be interim. The forward phase refuses an
        // upstream 1xx (but an accepted `101`) before it gets here; should
        // one come anyway, it is answered 500, as hyper's server would.
        let status = response.status();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            tracing::error!(%status, "interim status as a final response; answering 500");
            *response = plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        }
        // HSTS over TLS only: browsers ignore it over plain HTTP (RFC 6797
        // §8.1). The configured policy replaces one sent by the upstream.
        if let (Some(hsts), true) = (&self.hsts, client.tls) {
            response
                .headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }

    /// The answer to a request refused by route policy. It never reaches
    /// the upstream.
    #[inline]
    pub fn denied(&self, denial: Denial) -> Response<ProxyBody> {
        let (status, body, content_type, location) = match denial {
            Denial::Redirect(location) => (StatusCode::FOUND, Bytes::new(), None, Some(location)),
            Denial::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                Bytes::from_static(b"{\"error\":\"login required\"}\n"),
                Some(HeaderValue::from_static("application/json")),
                None,
            ),
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(content_type) = content_type {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        if let Some(location) = location {
            headers.insert(header::LOCATION, location);
        }
        response
    }

    /// A short response for a failed request, revealing nothing internal.
    #[inline]
    pub fn error(&self, error: &ProxyError) -> Response<ProxyBody> {
        if let ProxyError::SessionLimit(limit) = error {
            return session_limit(*limit);
        }
        let status = error.status();
        let text = match error.fault() {
            Fault::Client if status == StatusCode::REQUEST_TIMEOUT => "request body timed out\n",
            Fault::Client if status == StatusCode::FORBIDDEN => "forbidden\n",
            Fault::Client if status == StatusCode::METHOD_NOT_ALLOWED => "method not allowed\n",
            Fault::Client => "bad request\n",
            Fault::Upstream if status == StatusCode::GATEWAY_TIMEOUT => "upstream timed out\n",
            Fault::Upstream => "bad gateway\n",
            Fault::Store => "session store unavailable, retry shortly\n",
            Fault::Proxy => "internal error\n",
        };
        let mut response = plain(status, text);
        if error.fault() == Fault::Store {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// The answer to a login refused by `auth.max_sessions_per_user`: 409
/// with `{"error":"too many sessions","limit":N}`.
fn session_limit(limit: usize) -> Response<ProxyBody> {
    let body = format!("{{\"error\":\"too many sessions\",\"limit\":{limit}}}\n");
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = StatusCode::CONFLICT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A short plain-text response that no cache keeps.
#[inline]
fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
