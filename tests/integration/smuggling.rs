//! HTTP/1.1 framing and connection hygiene over raw sockets: conflicting
//! lengths and codings, request smuggling, idle keep-alive connections, and
//! the HTTP/2 header list limit.
//!
//! hyper's parser already does most of this; these tests pin what it does.
//! With both `Content-Length` and `Transfer-Encoding: chunked`, hyper reads
//! the body as chunked, drops `Content-Length` and closes the connection
//! after the response (RFC 9112 6.3 allows this in place of a 400). Either
//! way nothing hidden in the body becomes a second request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::*;
use crate::transport::{ending, read_response, Ending, HANG};

/// Sends `request` on a fresh connection and reads until the proxy closes
/// it; returns everything it answered.
async fn exchange(proxy: &Proxy, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(HANG, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    });
    read.await
        .expect("the proxy closes a connection whose framing was in doubt");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status codes of every response in `answer`.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("\r\n")
        .filter(|line| line.starts_with("HTTP/1."))
        .filter_map(|line| line.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// At most one upstream request since the first `before`, never the hidden
/// one, never with both framings.
fn assert_not_smuggled(upstream: &Upstream, before: usize) {
    let seen = upstream.seen().split_off(before);
    assert!(seen.len() <= 1, "two upstream requests: {seen:?}");
    for request in &seen {
        assert_ne!(request.uri.path(), "/smuggled");
        assert!(
            request.header("content-length").is_none()
                || request.header("transfer-encoding").is_none(),
            "both framings forwarded: {request:?}"
        );
    }
}

#[tokio::test]
async fn content_length_beside_chunked_cannot_smuggle_a_second_request() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let attempts = [
        // CL.TE: a front end that trusted Content-Length would pass the
        // hidden request on as part of the body.
        format!(
            "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
        ),
        // TE.CL, headers the other way round.
        format!(
            "POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{hidden}"
        ),
        // The hidden request inside a chunk, and a length that covers it.
        format!(
            "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
            hidden.len()
        ),
    ];
    for attempt in &attempts {
        let before = upstream.count();
        let answer = exchange(&proxy, attempt).await;
        let statuses = statuses(&answer);
        assert!(
            statuses.len() <= 1,
            "two responses to {attempt:?}: {answer}"
        );
        assert!(
            matches!(statuses.as_slice(), [] | [200] | [400]),
            "{attempt:?}: {answer}"
        );
        assert_not_smuggled(&upstream, before);
    }
}

#[tokio::test]
async fn two_different_content_lengths_are_a_400_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let answer = exchange(
        &proxy,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcdeGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), [400], "{answer}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_a_400_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    for coding in ["gzip", "gzip, chunked", "chunked, chunked", "identity"] {
        let answer = exchange(
            &proxy,
            &format!(
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(statuses(&answer), [400], "{coding}: {answer}");
    }
    let split = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    assert_eq!(statuses(&exchange(&proxy, split).await), [400]);
    let http10 = "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(statuses(&exchange(&proxy, http10).await), [400]);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_plain_chunked_body_is_forwarded_whole() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let answer = exchange(
        &proxy,
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    assert_eq!(upstream.last().body_len, 5);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nheader_read_timeout = \"500ms\"\n").await;
    let mut connection = BufReader::new(TcpStream::connect(proxy.addr).await.unwrap());
    for n in 0..2 {
        // Quicker than the timeout between requests: the connection stays.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let request = format!("GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n");
        connection
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let (status, _) = read_response(&mut connection).await;
        assert_eq!(status, 200);
    }
    // The idle watchdog covers the time between requests as well as a
    // request head in progress.
    let ended = ending(connection.get_mut()).await;
    assert!(
        matches!(ended, Ending::Closed | Ending::Status(408)),
        "an idle keep-alive connection must not be held open: {ended:?}"
    );
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn an_http2_header_list_over_max_header_bytes_is_refused() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nmax_header_bytes = 16384\n").await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let fine = client
        .get(proxy.url("/"))
        .header("x-big", "y".repeat(4 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.version(), reqwest::Version::HTTP_2);
    assert_eq!(fine.status(), 200);
    let huge = client
        .get(proxy.url("/"))
        .header("x-big", "y".repeat(64 * 1024))
        .send()
        .await;
    match huge {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(error) => assert!(!error.is_timeout(), "{error}"),
    }
    assert_eq!(
        upstream.count(),
        1,
        "an oversized HTTP/2 header list was forwarded"
    );
}

#[tokio::test]
async fn a_broken_chunked_request_body_is_the_clients_fault() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let bodies: [&[u8]; 4] = [
        // A size that overflows.
        b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        // A bare LF after the size.
        b"3\nabc\r\n0\r\n\r\n",
        // More data than the size says.
        b"3\r\nabcdef\r\n0\r\n\r\n",
        // Not hexadecimal.
        b"zz\r\nabc\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let mut request = format!(
            "POST /upload HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            proxy.addr
        )
        .into_bytes();
        request.extend_from_slice(body);
        let response = crate::routes::raw_request(proxy.addr, &request).await;
        assert_eq!(
            crate::routes::status(&response),
            400,
            "{}: {response}",
            String::from_utf8_lossy(body)
        );
    }
}

#[tokio::test]
async fn a_host_that_is_not_one_host_is_refused() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    for host in [
        "a.example, b.example",
        "a.example,b.example",
        "user@a.example",
        "a b",
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = crate::routes::raw_request(proxy.addr, request.as_bytes()).await;
        assert_eq!(crate::routes::status(&response), 400, "{host}: {response}");
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.addr
    );
    let response = crate::routes::raw_request(proxy.addr, ok.as_bytes()).await;
    assert_eq!(crate::routes::status(&response), 200);
}

#[tokio::test]
async fn trace_is_answered_405_by_the_proxy_unless_allowed() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "").await;
    let client = browser();
    log_in(&client, &proxy, "ada").await;
    let before = upstream.count();
    let response = client
        .request(reqwest::Method::TRACE, proxy.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(upstream.count(), before, "TRACE never reaches the upstream");

    let allowed = Proxy::start(&upstream, "server.allow_trace = true\n").await;
    let response = bare()
        .request(reqwest::Method::TRACE, allowed.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().method, "TRACE");
}
