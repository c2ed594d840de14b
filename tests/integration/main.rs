//! Integration tests: the real proxy between a real upstream and a real
//! HTTP client, one module per area.

// Not every module uses every helper.
#[allow(dead_code)]
mod support;

mod binary;
mod failures;
mod protocol;
mod routes;
mod session_flow;
mod transport;
