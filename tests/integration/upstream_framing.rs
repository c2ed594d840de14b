//! How upstream responses are framed and how their connections are reused,
//! against a raw upstream that answers scripted bytes: chunked bodies,
//! bodies that run to the close, interim responses, `HEAD`, malformed
//! responses (a 502, nothing of them forwarded), and pooled connections the
//! upstream closed meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{bare, Proxy, SECRET};

/// What the raw upstream does with one request.
#[derive(Clone)]
struct Answer {
    bytes: &'static [u8],
    /// Close the connection after answering.
    close: bool,
}

/// An upstream that answers the n-th request (counted over all connections)
/// with `script[n]` (the last entry for any beyond), and counts connections.
struct RawUpstream {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (script, requests) = (script.clone(), requests.clone());
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request head (these requests have no body).
                        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => received.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                        received.drain(..end + 4);
                        let n = requests.fetch_add(1, Ordering::SeqCst);
                        let answer = script[n.min(script.len() - 1)].clone();
                        if stream.write_all(answer.bytes).await.is_err() || answer.close {
                            return;
                        }
                    }
                });
            }
        });
        Self { url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// One worker: every request uses the same idle list, so connection counts
/// show reuse.
async fn proxy_for(upstream: &RawUpstream) -> Proxy {
    Proxy::start_with(&format!(
        "server.workers = 1\nupstream.url = \"{}\"\nsession.secrets = [\"{SECRET}\"]\n",
        upstream.url
    ))
    .await
}

async fn get(proxy: &Proxy, path: &str) -> (u16, String) {
    let response = bare().get(proxy.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";

#[tokio::test]
async fn a_chunked_response_arrives_whole_and_its_connection_is_reused() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: CHUNKED,
        close: false,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    for _ in 0..3 {
        assert_eq!(get(&proxy, "/").await, (200, "hello world".into()));
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_response_without_framing_runs_to_the_close_and_is_not_reused() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
        close: true,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    for _ in 0..2 {
        assert_eq!(get(&proxy, "/").await, (200, "until the end".into()));
    }
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        close: false,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    for _ in 0..2 {
        assert_eq!(get(&proxy, "/").await, (200, "ok".into()));
    }
    assert_eq!(
        upstream.connections(),
        2,
        "a closing connection is not pooled"
    );
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        close: false,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    assert_eq!(get(&proxy, "/").await, (200, "ok".into()));
}

#[tokio::test]
async fn a_head_response_has_no_body_and_keeps_its_connection() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        close: false,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    for _ in 0..2 {
        let response = bare().head(proxy.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-length"], "5");
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_transparently() {
    // Keep-alive by its headers, but the upstream closes after answering.
    let upstream = RawUpstream::start(vec![Answer {
        bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        close: true,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    for _ in 0..3 {
        assert_eq!(get(&proxy, "/").await, (200, "ok".into()));
    }
    assert_eq!(upstream.connections(), 3);
}

#[tokio::test]
async fn malformed_upstream_responses_are_a_502_and_never_forwarded() {
    let cases: [&'static [u8]; 6] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nSECRET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nSECRET\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nSECRET",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nSECRET",
        b"NOT HTTP AT ALL\r\n\r\nSECRET",
        b"HTTP/1.1 200 OK\r\nBad Header: SECRET\r\n\r\n",
    ];
    for bytes in cases {
        let upstream = RawUpstream::start(vec![Answer { bytes, close: true }]).await;
        let proxy = proxy_for(&upstream).await;
        let (status, body) = get(&proxy, "/").await;
        assert_eq!(status, 502, "{}", String::from_utf8_lossy(bytes));
        assert!(!body.contains("SECRET"), "{body}");
    }
}

#[tokio::test]
async fn a_broken_chunked_body_is_cut_off_and_its_connection_dropped() {
    let upstream = RawUpstream::start(vec![
        Answer {
            bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            close: false,
        },
        Answer {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext",
            close: false,
        },
    ])
    .await;
    let proxy = proxy_for(&upstream).await;
    // The client sees the exchange fail (before or after the head), never a
    // complete response.
    let complete = match bare().get(proxy.url("/")).send().await {
        Ok(response) => response.bytes().await.is_ok(),
        Err(_) => false,
    };
    assert!(!complete, "a broken body must not look complete");
    assert_eq!(get(&proxy, "/").await, (200, "next".into()));
    assert_eq!(
        upstream.connections(),
        2,
        "the broken connection is not reused"
    );
}

#[tokio::test]
async fn a_post_gets_the_same_framing_rules_as_a_get() {
    // A request with a body goes through hyper's client even with the fast
    // paths on: its responses must be framed by the same rule (RFC 9112
    // §6.3) as the direct client's.
    let cases: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nSECRET\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nSECRET",
    ];
    for bytes in cases {
        let upstream = RawUpstream::start(vec![Answer { bytes, close: true }]).await;
        let proxy = proxy_for(&upstream).await;
        let response = bare()
            .post(proxy.url("/"))
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{}", String::from_utf8_lossy(bytes));
        assert!(!response.text().await.unwrap().contains("SECRET"));
    }
}

#[tokio::test]
async fn a_chunked_response_with_trailers_to_a_post_keeps_its_connection() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: CHUNKED,
        close: false,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    for _ in 0..3 {
        let response = bare().post(proxy.url("/")).body("x").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "hello world");
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn set_session_in_an_upstreams_trailers_never_reaches_the_client() {
    let upstream = RawUpstream::start(vec![Answer {
        bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nSet-Session: {\"a\":1}\r\nSet.Session: {\"b\":1}\r\nX-Other: kept\r\n\r\n",
        close: true,
    }])
    .await;
    let proxy = proxy_for(&upstream).await;
    // HTTP/2 (prior knowledge), which carries trailers to the client; a
    // POST, which goes through hyper's client, which reads them.
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(proxy.url("/")).body(()).unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"x"), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(data, b"hello");
    let trailers = body.trailers().await.unwrap().expect("the trailers arrive");
    assert_eq!(trailers.get("x-other").unwrap(), "kept");
    let names: Vec<String> = trailers
        .keys()
        .map(|n| n.as_str().replace(['_', '.'], "-"))
        .collect();
    assert!(!names.iter().any(|n| n == "set-session"), "{names:?}");
}
