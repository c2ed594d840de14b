//! Test harness: a real upstream (a hyper server that records what it
//! receives and answers as the request's `x-test-*` headers script it), the
//! real proxy on an ephemeral port, and a real HTTP client with a cookie jar.
//! Everything is torn down when its handle drops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloakroom::config::Config;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A configuration for a proxy under test, from TOML, with the fast paths
/// on or off as the test binary runs them ([`crate::FAST_PATHS`]).
pub fn config(toml: &str) -> Result<Config, cloakroom::config::ConfigError> {
    let mut config = Config::from_toml_str(toml)?;
    config.server.fast_paths = crate::FAST_PATHS;
    Ok(config)
}

/// A fixed test secret; tests that need express interop use their own.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

/// What the upstream received for one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body_len: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The session JSON the upstream received, if any.
    pub fn session(&self) -> Option<serde_json::Value> {
        self.header("x-session")
            .map(|s| serde_json::from_str(s).expect("X-Session is JSON"))
    }
}

/// The recording upstream. Scripting headers on the request:
/// - `x-test-set-session`: each value is answered as a `Set-Session`;
/// - `x-test-status`: the response status;
/// - `x-test-delay-ms`: wait before answering;
/// - `x-test-header`: `name: value` added to the response.
pub struct Upstream {
    pub addr: SocketAddr,
    scheme: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// The same upstream serving HTTPS with `acceptor`'s certificate. A
    /// failed handshake records nothing.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Self {
        Self::start_inner(Some(acceptor)).await
    }

    async fn start_inner(acceptor: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel();
        let record = seen.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted_count = connections.clone();
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                accepted_count.fetch_add(1, Ordering::Relaxed);
                let record = record.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(request, record.clone()));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            scheme,
            seen,
            connections,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

async fn answer(
    request: Request<Incoming>,
    record: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers = parts.headers.clone();
    record.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: headers.clone(),
        body_len: body.len(),
    });
    if let Some(ms) = headers
        .get("x-test-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(format!(
        "upstream saw {} {} ({} body bytes)",
        parts.method,
        parts.uri,
        body.len()
    ))));
    if let Some(status) = headers
        .get("x-test-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    }
    for value in headers.get_all("x-test-set-session") {
        response.headers_mut().append("set-session", value.clone());
    }
    for value in headers.get_all("x-test-header") {
        if let Some((name, value)) = value.to_str().ok().and_then(|v| v.split_once(':')) {
            response.headers_mut().append(
                http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value.trim().parse().unwrap(),
            );
        }
    }
    Ok(response)
}

/// The proxy under test, stopped on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts the proxy with `extra` TOML appended to a minimal config that
    /// points at `upstream`. Tables in `extra` must not repeat the base ones
    /// (`[upstream]`, `[session]`): use dotted keys for those.
    pub async fn start(upstream: &Upstream, extra: &str) -> Self {
        Self::start_with(&format!(
            "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n{extra}",
            upstream.url()
        ))
        .await
    }

    /// Starts the proxy with exactly this configuration (listen is ignored).
    pub async fn start_with(toml: &str) -> Self {
        let config = config(toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            cloakroom::run(config, listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self { addr, stop, served }
    }

    /// [`Proxy::start`] with an operations listener too; the second value
    /// is its address (`/healthz`, `/metrics`, `/admin/...`).
    pub async fn start_with_ops(upstream: &Upstream, extra: &str) -> (Self, SocketAddr) {
        Self::start_toml_with_ops(&format!(
            "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n{extra}",
            upstream.url()
        ))
        .await
    }

    /// [`Proxy::start_with`] with an operations listener too.
    pub async fn start_toml_with_ops(toml: &str) -> (Self, SocketAddr) {
        let config = config(toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ops = ops_listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let options = cloakroom::Options {
            ops_listener: Some(ops_listener),
            ..Default::default()
        };
        let served = tokio::spawn(async move {
            cloakroom::run_with(config, listener, options, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        (Self { addr, stop, served }, ops)
    }

    /// Starts the graceful shutdown (as SIGTERM does); the handle resolves
    /// when `run` has returned.
    pub fn shut_down(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(());
        self.served
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A browser-like client: cookie jar, no automatic redirects.
/// The text of `/metrics` on an operations listener.
pub async fn metrics_text(ops: SocketAddr) -> String {
    bare()
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client without a cookie jar, for hand-made Cookie headers.
pub fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET /` with exactly this `Cookie` header (no jar).
pub async fn visit(proxy: &Proxy, cookie: &str) -> reqwest::Response {
    bare()
        .get(proxy.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// The `name=value` part of every Set-Cookie for `name`.
pub fn set_cookies(response: &reqwest::Response, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
        .collect()
}

/// The `sid=...` pair of the response's session cookie.
pub fn sid_pair(response: &reqwest::Response) -> String {
    let cookies = set_cookies(response, "sid");
    assert_eq!(
        cookies.len(),
        1,
        "expected one session cookie, got {cookies:?}"
    );
    cookies[0].split(';').next().unwrap().to_owned()
}

/// Logs in through the proxy as `name`, with the client's jar.
pub async fn log_in(client: &reqwest::Client, proxy: &Proxy, name: &str) -> reqwest::Response {
    let patch = serde_json::json!({"user": {"name": name}}).to_string();
    let response = client
        .post(proxy.url("/login"))
        .header("x-test-set-session", "regenerate")
        .header("x-test-set-session", patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts the real `cloakroom` binary on `config` with debug logging (and no
/// secrets from the environment); the second value resolves to everything
/// it logged once it exits. Killed if dropped.
pub fn spawn_logging_binary(
    config: &std::path::Path,
) -> (tokio::process::Child, tokio::task::JoinHandle<String>) {
    spawn_logging_binary_with(config, &[])
}

/// [`spawn_logging_binary`], with more arguments after `--config FILE`.
pub fn spawn_logging_binary_with(
    config: &std::path::Path,
    args: &[&str],
) -> (tokio::process::Child, tokio::task::JoinHandle<String>) {
    use tokio::io::AsyncReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CLOAKROOM_SECRETS")
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    });
    (child, log)
}

/// A file under the temp dir with a name no other test (or run) uses,
/// removed on drop.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    pub fn new(label: &str, text: &str) -> Self {
        static NEXT: AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "cloakroom-test-{}-{label}-{}-{nanos}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits (10 s at most) until the binary listens on `port`.
pub async fn wait_for_port(port: u16, child: &mut tokio::process::Child) {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("cloakroom exited before listening: {status}");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cloakroom never listened on {port}");
}

/// Sends `child` the signal named `name` (`TERM`, `STOP`, `CONT`, ...).
pub fn signal(child: &tokio::process::Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().expect("the child is running").to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} failed");
}

/// Sends SIGTERM to the binary and waits (15 s at most) for it to exit.
pub async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    signal(child, "TERM");
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("cloakroom did not exit within 15 s of SIGTERM")
        .unwrap()
}

/// Sends SIGHUP (reload) to the binary.
pub fn hang_up(child: &tokio::process::Child) {
    let sent = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
}
