//! The body of a direct exchange's response, read as it is polled: by its
//! length, in chunks (decoded, trailers read and dropped), or to the end of
//! the connection; and the connection handed back to the pool once the
//! body ended cleanly.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::{Conn, Shared, MAX_CHUNK_LINE, MAX_TRAILER_BYTES, READ_SIZE};

/// How a response body is delimited (chosen by [`super::response`]), and
/// where reading it has got to.
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// Where the chunked decoder is.
#[derive(Default)]
pub(super) enum Chunked {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk, this many bytes to go.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes read.
    Trailers(usize),
}

/// What one step of the chunked decoder produced.
pub(super) enum Step {
    Data(Bytes),
    /// Consumed framing; step again.
    Progress,
    /// More bytes are needed.
    Short,
    Finished,
}

impl Chunked {
    pub(super) fn step(&mut self, buffer: &mut BytesMut) -> Result<Step, &'static str> {
        match self {
            Self::Size => {
                let Some(line) = take_line(buffer, MAX_CHUNK_LINE)? else {
                    return Ok(Step::Short);
                };
                let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.iter().all(u8::is_ascii_hexdigit)
                {
                    return Err("invalid chunk size");
                }
                let size = digits.iter().fold(0u64, |size, &digit| {
                    size * 16 + u64::from((digit as char).to_digit(16).unwrap_or(0))
                });
                *self = if size == 0 {
                    Self::Trailers(0)
                } else {
                    Self::Data(size)
                };
                Ok(Step::Progress)
            }
            Self::Data(remaining) => {
                if buffer.is_empty() {
                    return Ok(Step::Short);
                }
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = Self::DataEnd;
                }
                Ok(Step::Data(buffer.split_to(take).freeze()))
            }
            Self::DataEnd => {
                if buffer.len() < 2 {
                    return Ok(Step::Short);
                }
                if &buffer[..2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF");
                }
                buffer.advance(2);
                *self = Self::Size;
                Ok(Step::Progress)
            }
            Self::Trailers(read) => {
                let Some(line) = take_line(buffer, MAX_TRAILER_BYTES)? else {
                    return Ok(Step::Short);
                };
                if line.is_empty() {
                    return Ok(Step::Finished);
                }
                *read += line.len() + 2;
                if *read > MAX_TRAILER_BYTES {
                    return Err("trailers too large");
                }
                Ok(Step::Progress)
            }
        }
    }
}

/// One CRLF-terminated line off the front of `buffer`, without its CRLF;
/// `None` until it is complete. A bare LF is an error.
pub(super) fn take_line(
    buffer: &mut BytesMut,
    limit: usize,
) -> Result<Option<Bytes>, &'static str> {
    let Some(at) = buffer.iter().position(|&b| b == b'\n') else {
        return if buffer.len() > limit {
            Err("line too long")
        } else {
            Ok(None)
        };
    };
    if at == 0 || buffer[at - 1] != b'\r' {
        return Err("line not ended by CRLF");
    }
    let line = buffer.split_to(at + 1).freeze();
    Ok(Some(line.slice(..at - 1)))
}

/// The body of a direct exchange, read off its connection as it is polled.
/// The connection returns to the pool once the body is complete (and the
/// response allowed it); dropped half-read, it is closed.
pub struct DirectBody {
    pub(super) conn: Option<Conn>,
    pub(super) framing: Framing,
    pub(super) reusable: bool,
    pub(super) shared: Arc<Shared>,
}

impl DirectBody {
    pub(super) fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buffer.is_empty() {
                self.shared.idle.put(conn);
            }
        }
    }

    /// Reads more from the connection; `Ok(false)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        loop {
            conn.buffer.reserve(READ_SIZE);
            match conn.stream.try_read_buf(&mut conn.buffer) {
                Ok(read) => return Poll::Ready(Ok(read > 0)),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    ready!(conn.stream.poll_read_ready(cx))?;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// A body that ended before its framing said it would.
pub(super) fn cut_short(problem: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, problem)
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            let buffered = this.conn.as_ref().map_or(0, |c| c.buffer.len());
            match &mut this.framing {
                Framing::Empty | Framing::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(remaining) if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(buffered);
                    *remaining -= take as u64;
                    let data = conn.buffer.split_to(take).freeze();
                    if *remaining == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::UntilClose if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return Poll::Ready(None);
                    };
                    let data = conn.buffer.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(decoder) if buffered > 0 => {
                    let Some(conn) = this.conn.as_mut() else {
                        return Poll::Ready(None);
                    };
                    match decoder.step(&mut conn.buffer) {
                        Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                        Ok(Step::Progress) => continue,
                        Ok(Step::Finished) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(Step::Short) => {}
                        Err(problem) => {
                            this.conn = None;
                            return Poll::Ready(Some(Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                problem,
                            ))));
                        }
                    }
                }
                _ => {}
            }
            // Nothing (or too little) buffered: read more.
            match ready!(this.poll_fill(cx)) {
                Ok(true) => continue,
                Ok(false) => {
                    if matches!(this.framing, Framing::UntilClose) {
                        this.reusable = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    this.conn = None;
                    return Poll::Ready(Some(Err(cut_short(
                        "upstream closed the connection inside a response body",
                    ))));
                }
                Err(error) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Empty | Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty | Framing::Done => SizeHint::with_exact(0),
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            Framing::Chunked(_) | Framing::UntilClose => SizeHint::default(),
        }
    }
}

impl Drop for DirectBody {
    fn drop(&mut self) {
        if matches!(self.framing, Framing::Empty) {
            self.finish();
        }
    }
}
