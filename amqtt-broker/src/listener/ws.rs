//! MQTT over WebSocket (`type: ws` listeners): the HTTP upgrade and [`WsStream`], a byte
//! stream over WebSocket messages.
//!
//! The upgrade accepts any URL path and requires the client to offer the `mqtt` subprotocol
//! ([MQTT-6.0.0-3]; `mqttv3.1`, which older clients offer, is accepted too); the server
//! answers with the one it picked ([MQTT-6.0.0-4]). A client offering neither gets HTTP 400,
//! as aMQTT answers.
//!
//! [`WsStream`] knows nothing of MQTT ([MQTT-6.0.0-2]: packets need not be aligned with
//! frames): reads yield the payloads of binary (and, like aMQTT, text) messages back to back,
//! so a packet may span messages and a message may hold several packets; each write goes out
//! as one binary message. Ping, pong and close are handled by tungstenite.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Subprotocols accepted, in order of preference.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Room for the packets that share a message with the largest allowed one.
const MESSAGE_SLACK: usize = 64 * 1024;

/// WebSocket limits of one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsSettings {
    config: WebSocketConfig,
}

impl WsSettings {
    /// Limits derived from the broker's `max_packet_size`: a message may hold one largest
    /// packet plus some smaller ones, no more; anything larger closes the connection before it
    /// is buffered.
    pub(crate) fn new(max_packet_size: usize) -> WsSettings {
        let max_message = max_packet_size.saturating_add(MESSAGE_SLACK);
        WsSettings {
            config: WebSocketConfig::default()
                .max_message_size(Some(max_message))
                .max_frame_size(Some(max_message))
                .max_write_buffer_size(max_message.saturating_mul(2)),
        }
    }
}

/// Runs the server side of the WebSocket upgrade on `stream`.
pub(crate) async fn accept<S>(stream: S, settings: &WsSettings) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        pick_subprotocol,
        Some(settings.config),
    )
    .await?;
    Ok(WsStream::new(ws))
}

/// The upgrade callback: picks the MQTT subprotocol or refuses the upgrade.
#[allow(clippy::result_large_err)] // The signature is tungstenite's `Callback`.
fn pick_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let chosen = SUBPROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
    match chosen {
        Some(p) => {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
            Ok(response)
        }
        None => {
            let mut refusal = ErrorResponse::new(Some(
                "[MQTT-6.0.0-3] the client must offer the WebSocket subprotocol \"mqtt\"".into(),
            ));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
    }
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
