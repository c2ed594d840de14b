//! The request phases before the upstream: scrub, canonicalise, identify,
//! load, authorise and inject. Each reads and writes only what its name
//! says (see the order in [`super`]).

use http::header::{self, HeaderValue};
use http::{Method, Version};

use super::context::{Context, Current, Outgoing, SessionOutcome};
use super::error::ProxyError;
use super::upgrade;
use super::Proxy;
use crate::domain::cookie::{Candidate, Candidates, Ticket};
use crate::domain::routes;
use crate::domain::{headers, path};
use crate::metrics::{RouteKind, StoreOp};
use crate::store::{Loaded, SessionStore};
use crate::upstream::{self, Forwarding};
use crate::util::additions::Additions;

impl Proxy {
    /// Scrub: refuses a request body framing other than `chunked`, removes
    /// client-sent reserved headers (every spelling) and hop-by-hop
    /// headers (but a WebSocket handshake's own), and resolves the
    /// requested host.
    #[inline]
    pub(super) fn scrub(
        &self,
        request: &mut Outgoing,
        context: &Context<'_>,
    ) -> Result<(), ProxyError> {
        let parts = &mut request.parts;
        // TRACE echoes the request back, cookies and the session headers
        // included (cross-site tracing): answered here, as nginx does.
        if parts.method == Method::TRACE && !self.allow_trace {
            return Err(ProxyError::MethodRefused);
        }
        if !headers::chunked_only(&parts.headers) {
            return Err(ProxyError::BadTransferEncoding);
        }
        self.scrubber
            .scrub(&mut parts.headers, context.client.trusted);
        headers::remove_hop_by_hop(&mut parts.headers);
        if request.handshake.is_some() {
            upgrade::restore(&mut parts.headers);
        }
        request.host = requested_host(parts, &request.original)?;
        Ok(())
    }

    /// Canonicalise: the path every later phase and the upstream see, or a
    /// 400 for an ambiguous one.
    #[inline]
    pub(super) fn canonicalise(
        &self,
        request: &mut Outgoing,
        _context: &Context<'_>,
    ) -> Result<(), ProxyError> {
        if let std::borrow::Cow::Owned(canonical) = path::canonicalize(request.original.path())? {
            request.canonical = Some(canonical);
        }
        Ok(())
    }

    /// Identify: the session cookies, verified. No store lookup happens
    /// before a signature is.
    #[inline]
    pub(super) fn identify(&self, request: &Outgoing, context: &Context<'_>) -> Ticket {
        let ticket = self.cookie.read(&request.parts.headers);
        if ticket.forged {
            self.observer.bad_signature();
            super::suspicious::warn_forged(&self.forged_cookies, context.client.addr);
        }
        ticket
    }

    /// Load: the live session among the verified candidates. Several
    /// different live sessions are ambiguous and mean no session. The ids
    /// are taken by value: the one found becomes the request's without a
    /// copy.
    #[inline]
    pub(super) async fn load(
        &self,
        candidates: Candidates,
        context: &mut Context<'_>,
    ) -> Result<(), ProxyError> {
        let mut found: Option<Current> = None;
        for Candidate { id, signature } in candidates {
            let started = self.observer.store_started();
            let loaded = self
                .store
                .load(&id, self.policy.lifetimes.idle.is_some())
                .await;
            self.observer
                .store_done(StoreOp::Load, started, loaded.is_ok());
            let stored = match loaded {
                Ok(Loaded::Live(stored)) => stored,
                Ok(Loaded::Missing) => continue,
                Ok(Loaded::Expired) => {
                    context.outcome = SessionOutcome::Expired;
                    continue;
                }
                Err(error) => {
                    context.outcome = SessionOutcome::StoreError;
                    return Err(error.into());
                }
            };
            if found.is_some() {
                tracing::warn!("request carries two live sessions; serving it with none");
                return Ok(());
            }
            found = Some(Current {
                id,
                signature,
                data: stored.data,
                times: stored.times,
            });
        }
        if found.is_some() {
            context.outcome = SessionOutcome::Loaded;
        }
        context.session = found;
        Ok(())
    }

    /// Authorise: a write with a session from another origin is refused
    /// ([`CrossOrigin`](crate::domain::cross_origin::CrossOrigin)); a login-only
    /// route without a logged-in session is denied
    /// (`Some`); on such a route a WebSocket handshake's `Origin` must be
    /// allowed.
    #[inline]
    pub(super) fn authorise(
        &self,
        request: &Outgoing,
        context: &mut Context<'_>,
    ) -> Result<Option<routes::Denial>, ProxyError> {
        let path = request.path();
        // A write with a session, from another origin: refused whatever
        // the route (cross-site request forgery).
        if context.session.is_some() {
            let parts = &request.parts;
            let host = request.host.as_ref();
            if !self
                .cross_origin
                .allows(&parts.method, &parts.headers, host, path)
            {
                return Err(ProxyError::CrossOriginRefused);
            }
        }
        let Some(rule) = self.routes.rule_for(path) else {
            return Ok(None);
        };
        context.route = RouteKind::LoginOnly;
        let logged_in = context
            .session
            .as_ref()
            .is_some_and(|c| c.data.is_logged_in(&self.identity_key));
        if !logged_in {
            let next = match request.original.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.to_owned(),
            };
            context.outcome = SessionOutcome::Denied;
            let parts = &request.parts;
            return Ok(Some(routes::deny(
                rule.deny,
                &parts.method,
                &parts.headers,
                &self.login_url,
                &next,
            )));
        }
        if request.handshake.is_some() {
            self.websocket_origins.check(&request.parts.headers)?;
        }
        Ok(None)
    }

    /// Inject: the session cookie out, the session and forwarding headers
    /// (once each) and `Via` added ([`Outgoing::added`]), and the target
    /// rewritten for the upstream (origin form, canonical path, `Host`).
    #[inline]
    pub(super) fn inject(
        &self,
        request: &mut Outgoing,
        ticket: &Ticket,
        context: &mut Context<'_>,
    ) -> Result<(), ProxyError> {
        let client = context.client;
        let headers = &mut request.parts.headers;
        context.https = client.tls || upstream::forwarded_https(headers, client.trusted);
        self.cookie.strip(headers, ticket);
        // Session headers, three forwarding headers and `Via`.
        let mut added = Additions::with_capacity(self.session_headers.count() + 4);
        if let Some(current) = &context.session {
            let omissions = self
                .session_headers
                .inject(&mut added, &current.id, &current.data);
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
            peer: &client.addr_header,
            trusted: client.trusted,
            proto: if context.https { "https" } else { "http" },
        };
        upstream::add_forwarding(headers, &mut added, forwarding, request.host.as_ref());
        self.respond.add_via(&mut added);
        request.added = added;
        let host = request.host.take();
        self.upstream.retarget(
            &mut request.parts,
            host,
            &request.original,
            request.canonical.as_deref(),
        )?;
        // The client's target, for the phases after this one and the log.
        context.target = Some(std::mem::take(&mut request.original));
        Ok(())
    }
}

/// A `Host` value that is one `host[:port]`: a valid authority without
/// user info or a list separator.
///
/// The usual value (letters, digits, `.`, `-`, `_`, `~` and at most one
/// `:`) is one by its bytes alone: the `http` crate's authority parser
/// accepts every such value, so it is not asked, which spares every
/// request a copy of the value into a new buffer. Anything else is
/// parsed.
fn is_one_host(value: &[u8]) -> bool {
    let mut colons = 0usize;
    let plain = value.iter().all(|&b| {
        colons += usize::from(b == b':');
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':')
    });
    if plain && colons <= 1 {
        return !value.is_empty();
    }
    !value.is_empty()
        && !value.contains(&b',')
        && !value.contains(&b'@')
        && http::uri::Authority::try_from(value).is_ok()
}

/// The host the client asked for: the Host header, or the HTTP/2 authority.
/// `Err` when HTTP/1.1 has none or there are several.
#[inline]
fn requested_host(
    parts: &http::request::Parts,
    target: &http::Uri,
) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(ProxyError::NoHost),
        // One host (RFC 9112 §3.2): `a, b` is a list, not a host, and an
        // upstream (or its X-Forwarded-Host) must never be handed one.
        (Some(host), None) if !is_one_host(host.as_bytes()) => Err(ProxyError::NoHost),
        (Some(host), None) => Ok(Some(host.clone())),
        (None, _) => match target.authority() {
            Some(authority) => Ok(HeaderValue::from_str(authority.as_str()).ok()),
            None if parts.version == Version::HTTP_11 => Err(ProxyError::NoHost),
            None => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    use super::is_one_host;

    /// What `is_one_host` answered before its fast path: the reference.
    fn parsed(value: &[u8]) -> bool {
        !value.is_empty()
            && !value.contains(&b',')
            && !value.contains(&b'@')
            && http::uri::Authority::try_from(value).is_ok()
    }

    #[test]
    fn a_host_is_one_exactly_when_the_authority_parser_says_so() {
        for value in [
            "",
            ":",
            "a:",
            ":80",
            "example.com",
            "example.com:8080",
            "a:b:c",
            "[::1]:80",
            "[::1",
            "user@host",
            "a,b",
            "a b",
            "%41",
            "host:80%",
            "_a~b-c.d",
            "a/b",
            "a?b",
            "a#b",
            "héllo",
            "[v1.x]",
            "a:80:",
        ] {
            assert_eq!(
                is_one_host(value.as_bytes()),
                parsed(value.as_bytes()),
                "{value:?}"
            );
        }
        // Random values over the characters that matter, the plain ones
        // most often.
        let alphabet = b"aZ09.-_~:::,@[]%/?# \x7f\t";
        let mut rng = rand::rng();
        for _ in 0..50_000 {
            let length = rng.random_range(0..12);
            let value: Vec<u8> = (0..length)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(
                is_one_host(&value),
                parsed(&value),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }
}
