//! Configuration: `proxy.toml` in, typed and validated `Config` out.
//!
//! Pipeline: text → [`raw::RawConfig`] (serde, unknown keys refused) →
//! [`Config`] (durations, addresses, URIs, header names, canonical route
//! prefixes, secrets). Parsing a string is separate from reading a file.
//! Every problem is collected and reported at once, each naming its key and
//! the fix. Precedence for secrets: exactly one of `secrets_env`,
//! `secrets_file`, `secrets` may provide them; none gives an ephemeral one.

mod auth;
mod ops;
mod raw;
mod secrets;
mod session;
mod store;
mod tls;
mod upstream_tls;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;
use ipnet::IpNet;

pub use crate::domain::cookie::settings::{CookieSettings, SameSite, Secure};
pub use crate::domain::cross_origin::CrossOrigin;
pub use crate::domain::routes::{Deny, ProtectRule};
pub use crate::tls::client::UpstreamTls;
pub use crate::upstream::settings::UpstreamSettings;
pub use ops::{LogConfig, LogFormat, OpsConfig};
pub use secrets::{Secret, Secrets, RECOMMENDED_SECRET_BYTES};
pub use store::{record_cookie, RedisConfig, RedisEndpoint, RedisUrl, StoreConfig};
pub use tls::TlsConfig;

use crate::util::duration as units;
use auth::build_auth;
use ops::{build_log, build_ops};
use raw::RawConfig;
use session::{build_cookie, build_session};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub server: ServerConfig,
    pub upstream: UpstreamSettings,
    pub cookie: CookieSettings,
    pub session: SessionConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    /// `[ops]`: the operations listener.
    pub ops: OpsConfig,
    /// `[log]`: the log format and the access log.
    pub log: LogConfig,
    /// Things worth telling the operator that do not stop the proxy.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub via: bool,
    pub shutdown_grace: Duration,
    /// Worker threads, each with its own event loop.
    pub workers: usize,
    /// The HTTP/1 front and the direct upstream client serve what they
    /// can; off (a diagnostic), hyper's server and client serve everything.
    pub fast_paths: bool,
    /// `TRACE` is forwarded; off, the proxy answers it 405.
    pub allow_trace: bool,
    /// `[server.tls]`: serve HTTPS on `server.listen`.
    pub tls: Option<TlsConfig>,
    /// A plain-HTTP address that only redirects to HTTPS.
    pub redirect_http_from: Option<SocketAddr>,
    /// `Strict-Transport-Security` added to responses over TLS.
    pub hsts: Option<http::HeaderValue>,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub secrets: Secrets,
    pub save_uninitialized: bool,
    /// Store lifetime of a session (the cookie's max_age when set).
    pub ttl: Duration,
    /// The idle and absolute timeouts, touch throttling, "remember me".
    pub lifetime: SessionLifetime,
    pub max_bytes: usize,
    pub max_set_session_bytes: usize,
    pub header_max_bytes: usize,
    pub header_keys: Vec<String>,
    /// Per-field headers: name and JSON pointer.
    pub fields: Vec<(HeaderName, String)>,
}

/// `session.idle_timeout`, `session.absolute_timeout`,
/// `session.touch_interval`, `session.remember_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    pub idle: Option<Duration>,
    pub absolute: Option<Duration>,
    /// At most one store write per session this often to refresh its idle
    /// deadline.
    pub touch_interval: Duration,
    /// The longest lifetime `Set-Session: remember=` may ask for.
    pub remember_max: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub identity_key: String,
    pub login_url: String,
    pub case_sensitive: bool,
    pub protect: Vec<ProtectRule>,
    /// Origins allowed to open WebSockets on protected paths, lower case,
    /// like `https://app.example`. Empty: no Origin check.
    pub websocket_origins: Vec<String>,
    /// `[auth.cross_origin]`: cross-origin writes with a session refused.
    pub cross_origin: CrossOrigin,
    /// Where forward-auth requests from trusted proxies are answered.
    pub forward_auth_path: Option<String>,
    /// A login (the identity key appearing or changing) moves the session
    /// to a fresh id even without `regenerate`.
    pub rotate_on_login: bool,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key at fault, e.g. `upstream.url`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.issues.len();
        writeln!(
            f,
            "{count} problem{} in the configuration:",
            if count == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            writeln!(f, "  - {}: {}", issue.key, issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                key: "--config".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }],
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and validates configuration text. Reads the environment
    /// variable or file named for the secrets.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            issues: vec![ConfigIssue {
                key: e.span().map_or("(file)".into(), |s| describe_span(text, s)),
                message: e.message().to_owned(),
            }],
        })?;
        let mut check = Checker::default();
        let config = build(raw, &mut check);
        match config {
            Some(config) if check.issues.is_empty() => Ok(config),
            _ => Err(ConfigError {
                issues: check.issues,
            }),
        }
    }
}

fn describe_span(text: &str, span: std::ops::Range<usize>) -> String {
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!("line {line}")
}

/// Collects issues while converting, so all of them are reported at once.
#[derive(Default)]
struct Checker {
    issues: Vec<ConfigIssue>,
    warnings: Vec<String>,
}

impl Checker {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        units::parse_duration(text).unwrap_or_else(|e| {
            self.fail(key, e);
            Duration::ZERO
        })
    }

    fn positive_duration(&mut self, key: &str, text: &str) -> Duration {
        let value = self.duration(key, text);
        if value.is_zero() && units::parse_duration(text).is_ok() {
            self.fail(key, "must be more than zero");
        }
        value
    }

    fn at_least(&mut self, key: &str, value: usize, min: usize) -> usize {
        if value < min {
            self.fail(key, format!("is {value}; use at least {min}"));
        }
        value
    }
}

fn build(raw: RawConfig, check: &mut Checker) -> Option<Config> {
    let listen = raw.server.listen.parse().map_err(|_| {
        check.fail(
            "server.listen",
            format!(
                "`{}` is not an address; write it like \"127.0.0.1:8080\"",
                raw.server.listen
            ),
        )
    });
    let server = build_server(&raw, check);
    let upstream = build_upstream(&raw, check);
    let cookie = build_cookie(&raw, check);
    let session = build_session(&raw, cookie.max_age, check);
    let store = store::build(&raw.store, &cookie, check);
    let auth = build_auth(&raw, check);
    let ops = build_ops(&raw, check);
    let log = build_log(&raw, check);
    Some(Config {
        listen: listen.ok()?,
        server,
        upstream: upstream?,
        cookie,
        session: session?,
        store: store?,
        auth,
        ops,
        log,
        warnings: std::mem::take(&mut check.warnings),
    })
}

fn build_server(raw: &RawConfig, check: &mut Checker) -> ServerConfig {
    let s = &raw.server;
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .filter_map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    check.fail(
                        "server.trusted_proxies",
                        format!("`{text}` is not an address or CIDR range like \"10.0.0.0/8\""),
                    )
                })
                .ok()
        })
        .collect();
    let tls = tls::build(s, check);
    ServerConfig {
        header_read_timeout: check
            .positive_duration("server.header_read_timeout", &s.header_read_timeout),
        body_idle_timeout: check
            .positive_duration("server.body_idle_timeout", &s.body_idle_timeout),
        // hyper's smallest read buffer is 8 KiB.
        max_header_bytes: check.at_least("server.max_header_bytes", s.max_header_bytes, 8192),
        max_headers: check.at_least("server.max_headers", s.max_headers, 16),
        max_connections: check.at_least("server.max_connections", s.max_connections, 1),
        trusted_proxies,
        via: s.via,
        shutdown_grace: check.duration("server.shutdown_grace", &s.shutdown_grace),
        workers: match s.workers {
            Some(count) => check.at_least("server.workers", count, 1),
            None => std::thread::available_parallelism().map_or(1, usize::from),
        },
        fast_paths: s.fast_paths,
        allow_trace: s.allow_trace,
        tls: tls.tls,
        redirect_http_from: tls.redirect_http_from,
        hsts: tls.hsts,
    }
}

fn build_upstream(raw: &RawConfig, check: &mut Checker) -> Option<UpstreamSettings> {
    let u = &raw.upstream;
    let url = match &u.url {
        None => {
            check.fail(
                "upstream.url",
                "is required: the address of your application, like \"http://127.0.0.1:3000\"",
            );
            None
        }
        Some(text) => parse_upstream_url(text)
            .map_err(|m| check.fail("upstream.url", m))
            .ok(),
    };
    let tls = upstream_tls::build(u, url.as_ref(), check);
    let config = UpstreamSettings {
        url: url?,
        connect_timeout: check.positive_duration("upstream.connect_timeout", &u.connect_timeout),
        response_timeout: check.positive_duration("upstream.response_timeout", &u.response_timeout),
        pool_max_idle: u.pool_max_idle,
        pool_idle_timeout: check
            .positive_duration("upstream.pool_idle_timeout", &u.pool_idle_timeout),
        preserve_host: u.preserve_host,
        tls,
    };
    Some(config)
}

fn parse_upstream_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL; write it like \"http://127.0.0.1:3000\""))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{text}` needs the http:// or https:// scheme"));
    }
    if uri.authority().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{text}` has a path or query; give only scheme, host and port"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests;
