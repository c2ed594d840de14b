//! The HTTP/1 front (src/edge/http1) over raw sockets: pipelined requests, the
//! hand-over to hyper in the middle of a connection, body framing that
//! must never be read past, `Connection: close`, and the graceful drain of
//! idle and busy connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::*;
use crate::transport::HANG;

/// One response as a client reads it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header lines, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `head_only` for the answer to a `HEAD`.
async fn answer(reader: &mut BufReader<TcpStream>, head_only: bool) -> Answer {
    tokio::time::timeout(HANG, read_answer(reader, head_only))
        .await
        .expect("no whole response in time")
}

async fn read_answer(reader: &mut BufReader<TcpStream>, head_only: bool) -> Answer {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return answer;
    }
    if answer.header("transfer-encoding") == Some("chunked") {
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.unwrap();
            answer.body.extend_from_slice(&chunk[..size]);
            if size == 0 {
                break;
            }
        }
    } else {
        let length = answer
            .header("content-length")
            .expect("a framed response")
            .parse()
            .unwrap();
        answer.body = vec![0; length];
        reader.read_exact(&mut answer.body).await.unwrap();
    }
    answer
}

/// True once the proxy has closed `reader`'s connection (nothing more to
/// read), false if it stays open and silent.
async fn closed(reader: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match tokio::time::timeout(HANG, reader.read_to_end(&mut rest)).await {
        Ok(_) => {
            assert!(rest.is_empty(), "bytes after the last response: {rest:?}");
            true
        }
        Err(_) => false,
    }
}

async fn connect(proxy: &Proxy) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(proxy.addr).await.unwrap())
}

async fn send(reader: &mut BufReader<TcpStream>, bytes: &str) {
    reader.get_mut().write_all(bytes.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let mut connection = connect(&proxy).await;
    send(
        &mut connection,
        "GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
         HEAD /two HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /three?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let one = answer(&mut connection, false).await;
    assert_eq!(one.text(), "upstream saw GET /one (0 body bytes)");
    let two = answer(&mut connection, true).await;
    assert_eq!(two.status, 200);
    // The length the upstream gave, and no body.
    assert_eq!(two.header("content-length"), Some("37"));
    let three = answer(&mut connection, false).await;
    assert_eq!(three.text(), "upstream saw GET /three?x=1 (0 body bytes)");
    let paths: Vec<_> = upstream
        .seen()
        .iter()
        .map(|seen| format!("{} {}", seen.method, seen.uri))
        .collect();
    assert_eq!(paths, ["GET /one", "HEAD /two", "GET /three?x=1"]);
    assert!(
        !closed(&mut connection).await,
        "keep-alive connection closed"
    );
}

#[tokio::test]
async fn a_request_with_a_body_mid_connection_is_served_whole_and_so_is_what_follows() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let mut connection = connect(&proxy).await;
    send(&mut connection, "GET /before HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(answer(&mut connection, false).await.status, 200);
    // A body, pipelined with the next request.
    send(
        &mut connection,
        "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
         GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    let posted = answer(&mut connection, false).await;
    assert_eq!(posted.text(), "upstream saw POST /form (5 body bytes)");
    let after = answer(&mut connection, false).await;
    assert_eq!(after.text(), "upstream saw GET /after (0 body bytes)");
    send(&mut connection, "GET /later HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let later = answer(&mut connection, false).await;
    assert_eq!(later.text(), "upstream saw GET /later (0 body bytes)");
    assert_eq!(upstream.count(), 4);
}

#[tokio::test]
async fn a_get_with_a_body_never_lets_the_body_become_a_request() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for framing in [
        format!("Content-Length: {}", hidden.len()),
        format!("cOnTeNt-LeNgTh: {}", hidden.len()),
        "Transfer-Encoding: chunked".to_owned(),
    ] {
        let body = if framing.starts_with("Transfer") {
            format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len())
        } else {
            hidden.to_owned()
        };
        let before = upstream.count();
        let mut connection = connect(&proxy).await;
        send(
            &mut connection,
            &format!("GET /first HTTP/1.1\r\nHost: a\r\n{framing}\r\n\r\n{body}"),
        )
        .await;
        let first = answer(&mut connection, false).await;
        assert_eq!(first.status, 200, "{framing}");
        // Nothing else is answered: the body was a body.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_millis(300),
            connection.read_to_end(&mut rest),
        )
        .await;
        assert!(
            !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
            "{framing}: a second response: {rest:?}"
        );
        let seen = upstream.seen().split_off(before);
        assert_eq!(seen.len(), 1, "{framing}: {seen:?}");
        assert_eq!(seen[0].uri.path(), "/first");
        assert_eq!(seen[0].body_len, hidden.len(), "{framing}");
    }
}

#[tokio::test]
async fn malformed_heads_are_refused_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    for head in [
        "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
        "GET / HTTP/1.1\r\nHost: a\r\nFolded: x\r\n y\r\n\r\n",
        "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    ] {
        let mut connection = connect(&proxy).await;
        send(&mut connection, head).await;
        let refused = answer(&mut connection, false).await;
        assert_eq!(refused.status, 400, "{head:?}");
    }
    assert_eq!(upstream.count(), 0, "{:?}", upstream.seen());
}

#[tokio::test]
async fn connection_close_is_honoured_and_said() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let mut connection = connect(&proxy).await;
    send(
        &mut connection,
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answered = answer(&mut connection, false).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.header("connection"), Some("close"));
    assert!(closed(&mut connection).await, "the connection stayed open");
    // The upstream never sees the client's Connection header.
    assert_eq!(upstream.last().header("connection"), None);
}

#[tokio::test]
async fn http_1_0_is_served_and_closed() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /old HTTP/1.0\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut all))
        .await
        .expect("an HTTP/1.0 connection is closed after its response")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(
        text.ends_with("upstream saw GET /old (0 body bytes)"),
        "{text}"
    );
}

#[tokio::test]
async fn every_response_has_a_date_and_a_denial_is_framed() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream,
        "[[auth.protect]]\nprefix = \"/admin\"\ndeny = \"401\"\n",
    )
    .await;
    let mut connection = connect(&proxy).await;
    send(&mut connection, "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let denied = answer(&mut connection, false).await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.text(), "{\"error\":\"login required\"}\n");
    let date = denied.header("date").expect("no Date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    send(&mut connection, "HEAD /admin HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let denied = answer(&mut connection, true).await;
    assert_eq!(denied.status, 401);
    // Still in step: no body followed the HEAD answer.
    send(&mut connection, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(answer(&mut connection, false).await.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn the_drain_closes_idle_connections_at_once_and_lets_busy_ones_finish() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "server.shutdown_grace = \"30s\"\n").await;
    let mut idle = connect(&proxy).await;
    send(&mut idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(answer(&mut idle, false).await.status, 200);
    // One request in flight on the front, one on a connection hyper
    // serves (it began with a body).
    let mut busy = connect(&proxy).await;
    send(
        &mut busy,
        "GET /slow HTTP/1.1\r\nHost: a\r\nX-Test-Delay-Ms: 1500\r\n\r\n",
    )
    .await;
    let mut busy_hyper = connect(&proxy).await;
    send(
        &mut busy_hyper,
        "POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nX-Test-Delay-Ms: 1500\r\n\r\nhi",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let served = proxy.shut_down();
    assert!(closed(&mut idle).await, "an idle connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the idle connection was closed only after {:?}",
        started.elapsed()
    );
    let slow = answer(&mut busy, false).await;
    assert_eq!(slow.text(), "upstream saw GET /slow (0 body bytes)");
    assert!(closed(&mut busy).await, "a drained connection stayed open");
    let slow = answer(&mut busy_hyper, false).await;
    assert_eq!(slow.text(), "upstream saw POST /slow (2 body bytes)");
    assert!(
        closed(&mut busy_hyper).await,
        "a drained connection stayed open"
    );
    tokio::time::timeout(HANG, served)
        .await
        .expect("run returns once the busy connections are done")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}
