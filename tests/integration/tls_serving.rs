//! TLS serving: real certificates made with rcgen, a real client that
//! negotiates HTTP/2 or HTTP/1.1 by ALPN, SNI, HSTS and handshake timeouts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

use crate::support::{self, Upstream, SECRET};
use crate::tls_reload::{connect, connect_alpn, presented};

/// A self-signed certificate for some names, as PEM, and its DER.
#[derive(Clone)]
pub(crate) struct Cert {
    pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

impl Cert {
    pub(crate) fn new(names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        Self {
            pem: generated.cert.pem(),
            key_pem: generated.key_pair.serialize_pem(),
            der: generated.cert.der().clone(),
        }
    }
}

/// A cert/key file pair under the temp dir, removed on drop.
pub(crate) struct Files {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Files {
    pub(crate) fn new(cert: &Cert) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "cloakroom-tls-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let files = Self {
            cert: base.with_extension("crt"),
            key: base.with_extension("key"),
        };
        files.write(cert);
        files
    }

    /// Replaces the files' contents (key first, then certificate: a poll in
    /// between sees a mismatch, refuses it and retries on the next change).
    pub(crate) fn write(&self, cert: &Cert) {
        std::fs::write(&self.key, &cert.key_pem).unwrap();
        std::fs::write(&self.cert, &cert.pem).unwrap();
    }

    pub(crate) fn toml(&self) -> String {
        format!(
            "[[server.tls.certificates]]\ncert = {}\nkey = {}\n",
            quoted(&self.cert),
            quoted(&self.key)
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert);
        let _ = std::fs::remove_file(&self.key);
    }
}

pub(crate) fn quoted(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap()
}

/// The proxy serving TLS, with a redirect listener and a reload trigger.
pub(crate) struct TlsProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) redirect_addr: SocketAddr,
    pub(crate) reload: Arc<Notify>,
    _stop: oneshot::Sender<()>,
}

impl TlsProxy {
    /// `server_toml` goes under `[server]` (before the certificate tables).
    pub(crate) async fn start(upstream: &Upstream, files: &[&Files], server_toml: &str) -> Self {
        let mut toml = format!(
            "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n[server]\n{server_toml}\n",
            upstream.url()
        );
        for f in files {
            toml.push_str(&f.toml());
        }
        let config =
            crate::support::config(&toml).unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirect = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, redirect_addr) = (
            listener.local_addr().unwrap(),
            redirect.local_addr().unwrap(),
        );
        let reload = Arc::new(Notify::new());
        let options = cloakroom::Options {
            redirect_listener: Some(redirect),
            reload: Some(reload.clone()),
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            cloakroom::run_with(config, listener, options, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            redirect_addr,
            reload,
            _stop: stop,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }
}

/// A reqwest client trusting `roots`, resolving the test names to `addr`.
fn client(addr: SocketAddr, roots: &[&Cert], http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("a.test", addr)
        .resolve("b.test", addr);
    for root in roots {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(root.pem.as_bytes()).unwrap());
    }
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn login_over_h2_by_alpn_gets_a_secure_cookie_and_hsts() {
    let upstream = Upstream::start().await;
    let cert = Cert::new(&["a.test"]);
    let files = Files::new(&cert);
    let proxy = TlsProxy::start(&upstream, &[&files], "hsts = \"365d\"").await;
    let browser = client(proxy.addr, &[&cert], false);
    let patch = serde_json::json!({"user": {"name": "ada"}}).to_string();
    let response = browser
        .post(proxy.url("a.test", "/login"))
        .header("x-test-set-session", "regenerate")
        .header("x-test-set-session", patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let cookie = &support::set_cookies(&response, "sid")[0];
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let again = browser
        .get(proxy.url("a.test", "/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(upstream.last().session().unwrap()["user"]["name"], "ada");
    assert_eq!(upstream.last().header("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn an_http1_only_client_is_served_over_tls() {
    let upstream = Upstream::start().await;
    let cert = Cert::new(&["a.test"]);
    let files = Files::new(&cert);
    let proxy = TlsProxy::start(&upstream, &[&files], "").await;
    let browser = client(proxy.addr, &[&cert], true);
    let response = browser
        .post(proxy.url("a.test", "/login"))
        .header("x-test-set-session", r#"{"user":{"name":"ada"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_11);
    let cookie = &support::set_cookies(&response, "sid")[0];
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
}

#[tokio::test]
async fn sni_picks_the_certificate_for_each_name() {
    let upstream = Upstream::start().await;
    // a also names 127.0.0.1, so a client without SNI can verify it.
    let (a, b) = (Cert::new(&["a.test", "127.0.0.1"]), Cert::new(&["b.test"]));
    let (files_a, files_b) = (Files::new(&a), Files::new(&b));
    let proxy = TlsProxy::start(&upstream, &[&files_a, &files_b], "").await;
    let to_a = connect(proxy.addr, "a.test", &[&a, &b]).await.unwrap();
    assert_eq!(presented(&to_a), a.der);
    let to_b = connect(proxy.addr, "b.test", &[&a, &b]).await.unwrap();
    assert_eq!(presented(&to_b), b.der);
    // An IP address sends no SNI: the first certificate is the default.
    let no_sni = connect(proxy.addr, "127.0.0.1", &[&a, &b]).await.unwrap();
    assert_eq!(presented(&no_sni), a.der);
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let upstream = Upstream::start().await;
    let cert = Cert::new(&["a.test"]);
    let files = Files::new(&cert);
    let proxy = TlsProxy::start(&upstream, &[&files], "tls.handshake_timeout = \"200ms\"").await;
    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed, not hung: {read:?}"
    );
    // The accept loop was never blocked by it.
    assert!(connect(proxy.addr, "a.test", &[&cert]).await.is_ok());
}

#[tokio::test]
async fn a_client_silent_after_the_handshake_is_dropped() {
    use tokio::io::AsyncReadExt;
    let upstream = Upstream::start().await;
    let cert = Cert::new(&["a.test"]);
    let files = Files::new(&cert);
    let proxy = TlsProxy::start(&upstream, &[&files], "header_read_timeout = \"200ms\"").await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut silent = connect_alpn(proxy.addr, "a.test", &[&cert], alpn)
            .await
            .unwrap();
        assert_eq!(silent.get_ref().1.alpn_protocol(), Some(alpn));
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            // HTTP/2 servers may send their SETTINGS first: read to the end.
            loop {
                match silent.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(read.is_ok(), "a silent {alpn:?} client held its connection");
    }
}
