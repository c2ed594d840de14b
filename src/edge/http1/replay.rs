//! The connection as hyper gets it when the front hands it over: the bytes
//! the front had read (and not served) come first, then the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};

use crate::util::delegate_write::delegate_write;

pub struct Replay<S> {
    read: Bytes,
    stream: S,
}

impl<S> Replay<S> {
    pub fn new(read: Bytes, stream: S) -> Self {
        Self { read, stream }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let count = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..count]);
        this.read.advance(count);
        Poll::Ready(Ok(()))
    }
}

delegate_write!(Replay, stream);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_bytes_read_come_first_then_the_stream() {
        let stream: &[u8] = b" world";
        let mut replay = Replay::new(Bytes::from_static(b"hello"), stream);
        let mut first = [0u8; 3];
        replay.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hel");
        let mut rest = String::new();
        replay.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
    }
}
