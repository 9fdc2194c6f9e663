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
//!
//! The life of a connection:
//!
//! 1. [`ServerConnection::new`] waits for CONNECT; without one within
//!    [`ServerConfig::connect_timeout`] it emits [`ServerEvent::Closed`] with
//!    [`CloseReason::ConnectTimeout`]. Any other first packet closes it ([MQTT-3.1.0-1]).
//! 2. A CONNECT the machine can judge alone is answered by it: an unacceptable protocol level
//!    gets CONNACK 0x01 and an empty client id with clean session 0 gets CONNACK 0x02
//!    ([MQTT-3.1.3-8]), both followed by [`ServerEvent::Closed`]. Otherwise
//!    [`ServerEvent::Connect`] asks the broker to [`ServerConnection::accept`] or
//!    [`ServerConnection::refuse`]. Packets that arrive meanwhile are held, unprocessed
//!    ([MQTT-3.1.4-5]); `accept` processes them. (If more than
//!    [`ServerConfig::max_connect_packet_size`] bytes of them arrive, `handle_read` stops decoding
//!    and leaves the rest in the caller's buffer: call `handle_read` again after `accept`.)
//! 3. Once accepted, the decoder's limit is [`ServerConfig::max_packet_size`]; the flows of
//!    section 4.3 run until DISCONNECT ([`ServerEvent::Disconnect`]), a protocol violation or
//!    keep-alive expiry ([`ServerEvent::Closed`]), or [`ServerConnection::close`].
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use mqtt_codec::OutBuf;
//! use mqtt_codec::server::{ServerConfig, ServerConnection, ServerEvent};
//!
//! let now = Instant::now();
//! let mut conn = ServerConnection::new(ServerConfig::default(), now);
//! // A PINGREQ before CONNECT breaks [MQTT-3.1.0-1].
//! let mut read = BytesMut::from(&[0xc0u8, 0x00][..]);
//! assert!(conn.handle_read(now, &mut read).is_err());
//! assert!(matches!(conn.poll_event(), Some(ServerEvent::Closed(_))));
//! let mut out = OutBuf::new();
//! assert!(!conn.poll_transmit(&mut out));
//! assert!(conn.is_closed());
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::error::{DecodeError, ProtocolError};
use crate::outbuf::OutBuf;
use crate::packet::{
    ConnAck, Connect, Decoder, Packet, Publish, SubAck, SubAckReturnCode, Subscribe, Unsubscribe,
    DEFAULT_MAX_PACKET_SIZE,
};
use crate::session::{Flows, Message, Sent, Session, Tx};
use crate::types::{ConnectReturnCode, PacketId, QosPid};

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
    /// A packet was decoded (every packet, including the acks and pings the machine answers
    /// itself), reported before the event it leads to. Only with
    /// [`ServerConnection::set_packet_trace`] on.
    PacketReceived(Packet),
    /// A packet was encoded into the output by [`ServerConnection::poll_transmit`] (every
    /// packet: CONNACK, PUBLISH, the acks, SUBACK, UNSUBACK, PINGRESP), in the order written.
    /// Only with [`ServerConnection::set_packet_trace`] on.
    PacketSent(Packet),
}

/// Running totals of the packets a [`ServerConnection`] decoded and encoded, for metrics; read
/// with [`ServerConnection::packet_counts`]. Counting is a few integer additions per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounts {
    /// Packets decoded (all types).
    pub received: u64,
    /// PUBLISH packets decoded.
    pub publish_received: u64,
    /// Packets encoded into the output (all types).
    pub sent: u64,
    /// PUBLISH packets encoded into the output.
    pub publish_sent: u64,
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
    /// Shared by every connection of a broker (a broker holds many idle connections).
    config: Arc<ServerConfig>,
    decoder: Decoder,
    state: State,
    flows: Flows,
    events: VecDeque<ServerEvent>,
    /// Packets that arrived after CONNECT, before the broker's decision ([MQTT-3.1.4-5]);
    /// boxed, and only while there are some: every connection is smaller by it.
    held: Option<Box<Held>>,
    /// When the connection was opened (connect timeout) or, after CONNECT, when the last packet
    /// arrived (keep-alive).
    last_received: Instant,
    /// 1.5 × keep-alive + grace once CONNECT arrived; `None` = no keep-alive deadline.
    keep_alive_window: Option<Duration>,
    /// Packets decoded and encoded so far.
    counts: PacketCounts,
    /// Whether packets are reported as [`ServerEvent::PacketReceived`] / [`ServerEvent::PacketSent`].
    trace: bool,
}

/// Packets held before the broker's decision on CONNECT, with their encoded size.
#[derive(Debug, Default)]
struct Held {
    packets: VecDeque<Packet>,
    bytes: usize,
}

/// Where a [`ServerConnection`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for CONNECT.
    AwaitingConnect,
    /// CONNECT surfaced; waiting for `accept` or `refuse`.
    AwaitingDecision,
    /// CONNACK 0 queued; the flows run.
    Connected,
    /// Nothing more is read.
    Closed,
}

impl ServerConnection {
    /// A connection that has just been accepted at `now`; it waits for CONNECT. A broker passes
    /// one `Arc<ServerConfig>` to all its connections; a `ServerConfig` is accepted too.
    pub fn new(config: impl Into<Arc<ServerConfig>>, now: Instant) -> ServerConnection {
        let config = config.into();
        ServerConnection {
            decoder: Decoder::new(config.max_connect_packet_size),
            config,
            state: State::AwaitingConnect,
            flows: Flows::default(),
            events: VecDeque::new(),
            held: None,
            last_received: now,
            keep_alive_window: None,
            counts: PacketCounts::default(),
            trace: false,
        }
    }

    /// Turns packet tracing on or off (off by default). While on, [`ServerConnection::poll_event`]
    /// also yields [`ServerEvent::PacketReceived`] for every packet decoded and
    /// [`ServerEvent::PacketSent`] for every packet [`ServerConnection::poll_transmit`] encodes;
    /// a driver that traces calls `poll_event` again after `poll_transmit`. While off, the
    /// packets are neither cloned nor kept: tracing costs nothing.
    pub fn set_packet_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// Feeds bytes read from the socket; decodes every complete packet in `buf` (a partial packet
    /// stays in `buf` for the next call).
    /// An `Err` means the connection must close (also reported as [`ServerEvent::Closed`]).
    ///
    /// Bytes fed after the connection closed are ignored and left in `buf`.
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        loop {
            match self.state {
                State::Closed => return Ok(()),
                State::AwaitingDecision
                    if self.held_bytes() >= self.config.max_connect_packet_size =>
                {
                    return Ok(())
                }
                _ => {}
            }
            let before = buf.len();
            let packet = match self.decoder.decode(buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(error) => return Err(self.decode_failed(error)),
            };
            // [MQTT-3.1.2-24]: any control packet resets the keep-alive timer.
            self.last_received = now;
            self.counts.received += 1;
            if let Packet::Publish(_) = packet {
                self.counts.publish_received += 1;
            }
            if self.trace {
                self.events
                    .push_back(ServerEvent::PacketReceived(packet.clone()));
            }
            if self.state == State::AwaitingDecision {
                let held = self.held.get_or_insert_with(Box::default);
                held.bytes += before - buf.len();
                held.packets.push_back(packet);
                continue;
            }
            self.handle_packet(packet)?;
        }
    }

    /// Advances timers; a no-op if nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        let reason = match self.state {
            State::AwaitingConnect => CloseReason::ConnectTimeout,
            _ => CloseReason::KeepAliveTimeout,
        };
        self.close_with(reason);
    }

    /// Accepts the CONNECT: queues CONNACK 0 with `session_present`, then resumes `session`
    /// (retransmits unacknowledged PUBLISH with DUP and PUBRELs, in their original order, then
    /// sends queued messages), then processes the packets that arrived after CONNECT.
    ///
    /// Ignored unless a [`ServerEvent::Connect`] is awaiting an answer. Messages the broker
    /// queued with [`ServerConnection::publish`] before accepting are moved behind `session`'s
    /// queue.
    pub fn accept(&mut self, now: Instant, session: Session, session_present: bool) {
        if self.state != State::AwaitingDecision {
            return;
        }
        let _ = now;
        let early = std::mem::replace(&mut self.flows.session, session);
        for message in early.queued_messages() {
            let _ = self.flows.session.enqueue(message.clone());
        }
        self.state = State::Connected;
        self.decoder
            .set_max_packet_size(self.config.max_packet_size);
        // [MQTT-3.1.4-4], [MQTT-3.2.2-1..3]: the broker decides session_present.
        self.flows.push(Tx::ConnAck(ConnAck {
            session_present,
            return_code: ConnectReturnCode::Accepted,
        }));
        self.flows.resume();
        let held = self
            .held
            .take()
            .map(|held| held.packets)
            .unwrap_or_default();
        for packet in held {
            if self.state != State::Connected || self.handle_packet(packet).is_err() {
                break;
            }
        }
    }

    /// Refuses the CONNECT with `code` (non-zero): queues the CONNACK and closes. The packets
    /// that followed CONNECT are discarded unprocessed ([MQTT-3.1.4-5]); no event follows.
    /// [`ConnectReturnCode::Accepted`] is not a refusal and is sent as
    /// [`ConnectReturnCode::NotAuthorized`].
    ///
    /// Ignored unless a [`ServerEvent::Connect`] is awaiting an answer.
    pub fn refuse(&mut self, code: ConnectReturnCode) {
        if self.state != State::AwaitingDecision {
            return;
        }
        let return_code = match code {
            ConnectReturnCode::Accepted => ConnectReturnCode::NotAuthorized,
            code => code,
        };
        // [MQTT-3.2.2-4] session present 0 with a non-zero code; [MQTT-3.2.2-5] then close.
        self.flows.push(Tx::ConnAck(ConnAck {
            session_present: false,
            return_code,
        }));
        self.shut();
    }

    /// Delivers a message to this client: QoS 0 is written at once; QoS 1/2 get a packet id
    /// and go out within the in-flight window, or wait in the session queue behind it. Returns
    /// the message dropped to make room, if a queue bound was hit (see [`Session::enqueue`]).
    ///
    /// Before [`ServerConnection::accept`] or after the connection closed, QoS 1/2 messages are
    /// queued in the session and QoS 0 messages are returned (dropped).
    pub fn publish(&mut self, now: Instant, message: Message) -> Option<Message> {
        let _ = now;
        if self.state != State::Connected {
            return self.flows.session.enqueue(message);
        }
        self.flows
            .publish(message, 0, true)
            .map(|queued| queued.message)
    }

    /// How many QoS 1/2 messages [`ServerConnection::publish`] would put in flight right now
    /// without queueing them: the free slots of the in-flight window while nothing is queued
    /// behind it, 0 while something is (or while not connected). A broker that keeps its own
    /// bounded queue in front of the session hands over only this many, so the session's queue
    /// stays empty and the broker sees the whole backlog.
    #[must_use]
    pub fn publish_room(&self) -> usize {
        if self.state != State::Connected {
            return 0;
        }
        self.flows.session.window_room()
    }

    /// Answers a SUBSCRIBE ([MQTT-3.8.4-1]: one return code per filter, in order). Ignored
    /// unless connected.
    pub fn suback(&mut self, packet_id: PacketId, return_codes: Vec<SubAckReturnCode>) {
        if self.state == State::Connected {
            self.flows.push(Tx::SubAck(SubAck {
                packet_id,
                return_codes,
            }));
        }
    }

    /// Answers an UNSUBSCRIBE. Ignored unless connected.
    pub fn unsuback(&mut self, packet_id: PacketId) {
        if self.state == State::Connected {
            self.flows.push(Tx::UnsubAck(packet_id));
        }
    }

    /// Closes the connection from the server side (shutdown, takeover). Nothing more is read
    /// and no event follows; packets already queued can still be flushed with
    /// [`ServerConnection::poll_transmit`].
    pub fn close(&mut self) {
        self.shut();
    }

    /// Withdraws the acknowledgement queued for a PUBLISH just surfaced as
    /// [`ServerEvent::Publish`] that the application refuses and closes the connection for
    /// (e.g. a topic beyond the broker's limits): the client must not believe a message
    /// nobody will receive was accepted. Call it before the next [`poll_transmit`]; after
    /// that the acknowledgement is on its way and this is a no-op.
    ///
    /// [`poll_transmit`]: ServerConnection::poll_transmit
    pub fn withdraw_ack(&mut self, qos_pid: QosPid) {
        self.flows.withdraw_ack(qos_pid);
    }

    /// Moves the bytes to send into `out`. Returns whether anything was added.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut OutBuf) -> bool {
        let before = out.len();
        while let Some((sent, packet)) = self.flows.transmit_one(out) {
            debug_assert_ne!(sent, Sent::Disconnect, "the server never sends DISCONNECT");
            let Some(packet) = packet else { continue };
            self.counts.sent += 1;
            if let Packet::Publish(_) = packet {
                self.counts.publish_sent += 1;
            }
            if self.trace {
                self.events.push_back(ServerEvent::PacketSent(packet));
            }
        }
        out.len() > before
    }

    /// How many packets this connection decoded and encoded so far (since the last
    /// [`ServerConnection::take_packet_counts`], if any).
    pub fn packet_counts(&self) -> PacketCounts {
        self.counts
    }

    /// The packet counts since the last call (or since the start), resetting them: a driver
    /// adding them to its metrics keeps no copy of its own.
    pub fn take_packet_counts(&mut self) -> PacketCounts {
        std::mem::take(&mut self.counts)
    }

    /// The next event for the broker, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            // An idle connection holds no event-queue allocation.
            self.events = VecDeque::new();
        }
        event
    }

    /// The next deadline at which [`ServerConnection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingConnect => self.last_received.checked_add(self.config.connect_timeout),
            State::AwaitingDecision | State::Connected => self
                .keep_alive_window
                .and_then(|window| self.last_received.checked_add(window)),
            State::Closed => None,
        }
    }

    /// Whether the connection is closed: flush what was transmitted, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the machine consumes more bytes now: `false` once closed, and while a CONNECT
    /// awaits the broker's decision with [`ServerConfig::max_connect_packet_size`] bytes of
    /// later packets held already. A driver stops reading the socket while this is `false`, so
    /// its read buffer stays bounded, and feeds what it buffered again after
    /// [`ServerConnection::accept`].
    pub fn wants_read(&self) -> bool {
        match self.state {
            State::AwaitingConnect | State::Connected => true,
            State::AwaitingDecision => self.held_bytes() < self.config.max_connect_packet_size,
            State::Closed => false,
        }
    }

    /// Whether CONNECT was accepted and the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The session this connection drives (in-flight and queued counts, for metrics).
    pub fn session(&self) -> &Session {
        &self.flows.session
    }

    /// The session this connection drove, to be kept (clean session 0) or dropped.
    ///
    /// QoS 0 messages not yet transmitted are dropped; QoS 1/2 state stays in the session and is
    /// retransmitted by the next connection that resumes it.
    pub fn into_session(self) -> Session {
        self.flows.session
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), ProtocolError> {
        match self.state {
            State::AwaitingConnect => match packet {
                Packet::Connect(connect) => self.on_connect(connect),
                _ => Err(self.fail(ProtocolError::FirstPacketNotConnect)),
            },
            State::Connected => self.on_packet(packet),
            State::AwaitingDecision | State::Closed => Ok(()),
        }
    }

    fn on_connect(&mut self, connect: Box<Connect>) -> Result<(), ProtocolError> {
        if connect.client_id.is_empty() && !connect.clean_session {
            // [MQTT-3.1.3-8]: CONNACK 0x02, then close.
            return Err(self.refuse_with(ConnectReturnCode::IdentifierRejected));
        }
        self.keep_alive_window = self.keep_alive_window_for(connect.keep_alive.0);
        self.state = State::AwaitingDecision;
        self.events.push_back(ServerEvent::Connect(connect));
        Ok(())
    }

    /// 1.5 × the client's keep-alive (capped by `max_keep_alive`) plus the grace.
    fn keep_alive_window_for(&self, requested: u16) -> Option<Duration> {
        let secs = match self.config.max_keep_alive {
            Some(max) if max > 0 && (requested == 0 || requested > max) => max,
            _ => requested,
        };
        // [MQTT-3.1.2-24]: keep-alive 0 means no deadline.
        (secs > 0).then(|| {
            Duration::from_millis(u64::from(secs) * 1500)
                .saturating_add(self.config.keep_alive_grace)
        })
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), ProtocolError> {
        match packet {
            Packet::Connect(_) => Err(self.fail(ProtocolError::SecondConnect)),
            Packet::Publish(publish) => match self.flows.on_publish(publish) {
                Ok(Some(publish)) => {
                    self.events.push_back(ServerEvent::Publish(publish));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(self.fail(error)),
            },
            Packet::PubAck(id) => {
                let delivered = self.flows.on_puback(id).map_err(|e| self.fail(e))?;
                if delivered.is_some() {
                    self.events.push_back(ServerEvent::Delivered(id));
                }
                Ok(())
            }
            Packet::PubRec(id) => self.flows.on_pubrec(id).map_err(|e| self.fail(e)),
            Packet::PubRel(id) => {
                self.flows.on_pubrel(id);
                Ok(())
            }
            Packet::PubComp(id) => {
                let delivered = self.flows.on_pubcomp(id).map_err(|e| self.fail(e))?;
                if delivered.is_some() {
                    self.events.push_back(ServerEvent::Delivered(id));
                }
                Ok(())
            }
            Packet::Subscribe(subscribe) => {
                self.events.push_back(ServerEvent::Subscribe(subscribe));
                Ok(())
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.events.push_back(ServerEvent::Unsubscribe(unsubscribe));
                Ok(())
            }
            Packet::PingReq => {
                // [MQTT-3.12.4-1]
                self.flows.push(Tx::PingResp);
                Ok(())
            }
            Packet::Disconnect => {
                // [MQTT-3.14.4-1], [MQTT-3.1.2-10]: close, discard the will.
                self.shut();
                self.events.push_back(ServerEvent::Disconnect);
                Ok(())
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                let name = packet.name();
                Err(self.fail(ProtocolError::UnexpectedPacket(name)))
            }
        }
    }

    /// A decode error: CONNACK 0x01 first if it was an unacceptable protocol level in CONNECT.
    fn decode_failed(&mut self, error: DecodeError) -> ProtocolError {
        if self.state == State::AwaitingConnect {
            if let Some(code) = connack_code_for(&error) {
                return self.refuse_with(code);
            }
        }
        self.fail(ProtocolError::Decode(error))
    }

    /// Queues a refusing CONNACK decided by the machine itself, closes, and reports it.
    fn refuse_with(&mut self, code: ConnectReturnCode) -> ProtocolError {
        self.flows.push(Tx::ConnAck(ConnAck {
            session_present: false,
            return_code: code,
        }));
        self.fail(ProtocolError::Refused(code))
    }

    /// Closes because of a protocol violation and reports it.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        self.close_with(CloseReason::Protocol(error.clone()));
        error
    }

    fn close_with(&mut self, reason: CloseReason) {
        self.shut();
        self.events.push_back(ServerEvent::Closed(reason));
    }

    fn shut(&mut self) {
        self.state = State::Closed;
        self.held = None;
    }

    /// Encoded size of the packets held before the decision on CONNECT.
    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.bytes)
    }
}

/// The CONNACK return code a CONNECT decode error must be answered with before closing, if any
/// ([MQTT-3.1.2-2]: an unsupported protocol level gets 0x01). Every other malformed CONNECT is
/// closed without CONNACK ([MQTT-3.1.4-1]).
fn connack_code_for(error: &DecodeError) -> Option<ConnectReturnCode> {
    error.connack_return_code()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::packet::Publish;
    use crate::topic::TopicName;
    use crate::types::{KeepAlive, Protocol, QoS, QosPid};

    fn bytes_of(packets: &[Packet]) -> BytesMut {
        let mut out = BytesMut::new();
        for packet in packets {
            packet.encode(&mut out).expect("encodable");
        }
        out
    }

    fn connect(client_id: &str) -> Packet {
        Packet::Connect(Box::new(Connect {
            protocol: Protocol::V311,
            keep_alive: KeepAlive(0),
            client_id: client_id.to_owned(),
            clean_session: true,
            will: None,
            username: None,
            password: None,
        }))
    }

    fn message(qos: QoS, payload: &'static str) -> Message {
        Message::new(
            TopicName::new("t").expect("valid"),
            Bytes::from_static(payload.as_bytes()),
            qos,
            false,
        )
    }

    fn accepted(now: Instant) -> ServerConnection {
        let mut conn = ServerConnection::new(ServerConfig::default(), now);
        conn.handle_read(now, &mut bytes_of(&[connect("c")]))
            .expect("valid");
        assert!(matches!(conn.poll_event(), Some(ServerEvent::Connect(_))));
        conn.accept(now, Session::default(), false);
        conn
    }

    fn drain(conn: &mut ServerConnection) -> usize {
        let mut out = OutBuf::new();
        let _ = conn.poll_transmit(&mut out);
        out.len()
    }

    #[test]
    fn an_idle_connection_is_small_and_holds_no_heap_buffers() {
        assert!(std::mem::size_of::<ServerConnection>() <= 400);
        let now = Instant::now();
        let mut conn = accepted(now);
        conn.publish(now, message(QoS::AtLeastOnce, "x"));
        assert!(drain(&mut conn) > 0);
        let puback = Packet::PubAck(PacketId::new(1).expect("non-zero"));
        conn.handle_read(now, &mut bytes_of(&[puback]))
            .expect("valid");
        assert_eq!(
            conn.poll_event(),
            Some(ServerEvent::Delivered(PacketId::new(1).expect("non-zero")))
        );
        assert_eq!(conn.poll_event(), None);
        assert_eq!(drain(&mut conn), 0);
        assert_eq!(conn.events.capacity(), 0);
        assert_eq!(conn.flows.tx_capacity(), 0);
        assert!(conn.held.is_none());
        assert!(conn.session().is_empty());
    }

    #[test]
    fn accept_and_refuse_are_ignored_without_a_pending_connect() {
        let now = Instant::now();
        let mut conn = ServerConnection::new(ServerConfig::default(), now);
        conn.accept(now, Session::default(), true);
        conn.refuse(ConnectReturnCode::NotAuthorized);
        assert!(!conn.is_connected());
        assert!(!conn.is_closed());
        assert_eq!(drain(&mut conn), 0);
    }

    #[test]
    fn messages_published_before_accept_are_kept_for_the_accepted_session() {
        let now = Instant::now();
        let mut conn = ServerConnection::new(ServerConfig::default(), now);
        conn.handle_read(now, &mut bytes_of(&[connect("c")]))
            .expect("valid");
        assert_eq!(
            conn.publish(now, message(QoS::AtMostOnce, "dropped")),
            Some(message(QoS::AtMostOnce, "dropped"))
        );
        assert_eq!(conn.publish(now, message(QoS::AtLeastOnce, "kept")), None);
        conn.accept(now, Session::default(), false);
        assert_eq!(conn.session().inflight_len(), 1);
    }

    #[test]
    fn a_closed_connection_leaves_further_bytes_unread() {
        let now = Instant::now();
        let mut conn = accepted(now);
        conn.close();
        let mut buf = bytes_of(&[Packet::PingReq]);
        assert_eq!(conn.handle_read(now, &mut buf), Ok(()));
        assert_eq!(buf.len(), 2);
        assert_eq!(conn.poll_event(), None);
        assert_eq!(conn.poll_timeout(), None);
    }

    #[test]
    fn packets_held_before_the_decision_are_bounded_by_the_connect_cap() {
        let now = Instant::now();
        let config = ServerConfig {
            max_connect_packet_size: 40,
            ..ServerConfig::default()
        };
        let mut conn = ServerConnection::new(config, now);
        let publish = |n: u16| {
            Packet::Publish(Publish {
                dup: false,
                qos_pid: QosPid::AtLeastOnce(PacketId::new(n).expect("non-zero")),
                retain: false,
                topic: TopicName::new("t").expect("valid"),
                payload: Bytes::from_static(b"0123456789"),
            })
        };
        let mut buf = bytes_of(&[connect("c"), publish(1), publish(2), publish(3), publish(4)]);
        conn.handle_read(now, &mut buf).expect("valid");
        // Each PUBLISH is 17 bytes: three are held (51 >= 40), the fourth stays in the buffer.
        assert_eq!(conn.held.as_ref().map(|held| held.packets.len()), Some(3));
        assert_eq!(buf.len(), 17);
        assert!(!conn.wants_read());
        let _ = conn.poll_event();
        conn.accept(now, Session::default(), false);
        assert!(conn.wants_read());
        conn.handle_read(now, &mut buf).expect("valid");
        let publishes = std::iter::from_fn(|| conn.poll_event())
            .filter(|e| matches!(e, ServerEvent::Publish(_)))
            .count();
        assert_eq!(publishes, 4);
    }

    fn traced(conn: &mut ServerConnection) -> Vec<ServerEvent> {
        let mut events: Vec<ServerEvent> = std::iter::from_fn(|| conn.poll_event()).collect();
        let _ = drain(conn);
        events.extend(std::iter::from_fn(|| conn.poll_event()));
        events
    }

    fn qos1_publish(id: u16) -> Publish {
        Publish {
            dup: false,
            qos_pid: QosPid::AtLeastOnce(PacketId::new(id).expect("non-zero")),
            retain: false,
            topic: TopicName::new("t").expect("valid"),
            payload: Bytes::from_static(b"p"),
        }
    }

    #[test]
    fn packet_trace_reports_every_packet_received_and_sent_in_order() {
        let now = Instant::now();
        let mut conn = ServerConnection::new(ServerConfig::default(), now);
        conn.set_packet_trace(true);
        conn.handle_read(now, &mut bytes_of(&[connect("c")]))
            .expect("valid");
        let events = traced(&mut conn);
        assert!(matches!(
            &events[..],
            [
                ServerEvent::PacketReceived(Packet::Connect(_)),
                ServerEvent::Connect(_)
            ]
        ));
        conn.accept(now, Session::default(), false);
        let id = PacketId::new(1).expect("non-zero");
        conn.handle_read(
            now,
            &mut bytes_of(&[
                Packet::Publish(qos1_publish(1)),
                Packet::PingReq,
                Packet::PubRel(id),
            ]),
        )
        .expect("valid");
        let events = traced(&mut conn);
        assert_eq!(
            events,
            vec![
                ServerEvent::PacketReceived(Packet::Publish(qos1_publish(1))),
                ServerEvent::Publish(qos1_publish(1)),
                ServerEvent::PacketReceived(Packet::PingReq),
                ServerEvent::PacketReceived(Packet::PubRel(id)),
                ServerEvent::PacketSent(Packet::ConnAck(ConnAck {
                    session_present: false,
                    return_code: ConnectReturnCode::Accepted,
                })),
                ServerEvent::PacketSent(Packet::PubAck(id)),
                ServerEvent::PacketSent(Packet::PingResp),
                ServerEvent::PacketSent(Packet::PubComp(id)),
            ]
        );
    }

    #[test]
    fn a_withdrawn_ack_is_never_sent_while_the_acks_around_it_are() {
        let now = Instant::now();
        let mut conn = ServerConnection::new(ServerConfig::default(), now);
        conn.set_packet_trace(true);
        conn.handle_read(now, &mut bytes_of(&[connect("c")]))
            .expect("valid");
        conn.accept(now, Session::default(), false);
        let one = PacketId::new(1).expect("non-zero");
        let two = PacketId::new(2).expect("non-zero");
        conn.handle_read(
            now,
            &mut bytes_of(&[
                Packet::Publish(qos1_publish(1)),
                Packet::Publish(qos1_publish(2)),
            ]),
        )
        .expect("valid");
        // The application refuses the second PUBLISH and closes.
        conn.withdraw_ack(QosPid::AtLeastOnce(two));
        conn.close();
        let sent: Vec<Packet> = traced(&mut conn)
            .into_iter()
            .filter_map(|e| match e {
                ServerEvent::PacketSent(p) => Some(p),
                _ => None,
            })
            .collect();
        assert!(sent.contains(&Packet::PubAck(one)), "{sent:?}");
        assert!(!sent.contains(&Packet::PubAck(two)), "{sent:?}");
    }

    #[test]
    fn packet_trace_reports_the_refusing_connack_the_machine_sends_itself_mqtt_3_1_3_8() {
        let now = Instant::now();
        let mut conn = ServerConnection::new(ServerConfig::default(), now);
        conn.set_packet_trace(true);
        let mut bad = bytes_of(&[connect("")]);
        // Clean session 0 with an empty client id: flip the clean-session flag off.
        let flags = bad.iter().position(|&b| b == 0x02).expect("connect flags");
        bad[flags] = 0x00;
        assert!(conn.handle_read(now, &mut bad).is_err());
        let events = traced(&mut conn);
        assert!(matches!(
            events.last(),
            Some(ServerEvent::PacketSent(Packet::ConnAck(ConnAck {
                return_code: ConnectReturnCode::IdentifierRejected,
                ..
            })))
        ));
    }

    #[test]
    fn without_packet_trace_no_packet_events_appear_but_packets_are_counted() {
        let now = Instant::now();
        let mut conn = accepted(now);
        conn.handle_read(
            now,
            &mut bytes_of(&[Packet::Publish(qos1_publish(1)), Packet::PingReq]),
        )
        .expect("valid");
        conn.publish(now, message(QoS::AtMostOnce, "out"));
        let events = traced(&mut conn);
        assert_eq!(events, vec![ServerEvent::Publish(qos1_publish(1))]);
        // CONNECT, PUBLISH, PINGREQ in; CONNACK, PUBACK, PINGRESP, PUBLISH out.
        let counts = PacketCounts {
            received: 3,
            publish_received: 1,
            sent: 4,
            publish_sent: 1,
        };
        assert_eq!(conn.packet_counts(), counts);
        assert_eq!(conn.take_packet_counts(), counts);
        assert_eq!(conn.packet_counts(), PacketCounts::default());
    }

    #[test]
    fn disconnect_closes_without_a_closed_event_mqtt_3_1_2_10() {
        let now = Instant::now();
        let mut conn = accepted(now);
        conn.handle_read(now, &mut bytes_of(&[Packet::Disconnect]))
            .expect("valid");
        assert_eq!(conn.poll_event(), Some(ServerEvent::Disconnect));
        assert_eq!(conn.poll_event(), None);
        assert!(conn.is_closed());
    }
}
