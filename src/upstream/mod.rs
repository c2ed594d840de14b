//! The upstream: the connection pools built at start-up, and the rewriting
//! of a client request into an upstream request (target, Host, version,
//! forwarding headers).
//!
//! Two clients share the work: [`direct`] writes and reads body-less `GET`
//! and `HEAD` exchanges to a plain-TCP upstream directly on its own pooled
//! connections; hyper's client ([`pool`]) serves everything else (request
//! bodies, WebSocket handshakes, `https://` upstreams). Each keeps its own
//! idle connections, up to `upstream.pool_max_idle`.

mod direct;
mod endpoint;
mod error;
mod forwarding;
mod framing;
mod idle;
mod pool;
pub mod settings;

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tokio_rustls::TlsConnector;

use crate::util::additions::Additions;
use crate::util::body::{ClientBody, IdleTimeout};
use settings::UpstreamSettings;

/// Request body type sent upstream: the client's body, with a stall timeout.
pub type UpstreamBody = IdleTimeout<ClientBody>;

#[cfg(feature = "fuzzing")]
pub use direct::fuzz_response;
pub use direct::DirectBody;
pub use error::{ExchangeError, UpstreamError};
pub use forwarding::{add_forwarding, address_header, forwarded_https, Forwarding};
pub use pool::PooledBody;

pub struct Upstream {
    pool: pool::Pool,
    /// Body-less `GET`s and `HEAD`s to a plain-TCP upstream; `None` for an
    /// `https://` upstream, which hyper's client serves whole.
    direct: Option<direct::DirectPool>,
    authority_header: HeaderValue,
    response_timeout: Duration,
    preserve_host: bool,
    /// Where new connections go, for readiness probes.
    endpoint: endpoint::Endpoint,
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
        let direct = (direct && config.tls.is_none()).then(|| {
            let idle = idle::IdleLists::new(max_idle, idle_timeout, workers);
            direct::DirectPool::new(endpoint.clone(), idle)
        });
        let idle = idle::IdleLists::new(max_idle, idle_timeout, workers);
        let pool = pool::Pool::new(endpoint.clone(), tls, idle);
        let authority_header = HeaderValue::from_str(authority.as_str())
            .unwrap_or(HeaderValue::from_static("127.0.0.1"));
        Self {
            pool,
            direct,
            authority_header,
            response_timeout: config.response_timeout,
            preserve_host: config.preserve_host,
            endpoint,
        }
    }

    /// Whether the upstream accepts a TCP connection within the connect
    /// timeout (a readiness probe; nothing is sent).
    pub async fn probe(&self) -> Result<(), ExchangeError> {
        self.endpoint.within(self.endpoint.tcp()).await.map(drop)
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

    /// Sends `request`, with the headers `added` after its own, and
    /// returns the response once its head has arrived.
    ///
    /// Not an `async fn`: the request is consumed here, before the future
    /// is made (encoded into a head for a direct exchange, boxed with the
    /// rarer hyper exchange), and [`Sending`] polls the exchange where it
    /// lies, so the future a request's task carries (and copies as it is
    /// built) holds one small exchange and no copy of the request.
    pub fn send(
        &self,
        mut request: Request<UpstreamBody>,
        added: Additions,
    ) -> Sending<
        impl Future<Output = DirectResult> + Send + '_,
        impl Future<Output = PooledResult> + Send + '_,
    > {
        let exchange = match &self.direct {
            Some(pool) if direct::eligible(&request) => Exchange::Direct {
                future: pool.send(direct::Head::encode(&request, &added)),
            },
            _ => {
                added.append_to(request.headers_mut());
                Exchange::Pooled {
                    future: Box::pin(self.pool.send(chunk_unsized_body(request))),
                }
            }
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

type DirectResult = Result<Response<DirectBody>, ExchangeError>;
type PooledResult = Result<Response<PooledBody>, ExchangeError>;

pin_project! {
    /// One exchange with the upstream, by whichever client serves it.
    #[project = ExchangeProjection]
    enum Exchange<S, P> {
        Direct { #[pin] future: S },
        // Boxed: the hyper exchange is larger and rarer.
        Pooled { future: Pin<Box<P>> },
    }
}

impl<S, P> Future for Exchange<S, P>
where
    S: Future<Output = DirectResult>,
    P: Future<Output = PooledResult>,
{
    type Output = Result<Response<ResponseBody>, ExchangeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ExchangeProjection::Direct { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::Direct))),
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
    S: Future<Output = DirectResult>,
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
    Direct(DirectBody),
}

impl http_body::Body for ResponseBody {
    type Data = bytes::Bytes;
    type Error = crate::util::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Pooled(body) => {
                let mut polled = std::pin::Pin::new(body).poll_frame(cx);
                // Trailers are headers too: `Set-Session` in any spelling
                // never reaches a client from there either. (The direct
                // client reads and drops trailers.)
                if let std::task::Poll::Ready(Some(Ok(frame))) = &mut polled {
                    if let Some(trailers) = frame.trailers_mut() {
                        drop(crate::domain::headers::take_set_session(trailers));
                    }
                }
                polled.map_err(Into::into)
            }
            Self::Direct(body) => std::pin::Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pooled(body) => body.is_end_stream(),
            Self::Direct(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Pooled(body) => body.size_hint(),
            Self::Direct(body) => body.size_hint(),
        }
    }
}
