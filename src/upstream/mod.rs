//! The upstream: the connection pools built at start-up, and the rewriting
//! of a client request into an upstream request (target, Host, version,
//! forwarding headers).
//!
//! Two clients share the work: [`simple`] writes and reads body-less `GET`
//! and `HEAD` exchanges to a plain-TCP upstream directly on its own pooled
//! connections; hyper's client ([`pool`]) serves everything else (request
//! bodies, WebSocket handshakes, `https://` upstreams). Each keeps its own
//! idle connections, up to `upstream.pool_max_idle`.

mod direct;
mod endpoint;
mod error;
mod framing;
mod idle;
mod pool;
pub mod settings;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tokio_rustls::TlsConnector;

use crate::domain::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::util::body::{ClientBody, IdleTimeout};
use crate::util::tokens;
use settings::UpstreamSettings;

/// Request body type sent upstream: the client's body, with a stall timeout.
pub type UpstreamBody = IdleTimeout<ClientBody>;

pub use direct::SimpleBody;
pub use error::{ExchangeError, UpstreamError};
pub use pool::PooledBody;

pub struct Upstream {
    pool: pool::Pool,
    /// Body-less `GET`s and `HEAD`s to a plain-TCP upstream; `None` for an
    /// `https://` upstream, which hyper's client serves whole.
    simple: Option<direct::SimplePool>,
    authority_header: HeaderValue,
    response_timeout: Duration,
    preserve_host: bool,
}

/// Facts about the client connection the forwarding headers are built from.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The peer address, as a header value (made once per connection).
    pub peer: &'a HeaderValue,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
    /// The scheme the client used to reach us (`http` until TLS exists).
    pub proto: &'static str,
}

impl Upstream {
    /// `workers`: the worker threads, each with its own idle connections.
    /// `direct`: the direct client serves the exchanges it can (off: hyper's
    /// client serves all).
    pub fn new(config: &UpstreamSettings, workers: usize, direct: bool) -> Self {
        // Validated at start-up: the upstream URL has an authority.
        let authority = config
            .url
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("127.0.0.1"));
        let default_port = match config.tls {
            Some(_) => 443,
            None => 80,
        };
        let target = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(default_port)
        );
        let tls = config.tls.as_ref().map(|tls| pool::TlsTarget {
            connector: TlsConnector::from(tls.client.clone()),
            server_name: tls.server_name.clone(),
        });
        let endpoint = endpoint::Endpoint {
            target,
            connect_timeout: config.connect_timeout,
        };
        // Each client keeps its own idle connections.
        let (max_idle, idle_timeout) = (config.pool_max_idle, config.pool_idle_timeout);
        let simple = (direct && config.tls.is_none()).then(|| {
            let idle = idle::IdleLists::new(max_idle, idle_timeout, workers);
            direct::SimplePool::new(endpoint.clone(), idle)
        });
        let idle = idle::IdleLists::new(max_idle, idle_timeout, workers);
        let pool = pool::Pool::new(endpoint, tls, idle);
        let authority_header = HeaderValue::from_str(authority.as_str())
            .unwrap_or(HeaderValue::from_static("127.0.0.1"));
        Self {
            pool,
            simple,
            authority_header,
            response_timeout: config.response_timeout,
            preserve_host: config.preserve_host,
        }
    }

    /// Points the request at the upstream: URI, version and Host. `path` is
    /// the canonical path when it differs from `original`'s.
    pub fn retarget(
        &self,
        parts: &mut http::request::Parts,
        host: Option<HeaderValue>,
        original: &Uri,
        path: Option<&str>,
    ) -> Result<(), UpstreamError> {
        let path_and_query = match path {
            None => original
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            Some(path) => {
                let joined = match original.query() {
                    Some(query) => format!("{path}?{query}"),
                    None => path.to_owned(),
                };
                PathAndQuery::try_from(joined).map_err(|e| UpstreamError::BadRequest(e.into()))?
            }
        };
        // Origin form: the request line carries the path; Host the authority.
        parts.uri = Uri::from(path_and_query);
        parts.version = Version::HTTP_11;
        let host = match host {
            Some(host) if self.preserve_host => host,
            _ => self.authority_header.clone(),
        };
        parts.headers.insert(header::HOST, host);
        Ok(())
    }

    /// Sends `request` and returns the response once its head has arrived.
    ///
    /// Not an `async fn`: the request is consumed here, before the future
    /// is made (encoded into a head for a simple exchange, boxed with the
    /// rarer hyper exchange), and [`Sending`] polls the exchange where it
    /// lies, so the future a request's task carries (and copies as it is
    /// built) holds one small exchange and no copy of the request.
    pub fn send(
        &self,
        request: Request<UpstreamBody>,
    ) -> Sending<
        impl Future<Output = SimpleResult> + Send + '_,
        impl Future<Output = PooledResult> + Send + '_,
    > {
        let exchange = match &self.simple {
            Some(simple) if direct::eligible(&request) => Exchange::Simple {
                future: simple.send(direct::Head::encode(&request)),
            },
            _ => Exchange::Pooled {
                future: Box::pin(self.pool.send(chunk_unsized_body(request))),
            },
        };
        // From the coarse clock (no clock read per request): the timeout
        // may end up to one tick (20 ms) early.
        let timed = match crate::util::coarse_clock::now().checked_add(self.response_timeout) {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), exchange),
            None => tokio::time::timeout(self.response_timeout, exchange),
        };
        Sending {
            timed,
            limit: self.response_timeout,
        }
    }
}

/// hyper's client sends no body at all for a `GET`, `HEAD` or `CONNECT`
/// whose body length it does not know (it assumes there is none). A client
/// that sent such a body chunked has it forwarded chunked.
fn chunk_unsized_body(mut request: Request<UpstreamBody>) -> Request<UpstreamBody> {
    let body = request.body();
    if !body.is_end_stream()
        && body.size_hint().exact().is_none()
        && !request.headers().contains_key(header::CONTENT_LENGTH)
    {
        request.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    request
}

type SimpleResult = Result<Response<SimpleBody>, ExchangeError>;
type PooledResult = Result<Response<PooledBody>, ExchangeError>;

pin_project! {
    /// One exchange with the upstream, by whichever client serves it.
    #[project = ExchangeProjection]
    enum Exchange<S, P> {
        Simple { #[pin] future: S },
        // Boxed: the hyper exchange is larger and rarer.
        Pooled { future: Pin<Box<P>> },
    }
}

impl<S, P> Future for Exchange<S, P>
where
    S: Future<Output = SimpleResult>,
    P: Future<Output = PooledResult>,
{
    type Output = Result<Response<ResponseBody>, ExchangeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ExchangeProjection::Simple { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::Simple))),
            ExchangeProjection::Pooled { future } => future
                .as_mut()
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::Pooled))),
        }
    }
}

pin_project! {
    /// The future of [`Upstream::send`]: the exchange under
    /// `upstream.response_timeout`, its failure classified.
    pub struct Sending<S, P> {
        #[pin]
        timed: tokio::time::Timeout<Exchange<S, P>>,
        limit: Duration,
    }
}

impl<S, P> Future for Sending<S, P>
where
    S: Future<Output = SimpleResult>,
    P: Future<Output = PooledResult>,
{
    type Output = Result<Response<ResponseBody>, UpstreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match ready!(this.timed.poll(cx)) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(UpstreamError::classify(&error)),
            Err(_) => Err(UpstreamError::Timeout(*this.limit)),
        })
    }
}

/// An upstream response's body, from whichever client fetched it.
pub enum ResponseBody {
    Pooled(PooledBody),
    Simple(SimpleBody),
}

impl http_body::Body for ResponseBody {
    type Data = bytes::Bytes;
    type Error = crate::util::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Pooled(body) => std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Simple(body) => std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pooled(body) => body.is_end_stream(),
            Self::Simple(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Pooled(body) => body.size_hint(),
            Self::Simple(body) => body.size_hint(),
        }
    }
}

/// True when the request reached the client side over HTTPS according to
/// the nearest trusted proxy (the last value of `X-Forwarded-Proto`).
pub fn forwarded_https(headers: &HeaderMap, trusted: bool) -> bool {
    trusted
        && headers
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .next_back()
            .and_then(|v| tokens::split_list(v.as_bytes()).next_back())
            .is_some_and(|v| v.eq_ignore_ascii_case(b"https"))
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. From a trusted proxy the
/// chain is extended and its proto/host kept; from anyone else (whose
/// copies were scrubbed) they are set afresh.
pub fn add_forwarding(headers: &mut HeaderMap, fwd: Forwarding<'_>, host: Option<&HeaderValue>) {
    let earlier: Vec<&str> = if fwd.trusted {
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let chain = match (earlier.is_empty(), fwd.peer.to_str()) {
        (false, Ok(peer)) => HeaderValue::from_str(&format!("{}, {peer}", earlier.join(", "))).ok(),
        _ => Some(fwd.peer.clone()),
    };
    if let Some(chain) = chain {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    if !(fwd.trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(fwd.proto));
    }
    if !(fwd.trusted && headers.contains_key(X_FORWARDED_HOST)) {
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    }
}

/// The peer address as an `X-Forwarded-For` value.
pub fn address_header(addr: IpAddr) -> HeaderValue {
    // An IP address prints as ASCII digits, dots, colons and hex letters.
    HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_peers_get_fresh_forwarding_headers() {
        let mut headers = HeaderMap::new();
        let peer = HeaderValue::from_static("10.1.2.3");
        let fwd = Forwarding {
            peer: &peer,
            trusted: false,
            proto: "http",
        };
        add_forwarding(
            &mut headers,
            fwd,
            Some(&HeaderValue::from_static("app.example")),
        );
        assert_eq!(headers[X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "app.example");
    }

    #[test]
    fn trusted_peers_extend_the_chain_and_keep_proto() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let peer = HeaderValue::from_static("10.0.0.1");
        let fwd = Forwarding {
            peer: &peer,
            trusted: true,
            proto: "http",
        };
        add_forwarding(&mut headers, fwd, None);
        assert_eq!(headers[X_FORWARDED_FOR], "1.1.1.1, 10.0.0.1");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn https_is_read_from_the_nearest_trusted_hop_only() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https, http"));
        assert!(!forwarded_https(&headers, true));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http, https"));
        assert!(forwarded_https(&headers, true));
        assert!(!forwarded_https(&headers, false));
    }
}
