use super::body::{Chunked, Framing, Step};
use super::response::{framing, parse_head, ParsedHead};
use super::*;
use http::HeaderValue;
use http::StatusCode;

fn parsed(text: &str) -> ParsedHead {
    let mut buffer = BytesMut::from(text.as_bytes());
    match parse_head(&mut buffer) {
        Ok(Some(head)) => head,
        _ => panic!("no complete head in {text:?}"),
    }
}

fn framed(text: &str, head_only: bool) -> Result<(Framing, bool), &'static str> {
    framing(&parsed(text).parts, head_only).map_err(|failure| match failure {
        Failure::Protocol(problem) => problem,
        _ => "not a protocol failure",
    })
}

/// Decodes a whole chunked body, or the decoder's complaint.
fn dechunk(wire: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut buffer = BytesMut::from(wire);
    let mut decoder = Chunked::default();
    let mut body = Vec::new();
    loop {
        match decoder.step(&mut buffer)? {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::Progress => {}
            Step::Short => return Err("short"),
            Step::Finished => {
                assert!(buffer.is_empty(), "bytes left after the body");
                return Ok(body);
            }
        }
    }
}

#[test]
fn a_head_is_parsed_only_once_complete_and_leaves_the_body_buffered() {
    let mut buffer = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"[..]);
    assert!(matches!(parse_head(&mut buffer), Ok(None)));
    buffer.extend_from_slice(b"X-A: 1\r\n\r\nhi");
    let head = parse_head(&mut buffer).ok().flatten().unwrap();
    assert_eq!(head.parts.status, StatusCode::OK);
    assert_eq!(head.parts.headers["x-a"], "1");
    assert!(head.keep_alive);
    assert_eq!(&buffer[..], b"hi");
}

#[test]
fn connection_close_and_http10_responses_are_not_kept_alive() {
    assert!(!parsed("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    assert!(!parsed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
}

#[test]
fn malformed_heads_are_refused() {
    for text in [
        "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        let mut buffer = BytesMut::from(text.as_bytes());
        assert!(
            matches!(parse_head(&mut buffer), Err(Failure::Protocol(_))),
            "{text:?}"
        );
    }
}

#[test]
fn a_head_over_the_size_limit_is_refused_even_when_it_arrived_whole() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES)
    );
    let mut buffer = BytesMut::from(big.as_bytes());
    assert!(matches!(
        parse_head(&mut buffer),
        Err(Failure::Protocol("response head too large"))
    ));
    let fits = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES - 64)
    );
    assert_eq!(
        parsed(&fits).parts.headers["x-big"].len(),
        MAX_HEAD_BYTES - 64
    );
}

#[test]
fn framing_follows_rfc_9112_section_6_3() {
    assert!(matches!(
        framed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
        Ok((Framing::Empty, true))
    ));
    assert!(matches!(
        framed(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false
        ),
        Ok((Framing::Empty, true))
    ));
    assert!(matches!(
        framed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        Ok((Framing::Length(5), true))
    ));
    assert!(matches!(
        framed(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n",
            false
        ),
        Ok((Framing::Length(5), true))
    ));
    assert!(matches!(
        framed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        ),
        Ok((Framing::Chunked(_), true))
    ));
    assert_eq!(
        framed(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        )
        .err(),
        Some("Content-Length beside Transfer-Encoding")
    );
    assert_eq!(
        framed("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).err(),
        Some("a transfer coding other than chunked")
    );
    assert!(matches!(
        framed("HTTP/1.1 200 OK\r\n\r\n", false),
        Ok((Framing::UntilClose, false))
    ));
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ] {
        assert!(framed(bad, false).is_err(), "{bad:?}");
    }
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    assert_eq!(
        dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"),
        Ok(b"hello world".to_vec())
    );
    assert_eq!(
        dechunk(b"A\r\n0123456789\r\n0\r\n\r\n"),
        Ok(b"0123456789".to_vec())
    );
}

#[test]
fn broken_chunking_is_refused() {
    for wire in [
        &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
        b"5\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\r\n",
        b"ffffffffffffffff\r\n",
    ] {
        let result = dechunk(wire);
        assert!(
            result.is_err() && result != Err("short"),
            "{:?} gave {result:?}",
            String::from_utf8_lossy(wire)
        );
    }
    assert_eq!(dechunk(b"5\r\nhel"), Err("short"));
}

#[test]
fn only_bodiless_gets_and_heads_are_direct() {
    let request = |method: Method| {
        let mut request = Request::new(());
        *request.method_mut() = method;
        request
    };
    assert!(is_direct(&request(Method::GET)));
    assert!(is_direct(&request(Method::HEAD)));
    assert!(!is_direct(&request(Method::POST)));
    let mut chunked = request(Method::GET);
    chunked.headers_mut().insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    assert!(!is_direct(&chunked));
    let mut handshake = request(Method::GET);
    handshake
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    assert!(!is_direct(&handshake), "only hyper hands a socket over");
}

#[test]
fn empty_header_values_parse() {
    let head = parsed("HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Spaces:   \r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.parts.headers["x-empty"], "");
    assert_eq!(head.parts.headers["x-spaces"], "");
}
