//! The transport: HTTP/2 with prior knowledge, bodies streamed both ways,
//! stalled bodies and slow heads cut off, head limits, Host rules and
//! keep-alive, over real sockets.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::*;

/// How long a test waits for the proxy to end a connection before calling
/// it hung. Generous: this checks that it happens, not how fast.
pub(crate) const HANG: Duration = Duration::from_secs(5);

fn h2_client(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What the proxy did to a raw connection within [`HANG`].
#[derive(Debug, PartialEq)]
pub(crate) enum Ending {
    /// Closed (or reset) without a response.
    Closed,
    /// Answered with this status.
    Status(u16),
    /// Still open and silent: the proxy let the client hold it.
    Hung,
}

/// Reads from a raw connection until the proxy answers or closes it.
pub(crate) async fn ending(stream: &mut TcpStream) -> Ending {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Ending::Closed,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if let Some(status) = status_of(&head) {
                return Ending::Status(status);
            }
        }
    });
    read.await.unwrap_or(Ending::Hung)
}

/// The status code of a response that starts with a full status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    if line.len() == head.len() {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// Sends `request` on a fresh raw connection and returns the status of the
/// answer (`None` if the connection closed first).
async fn raw_status(proxy: &Proxy, request: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    match ending(&mut stream).await {
        Ending::Status(status) => Some(status),
        Ending::Closed => None,
        Ending::Hung => panic!("no answer to {request:?}"),
    }
}

/// Reads one whole HTTP/1.1 response (Content-Length or chunked body).
pub(crate) async fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, Vec<u8>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = status_of(line.as_bytes()).unwrap_or_else(|| panic!("bad status {line:?}"));
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.trim().parse::<usize>().unwrap()),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                break;
            }
        }
    } else {
        let mut chunk = vec![0; length.expect("a framed response")];
        reader.read_exact(&mut chunk).await.unwrap();
        body = chunk;
    }
    (status, body)
}

#[tokio::test]
async fn http2_prior_knowledge_clients_log_in_and_read_their_session() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = h2_client(true);
    let login = log_in(&client, &proxy, "ada").await;
    assert_eq!(login.version(), http::Version::HTTP_2);
    assert!(login.headers().get("set-session").is_none());

    let read = client.get(proxy.url("/me")).send().await.unwrap();
    assert_eq!(read.version(), http::Version::HTTP_2);
    assert_eq!(read.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
    assert!(seen.header("x-session-id").is_some());
    assert_eq!(
        seen.header("host"),
        Some(proxy.addr.to_string().as_str()),
        "the HTTP/2 authority becomes the upstream's Host"
    );
}

#[tokio::test]
async fn http2_cookie_crumbs_are_joined_into_one_header_for_the_upstream() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let pair = sid_pair(&log_in(&h2_client(true), &proxy, "ada").await);
    let client = h2_client(false);

    // The client really sends crumbs: straight to the (HTTP/2-capable)
    // upstream, the two fields arrive as two.
    client
        .get(format!("{}/direct", upstream.url()))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(upstream.last().all("cookie"), ["a=1", "b=2"]);

    let response = client
        .get(proxy.url("/"))
        .header("cookie", "a=1")
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.all("cookie"), ["a=1"], "one header, our cookie gone");
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
}

#[tokio::test]
async fn a_16_mib_request_body_reaches_the_upstream_whole() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let size = 16 * 1024 * 1024;
    let response = bare()
        .post(proxy.url("/upload"))
        .body(vec![b'x'; size])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!("upstream saw POST /upload ({size} body bytes)")
    );
    assert_eq!(upstream.last().body_len, size);
}

/// A response body fed through a small channel: produced as it is read.
struct Channel(mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The byte at `offset` of the streamed test body.
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// An upstream that answers every request with `size` bytes of
/// [`pattern`], in 64 KiB chunks, without a Content-Length.
async fn start_streaming_upstream(size: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |_request| async move {
                let (sender, receiver) = mpsc::channel(4);
                tokio::spawn(async move {
                    let mut offset = 0;
                    while offset < size {
                        let end = (offset + 64 * 1024).min(size);
                        let chunk: Vec<u8> = (offset..end).map(pattern).collect();
                        if sender.send(Bytes::from(chunk)).await.is_err() {
                            return;
                        }
                        offset = end;
                    }
                });
                Ok::<_, Infallible>(http::Response::new(Channel(receiver)))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_8_mib_streamed_response_body_reaches_the_client_whole() {
    let size = 8 * 1024 * 1024;
    let upstream = start_streaming_upstream(size).await;
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"{upstream}\"\nsession.secrets = [\"{SECRET}\"]\n"
    ))
    .await;
    let response = bare().get(proxy.url("/download")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), size);
    assert!(
        body.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "the bytes arrive intact and in order"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_cut_off() {
    // Far more than the sockets between the proxy and the client can hold.
    let size = 512 * 1024 * 1024;
    let upstream = start_streaming_upstream(size).await;
    let proxy = Proxy::start_with(&format!(
        "upstream.url = \"{upstream}\"\nsession.secrets = [\"{SECRET}\"]\n\
         server.body_idle_timeout = \"500ms\"\n"
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Reads nothing for six times the limit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut received = 0;
    let mut buffer = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the proxy still sends to a client that stopped reading"
    );
    assert!(
        received < size,
        "the whole body arrived: the proxy waited for the client"
    );
}

#[tokio::test]
async fn a_stalled_request_body_is_cut_off() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nbody_idle_timeout = \"500ms\"\n").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    match ending(&mut stream).await {
        Ending::Closed => {}
        Ending::Status(status) => assert!(status >= 400, "got {status}"),
        Ending::Hung => panic!("a request body stalled at 10 of 100 bytes held the connection"),
    }
}

#[tokio::test]
async fn a_request_head_sent_too_slowly_is_cut_off() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nheader_read_timeout = \"500ms\"\n").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let ended = ending(&mut stream).await;
    assert!(
        matches!(ended, Ending::Closed | Ending::Status(408)),
        "half a request head must not hold the connection: {ended:?}"
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_cut_off() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nheader_read_timeout = \"500ms\"\n").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let ended = ending(&mut stream).await;
    assert!(
        matches!(ended, Ending::Closed | Ending::Status(408)),
        "a silent connection must not be held open forever: {ended:?}"
    );
}

#[tokio::test]
async fn too_many_request_headers_are_refused_before_the_upstream() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nmax_headers = 100\n").await;
    let with_headers = |count: usize| {
        (0..count).fold(bare().get(proxy.url("/")), |request, n| {
            request.header(format!("x-filler-{n}"), "1")
        })
    };

    let fine = with_headers(50).send().await.unwrap();
    assert_eq!(fine.status(), 200, "50 headers are within the limit");
    assert_eq!(upstream.count(), 1);

    match with_headers(200).send().await {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(error) => assert!(!error.is_timeout(), "{error}"),
    }
    assert_eq!(upstream.count(), 1, "200 headers were forwarded");
}

#[tokio::test]
async fn an_oversized_request_header_is_refused_before_the_upstream() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nmax_header_bytes = 16384\n").await;

    let fine = bare()
        .get(proxy.url("/"))
        .header("x-big", "y".repeat(4 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200, "4 KiB is within the limit");
    assert_eq!(upstream.count(), 1);

    let huge = bare()
        .get(proxy.url("/"))
        .header("x-big", "y".repeat(64 * 1024))
        .send()
        .await;
    match huge {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(error) => assert!(!error.is_timeout(), "{error}"),
    }
    assert_eq!(upstream.count(), 1, "a 64 KiB header was forwarded");
}

#[tokio::test]
async fn http11_without_host_is_a_400() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let status = raw_status(&proxy, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, Some(400));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn two_host_headers_are_a_400() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let status = raw_status(
        &proxy,
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(400));
    assert_eq!(upstream.count(), 0);

    let one = raw_status(
        &proxy,
        "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(one, Some(200), "one Host is fine");
}

#[tokio::test]
async fn a_keep_alive_connection_serves_several_requests_in_turn() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let mut connection = BufReader::new(TcpStream::connect(proxy.addr).await.unwrap());
    for n in 0..5 {
        let request = format!("GET /item/{n} HTTP/1.1\r\nHost: app.example\r\n\r\n");
        connection
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let (status, body) = read_response(&mut connection).await;
        assert_eq!(status, 200, "request {n}");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!("upstream saw GET /item/{n} (0 body bytes)")
        );
    }
    assert_eq!(upstream.count(), 5);
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and
/// cancels each at once must not keep the proxy busy forwarding them, and
/// the proxy must go on serving others.
#[tokio::test]
async fn an_http2_rapid_reset_flood_is_cut_off_and_the_proxy_keeps_serving() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut refused = false;
    for _ in 0..5_000 {
        let request = http::Request::get(proxy.url("/flood")).body(()).unwrap();
        match client.send_request(request, true) {
            Ok((response, _)) => drop(response), // dropping cancels: RST_STREAM
            Err(_) => {
                refused = true;
                break;
            }
        }
        if client.clone().ready().await.is_err() {
            refused = true;
            break;
        }
    }
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), driver).await;
    assert!(
        refused || ended.is_ok(),
        "the flooding connection was neither refused nor closed"
    );
    assert!(
        upstream.count() < 5_000,
        "every cancelled stream reached the upstream"
    );
    let response = browser().get(proxy.url("/after")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the proxy still serves other clients"
    );
}
