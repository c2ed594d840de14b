//! TLS certificates over time: reloads by trigger, polling and SIGHUP under
//! open connections, a mismatched key refused, the HTTP → HTTPS redirect listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::{self, free_port, spawn_logging_binary, Upstream, SECRET};
use crate::tls_serving::{quoted, Cert, Files, TlsProxy};

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A raw TLS connection (ALPN http/1.1) to `addr` for `name`.
pub(crate) async fn connect(
    addr: SocketAddr,
    name: &str,
    roots: &[&Cert],
) -> std::io::Result<TlsStream> {
    connect_alpn(addr, name, roots, b"http/1.1").await
}

/// A raw TLS connection offering only `alpn`.
pub(crate) async fn connect_alpn(
    addr: SocketAddr,
    name: &str,
    roots: &[&Cert],
    alpn: &[u8],
) -> std::io::Result<TlsStream> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.der.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let stream = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), stream)
        .await
}

/// The leaf certificate the server presented.
pub(crate) fn presented(stream: &TlsStream) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// An HTTP/1.1 client on one open TLS connection.
async fn http1_on(stream: TlsStream) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get_status(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
) -> http::StatusCode {
    let request = http::Request::get("/")
        .header("host", "a.test")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_keeps_open_connections() {
    let upstream = Upstream::start().await;
    let (old, new) = (Cert::new(&["a.test"]), Cert::new(&["a.test"]));
    let files = Files::new(&old);
    // A long poll interval: this test reloads through the trigger.
    let proxy = TlsProxy::start(&upstream, &[&files], "tls.watch_interval = \"1h\"").await;
    let roots = [&old, &new];
    let open = connect(proxy.addr, "a.test", &roots).await.unwrap();
    assert_eq!(presented(&open), old.der);
    let mut open = http1_on(open).await;
    assert_eq!(get_status(&mut open).await, 200);

    files.write(&new);
    proxy.reload.notify_one();
    let fresh = eventually_presented(proxy.addr, &roots, &new).await;
    assert_eq!(presented(&fresh), new.der);
    assert_eq!(
        get_status(&mut open).await,
        200,
        "the old connection still works"
    );

    // A bad replacement (a key that belongs to another certificate) is
    // refused; the certificate loaded last keeps serving.
    let other = Cert::new(&["a.test"]);
    std::fs::write(&files.key, &other.key_pem).unwrap();
    proxy.reload.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_bad = connect(proxy.addr, "a.test", &roots).await.unwrap();
    assert_eq!(presented(&after_bad), new.der);
    assert_eq!(get_status(&mut open).await, 200);
}

#[tokio::test]
async fn changed_files_are_picked_up_by_polling() {
    let upstream = Upstream::start().await;
    let (old, new) = (Cert::new(&["a.test"]), Cert::new(&["a.test"]));
    let files = Files::new(&old);
    let proxy = TlsProxy::start(&upstream, &[&files], "tls.watch_interval = \"50ms\"").await;
    let roots = [&old, &new];
    assert_eq!(
        presented(&connect(proxy.addr, "a.test", &roots).await.unwrap()),
        old.der
    );
    files.write(&new);
    eventually_presented(proxy.addr, &roots, &new).await;
}

/// Connects until the server presents `expected` (reloads are asynchronous).
async fn eventually_presented(addr: SocketAddr, roots: &[&Cert], expected: &Cert) -> TlsStream {
    for _ in 0..100 {
        let stream = connect(addr, "a.test", roots).await.unwrap();
        if presented(&stream) == expected.der {
            return stream;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the new certificate was never served");
}

#[tokio::test]
async fn the_redirect_listener_answers_308_to_https_without_hsts() {
    let upstream = Upstream::start().await;
    let cert = Cert::new(&["a.test"]);
    let files = Files::new(&cert);
    let proxy = TlsProxy::start(&upstream, &[&files], "hsts = \"max-age=60\"").await;
    let response = support::bare()
        .post(format!("http://{}/account/x?y=1", proxy.redirect_addr))
        .header("host", "a.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        format!("https://a.test:{}/account/x?y=1", proxy.addr.port()).as_str()
    );
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
    assert_eq!(upstream.count(), 0, "the redirect listener proxies nothing");
}

#[test]
fn the_binary_refuses_a_mismatched_key_with_exit_64_naming_the_file() {
    let (a, b) = (Cert::new(&["a.test"]), Cert::new(&["b.test"]));
    let (files_a, files_b) = (Files::new(&a), Files::new(&b));
    let config = std::env::temp_dir().join(format!(
        "cloakroom-tls-it-{}-mismatch.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!(
            "upstream.url = \"http://127.0.0.1:3000\"\n[[server.tls.certificates]]\ncert = {}\nkey = {}\n",
            quoted(&files_a.cert),
            quoted(&files_b.key)
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("CLOAKROOM_SECRETS")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("server.tls.certificates[0].key"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&files_b.key.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_binds_the_redirect_listener() {
    let upstream = Upstream::start().await;
    let (old, new) = (Cert::new(&["a.test"]), Cert::new(&["a.test"]));
    let files = Files::new(&old);
    let (port, redirect_port) = (free_port(), free_port());
    let config = std::env::temp_dir().join(format!(
        "cloakroom-tls-it-{}-sighup.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!(
            "upstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n[server]\n\
             listen = \"127.0.0.1:{port}\"\nredirect_http_from = \"127.0.0.1:{redirect_port}\"\n\
             tls.watch_interval = \"1h\"\n{}",
            upstream.url(),
            files.toml()
        ),
    )
    .unwrap();
    let (mut child, log) = spawn_logging_binary(&config);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let roots = [&old, &new];
    let mut first = None;
    for _ in 0..200 {
        if let Ok(stream) = connect(addr, "a.test", &roots).await {
            first = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("cloakroom never served TLS");
    assert_eq!(presented(&first), old.der);

    let redirect = support::bare()
        .get(format!("http://127.0.0.1:{redirect_port}/x"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect.headers()["location"],
        format!("https://a.test:{port}/x").as_str()
    );

    files.write(&new);
    let hangup = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(hangup.success());
    eventually_presented(addr, &roots, &new).await;

    let term = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("cloakroom did not exit after SIGTERM")
        .unwrap();
    let _ = std::fs::remove_file(&config);
    assert!(status.success(), "{status}");
    let log = log.await.unwrap();
    assert!(log.contains("TLS certificates reloaded"), "{log}");
    let key_body = new.key_pem.lines().nth(1).unwrap();
    assert!(
        !log.contains(key_body) && !log.contains("PRIVATE KEY"),
        "{log}"
    );
}
