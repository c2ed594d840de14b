//! Where log lines go: stderr, as text or JSON objects (one per line, the
//! event's fields at the top level), filtered by `RUST_LOG` (default
//! `info`). Access lines (target `cloakroom::access`, one per request) go
//! through a buffer written out when it fills and at least every
//! [`FLUSH_EVERY`], as nginx's `access_log ... buffer=` does: one `write`
//! for many lines instead of one per request. Every other line is written
//! at once.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::writer::MakeWriterExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Longest an access line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The buffer's size: it is written out when full.
const BUFFER_BYTES: usize = 64 * 1024;
const ACCESS_TARGET: &str = "cloakroom::access";

/// The access lines' buffer, shared by every thread.
#[derive(Clone)]
pub struct AccessBuffer(Arc<Mutex<BufWriter<Stderr>>>);

/// One event's hold on the buffer.
pub struct Held<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl Write for Held<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Written out by the buffer's own rhythm, not per line.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for AccessBuffer {
    type Writer = Held<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Held(self.lock())
    }
}

impl AccessBuffer {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(BufWriter::with_capacity(
            BUFFER_BYTES,
            io::stderr(),
        ))))
    }

    fn lock(&self) -> MutexGuard<'_, BufWriter<Stderr>> {
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let access = AccessBuffer::new();
    let writer = access
        .clone()
        .with_filter(|meta| meta.target() == ACCESS_TARGET)
        .or_else(io::stderr);
    // Colours only for a person at a terminal, never into a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(writer);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
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
