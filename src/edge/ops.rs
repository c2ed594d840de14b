//! The operations listener (`[ops] listen`): `/healthz` (the process is
//! up), `/readyz` (the store answers and the upstream accepts a
//! connection; 503 with the reason when not), `/metrics` (Prometheus
//! text), all three unauthenticated, and the admin API under `/admin/`
//! behind a bearer token ([`super::admin`]). A listener of its own, never in the proxied path space; plain
//! HTTP/1.1 through hyper, on the main runtime, a few connections at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::accept::Slots;
use super::admin;
use super::live::Live;
use crate::domain::bearer::BearerToken;
use crate::metrics::{Metrics, RedisCacheScrape, Scrape};
use crate::tls::Certificates;

/// Connections served at once; more wait in the kernel's queue.
const MAX_CONNECTIONS: usize = 64;
/// A probe must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a readiness check waits for the store or the upstream.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the operations listener reads.
pub(super) struct Ops {
    pub live: Arc<Live>,
    pub metrics: Option<Arc<Metrics>>,
    pub slots: Slots,
    pub certificates: Option<Arc<Certificates>>,
    /// The admin API's token; `None`: `/admin/...` is 404.
    pub admin_token: Option<BearerToken>,
}

/// Serves the operations listener until the task is dropped.
pub(super) async fn serve(listener: TcpListener, ops: Arc<Ops>) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "operations listener (/healthz, /readyz, /metrics)");
    }
    super::side_listener::serve(
        listener,
        "operations",
        MAX_CONNECTIONS,
        HEADER_READ_TIMEOUT,
        move |request| {
            let ops = ops.clone();
            async move { ops.answer(request).await }
        },
    )
    .await;
}

impl Ops {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path.starts_with("/admin/") {
            return admin::answer(&self.live, self.admin_token.as_ref(), &request).await;
        }
        if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
            return text(StatusCode::NOT_FOUND, "not found\n".into());
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.ready().await {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            },
            _ => match &self.metrics {
                Some(metrics) => {
                    let mut response = text(StatusCode::OK, metrics.render(&self.scrape()));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    response
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "metrics are off (ops.metrics = false)\n".into(),
                ),
            },
        }
    }

    async fn ready(&self) -> Result<(), String> {
        let proxy = self.live.current();
        tokio::time::timeout(READY_TIMEOUT, proxy.ready())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {READY_TIMEOUT:?}")))
    }

    fn scrape(&self) -> Scrape {
        let proxy = self.live.current();
        Scrape {
            live_sessions: proxy.store().live_sessions(),
            redis_cache: proxy.store().cache_stats().map(|stats| RedisCacheScrape {
                tracking: stats.tracking,
                hits: stats.hits,
                misses: stats.misses,
                invalidations: stats.invalidations,
            }),
            open_connections: self.slots.taken(),
            tunnels: proxy.open_tunnels(),
            certificates: self
                .certificates
                .as_ref()
                .map(|certificates| certificates.current().expiries().to_vec())
                .unwrap_or_default(),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
