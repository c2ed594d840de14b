//! The proxy: one request's way through Cloakroom, as a fixed list of
//! phases over one per-request [`Context`], in this order:
//!
//! 1. [`scrub`](Proxy::scrub): client-sent reserved headers go, then
//!    hop-by-hop headers; the requested host is resolved;
//! 2. [`canonicalise`](Proxy::canonicalise): the path every later phase and
//!    the upstream use;
//! 3. [`identify`](Proxy::identify): the session cookie(s) verified (no store
//!    lookup before);
//! 4. [`load`](Proxy::load): the session from the store;
//! 5. [`authorise`](Proxy::authorise): login-only routes; a denied request
//!    ends here;
//! 6. [`inject`](Proxy::inject): the session cookie stripped, session and
//!    forwarding headers added once each, the target rewritten;
//! 7. [`forward`](Proxy::forward): to the pooled upstream, bodies streamed;
//! 8. [`commit`](Proxy::commit): `Set-Session` read and stripped
//!    ([`commit_head`](Proxy::commit_head), synchronous; most responses
//!    stop there), applied atomically in the store, then the cookie set or
//!    cleared, all before the response head goes to the client; an
//!    accepted WebSocket handshake becomes a tunnel ([`upgrade`]) only
//!    after that;
//! 9. [`log`](log::record): the outcome of the request, however it ended.
//!
//! [`Proxy::handle`] is the outer handler that renders errors and runs the
//! log phase; [`Proxy::serve`] is the inner one, the list of phase calls,
//! which uses `?`. Every response the proxy writes itself comes from
//! [`respond`].

mod client;
mod commit;
mod context;
pub(crate) mod error;
mod forward;
mod forward_auth;
mod log;
mod observer;
mod phases;
pub(crate) mod respond;
mod settings;
mod suspicious;
mod tunnels;
mod upgrade;
mod users;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use http::{Request, Response};

use crate::domain::cookie::SessionCookie;
use crate::domain::cross_origin::CrossOrigin;
use crate::domain::headers::Scrubber;
use crate::domain::routes::Routes;
use crate::domain::session_headers::SessionHeaders;
use crate::metrics::Metrics;
use crate::store::AnyStore;
use crate::upstream::Upstream;
use crate::util::body::ClientBody;

pub use client::{Client, ClientConnection};
pub use observer::Observer;
pub use respond::ProxyBody;
pub use settings::{AccessLog, CommitPolicy, Settings, UserPolicy};

use context::{Context, Outgoing};
use error::ProxyError;

/// Everything a request needs, built once at start-up and shared.
pub struct Proxy {
    cookie: SessionCookie,
    store: AnyStore,
    routes: Routes,
    scrubber: Scrubber,
    session_headers: SessionHeaders,
    upstream: Upstream,
    identity_key: String,
    login_url: String,
    allow_trace: bool,
    respond: respond::Responder,
    body_idle_timeout: std::time::Duration,
    policy: CommitPolicy,
    websocket_origins: upgrade::Origins,
    forged_cookies: Arc<suspicious::ForgedCookies>,
    cross_origin: CrossOrigin,
    tunnels: Arc<tunnels::Tunnels>,
    observer: Observer,
    forward_auth_path: Option<String>,
    users: UserPolicy,
}

/// What outlives a configuration reload: the store, the open tunnels, the
/// forged-cookie log's state and the metrics.
#[derive(Clone)]
pub struct Shared {
    store: AnyStore,
    tunnels: Arc<tunnels::Tunnels>,
    forged_cookies: Arc<suspicious::ForgedCookies>,
    metrics: Option<Arc<Metrics>>,
}

impl Shared {
    pub fn new(store: AnyStore, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            store,
            tunnels: Arc::default(),
            forged_cookies: suspicious::forged_cookies(),
            metrics,
        }
    }
}

impl Proxy {
    pub fn new(settings: Settings, shared: Shared) -> Self {
        let Settings {
            cookie,
            signer,
            routes,
            session_headers,
            upstream,
            identity_key,
            login_url,
            allow_trace,
            via,
            hsts,
            body_idle_timeout,
            policy,
            websocket_origins,
            cross_origin,
            forward_auth_path,
            access_log,
            users,
        } = settings;
        let Shared {
            store,
            tunnels,
            forged_cookies,
            metrics,
        } = shared;
        Self {
            cookie: SessionCookie::new(cookie, signer),
            store,
            routes,
            scrubber: Scrubber::new(session_headers.field_names()),
            session_headers,
            upstream,
            identity_key,
            login_url,
            allow_trace,
            respond: respond::Responder::new(via, hsts),
            body_idle_timeout,
            policy,
            websocket_origins: upgrade::Origins::new(&websocket_origins),
            forged_cookies,
            cross_origin,
            tunnels,
            forward_auth_path,
            users,
            observer: Observer {
                metrics,
                // Off, too, when no subscriber would write the lines.
                access: access_log.enabled
                    && tracing::enabled!(target: "cloakroom::access", tracing::Level::INFO),
                access_query: access_log.query,
            },
        }
    }

    /// What a proxy built from new settings takes over from this one.
    pub fn shared(&self) -> Shared {
        Shared {
            store: self.store.clone(),
            tunnels: self.tunnels.clone(),
            forged_cookies: self.forged_cookies.clone(),
            metrics: self.observer.metrics.clone(),
        }
    }

    /// The store, for readiness checks and the metrics.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// Whether the store answers and the upstream accepts a connection;
    /// the reason when not.
    pub async fn ready(&self) -> Result<(), String> {
        self.store
            .ping()
            .await
            .map_err(|error| format!("store: {error}"))?;
        self.upstream
            .probe()
            .await
            .map_err(|error| format!("upstream: {error}"))
    }

    /// Open WebSocket tunnels on this instance.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.count()
    }

    /// Serves one request; never fails: errors become short responses.
    /// Ends with the log phase, whatever happened before.
    ///
    /// Written as a function returning an `async move` block, not as an
    /// `async fn`, here and in [`Self::serve`]: an `async fn` keeps each
    /// argument twice in its future (as passed, and as bound in its body),
    /// and every request's future is moved, whole, where it is polled.
    #[allow(clippy::manual_async_fn)]
    pub fn handle<'a, C: ClientConnection>(
        &'a self,
        request: Request<ClientBody>,
        conn: &'a Arc<C>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + use<'a, C> {
        async move {
            let mut context = Context::new(conn.client(), &request, &self.observer);
            // The request goes in as the outgoing one it becomes.
            let mut response = match self.serve(Outgoing::new(request), &mut context, conn).await {
                Ok(response) => response,
                Err(error) => {
                    log::failure(self, &error, &context);
                    self.respond.error(&error)
                }
            };
            self.respond.finish(&mut response, context.client);
            log::record(self, &context, &response);
            response
        }
    }

    /// The phases, in order; the first that fails or answers ends the
    /// request.
    #[allow(clippy::manual_async_fn)]
    fn serve<'a, 'c, 'x, C: ClientConnection>(
        &'a self,
        mut upstream_request: Outgoing,
        context: &'c mut Context<'x>,
        conn: &'a Arc<C>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + use<'a, 'c, 'x, C>
    {
        async move {
            self.scrub(&mut upstream_request, context)?;
            if self.is_forward_auth(&upstream_request) {
                // Boxed: a rare path, whose state would otherwise widen (and
                // be copied with) every request's future.
                return Box::pin(self.forward_auth(upstream_request, context)).await;
            }
            self.canonicalise(&mut upstream_request, context)?;
            let mut ticket = self.identify(&upstream_request, context);
            // No verified cookie, nothing to look up (and no future to make).
            if !ticket.candidates.is_empty() {
                self.load(std::mem::take(&mut ticket.candidates), context)
                    .await?;
            }
            if let Some(denial) = self.authorise(&upstream_request, context)? {
                return Ok(self.respond.denied(denial));
            }
            self.inject(&mut upstream_request, &ticket, context)?;
            // In a block of its own: the forwarding's state then shares room
            // with the commit's in the request's future, which every request
            // copies.
            let (response, tunnel) = {
                let mut forwarding = pin!(self.forward(upstream_request));
                let response = forwarding.as_mut().await?;
                let (tunnel, upstream_time) = forwarding.finish();
                context.upstream_time = upstream_time;
                (response, tunnel)
            };
            let (mut parts, body) = response.into_parts();
            if let Some(pending) = self.commit_head(&mut parts, tunnel.is_some(), context) {
                self.commit(&mut parts, &pending, context).await?;
            }
            // The tunnel opens only now, after the commit phase.
            if let Some(tunnel) = tunnel {
                let session = context
                    .session
                    .as_ref()
                    .map(|current| self.tunnels.link(current.id.clone(), self.store.clone()));
                tunnel.spawn(conn.clone(), session, self.tunnels.opened());
            }
            Ok(self.respond.forwarded(parts, body, self.body_idle_timeout))
        }
    }
}
