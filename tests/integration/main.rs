//! Integration tests: the real proxy between a real upstream and a real
//! HTTP client, one module per area. `tests/hyper_only.rs` runs the same
//! areas again with `server.fast_paths = false`.

/// The HTTP/1 front and the direct upstream client serve what they can.
const FAST_PATHS: bool = true;

// Not every module uses every helper.
#[allow(dead_code)]
mod support;
// The throwaway redis-server helper, shared with the unit tests.
#[allow(dead_code)]
#[path = "../../src/store/redis/test_server.rs"]
mod test_server;

mod admin;
mod binary;
mod cache_safety;
mod container;
mod cookies;
mod cross_origin;
mod failures;
mod forward_auth;
mod forwarding;
mod front;
mod http2_floods;
mod lifecycle;
mod live_config;
mod operations;
mod redis;
mod redis_cache;
mod redis_failures;
mod routes;
mod session_flow;
mod session_headers;
mod smuggling;
mod tls_reload;
mod tls_serving;
mod transport;
mod tunnels;
mod upstream_framing;
mod upstream_tls;
mod users;
mod websocket;
