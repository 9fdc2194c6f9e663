//! [`ServerConnection`]: the broker's view of one client connection, sans IO.
//!
//! Drive it like this, after every input draining every output until empty:
//!
//! * inputs: [`ServerConnection::handle_read`] with the bytes read from the socket,
//!   [`ServerConnection::handle_timeout`] when [`ServerConnection::poll_timeout`] is reached, and
//!   the broker's decisions ([`ServerConnection::accept`], [`ServerConnection::refuse`],
//!   [`ServerConnection::suback`], [`ServerConnection::unsuback`], [`ServerConnection::publish`],
//!   [`ServerConnection::close`]);
//! * outputs: [`ServerConnection::poll_transmit`] (bytes to write), [`ServerConnection::poll_event`]
//!   (what the broker must act on), [`ServerConnection::poll_timeout`] (the next deadline) and
//!   [`ServerConnection::is_closed`] (flush what was transmitted, then close the socket).
//!
//! It owns: CONNECT-first and second-CONNECT rules, the connect timeout, keep-alive (close after
//! 1.5 × keep-alive of silence, plus a grace), incoming QoS 1/2 acknowledgements and QoS 2
//! exactly-once, outgoing QoS 1/2 with the in-flight window and queue, and retransmission with
//! DUP of unacknowledged messages when a session is resumed.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::outbuf::OutBuf;
use crate::packet::{
    Connect, Publish, SubAckReturnCode, Subscribe, Unsubscribe, DEFAULT_MAX_PACKET_SIZE,
};
use crate::session::{Message, Session};
use crate::types::{ConnectReturnCode, PacketId};

/// Settings of a [`ServerConnection`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest packet accepted after CONNECT (default 1 MiB).
    pub max_packet_size: usize,
    /// Largest packet accepted before CONNECT has been accepted (default 64 KiB).
    pub max_connect_packet_size: usize,
    /// How long a new connection may take to send CONNECT (default 10 s).
    pub connect_timeout: Duration,
    /// Added to 1.5 × keep-alive before a silent client is dropped (aMQTT's
    /// `timeout_disconnect_delay`, default 0).
    pub keep_alive_grace: Duration,
    /// The largest keep-alive the server accepts; a larger (or zero) one is capped to it for the
    /// server's own deadline. `None`: no cap.
    pub max_keep_alive: Option<u16>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_connect_packet_size: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            keep_alive_grace: Duration::ZERO,
            max_keep_alive: None,
        }
    }
}

/// What the broker must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A valid CONNECT arrived. Answer with [`ServerConnection::accept`] or
    /// [`ServerConnection::refuse`]. (Protocol-level refusals, e.g. level 5, are answered by the
    /// machine itself and surface as [`ServerEvent::Closed`].)
    Connect(Box<Connect>),
    /// An application message to route. For QoS 2 this comes once per packet id: a re-sent
    /// PUBLISH before PUBREL is acknowledged but not surfaced again. Acks are sent by the machine.
    Publish(Publish),
    /// A SUBSCRIBE; answer with [`ServerConnection::suback`].
    Subscribe(Subscribe),
    /// An UNSUBSCRIBE; answer with [`ServerConnection::unsuback`].
    Unsubscribe(Unsubscribe),
    /// A message this connection sent was fully acknowledged (PUBACK, or PUBCOMP for QoS 2).
    Delivered(PacketId),
    /// DISCONNECT received: the will must be discarded ([MQTT-3.1.2-10]); the connection closes.
    Disconnect,
    /// The connection must close without DISCONNECT (the will is published).
    Closed(CloseReason),
}

/// Why a server connection closed without DISCONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer violated the protocol.
    Protocol(ProtocolError),
    /// No CONNECT within the connect timeout.
    ConnectTimeout,
    /// Nothing received for 1.5 × keep-alive (+ grace) ([MQTT-3.1.2-24]).
    KeepAliveTimeout,
}

/// The broker's side of one connection. See the module docs for how to drive it.
#[derive(Debug)]
pub struct ServerConnection {
    config: ServerConfig,
}

impl ServerConnection {
    /// A connection that has just been accepted at `now`; it waits for CONNECT.
    pub fn new(config: ServerConfig, now: Instant) -> ServerConnection {
        let _ = now;
        ServerConnection { config }
    }

    /// Feeds bytes read from the socket; decodes every complete packet in `buf`.
    /// An `Err` means the connection must close (also reported as [`ServerEvent::Closed`]).
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        let _ = (now, buf, &self.config);
        todo!()
    }

    /// Advances timers; a no-op if nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Accepts the CONNECT: queues CONNACK 0 with `session_present`, then resumes `session`
    /// (retransmits unacknowledged PUBLISH with DUP and PUBRELs, then sends queued messages).
    pub fn accept(&mut self, now: Instant, session: Session, session_present: bool) {
        let _ = (now, session, session_present);
        todo!()
    }

    /// Refuses the CONNECT with `code` (non-zero): queues the CONNACK and closes.
    pub fn refuse(&mut self, code: ConnectReturnCode) {
        let _ = code;
        todo!()
    }

    /// Delivers a message to this client: QoS 0 is written at once; QoS 1/2 get a packet id
    /// and go out within the in-flight window, or wait in the session queue behind it. Returns
    /// the message dropped to make room, if a queue bound was hit.
    pub fn publish(&mut self, now: Instant, message: Message) -> Option<Message> {
        let _ = (now, message);
        todo!()
    }

    /// Answers a SUBSCRIBE.
    pub fn suback(&mut self, packet_id: PacketId, return_codes: Vec<SubAckReturnCode>) {
        let _ = (packet_id, return_codes);
        todo!()
    }

    /// Answers an UNSUBSCRIBE.
    pub fn unsuback(&mut self, packet_id: PacketId) {
        let _ = packet_id;
        todo!()
    }

    /// Closes the connection from the server side (shutdown, takeover). Nothing more is read.
    pub fn close(&mut self) {
        todo!()
    }

    /// Moves the bytes to send into `out`. Returns whether anything was added.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut OutBuf) -> bool {
        let _ = out;
        todo!()
    }

    /// The next event for the broker, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        todo!()
    }

    /// The next deadline at which [`ServerConnection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Whether the connection is closed: flush what was transmitted, then close the socket.
    pub fn is_closed(&self) -> bool {
        todo!()
    }

    /// The session this connection drove, to be kept (clean session 0) or dropped.
    pub fn into_session(self) -> Session {
        todo!()
    }
}
