//! The byte streams a connection task drives: TCP, and any `AsyncRead + AsyncWrite` handed to
//! [`crate::Broker::external_connected`].
//!
//! Reads go into a `BytesMut` that holds memory only while bytes are pending: on TCP the
//! buffer is reserved only once the socket is readable, so an idle connection holds no read
//! buffer. Writes take the whole [`OutBuf`] at once as a vectored write (many packets, one
//! syscall).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use mqtt_codec::OutBuf;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How much is reserved for one read.
const READ_CHUNK: usize = 8 * 1024;
/// Slices per vectored write (Linux's `IOV_MAX` is 1024; this is plenty per syscall).
const MAX_IOVECS: usize = 64;

/// A connection's byte stream.
pub(crate) trait Transport: Send + Unpin + 'static {
    /// Reads into `buf` (reserving space as needed). `Ok(0)`: end of stream.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>>;

    /// Writes from the front of `out` and advances it; returns the number of bytes written.
    fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut OutBuf,
    ) -> Poll<io::Result<usize>>;

    /// Shuts the write side down.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The peer's address, when the stream has one (asked when needed rather than stored, so
    /// every idle connection is smaller by a socket address).
    fn peer_addr(&self) -> Option<SocketAddr>;
}

/// A TCP connection.
#[derive(Debug)]
pub(crate) struct Tcp(pub(crate) TcpStream);

/// Any other stream.
#[derive(Debug)]
pub(crate) struct Stream<S>(pub(crate) S);

impl Transport for Tcp {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        ready!(self.0.poll_read_ready(cx))?;
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        // `poll_read` rather than `try_read_buf`: a read that fills less than the buffer tells
        // tokio the socket is drained, so the next read waits for the next readiness event
        // instead of costing a system call that only says "would block" (one per wake-up).
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, buf);
        if read.is_pending() && buf.is_empty() {
            // Readiness was stale; the waker is registered. Give back the buffer reserved for
            // nothing: an idle connection holds none.
            *buf = BytesMut::new();
        }
        read
    }

    fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut OutBuf,
    ) -> Poll<io::Result<usize>> {
        write_vectored(Pin::new(&mut self.0), cx, out)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer_addr().ok()
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for Stream<S> {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_write_from(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut OutBuf,
    ) -> Poll<io::Result<usize>> {
        write_vectored(Pin::new(&mut self.0), cx, out)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }
}

fn write_vectored<W: AsyncWrite + ?Sized>(
    w: Pin<&mut W>,
    cx: &mut Context<'_>,
    out: &mut OutBuf,
) -> Poll<io::Result<usize>> {
    let n = if w.is_write_vectored() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let count = out.chunks_vectored(&mut slices);
        ready!(w.poll_write_vectored(cx, slices.get(..count).unwrap_or(&[])))?
    } else {
        ready!(w.poll_write(cx, out.chunk()))?
    };
    if n == 0 && !out.is_empty() {
        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
    }
    out.advance(n);
    Poll::Ready(Ok(n))
}
