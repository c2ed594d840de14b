//! The log phase: what became of a request, recorded once it is answered,
//! however it ended. Today it records the outcome (status, session outcome,
//! upstream time) as a `trace` event on the `cloakroom::access` target;
//! failures are logged by who is at fault.

use http::Response;

use super::context::Context;
use super::error::{Fault, ProxyError};

/// Logs a failed request by fault: a client's at `info`, the others' at
/// `error`. Never a cookie, an id or session data.
#[inline]
pub(super) fn failure(error: &ProxyError, context: &Context<'_>) {
    let method = &context.method;
    match error.fault() {
        Fault::Client => {
            tracing::info!(peer = %context.client.addr, %method, %error, "request refused")
        }
        Fault::Upstream => tracing::error!(%method, %error, "upstream failure"),
        Fault::Store | Fault::Proxy => tracing::error!(%method, %error, "request failed"),
    }
}

/// Whether the outcome's timings are wanted: only while something listens
/// to the access events (a clock read each costs on every request).
#[inline]
pub(super) fn timing() -> bool {
    tracing::enabled!(target: "cloakroom::access", tracing::Level::TRACE)
}

/// Records the request's outcome.
#[inline]
pub(super) fn record<B>(context: &Context<'_>, response: &Response<B>) {
    tracing::trace!(
        target: "cloakroom::access",
        method = %context.method,
        status = response.status().as_u16(),
        session = context.outcome.as_str(),
        upstream_us = context.upstream_time.map(|t| t.as_micros() as u64),
        "request served"
    );
}
