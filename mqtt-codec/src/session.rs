//! Session state that outlives a network connection ([MQTT-3.1.2-4], section 4.1), and the
//! QoS flows that both connection state machines run over it.
//!
//! A [`Session`] is plain data: the outgoing QoS 1/2 messages in flight (PUBLISH awaiting
//! PUBACK/PUBREC, PUBREL awaiting PUBCOMP), the client's SUBSCRIBE/UNSUBSCRIBE requests awaiting
//! their acknowledgement, the messages queued behind the in-flight window, the incoming QoS 2
//! packet ids awaiting PUBREL, and the one packet-id allocator they all share. A connection state
//! machine ([`crate::client::ClientConnection`], [`crate::server::ServerConnection`]) takes one in
//! and gives it back with `into_session`, so a reconnect with clean session 0 resumes it. With the
//! `serde` feature it can be serialized for persistence.
//!
//! Every table is allocated lazily: an idle session with nothing in flight holds no heap memory.
//! Acknowledgements of outgoing packets are looked up by packet id in O(1): a hash table keyed by
//! the 16-bit id with a multiplicative hash, so taking an entry out never shifts its neighbours
//! (a B-tree's node shuffling was a tenth of a broker's CPU at QoS 1). The incoming QoS 2 ids,
//! fewer and smaller, stay in a B-tree (a smaller handle in every connection).
//!
//! The crate-private `Flows` type is the per-connection half: the packets waiting to be
//! encoded and the QoS 1/2 sender and receiver rules of section 4.3, shared by the client and the
//! server machines. No IO and no clock here.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::outbuf::OutBuf;
use crate::packet::{
    ConnAck, Connect, Packet, Publish, SubAck, Subscribe, Unsubscribe, MAX_REMAINING_LENGTH,
};
use crate::topic::{TopicFilter, TopicName};
use crate::types::{PacketId, QoS, QosPid};

/// An application message as queued in a session: what a PUBLISH carries, minus DUP and ids.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Message {
    /// The topic.
    pub topic: TopicName,
    /// The payload (shared, never copied per subscriber).
    pub payload: Bytes,
    /// The QoS it is sent with.
    pub qos: QoS,
    /// The RETAIN flag it is sent with.
    pub retain: bool,
}

impl Message {
    /// A message from its parts.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Message {
        Message {
            topic,
            payload: payload.into(),
            qos,
            retain,
        }
    }

    /// Whether a PUBLISH carrying this message fits in the largest remaining length MQTT can
    /// express (268,435,455 bytes).
    pub fn is_encodable(&self) -> bool {
        // Topic length prefix (2) + topic + packet id (2) + payload.
        2 + self.topic.as_str().len() + 2 + self.payload.len() <= MAX_REMAINING_LENGTH
    }
}

impl From<Publish> for Message {
    fn from(publish: Publish) -> Message {
        Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos_pid.qos(),
            retain: publish.retain,
        }
    }
}

/// Limits of a session's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionLimits {
    /// Outgoing QoS 1/2 messages in flight at once (default 20; 0 means no limit other than the
    /// 65,535 packet ids).
    pub max_inflight: u16,
    /// Messages queued behind the in-flight window (default 1000); the oldest is dropped beyond.
    pub max_queued_messages: usize,
    /// Payload bytes queued behind the in-flight window (default 64 MiB); the oldest is dropped beyond.
    pub max_queued_bytes: usize,
    /// Incoming QoS 2 packet ids awaiting PUBREL (default 100); beyond it the peer is disconnected.
    pub max_incoming_unreleased: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_incoming_unreleased: 100,
        }
    }
}

/// The state of one MQTT session (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Session {
    limits: SessionLimits,
    /// Outgoing packets awaiting acknowledgement, by packet id ([MQTT-2.3.1-2]: an id in this
    /// table is never handed out again).
    outgoing: HashMap<u16, Outgoing, IdHash>,
    /// How many entries of `outgoing` are messages (PUBLISH or PUBREL): the in-flight window.
    inflight_messages: usize,
    /// Messages waiting for room in the window, oldest first.
    queue: VecDeque<Queued>,
    /// Sum of the payload lengths in `queue`.
    queued_bytes: usize,
    /// Incoming QoS 2 packet ids whose PUBREC was sent and whose PUBREL has not arrived.
    incoming: BTreeSet<u16>,
    /// The packet id handed out last; the allocator continues after it.
    last_packet_id: u16,
    /// Send-order counter: retransmission follows it ([MQTT-4.6.0-1]).
    next_seq: u64,
    /// Ticket counter for the client's requests.
    next_ticket: u64,
}

impl Session {
    /// An empty session with the given limits.
    pub fn new(limits: SessionLimits) -> Session {
        Session {
            limits,
            ..Session::default()
        }
    }

    /// Queues a message for delivery while no connection drives the session (offline queueing,
    /// [MQTT-3.1.2-5]).
    ///
    /// QoS 0 messages are refused and returned: they are not kept for an offline client. When a
    /// bound ([`SessionLimits::max_queued_messages`], [`SessionLimits::max_queued_bytes`]) would
    /// be exceeded the oldest queued message is dropped and returned, so the caller can count and
    /// log it; if dropping the oldest does not make room (a large message behind small ones, or a
    /// message larger than the byte bound), the new message itself is refused and returned.
    pub fn enqueue(&mut self, message: Message) -> Option<Message> {
        if message.qos == QoS::AtMostOnce {
            return Some(message);
        }
        self.enqueue_dropping_oldest(Queued { message, ticket: 0 })
            .map(|q| q.message)
    }

    /// Outgoing QoS 1/2 messages (and PUBRELs) awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.inflight_messages
    }

    /// Messages queued behind the in-flight window.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// The session's limits.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Changes the limits (e.g. a broker whose configuration changed before a session resumed).
    /// Messages already queued or in flight stay; the new bounds apply to what comes next.
    pub fn set_limits(&mut self, limits: SessionLimits) {
        self.limits = limits;
    }

    /// Payload bytes of the messages queued behind the in-flight window.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Incoming QoS 2 packet ids awaiting PUBREL.
    pub fn incoming_unreleased_len(&self) -> usize {
        self.incoming.len()
    }

    /// Client requests (SUBSCRIBE, UNSUBSCRIBE) awaiting SUBACK/UNSUBACK.
    pub fn pending_requests_len(&self) -> usize {
        self.outgoing.len() - self.inflight_messages
    }

    /// Whether nothing is in flight, queued or awaiting PUBREL.
    pub fn is_empty(&self) -> bool {
        self.outgoing.is_empty() && self.queue.is_empty() && self.incoming.is_empty()
    }

    /// The messages queued behind the window, oldest first.
    pub fn queued_messages(&self) -> impl Iterator<Item = &Message> {
        self.queue.iter().map(|q| &q.message)
    }

    // ----- crate-private operations used by the connection machines -----

    /// A new ticket number (the client's request identifiers).
    pub(crate) fn new_ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn new_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// The next packet id not in flight ([MQTT-2.3.1-2], [MQTT-2.3.1-4]); `None` when all 65,535
    /// are in use. Continues after the last id handed out, so a freed id is not reused at once.
    pub(crate) fn allocate_id(&mut self) -> Option<PacketId> {
        if self.outgoing.len() >= usize::from(u16::MAX) {
            return None;
        }
        // Skips the run of ids in use after the last one handed out (usually empty: ids are
        // handed out in order and acknowledged roughly in order). Fewer than 65,535 ids are in
        // use, so a free one is met within 65,535 steps.
        let mut candidate = self.last_packet_id;
        for _ in 0..u16::MAX {
            candidate = candidate.checked_add(1).unwrap_or(1);
            if !self.outgoing.contains_key(&candidate) {
                self.last_packet_id = candidate;
                return PacketId::new(candidate);
            }
        }
        None
    }

    /// Whether the window has room for one more message (and an id is free).
    pub(crate) fn window_has_room(&self) -> bool {
        let max = match self.limits.max_inflight {
            0 => usize::from(u16::MAX),
            n => usize::from(n),
        };
        self.inflight_messages < max && self.outgoing.len() < usize::from(u16::MAX)
    }

    /// Free slots of the in-flight window while nothing is queued behind it; 0 while something
    /// is (new messages go behind the queue, [MQTT-4.6.0-6]).
    pub(crate) fn window_room(&self) -> usize {
        if !self.queue.is_empty() {
            return 0;
        }
        let max = match self.limits.max_inflight {
            0 => usize::from(u16::MAX),
            n => usize::from(n),
        };
        max.saturating_sub(self.inflight_messages)
            .min(usize::from(u16::MAX).saturating_sub(self.outgoing.len()))
    }

    /// Puts a QoS 1/2 message in flight under `id` (from [`Session::allocate_id`]).
    fn start_publish(&mut self, id: PacketId, message: Message, ticket: u64) -> (PacketId, u64) {
        let seq = self.new_seq();
        self.outgoing.insert(
            id.get(),
            Outgoing::Publish {
                seq,
                ticket,
                sent: false,
                message,
            },
        );
        self.inflight_messages += 1;
        (id, seq)
    }

    fn remove_outgoing(&mut self, id: PacketId) -> Option<Outgoing> {
        let removed = self.outgoing.remove(&id.get());
        if self.outgoing.is_empty() && self.outgoing.capacity() > 0 {
            // An idle session holds no allocation.
            self.outgoing = HashMap::default();
        }
        removed
    }

    /// Puts a SUBSCRIBE or UNSUBSCRIBE request in flight under a fresh id.
    pub(crate) fn start_request(&mut self, request: Request, ticket: u64) -> Option<PacketId> {
        let id = self.allocate_id()?;
        let seq = self.new_seq();
        self.outgoing.insert(
            id.get(),
            Outgoing::Request {
                seq,
                ticket,
                request,
            },
        );
        Some(id)
    }

    /// Whether `message` could be queued without dropping anything.
    pub(crate) fn queue_has_room_for(&self, message: &Message) -> bool {
        self.queue.len() < self.limits.max_queued_messages
            && self.queued_bytes.saturating_add(message.payload.len())
                <= self.limits.max_queued_bytes
    }

    /// Appends to the queue without checking the bounds (the caller did).
    pub(crate) fn push_queued(&mut self, queued: Queued) {
        self.queued_bytes += queued.message.payload.len();
        self.queue.push_back(queued);
    }

    /// Appends to the queue; see [`Session::enqueue`] for what is dropped and returned.
    fn enqueue_dropping_oldest(&mut self, queued: Queued) -> Option<Queued> {
        if self.queue_has_room_for(&queued.message) {
            self.push_queued(queued);
            return None;
        }
        let size = queued.message.payload.len();
        let room_after_dropping_oldest = self.queue.front().is_some_and(|oldest| {
            self.queue.len() - 1 < self.limits.max_queued_messages
                && (self.queued_bytes - oldest.message.payload.len()).saturating_add(size)
                    <= self.limits.max_queued_bytes
        });
        if !room_after_dropping_oldest {
            return Some(queued);
        }
        let oldest = self.pop_queued();
        self.push_queued(queued);
        oldest
    }

    fn pop_queued(&mut self) -> Option<Queued> {
        let queued = self.queue.pop_front()?;
        self.queued_bytes -= queued.message.payload.len();
        if self.queue.is_empty() {
            // An idle session holds no queue allocation.
            self.queue = VecDeque::new();
        }
        Some(queued)
    }

    /// Puts messages back at the front of the queue, keeping their order (unsent QoS 0 messages
    /// of a connection that ended).
    pub(crate) fn requeue_front(&mut self, messages: Vec<Queued>) {
        for queued in messages.into_iter().rev() {
            self.queued_bytes += queued.message.payload.len();
            self.queue.push_front(queued);
        }
    }

    /// The packet ids to retransmit when a connection resumes this session, in send order
    /// ([MQTT-4.4.0-1], [MQTT-4.6.0-1]).
    fn resume_order(&self) -> Vec<(u64, u16)> {
        let mut order: Vec<(u64, u16)> = self
            .outgoing
            .iter()
            .map(|(&id, entry)| (entry.seq(), id))
            .collect();
        order.sort_unstable();
        order
    }

    /// The server on the other side has no session (CONNACK session present 0): its
    /// acknowledgement state is gone. Messages in flight are sent again as new (DUP 0, same ids,
    /// which are free on the fresh server session); a QoS 2 message whose PUBREC had arrived was
    /// received by the server, so it completes now (its ticket is returned); the incoming QoS 2
    /// ids are forgotten.
    pub(crate) fn reset_for_fresh_peer(&mut self) -> Vec<u64> {
        self.incoming = BTreeSet::new();
        let mut completed = Vec::new();
        let mut released = Vec::new();
        for (&id, entry) in self.outgoing.iter_mut() {
            match entry {
                Outgoing::Publish { sent, .. } => *sent = false,
                Outgoing::PubRel { ticket, .. } => {
                    completed.push(*ticket);
                    released.push(id);
                }
                Outgoing::Request { .. } => {}
            }
        }
        for id in released.into_iter().filter_map(PacketId::new) {
            self.remove_outgoing(id);
            self.inflight_messages -= 1;
        }
        completed
    }
}

/// A message in the queue, with the client's ticket (0 on the server).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Queued {
    pub(crate) message: Message,
    pub(crate) ticket: u64,
}

/// A client request that uses a packet id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) enum Request {
    /// SUBSCRIBE with its filters.
    Subscribe(Vec<(TopicFilter, QoS)>),
    /// UNSUBSCRIBE with its filters.
    Unsubscribe(Vec<TopicFilter>),
}

/// One outgoing packet awaiting its acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum Outgoing {
    /// A QoS 1/2 PUBLISH awaiting PUBACK or PUBREC. `sent`: handed to a transport at least once,
    /// so a retransmission carries DUP 1 ([MQTT-3.3.1-1]).
    Publish {
        seq: u64,
        ticket: u64,
        sent: bool,
        message: Message,
    },
    /// A PUBREL awaiting PUBCOMP. `seq` is the PUBREC's arrival order ([MQTT-4.6.0-4]).
    PubRel { seq: u64, ticket: u64 },
    /// A SUBSCRIBE or UNSUBSCRIBE awaiting SUBACK or UNSUBACK.
    Request {
        seq: u64,
        ticket: u64,
        request: Request,
    },
}

impl Outgoing {
    fn seq(&self) -> u64 {
        match self {
            Outgoing::Publish { seq, .. }
            | Outgoing::PubRel { seq, .. }
            | Outgoing::Request { seq, .. } => *seq,
        }
    }
}

/// A packet waiting to be encoded into the connection's [`OutBuf`]. Kept small: PUBLISH packets
/// in flight are referred to by id and encoded from the session at transmit time.
#[derive(Debug)]
pub(crate) enum Tx {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    /// A QoS 1/2 PUBLISH of the session; `seq` guards against an id that was acknowledged and
    /// reused before its first transmission.
    Publish {
        id: PacketId,
        seq: u64,
    },
    /// A QoS 0 PUBLISH with the client's ticket (0 on the server).
    Publish0(Queued),
    PubAck(PacketId),
    PubRec(PacketId),
    PubRel(PacketId),
    PubComp(PacketId),
    /// A SUBSCRIBE or UNSUBSCRIBE of the session.
    Request(PacketId),
    SubAck(SubAck),
    UnsubAck(PacketId),
    PingReq,
    PingResp,
    Disconnect,
}

/// What encoding one [`Tx`] produced that the machine must report.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Nothing to report.
    Nothing,
    /// A QoS 0 PUBLISH with this ticket was written.
    Qos0(u64),
    /// DISCONNECT was written.
    Disconnect,
}

/// The per-connection half of the QoS flows: the session and the packets waiting to be encoded.
#[derive(Debug, Default)]
pub(crate) struct Flows {
    pub(crate) session: Session,
    tx: VecDeque<Tx>,
}

impl Flows {
    pub(crate) fn new(session: Session) -> Flows {
        Flows {
            session,
            tx: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, tx: Tx) {
        if self.tx.capacity() == 0 {
            // Emptied after every batch (idle connections hold none): start a batch with room
            // for a few packets instead of growing through 4, 8 and 16.
            self.tx.reserve(TX_INITIAL);
        }
        self.tx.push_back(tx);
    }

    /// Drops every packet waiting to be encoded.
    pub(crate) fn clear_tx(&mut self) {
        self.tx = VecDeque::new();
    }

    /// Takes the QoS 0 messages not yet encoded (to requeue them in the session).
    pub(crate) fn take_unsent_qos0(&mut self) -> Vec<Queued> {
        self.tx
            .drain(..)
            .filter_map(|tx| match tx {
                Tx::Publish0(queued) => Some(queued),
                _ => None,
            })
            .collect()
    }

    /// Encodes the next waiting packet into `out`; `None` when nothing waits. Otherwise returns
    /// what to report and the packet written, if one was (a PUBLISH acknowledged before its
    /// first transmission writes nothing). Handing the packet back costs nothing extra: it was
    /// built to be encoded, and a caller that does not trace it just drops it.
    pub(crate) fn transmit_one(&mut self, out: &mut OutBuf) -> Option<(Sent, Option<Packet>)> {
        let Some(tx) = self.tx.pop_front() else {
            if self.tx.capacity() > 0 {
                // An idle connection holds no transmit-queue allocation.
                self.tx = VecDeque::new();
            }
            return None;
        };
        let mut sent = Sent::Nothing;
        let packet = match tx {
            Tx::Connect(connect) => Some(Packet::Connect(connect)),
            Tx::ConnAck(ack) => Some(Packet::ConnAck(ack)),
            Tx::Publish { id, seq } => self.inflight_packet(id, seq),
            Tx::Publish0(queued) => {
                sent = Sent::Qos0(queued.ticket);
                let message = queued.message;
                Some(Packet::Publish(Publish {
                    dup: false,
                    qos_pid: QosPid::AtMostOnce,
                    retain: message.retain,
                    topic: message.topic,
                    payload: message.payload,
                }))
            }
            Tx::PubAck(id) => Some(Packet::PubAck(id)),
            Tx::PubRec(id) => Some(Packet::PubRec(id)),
            Tx::PubRel(id) => Some(Packet::PubRel(id)),
            Tx::PubComp(id) => Some(Packet::PubComp(id)),
            Tx::Request(id) => match self.session.outgoing.get(&id.get()) {
                Some(Outgoing::Request {
                    request: Request::Subscribe(filters),
                    ..
                }) => Some(Packet::Subscribe(Subscribe {
                    packet_id: id,
                    filters: filters.clone(),
                })),
                Some(Outgoing::Request {
                    request: Request::Unsubscribe(filters),
                    ..
                }) => Some(Packet::Unsubscribe(Unsubscribe {
                    packet_id: id,
                    filters: filters.clone(),
                })),
                _ => None,
            },
            Tx::SubAck(ack) => Some(Packet::SubAck(ack)),
            Tx::UnsubAck(id) => Some(Packet::UnsubAck(id)),
            Tx::PingReq => Some(Packet::PingReq),
            Tx::PingResp => Some(Packet::PingResp),
            Tx::Disconnect => {
                sent = Sent::Disconnect;
                Some(Packet::Disconnect)
            }
        };
        // Encoding cannot fail for these packets: topics and filters were validated, every
        // queued message passed `Message::is_encodable` or came from a decoded packet. Should it
        // fail anyway, the packet is skipped (and not reported) rather than a panic.
        let written = packet.filter(|packet| match packet {
            Packet::Publish(publish) => encode_publish(publish, out).is_ok(),
            other => other.encode(out.tail_mut()).is_ok(),
        });
        Some((sent, written))
    }

    /// The PUBLISH (or, once PUBREC arrived, the PUBREL) to send for an in-flight id, if it is
    /// still the same entry; marks a PUBLISH as sent so a retransmission carries DUP.
    fn inflight_packet(&mut self, id: PacketId, seq: u64) -> Option<Packet> {
        match self.session.outgoing.get_mut(&id.get()) {
            Some(Outgoing::Publish {
                seq: entry_seq,
                sent,
                message,
                ..
            }) if *entry_seq == seq => {
                let qos_pid = match message.qos {
                    QoS::ExactlyOnce => QosPid::ExactlyOnce(id),
                    _ => QosPid::AtLeastOnce(id),
                };
                let publish = Publish {
                    // [MQTT-3.3.1-1] DUP 1 on a re-delivery attempt.
                    dup: *sent,
                    qos_pid,
                    retain: message.retain,
                    topic: message.topic.clone(),
                    payload: message.payload.clone(),
                };
                *sent = true;
                Some(Packet::Publish(publish))
            }
            Some(Outgoing::PubRel { seq: entry_seq, .. }) if *entry_seq == seq => {
                Some(Packet::PubRel(id))
            }
            // Acknowledged (or replaced) before it was transmitted: nothing to send.
            _ => None,
        }
    }

    /// Sends (or queues) an application message on a live connection.
    ///
    /// QoS 0 goes straight to the transmit queue. QoS 1/2 goes in flight when the window has
    /// room and nothing is queued ahead of it (order is kept, [MQTT-4.6.0-6]); otherwise it is
    /// queued. With `drop_oldest` a full queue drops its oldest message (returned); without it
    /// the new message is returned unqueued.
    pub(crate) fn publish(
        &mut self,
        message: Message,
        ticket: u64,
        drop_oldest: bool,
    ) -> Option<Queued> {
        let queued = Queued { message, ticket };
        if queued.message.qos == QoS::AtMostOnce {
            self.push(Tx::Publish0(queued));
            return None;
        }
        if self.session.queue.is_empty() && self.session.window_has_room() {
            if let Some(id) = self.session.allocate_id() {
                let Queued { message, ticket } = queued;
                let (id, seq) = self.session.start_publish(id, message, ticket);
                self.push(Tx::Publish { id, seq });
                return None;
            }
        }
        self.enqueue(queued, drop_oldest)
    }

    fn enqueue(&mut self, queued: Queued, drop_oldest: bool) -> Option<Queued> {
        if drop_oldest {
            self.session.enqueue_dropping_oldest(queued)
        } else if self.session.queue_has_room_for(&queued.message) {
            self.session.push_queued(queued);
            None
        } else {
            Some(queued)
        }
    }

    /// Moves queued messages into the window while it has room.
    pub(crate) fn fill_window(&mut self) {
        loop {
            let Some(front) = self.session.queue.front() else {
                return;
            };
            if front.message.qos != QoS::AtMostOnce && !self.session.window_has_room() {
                return;
            }
            let Some(queued) = self.session.pop_queued() else {
                return;
            };
            if queued.message.qos == QoS::AtMostOnce {
                self.push(Tx::Publish0(queued));
                continue;
            }
            let Some(id) = self.session.allocate_id() else {
                self.session.requeue_front(vec![queued]);
                return;
            };
            let Queued { message, ticket } = queued;
            let (id, seq) = self.session.start_publish(id, message, ticket);
            self.push(Tx::Publish { id, seq });
        }
    }

    /// A connection resumed this session: queue every PUBLISH and PUBREL (and client request)
    /// in flight in send order ([MQTT-4.4.0-1], [MQTT-4.6.0-1]), then fill the window.
    pub(crate) fn resume(&mut self) {
        for (seq, id) in self.session.resume_order() {
            let Some(id) = PacketId::new(id) else {
                continue;
            };
            match self.session.outgoing.get(&id.get()) {
                Some(Outgoing::Publish { .. }) | Some(Outgoing::PubRel { .. }) => {
                    self.push(Tx::Publish { id, seq })
                }
                Some(Outgoing::Request { .. }) => self.push(Tx::Request(id)),
                None => {}
            }
        }
        self.fill_window();
    }

    /// An incoming PUBLISH: acknowledges it and says whether to surface it.
    ///
    /// QoS 1: PUBACK ([MQTT-4.3.2-2]). QoS 2: PUBREC; a packet id already awaiting PUBREL is a
    /// re-delivery and is not surfaced again ([MQTT-4.3.3-2]); more than
    /// [`SessionLimits::max_incoming_unreleased`] ids awaiting PUBREL is an error.
    pub(crate) fn on_publish(
        &mut self,
        publish: Publish,
    ) -> Result<Option<Publish>, ProtocolError> {
        match publish.qos_pid {
            QosPid::AtMostOnce => Ok(Some(publish)),
            QosPid::AtLeastOnce(id) => {
                self.push(Tx::PubAck(id));
                Ok(Some(publish))
            }
            QosPid::ExactlyOnce(id) => {
                if self.session.incoming.contains(&id.get()) {
                    self.push(Tx::PubRec(id));
                    return Ok(None);
                }
                let unreleased = self.session.incoming.len();
                if unreleased >= self.session.limits.max_incoming_unreleased {
                    return Err(ProtocolError::TooManyUnreleased(unreleased + 1));
                }
                self.session.incoming.insert(id.get());
                self.push(Tx::PubRec(id));
                Ok(Some(publish))
            }
        }
    }

    /// Withdraws the PUBACK/PUBREC queued for an incoming PUBLISH the application refused
    /// before acting on it (it closes the connection next), so the peer never sees it
    /// acknowledged; a QoS 2 id is forgotten too. A no-op for QoS 0 or when the
    /// acknowledgement was already encoded.
    pub(crate) fn withdraw_ack(&mut self, qos_pid: QosPid) {
        let position = match qos_pid {
            QosPid::AtMostOnce => return,
            QosPid::AtLeastOnce(id) => self
                .tx
                .iter()
                .rposition(|tx| matches!(tx, Tx::PubAck(queued) if *queued == id)),
            QosPid::ExactlyOnce(id) => {
                self.session.incoming.remove(&id.get());
                self.tx
                    .iter()
                    .rposition(|tx| matches!(tx, Tx::PubRec(queued) if *queued == id))
            }
        };
        if let Some(position) = position {
            self.tx.remove(position);
        }
    }

    /// An incoming PUBREL: the id is free again; answer PUBCOMP, also for an unknown id (the
    /// peer may repeat PUBREL after a reconnect) ([MQTT-4.3.3-2]).
    pub(crate) fn on_pubrel(&mut self, id: PacketId) {
        self.session.incoming.remove(&id.get());
        if self.session.incoming.is_empty() {
            // An emptied B-tree keeps its root node; an idle session holds no allocation.
            self.session.incoming = BTreeSet::new();
        }
        self.push(Tx::PubComp(id));
    }

    /// PUBACK: completes a QoS 1 message; returns its ticket. An unknown id is ignored (a
    /// duplicate acknowledgement); an id that belongs to something else is an error.
    pub(crate) fn on_puback(&mut self, id: PacketId) -> Result<Option<u64>, ProtocolError> {
        match self.session.outgoing.get(&id.get()) {
            None => Ok(None),
            Some(Outgoing::Publish {
                message, ticket, ..
            }) if message.qos == QoS::AtLeastOnce => {
                let ticket = *ticket;
                self.complete_message(id);
                Ok(Some(ticket))
            }
            Some(_) => Err(ProtocolError::UnknownPacketId(id.get())),
        }
    }

    /// PUBREC: the QoS 2 message was received; send PUBREL and hold it until PUBCOMP
    /// ([MQTT-4.3.3-1]). A repeated PUBREC is answered with PUBREL again; an unknown id is ignored.
    pub(crate) fn on_pubrec(&mut self, id: PacketId) -> Result<(), ProtocolError> {
        let seq = self.session.new_seq();
        match self.session.outgoing.get(&id.get()) {
            None => Ok(()),
            Some(Outgoing::Publish {
                ticket, message, ..
            }) => {
                if message.qos != QoS::ExactlyOnce {
                    return Err(ProtocolError::UnknownPacketId(id.get()));
                }
                let ticket = *ticket;
                self.session
                    .outgoing
                    .insert(id.get(), Outgoing::PubRel { seq, ticket });
                self.push(Tx::PubRel(id));
                Ok(())
            }
            Some(Outgoing::PubRel { .. }) => {
                self.push(Tx::PubRel(id));
                Ok(())
            }
            Some(Outgoing::Request { .. }) => Err(ProtocolError::UnknownPacketId(id.get())),
        }
    }

    /// PUBCOMP: completes a QoS 2 message; returns its ticket.
    pub(crate) fn on_pubcomp(&mut self, id: PacketId) -> Result<Option<u64>, ProtocolError> {
        match self.session.outgoing.get(&id.get()) {
            None => Ok(None),
            Some(Outgoing::PubRel { ticket, .. }) => {
                let ticket = *ticket;
                self.complete_message(id);
                Ok(Some(ticket))
            }
            Some(_) => Err(ProtocolError::UnknownPacketId(id.get())),
        }
    }

    /// SUBACK or UNSUBACK: completes a request; returns its ticket. `subscribe` says which
    /// acknowledgement arrived.
    pub(crate) fn on_request_ack(
        &mut self,
        id: PacketId,
        subscribe: bool,
    ) -> Result<Option<u64>, ProtocolError> {
        match self.session.outgoing.get(&id.get()) {
            None => Ok(None),
            Some(Outgoing::Request {
                ticket, request, ..
            }) if matches!(request, Request::Subscribe(_)) == subscribe => {
                let ticket = *ticket;
                self.session.remove_outgoing(id);
                Ok(Some(ticket))
            }
            Some(_) => Err(ProtocolError::UnknownPacketId(id.get())),
        }
    }

    fn complete_message(&mut self, id: PacketId) {
        if self.session.remove_outgoing(id).is_some() {
            self.session.inflight_messages -= 1;
        }
        self.fill_window();
    }

    /// Capacity of the transmit queue (tests check that idle connections hold none).
    #[cfg(test)]
    pub(crate) fn tx_capacity(&self) -> usize {
        self.tx.capacity()
    }
}

/// Room reserved in an empty transmit queue on its first packet.
const TX_INITIAL: usize = 16;

/// The hasher of the session's packet-id tables.
type IdHash = BuildHasherDefault<IdHasher>;

/// Hashes a 16-bit packet id with one multiplication (Fibonacci hashing), rotated so that the
/// bits a hash table uses for its bucket and its tag both depend on every bit of the id. The keys
/// are the ids this side handed out itself, so no peer chooses them; no keyed hash is needed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher(u64);

/// The Fibonacci hashing multiplier (2^64 divided by the golden ratio, odd).
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u16(&mut self, id: u16) {
        self.0 = (self.0 ^ u64::from(id))
            .wrapping_mul(FIBONACCI)
            .rotate_left(32);
    }
}

/// Encodes a PUBLISH: header into the tail, payload as a shared chunk (no copy when large).
fn encode_publish(publish: &Publish, out: &mut OutBuf) -> Result<(), crate::error::EncodeError> {
    publish.encode_into(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(qos: QoS, payload: &'static [u8]) -> Message {
        Message::new(
            TopicName::new("a/b").expect("valid topic"),
            Bytes::from_static(payload),
            qos,
            false,
        )
    }

    fn limits(
        max_inflight: u16,
        max_queued_messages: usize,
        max_queued_bytes: usize,
    ) -> SessionLimits {
        SessionLimits {
            max_inflight,
            max_queued_messages,
            max_queued_bytes,
            max_incoming_unreleased: 2,
        }
    }

    #[test]
    fn a_new_session_holds_no_heap_tables() {
        let session = Session::new(SessionLimits::default());
        assert!(session.is_empty());
        assert_eq!(session.inflight_len(), 0);
        assert_eq!(session.queued_len(), 0);
        assert_eq!(session.queue.capacity(), 0);
    }

    #[test]
    fn packet_ids_start_at_one_and_skip_ids_in_flight_mqtt_2_3_1_2() {
        let mut session = Session::default();
        let first = session.allocate_id().map(PacketId::get);
        assert_eq!(first, Some(1));
        session
            .outgoing
            .insert(2, Outgoing::PubRel { seq: 0, ticket: 0 });
        session
            .outgoing
            .insert(3, Outgoing::PubRel { seq: 0, ticket: 0 });
        assert_eq!(session.allocate_id().map(PacketId::get), Some(4));
    }

    #[test]
    fn packet_ids_wrap_from_65535_to_the_first_free_id() {
        let mut session = Session {
            last_packet_id: 65_534,
            ..Session::default()
        };
        session
            .outgoing
            .insert(1, Outgoing::PubRel { seq: 0, ticket: 0 });
        assert_eq!(session.allocate_id().map(PacketId::get), Some(65_535));
        assert_eq!(session.allocate_id().map(PacketId::get), Some(2));
    }

    #[test]
    fn no_packet_id_is_returned_when_all_65535_are_in_flight() {
        let mut session = Session::default();
        for id in 1..=u16::MAX {
            session
                .outgoing
                .insert(id, Outgoing::PubRel { seq: 0, ticket: 0 });
        }
        assert_eq!(session.allocate_id(), None);
        session.outgoing.remove(&40_000);
        assert_eq!(session.allocate_id().map(PacketId::get), Some(40_000));
    }

    #[test]
    fn enqueue_refuses_qos0_while_offline() {
        let mut session = Session::default();
        let m = message(QoS::AtMostOnce, b"x");
        assert_eq!(session.enqueue(m.clone()), Some(m));
        assert_eq!(session.queued_len(), 0);
    }

    #[test]
    fn enqueue_drops_the_oldest_message_at_the_message_bound() {
        let mut session = Session::new(limits(1, 2, 1000));
        assert_eq!(session.enqueue(message(QoS::AtLeastOnce, b"1")), None);
        assert_eq!(session.enqueue(message(QoS::AtLeastOnce, b"2")), None);
        assert_eq!(
            session.enqueue(message(QoS::AtLeastOnce, b"3")),
            Some(message(QoS::AtLeastOnce, b"1"))
        );
        let left: Vec<_> = session
            .queued_messages()
            .map(|m| m.payload.clone())
            .collect();
        assert_eq!(
            left,
            vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")]
        );
    }

    #[test]
    fn enqueue_drops_the_oldest_message_at_the_byte_bound() {
        let mut session = Session::new(limits(1, 100, 6));
        assert_eq!(session.enqueue(message(QoS::AtLeastOnce, b"aaa")), None);
        assert_eq!(session.enqueue(message(QoS::ExactlyOnce, b"bbb")), None);
        assert_eq!(session.queued_bytes(), 6);
        assert_eq!(
            session.enqueue(message(QoS::AtLeastOnce, b"cc")),
            Some(message(QoS::AtLeastOnce, b"aaa"))
        );
        assert_eq!(session.queued_bytes(), 5);
    }

    #[test]
    fn enqueue_refuses_a_message_larger_than_the_byte_bound() {
        let mut session = Session::new(limits(1, 100, 2));
        let big = message(QoS::AtLeastOnce, b"abc");
        assert_eq!(session.enqueue(big.clone()), Some(big));
        assert_eq!(session.queued_len(), 0);
    }

    #[test]
    fn an_emptied_queue_releases_its_allocation() {
        let mut session = Session::new(limits(1, 100, 100));
        session.enqueue(message(QoS::AtLeastOnce, b"a"));
        assert!(session.queue.capacity() > 0);
        let _ = session.pop_queued();
        assert_eq!(session.queue.capacity(), 0);
        assert_eq!(session.queued_bytes(), 0);
    }

    #[test]
    fn a_fresh_peer_completes_pubrels_and_resends_publishes_as_new() {
        let mut flows = Flows::new(Session::new(limits(10, 10, 100)));
        flows.publish(message(QoS::ExactlyOnce, b"q2"), 7, false);
        flows.publish(message(QoS::AtLeastOnce, b"q1"), 8, false);
        let mut out = OutBuf::new();
        while flows.transmit_one(&mut out).is_some() {}
        let first = PacketId::new(1).expect("non-zero");
        assert_eq!(flows.on_pubrec(first), Ok(()));
        flows.session.incoming.insert(9);
        assert_eq!(flows.session.reset_for_fresh_peer(), vec![7]);
        assert_eq!(flows.session.inflight_len(), 1);
        assert_eq!(flows.session.incoming_unreleased_len(), 0);
        assert!(matches!(
            flows.session.outgoing.get(&2),
            Some(Outgoing::Publish { sent: false, .. })
        ));
    }

    #[test]
    fn an_ack_of_the_wrong_kind_is_a_protocol_error() {
        let mut flows = Flows::new(Session::default());
        flows.publish(message(QoS::ExactlyOnce, b"x"), 1, false);
        let id = PacketId::new(1).expect("non-zero");
        assert_eq!(flows.on_puback(id), Err(ProtocolError::UnknownPacketId(1)));
        assert_eq!(flows.on_pubcomp(id), Err(ProtocolError::UnknownPacketId(1)));
        assert_eq!(
            flows.on_request_ack(id, true),
            Err(ProtocolError::UnknownPacketId(1))
        );
    }

    #[test]
    fn an_ack_for_an_unknown_packet_id_is_ignored() {
        let mut flows = Flows::new(Session::default());
        let id = PacketId::new(5).expect("non-zero");
        assert_eq!(flows.on_puback(id), Ok(None));
        assert_eq!(flows.on_pubrec(id), Ok(()));
        assert_eq!(flows.on_pubcomp(id), Ok(None));
        assert!(flows.tx.is_empty());
    }

    #[test]
    fn incoming_qos2_ids_are_capped_by_max_incoming_unreleased() {
        let mut flows = Flows::new(Session::new(limits(1, 1, 1)));
        let publish = |id: u16| Publish {
            dup: false,
            qos_pid: QosPid::ExactlyOnce(PacketId::new(id).expect("non-zero")),
            retain: false,
            topic: TopicName::new("t").expect("valid topic"),
            payload: Bytes::new(),
        };
        assert!(matches!(flows.on_publish(publish(1)), Ok(Some(_))));
        assert!(matches!(flows.on_publish(publish(1)), Ok(None)));
        assert!(matches!(flows.on_publish(publish(2)), Ok(Some(_))));
        assert_eq!(
            flows.on_publish(publish(3)),
            Err(ProtocolError::TooManyUnreleased(3))
        );
    }

    #[test]
    fn a_message_too_large_for_mqtt_is_not_encodable() {
        let small = message(QoS::AtLeastOnce, b"x");
        assert!(small.is_encodable());
        let huge = Message {
            payload: Bytes::from(vec![0u8; MAX_REMAINING_LENGTH]),
            ..small
        };
        assert!(!huge.is_encodable());
    }
}
