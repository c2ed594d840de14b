//! The idle watchdog of an HTTP/1 connection: it closes a connection on
//! which no request is in flight and none has ended for
//! `server.header_read_timeout`. That is an idle keep-alive connection, or
//! one dribbling a request head (slowloris).
//!
//! Why not hyper's own header read timeout: it arms a timer for every
//! request (an allocation, a timer-wheel insert and removal, clock reads).
//! The watchdog has one timer per connection, ticking four times per
//! timeout, and a request costs two relaxed atomic additions on counters
//! the connection already shares with it (through its [`Peer`]). The price
//! is precision: a quiet connection is closed between one and one and a
//! quarter timeouts after it went quiet.
//!
//! A request counts as in flight from the moment hyper hands it to the
//! proxy until its response body is finished or dropped ([`InFlight`] is
//! held by [`Tracked`], the body hyper writes); on the HTTP/1 front, from
//! its complete head to the end of its response ([`Busy`]). A slow upload
//! or a long download is never idle; their stalls are
//! `server.body_idle_timeout`'s.
//!
//! [`Peer`]: crate::edge::peer::Peer

use std::pin::Pin;

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::peer::{Activity, InFlight};

/// Watchdog ticks per timeout: the precision of the closing time.
const TICKS: u32 = 4;

pin_project! {
    /// A response body that keeps its request in flight until it is done.
    pub struct Tracked<B> {
        #[pin]
        body: B,
        _request: InFlight,
    }
}

impl<B> Tracked<B> {
    pub fn new(body: B, request: InFlight) -> Self {
        Self {
            body,
            _request: request,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once `activity` has shown nothing in flight and no request
/// ended for `limit` (give or take a quarter of it, later, never sooner).
pub async fn quiet_for(activity: &Activity, limit: Duration) {
    let tick = limit / TICKS;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = activity.snapshot();
    let mut quiet = 0;
    loop {
        ticks.tick().await;
        let now = activity.snapshot();
        if now.0 == 0 && now == last {
            quiet += 1;
            if quiet >= TICKS {
                return;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::edge::peer::Peer;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    fn peer() -> Arc<Peer> {
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        Arc::new(Peer::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            false,
            false,
            slot,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_reported_after_the_limit() {
        let peer = peer();
        let started = Instant::now();
        quiet_for(&peer.activity, Duration::from_secs(8)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(8), "{waited:?}");
        assert!(waited <= Duration::from_secs(10), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_the_connection_busy() {
        let peer = peer();
        let request = InFlight::start(peer.clone());
        let watch = quiet_for(&peer.activity, Duration::from_secs(8));
        assert!(tokio::time::timeout(Duration::from_secs(60), watch)
            .await
            .is_err());
        drop(request);
        let started = Instant::now();
        quiet_for(&peer.activity, Duration::from_secs(8)).await;
        assert!(started.elapsed() >= Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_keep_ending_keep_the_connection_alive() {
        let peer = peer();
        let watch = quiet_for(&peer.activity, Duration::from_secs(8));
        let traffic = async {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                drop(InFlight::start(peer.clone()));
            }
        };
        tokio::select! {
            () = watch => panic!("a connection with a request every 3 s was called quiet"),
            _ = traffic => {}
            () = tokio::time::sleep(Duration::from_secs(120)) => {}
        }
    }
}
