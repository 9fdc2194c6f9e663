//! What a listener does to an accepted TCP connection before MQTT starts on it: a TLS
//! handshake (`ssl: true`), a WebSocket upgrade (`type: ws`), or both (TLS first).
//!
//! The [`Upgrader`] of a listener is built once, when the broker is built, from the listener's
//! config (certificate files are read then, so a bad file is a [`ConfigError`] before anything
//! is bound). The handshake runs in the connection's own task, under the broker's
//! `connect_timeout` and its shutdown signal, never in the accept loop; a failed handshake is a
//! log line. The result is a byte stream handed to the same connection driver as plain TCP:
//! nothing MQTT-specific happens here.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use mqtt_codec::OutBuf;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::broker::Shared;
use crate::config::{ListenerConfig, ListenerType};
use crate::connection::{self, Slot};
use crate::error::ConfigError;
use crate::transport::Transport;

pub(crate) mod tls;
pub(crate) mod ws;

/// The handshakes one listener runs on each accepted connection.
pub(crate) struct Upgrader {
    tls: Option<tokio_rustls::TlsAcceptor>,
    ws: Option<ws::WsSettings>,
}

/// Any byte stream a handshake produced.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Io for T {}

impl Upgrader {
    /// The upgrader for listener `l` (config path `path`), or `None` for a plain TCP or
    /// external listener. Reads the certificate files.
    pub(crate) fn for_listener(
        l: &ListenerConfig,
        path: &str,
        max_packet_size: usize,
    ) -> Result<Option<Upgrader>, ConfigError> {
        let ws = match l.listener_type {
            ListenerType::Ws => Some(ws::WsSettings::new(max_packet_size)),
            ListenerType::Tcp | ListenerType::External => None,
        };
        let tls = if l.ssl {
            Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                l, path,
            )?))
        } else {
            None
        };
        if tls.is_none() && ws.is_none() {
            return Ok(None);
        }
        Ok(Some(Upgrader { tls, ws }))
    }

    /// What the listener speaks, for log lines: `tls`, `ws` or `wss`.
    pub(crate) fn kind(&self) -> &'static str {
        match (self.tls.is_some(), self.ws.is_some()) {
            (true, true) => "wss",
            (true, false) => "tls",
            (false, _) => "ws",
        }
    }

    async fn upgrade(&self, tcp: TcpStream) -> Result<Box<dyn Io>, HandshakeError> {
        let stream: Box<dyn Io> = match &self.tls {
            Some(acceptor) => Box::new(acceptor.accept(tcp).await.map_err(HandshakeError::Tls)?),
            None => Box::new(tcp),
        };
        match &self.ws {
            Some(settings) => Ok(Box::new(ws::accept(stream, settings).await?)),
            None => Ok(stream),
        }
    }
}

/// Why a connection never got to MQTT.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The TLS handshake failed (bad or missing client certificate, unknown CA, not TLS, …).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    /// The WebSocket upgrade failed (not HTTP, no `mqtt` subprotocol offered, …).
    #[error("WebSocket upgrade failed: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Runs `upgrader`'s handshakes on `tcp` under the connect timeout, then serves MQTT on the
/// result. Runs in the connection's own task; the slot is held throughout, so connections in
/// their handshake count against `max_connections`.
pub(crate) async fn serve_upgraded(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    listener: Arc<str>,
    slot: Slot,
    upgrader: Arc<Upgrader>,
) {
    let timeout = shared.config.limits.connect_timeout;
    let kind = upgrader.kind();
    let handshake = tokio::time::timeout(timeout, upgrader.upgrade(tcp));
    let outcome = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        outcome = handshake => outcome,
    };
    match outcome {
        Ok(Ok(stream)) => {
            tracing::debug!(%listener, %peer, kind, "handshake done");
            connection::serve(Buffered::new(stream, peer), shared, slot).await;
        }
        Ok(Err(e)) => tracing::info!(%listener, %peer, kind, "connection dropped: {e}"),
        Err(_) => tracing::info!(
            %listener, %peer, kind,
            "connection dropped: handshake not done within connect_timeout ({timeout:?})"
        ),
    }
}

/// A [`Transport`] over a stream that buffers writes (TLS records, WebSocket frames): after
/// every write it flushes, and a flush that could not finish is retried on the next poll of
/// either direction, so bytes never sit in the stream's buffer while the connection waits.
pub(crate) struct Buffered<S> {
    io: S,
    needs_flush: bool,
    /// The TCP peer under the TLS or WebSocket layers.
    peer: SocketAddr,
}

impl<S> Buffered<S> {
    pub(crate) fn new(io: S, peer: SocketAddr) -> Buffered<S> {
        Buffered {
            io,
            needs_flush: false,
            peer,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Buffered<S> {
    fn poll_pending_flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.needs_flush {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }
}

/// How much is reserved for one read.
const READ_CHUNK: usize = 8 * 1024;
/// Slices per vectored write.
const MAX_IOVECS: usize = 64;

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for Buffered<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        // The connection polls reads almost always, so this is where a flush that the
        // socket refused earlier gets finished.
        self.poll_pending_flush(cx)?;
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf)
    }

    fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut OutBuf,
    ) -> Poll<io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = out.chunks_vectored(&mut slices);
        let io = Pin::new(&mut self.io);
        let n = ready!(io.poll_write_vectored(cx, slices.get(..count).unwrap_or(&[])))?;
        if n == 0 && !out.is_empty() {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        out.advance(n);
        self.needs_flush = true;
        self.poll_pending_flush(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }
}
