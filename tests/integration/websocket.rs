//! WebSockets: a real WebSocket client (tokio-tungstenite) through the proxy
//! to a real WebSocket upstream that echoes. Handshakes are authorised like
//! any request, carry the session, and may set it with `Set-Session` on the
//! `101`; other upgrade tokens are never honoured or forwarded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::routes::{header, raw_get, raw_request, status};
use crate::support::{Proxy, Upstream};

const PROTECT_CHAT: &str = "[[auth.protect]]\nprefix = \"/chat\"\n";
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket upstream that records every handshake's headers and echoes
/// messages. A handshake on a path ending in `/login` is answered with a
/// `Set-Session` on the `101` that logs `ann` in; one ending in `/logout`,
/// with one that destroys the session.
pub(crate) struct WsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    _stop: oneshot::Sender<()>,
}

impl WsUpstream {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let record = record.clone();
                tokio::spawn(async move {
                    // The callback's signature is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let callback = |request: &Request, mut response: Response| {
                        record.lock().unwrap().push(request.headers().clone());
                        if request.uri().path().ends_with("/logout") {
                            let headers = response.headers_mut();
                            headers.append("set-session", "destroy".parse().unwrap());
                        }
                        if request.uri().path().ends_with("/login") {
                            let headers = response.headers_mut();
                            headers.append("set-session", "regenerate".parse().unwrap());
                            headers.append(
                                "set-session",
                                r#"{"user":{"name":"ann"}}"#.parse().unwrap(),
                            );
                        }
                        Ok(response)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if (message.is_text() || message.is_binary())
                            && ws.send(message).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

pub(crate) async fn proxy_for(upstream: &WsUpstream, extra: &str) -> Proxy {
    Proxy::start_with(&format!(
        "upstream.url = \"{}\"\nsession.secrets = [\"{}\"]\n{extra}",
        upstream.url(),
        crate::support::SECRET
    ))
    .await
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `path` through the proxy with extra headers.
pub(crate) async fn open(
    proxy: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, http::Response<Option<Vec<u8>>>), WsError> {
    let mut request = format!("ws://{}{path}", proxy.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake is answered")
}

/// The status of a refused handshake.
async fn refused(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> u16 {
    match open(proxy, path, headers).await {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed without a response: {other}"),
        Ok(_) => panic!("the handshake to {path} was accepted"),
    }
}

pub(crate) async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the echo comes back")
        .expect("the tunnel is open")
        .unwrap();
    assert_eq!(answer, Message::text(text));
}

/// Logs in over a WebSocket handshake and returns the `sid=...` pair.
async fn log_in(proxy: &Proxy) -> String {
    let (_ws, response) = open(proxy, "/login", &[]).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("set-session").is_none());
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sid="))
        .expect("the 101 carries the new session cookie");
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn messages_echo_through_the_proxy() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, "").await;
    let (mut ws, response) = open(&proxy, "/echo", &[]).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
    for text in ["hello", "again", &"x".repeat(100_000)] {
        echo(&mut ws, text).await;
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let answer = ws.next().await.unwrap().unwrap();
    assert_eq!(answer, Message::binary(vec![0u8, 1, 2, 255]));
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].contains_key("sec-websocket-key"));
    assert_eq!(seen[0]["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn set_session_on_the_101_is_applied_and_stripped_and_the_next_handshake_carries_it() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, "").await;
    let sid = log_in(&proxy).await;
    let (mut ws, _) = open(&proxy, "/echo", &[("cookie", &sid)]).await.unwrap();
    echo(&mut ws, "with a session").await;
    let seen = upstream.seen();
    let session: serde_json::Value =
        serde_json::from_str(seen[1]["x-session"].to_str().unwrap()).unwrap();
    assert_eq!(session["user"]["name"], "ann");
    assert!(seen[1].contains_key("x-session-id"));
    assert!(!seen[1]
        .get("cookie")
        .is_some_and(|c| c.as_bytes().starts_with(b"sid=")));
}

#[tokio::test]
async fn a_protected_path_without_a_session_never_gets_a_101() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, PROTECT_CHAT).await;
    let status = refused(&proxy, "/chat/room", &[("accept", "text/html")]).await;
    assert!(status == 302 || status == 401, "got {status}");
    assert_eq!(refused(&proxy, "/chat/room", &[]).await, 401);
    assert!(upstream.seen().is_empty(), "the upstream saw a handshake");
}

#[tokio::test]
async fn a_protected_path_with_a_session_is_tunnelled() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, PROTECT_CHAT).await;
    let sid = log_in(&proxy).await;
    let (mut ws, response) = open(&proxy, "/chat/room", &[("cookie", &sid)])
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    echo(&mut ws, "logged in").await;
}

#[tokio::test]
async fn the_origin_is_checked_on_protected_paths_when_configured() {
    let upstream = WsUpstream::start().await;
    let extra = format!("auth.websocket_origins = [\"https://app.example\"]\n{PROTECT_CHAT}");
    let proxy = proxy_for(&upstream, &extra).await;
    let sid = log_in(&proxy).await;
    let before = upstream.seen().len();
    for origin in ["https://evil.example", "https://app.example.evil", "null"] {
        let headers = [("cookie", sid.as_str()), ("origin", origin)];
        assert_eq!(
            refused(&proxy, "/chat/room", &headers).await,
            403,
            "{origin}"
        );
    }
    assert_eq!(
        refused(&proxy, "/chat/room", &[("cookie", &sid)]).await,
        403
    );
    assert_eq!(
        upstream.seen().len(),
        before,
        "a refused handshake reached the upstream"
    );
    let headers = [("cookie", sid.as_str()), ("origin", "https://app.example")];
    let (mut ws, _) = open(&proxy, "/chat/room", &headers).await.unwrap();
    echo(&mut ws, "same origin").await;
    // Unprotected paths are not checked.
    let (mut ws, _) = open(&proxy, "/echo", &[("origin", "https://evil.example")])
        .await
        .unwrap();
    echo(&mut ws, "public").await;
}

#[tokio::test]
async fn h2c_and_other_upgrade_tokens_are_served_as_plain_requests() {
    let upstream = Upstream::start().await;
    let proxy = crate::support::Proxy::start(&upstream, "").await;
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ("Connection", "Upgrade, HTTP2-Settings"),
        ],
        &[
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ],
        &[
            ("Upgrade", "websocket, h2c"),
            ("Sec-WebSocket-Version", "13"),
        ],
    ];
    for headers in cases {
        // raw_get ends with `Connection: close`, a second Connection line.
        let response = raw_request(proxy.addr, &raw_get(proxy.addr, "/plain", headers)).await;
        assert_eq!(status(&response), 200, "{response}");
        assert_eq!(header(&response, "upgrade"), None);
        let seen = upstream.last();
        assert_eq!(seen.header("upgrade"), None, "{headers:?}");
        assert_eq!(seen.header("http2-settings"), None, "{headers:?}");
        assert!(
            !seen
                .all("connection")
                .iter()
                .any(|c| c.to_ascii_lowercase().contains("upgrade")),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn a_websocket_handshake_the_upstream_declines_gets_its_plain_answer() {
    // The recording upstream answers every request with a 200: no tunnel.
    let upstream = Upstream::start().await;
    let proxy = crate::support::Proxy::start(&upstream, "").await;
    let headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let mut request = format!("GET /ws HTTP/1.1\r\nHost: {}\r\n", proxy.addr);
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
    )
    .await
    .unwrap()
    .unwrap();
    let response = String::from_utf8_lossy(&buffer[..read]).into_owned();
    assert_eq!(status(&response), 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("upgrade"));
    assert_eq!(seen.header("sec-websocket-version"), Some("13"));
}

/// An upstream that answers every request head with `answer` as written.
async fn scripted_upstream(answer: &'static str) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                _ = &mut stopped => return,
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, answer.as_bytes()).await;
                tokio::time::sleep(WAIT).await;
            });
        }
    });
    (addr, stop)
}

#[tokio::test]
async fn a_101_the_client_did_not_ask_for_is_a_502() {
    let cases = [
        // A switch to something other than WebSocket.
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        // A WebSocket switch for a plain request.
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ];
    for answer in cases {
        let (addr, _stop) = scripted_upstream(answer).await;
        let proxy = Proxy::start_with(&format!(
            "upstream.url = \"http://{addr}\"\nsession.secrets = [\"{}\"]\n",
            crate::support::SECRET
        ))
        .await;
        let plain = raw_get(proxy.addr, "/plain", &[]);
        assert_eq!(
            status(&raw_request(proxy.addr, &plain).await),
            502,
            "{answer}"
        );
    }
    let (addr, _stop) = scripted_upstream(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"http://{addr}\"\nsession.secrets = [\"{}\"]\n",
        crate::support::SECRET
    ))
    .await;
    assert_eq!(refused(&proxy, "/ws", &[]).await, 502);
}

/// Waits until the tunnel is closed by the proxy: the stream ends or
/// fails (a message still in flight is skipped).
pub(crate) async fn closed_within(ws: &mut Ws, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_logout_closes_the_sessions_tunnels_at_once() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, "").await;
    let sid = log_in(&proxy).await;
    let (mut ws, _) = open(&proxy, "/echo", &[("cookie", &sid)]).await.unwrap();
    echo(&mut ws, "before logout").await;
    let (mut anonymous, _) = open(&proxy, "/echo", &[]).await.unwrap();
    let (_logout, response) = open(&proxy, "/logout", &[("cookie", &sid)]).await.unwrap();
    assert_eq!(response.status(), 101);
    assert!(
        // At once, not at the next lookup (every second).
        closed_within(&mut ws, Duration::from_millis(500)).await,
        "the logged-out session's tunnel is still open"
    );
    echo(&mut anonymous, "a tunnel without a session stays open").await;
}

#[tokio::test]
async fn a_tunnel_closes_within_a_second_of_its_sessions_expiry() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, "session.ttl = \"1s\"\n").await;
    let sid = log_in(&proxy).await;
    let (mut ws, _) = open(&proxy, "/echo", &[("cookie", &sid)]).await.unwrap();
    echo(&mut ws, "while the session lives").await;
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut ws, Duration::from_secs(4)).await,
        "the expired session's tunnel is still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "not before the expiry"
    );
}
