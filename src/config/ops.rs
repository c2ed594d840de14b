//! The `[ops]` table (the operations listener: `/healthz`, `/readyz`,
//! `/metrics`) and the `[log]` table (the log format and the access log).

use std::net::SocketAddr;

use super::raw::RawConfig;
use super::Checker;

/// `[ops]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// Where the operations listener listens; `None`: no listener.
    pub listen: Option<SocketAddr>,
    /// Metrics are collected and served on `/metrics`.
    pub metrics: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// One line per request on the `cloakroom::access` target.
    pub access: bool,
    /// The access log shows the query string too (off: the path only).
    pub access_query: bool,
}

pub(super) fn build_ops(raw: &RawConfig, check: &mut Checker) -> OpsConfig {
    let listen = raw.ops.listen.as_ref().and_then(|text| {
        let parsed = text.parse::<SocketAddr>().map_err(|_| {
            check.fail(
                "ops.listen",
                format!("`{text}` is not an address; write it like \"127.0.0.1:9090\""),
            )
        });
        parsed.ok()
    });
    if let Some(address) = listen {
        if !address.ip().is_loopback() {
            check.warnings.push(format!(
                "ops.listen = \"{address}\" is not a loopback address: /metrics and /readyz answer anyone who reaches it, without authentication"
            ));
        }
    }
    OpsConfig {
        listen,
        metrics: raw.ops.metrics,
    }
}

pub(super) fn build_log(raw: &RawConfig, check: &mut Checker) -> LogConfig {
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            check.fail(
                "log.format",
                format!("`{other}` is not \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    LogConfig {
        format,
        access: raw.log.access,
        access_query: raw.log.access_query,
    }
}
