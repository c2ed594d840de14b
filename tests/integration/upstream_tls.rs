//! An `https://` upstream: a test CA made with rcgen signs the upstream's
//! certificate for `localhost` and 127.0.0.1; the proxy trusts it through
//! `upstream.ca_file`. An untrusted certificate or a name that does not
//! match is a 502, and the upstream sees no request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{browser, log_in, Proxy, Upstream, SECRET};

/// A test CA: its certificate as PEM, and what it needs to sign.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// An upstream TLS acceptor with a certificate for `localhost` and
    /// 127.0.0.1 signed by this CA. ALPN offers `h2` first, so a client that
    /// offered it too would get HTTP/2 and the HTTP/1.1 pool would break.
    fn acceptor(&self) -> TlsAcceptor {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let leaf = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

/// A file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cloakroom-upstream-tls-{}-{}.pem",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn for_ca(ca: &Ca) -> Self {
        Self::new(&ca.cert.pem())
    }

    /// The path as a TOML string.
    fn toml(&self) -> String {
        serde_json::to_string(&self.0.display().to_string()).unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn requests_and_sessions_work_through_an_https_upstream_trusted_by_ca_file() {
    let ca = Ca::new("Cloakroom test CA");
    let upstream = Upstream::start_tls(ca.acceptor()).await;
    let ca_file = TempFile::for_ca(&ca);
    let proxy = Proxy::start(&upstream, &format!("upstream.ca_file = {}", ca_file.toml())).await;
    let client = browser();

    log_in(&client, &proxy, "ada").await;
    let response = client.get(proxy.url("/me")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("GET /me"));

    assert_eq!(upstream.count(), 2);
    // One TLS connection, kept alive and reused from the pool.
    assert_eq!(upstream.connections(), 1);
    let seen = upstream.last();
    assert_eq!(seen.session().unwrap()["user"]["name"], "ada");
    // preserve_host (the default): the client's Host, not the upstream's.
    assert_eq!(seen.header("host"), Some(proxy.addr.to_string().as_str()));
}

#[tokio::test]
async fn server_name_overrides_the_name_checked_in_the_certificate() {
    let ca = Ca::new("Cloakroom test CA");
    let upstream = Upstream::start_tls(ca.acceptor()).await;
    let ca_file = TempFile::for_ca(&ca);
    let proxy = Proxy::start(
        &upstream,
        &format!(
            "upstream.ca_file = {}\nupstream.server_name = \"localhost\"\nupstream.preserve_host = false",
            ca_file.toml()
        ),
    )
    .await;

    let response = browser().get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Host follows preserve_host, whatever name TLS checks.
    assert_eq!(
        upstream.last().header("host"),
        Some(upstream.addr.to_string().as_str())
    );
}

#[tokio::test]
async fn websocket_tunnels_run_over_an_https_upstream() {
    let ca = Ca::new("Cloakroom test CA");
    let acceptor = ca.acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let ca_file = TempFile::for_ca(&ca);
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"https://{addr}\"\nupstream.ca_file = {}\nsession.secrets = [\"{SECRET}\"]\n",
        ca_file.toml()
    ))
    .await;

    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello"));
    echo.abort();
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_502_and_nothing_reaches_the_upstream() {
    let upstream = Upstream::start_tls(Ca::new("The upstream's CA").acceptor()).await;
    let other = TempFile::for_ca(&Ca::new("Some other CA"));
    let proxy = Proxy::start(&upstream, &format!("upstream.ca_file = {}", other.toml())).await;

    let response = browser().get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_server_name_the_certificate_does_not_carry_is_a_502() {
    let ca = Ca::new("Cloakroom test CA");
    let upstream = Upstream::start_tls(ca.acceptor()).await;
    let ca_file = TempFile::for_ca(&ca);
    let proxy = Proxy::start(
        &upstream,
        &format!(
            "upstream.ca_file = {}\nupstream.server_name = \"app.internal\"",
            ca_file.toml()
        ),
    )
    .await;

    let response = browser().get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn without_ca_file_the_system_cas_are_used_and_a_test_ca_is_not_among_them() {
    let upstream = Upstream::start_tls(Ca::new("Cloakroom test CA").acceptor()).await;
    let toml = format!(
        "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n",
        upstream.url()
    );
    match crate::support::config(&toml) {
        // A system without a CA store: refused at load, naming the fix.
        Err(error) => {
            assert_eq!(error.issues[0].key, "upstream.ca_file", "{error}");
            assert!(error.issues[0].message.contains("no system CA"), "{error}");
        }
        Ok(_) => {
            let proxy = Proxy::start_with(&toml).await;
            let response = browser().get(proxy.url("/page")).send().await.unwrap();
            assert_eq!(response.status(), 502);
            assert_eq!(upstream.count(), 0);
        }
    }
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_bounded_by_connect_timeout() {
    // Accepts TCP connections and never answers the ClientHello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let ca_file = TempFile::for_ca(&Ca::new("Cloakroom test CA"));
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"https://{addr}\"\nupstream.ca_file = {}\nupstream.connect_timeout = \"300ms\"\nsession.secrets = [\"{SECRET}\"]\n",
        ca_file.toml()
    ))
    .await;

    let started = std::time::Instant::now();
    let response = browser().get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

/// The configuration's issues as `key: message` lines.
fn issues(toml: &str) -> Vec<String> {
    match crate::support::config(toml) {
        Ok(_) => panic!("the configuration was accepted:\n{toml}"),
        Err(error) => error
            .issues
            .iter()
            .map(|i| format!("{}: {}", i.key, i.message))
            .collect(),
    }
}

#[test]
fn a_missing_ca_file_is_a_config_error_naming_key_and_file() {
    let gone = TempFile::new("");
    let path = gone.0.display().to_string();
    drop(gone);
    let found = issues(&format!(
        "upstream.url = \"https://127.0.0.1:8443\"\nupstream.ca_file = {}\nsession.secrets = [\"{SECRET}\"]\n",
        serde_json::to_string(&path).unwrap()
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("upstream.ca_file: "), "{found:?}");
    assert!(found[0].contains(&path), "{found:?}");
}

#[test]
fn a_ca_file_without_certificates_is_a_config_error() {
    let empty = TempFile::new("");
    let junk = TempFile::new("not a certificate\n");
    for file in [&empty, &junk] {
        let found = issues(&format!(
            "upstream.url = \"https://127.0.0.1:8443\"\nupstream.ca_file = {}\nsession.secrets = [\"{SECRET}\"]\n",
            file.toml()
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("upstream.ca_file: "), "{found:?}");
        assert!(found[0].contains("holds no certificate"), "{found:?}");
    }
}

#[test]
fn a_ca_file_with_an_http_upstream_is_a_config_error_saying_to_drop_it() {
    let ca_file = TempFile::for_ca(&Ca::new("Cloakroom test CA"));
    let found = issues(&format!(
        "upstream.url = \"http://127.0.0.1:3000\"\nupstream.ca_file = {}\nupstream.server_name = \"app.internal\"\nsession.secrets = [\"{SECRET}\"]\n",
        ca_file.toml()
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("upstream.ca_file: "), "{found:?}");
    assert!(found[1].starts_with("upstream.server_name: "), "{found:?}");
    assert!(found.iter().all(|f| f.contains("drop it")), "{found:?}");
}
