//! WebSocket (`ws://`, and `wss://` over TLS): the HTTP upgrade with the `mqtt` subprotocol
//! ([MQTT-6.0.0-3]), the URL's path and query and the `additional_headers`, then
//! [`WsStream`], a byte stream over WebSocket messages.
//!
//! [`WsStream`] knows nothing of MQTT ([MQTT-6.0.0-2]): reads yield the payloads of binary
//! (and text) messages back to back, so a packet may span messages and a message may hold
//! several packets; each write goes out as one binary message (the driver's vectored writes
//! make that one message per batch of packets). Ping, pong and close are handled by
//! tungstenite.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::error::ClientError;

/// The subprotocol offered ([MQTT-6.0.0-3]).
const SUBPROTOCOL: &str = "mqtt";

/// Runs the client side of the WebSocket upgrade for `url` over `stream`.
pub(crate) async fn connect<S>(
    stream: S,
    url: &str,
    headers: &[(String, String)],
) -> Result<WsStream<S>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bad_header = |name: &str, e: &dyn std::fmt::Display| {
        ClientError::WebSocket(format!("invalid additional header '{name}': {e}"))
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::WebSocket(format!("invalid WebSocket URL '{url}': {e}")))?;
    let fields = request.headers_mut();
    fields.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad_header(name, &e))?;
        let value = HeaderValue::from_str(value).map_err(|e| bad_header(name, &e))?;
        fields.append(header, value);
    }
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| ClientError::WebSocket(format!("upgrade to {url} failed: {e}")))?;
    Ok(WsStream::new(ws))
}

/// A byte stream over a WebSocket connection (see the module docs).
pub(crate) struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    pending: Bytes,
    eof: bool,
}

impl<S> WsStream<S> {
    /// Wraps an upgraded connection.
    pub(crate) fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            pending: Bytes::new(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
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

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}
