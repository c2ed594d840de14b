//! Writes the access lines (target `cloakroom::access`, one per request):
//! a `tracing` layer that turns the event's fields into one line, text or
//! JSON, and hands it to the access buffer ([`AccessBuffer`]). Every other event goes to the
//! layer it is put [beside](AccessLines::beside) (tracing-subscriber's
//! formatter). Why one layer routing by target rather than two layers
//! with per-layer filters: with those, events were lost (the `listening`
//! line, among others), a known fragility of per-layer filtering.
//!
//! Why not tracing-subscriber's own formatters, which write every other
//! line: on the request path they cost more than the rest of a session
//! read (about 25,000 instructions per JSON line against 32,000 for the
//! whole request, `bench/instructions.sh`), largely in building and
//! re-checking owned strings per event. Here the fields stream straight
//! into a reused per-thread line: JSON through `serde_json`'s serializer
//! (its escaping, never hand-made JSON), text with each string `Debug`-
//! quoted as tracing-subscriber does, so a path holding a newline or a
//! quote cannot forge a line. The shapes are tracing-subscriber's: JSON
//! objects with `timestamp`, `level`, the fields at the top level and
//! `target`; text lines `<timestamp>  INFO cloakroom::access: request
//! key=value …`. Timestamps are UTC, RFC 3339 with microseconds; the date
//! and time of day are formatted once per second per thread.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{BufWriter, Stderr, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer as _};
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The access lines' buffer, shared by every thread.
#[derive(Clone)]
pub struct AccessBuffer(Arc<Mutex<BufWriter<Stderr>>>);

impl AccessBuffer {
    /// A buffer of `bytes`, written to stderr.
    pub(super) fn new(bytes: usize) -> Self {
        Self(Arc::new(Mutex::new(BufWriter::with_capacity(
            bytes,
            std::io::stderr(),
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

/// The access lines' target.
pub const ACCESS_TARGET: &str = "cloakroom::access";

/// The layer writing access lines; every other event passes it by.
pub struct AccessLines {
    buffer: AccessBuffer,
    json: bool,
}

impl AccessLines {
    pub fn new(buffer: AccessBuffer, json: bool) -> Self {
        Self { buffer, json }
    }
}

thread_local! {
    /// The line being written, reused: no allocation per line.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The last second formatted (`YYYY-MM-DDTHH:MM:SS`) and its Unix time.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl AccessLines {
    /// This layer for access lines, `others` for every other event.
    pub fn beside<L>(self, others: L) -> Beside<L> {
        Beside {
            access: self,
            others,
        }
    }

    fn write(&self, event: &Event<'_>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            let written = if self.json {
                json_line(line, event, SystemTime::now()).is_ok()
            } else {
                text_line(line, event, SystemTime::now()).is_ok()
            };
            if written {
                line.push(b'\n');
                // A failed write to stderr has nowhere to be reported.
                let _ = self.buffer.lock().write_all(line);
            }
        });
    }
}

/// Access lines to [`AccessLines`], everything else to `others`.
pub struct Beside<L> {
    access: AccessLines,
    others: L,
}

/// Forwards every call to `others`, but access events.
impl<S: Subscriber, L: Layer<S>> Layer<S> for Beside<L> {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.others.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.others.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if metadata.target() == ACCESS_TARGET {
            tracing::subscriber::Interest::always()
        } else {
            self.others.register_callsite(metadata)
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, context: Context<'_, S>) -> bool {
        metadata.target() == ACCESS_TARGET || self.others.enabled(metadata, context)
    }

    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        context: Context<'_, S>,
    ) {
        self.others.on_new_span(attributes, id, context);
    }

    fn on_record(
        &self,
        span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        context: Context<'_, S>,
    ) {
        self.others.on_record(span, values, context);
    }

    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        context: Context<'_, S>,
    ) {
        self.others.on_follows_from(span, follows, context);
    }

    fn event_enabled(&self, event: &Event<'_>, context: Context<'_, S>) -> bool {
        event.metadata().target() == ACCESS_TARGET || self.others.event_enabled(event, context)
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if event.metadata().target() == ACCESS_TARGET {
            self.access.write(event);
        } else {
            self.others.on_event(event, context);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, context: Context<'_, S>) {
        self.others.on_enter(id, context);
    }

    fn on_exit(&self, id: &tracing::span::Id, context: Context<'_, S>) {
        self.others.on_exit(id, context);
    }

    fn on_close(&self, id: tracing::span::Id, context: Context<'_, S>) {
        self.others.on_close(id, context);
    }

    fn on_id_change(
        &self,
        old: &tracing::span::Id,
        new: &tracing::span::Id,
        context: Context<'_, S>,
    ) {
        self.others.on_id_change(old, new, context);
    }
}

/// The length of [`timestamp`]'s text.
const TIMESTAMP_LEN: usize = 27;

/// `now` as `2026-12-03T16:00:00.123456Z`, written without the formatting
/// machinery but for the date, once per second.
fn timestamp(now: SystemTime) -> [u8; TIMESTAMP_LEN] {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let mut text = [0u8; TIMESTAMP_LEN];
    SECOND.with_borrow_mut(|(second, civil)| {
        if *second != secs {
            civil.clear();
            // Formatting into a `String` cannot fail.
            let _ = civil_second(civil, secs);
            *second = secs;
        }
        // Always 19 bytes: the year has four digits from 1970 to 9999.
        if let Some(prefix) = civil.as_bytes().get(..19) {
            text[..19].copy_from_slice(prefix);
        }
    });
    text[19] = b'.';
    let mut micros = since.subsec_micros();
    for digit in text[20..26].iter_mut().rev() {
        // A remainder of 10 is one digit.
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    text[26] = b'Z';
    text
}

/// Writes Unix time `secs` as `YYYY-MM-DDTHH:MM:SS` (UTC).
fn civil_second(out: &mut String, secs: u64) -> fmt::Result {
    let time = i64::try_from(secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

fn json_line(line: &mut Vec<u8>, event: &Event<'_>, now: SystemTime) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::new(line);
    let mut map = serializer.serialize_map(None)?;
    let timestamp = timestamp(now);
    // Digits and ASCII punctuation only.
    map.serialize_entry("timestamp", std::str::from_utf8(&timestamp).unwrap_or(""))?;
    map.serialize_entry("level", event.metadata().level().as_str())?;
    let mut fields = JsonFields {
        map: &mut map,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    map.serialize_entry("target", event.metadata().target())?;
    map.end()
}

/// Each field as one entry of the line's object.
struct JsonFields<'a, M> {
    map: &'a mut M,
    result: serde_json::Result<()>,
}

impl<M: SerializeMap<Error = serde_json::Error>> JsonFields<'_, M> {
    fn entry<V: Serialize + ?Sized>(&mut self, field: &Field, value: &V) {
        if self.result.is_ok() {
            self.result = self.map.serialize_entry(field.name(), value);
        }
    }
}

impl<M: SerializeMap<Error = serde_json::Error>> Visit for JsonFields<'_, M> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, &format_args!("{value:?}"));
    }
}

fn text_line(line: &mut Vec<u8>, event: &Event<'_>, now: SystemTime) -> std::io::Result<()> {
    let metadata = event.metadata();
    line.extend_from_slice(&timestamp(now));
    write!(
        line,
        " {:>5} {}:",
        metadata.level().as_str(),
        metadata.target()
    )?;
    let mut fields = TextFields {
        line,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result
}

/// Each field as ` key=value`, the message as itself; strings quoted.
struct TextFields<'a> {
    line: &'a mut Vec<u8>,
    result: std::io::Result<()>,
}

impl TextFields<'_> {
    fn write(&mut self, args: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.result = self.line.write_fmt(args);
        }
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(format_args!(" {}={value:?}", field.name()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.write(format_args!(" {value:?}"));
        } else {
            self.write(format_args!(" {}={value:?}", field.name()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Writes the lines of the events it sees with `write` at a fixed time.
    struct Capture {
        lines: Arc<Mutex<Vec<u8>>>,
        json: bool,
    }

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
            let now = UNIX_EPOCH + Duration::from_micros(1_764_777_600_123_456);
            let mut lines = self.lines.lock().unwrap();
            if self.json {
                json_line(&mut lines, event, now).unwrap();
            } else {
                text_line(&mut lines, event, now).unwrap();
            }
        }
    }

    fn line(json: bool) -> String {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture {
            lines: lines.clone(),
            json,
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "cloakroom::access",
                method = "GET",
                path = "/a\"b\n{\"forged\":1}",
                query = None::<&str>,
                status = 404u16,
                duration_ms = 1.25,
                tls = false,
                peer = %std::net::Ipv4Addr::LOCALHOST,
                "request"
            );
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn json_lines_have_tracing_subscribers_shape_and_escape_what_the_client_sent() {
        let line = line(true);
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "timestamp": "2025-12-03T16:00:00.123456Z",
                "level": "INFO",
                "message": "request",
                "method": "GET",
                "path": "/a\"b\n{\"forged\":1}",
                "status": 404,
                "duration_ms": 1.25,
                "tls": false,
                "peer": "127.0.0.1",
                "target": "cloakroom::access",
            })
        );
        assert!(line.starts_with(r#"{"timestamp":"#), "{line}");
        assert!(line.ends_with(r#""target":"cloakroom::access"}"#), "{line}");
    }

    #[test]
    fn text_lines_quote_strings_so_a_path_cannot_forge_a_line() {
        assert_eq!(
            line(false),
            "2025-12-03T16:00:00.123456Z  INFO cloakroom::access: request method=\"GET\" \
             path=\"/a\\\"b\\n{\\\"forged\\\":1}\" status=404 duration_ms=1.25 tls=false \
             peer=127.0.0.1"
        );
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        for (micros, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_399_000_001, "2000-02-28T23:59:59.000001Z"),
            (951_782_400_999_999, "2000-02-29T00:00:00.999999Z"),
            (1_764_777_600_123_456, "2025-12-03T16:00:00.123456Z"),
        ] {
            let stamp = timestamp(UNIX_EPOCH + Duration::from_micros(micros));
            assert_eq!(std::str::from_utf8(&stamp).unwrap(), text);
        }
    }
}
