//! The forward phase: the request to the upstream, its body streamed under
//! the stall timeout, and the response head back; a `101` is accepted only
//! for the WebSocket handshake the client asked for.

use std::time::Instant;

use http::{Request, Response};

use super::context::{Context, Outgoing};
use super::error::ProxyError;
use super::upgrade::{Handshake, Tunnel};
use super::Proxy;
use crate::upstream::ResponseBody;
use crate::util::body::IdleTimeout;

/// The upstream's answer, and the tunnel it agreed to, if any.
pub(super) struct Forwarded {
    pub response: Response<ResponseBody>,
    pub tunnel: Option<Tunnel>,
}

impl Proxy {
    pub(super) async fn forward(
        &self,
        request: Outgoing,
        context: &mut Context<'_>,
    ) -> Result<Forwarded, ProxyError> {
        let Outgoing {
            parts,
            body,
            handshake,
            ..
        } = request;
        let body = IdleTimeout::new(body, self.body_idle_timeout);
        let started = Instant::now();
        let sent = self.upstream.send(Request::from_parts(parts, body)).await;
        context.upstream_time = Some(started.elapsed());
        let mut response = sent?;
        let tunnel = Handshake::accept(handshake, &mut response)?;
        Ok(Forwarded { response, tunnel })
    }
}
