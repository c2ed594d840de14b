//! What can go wrong with an upstream exchange: [`ExchangeError`], as
//! each client meets it, and [`UpstreamError`], the same classified by who
//! is at fault (the client's request body, or the upstream), which is what
//! [`super::Upstream::send`] returns.

use std::time::Duration;

use crate::util::body::{BodyStalled, ClientBodyFailed};

/// Why a request could not be exchanged with the upstream; each names the
/// step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, #[source] std::io::Error),
    /// The TLS handshake failed: a certificate the configured CAs do not
    /// vouch for, a name mismatch, or no common protocol.
    #[error("TLS handshake with {0} failed")]
    Tls(String, #[source] std::io::Error),
    /// The connection was open, and writing the request or reading the
    /// response on it failed.
    #[error("exchange with {0} failed: {1}")]
    Exchange(String, #[source] std::io::Error),
    /// The upstream closed the connection before it answered.
    #[error("{0} closed the connection before answering")]
    Closed(String),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// A response that breaks HTTP/1.1's rules (see [`super::direct`]).
    #[error("upstream sent an invalid response: {0}")]
    Protocol(&'static str),
}

/// A failed exchange, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The client's request body stalled (the client's fault).
    #[error("request body stalled")]
    RequestBodyStalled,
    /// The client's request body broke off or was malformed (the client's
    /// fault).
    #[error("request body failed: {0}")]
    RequestBodyFailed(String),
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be made into an upstream request (a bug).
    #[error("could not build the upstream request: {0}")]
    BadRequest(http::Error),
}

impl UpstreamError {
    /// Classifies a failed exchange: a stalled or failed client body is
    /// the client's fault; the rest is the upstream's.
    pub(super) fn classify(error: &ExchangeError) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if cause.is::<BodyStalled>() {
                return Self::RequestBodyStalled;
            }
            if cause.is::<ClientBodyFailed>() {
                return Self::RequestBodyFailed(describe(error));
            }
            if cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_user)
            {
                return Self::RequestBodyFailed(describe(error));
            }
            source = cause.source();
        }
        Self::Unreachable(describe(error))
    }
}

/// An error with its causes, for the log.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
