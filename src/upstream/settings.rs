//! Where the upstream is and how it is reached, as configured in
//! `[upstream]`.

use std::time::Duration;

use http::Uri;

use crate::tls::client::UpstreamTls;

/// The `[upstream]` settings, validated.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub url: Uri,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    pub preserve_host: bool,
    /// Set for an `https://` upstream: SNI name and client configuration.
    pub tls: Option<UpstreamTls>,
}
