//! Where the upstream is and how a TCP connection to it is opened, for
//! both clients: the `host:port` (resolved on each new connection, never
//! per request) and the connect timeout.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpStream;

use super::error::ExchangeError;

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub target: String,
    pub connect_timeout: Duration,
}

impl Endpoint {
    /// A TCP connection with Nagle off (requests and responses are written
    /// whole); bound its time with [`Self::within`].
    pub async fn tcp(&self) -> Result<TcpStream, ExchangeError> {
        let stream = TcpStream::connect(self.target.as_str())
            .await
            .map_err(|e| ExchangeError::Connect(self.target.clone(), e))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// `opening` (TCP, and TLS or handshakes on top), under the connect
    /// timeout.
    pub async fn within<T>(
        &self,
        opening: impl Future<Output = Result<T, ExchangeError>>,
    ) -> Result<T, ExchangeError> {
        tokio::time::timeout(self.connect_timeout, opening)
            .await
            .map_err(|_| ExchangeError::ConnectTimeout(self.target.clone()))?
    }

    /// The error for a connection that ended before it answered.
    pub fn reset(&self) -> ExchangeError {
        ExchangeError::Closed(self.target.clone())
    }
}
