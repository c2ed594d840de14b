//! The request path, as a fixed list of phases:
//!
//! 1. **scrub** — client-sent reserved headers go, then hop-by-hop headers;
//! 2. **canonicalise** — the path every later phase and the upstream use;
//! 3. **identify** — verify the session cookie(s) (no store lookup before);
//! 4. **load** — the session from the store;
//! 5. **authorise** — login-only routes; denied requests end here;
//! 6. **inject** — session and forwarding headers, once each;
//! 7. **forward** — to the pooled upstream, bodies streamed; a WebSocket
//!    handshake the upstream accepts with `101` becomes a tunnel
//!    ([`upgrade`]), opened only after the commit phase, which keeps the
//!    connection's slot ([`Peer`]) until it closes;
//! 8. **commit** — read and strip `Set-Session`, apply it atomically in the
//!    store, then set or clear the cookie, all before the response head
//!    goes to the client.
//!
//! [`Proxy::handle`] is the outer handler that logs and renders errors;
//! [`Proxy::serve`] is the inner one that uses `?`.

mod commit;
pub mod error;
mod upgrade;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::config::{Config, Secure};
use crate::domain::cookie::signing::Signer;
use crate::domain::cookie::SessionCookie;
use crate::domain::headers::{self, Scrubber};
use crate::domain::path;
use crate::domain::routes::{self, Denial, Routes};
use crate::domain::session::{SessionData, SessionId};
use crate::domain::session_headers::SessionHeaders;
use crate::proxy::error::{Fault, ProxyError};
use crate::store::{AnyStore, SessionStore};
use crate::upstream::{self, Forwarding, Upstream};
use crate::util::body::{self, ClientBody, IdleTimeout, ProxyBody};

const VIA: HeaderValue = HeaderValue::from_static("1.1 cloakroom");

/// What the proxy knows of the client connection a request came on.
#[derive(Debug)]
pub struct Client {
    pub addr: IpAddr,
    /// `addr` as an `X-Forwarded-For` value.
    pub addr_header: HeaderValue,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
    /// The connection is TLS.
    pub tls: bool,
}

impl Client {
    pub fn new(addr: IpAddr, trusted: bool, tls: bool) -> Self {
        Self {
            addr,
            addr_header: upstream::address_header(addr),
            trusted,
            tls,
        }
    }
}

/// A client connection as the edge keeps it: its [`Client`] facts, and
/// whatever keeps the connection counted. A WebSocket tunnel holds a clone
/// of it for as long as it runs.
pub trait ClientConnection: Send + Sync + 'static {
    fn client(&self) -> &Client;
}

/// The session a request is served with.
struct Current {
    id: SessionId,
    data: Arc<SessionData>,
}

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
    secure: Secure,
    via: bool,
    body_idle_timeout: std::time::Duration,
    policy: commit::Policy,
    websocket_origins: upgrade::Origins,
}

impl Proxy {
    pub fn new(config: &Config, store: AnyStore) -> Self {
        let session_headers = SessionHeaders::new(&config.session);
        let signer = Signer::new(&config.session.secrets.list);
        Self {
            cookie: SessionCookie::new(config.cookie.clone(), signer),
            store,
            routes: Routes::new(&config.auth.protect, config.auth.case_sensitive),
            scrubber: Scrubber::new(session_headers.field_names()),
            session_headers,
            upstream: Upstream::new(&config.upstream, config.server.workers),
            identity_key: config.auth.identity_key.clone(),
            login_url: config.auth.login_url.clone(),
            secure: config.cookie.secure,
            via: config.server.via,
            body_idle_timeout: config.server.body_idle_timeout,
            policy: commit::Policy::new(config),
            websocket_origins: upgrade::Origins::new(&config.auth.websocket_origins),
        }
    }

    /// Serves one request; never fails: errors become short responses.
    pub async fn handle<C: ClientConnection>(
        &self,
        request: Request<ClientBody>,
        conn: &Arc<C>,
    ) -> Response<ProxyBody> {
        let method = request.method().clone();
        let peer = conn.client();
        match self.serve(request, conn).await {
            Ok(response) => response,
            Err(error) => {
                match error.fault() {
                    Fault::Client => {
                        tracing::info!(peer = %peer.addr, %method, %error, "request refused")
                    }
                    Fault::Upstream => tracing::error!(%method, %error, "upstream failure"),
                    Fault::Store | Fault::Proxy => {
                        tracing::error!(%method, %error, "request failed")
                    }
                }
                error.to_response()
            }
        }
    }

    async fn serve<C: ClientConnection>(
        &self,
        mut request: Request<ClientBody>,
        conn: &Arc<C>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let peer = conn.client();
        let handshake = upgrade::Handshake::take(&mut request);
        let (mut parts, body) = request.into_parts();

        // 1. scrub
        if !headers::chunked_only(&parts.headers) {
            return Err(ProxyError::BadTransferEncoding);
        }
        self.scrubber.scrub(&mut parts.headers, peer.trusted);
        headers::remove_hop_by_hop(&mut parts.headers);
        if handshake.is_some() {
            upgrade::restore(&mut parts.headers);
        }
        let host = upstream::requested_host(&parts)?;

        // 2. canonicalise (the original URI is kept aside; parts.uri is
        // rewritten for the upstream at the end)
        let uri = std::mem::take(&mut parts.uri);
        let path = path::canonicalize(uri.path())?;

        // 3. identify, 4. load
        let mut ticket = self.cookie.read(&parts.headers);
        if ticket.forged {
            tracing::warn!(peer = %peer.addr, "session cookie with a forged signature ignored");
        }
        let current = self.load(std::mem::take(&mut ticket.candidates)).await?;

        // 5. authorise
        if let Some(rule) = self.routes.rule_for(&path) {
            let logged_in = current
                .as_ref()
                .is_some_and(|c| c.data.is_logged_in(&self.identity_key));
            if !logged_in {
                let next = match uri.query() {
                    Some(query) => format!("{path}?{query}"),
                    None => path.clone().into_owned(),
                };
                let denial = routes::deny(
                    rule.deny,
                    &parts.method,
                    &parts.headers,
                    &self.login_url,
                    &next,
                );
                return Ok(denied(denial));
            }
            if handshake.is_some() {
                self.websocket_origins.check(&parts.headers)?;
            }
        }

        // 6. inject
        let https = peer.tls || upstream::forwarded_https(&parts.headers, peer.trusted);
        self.cookie.strip(&mut parts.headers, &ticket);
        if let Some(current) = &current {
            let omissions =
                self.session_headers
                    .inject(&mut parts.headers, &current.id, &current.data);
            if omissions.any() {
                tracing::error!(
                    session = %self.cookie.signer().log_tag(&current.id),
                    x_session = omissions.session,
                    fields = ?omissions.fields,
                    "session headers over [session.headers] max_bytes were not sent"
                );
            }
        }
        let forwarding = Forwarding {
            peer: &peer.addr_header,
            trusted: peer.trusted,
            proto: if https { "https" } else { "http" },
        };
        upstream::add_forwarding(&mut parts.headers, forwarding, host.as_ref());
        if self.via {
            parts.headers.append(header::VIA, VIA);
        }
        let rewritten = match &path {
            Cow::Borrowed(_) => None,
            Cow::Owned(path) => Some(path.as_str()),
        };
        self.upstream.retarget(&mut parts, host, &uri, rewritten)?;

        // 7. forward
        let body = IdleTimeout::new(body, self.body_idle_timeout);
        let mut response = self.upstream.send(Request::from_parts(parts, body)).await?;
        let tunnel = upgrade::Handshake::accept(handshake, &mut response)?;

        // 8. commit
        let (mut parts, body) = response.into_parts();
        let set_session = headers::take_set_session(&mut parts.headers);
        headers::remove_hop_by_hop(&mut parts.headers);
        if tunnel.is_some() {
            upgrade::restore(&mut parts.headers);
        }
        let secure = match self.secure {
            Secure::Always => true,
            Secure::Never => false,
            Secure::Auto => https,
        };
        let set_cookie = self
            .commit(current.as_ref(), &set_session, secure)
            .await
            .inspect_err(|error| {
                tracing::error!(path = %path, %error, "Set-Session refused; store left unchanged");
            })?;
        if let Some(value) = set_cookie {
            parts.headers.append(header::SET_COOKIE, value);
        }
        if self.via {
            parts.headers.append(header::VIA, VIA);
        }
        if let Some(tunnel) = tunnel {
            tunnel.spawn(conn.clone());
        }
        Ok(Response::from_parts(
            parts,
            body::streamed(body, self.body_idle_timeout),
        ))
    }

    /// The live session among the verified candidates. Several different
    /// live sessions are ambiguous and mean no session. The ids are taken
    /// by value: the one found becomes the request's without a copy.
    async fn load(&self, candidates: Vec<SessionId>) -> Result<Option<Current>, ProxyError> {
        let mut found: Option<Current> = None;
        for id in candidates {
            let Some(data) = self.store.load(&id).await? else {
                continue;
            };
            if found.is_some() {
                tracing::warn!("request carries two live sessions; serving it with none");
                return Ok(None);
            }
            found = Some(Current { id, data });
        }
        Ok(found)
    }
}

/// The answer to a request refused by route policy. It never reaches the
/// upstream.
fn denied(denial: Denial) -> Response<ProxyBody> {
    let (status, body, content_type, location) = match denial {
        Denial::Redirect(location) => (StatusCode::FOUND, Bytes::new(), None, Some(location)),
        Denial::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            Bytes::from_static(b"{\"error\":\"login required\"}\n"),
            Some(HeaderValue::from_static("application/json")),
            None,
        ),
    };
    let mut response = Response::new(body::full(body));
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
