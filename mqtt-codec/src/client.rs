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
//!
//! Application packets wait until CONNACK accepts the connection; then, in this order, the
//! session's requests in flight go out again (PUBLISH with DUP 1 if they were sent before,
//! PUBREL, SUBSCRIBE, UNSUBSCRIBE, in their original order, [MQTT-4.4.0-1]), then queued
//! messages fill the window. When CONNACK says session present 0, the server has forgotten the
//! session: PUBLISHes in flight are sent again as new messages (DUP 0), QoS 2 messages whose
//! PUBREC had arrived are complete (the server owned them) and reported as
//! [`ClientEvent::Published`], pending SUBSCRIBE/UNSUBSCRIBE are sent again, and the incoming
//! QoS 2 ids are forgotten. Re-subscribing what the old session held is the application's call.
//!
//! Requests made while the connection is closed (or before CONNACK) wait in the [`Session`]:
//! [`ClientConnection::into_session`] hands them to the next connection, and [`Ticket`]s stay
//! valid across it.
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use mqtt_codec::OutBuf;
//! use mqtt_codec::client::{ClientConnection, ClientEvent, ConnectOptions};
//! use mqtt_codec::session::Session;
//!
//! let now = Instant::now();
//! let mut conn = ClientConnection::new(ConnectOptions::new("sensor-1"), Session::default(), now);
//! let mut out = OutBuf::new();
//! assert!(conn.poll_transmit(&mut out)); // CONNECT
//! // The server accepts: CONNACK, session present 0, return code 0.
//! let mut read = BytesMut::from(&[0x20u8, 0x02, 0x00, 0x00][..]);
//! conn.handle_read(now, &mut read).unwrap();
//! assert_eq!(conn.poll_event(), Some(ClientEvent::Connected { session_present: false }));
//! assert!(conn.is_connected());
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::outbuf::OutBuf;
use crate::packet::{
    Connect, Decoder, LastWill, Packet, Publish, SubAckReturnCode, DEFAULT_MAX_PACKET_SIZE,
};
use crate::session::{Flows, Message, Queued, Request, Sent, Session, Tx};
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

    /// Sets the protocol version.
    pub fn protocol(mut self, protocol: Protocol) -> ConnectOptions {
        self.protocol = protocol;
        self
    }

    /// Sets the keep-alive interval (0 turns keep-alive off).
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> ConnectOptions {
        self.keep_alive = keep_alive;
        self
    }

    /// Sets the clean session flag.
    pub fn clean_session(mut self, clean_session: bool) -> ConnectOptions {
        self.clean_session = clean_session;
        self
    }

    /// Sets the will message.
    pub fn will(mut self, will: LastWill) -> ConnectOptions {
        self.will = Some(will);
        self
    }

    /// Sets the user name and, optionally, the password.
    pub fn credentials(
        mut self,
        username: impl Into<String>,
        password: Option<Bytes>,
    ) -> ConnectOptions {
        self.username = Some(username.into());
        self.password = password;
        self
    }

    /// Sets how long to wait for CONNACK and PINGRESP.
    pub fn response_timeout(mut self, response_timeout: Duration) -> ConnectOptions {
        self.response_timeout = response_timeout;
        self
    }

    /// Sets the largest packet accepted from the server.
    pub fn max_packet_size(mut self, max_packet_size: usize) -> ConnectOptions {
        self.max_packet_size = max_packet_size;
        self
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
    /// CONNACK refused; the connection is closed (no [`ClientEvent::Closed`] follows).
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
    decoder: Decoder,
    state: State,
    flows: Flows,
    events: VecDeque<ClientEvent>,
    /// The latest `now` an input brought; what `poll_transmit` records as the send time.
    now: Instant,
    /// When the client last handed bytes to the transport (keep-alive, [MQTT-3.1.2-23]).
    last_sent: Instant,
    /// When CONNACK or the PINGRESP of an outstanding PINGREQ must have arrived.
    response_deadline: Option<Instant>,
    /// Whether CONNACK arrived (DISCONNECT may be queued before it does).
    connack_received: bool,
}

/// Where a [`ClientConnection`] is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// CONNECT queued or sent; waiting for CONNACK.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// DISCONNECT queued; closes once it is transmitted.
    Disconnecting,
    /// Closed: refused, lost, timed out or disconnected.
    Closed,
}

impl ClientConnection {
    /// A new connection at `now` resuming `session`; CONNECT is queued for transmission.
    /// CONNACK must arrive within [`ConnectOptions::response_timeout`].
    pub fn new(options: ConnectOptions, session: Session, now: Instant) -> ClientConnection {
        let mut flows = Flows::new(session);
        flows.push(Tx::Connect(Box::new(Connect {
            protocol: options.protocol,
            keep_alive: options.keep_alive,
            client_id: options.client_id.clone(),
            clean_session: options.clean_session,
            will: options.will.clone(),
            username: options.username.clone(),
            password: options.password.clone(),
        })));
        ClientConnection {
            decoder: Decoder::new(options.max_packet_size),
            response_deadline: now.checked_add(options.response_timeout),
            options,
            state: State::Connecting,
            flows,
            events: VecDeque::new(),
            now,
            last_sent: now,
            connack_received: false,
        }
    }

    /// Feeds bytes read from the socket; decodes every complete packet in `buf`. An `Err` means
    /// the connection must close (also reported as [`ClientEvent::Closed`]).
    pub fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        self.now = now;
        while self.state != State::Closed {
            let packet = match self.decoder.decode(buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(error) => return Err(self.fail(ProtocolError::Decode(error))),
            };
            self.handle_packet(packet)?;
        }
        Ok(())
    }

    /// Advances timers; a no-op if nothing is due. Sends PINGREQ after the keep-alive interval
    /// without sending anything; closes with [`ClientCloseReason::Timeout`] when CONNACK or
    /// PINGRESP is late.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.state == State::Closed {
            return;
        }
        if self
            .response_deadline
            .is_some_and(|deadline| now >= deadline)
        {
            self.close_with(ClientCloseReason::Timeout);
            return;
        }
        if self.next_ping().is_some_and(|at| now >= at) {
            self.send_ping(now);
        }
    }

    /// Publishes a message; the returned [`Ticket`] comes back in [`ClientEvent::Published`].
    ///
    /// QoS 0 is written at once on a live connection. QoS 1/2 go in flight within the window, or
    /// wait in the session queue behind it. Before CONNACK, and while the connection is closed,
    /// every message waits in the session queue. `Err` gives the message back when the queue is
    /// full too ([`crate::session::SessionLimits`]), or when it is too large for MQTT
    /// ([`Message::is_encodable`]).
    pub fn publish(
        &mut self,
        now: Instant,
        message: Message,
    ) -> Result<Ticket, Backpressure<Message>> {
        self.now = now;
        if !message.is_encodable() {
            return Err(Backpressure(message));
        }
        if self.state != State::Connected {
            if !self.flows.session.queue_has_room_for(&message) {
                return Err(Backpressure(message));
            }
            let ticket = self.flows.session.new_ticket();
            self.flows.session.push_queued(Queued { message, ticket });
            return Ok(Ticket(ticket));
        }
        let ticket = self.flows.session.new_ticket();
        match self.flows.publish(message, ticket, false) {
            None => Ok(Ticket(ticket)),
            Some(refused) => Err(Backpressure(refused.message)),
        }
    }

    /// Subscribes to filters; the returned [`Ticket`] comes back in [`ClientEvent::Subscribed`].
    /// `Err` gives the filters back when all 65,535 packet ids are in flight or `filters` is
    /// empty ([MQTT-3.8.3-3]).
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: Vec<(TopicFilter, QoS)>,
    ) -> Result<Ticket, Backpressure<Vec<(TopicFilter, QoS)>>> {
        self.now = now;
        if filters.is_empty() {
            return Err(Backpressure(filters));
        }
        match self.start_request(Request::Subscribe(filters)) {
            Ok(ticket) => Ok(ticket),
            Err(Request::Subscribe(filters)) => Err(Backpressure(filters)),
            Err(Request::Unsubscribe(_)) => Err(Backpressure(Vec::new())),
        }
    }

    /// Unsubscribes from filters; the returned [`Ticket`] comes back in
    /// [`ClientEvent::Unsubscribed`]. `Err` gives the filters back when all 65,535 packet ids
    /// are in flight or `filters` is empty ([MQTT-3.10.3-2]).
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        filters: Vec<TopicFilter>,
    ) -> Result<Ticket, Backpressure<Vec<TopicFilter>>> {
        self.now = now;
        if filters.is_empty() {
            return Err(Backpressure(filters));
        }
        match self.start_request(Request::Unsubscribe(filters)) {
            Ok(ticket) => Ok(ticket),
            Err(Request::Unsubscribe(filters)) => Err(Backpressure(filters)),
            Err(Request::Subscribe(_)) => Err(Backpressure(Vec::new())),
        }
    }

    /// Sends a PINGREQ now; [`ClientEvent::PingResp`] follows, or [`ClientCloseReason::Timeout`]
    /// after [`ConnectOptions::response_timeout`]. Ignored unless connected.
    pub fn ping(&mut self, now: Instant) {
        self.now = now;
        if self.state == State::Connected {
            self.send_ping(now);
        }
    }

    /// Queues DISCONNECT; the connection closes once it is transmitted (then
    /// [`ClientEvent::Closed`] with [`ClientCloseReason::Disconnected`]). Messages in flight
    /// stay in the session.
    pub fn disconnect(&mut self) {
        if matches!(self.state, State::Connecting | State::Connected) {
            self.flows.push(Tx::Disconnect);
            self.state = State::Disconnecting;
        }
    }

    /// Moves the bytes to send into `out`. Returns whether anything was added.
    #[must_use]
    pub fn poll_transmit(&mut self, out: &mut OutBuf) -> bool {
        let before = out.len();
        while let Some(sent) = self.flows.transmit_one(out) {
            match sent {
                Sent::Nothing => {}
                Sent::Qos0(ticket) => self
                    .events
                    .push_back(ClientEvent::Published(Ticket(ticket))),
                Sent::Disconnect => {
                    // [MQTT-3.14.4-1]: nothing is sent after DISCONNECT.
                    self.requeue_unsent();
                    self.state = State::Closed;
                    self.response_deadline = None;
                    self.events
                        .push_back(ClientEvent::Closed(ClientCloseReason::Disconnected));
                    break;
                }
            }
        }
        let written = out.len() > before;
        if written {
            self.last_sent = self.now;
        }
        written
    }

    /// The next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        event
    }

    /// The next deadline at which [`ClientConnection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        match (self.response_deadline, self.next_ping()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the CONNACK accepted the connection and it is still open.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the connection is closed: flush, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The session this connection drives (in-flight and queued counts).
    pub fn session(&self) -> &Session {
        &self.flows.session
    }

    /// The options this connection was created with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// The session, for the next connection (clean session 0 resumes it; requests in flight are
    /// retransmitted there). QoS 0 messages not yet transmitted go back to the front of the
    /// session queue, so their tickets still complete.
    pub fn into_session(mut self) -> Session {
        self.requeue_unsent();
        self.flows.session
    }

    fn requeue_unsent(&mut self) {
        let unsent = self.flows.take_unsent_qos0();
        self.flows.session.requeue_front(unsent);
        self.flows.clear_tx();
    }

    fn start_request(&mut self, request: Request) -> Result<Ticket, Request> {
        let ticket = self.flows.session.new_ticket();
        let Some(id) = self.flows.session.start_request(request.clone(), ticket) else {
            return Err(request);
        };
        if self.state == State::Connected {
            self.flows.push(Tx::Request(id));
        }
        Ok(Ticket(ticket))
    }

    /// When the keep-alive PINGREQ is due: keep-alive after the last send, unless a response is
    /// awaited already.
    fn next_ping(&self) -> Option<Instant> {
        if self.state != State::Connected || self.response_deadline.is_some() {
            return None;
        }
        let interval = self.options.keep_alive.interval()?;
        self.last_sent.checked_add(interval)
    }

    fn send_ping(&mut self, now: Instant) {
        // [MQTT-3.1.2-23]: PINGREQ when nothing else was sent within keep-alive.
        self.flows.push(Tx::PingReq);
        if self.response_deadline.is_none() {
            self.response_deadline = now.checked_add(self.options.response_timeout);
        }
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), ProtocolError> {
        if !self.connack_received {
            return match packet {
                Packet::ConnAck(ack) => {
                    self.on_connack(ack.session_present, ack.return_code);
                    Ok(())
                }
                // [MQTT-3.2.0-1]: the first packet from the server is CONNACK.
                other => Err(self.fail(ProtocolError::UnexpectedPacket(other.name()))),
            };
        }
        match packet {
            Packet::Publish(publish) => match self.flows.on_publish(publish) {
                Ok(Some(publish)) => {
                    self.events.push_back(ClientEvent::Message(publish));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(self.fail(error)),
            },
            Packet::PubAck(id) => {
                let done = self.flows.on_puback(id).map_err(|e| self.fail(e))?;
                self.published(done);
                Ok(())
            }
            Packet::PubRec(id) => self.flows.on_pubrec(id).map_err(|e| self.fail(e)),
            Packet::PubRel(id) => {
                self.flows.on_pubrel(id);
                Ok(())
            }
            Packet::PubComp(id) => {
                let done = self.flows.on_pubcomp(id).map_err(|e| self.fail(e))?;
                self.published(done);
                Ok(())
            }
            Packet::SubAck(ack) => {
                if let Some(ticket) = self
                    .flows
                    .on_request_ack(ack.packet_id, true)
                    .map_err(|e| self.fail(e))?
                {
                    self.events
                        .push_back(ClientEvent::Subscribed(Ticket(ticket), ack.return_codes));
                }
                Ok(())
            }
            Packet::UnsubAck(id) => {
                if let Some(ticket) = self
                    .flows
                    .on_request_ack(id, false)
                    .map_err(|e| self.fail(e))?
                {
                    self.events
                        .push_back(ClientEvent::Unsubscribed(Ticket(ticket)));
                }
                Ok(())
            }
            Packet::PingResp => {
                self.response_deadline = None;
                self.events.push_back(ClientEvent::PingResp);
                Ok(())
            }
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Disconnect => {
                let name = packet.name();
                Err(self.fail(ProtocolError::UnexpectedPacket(name)))
            }
        }
    }

    fn on_connack(&mut self, session_present: bool, code: ConnectReturnCode) {
        self.connack_received = true;
        self.response_deadline = None;
        if code != ConnectReturnCode::Accepted {
            self.state = State::Closed;
            self.requeue_unsent();
            self.events.push_back(ClientEvent::Refused(code));
            return;
        }
        if self.state == State::Connecting {
            self.state = State::Connected;
        }
        self.events
            .push_back(ClientEvent::Connected { session_present });
        // [MQTT-3.2.2-1]: with clean session 1 there is no session to resume, whatever the flag.
        if !session_present || self.options.clean_session {
            for ticket in self.flows.session.reset_for_fresh_peer() {
                self.events
                    .push_back(ClientEvent::Published(Ticket(ticket)));
            }
        }
        self.flows.resume();
    }

    fn published(&mut self, ticket: Option<u64>) {
        if let Some(ticket) = ticket {
            self.events
                .push_back(ClientEvent::Published(Ticket(ticket)));
        }
    }

    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        self.close_with(ClientCloseReason::Protocol(error.clone()));
        error
    }

    fn close_with(&mut self, reason: ClientCloseReason) {
        self.state = State::Closed;
        self.response_deadline = None;
        self.requeue_unsent();
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ConnAck;
    use crate::topic::TopicName;

    fn bytes_of(packets: &[Packet]) -> BytesMut {
        let mut out = BytesMut::new();
        for packet in packets {
            packet.encode(&mut out).expect("encodable");
        }
        out
    }

    fn connack() -> Packet {
        Packet::ConnAck(ConnAck {
            session_present: false,
            return_code: ConnectReturnCode::Accepted,
        })
    }

    fn message(qos: QoS) -> Message {
        Message::new(
            TopicName::new("t").expect("valid"),
            Bytes::from_static(b"p"),
            qos,
            false,
        )
    }

    fn transmit(conn: &mut ClientConnection) -> Vec<&'static str> {
        let mut out = OutBuf::new();
        let _ = conn.poll_transmit(&mut out);
        let mut bytes = BytesMut::new();
        while bytes::Buf::has_remaining(&out) {
            let chunk = bytes::Buf::chunk(&out);
            bytes.extend_from_slice(chunk);
            let n = chunk.len();
            bytes::Buf::advance(&mut out, n);
        }
        let mut decoder = Decoder::new(usize::MAX);
        std::iter::from_fn(|| decoder.decode(&mut bytes).expect("valid"))
            .map(|p| p.name())
            .collect()
    }

    fn connected(now: Instant) -> ClientConnection {
        let mut conn = ClientConnection::new(ConnectOptions::new("c"), Session::default(), now);
        assert_eq!(transmit(&mut conn), vec!["CONNECT"]);
        conn.handle_read(now, &mut bytes_of(&[connack()]))
            .expect("valid");
        assert!(conn.is_connected());
        conn
    }

    #[test]
    fn an_idle_connection_is_small_and_holds_no_heap_buffers() {
        assert!(std::mem::size_of::<ClientConnection>() <= 512);
        let now = Instant::now();
        let mut conn = connected(now);
        conn.publish(now, message(QoS::AtLeastOnce)).expect("room");
        assert_eq!(transmit(&mut conn), vec!["PUBLISH"]);
        let puback = Packet::PubAck(crate::types::PacketId::new(1).expect("non-zero"));
        conn.handle_read(now, &mut bytes_of(&[puback]))
            .expect("valid");
        while conn.poll_event().is_some() {}
        assert!(transmit(&mut conn).is_empty());
        assert_eq!(conn.events.capacity(), 0);
        assert_eq!(conn.flows.tx_capacity(), 0);
        assert!(conn.session().is_empty());
    }

    #[test]
    fn unsent_qos0_messages_go_back_to_the_session_with_their_tickets() {
        let now = Instant::now();
        let mut conn = connected(now);
        let ticket = conn.publish(now, message(QoS::AtMostOnce)).expect("room");
        let session = conn.into_session();
        assert_eq!(session.queued_len(), 1);
        let mut next = ClientConnection::new(ConnectOptions::new("c"), session, now);
        assert_eq!(transmit(&mut next), vec!["CONNECT"]);
        next.handle_read(now, &mut bytes_of(&[connack()]))
            .expect("valid");
        assert_eq!(transmit(&mut next), vec!["PUBLISH"]);
        let events: Vec<_> = std::iter::from_fn(|| next.poll_event()).collect();
        assert!(events.contains(&ClientEvent::Published(ticket)));
    }

    #[test]
    fn disconnect_before_connack_sends_connect_then_disconnect_and_closes() {
        let now = Instant::now();
        let mut conn = ClientConnection::new(ConnectOptions::new("c"), Session::default(), now);
        conn.disconnect();
        assert_eq!(transmit(&mut conn), vec!["CONNECT", "DISCONNECT"]);
        assert!(conn.is_closed());
        assert_eq!(
            conn.poll_event(),
            Some(ClientEvent::Closed(ClientCloseReason::Disconnected))
        );
        assert_eq!(conn.poll_timeout(), None);
    }

    #[test]
    fn no_pingreq_is_sent_before_connack_and_ping_is_ignored_then() {
        let now = Instant::now();
        let options = ConnectOptions::new("c")
            .keep_alive(KeepAlive(1))
            .response_timeout(Duration::from_secs(100));
        let mut conn = ClientConnection::new(options, Session::default(), now);
        conn.ping(now);
        assert_eq!(transmit(&mut conn), vec!["CONNECT"]);
        conn.handle_timeout(now + Duration::from_secs(50));
        assert!(transmit(&mut conn).is_empty());
        assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(100)));
    }

    #[test]
    fn a_manual_ping_is_answered_by_a_pingresp_event() {
        let now = Instant::now();
        let mut conn = connected(now);
        let _ = conn.poll_event();
        conn.ping(now);
        assert_eq!(transmit(&mut conn), vec!["PINGREQ"]);
        assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(10)));
        conn.handle_read(now, &mut bytes_of(&[Packet::PingResp]))
            .expect("valid");
        assert_eq!(conn.poll_event(), Some(ClientEvent::PingResp));
        assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn subscribe_and_unsubscribe_without_filters_are_refused_mqtt_3_8_3_3() {
        let now = Instant::now();
        let mut conn = connected(now);
        assert_eq!(
            conn.subscribe(now, Vec::new()),
            Err(Backpressure(Vec::new()))
        );
        assert_eq!(
            conn.unsubscribe(now, Vec::new()),
            Err(Backpressure(Vec::new()))
        );
    }

    #[test]
    fn publishes_while_closed_wait_in_the_session_within_its_bounds() {
        let now = Instant::now();
        let limits = crate::session::SessionLimits {
            max_queued_messages: 1,
            ..Default::default()
        };
        let mut conn = ClientConnection::new(ConnectOptions::new("c"), Session::new(limits), now);
        conn.handle_timeout(now + Duration::from_secs(10));
        assert!(conn.is_closed());
        assert!(conn.publish(now, message(QoS::AtLeastOnce)).is_ok());
        assert_eq!(
            conn.publish(now, message(QoS::ExactlyOnce)),
            Err(Backpressure(message(QoS::ExactlyOnce)))
        );
        assert_eq!(conn.into_session().queued_len(), 1);
    }
}
