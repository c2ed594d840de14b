//! The upstream application for `bench/run.sh`: the same server sits behind
//! every row of the benchmark (hit directly, behind nginx, behind Cloakroom),
//! so it must be cheap enough not to be the bottleneck and must answer the
//! three scenarios:
//!
//! - `GET /login` answers 200 with `Set-Session: {"user":{"name":"bench"}}`,
//!   which makes Cloakroom create a session and set its cookie;
//! - `GET /login-alice` answers 200 with `Set-Session: {"user":"alice"}`:
//!   every cookie-less request to it makes one more signed-in session of the
//!   same user (`bench/footprint.sh` measures what they cost in memory);
//! - `GET /write` answers 200 with `Set-Session: {"n": <counter>}`, a new
//!   session value on every request (the session-write scenario);
//! - `GET /whoami` answers 200 with the request's `X-User` header as the body
//!   (empty without one): `bench/run.sh` uses it once, before measuring, to
//!   check that Cloakroom recognises the benchmark's session cookie;
//! - `GET /ws` with `Upgrade: websocket` is a WebSocket that echoes every
//!   message it receives (`bench_websocket`'s load);
//! - anything else answers 200 with the body `hello`.
//!
//! Run it with `cargo run --release --example bench_upstream [ADDR]`
//! (ADDR defaults to 127.0.0.1:3900), then:
//!
//! ```text
//! curl -i http://127.0.0.1:3900/
//! curl -i http://127.0.0.1:3900/login
//! curl -i http://127.0.0.1:3900/login-alice
//! curl -i http://127.0.0.1:3900/write
//! curl -i -H 'X-User: someone' http://127.0.0.1:3900/whoami
//! ```

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

const DEFAULT_ADDR: &str = "127.0.0.1:3900";
const SET_SESSION: &str = "set-session";
const X_USER: &str = "x-user";
const LOGIN_SESSION: &str = r#"{"user":{"name":"bench"}}"#;
const ALICE_SESSION: &str = r#"{"user":"alice"}"#;
const HELLO: &[u8] = b"hello";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("bench_upstream listening on {}", listener.local_addr()?);

    // One counter shared by every connection: each /write answers a value no
    // other request got, so the proxy cannot skip the store write as a no-op.
    let writes = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Running out of file descriptors under load must not end the
            // server; the next accept may well succeed.
            Err(_) => continue,
        };
        // Small responses on keep-alive connections: without NODELAY, Nagle's
        // algorithm would add latency that belongs to neither proxy.
        let _ = stream.set_nodelay(true);
        let writes = Arc::clone(&writes);
        tokio::spawn(async move {
            // The answer never waits, so it is computed right away and handed
            // to hyper as an already-ready future.
            let service = service_fn(move |mut request: Request<Incoming>| {
                std::future::ready(match websocket_key(&request) {
                    Some(key) => Ok(echo_websocket(&mut request, &key)),
                    None => answer(&request, &writes),
                })
            });
            // Errors here are clients hanging up (wrk does at the end of each
            // run); there is nothing useful to report.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(
    request: &Request<Incoming>,
    writes: &AtomicU64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let hello = Bytes::from_static(HELLO);
    let (set_session, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/login") => (Some(HeaderValue::from_static(LOGIN_SESSION)), hello),
        (&Method::GET, "/login-alice") => (Some(HeaderValue::from_static(ALICE_SESSION)), hello),
        (&Method::GET, "/write") => {
            let n = writes.fetch_add(1, Ordering::Relaxed);
            (
                HeaderValue::from_str(&format!(r#"{{"n":{n}}}"#)).ok(),
                hello,
            )
        }
        (&Method::GET, "/whoami") => {
            let user = request.headers().get(X_USER).map(HeaderValue::as_bytes);
            (None, Bytes::copy_from_slice(user.unwrap_or_default()))
        }
        _ => (None, hello),
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some(value) = set_session {
        headers.insert(SET_SESSION, value);
    }
    Ok(response)
}

/// The key of a WebSocket handshake to `/ws`, if the request is one.
fn websocket_key(request: &Request<Incoming>) -> Option<Vec<u8>> {
    let upgrade = request.headers().get(UPGRADE)?;
    (request.uri().path() == "/ws" && upgrade.as_bytes().eq_ignore_ascii_case(b"websocket"))
        .then(|| request.headers().get(SEC_WEBSOCKET_KEY))
        .flatten()
        .map(|key| key.as_bytes().to_vec())
}

/// Answers the handshake with 101 and, once hyper hands the connection
/// over, echoes every data message until the client closes.
fn echo_websocket(request: &mut Request<Incoming>, key: &[u8]) -> Response<Full<Bytes>> {
    let upgraded = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if (message.is_binary() || message.is_text()) && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key)) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
