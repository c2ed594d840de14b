//! Where log lines go: stderr, as text or JSON objects (one per line, the
//! event's fields at the top level), filtered by `RUST_LOG` (default
//! `info`). Access lines (target `cloakroom::access`, one per request) are
//! written by their own layer ([`super::access_line`]) into a buffer
//! written out when it fills and at least every [`FLUSH_EVERY`], as nginx's
//! `access_log ... buffer=` does: one `write` for many lines instead of one
//! per request. Every other line goes through tracing-subscriber's
//! formatter and is written at once.

use std::io;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

pub use super::access_line::AccessBuffer;
use super::access_line::AccessLines;

/// Longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The buffer's size: it is written out when full.
const BUFFER_BYTES: usize = 64 * 1024;

/// Installs the subscriber; the returned buffer must be flushed before the
/// process exits (a thread flushes it every [`FLUSH_EVERY`] meanwhile).
pub fn init(json: bool) -> AccessBuffer {
    let access = AccessBuffer::new(BUFFER_BYTES);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let access_lines = AccessLines::new(access.clone(), json);
    if json {
        let others = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(io::stderr);
        registry.with(access_lines.beside(others)).init();
    } else {
        // Colours only for a person at a terminal, never into a file.
        let others = tracing_subscriber::fmt::layer()
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(io::stderr);
        registry.with(access_lines.beside(others)).init();
    }
    let flusher = access.clone();
    let _ = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            flusher.flush();
        });
    access
}
