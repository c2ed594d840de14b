//! The integration areas again, with `server.fast_paths = false`: every
//! request through hyper's server and hyper's client, none through the
//! HTTP/1 front or the direct upstream client. A behaviour where the
//! hand-written paths and hyper differ fails in one of the two binaries.
//! (`binary` is left out: it runs the release binary on its own files.)

/// Every request goes through hyper.
const FAST_PATHS: bool = false;

#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../src/store/redis/test_server.rs"]
mod test_server;

#[path = "integration/cache_safety.rs"]
mod cache_safety;
#[path = "integration/cookies.rs"]
mod cookies;
#[path = "integration/cross_origin.rs"]
mod cross_origin;
#[path = "integration/failures.rs"]
mod failures;
#[path = "integration/forward_auth.rs"]
mod forward_auth;
#[path = "integration/forwarding.rs"]
mod forwarding;
#[path = "integration/front.rs"]
mod front;
#[path = "integration/http2_floods.rs"]
mod http2_floods;
#[path = "integration/redis.rs"]
mod redis;
#[path = "integration/redis_failures.rs"]
mod redis_failures;
#[path = "integration/routes.rs"]
mod routes;
#[path = "integration/session_flow.rs"]
mod session_flow;
#[path = "integration/session_headers.rs"]
mod session_headers;
#[path = "integration/smuggling.rs"]
mod smuggling;
#[path = "integration/tls_reload.rs"]
mod tls_reload;
#[path = "integration/tls_serving.rs"]
mod tls_serving;
#[path = "integration/transport.rs"]
mod transport;
#[path = "integration/tunnels.rs"]
mod tunnels;
#[path = "integration/upstream_framing.rs"]
mod upstream_framing;
#[path = "integration/upstream_tls.rs"]
mod upstream_tls;
#[path = "integration/websocket.rs"]
mod websocket;
