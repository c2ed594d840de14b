//! The per-request state the phases share: [`Context`] (facts about the
//! request and what the phases found) and [`Outgoing`] (the request on its
//! way to the upstream, rewritten phase by phase).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Uri, Version};

use super::client::Client;
use super::observer::Observer;
use super::upgrade::Handshake;
use crate::domain::cookie::signing::Signature;
use crate::domain::session::{SessionData, SessionId};
use crate::metrics::RouteKind;
use crate::store::Times;
use crate::util::additions::Additions;
use crate::util::body::ClientBody;

/// The session a request is served with.
pub(super) struct Current {
    pub id: SessionId,
    /// The id's signature as the request's cookie carried it, when the
    /// first secret made it: a cookie issued again for the id reuses it.
    pub signature: Option<Signature>,
    pub data: Arc<SessionData>,
    /// Its expiry, deadlines and lifetime, as the store told them.
    pub times: Times,
}

/// What happened to the request's session, for the log phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionOutcome {
    /// No session, and none made.
    None,
    /// A session was loaded and used; the store was not written.
    Loaded,
    /// A session was made for the request.
    Created,
    /// A session was written under the same id.
    Saved,
    /// The session moved to a fresh id.
    Rotated,
    /// The session was destroyed.
    Destroyed,
    /// The route needed a session the request did not have.
    Denied,
    /// The session had expired (idle or absolute timeout): served as none.
    Expired,
    /// The store failed.
    StoreError,
}

impl SessionOutcome {
    #[inline]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Loaded => "loaded",
            Self::Created => "created",
            Self::Saved => "saved",
            Self::Rotated => "rotated",
            Self::Destroyed => "destroyed",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::StoreError => "store-error",
        }
    }
}

/// One request's facts and findings, from the first phase to the log.
pub(super) struct Context<'a> {
    pub client: &'a Client,
    pub method: Method,
    /// The client reached us over HTTPS (directly, or per a trusted
    /// proxy); known from the inject phase on.
    pub https: bool,
    /// The session found by the load phase.
    pub session: Option<Current>,
    pub outcome: SessionOutcome,
    /// The target as the client sent it, from the inject phase on (before,
    /// it is [`Outgoing::original`]).
    pub target: Option<Uri>,
    /// How long the upstream took to answer with a head.
    pub upstream_time: Option<Duration>,
    /// When the request started, when requests are timed.
    pub started: Option<Instant>,
    pub version: Version,
    /// The target as the client sent it, kept for the access log.
    pub logged_uri: Option<Uri>,
    /// Public, or login-only (known from the authorise phase on).
    pub route: RouteKind,
    /// The id a write left the session under (a new one when created or
    /// rotated), for the access log.
    pub saved_as: Option<SessionId>,
    /// The client's `User-Agent`, for the user index.
    pub user_agent: Option<HeaderValue>,
    /// `X-Forwarded-For` as a trusted proxy sent it (never an untrusted
    /// peer's), for the client address the user index records.
    pub forwarded_for: Option<HeaderValue>,
}

impl<'a> Context<'a> {
    #[inline]
    pub fn new<B>(client: &'a Client, request: &Request<B>, observer: &Observer) -> Self {
        Self {
            started: observer.timing().then(Instant::now),
            version: request.version(),
            logged_uri: observer.access.then(|| request.uri().clone()),
            route: RouteKind::Public,
            saved_as: None,
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            forwarded_for: client
                .trusted
                .then(|| request.headers().get("x-forwarded-for").cloned())
                .flatten(),
            client,
            method: request.method().clone(),
            https: client.tls,
            session: None,
            outcome: SessionOutcome::None,
            target: None,
            upstream_time: None,
        }
    }
}

impl Context<'_> {
    /// The session the request ended with: the id it was saved under, or
    /// the one it came with.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.saved_as
            .as_ref()
            .or(self.session.as_ref().map(|current| &current.id))
    }
}

/// The request on its way upstream.
pub(super) struct Outgoing {
    pub parts: http::request::Parts,
    pub body: ClientBody,
    /// A WebSocket handshake the client asked for.
    pub handshake: Option<Handshake>,
    /// The host the client asked for (`Host`, or the HTTP/2 authority).
    pub host: Option<HeaderValue>,
    /// The target as the client sent it; `parts.uri` is rewritten for the
    /// upstream by the inject phase.
    pub original: Uri,
    /// The canonical path, when it differs from the original's.
    pub canonical: Option<String>,
    /// The headers the inject phase adds, sent after the client's.
    pub added: Additions,
}

impl Outgoing {
    /// The client's request, taken apart: the WebSocket handshake it asks
    /// for (if any) is taken, and its target set aside.
    #[inline]
    pub fn new(mut request: Request<ClientBody>) -> Self {
        let handshake = Handshake::take(&mut request);
        let (mut parts, body) = request.into_parts();
        let original = std::mem::take(&mut parts.uri);
        Self {
            parts,
            body,
            handshake,
            host: None,
            original,
            canonical: None,
            added: Additions::default(),
        }
    }

    /// The canonical path: what routes match and the upstream receives.
    #[inline]
    pub fn path(&self) -> &str {
        self.canonical.as_deref().unwrap_or(self.original.path())
    }
}
