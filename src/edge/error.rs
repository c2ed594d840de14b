//! What stops the proxy from starting or serving.

use thiserror::Error;

/// Errors that stop the proxy from starting or serving.
#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot use the listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The session store is unreachable or refuses us at start-up.
    #[error(transparent)]
    StoreUnavailable(#[from] crate::store::redis::ConnectError),
    /// rustls refused the listener's TLS settings.
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
}
