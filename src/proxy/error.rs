//! Request errors, and the one place that maps them to a fault and a
//! status ([`super::respond`] renders them).
//!
//! Each error records who is at fault: the client (4xx), the upstream (502
//! or 504), the session store (503 with `Retry-After`) or the proxy itself
//! (500). The match from error to status is exhaustive, with no catch-all.

use http::StatusCode;
use thiserror::Error;

use crate::domain::path::PathError;
use crate::domain::session::ops::SetSessionError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Store,
    Proxy,
}

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("ambiguous request path: {0}")]
    BadPath(#[from] PathError),
    #[error("request has no usable Host")]
    NoHost,
    #[error("request body stalled")]
    RequestBodyStalled,
    #[error("request body failed: {0}")]
    RequestBodyFailed(String),
    #[error("cross-origin write with a session refused ([auth.cross_origin])")]
    CrossOriginRefused,
    #[error("TRACE is not allowed (server.allow_trace)")]
    MethodRefused,
    #[error("request Transfer-Encoding is not just `chunked`")]
    BadTransferEncoding,
    #[error("WebSocket handshake from an origin not in auth.websocket_origins")]
    OriginRefused,
    #[error("forward-auth request from a peer not in server.trusted_proxies")]
    ForwardAuthUntrusted,
    #[error("forward-auth request without X-Original-URI or X-Forwarded-Uri (or an invalid one)")]
    ForwardAuthNoTarget,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("upstream switched protocols unasked: {0}")]
    UpstreamBadSwitch(&'static str),
    #[error("upstream sent an invalid Set-Session: {0}")]
    BadSetSession(#[from] SetSessionError),
    #[error("{0}")]
    Store(StoreError),
    #[error("could not build the upstream request: {0}")]
    BadUpstreamRequest(http::Error),
}

impl From<StoreError> for ProxyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Rejected(e) => Self::BadSetSession(e),
            other => Self::Store(other),
        }
    }
}

impl From<UpstreamError> for ProxyError {
    fn from(error: UpstreamError) -> Self {
        match error {
            UpstreamError::RequestBodyStalled => Self::RequestBodyStalled,
            UpstreamError::RequestBodyFailed(reason) => Self::RequestBodyFailed(reason),
            UpstreamError::Unreachable(reason) => Self::UpstreamUnreachable(reason),
            UpstreamError::Timeout(limit) => Self::UpstreamTimeout(limit),
            UpstreamError::BadRequest(error) => Self::BadUpstreamRequest(error),
        }
    }
}

impl ProxyError {
    pub fn fault(&self) -> Fault {
        match self {
            Self::BadPath(_)
            | Self::NoHost
            | Self::RequestBodyStalled
            | Self::RequestBodyFailed(_)
            | Self::BadTransferEncoding
            | Self::MethodRefused
            | Self::CrossOriginRefused
            | Self::OriginRefused
            | Self::ForwardAuthUntrusted
            | Self::ForwardAuthNoTarget => Fault::Client,
            Self::UpstreamUnreachable(_)
            | Self::UpstreamTimeout(_)
            | Self::UpstreamBadSwitch(_)
            | Self::BadSetSession(_) => Fault::Upstream,
            Self::Store(_) => Fault::Store,
            Self::BadUpstreamRequest(_) => Fault::Proxy,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_)
            | Self::NoHost
            | Self::RequestBodyFailed(_)
            | Self::BadTransferEncoding
            | Self::ForwardAuthNoTarget => StatusCode::BAD_REQUEST,
            Self::OriginRefused | Self::CrossOriginRefused | Self::ForwardAuthUntrusted => {
                StatusCode::FORBIDDEN
            }
            Self::MethodRefused => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestBodyStalled => StatusCode::REQUEST_TIMEOUT,
            Self::UpstreamUnreachable(_) | Self::UpstreamBadSwitch(_) | Self::BadSetSession(_) => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadUpstreamRequest(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
