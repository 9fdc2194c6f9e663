//! One task per client connection: the tokio shell around the codec's [`ServerConnection`].
//!
//! The task feeds the state machine bytes from the socket, timeouts and the broker's decisions,
//! and drains its outputs after every input: events (CONNECT, PUBLISH, SUBSCRIBE, …) are acted
//! on here by asking the access control, the session registry and the router; bytes to send
//! collect in an [`OutBuf`] that is written with one vectored write per wake-up. Nothing
//! MQTT-specific is parsed here: every protocol rule lives in the state machine.
//!
//! Backpressure, towards subscribers: messages are taken from the mailbox only while the
//! pending output is under [`WRITE_HIGH_WATER`] and, for QoS 1/2, only as many as the in-flight
//! window has free slots ([`ServerConnection::publish_room`]), so the mailbox holds the whole
//! backlog; the socket is read only while the pending output is under [`READ_PAUSE`]. Towards
//! publishers: when a message it published finds a subscriber's mailbox at the high-water mark,
//! the connection stops reading its socket (and so stops acknowledging) until that mailbox is
//! under the low-water mark, or until the subscriber is marked stalled after taking nothing for
//! [`STALL_TIMEOUT`] (see [`crate::sessions`] for the marks). While it waits, its keep-alive is
//! not judged (the client may well be sending; it is the broker that does not read).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use mqtt_codec::packet::{Packet, SubAckReturnCode};
use mqtt_codec::server::{CloseReason, PacketCounts, ServerConnection, ServerEvent};
use mqtt_codec::session::{Message, Session};
use mqtt_codec::{
    Connect, ConnectReturnCode, LastWill, OutBuf, Publish, QoS, Subscribe, TopicFilter, TopicName,
    Unsubscribe,
};
use rand::distributions::{Alphanumeric, DistString};

use crate::broker::Shared;
use crate::events::BrokerEvent;
use crate::hooks::{Action, ClientInfo, ConnectRequest};
use crate::sessions::{Online, Subscriber, STALL_TIMEOUT};
use crate::store::StoredSession;
use crate::timers::IDLE_RECHECK;
use crate::transport::Transport;

/// Stop taking messages from the mailbox while this much output waits for the socket.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Stop reading the socket while this much output waits (a peer that sends but never reads).
pub(crate) const READ_PAUSE: usize = 1024 * 1024;
/// How long a connection may take to flush its last bytes once it is closing.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// How long a new connection waits for the one it takes over to let go of the session.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(5);

/// A listener's name and live connection count.
#[derive(Debug)]
pub(crate) struct ListenerState {
    pub(crate) name: Arc<str>,
    pub(crate) max_connections: usize,
    pub(crate) connections: AtomicUsize,
}

/// One counted connection on a listener; gives its slot back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<ListenerState>);

impl ListenerState {
    /// Takes a connection slot, or `None` when `max_connections` are already served.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let max = if self.max_connections == 0 {
            usize::MAX
        } else {
            self.max_connections
        };
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Still running.
    Open,
    /// DISCONNECT received: the will is discarded ([MQTT-3.1.2-10]).
    Graceful,
    /// The broker is shutting down.
    Shutdown,
    /// Lost without DISCONNECT: the will is published ([MQTT-3.1.2-8]).
    Abnormal(String),
}

/// The subscribers this connection waits on before it reads more (backpressure).
struct Blocked {
    /// Each with its `taken` count when last looked at.
    subs: Vec<(Arc<Subscriber>, u64)>,
    /// When to look at their progress next.
    check_at: std::time::Instant,
}

/// A publisher waits on at most this many subscribers at once (the others are met again on
/// its next messages).
const MAX_WAITED: usize = 256;

thread_local! {
    /// Messages taken from a mailbox on their way into the state machine: per worker thread,
    /// so taking allocates nothing once warmed up and idle connections hold none of it.
    static BATCH: RefCell<Vec<Message>> = const { RefCell::new(Vec::new()) };
}

/// The batch vector above this capacity is released after use.
const BATCH_KEEP: usize = 4096;

struct Attached {
    sub: Arc<Subscriber>,
    info: Arc<ClientInfo>,
    /// Boxed: most clients have none, and every connection's task stays small.
    will: Option<Box<LastWill>>,
}

struct Conn<T> {
    io: T,
    shared: Arc<Shared>,
    machine: ServerConnection,
    out: OutBuf,
    rbuf: BytesMut,
    /// This connection's id (from 1): its key in the timer wheel and in takeover.
    conn_id: u64,
    /// The tick of this connection's entry in the broker's timer wheel; 0: none.
    armed: u64,
    attached: Option<Attached>,
    end: End,
    /// The listener's connection slot (and name), given back when the connection is gone.
    slot: Slot,
    /// The in-flight counts (incoming unreleased, outgoing unacknowledged) already added to the
    /// broker's stats (each at most 65,535: they hold packet ids).
    inflight: (u32, u32),
    /// The subscribers this connection waits on before reading more, if any (boxed: rare, and
    /// every connection's task stays small).
    blocked: Option<Box<Blocked>>,
    /// Messages were left in the mailbox: take more as soon as there is room.
    more_mail: bool,
}

/// An event whose handling waits for a plugin (authentication, topic checks).
enum Waits {
    Connect(Box<Connect>),
    Subscribe(Subscribe),
    /// A PUBLISH whose topic the access control must allow.
    Publish(Message),
}

enum Step {
    /// Broker shutdown, or a takeover of the session.
    Kicked,
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Mail,
    /// The subscriber this connection waited on has room again.
    Room,
    Timer,
}

/// Serves one connection until it closes. Shutdown is signalled through the broker's timer
/// wheel ([`crate::timers::Timers::stop`]); dropping the future drops the connection without
/// publishing its will.
pub(crate) fn serve<T: Transport>(
    io: T,
    shared: Arc<Shared>,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    // Not an `async fn`: the task is exactly `Conn::run`, without a wrapper holding a second
    // copy of the connection state.
    let mut machine = ServerConnection::new(shared.server_config.clone(), now());
    // Packet events cost a clone per packet: only traced when a plugin listens.
    machine.set_packet_trace(shared.events.wants_packets());
    let mut conn = Conn {
        io,
        conn_id: shared.next_conn_id(),
        armed: 0,
        shared,
        machine,
        out: OutBuf::new(),
        rbuf: BytesMut::new(),
        attached: None,
        end: End::Open,
        slot,
        inflight: (0, 0),
        blocked: None,
        more_mail: false,
    };
    // `conn` is used in place through `&mut`: an `async fn run(self)` would hold a second copy
    // of the connection state in the task (the argument, and the local it is moved into).
    async move {
        conn.run().await;
        // Boxed: it runs once, at the end; its state need not be part of every task.
        Box::pin(conn.finish()).await;
    }
}

/// The current time as the state machine sees it (steerable by tokio's paused clock in tests).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl<T: Transport> Conn<T> {
    /// Drives the connection until it closes. The task keeps no future of its own across
    /// iterations: the socket, the mailbox signal, the takeover flag and the timer wheel are
    /// polled by [`Conn::poll_step`], so an idle connection's task is little more than `Conn`.
    async fn run(&mut self) {
        loop {
            self.process_outputs().await;
            if self.machine.is_closed() || self.end != End::Open {
                break;
            }
            if self.more_mail && self.has_room_for_mail() {
                self.drain_mailbox();
                continue;
            }
            match poll_fn(|cx| self.poll_step(cx)).await {
                Step::Kicked => {
                    self.end = if self.shared.timers.is_stopping() {
                        End::Shutdown
                    } else {
                        End::Abnormal(
                            "taken over by a new connection with the same client id".into(),
                        )
                    };
                    self.machine.close();
                }
                Step::Read(Ok(0)) => {
                    self.lost("connection closed by the client without DISCONNECT")
                }
                Step::Read(Err(e)) => self.lost(&format!("read error: {e}")),
                Step::Read(Ok(n)) => {
                    self.shared.stats.bytes_received(n);
                    if let Err(e) = self.machine.handle_read(now(), &mut self.rbuf) {
                        tracing::debug!(client_id = self.client_id(), peer = ?self.peer(), "protocol error: {e}");
                    }
                    if self.rbuf.is_empty() {
                        // An idle connection holds no read buffer.
                        self.rbuf = BytesMut::new();
                    }
                }
                Step::Wrote(Ok(n)) => {
                    self.shared.stats.bytes_sent(n);
                    self.out.shrink_if_empty();
                }
                Step::Wrote(Err(e)) => self.lost(&format!("write error: {e}")),
                Step::Mail => self.drain_mailbox(),
                Step::Room => self.blocked = None,
                Step::Timer => {
                    if self.blocked.is_some() {
                        self.check_blocked();
                    } else {
                        self.machine.handle_timeout(now());
                    }
                }
            }
        }
        let armed = std::mem::take(&mut self.armed);
        self.shared.timers.disarm(self.conn_id, armed);
    }

    /// What to do next, polled in priority order: shutdown or takeover, write, room in a
    /// subscriber waited on, read, mailbox, deadline. Registers the task's waker with each
    /// source it waits on (the timer wheel only when the deadline moves earlier).
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let timers = &self.shared.timers;
        if timers.is_stopping() {
            return Poll::Ready(Step::Kicked);
        }
        if let Some(attached) = &self.attached {
            // Registered before the flags are read, so a signal in between is not lost.
            attached.sub.wake.register(cx.waker());
            if attached.sub.is_kicked(self.conn_id) {
                return Poll::Ready(Step::Kicked);
            }
        }
        if !self.out.is_empty() {
            if let Poll::Ready(r) = self.io.poll_write_from(cx, &mut self.out) {
                return Poll::Ready(Step::Wrote(r));
            }
        }
        if let Some(blocked) = &mut self.blocked {
            let limits = &self.shared.router.mailbox;
            blocked
                .subs
                .retain(|(sub, _)| sub.poll_room(cx, limits).is_pending());
            if blocked.subs.is_empty() {
                return Poll::Ready(Step::Room);
            }
        }
        let reading =
            self.blocked.is_none() && self.out.len() < READ_PAUSE && self.machine.wants_read();
        if reading {
            if let Poll::Ready(r) = self.io.poll_read_into(cx, &mut self.rbuf) {
                return Poll::Ready(Step::Read(r));
            }
        }
        if let Some(attached) = &self.attached {
            if !self.more_mail && self.out.len() < WRITE_HIGH_WATER && attached.sub.wake.take() {
                return Poll::Ready(Step::Mail);
            }
        }
        if self.armed != 0 && timers.has_fired(self.armed) {
            self.armed = 0;
            return Poll::Ready(Step::Timer);
        }
        // While waiting on a subscriber the socket is not read, so keep-alive is not judged;
        // the subscriber's progress is.
        let deadline = match &self.blocked {
            Some(blocked) => Some(blocked.check_at),
            None => self.machine.poll_timeout(),
        };
        let tick = timers.tick_at_or_after(deadline.unwrap_or_else(|| now() + IDLE_RECHECK));
        // The keep-alive deadline moves with every packet received; re-arming each time would
        // lock the wheel per read. A later deadline keeps the entry at the earlier one: it
        // fires early, `handle_timeout` is a no-op, and the entry is re-armed then.
        if self.armed == 0 || tick < self.armed {
            if !timers.arm(self.conn_id, self.armed, tick, cx.waker()) {
                self.armed = 0;
                return Poll::Ready(Step::Timer);
            }
            self.armed = tick;
        }
        Poll::Pending
    }

    /// Whether taking more mail now could move anything into the machine.
    fn has_room_for_mail(&self) -> bool {
        self.out.len() < WRITE_HIGH_WATER && self.machine.publish_room() > 0
    }

    /// The subscribers this connection waits on are due for a progress check: those that took
    /// nothing since the last one are marked stalled and no longer waited on.
    fn check_blocked(&mut self) {
        let Some(blocked) = &mut self.blocked else {
            return;
        };
        let now = now();
        if now < blocked.check_at {
            return;
        }
        let publisher = self.attached.as_ref().map_or("", |a| &*a.info.client_id);
        blocked.subs.retain_mut(|(sub, seen)| {
            let taken = sub.taken.load(Ordering::Relaxed);
            if taken != *seen {
                *seen = taken;
                return true;
            }
            tracing::warn!(
                client_id = %sub.client_id,
                publisher,
                "a subscriber took no message for {STALL_TIMEOUT:?}: marked stalled, its publishers no longer wait for it and messages beyond its queue bounds are dropped"
            );
            sub.mark_stalled();
            false
        });
        blocked.check_at = now + STALL_TIMEOUT;
        if blocked.subs.is_empty() {
            self.blocked = None;
        }
    }

    fn client_id(&self) -> &str {
        self.attached.as_ref().map_or("", |a| &a.info.client_id)
    }

    /// The peer's address, for log lines (asked of the socket until the client is attached).
    fn peer(&self) -> Option<SocketAddr> {
        match &self.attached {
            Some(a) => a.info.remote_addr,
            None => self.io.peer_addr(),
        }
    }

    fn lost(&mut self, why: &str) {
        if self.end == End::Open {
            self.end = End::Abnormal(why.to_owned());
        }
    }

    /// Acts on every pending event, then moves every pending byte into `out`.
    async fn process_outputs(&mut self) {
        // What waits for a plugin is boxed, and the rest starts over after it: this future
        // stays a few words in every connection's task.
        // (`waits` is moved into the box at once, so it takes no room in this future either.)
        while let Some(waiting) = self
            .process_ready()
            .map(|waits| Box::pin(self.handle_waiting(waits)))
        {
            waiting.await;
        }
    }

    /// [`Conn::process_outputs`] up to the first event that has to wait, which it returns.
    fn process_ready(&mut self) -> Option<Waits> {
        loop {
            while let Some(event) = self.machine.poll_event() {
                if let Some(waits) = self.handle_event(event) {
                    return Some(waits);
                }
            }
            // Bytes left undecoded while a CONNECT awaited our decision are fed again now.
            if self.rbuf.is_empty() || !self.machine.is_connected() || !self.machine.wants_read() {
                break;
            }
            let before = self.rbuf.len();
            if let Err(e) = self.machine.handle_read(now(), &mut self.rbuf) {
                tracing::debug!(client_id = self.client_id(), peer = ?self.peer(), "protocol error: {e}");
            }
            if self.rbuf.len() == before {
                break;
            }
        }
        while self.machine.poll_transmit(&mut self.out) {}
        // With the packet trace on, transmitting reported the packets sent.
        while let Some(event) = self.machine.poll_event() {
            if let Some(waits) = self.handle_event(event) {
                return Some(waits);
            }
        }
        self.update_stats();
        None
    }

    /// Adds what the machine counted since the last call to the broker's stats: a few integer
    /// comparisons per call, atomics only when something changed.
    fn update_stats(&mut self) {
        if self.machine.packet_counts() != PacketCounts::default() {
            let counts = self.machine.take_packet_counts();
            self.shared.stats.packets(
                counts.received,
                counts.publish_received,
                counts.sent,
                counts.publish_sent,
            );
        }
        let session = self.machine.session();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let inflight = (
            count(session.incoming_unreleased_len()),
            count(session.inflight_len()),
        );
        if inflight != self.inflight {
            let widen = |(a, b): (u32, u32)| (a as usize, b as usize);
            self.shared
                .stats
                .inflight_changed(widen(self.inflight), widen(inflight));
            self.inflight = inflight;
        }
    }

    /// Acts on `event` at once, or hands back what has to wait for a plugin (the caller boxes
    /// that: keeping those futures out of the task keeps every idle connection's task small,
    /// and the PUBLISH path stays synchronous unless topics are filtered).
    fn handle_event(&mut self, event: ServerEvent) -> Option<Waits> {
        match event {
            ServerEvent::PacketReceived(packet) => self.emit_packet(false, &packet),
            ServerEvent::PacketSent(packet) => self.emit_packet(true, &packet),
            ServerEvent::Connect(connect) => return Some(Waits::Connect(connect)),
            ServerEvent::Publish(publish) => return self.on_publish(publish).map(Waits::Publish),
            ServerEvent::Subscribe(subscribe) => return Some(Waits::Subscribe(subscribe)),
            ServerEvent::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
            ServerEvent::Delivered(_) => {}
            ServerEvent::Disconnect => {
                if let Some(a) = &mut self.attached {
                    a.will = None;
                }
                if self.end == End::Open {
                    self.end = End::Graceful;
                }
            }
            ServerEvent::Closed(reason) => {
                let why = match reason {
                    CloseReason::Protocol(e) => format!("protocol violation: {e}"),
                    CloseReason::ConnectTimeout => {
                        "no CONNECT within the connect timeout".to_owned()
                    }
                    CloseReason::KeepAliveTimeout => {
                        "keep-alive expired [MQTT-3.1.2-24]".to_owned()
                    }
                };
                self.lost(&why);
            }
        }
        None
    }

    /// The events that wait for authentication or topic checks.
    async fn handle_waiting(&mut self, waits: Waits) {
        match waits {
            Waits::Connect(connect) => self.on_connect(*connect).await,
            Waits::Subscribe(subscribe) => self.on_subscribe(subscribe).await,
            Waits::Publish(message) => self.on_checked_publish(message).await,
        }
    }

    fn emit_packet(&self, sent: bool, packet: &Packet) {
        self.shared
            .events
            .emit_packet(self.attached.as_ref().map(|a| &*a.info), sent, packet);
    }

    async fn on_connect(&mut self, connect: Connect) {
        let client_id: Arc<str> = if connect.client_id.is_empty() {
            if !connect.clean_session {
                // [MQTT-3.1.3-8] an empty client id requires clean session 1.
                tracing::info!(peer = ?self.peer(), "refused a CONNECT with an empty client id and clean session 0");
                self.machine.refuse(ConnectReturnCode::IdentifierRejected);
                return;
            }
            // [MQTT-3.1.3-6] assign a unique id, in aMQTT's format.
            format!(
                "amqtt/{}",
                Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
            )
            .into()
        } else {
            connect.client_id.as_str().into()
        };
        let info = Arc::new(ClientInfo {
            client_id,
            username: connect.username.as_deref().map(Arc::from),
            remote_addr: self.io.peer_addr(),
            listener: self.slot.0.name.clone(),
            clean_session: connect.clean_session,
            keep_alive: connect.keep_alive.0,
        });
        let code = self
            .shared
            .access
            .authenticate(ConnectRequest {
                client: &info,
                password: connect.password.as_ref(),
            })
            .await;
        if code != ConnectReturnCode::Accepted {
            tracing::info!(client_id = %info.client_id, peer = ?self.peer(), "refused CONNECT: {code}");
            self.machine.refuse(code);
            return;
        }
        let Some((sub, session, session_present)) =
            Self::attach(&self.shared, self.conn_id, &info).await
        else {
            self.machine.refuse(ConnectReturnCode::ServerUnavailable);
            return;
        };
        self.machine.accept(now(), session, session_present);
        self.shared.stats.client_connected();
        tracing::info!(
            client_id = %info.client_id,
            peer = ?info.remote_addr,
            listener = %info.listener,
            clean_session = info.clean_session,
            keep_alive = info.keep_alive,
            session_present,
            "client connected"
        );
        self.shared.events.emit(|| BrokerEvent::ClientConnected {
            client: &info,
            session_present,
        });
        self.attached = Some(Attached {
            sub,
            info,
            // Copied out of the read buffer it was decoded from, which it would otherwise pin
            // for the life of the connection.
            will: connect.will.map(|will| {
                Box::new(LastWill {
                    topic: detached_topic(will.topic),
                    payload: Bytes::copy_from_slice(&will.payload),
                    ..will
                })
            }),
        });
    }

    /// Makes this connection the one driving the session of `info.client_id`, taking it over
    /// from a connection that still drives it ([MQTT-3.1.4-2]). Returns the session to resume
    /// and whether it was present; `None` when the old connection did not let go in time or
    /// the broker is shutting down.
    async fn attach(
        shared: &Shared,
        conn_id: u64,
        info: &Arc<ClientInfo>,
    ) -> Option<(Arc<Subscriber>, Session, bool)> {
        let deadline = tokio::time::Instant::now() + TAKEOVER_DEADLINE;
        loop {
            let sub = shared.registry.get_or_create(info);
            let released = sub.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut state = sub.state.lock();
                if state.removed {
                    // Removed between the lookup and the lock; a fresh entry is made next turn.
                    continue;
                }
                match &state.online {
                    Some(old) => {
                        tracing::info!(
                            client_id = %info.client_id,
                            old_connection = old.conn_id,
                            new_connection = conn_id,
                            "taking over the session from the previous connection"
                        );
                        sub.kick(old.conn_id);
                    }
                    None => {
                        state.online = Some(Online { conn_id });
                        state.info = info.clone();
                        let store = &shared.router.sessions;
                        let resumed = if info.clean_session {
                            // [MQTT-3.1.2-6] clean session 1 discards any previous session.
                            shared.router.unsubscribe_all(&sub, &mut state);
                            state.take_mailbox();
                            store.remove(&info.client_id);
                            None
                        } else {
                            store.take(&info.client_id)
                        };
                        state.persistent = !info.clean_session;
                        state.stalled = false;
                        drop(state);
                        let present = resumed.is_some();
                        let session = resumed
                            .map_or_else(|| Session::new(shared.session_limits), |s| s.session);
                        return Some((sub.clone(), session, present));
                    }
                }
            }
            tokio::select! {
                _ = released => {}
                _ = shared.cancel.cancelled() => return None,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(client_id = %info.client_id, "the previous connection did not release the session in time");
                    return None;
                }
            }
        }
    }

    /// Checks an incoming PUBLISH and routes it; returns it instead when the access control
    /// filters topics and must be asked first ([`Conn::on_checked_publish`]).
    fn on_publish(&mut self, publish: Publish) -> Option<Message> {
        let Some(attached) = &self.attached else {
            return None;
        };
        let shared = &self.shared;
        let qos_pid = publish.qos_pid;
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: qos_pid.qos(),
            retain: publish.retain,
        };
        // As in aMQTT, `broker_message_received` fires before the topic checks, so plugins
        // see every inbound message (aMQTT's `$` re-broadcast sample relies on it).
        shared.events.emit(|| BrokerEvent::MessageReceived {
            client: &attached.info,
            message: &message,
        });
        let topic = &message.topic;
        if is_sys_topic(topic.as_str()) {
            // [MQTT-4.7.2] `$SYS` is the broker's; clients may not publish there.
            tracing::warn!(client_id = %attached.info.client_id, %topic, "dropped a PUBLISH to a $SYS topic");
            return None;
        }
        if !within_topic_limits(&shared.config.limits, topic.as_str()) {
            // A SUBSCRIBE can be refused with 0x80, a PUBLISH cannot: like mosquitto since
            // CVE-2019-11779, a topic deeper than `max_topic_levels` (or longer than
            // `max_topic_length`) closes the connection.
            tracing::warn!(client_id = %attached.info.client_id, "closing: a PUBLISH whose topic exceeds max_topic_levels or max_topic_length");
            // Nobody receives it, so the client must not see it acknowledged.
            self.machine.withdraw_ack(qos_pid);
            self.machine.close();
            self.lost("PUBLISH topic beyond max_topic_levels or max_topic_length");
            return None;
        }
        if shared.filters_topics {
            return Some(message);
        }
        self.route(message);
        None
    }

    /// Routes a PUBLISH once the access control allowed its topic.
    async fn on_checked_publish(&mut self, message: Message) {
        let Some(attached) = &self.attached else {
            return;
        };
        let topic = &message.topic;
        if !self
            .shared
            .access
            .check_topic_async(&attached.info, topic.as_str(), Action::Publish)
            .await
        {
            tracing::info!(client_id = %attached.info.client_id, %topic, "PUBLISH denied by topic filtering");
            return;
        }
        self.route(message);
    }

    /// Routes an incoming message; the subscribers it found above their high-water mark are
    /// waited on before reading more.
    fn route(&mut self, message: Message) {
        let Some(attached) = &self.attached else {
            return;
        };
        let shared = &self.shared;
        let blocked = &mut self.blocked;
        shared
            .router
            .route_with(Some(&attached.info), &message, &mut |sub| {
                // A client subscribed to what it publishes would wait on itself: not reading
                // means not reading its own acknowledgements either.
                if Arc::ptr_eq(sub, &attached.sub) {
                    return;
                }
                let blocked = blocked.get_or_insert_with(|| {
                    Box::new(Blocked {
                        subs: Vec::new(),
                        check_at: now() + STALL_TIMEOUT,
                    })
                });
                if blocked.subs.len() < MAX_WAITED
                    && !blocked.subs.iter().any(|(s, _)| Arc::ptr_eq(s, sub))
                {
                    blocked
                        .subs
                        .push((sub.clone(), sub.taken.load(Ordering::Relaxed)));
                }
            });
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) {
        let Some(attached) = &self.attached else {
            return;
        };
        let shared = &self.shared;
        let mut allowed = Vec::with_capacity(subscribe.filters.len());
        for (filter, _) in &subscribe.filters {
            let ok = within_topic_limits(&shared.config.limits, filter.as_str())
                && (!shared.filters_topics
                    || shared
                        .access
                        .check_topic_async(&attached.info, filter.as_str(), Action::Subscribe)
                        .await);
            if !ok {
                tracing::info!(client_id = %attached.info.client_id, %filter, "SUBSCRIBE refused");
            }
            allowed.push(ok);
        }
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::with_capacity(subscribe.filters.len());
        {
            let mut state = attached.sub.state.lock();
            for ((filter, qos), ok) in subscribe.filters.into_iter().zip(allowed) {
                if !ok {
                    codes.push(SubAckReturnCode::Failure);
                    continue;
                }
                // The subscription outlives the read buffer the filter was decoded from.
                let kept = TopicFilter::new(filter.as_str()).unwrap_or_else(|_| filter.clone());
                shared
                    .router
                    .subscribe(&attached.sub, &mut state, kept, qos);
                codes.push(SubAckReturnCode::Success(qos));
                granted.push((filter, qos));
            }
        }
        self.machine.suback(subscribe.packet_id, codes);
        let now = now();
        let mut retained = Vec::new();
        for (filter, qos) in &granted {
            tracing::debug!(client_id = %attached.info.client_id, %filter, qos = qos.as_u8(), "subscribed");
            shared.events.emit(|| BrokerEvent::ClientSubscribed {
                client: &attached.info,
                filter,
                qos: *qos,
            });
            // [MQTT-3.3.1-6] matching retained messages go to the new subscription, retain 1.
            retained.clear();
            shared.router.retained.matching(filter, &mut retained);
            for mut message in retained.drain(..) {
                if shared.filters_topics
                    && !shared.access.check_topic(
                        &attached.info,
                        message.topic.as_str(),
                        Action::Receive,
                    )
                {
                    continue;
                }
                message.qos = message.qos.min(*qos);
                message.retain = true;
                if let Some(dropped) = self.machine.publish(now, message) {
                    tracing::debug!(client_id = %attached.info.client_id, topic = %dropped.topic, "retained message dropped: queue full");
                }
            }
        }
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let Some(attached) = &self.attached else {
            return;
        };
        {
            let mut state = attached.sub.state.lock();
            for filter in &unsubscribe.filters {
                if self
                    .shared
                    .router
                    .unsubscribe(&attached.sub, &mut state, filter)
                {
                    self.shared.events.emit(|| BrokerEvent::ClientUnsubscribed {
                        client: &attached.info,
                        filter,
                    });
                }
            }
        }
        self.machine.unsuback(unsubscribe.packet_id);
    }

    /// Moves what the machine can send at once from the mailbox into it: QoS 1/2 messages while
    /// the in-flight window has room, and up to [`WRITE_HIGH_WATER`] bytes of output.
    fn drain_mailbox(&mut self) {
        let Some(attached) = &self.attached else {
            self.more_mail = false;
            return;
        };
        let window = self.machine.publish_room();
        let budget = WRITE_HIGH_WATER.saturating_sub(self.out.len());
        let limits = &self.shared.router.mailbox;
        let mut fresh = Vec::new();
        BATCH.with(|cell| {
            let mut borrowed = cell.try_borrow_mut();
            let batch = match &mut borrowed {
                Ok(batch) => &mut **batch,
                Err(_) => &mut fresh,
            };
            self.more_mail = attached.sub.take(limits, window, budget, batch);
            let now = now();
            for message in batch.drain(..) {
                if let Some(dropped) = self.machine.publish(now, message) {
                    self.shared.stats.publish_dropped();
                    let n = attached.sub.count_drop();
                    if n == 1 || n.is_multiple_of(1000) {
                        tracing::warn!(client_id = %attached.info.client_id, topic = %dropped.topic, dropped_total = n, "dropped a message: the client's session queue is full");
                    }
                }
            }
            if batch.capacity() > BATCH_KEEP {
                *batch = Vec::new();
            }
        });
    }

    /// Flushes, publishes the will if the end was abnormal, and stores or discards the session.
    async fn finish(mut self) {
        while self.machine.poll_transmit(&mut self.out) {}
        // Only the packet trace can still report something once the machine is closed.
        while let Some(event) = self.machine.poll_event() {
            match event {
                ServerEvent::PacketReceived(packet) => self.emit_packet(false, &packet),
                ServerEvent::PacketSent(packet) => self.emit_packet(true, &packet),
                _ => {}
            }
        }
        self.update_stats();
        // The session's in-flight messages leave the connected clients' count.
        let (incoming, outgoing) = self.inflight;
        self.shared
            .stats
            .inflight_changed((incoming as usize, outgoing as usize), (0, 0));
        self.inflight = (0, 0);
        if self.end == End::Open {
            self.end = End::Abnormal("closed by the protocol state machine".into());
        }
        let Conn { io, out, .. } = &mut self;
        let flush = async {
            while !out.is_empty() {
                poll_fn(|cx| io.poll_write_from(cx, out)).await?;
            }
            poll_fn(|cx| io.poll_close(cx)).await
        };
        if let Ok(Err(e)) | Err(e) = tokio::time::timeout(FLUSH_DEADLINE, flush)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
        {
            tracing::debug!(peer = ?self.peer(), "closing flush did not complete: {e}");
        }
        let Some(attached) = self.attached.take() else {
            return;
        };
        let shared = self.shared.clone();
        let (graceful, why) = match &self.end {
            End::Graceful => (true, "DISCONNECT".to_owned()),
            End::Shutdown => (false, "broker shutdown".to_owned()),
            End::Abnormal(why) => (false, why.clone()),
            End::Open => (false, String::new()),
        };
        if let (End::Abnormal(_), Some(will)) = (&self.end, attached.will) {
            publish_will(&shared, &attached.info, *will);
        }
        let session = self.machine.into_session();
        let sub = attached.sub;
        let waiters = {
            let mut state = sub.state.lock();
            state.online = None;
            // A stored session must not keep this task's memory alive through its waker.
            sub.wake.clear();
            let mailbox = state.take_mailbox();
            if state.persistent && !state.removed {
                let mut session = session;
                for message in mailbox.into_iter().filter(|m| m.qos != QoS::AtMostOnce) {
                    if let Some(dropped) = session.enqueue(message) {
                        tracing::warn!(client_id = %sub.client_id, topic = %dropped.topic, "dropped a queued message: the session queue is full");
                        sub.count_drop();
                        shared.stats.publish_dropped();
                    }
                }
                let subscriptions = state
                    .subscriptions
                    .iter()
                    .map(|(f, q)| (f.clone(), *q))
                    .collect();
                shared.router.sessions.save(
                    &sub.client_id,
                    StoredSession {
                        session,
                        subscriptions,
                        disconnected_at: SystemTime::now(),
                    },
                );
            } else {
                shared.router.unsubscribe_all(&sub, &mut state);
                state.removed = true;
                shared.registry.remove(&sub);
            }
            // Publishers waiting on this connection's mailbox need not wait any more.
            Subscriber::release_waiters(&mut state)
        };
        for waker in waiters {
            waker.wake();
        }
        sub.released.notify_waiters();
        tracing::info!(client_id = %attached.info.client_id, reason = %why, "client disconnected");
        shared.stats.client_disconnected();
        shared.events.emit(|| BrokerEvent::ClientDisconnected {
            client: &attached.info,
            graceful,
        });
    }
}

/// Publishes a will on abnormal loss of the connection ([MQTT-3.1.2-8]), with its QoS and
/// retain flag ([MQTT-3.1.2-15], [MQTT-3.1.2-17]).
fn publish_will(shared: &Shared, info: &ClientInfo, will: LastWill) {
    if is_sys_topic(will.topic.as_str()) {
        tracing::warn!(client_id = %info.client_id, topic = %will.topic, "dropped a will to a $SYS topic");
        return;
    }
    if !within_topic_limits(&shared.config.limits, will.topic.as_str()) {
        tracing::warn!(client_id = %info.client_id, "dropped a will whose topic exceeds max_topic_levels or max_topic_length");
        return;
    }
    tracing::debug!(client_id = %info.client_id, topic = %will.topic, "publishing will");
    let message = Message {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
    };
    shared.router.route(Some(info), &message);
}

/// Whether a topic name or filter is within `max_topic_length` bytes and `max_topic_levels`
/// levels (CVE-2019-11779). The length is checked first: it bounds the level count's work.
fn within_topic_limits(limits: &crate::config::Limits, topic: &str) -> bool {
    // Levels are separators + 1; counting bytes is several times faster than `split` (this runs
    // for every PUBLISH).
    topic.len() <= limits.max_topic_length
        && topic.bytes().filter(|&b| b == b'/').count() < limits.max_topic_levels
}

/// A copy of `topic` that shares no buffer (a long topic decoded from a packet shares the
/// connection's read buffer).
pub(crate) fn detached_topic(topic: TopicName) -> TopicName {
    TopicName::new(topic.as_str()).unwrap_or(topic)
}

/// Whether `topic` is in the broker's `$SYS` tree (`$SYS` or `$SYS/…`, not `$SYSTEM`).
fn is_sys_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_sys_topic;

    /// The size of the future a function returns, without calling it.
    fn output_size<A, B, C, R>(_: fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_connection_future_stays_small() {
        // Every connection's task holds this future (tokio adds about 100 bytes and rounds the
        // task up to 128 bytes): it is most of an idle connection's memory (issue #8). Measured
        // 632 bytes in a debug build (a 768-byte task); each field or future kept across an
        // await adds to it, and past 656 bytes every task grows by 128.
        let size = output_size(super::serve::<crate::transport::Tcp>);
        assert!(size <= 656, "the connection future is {size} bytes");
    }

    #[test]
    fn sys_topics_are_the_sys_level_only() {
        assert!(is_sys_topic("$SYS"));
        assert!(is_sys_topic("$SYS/broker/uptime"));
        assert!(!is_sys_topic("$SYSTEM/x"));
        assert!(!is_sys_topic("SYS/x"));
    }
}
