//! HTTP/2 floods written frame by frame on a raw socket, in h2c with prior
//! knowledge as the plain listener speaks it: abuse no client library would
//! send. Each flood must end its connection after a bounded amount of data,
//! reach nothing upstream, and leave the proxy serving other clients.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::support::*;
use crate::transport::HANG;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;

/// The largest frame payload every peer accepts (the initial
/// `SETTINGS_MAX_FRAME_SIZE`).
const MAX_FRAME: usize = 16 * 1024;

/// CONTINUATION frames in the flood: 64 MiB of header block, 4096 times
/// `server.max_header_bytes`.
const FLOOD_FRAMES: usize = 4096;

/// What the client may have written before noticing the connection is gone:
/// what the proxy read before giving up, plus what the socket buffers on
/// both sides hold. A proxy that kept reading would take all 64 MiB.
const BOUND: usize = 16 * 1024 * 1024;

/// One frame: 24-bit length, type, flags, 31-bit stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    assert!(length < 1 << 24);
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The HPACK start of a `GET /`: indexed `:method GET`, `:scheme http`,
/// `:path /`, then `:authority` as a literal with an indexed name.
fn request_start() -> Vec<u8> {
    let authority = b"app.example";
    let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority);
    block
}

/// A full frame's worth of header block that decodes on its own: 128
/// literal fields `x-flood: aaa…` (not indexed, no Huffman), 128 bytes each.
fn flood_fields() -> Vec<u8> {
    let mut field = vec![0x00, 7];
    field.extend_from_slice(b"x-flood");
    field.push(118);
    field.extend_from_slice(&[b'a'; 118]);
    assert_eq!(field.len(), 128);
    field.repeat(MAX_FRAME / field.len())
}

/// Writes the preface, an empty SETTINGS, a HEADERS frame without
/// END_HEADERS and then [`FLOOD_FRAMES`] CONTINUATION frames without it,
/// until the connection fails. Returns the bytes written and whether the
/// whole flood went out.
async fn flood(mut writer: OwnedWriteHalf) -> (usize, bool) {
    let mut written = 0;
    let opening = [
        PREFACE.to_vec(),
        frame(SETTINGS, 0, 0, &[]),
        // END_STREAM (a GET has no body) but not END_HEADERS (0x4).
        frame(HEADERS, END_STREAM, 1, &request_start()),
    ];
    let continuation = frame(CONTINUATION, 0, 1, &flood_fields());
    let frames = opening
        .iter()
        .chain(std::iter::repeat_n(&continuation, FLOOD_FRAMES));
    for bytes in frames {
        if writer.write_all(bytes).await.is_err() {
            return (written, false);
        }
        written += bytes.len();
    }
    (written, true)
}

/// The frames the proxy sends (type, flags, stream id, payload) until it
/// closes or resets the connection.
async fn frames_until_closed(mut reader: OwnedReadHalf) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if reader.read_exact(&mut head).await.is_err() {
            return frames;
        }
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; length];
        if reader.read_exact(&mut payload).await.is_err() {
            return frames;
        }
        frames.push((head[3], head[4], stream, payload));
    }
}

/// The CONTINUATION flood (CVE-2024-27316 and kin): a header block that
/// never ends, sent as an endless run of CONTINUATION frames.
#[tokio::test]
async fn an_http2_continuation_flood_is_cut_off_unanswered_and_the_proxy_keeps_serving() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream, "[server]\nmax_header_bytes = 16384\n").await;
    let (reader, writer) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    let writing = tokio::spawn(flood(writer));

    let frames = tokio::time::timeout(HANG, frames_until_closed(reader))
        .await
        .expect("the proxy kept the flooding connection open");
    let (written, whole) = tokio::time::timeout(HANG, writing)
        .await
        .expect("the proxy neither read the flood nor closed the connection")
        .unwrap();
    assert!(!whole, "the proxy read all {written} bytes of the flood");
    assert!(
        written <= BOUND,
        "the proxy read {written} bytes of one endless header block"
    );
    assert!(
        !frames.iter().any(|(kind, ..)| *kind == HEADERS),
        "the unfinished request was answered: {frames:?}"
    );
    if let Some((_, _, _, payload)) = frames.iter().find(|(kind, ..)| *kind == GOAWAY) {
        let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
        assert_ne!(code, 0, "a GOAWAY without an error (NO_ERROR)");
    }
    assert_eq!(upstream.count(), 0, "the flood reached the upstream");

    let response = bare().get(proxy.url("/after")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the proxy still serves others");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(proxy.url("/after")).send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200, "the proxy still serves HTTP/2");
}
