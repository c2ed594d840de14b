//! A WebSocket load generator for `bench/run.sh`'s `websocket` scenario and
//! `bench/pgo.sh`'s training: CONNECTIONS WebSockets opened through the
//! target, each sending a binary message of `BENCH_MESSAGE_BYTES` (1024)
//! and waiting for its echo (`bench_upstream`'s `/ws`) before the next one,
//! for SECONDS. So it measures what a tunnel costs per message, both ways,
//! once it is open; the handshakes come before the clock starts.
//!
//! ```text
//! bench_websocket THREADS CONNECTIONS SECONDS ws://HOST:PORT/PATH
//! ```
//!
//! `BENCH_COOKIES`, a file of cookies one per line, gives the tunnels their
//! sessions in turn (tunnel `i` gets line `i` modulo their number), as
//! browsers of many users would open them; `BENCH_COOKIE` instead gives
//! every handshake the same one. It prints the line `run.sh` parses, a message echoed counting
//! as a request: `BENCH requests=N duration_us=N p99_us=N socket_errors=N
//! status_errors=N`, where `status_errors` are handshakes that did not end
//! in `101` and `socket_errors` tunnels that broke or echoed something
//! else.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const DEFAULT_MESSAGE_BYTES: usize = 1024;

/// What one connection counted.
#[derive(Default)]
struct Tally {
    messages: u64,
    socket_errors: u64,
    status_errors: u64,
    latency_micros: Vec<u32>,
}

impl Tally {
    fn add(&mut self, other: Self) {
        self.messages += other.messages;
        self.socket_errors += other.socket_errors;
        self.status_errors += other.status_errors;
        self.latency_micros.extend(other.latency_micros);
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [threads, connections, seconds, url] = args.as_slice() else {
        bail!("usage: bench_websocket THREADS CONNECTIONS SECONDS ws://HOST:PORT/PATH");
    };
    let threads: usize = threads.parse().context("THREADS")?;
    let connections: usize = connections.parse().context("CONNECTIONS")?;
    let seconds: f64 = seconds.trim_end_matches('s').parse().context("SECONDS")?;
    if !url.starts_with("ws://") {
        bail!("only ws:// URLs are supported, not {url}");
    }
    let bytes = match std::env::var("BENCH_MESSAGE_BYTES") {
        Ok(n) => n.parse().context("BENCH_MESSAGE_BYTES")?,
        Err(_) => DEFAULT_MESSAGE_BYTES,
    };
    let cookies = cookies()?;
    let payload: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let tally = runtime.block_on(async {
        // Every tunnel open before the clock starts.
        let mut sockets = Vec::with_capacity(connections);
        let mut tally = Tally::default();
        for i in 0..connections {
            let cookie = (!cookies.is_empty()).then(|| cookies[i % cookies.len()].as_str());
            match open(url, cookie).await {
                Ok(socket) => sockets.push(socket),
                Err(WsError::Http(_)) => tally.status_errors += 1,
                Err(_) => tally.socket_errors += 1,
            }
        }
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|socket| tokio::spawn(echo_until(socket, payload.clone(), deadline)))
            .collect();
        for task in tasks {
            tally.add(task.await?);
        }
        anyhow::Ok(tally)
    })?;
    let mut latency = tally.latency_micros;
    latency.sort_unstable();
    let p99 = latency
        .get((latency.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(0);
    println!(
        "BENCH requests={} duration_us={} p99_us={} socket_errors={} status_errors={}",
        tally.messages,
        Duration::from_secs_f64(seconds).as_micros(),
        p99,
        tally.socket_errors,
        tally.status_errors
    );
    Ok(())
}

/// `BENCH_COOKIES`'s lines, or `BENCH_COOKIE`, or none.
fn cookies() -> anyhow::Result<Vec<String>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(file) = env("BENCH_COOKIES") {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            bail!("no cookies in {file}");
        }
        return Ok(lines);
    }
    Ok(env("BENCH_COOKIE").into_iter().collect())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str, cookie: Option<&str>) -> Result<Socket, WsError> {
    let mut request = url.into_client_request()?;
    if let Some(cookie) = cookie {
        let value = HeaderValue::from_str(cookie).map_err(|e| WsError::HttpFormat(e.into()))?;
        request.headers_mut().insert("cookie", value);
    }
    let (socket, _response) = tokio_tungstenite::connect_async(request).await?;
    if let tokio_tungstenite::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        // Small messages: without NODELAY, Nagle's algorithm would add
        // latency that belongs to neither proxy.
        let _ = stream.set_nodelay(true);
    }
    Ok(socket)
}

/// Message, echo, message... until the deadline; a broken tunnel or a
/// wrong echo ends the connection's count.
async fn echo_until(mut socket: Socket, payload: Vec<u8>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let payload = bytes::Bytes::from(payload);
    while Instant::now() < deadline {
        let sent = Instant::now();
        let exchange = async {
            socket.send(Message::Binary(payload.clone())).await?;
            match socket.next().await {
                Some(Ok(Message::Binary(echo))) if echo == payload => Ok(()),
                Some(Err(error)) => Err(error),
                _ => Err(WsError::ConnectionClosed),
            }
        };
        match tokio::time::timeout_at(deadline.into(), exchange).await {
            Err(_) => break,
            Ok(Ok(())) => {
                tally.messages += 1;
                let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.latency_micros.push(micros);
            }
            Ok(Err(_)) => {
                tally.socket_errors += 1;
                return tally;
            }
        }
    }
    let _ = socket.close(None).await;
    tally
}
