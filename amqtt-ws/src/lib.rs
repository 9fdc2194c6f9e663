//! MQTT over WebSocket, the part the client and the broker share: [`WsStream`], a byte stream
//! over the messages of an upgraded WebSocket connection.
//!
//! The upgrades themselves differ by side and stay there (the client offers the `mqtt`
//! subprotocol and sends extra headers, the broker picks a subprotocol and sets limits); both
//! then wrap the `WebSocketStream` they got in a [`WsStream`] and hand it to code that only
//! knows `AsyncRead + AsyncWrite`.
//!
//! [`WsStream`] knows nothing of MQTT ([MQTT-6.0.0-2]: packets need not be aligned with
//! frames): reads yield the payloads of binary (and, as aMQTT accepts them, text) messages back
//! to back, so a packet may span messages and a message may hold several packets. Each write
//! goes out as one binary message, and a vectored write as one message too, so a batch of
//! packets is one frame. Ping, pong and close are handled by tungstenite; a close message or
//! a closed connection reads as end of stream.
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

pub use tokio_tungstenite;

/// A byte stream over a WebSocket connection (see the crate docs).
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    pending: Bytes,
    /// A close message arrived or the connection ended: reads return end of stream.
    eof: bool,
}

impl<S> WsStream<S> {
    /// Wraps an upgraded connection (either side).
    pub fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }

    /// The underlying WebSocket connection.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.ws
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Queues `payload` as one binary message once the sink has room.
    fn send(&mut self, cx: &mut Context<'_>, payload: Bytes) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(payload))
            .map_err(to_io)?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(text))) => this.pending = text.into(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.get_mut().send(cx, Bytes::copy_from_slice(buf)))?;
        Poll::Ready(Ok(buf.len()))
    }

    /// All slices go out as one message: many packets, one frame.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        // Wait for room before copying, so a full sink costs no allocation per poll.
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        let mut payload = Vec::with_capacity(len);
        for b in bufs {
            payload.extend_from_slice(b);
        }
        ready!(this.send(cx, payload.into()))?;
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

/// A tungstenite error as an I/O error: I/O errors as they are, a closed connection as a
/// broken pipe, protocol violations as invalid data.
fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    /// A connected pair: raw WebSocket on the client side, [`WsStream`] on the server side.
    async fn pair() -> (WebSocketStream<DuplexStream>, WsStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        (client, WsStream::new(server))
    }

    #[tokio::test]
    async fn reads_join_messages_and_split_them_as_the_reader_asks() {
        let (mut peer, mut stream) = pair().await;
        peer.send(Message::Binary(Bytes::from_static(b"\x30\x05\x00")))
            .await
            .unwrap();
        peer.send(Message::Binary(Bytes::from_static(b"\x01tAB\xc0\x00")))
            .await
            .unwrap();
        peer.send(Message::Text("xyz".into())).await.unwrap();
        let mut got = [0u8; 12];
        tokio::time::timeout(LIMIT, stream.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"\x30\x05\x00\x01tAB\xc0\x00xyz");
    }

    #[tokio::test]
    async fn a_vectored_write_is_one_binary_message() {
        let (mut peer, mut stream) = pair().await;
        let parts = [io::IoSlice::new(b"\xc0\x00"), io::IoSlice::new(b"\xd0\x00")];
        let n = stream.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 4);
        stream.write_all(b"\xe0\x00").await.unwrap();
        stream.flush().await.unwrap();
        let first = tokio::time::timeout(LIMIT, peer.next()).await.unwrap();
        assert_eq!(
            first.unwrap().unwrap(),
            Message::Binary(Bytes::from_static(b"\xc0\x00\xd0\x00"))
        );
        let second = tokio::time::timeout(LIMIT, peer.next()).await.unwrap();
        assert_eq!(
            second.unwrap().unwrap(),
            Message::Binary(Bytes::from_static(b"\xe0\x00"))
        );
    }

    #[tokio::test]
    async fn a_close_message_reads_as_end_of_stream() {
        let (mut peer, mut stream) = pair().await;
        peer.send(Message::Binary(Bytes::from_static(b"ab")))
            .await
            .unwrap();
        peer.close(None).await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(LIMIT, stream.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all, b"ab");
    }
}
