//! The shape of `proxy.toml`, exactly as written: strings, numbers, tables.
//! Unknown keys are errors. Validation into typed values is in `config::load`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub cookie: RawCookie,
    pub session: RawSession,
    pub store: RawStore,
    pub auth: RawAuth,
    pub ops: RawOps,
    pub log: RawLog,
}

/// `[ops]`: the operations listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOps {
    pub listen: Option<String>,
    pub metrics: bool,
    pub admin_token_env: Option<String>,
    pub admin_token_file: Option<String>,
}

impl Default for RawOps {
    fn default() -> Self {
        Self {
            listen: None,
            metrics: true,
            admin_token_env: None,
            admin_token_file: None,
        }
    }
}

/// `[log]`: the log format and the access log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub access: bool,
    pub access_query: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            access: true,
            access_query: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub header_read_timeout: String,
    pub body_idle_timeout: String,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub trusted_proxies: Vec<String>,
    pub via: bool,
    pub shutdown_grace: String,
    pub workers: Option<usize>,
    pub fast_paths: bool,
    pub allow_trace: bool,
    pub tls: Option<RawTls>,
    pub redirect_http_from: Option<String>,
    pub hsts: Option<String>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub certificates: Vec<RawCertificate>,
    pub handshake_timeout: String,
    pub watch_interval: String,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            certificates: Vec::new(),
            handshake_timeout: "10s".into(),
            watch_interval: "5s".into(),
        }
    }
}

/// One `[[server.tls.certificates]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            header_read_timeout: "10s".into(),
            body_idle_timeout: "30s".into(),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            trusted_proxies: Vec::new(),
            via: false,
            shutdown_grace: "10s".into(),
            workers: None,
            fast_paths: true,
            allow_trace: false,
            tls: None,
            redirect_http_from: None,
            hsts: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub connect_timeout: String,
    pub response_timeout: String,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: String,
    pub preserve_host: bool,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            url: None,
            connect_timeout: "5s".into(),
            response_timeout: "30s".into(),
            pool_max_idle: 256,
            pool_idle_timeout: "90s".into(),
            preserve_host: true,
            ca_file: None,
            server_name: None,
        }
    }
}

/// `secure = true | false | "auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSecure {
    Flag(bool),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCookie {
    pub name: String,
    pub path: String,
    pub domain: Option<String>,
    pub http_only: bool,
    pub same_site: String,
    pub secure: RawSecure,
    pub max_age: Option<String>,
    pub rolling: bool,
    pub forward_to_upstream: bool,
    pub clear_site_data: bool,
}

impl Default for RawCookie {
    fn default() -> Self {
        Self {
            name: "sid".into(),
            path: "/".into(),
            domain: None,
            http_only: true,
            same_site: "lax".into(),
            secure: RawSecure::Word("auto".into()),
            max_age: None,
            rolling: false,
            forward_to_upstream: false,
            clear_site_data: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub secrets: Vec<String>,
    pub secrets_env: Option<String>,
    pub secrets_file: Option<String>,
    pub save_uninitialized: bool,
    pub ttl: String,
    pub idle_timeout: Option<String>,
    pub absolute_timeout: Option<String>,
    pub touch_interval: Option<String>,
    pub remember_max: String,
    pub max_bytes: usize,
    pub max_set_session_bytes: usize,
    pub headers: RawSessionHeaders,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            secrets: Vec::new(),
            secrets_env: None,
            secrets_file: None,
            save_uninitialized: false,
            ttl: "1d".into(),
            idle_timeout: None,
            absolute_timeout: None,
            touch_interval: None,
            remember_max: "30d".into(),
            max_bytes: 64 * 1024,
            max_set_session_bytes: 16 * 1024,
            headers: RawSessionHeaders::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSessionHeaders {
    pub max_bytes: usize,
    pub keys: Vec<String>,
    pub fields: BTreeMap<String, String>,
}

impl Default for RawSessionHeaders {
    fn default() -> Self {
        Self {
            max_bytes: 8 * 1024,
            keys: Vec::new(),
            fields: BTreeMap::new(),
        }
    }
}

/// `[store]`. Everything but `kind` is optional so that a key of the other
/// store kind can be told apart from a default; defaults are applied in
/// `config::store`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub kind: String,
    pub max_sessions: Option<usize>,
    pub sweep_interval: Option<String>,
    pub url: Option<String>,
    pub cluster_urls: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub password_env: Option<String>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub cache_sessions: Option<usize>,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            kind: "memory".into(),
            max_sessions: None,
            sweep_interval: None,
            url: None,
            cluster_urls: None,
            prefix: None,
            password_env: None,
            connect_timeout: None,
            command_timeout: None,
            cache_sessions: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub identity_key: String,
    pub login_url: String,
    pub case_sensitive: bool,
    pub protect: Vec<RawProtect>,
    pub websocket_origins: Vec<String>,
    pub cross_origin: RawCrossOrigin,
    pub forward_auth_path: Option<String>,
    pub rotate_on_login: bool,
    pub identity_pointer: Option<String>,
    pub max_sessions_per_user: Option<usize>,
    pub session_limit_policy: String,
}

/// `[auth.cross_origin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCrossOrigin {
    pub enabled: bool,
    pub trusted_origins: Vec<String>,
    pub bypass: Vec<String>,
}

impl Default for RawCrossOrigin {
    fn default() -> Self {
        Self {
            enabled: true,
            trusted_origins: Vec::new(),
            bypass: Vec::new(),
        }
    }
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            identity_key: "user".into(),
            login_url: "/login".into(),
            case_sensitive: false,
            protect: Vec::new(),
            websocket_origins: Vec::new(),
            cross_origin: RawCrossOrigin::default(),
            forward_auth_path: None,
            rotate_on_login: true,
            identity_pointer: None,
            max_sessions_per_user: None,
            session_limit_policy: "evict-oldest".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtect {
    pub prefix: String,
    #[serde(default = "default_deny")]
    pub deny: String,
}

fn default_deny() -> String {
    "auto".into()
}
