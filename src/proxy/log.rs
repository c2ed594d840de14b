//! The log phase: what became of a request, recorded once it is answered,
//! however it ended: the access log line (target `cloakroom::access`), the
//! metrics, and failures logged by who is at fault.
//!
//! The access line holds the method, the path (without the query unless
//! `log.access_query`), the status, the duration, the upstream time, the
//! protocol, the session outcome, and the session as a keyed hash
//! ([`Signer::log_tag`](crate::domain::cookie::signing::Signer::log_tag)).
//! Never a session id, a cookie, session data, a secret or an
//! `Authorization` value.

use http::{Response, Version};

use super::context::{Context, SessionOutcome};
use super::error::{Fault, ProxyError};
use super::Proxy;
use crate::metrics::SessionEvent;

/// Logs a failed request by fault: a client's at `info`, the others' at
/// `error`. Never a cookie, an id or session data.
#[inline]
pub(super) fn failure(proxy: &Proxy, error: &ProxyError, context: &Context<'_>) {
    let method = &context.method;
    match error.fault() {
        Fault::Client => {
            tracing::info!(peer = %context.client.addr, %method, %error, "request refused")
        }
        Fault::Upstream => {
            if let Some(metrics) = &proxy.observer.metrics {
                metrics.upstream_error();
            }
            tracing::error!(%method, %error, "upstream failure")
        }
        Fault::Store | Fault::Proxy => tracing::error!(%method, %error, "request failed"),
    }
}

/// Records the request's outcome: metrics, then the access line.
#[inline]
pub(super) fn record<B>(proxy: &Proxy, context: &Context<'_>, response: &Response<B>) {
    let observer = &proxy.observer;
    let status = response.status().as_u16();
    if let Some(metrics) = &observer.metrics {
        metrics.request(status, context.route);
        if let Some(time) = context.upstream_time {
            metrics.upstream(time);
        }
        match context.outcome {
            SessionOutcome::Created => metrics.session(SessionEvent::Created),
            SessionOutcome::Rotated => metrics.session(SessionEvent::Rotated),
            SessionOutcome::Destroyed => metrics.session(SessionEvent::Destroyed),
            SessionOutcome::Denied => metrics.denial(),
            SessionOutcome::Expired => metrics.session(SessionEvent::Expired),
            _ => {}
        }
    }
    if observer.access {
        access_line(proxy, context, status);
    }
}

#[inline(never)]
fn access_line(proxy: &Proxy, context: &Context<'_>, status: u16) {
    let (path, query) = match &context.logged_uri {
        Some(uri) => (uri.path(), uri.query().unwrap_or("")),
        None => ("", ""),
    };
    let query = if proxy.observer.access_query {
        query
    } else {
        ""
    };
    let session = context
        .session_id()
        .map(|id| proxy.cookie.signer().log_tag(id));
    let duration_ms = context.started.map(|started| millis(started.elapsed()));
    let upstream_ms = context.upstream_time.map(millis);
    tracing::info!(
        target: "cloakroom::access",
        method = context.method.as_str(),
        path,
        query = (!query.is_empty()).then_some(query),
        status,
        duration_ms,
        upstream_ms,
        protocol = protocol(context.version),
        tls = context.client.tls,
        session = context.outcome.as_str(),
        sid = session.as_ref().map(|tag| tag.as_str()),
        // The address's text, made once per connection.
        peer = context.client.addr_header.to_str().unwrap_or(""),
        "request"
    );
}

/// Milliseconds to the microsecond: `1.234`, not `1.2340000000000002`.
fn millis(duration: std::time::Duration) -> f64 {
    // Exact below 2^53 µs (285 years).
    duration.as_micros() as f64 / 1000.0
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}
