//! The `[ops]` table (the operations listener: `/healthz`, `/readyz`,
//! `/metrics`, and the admin API's token) and the `[log]` table (the log
//! format and the access log).

use std::net::SocketAddr;

use super::raw::RawConfig;
use super::{BearerToken, Checker, Secret};

/// Shortest admin token accepted, in bytes (`cloakroom secret` prints 43).
const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// `[ops]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// Where the operations listener listens; `None`: no listener.
    pub listen: Option<SocketAddr>,
    /// Metrics are collected and served on `/metrics`.
    pub metrics: bool,
    /// The admin API's bearer token (`/admin/...`); `None`: the admin API
    /// is off.
    pub admin_token: Option<BearerToken>,
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
    let admin_token = admin_token(raw, check);
    if admin_token.is_some() && listen.is_none() {
        check.warnings.push(
            "an admin token is set but ops.listen is not: the admin API is served on the operations listener only".into(),
        );
    }
    OpsConfig {
        listen,
        metrics: raw.ops.metrics,
        admin_token,
    }
}

/// The admin token from exactly one of `ops.admin_token_env` and
/// `ops.admin_token_file` (surrounding whitespace trimmed).
fn admin_token(raw: &RawConfig, check: &mut Checker) -> Option<BearerToken> {
    let (key, text) = match (&raw.ops.admin_token_env, &raw.ops.admin_token_file) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            check.fail(
                "ops.admin_token_env",
                "ops.admin_token_env and ops.admin_token_file are both set; keep exactly one",
            );
            return None;
        }
        (Some(name), None) => match std::env::var(name) {
            Ok(value) => ("ops.admin_token_env", value),
            Err(_) => {
                check.fail(
                    "ops.admin_token_env",
                    format!("the environment variable {name} is not set (or not UTF-8); set it to a token (cloakroom secret makes one) or remove the key"),
                );
                return None;
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) => ("ops.admin_token_file", value),
            Err(error) => {
                check.fail(
                    "ops.admin_token_file",
                    format!("cannot read {path}: {error}; fix the path or remove the key"),
                );
                return None;
            }
        },
    };
    let token = text.trim();
    if token.len() < MIN_ADMIN_TOKEN_BYTES {
        check.fail(
            key,
            format!("the admin token is {} bytes; use at least {MIN_ADMIN_TOKEN_BYTES} (cloakroom secret makes one)", token.len()),
        );
        return None;
    }
    if token.bytes().any(|b| !b.is_ascii_graphic()) {
        check.fail(
            key,
            "the admin token must be visible ASCII without spaces (it is sent in an Authorization header)",
        );
        return None;
    }
    Some(BearerToken::new(&Secret::new(token.to_owned())))
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
