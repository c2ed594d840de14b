//! Where log lines go: stderr, as text or JSON objects (one per line, the
//! event's fields at the top level), filtered by `RUST_LOG` (default
//! `info`). Access lines (target `cloakroom::access`, one per request) are
//! written by their own layer ([`super::access_line`]) into a buffer
//! written out when it fills and at least every [`FLUSH_EVERY`], as nginx's
//! `access_log ... buffer=` does: one `write` for many lines instead of one
//! per request. Every other line goes through tracing-subscriber's
//! formatter and is written at once.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use super::access_line::AccessLines;

/// Longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The buffer's size: it is written out when full.
const BUFFER_BYTES: usize = 64 * 1024;

/// The access lines' buffer, shared by every thread.
#[derive(Clone)]
pub struct AccessBuffer(Arc<Mutex<BufWriter<Stderr>>>);

impl AccessBuffer {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(BufWriter::with_capacity(
            BUFFER_BYTES,
            io::stderr(),
        ))))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, BufWriter<Stderr>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes out what is buffered.
    pub fn flush(&self) {
        let _ = self.lock().flush();
    }
}

/// Installs the subscriber; the returned buffer must be flushed before the
/// process exits (a thread flushes it every [`FLUSH_EVERY`] meanwhile).
pub fn init(json: bool) -> AccessBuffer {
    let access = AccessBuffer::new();
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
