//! [`ClientConnection`]: the client's side of one connection, sans IO.
//!
//! Drive it like this, after every input draining every output until empty:
//!
//! * inputs: [`ClientConnection::handle_read`] with bytes from the socket,
//!   [`ClientConnection::handle_timeout`] at [`ClientConnection::poll_timeout`], and the
//!   application's commands ([`ClientConnection::publish`], [`ClientConnection::subscribe`],
//!   [`ClientConnection::unsubscribe`], [`ClientConnection::ping`], [`ClientConnection::disconnect`]);
//! * outputs: [`ClientConnection::poll_transmit`], [`ClientConnection::poll_event`],
//!   [`ClientConnection::poll_timeout`], [`ClientConnection::is_closed`].
//!
//! `new` queues CONNECT. It owns keep-alive (PINGREQ after the keep-alive interval without
//! sending, a deadline for PINGRESP), the shared packet-id allocator, outgoing QoS 1/2 flows
//! with an in-flight window and queue, incoming QoS 2 exactly-once, and, when CONNACK says the
//! session is present, retransmission with DUP of unacknowledged PUBLISH and of PUBREL.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::outbuf::OutBuf;
use crate::packet::{LastWill, Publish, SubAckReturnCode, DEFAULT_MAX_PACKET_SIZE};
use crate::session::{Message, Session};
use crate::topic::TopicFilter;
use crate::types::{ConnectReturnCode, KeepAlive, Protocol, QoS};

/// What the client puts in CONNECT, and its timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The client identifier (may be empty with clean session).
    pub client_id: String,
    /// Protocol version (3.1.1 by default).
    pub protocol: Protocol,
    /// Keep-alive interval sent in CONNECT.
    pub keep_alive: KeepAlive,
    /// Clean session flag.
    pub clean_session: bool,
    /// Will message.
    pub will: Option<LastWill>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// How long to wait for PINGRESP (and CONNACK) before the connection is lost.
    pub response_timeout: Duration,
    /// Largest packet accepted from the server.
    pub max_packet_size: usize,
}

impl ConnectOptions {
    /// Options with defaults: MQTT 3.1.1, keep-alive 60 s, clean session, 10 s response timeout.
    pub fn new(client_id: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            client_id: client_id.into(),
            protocol: Protocol::V311,
            keep_alive: KeepAlive::from_secs(60),
            clean_session: true,
            will: None,
            username: None,
            password: None,
            response_timeout: Duration::from_secs(10),
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
        }
    }
}

/// Identifies an application request (publish, subscribe, unsubscribe) across reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Ticket(pub u64);

/// A request that could not be queued: the window and the queue are full. Carries the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backpressure<T>(pub T);

/// What the application must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// CONNACK accepted.
    Connected {
        /// Whether the server resumed the session.
        session_present: bool,
    },
    /// CONNACK refused; the connection is closed.
    Refused(ConnectReturnCode),
    /// An application message arrived (QoS 2: once per packet id, at PUBLISH time).
    Message(Publish),
    /// A publish completed: QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP.
    Published(Ticket),
    /// A SUBACK for a subscribe request.
    Subscribed(Ticket, Vec<SubAckReturnCode>),
    /// An UNSUBACK for an unsubscribe request.
    Unsubscribed(Ticket),
    /// A PINGRESP.
    PingResp,
    /// The connection is lost or closed; the driver closes the socket.
    Closed(ClientCloseReason),
}

/// Why a client connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCloseReason {
    /// The application called disconnect.
    Disconnected,
    /// The server violated the protocol.
    Protocol(ProtocolError),
    /// No PINGRESP (or CONNACK) within the response timeout.
    Timeout,
}

/// The client's side of one connection. See the module docs for how to drive it.
#[derive(Debug)]
pub struct ClientConnection {
    options: ConnectOptions,
}

impl ClientConnection {
    /// A new connection at `now` resuming `session`; CONNECT is queued for transmission.
    pub fn new(options: ConnectOptions, session: Session, now: Instant) -> ClientConnection {
        let _ = (session, now);
        ClientConnection { options }
    }

    /// Feeds bytes read from the socket. An `Err` means the connection must close.
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        let _ = (now, buf, &self.options);
        todo!()
    }

    /// Advances timers; a no-op if nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Publishes a message. QoS 1/2 wait in the session when the window is full; `Err` when the
    /// queue is full too.
    pub fn publish(
        &mut self,
        now: Instant,
        message: Message,
    ) -> Result<Ticket, Backpressure<Message>> {
        let _ = (now, message);
        todo!()
    }

    /// Subscribes to filters.
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: Vec<(TopicFilter, QoS)>,
    ) -> Result<Ticket, Backpressure<Vec<(TopicFilter, QoS)>>> {
        let _ = (now, filters);
        todo!()
    }

    /// Unsubscribes from filters.
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        filters: Vec<TopicFilter>,
    ) -> Result<Ticket, Backpressure<Vec<TopicFilter>>> {
        let _ = (now, filters);
        todo!()
    }

    /// Sends a PINGREQ now.
    pub fn ping(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Queues DISCONNECT; the connection closes once it is transmitted.
    pub fn disconnect(&mut self) {
        todo!()
    }

    /// Moves the bytes to send into `out`. Returns whether anything was added.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut OutBuf) -> bool {
        let _ = out;
        todo!()
    }

    /// The next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        todo!()
    }

    /// The next deadline at which [`ClientConnection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Whether the CONNACK accepted the connection and it is still open.
    pub fn is_connected(&self) -> bool {
        todo!()
    }

    /// Whether the connection is closed: flush, then close the socket.
    pub fn is_closed(&self) -> bool {
        todo!()
    }

    /// The session, for the next connection (clean session 0 resumes it; requests in flight are
    /// retransmitted there).
    pub fn into_session(self) -> Session {
        todo!()
    }
}
