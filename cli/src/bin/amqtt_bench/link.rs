//! One MQTT connection of the load tool: the stream, its read and write buffers and the codec's
//! [`Decoder`].
//!
//! The handshake (CONNECT/CONNACK, SUBSCRIBE/SUBACK) uses the codec's packets; the hot path
//! works on raw buffers: publishers append pre-encoded PUBLISH packets to [`Link::out`] and
//! subscribers decode from [`Link::inb`] with [`Link::next_packet`], which splits packets off
//! the read buffer without copying. [`Link::io`] writes and reads in one step (one `write` per
//! batch of packets), so a connection needs one task and no locks.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqtt_codec::packet::SubAckReturnCode;
use mqtt_codec::{
    Connect, ConnectReturnCode, Decoder, KeepAlive, Packet, PacketId, Protocol, QoS, Subscribe,
    TopicFilter,
};
use tokio::io::AsyncWrite;
use tokio::time::{timeout, Instant};

use crate::error::BenchError;
use crate::transport::{BenchStream, Target};

/// How long the broker may take to answer CONNECT or SUBSCRIBE.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Free space kept in the read buffer before each read: large, so a subscriber on a busy core
/// takes in as much per turn as a publisher writes ([`crate::publisher`] batches 64 KiB).
const READ_CHUNK: usize = 64 * 1024;
/// How long a closing connection may take to flush its DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// An open MQTT connection.
#[derive(Debug)]
pub(crate) struct Link {
    stream: BenchStream,
    decoder: Decoder,
    /// Bytes read and not yet decoded.
    pub(crate) inb: BytesMut,
    /// Bytes to write; producers append whole packets.
    pub(crate) out: BytesMut,
    last_write: Instant,
    ping_every: Option<Duration>,
}

impl Link {
    /// Connects, sends CONNECT (clean session) and waits for an accepting CONNACK.
    pub(crate) async fn open(
        target: &Target,
        client_id: String,
        keep_alive: u16,
    ) -> Result<Link, BenchError> {
        let stream = target.connect().await?;
        let mut link = Link {
            stream,
            decoder: Decoder::default(),
            inb: BytesMut::new(),
            out: BytesMut::new(),
            last_write: Instant::now(),
            ping_every: KeepAlive(keep_alive).interval().map(|ka| ka / 2),
        };
        let connect = Connect {
            protocol: Protocol::V311,
            keep_alive: KeepAlive(keep_alive),
            client_id,
            clean_session: true,
            will: None,
            username: target.username.clone(),
            password: target.password.clone().map(Into::into),
        };
        link.send(&Packet::from(connect))?;
        match link.answer("CONNACK").await? {
            Packet::ConnAck(connack) if connack.return_code == ConnectReturnCode::Accepted => {
                Ok(link)
            }
            Packet::ConnAck(connack) => Err(BenchError::Refused(connack.return_code)),
            other => Err(BenchError::Unexpected(other.name())),
        }
    }

    /// Subscribes to one filter and waits for the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), BenchError> {
        let filter_name = filter.to_owned();
        let filter = TopicFilter::new(filter)
            .map_err(|e| BenchError::Usage(format!("{filter_name}: {e}")))?;
        let packet_id = PacketId::new(1).ok_or(BenchError::Unexpected("packet id"))?;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter, qos)],
        }))?;
        match self.answer("SUBACK").await? {
            Packet::SubAck(suback)
                if suback.return_codes.first() == Some(&SubAckReturnCode::Failure) =>
            {
                Err(BenchError::SubscriptionRefused(filter_name))
            }
            Packet::SubAck(suback) if suback.packet_id == packet_id => Ok(()),
            other => Err(BenchError::Unexpected(other.name())),
        }
    }

    /// Decodes the next complete packet from the read buffer; `Ok(None)` when more bytes are
    /// needed. Payloads share the read buffer (no copy).
    pub(crate) fn next_packet(&mut self) -> Result<Option<Packet>, BenchError> {
        Ok(self.decoder.decode(&mut self.inb)?)
    }

    /// Writes what [`Link::out`] holds and reads what is available, in one step: resolves as
    /// soon as either made progress. Cancel-safe: a cancelled call has written and read nothing
    /// beyond what the buffers show.
    pub(crate) async fn io(&mut self) -> Result<(), BenchError> {
        if self.inb.capacity() - self.inb.len() < READ_CHUNK / 4 {
            self.inb.reserve(READ_CHUNK);
        }
        let Link {
            stream, inb, out, ..
        } = self;
        let wrote = poll_fn(|cx| {
            let mut wrote = false;
            while !out.is_empty() {
                match Pin::new(&mut *stream).poll_write(cx, out) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(BenchError::Closed)),
                    Poll::Ready(Ok(n)) => {
                        out.advance(n);
                        wrote = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => break,
                }
            }
            if wrote && out.is_empty() {
                // A no-op on TCP; TLS and WebSocket transports need it.
                if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
                    return Poll::Ready(Err(e.into()));
                }
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, inb) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(BenchError::Closed)),
                Poll::Ready(Ok(_)) => return Poll::Ready(Ok(wrote)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
            if wrote {
                Poll::Ready(Ok(true))
            } else {
                Poll::Pending
            }
        })
        .await?;
        if wrote {
            self.last_write = Instant::now();
        }
        Ok(())
    }

    /// When a PINGREQ is due if nothing else is written (half the keep-alive after the last
    /// write); `None` with keep-alive 0.
    pub(crate) fn ping_at(&self) -> Option<Instant> {
        self.ping_every.map(|every| self.last_write + every)
    }

    /// Queues a PINGREQ if one is due at `now`.
    pub(crate) fn ping_if_due(&mut self, now: Instant) {
        if self.ping_at().is_some_and(|at| at <= now) && self.out.is_empty() {
            // PINGREQ is two fixed bytes (section 3.12).
            self.out.extend_from_slice(&[0xc0, 0x00]);
            self.last_write = now;
        }
    }

    /// Frees both buffers when they are empty, so an idle connection holds none.
    pub(crate) fn release_buffers(&mut self) {
        if self.inb.is_empty() {
            self.inb = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out = BytesMut::new();
        }
    }

    /// Writes everything queued, bounded by `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + limit;
        while !self.out.is_empty() {
            match timeout_at(deadline, self.io()).await {
                Some(result) => result?,
                None => return Err(BenchError::Timeout("the socket to drain")),
            }
            // Whatever the broker sends while we close is not looked at.
            self.inb.clear();
        }
        Ok(())
    }

    /// Sends DISCONNECT and closes the stream, bounded by a short timeout.
    pub(crate) async fn close(mut self) {
        // DISCONNECT is two fixed bytes (section 3.14).
        self.out.extend_from_slice(&[0xe0, 0x00]);
        if self.flush(CLOSE_TIMEOUT).await.is_ok() {
            let _ = timeout(
                CLOSE_TIMEOUT,
                tokio::io::AsyncWriteExt::shutdown(&mut self.stream),
            )
            .await;
        }
    }

    fn send(&mut self, packet: &Packet) -> Result<(), BenchError> {
        packet
            .encode(&mut self.out)
            .map_err(|e| BenchError::Usage(e.to_string()))
    }

    /// Flushes and waits for the next packet (the answer to a handshake step).
    async fn answer(&mut self, what: &'static str) -> Result<Packet, BenchError> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            match timeout_at(deadline, self.io()).await {
                Some(result) => result?,
                None => return Err(BenchError::Timeout(what)),
            }
        }
    }
}

/// Runs `future` until `deadline`; `None` if the deadline came first.
async fn timeout_at<F: std::future::Future>(deadline: Instant, future: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, future).await.ok()
}
