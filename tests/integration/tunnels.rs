//! WebSocket tunnels as connections: an open tunnel keeps its connection's
//! slot under `server.max_connections`, and the graceful drain lets it go
//! on relaying, for up to `server.shutdown_grace`, before `run` returns.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::websocket::{echo, open, proxy_for, Ws, WsUpstream, WAIT};

/// How long something that must be waiting is watched to prove it waits.
const HELD: Duration = Duration::from_millis(300);

/// Closes a WebSocket from the client side (the echo upstream answers the
/// close and hangs up), so the tunnel behind it ends.
async fn close(mut ws: Ws) {
    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, ws.next()).await {}
}

#[tokio::test]
async fn an_open_tunnel_holds_its_connection_slot_until_it_closes() {
    let upstream = WsUpstream::start().await;
    let proxy = proxy_for(&upstream, "server.max_connections = 1\n").await;
    let (mut first, _) = open(&proxy, "/first", &[]).await.unwrap();
    echo(&mut first, "holding the only slot").await;

    let second = open(&proxy, "/second", &[]);
    tokio::pin!(second);
    assert!(
        tokio::time::timeout(HELD, &mut second).await.is_err(),
        "a second connection was served while a tunnel held the only slot"
    );
    assert_eq!(
        upstream.seen().len(),
        1,
        "the second handshake went through"
    );
    echo(&mut first, "still open").await;

    close(first).await;
    let (mut second, response) = second.await.expect("served once the tunnel closed");
    assert_eq!(response.status(), 101);
    echo(&mut second, "the slot is free again").await;
}

#[tokio::test]
async fn shutdown_lets_an_open_tunnel_relay_and_returns_once_it_closes() {
    let upstream = WsUpstream::start().await;
    // Far longer than WAIT: `run` returning within WAIT is the tunnel's doing.
    let proxy = proxy_for(&upstream, "server.shutdown_grace = \"60s\"\n").await;
    let (mut ws, _) = open(&proxy, "/stay", &[]).await.unwrap();
    echo(&mut ws, "before the shutdown").await;

    let mut served = proxy.shut_down();
    for n in 0..3 {
        tokio::time::sleep(HELD / 3).await;
        echo(&mut ws, &format!("during the drain, {n}")).await;
    }
    assert!(
        !served.is_finished(),
        "run returned while a tunnel was open"
    );

    close(ws).await;
    tokio::time::timeout(WAIT, &mut served)
        .await
        .expect("run returns once the last tunnel has closed")
        .unwrap();
}

#[tokio::test]
async fn a_tunnel_still_open_when_the_grace_period_ends_is_closed_and_run_returns() {
    let upstream = WsUpstream::start().await;
    let grace = Duration::from_secs(1);
    let proxy = proxy_for(&upstream, "server.shutdown_grace = \"1s\"\n").await;
    let (mut ws, _) = open(&proxy, "/stay", &[]).await.unwrap();

    let shutdown = Instant::now();
    let served = proxy.shut_down();
    echo(&mut ws, "within the grace period").await;
    tokio::time::timeout(WAIT, served)
        .await
        .expect("run returns when the grace period ends")
        .unwrap();
    assert!(
        shutdown.elapsed() >= grace,
        "run returned {:?} after the shutdown, before the grace period ended",
        shutdown.elapsed()
    );

    let _ = ws.send(Message::text("after the grace period")).await;
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {}
        Ok(Some(Ok(message))) => panic!("the tunnel still relays: {message:?}"),
        Err(_) => panic!("the tunnel is still open after the grace period"),
    }
}
