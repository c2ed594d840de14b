//! The domain: what a session is and how it travels, with no I/O and no
//! knowledge of connections, stores or configuration files.

pub mod bearer;
pub mod caching;
pub mod cookie;
pub mod cross_origin;
pub mod headers;
pub mod path;
pub mod routes;
pub mod secret;
pub mod session;
pub mod session_headers;
