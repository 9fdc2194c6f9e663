//! The connection task: the one task that owns the socket and the protocol state machine.
//!
//! It drives [`ClientConnection`] the sans-IO way: after every input it drains
//! `poll_event` and `poll_transmit`, then `select!`s on the socket (batched vectored writes and
//! reads), `sleep_until(poll_timeout())`, the request channel and the stop token, feeding
//! whichever fired back in with the current time (`tokio::time::Instant::now().into_std()`, so
//! paused-clock tests steer it). No MQTT rule lives here: the shell only adds what is about the
//! application and the network — waiting callers, the incoming queue, re-subscribing after a
//! reconnect without a session, and the reconnect policy.
//!
//! Incoming messages go to a bounded channel. When it is full they wait in a bounded buffer in
//! this task, and the socket keeps being read, so acknowledgements for the application's own
//! requests still arrive: a handler that publishes and awaits completion never deadlocks. Only
//! when that buffer is full too does the task stop reading (TCP back-pressure to the broker).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqtt_codec::client::{
    Backpressure, ClientCloseReason, ClientConnection, ClientEvent, ConnectOptions, Ticket,
};
use mqtt_codec::session::{Message, Session, SessionLimits};
use mqtt_codec::{ConnectReturnCode, Decoder, OutBuf, Publish, QoS, SubAckReturnCode, TopicFilter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::ClientError;
use crate::message::{ApplicationMessage, ConnectOutcome, ConnectionState};
use crate::plugins::{ClientPlugin, PluginContext};
use crate::transport::{self, BoxTransport, TransportOptions};
use crate::uri::BrokerUri;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// IO slices handed to one vectored write.
const MAX_IOVECS: usize = 64;

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A request from an [`crate::MQTTClient`] handle to the connection task.
pub(crate) enum Command {
    Publish {
        message: Message,
        reply: Option<Reply<()>>,
    },
    Subscribe {
        filters: Vec<(TopicFilter, QoS)>,
        reply: Reply<Vec<SubAckReturnCode>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        reply: Reply<()>,
    },
    Ping {
        reply: Reply<()>,
    },
    Disconnect {
        timeout: Duration,
        reply: Reply<()>,
    },
}

/// Opens the byte stream for one connection attempt.
pub(crate) enum Connector {
    /// Opens the transport a URI names.
    Uri {
        uri: BrokerUri,
        transport: TransportOptions,
        timeout: Duration,
    },
}

impl Connector {
    async fn open(&self) -> Result<BoxTransport, ClientError> {
        match self {
            Connector::Uri {
                uri,
                transport,
                timeout,
            } => transport::open(uri, transport, *timeout).await,
        }
    }

    /// The host the connection goes to, for error messages.
    fn host(&self) -> &str {
        match self {
            Connector::Uri { uri, .. } => &uri.host,
        }
    }

    fn describe(&self) -> String {
        match self {
            Connector::Uri { uri, .. } => {
                format!("{}://{}:{}", uri.scheme.as_str(), uri.host, uri.port)
            }
        }
    }
}

/// Everything the task needs to know, fixed at `connect`.
pub(crate) struct DriverConfig {
    pub connector: Connector,
    pub options: ConnectOptions,
    pub limits: SessionLimits,
    pub auto_reconnect: bool,
    pub reconnect_retries: Option<u32>,
    pub reconnect_max_interval: Duration,
    pub incoming_buffer_size: usize,
}

/// The channels between the task and the handles.
pub(crate) struct DriverChannels {
    pub commands: mpsc::Receiver<Command>,
    pub messages: mpsc::Sender<ApplicationMessage>,
    pub state: Arc<watch::Sender<ConnectionState>>,
    pub stop: CancellationToken,
    pub first: oneshot::Sender<Result<ConnectOutcome, ClientError>>,
}

/// What woke the select loop.
enum Wake {
    Stop,
    Written(std::io::Result<usize>),
    Read(std::io::Result<usize>),
    Timer,
    Room(bool),
    Command(Option<Command>),
    DisconnectDeadline,
}

/// How one connection attempt ended.
enum End {
    /// Stop token cancelled or every handle dropped: close without DISCONNECT.
    Stopped,
    /// DISCONNECT was sent and the connection closed.
    Disconnected,
    /// CONNACK refused the connection.
    Refused(ConnectReturnCode),
    /// The transport could not be opened, or the connection broke.
    Error(ClientError),
}

struct PendingPublish {
    qos: QoS,
    reply: Option<Reply<()>>,
}

struct PendingSubscribe {
    filters: Vec<(TopicFilter, QoS)>,
    reply: Option<Reply<Vec<SubAckReturnCode>>>,
}

struct PendingUnsubscribe {
    filters: Vec<TopicFilter>,
    reply: Option<Reply<()>>,
}

struct Disconnecting {
    deadline: tokio::time::Instant,
    reply: Option<Reply<()>>,
    sent: bool,
    timed_out: bool,
}

/// Decodes copies of the bytes sent and received, for the plugins' packet hooks.
struct PacketObserver {
    plugins: Vec<Arc<dyn ClientPlugin>>,
    context: PluginContext,
    received: BytesMut,
    rx_decoder: Decoder,
    tx_decoder: Decoder,
}

impl PacketObserver {
    fn on_received(&mut self, bytes: &[u8]) {
        self.received.extend_from_slice(bytes);
        // Errors are the real decoder's to report; the observer stops at the first one.
        while let Ok(Some(packet)) = self.rx_decoder.decode(&mut self.received) {
            for plugin in &self.plugins {
                plugin.on_mqtt_packet_received(&self.context, &packet);
            }
        }
    }

    fn on_sent(&mut self, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        while let Ok(Some(packet)) = self.tx_decoder.decode(&mut buf) {
            for plugin in &self.plugins {
                plugin.on_mqtt_packet_sent(&self.context, &packet);
            }
        }
    }
}

/// The connection task's state. See the module docs.
pub(crate) struct Driver {
    config: DriverConfig,
    plugins: Vec<Arc<dyn ClientPlugin>>,
    context: PluginContext,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    messages: mpsc::Sender<ApplicationMessage>,
    state: Arc<watch::Sender<ConnectionState>>,
    stop: CancellationToken,
    first: Option<oneshot::Sender<Result<ConnectOutcome, ClientError>>>,
    session: Option<Session>,
    publishes: HashMap<Ticket, PendingPublish>,
    subscribes: HashMap<Ticket, PendingSubscribe>,
    unsubscribes: HashMap<Ticket, PendingUnsubscribe>,
    pings: VecDeque<Reply<()>>,
    /// Granted subscriptions, re-subscribed when a reconnect finds no session.
    subscriptions: BTreeMap<TopicFilter, QoS>,
    /// Received messages waiting for room in the incoming channel.
    buffered: VecDeque<ApplicationMessage>,
    /// A request the state machine refused for lack of room; retried after every event.
    stalled: Option<Command>,
    disconnecting: Option<Disconnecting>,
    /// A `Reconnected` state to announce when the re-subscription with this ticket completes.
    announce: Option<(Ticket, ConnectionState)>,
    ever_connected: bool,
    attempts: u32,
}

impl Driver {
    pub(crate) fn new(
        config: DriverConfig,
        plugins: Vec<Arc<dyn ClientPlugin>>,
        channels: DriverChannels,
    ) -> Driver {
        let context = PluginContext {
            client_id: config.options.client_id.clone(),
        };
        Driver {
            config,
            plugins,
            context,
            commands: channels.commands,
            commands_open: true,
            messages: channels.messages,
            state: channels.state,
            stop: channels.stop,
            first: Some(channels.first),
            session: None,
            publishes: HashMap::new(),
            subscribes: HashMap::new(),
            unsubscribes: HashMap::new(),
            pings: VecDeque::new(),
            subscriptions: BTreeMap::new(),
            buffered: VecDeque::new(),
            stalled: None,
            disconnecting: None,
            announce: None,
            ever_connected: false,
            attempts: 0,
        }
    }

    /// Connects, reconnects per the policy, and returns when the client is done.
    pub(crate) async fn run(mut self) {
        self.state.send_replace(ConnectionState::Connecting);
        // The first attempt stands alone; each loss or initial failure starts a reconnect
        // phase of up to `reconnect_retries + 1` attempts (aMQTT's `reconnect()`).
        let mut in_phase = false;
        let mut phase_failures: u32 = 0;
        let final_state = loop {
            let (end, was_connected) = self.attempt().await;
            if self.disconnecting.is_some() {
                break ConnectionState::Disconnected;
            }
            let error = match end {
                End::Stopped | End::Disconnected => break ConnectionState::Disconnected,
                End::Refused(code) if !self.ever_connected => {
                    tracing::error!("connection refused: {code}");
                    self.give_up(ClientError::Refused(code));
                    break ConnectionState::Failed;
                }
                End::Refused(code) => ClientError::Refused(code),
                // A certificate refused by either side does not mend itself: like a refused
                // CONNACK, it ends a first connect at once (a reconnect keeps trying, in
                // case the broker is being redeployed).
                End::Error(error @ ClientError::Tls(_)) if !self.ever_connected => {
                    tracing::error!("{error}");
                    self.give_up(error);
                    break ConnectionState::Failed;
                }
                End::Error(error) => error,
            };
            self.fail_transient();
            if was_connected {
                tracing::warn!(
                    "connection to {} lost: {error}",
                    self.config.connector.describe()
                );
                self.state.send_replace(ConnectionState::Lost);
                in_phase = true;
                phase_failures = 0;
                if !self.config.auto_reconnect {
                    self.give_up(error);
                    break ConnectionState::Failed;
                }
                continue;
            }
            tracing::warn!(
                "connection attempt {} to {} failed: {error}",
                self.attempts,
                self.config.connector.describe()
            );
            if !self.config.auto_reconnect {
                self.give_up(error);
                break ConnectionState::Failed;
            }
            if !in_phase {
                in_phase = true;
                continue;
            }
            phase_failures += 1;
            if self
                .config
                .reconnect_retries
                .is_some_and(|max| phase_failures > max)
            {
                let attempts = self.attempts;
                self.give_up(ClientError::ConnectFailed {
                    attempts,
                    last: Box::new(error),
                });
                break ConnectionState::Failed;
            }
            let delay = backoff(phase_failures, self.config.reconnect_max_interval);
            tracing::info!("reconnecting in {delay:?}");
            tokio::select! {
                _ = self.stop.cancelled() => break ConnectionState::Disconnected,
                _ = tokio::time::sleep(delay) => {}
            }
        };
        self.finish(final_state);
    }

    /// One connection: open the transport, then drive the state machine until it ends.
    async fn attempt(&mut self) -> (End, bool) {
        self.attempts += 1;
        tracing::info!(
            "connecting to {} (attempt {})",
            self.config.connector.describe(),
            self.attempts
        );
        let opened = tokio::select! {
            _ = self.stop.cancelled() => return (End::Stopped, false),
            opened = self.config.connector.open() => opened,
        };
        match opened {
            Ok(stream) => self.run_connection(stream).await,
            Err(error) => (End::Error(error), false),
        }
    }

    /// The select loop of one connection. Returns how it ended and whether CONNACK accepted it.
    async fn run_connection(&mut self, stream: BoxTransport) -> (End, bool) {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let session = self
            .session
            .take()
            .unwrap_or_else(|| Session::new(self.config.limits));
        let mut conn = ClientConnection::new(self.config.options.clone(), session, now());
        let mut observer = self
            .plugins
            .iter()
            .any(|p| p.wants_packets())
            .then(|| PacketObserver {
                plugins: self.plugins.clone(),
                context: self.context.clone(),
                received: BytesMut::new(),
                rx_decoder: Decoder::new(self.config.options.max_packet_size),
                tx_decoder: Decoder::new(usize::MAX),
            });
        let mut out = OutBuf::new();
        let mut rbuf = BytesMut::new();
        let mut connected = false;
        let mut closing: Option<End> = None;
        let mut needs_flush = false;

        let end = loop {
            // Drain every output; events can queue packets and writing can emit events.
            loop {
                let mut progressed = false;
                while let Some(event) = conn.poll_event() {
                    progressed = true;
                    if let Some(end) = self.on_event(event, &mut conn, &mut connected) {
                        closing.get_or_insert(end);
                    }
                }
                if connected && closing.is_none() {
                    self.retry_stalled(&mut conn);
                    self.progress_disconnect(&mut conn);
                }
                progressed |= transmit(&mut conn, &mut out, observer.as_mut());
                if !progressed {
                    break;
                }
            }
            if (closing.is_some() || conn.is_closed()) && out.is_empty() {
                // Best effort: the connection is over either way.
                let _ = writer.flush().await;
                let _ = writer.shutdown().await;
                break closing.unwrap_or(End::Disconnected);
            }
            let timer = conn.poll_timeout().map(tokio::time::Instant::from_std);
            let disconnect_deadline = self
                .disconnecting
                .as_ref()
                .filter(|d| !d.sent)
                .map(|d| d.deadline);
            let read_open =
                closing.is_none() && self.buffered.len() < self.config.incoming_buffer_size;
            let take_commands =
                connected && closing.is_none() && self.commands_open && self.stalled.is_none();

            let wake = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Wake::Stop,
                written = write_or_flush(&mut writer, &out), if !out.is_empty() || needs_flush => {
                    Wake::Written(written)
                }
                read = read_some(&mut reader, &mut rbuf), if read_open => Wake::Read(read),
                _ = sleep_until(timer), if timer.is_some() => Wake::Timer,
                permit = self.messages.reserve(), if !self.buffered.is_empty() => Wake::Room(permit.is_ok()),
                command = self.commands.recv(), if take_commands => Wake::Command(command),
                _ = sleep_until(disconnect_deadline), if disconnect_deadline.is_some() => Wake::DisconnectDeadline,
            };
            match wake {
                Wake::Stop => break End::Stopped,
                Wake::Written(Ok(0)) if !out.is_empty() => {
                    break End::Error(std::io::Error::from(std::io::ErrorKind::WriteZero).into())
                }
                Wake::Written(Ok(n)) => {
                    if out.is_empty() {
                        needs_flush = false;
                    } else {
                        out.advance(n);
                        needs_flush = true;
                        out.shrink_if_empty();
                    }
                }
                Wake::Written(Err(e)) => {
                    break End::Error(transport::stream_error(self.config.connector.host(), e))
                }
                Wake::Read(Ok(0)) => {
                    let sent_disconnect = self.disconnecting.as_ref().is_some_and(|d| d.sent);
                    break if sent_disconnect {
                        End::Disconnected
                    } else {
                        End::Error(ClientError::ConnectionLost)
                    };
                }
                Wake::Read(Ok(n)) => {
                    if let Some(observer) = observer.as_mut() {
                        let start = rbuf.len().saturating_sub(n);
                        observer.on_received(rbuf.get(start..).unwrap_or_default());
                    }
                    if let Err(e) = conn.handle_read(now(), &mut rbuf) {
                        closing.get_or_insert(End::Error(ClientError::Protocol(e)));
                    }
                }
                Wake::Read(Err(e)) => {
                    break End::Error(transport::stream_error(self.config.connector.host(), e))
                }
                Wake::Timer => conn.handle_timeout(now()),
                Wake::Room(true) => {
                    // The permit was dropped with the select; the slot it showed is still free
                    // unless another sender took it, and this task is the only sender.
                    while let Some(message) = self.buffered.pop_front() {
                        if let Err(e) = self.messages.try_send(message) {
                            if let mpsc::error::TrySendError::Full(message) = e {
                                self.buffered.push_front(message);
                            }
                            break;
                        }
                    }
                }
                // Nobody can receive any more: the handles are gone.
                Wake::Room(false) => self.buffered.clear(),
                Wake::Command(Some(command)) => self.on_command(command, &mut conn),
                Wake::Command(None) => {
                    self.commands_open = false;
                    if self.disconnecting.is_none() {
                        // Every handle was dropped without `disconnect`: close without
                        // DISCONNECT, so the broker publishes the will.
                        break End::Stopped;
                    }
                }
                Wake::DisconnectDeadline => {
                    if let Some(d) = self.disconnecting.as_mut() {
                        d.timed_out = true;
                    }
                }
            }
        };
        self.session = Some(conn.into_session());
        (end, connected)
    }

    fn on_event(
        &mut self,
        event: ClientEvent,
        conn: &mut ClientConnection,
        connected: &mut bool,
    ) -> Option<End> {
        match event {
            ClientEvent::Connected { session_present } => {
                *connected = true;
                let state = if self.ever_connected {
                    ConnectionState::Reconnected { session_present }
                } else {
                    ConnectionState::Connected { session_present }
                };
                tracing::info!(
                    "connected to {} (session present: {session_present})",
                    self.config.connector.describe()
                );
                let resubscribe = self.ever_connected && !session_present;
                self.ever_connected = true;
                // With re-subscriptions in flight, `Reconnected` is announced at their SUBACK,
                // so an observer that sees it knows the subscriptions are back.
                match resubscribe.then(|| self.resubscribe(conn)).flatten() {
                    Some(ticket) => self.announce = Some((ticket, state)),
                    None => {
                        self.state.send_replace(state);
                    }
                }
                if let Some(first) = self.first.take() {
                    let _ = first.send(Ok(ConnectOutcome { session_present }));
                }
                None
            }
            ClientEvent::Refused(code) => Some(End::Refused(code)),
            ClientEvent::Message(publish) => {
                self.deliver(publish);
                None
            }
            ClientEvent::Published(ticket) => {
                if let Some(reply) = self.publishes.remove(&ticket).and_then(|p| p.reply) {
                    let _ = reply.send(Ok(()));
                }
                None
            }
            ClientEvent::Subscribed(ticket, codes) => {
                if self.announce.as_ref().is_some_and(|(t, _)| *t == ticket) {
                    if let Some((_, state)) = self.announce.take() {
                        self.state.send_replace(state);
                    }
                }
                if let Some(pending) = self.subscribes.remove(&ticket) {
                    for ((filter, _), code) in pending.filters.into_iter().zip(&codes) {
                        if let SubAckReturnCode::Success(qos) = code {
                            self.subscriptions.insert(filter, *qos);
                        }
                    }
                    if let Some(reply) = pending.reply {
                        let _ = reply.send(Ok(codes));
                    }
                }
                None
            }
            ClientEvent::Unsubscribed(ticket) => {
                if let Some(pending) = self.unsubscribes.remove(&ticket) {
                    for filter in &pending.filters {
                        self.subscriptions.remove(filter);
                    }
                    if let Some(reply) = pending.reply {
                        let _ = reply.send(Ok(()));
                    }
                }
                None
            }
            ClientEvent::PingResp => {
                if let Some(reply) = self.pings.pop_front() {
                    let _ = reply.send(Ok(()));
                }
                None
            }
            ClientEvent::Closed(reason) => Some(match reason {
                ClientCloseReason::Disconnected => End::Disconnected,
                ClientCloseReason::Protocol(e) => End::Error(ClientError::Protocol(e)),
                ClientCloseReason::Timeout => End::Error(ClientError::ResponseTimeout),
            }),
        }
    }

    fn on_command(&mut self, command: Command, conn: &mut ClientConnection) {
        match command {
            Command::Publish { message, reply } => {
                let qos = message.qos;
                match conn.publish(now(), message) {
                    Ok(ticket) => {
                        self.publishes.insert(ticket, PendingPublish { qos, reply });
                    }
                    Err(Backpressure(message)) => {
                        self.stalled = Some(Command::Publish { message, reply })
                    }
                }
            }
            Command::Subscribe { filters, reply } => match conn.subscribe(now(), filters.clone()) {
                Ok(ticket) => {
                    self.subscribes.insert(
                        ticket,
                        PendingSubscribe {
                            filters,
                            reply: Some(reply),
                        },
                    );
                }
                Err(Backpressure(filters)) => {
                    self.stalled = Some(Command::Subscribe { filters, reply })
                }
            },
            Command::Unsubscribe { filters, reply } => {
                match conn.unsubscribe(now(), filters.clone()) {
                    Ok(ticket) => {
                        self.unsubscribes.insert(
                            ticket,
                            PendingUnsubscribe {
                                filters,
                                reply: Some(reply),
                            },
                        );
                    }
                    Err(Backpressure(_)) => {
                        self.stalled = Some(Command::Unsubscribe { filters, reply })
                    }
                }
            }
            Command::Ping { reply } => {
                conn.ping(now());
                self.pings.push_back(reply);
            }
            Command::Disconnect { timeout, reply } => {
                // Requests already queued still go out; new ones are refused.
                self.commands.close();
                self.disconnecting = Some(Disconnecting {
                    deadline: tokio::time::Instant::now() + timeout,
                    reply: Some(reply),
                    sent: false,
                    timed_out: false,
                });
            }
        }
    }

    /// Retries the request the state machine refused for lack of room.
    fn retry_stalled(&mut self, conn: &mut ClientConnection) {
        if let Some(command) = self.stalled.take() {
            self.on_command(command, conn);
        }
    }

    /// Sends DISCONNECT once every queued QoS 1/2 publish is acknowledged, or at the deadline.
    fn progress_disconnect(&mut self, conn: &mut ClientConnection) {
        let unacknowledged = self.unacknowledged();
        let commands_open = self.commands_open;
        let stalled = self.stalled.is_some();
        let Some(d) = self.disconnecting.as_mut() else {
            return;
        };
        if d.sent {
            return;
        }
        let drained = !commands_open && !stalled && unacknowledged == 0;
        if drained || d.timed_out {
            d.sent = true;
            conn.disconnect();
        }
    }

    /// QoS 1/2 publishes not yet acknowledged, including one waiting for room.
    fn unacknowledged(&self) -> usize {
        let stalled = matches!(&self.stalled, Some(Command::Publish { message, .. }) if message.qos != QoS::AtMostOnce);
        self.publishes
            .values()
            .filter(|p| p.qos != QoS::AtMostOnce)
            .count()
            + usize::from(stalled)
    }

    /// After CONNACK on a reconnect that found no session on the broker: re-subscribe every
    /// granted filter. (Requests that were never answered are re-sent by the state machine
    /// itself, from the session, with their tickets.)
    fn resubscribe(&mut self, conn: &mut ClientConnection) -> Option<Ticket> {
        let requested: Vec<&TopicFilter> = self
            .subscribes
            .values()
            .flat_map(|p| p.filters.iter().map(|(f, _)| f))
            .collect();
        let filters: Vec<(TopicFilter, QoS)> = self
            .subscriptions
            .iter()
            .filter(|(f, _)| !requested.contains(f))
            .map(|(f, q)| (f.clone(), *q))
            .collect();
        if filters.is_empty() {
            return None;
        }
        tracing::info!(
            "no session on the broker: re-subscribing {} filters",
            filters.len()
        );
        self.issue_subscribe(
            conn,
            PendingSubscribe {
                filters,
                reply: None,
            },
        )
    }

    fn issue_subscribe(
        &mut self,
        conn: &mut ClientConnection,
        pending: PendingSubscribe,
    ) -> Option<Ticket> {
        match conn.subscribe(now(), pending.filters.clone()) {
            Ok(ticket) => {
                self.subscribes.insert(ticket, pending);
                Some(ticket)
            }
            Err(_) => {
                tracing::warn!("could not re-subscribe: no packet id free");
                None
            }
        }
    }

    /// Hands a received message to the incoming channel, or buffers it when that is full.
    fn deliver(&mut self, publish: Publish) {
        let message = ApplicationMessage::from(publish);
        if !self.buffered.is_empty() {
            self.buffered.push_back(message);
            return;
        }
        match self.messages.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => self.buffered.push_back(message),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// At the end of a connection: fail what cannot survive it (pings). Publishes,
    /// subscribes and unsubscribes stay in the session and complete after reconnecting.
    fn fail_transient(&mut self) {
        self.announce = None;
        for reply in self.pings.drain(..) {
            let _ = reply.send(Err(ClientError::ConnectionLost));
        }
    }

    /// Reconnecting is over: answer `connect` and fail everything still waiting.
    fn give_up(&mut self, error: ClientError) {
        tracing::error!("giving up on {}: {error}", self.config.connector.describe());
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(error));
        }
    }

    fn finish(mut self, state: ConnectionState) {
        let unacknowledged = self.unacknowledged();
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(ClientError::NotConnected));
        }
        if let Some(d) = self.disconnecting.take() {
            let result = if d.timed_out && unacknowledged > 0 {
                Err(ClientError::DisconnectTimeout(unacknowledged))
            } else {
                Ok(())
            };
            if let Some(reply) = d.reply {
                let _ = reply.send(result);
            }
        }
        for (_, p) in self.publishes.drain() {
            fail(p.reply, ClientError::NotConnected);
        }
        for (_, p) in self.subscribes.drain() {
            fail(p.reply, ClientError::NotConnected);
        }
        for (_, p) in self.unsubscribes.drain() {
            fail(p.reply, ClientError::NotConnected);
        }
        for reply in self.pings.drain(..) {
            let _ = reply.send(Err(ClientError::NotConnected));
        }
        if let Some(command) = self.stalled.take() {
            fail_command(command);
        }
        // Requests still queued get `NotConnected` when their reply senders drop here.
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            fail_command(command);
        }
        // Messages still buffered are handed over while someone listens, then the channel
        // closes and the message stream ends.
        let buffered = std::mem::take(&mut self.buffered);
        let messages = self.messages.clone();
        if !buffered.is_empty() {
            tokio::spawn(async move {
                for message in buffered {
                    if messages.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
        self.state.send_replace(state);
    }
}

fn fail<T>(reply: Option<Reply<T>>, error: ClientError) {
    if let Some(reply) = reply {
        let _ = reply.send(Err(error));
    }
}

fn fail_command(command: Command) {
    let error = ClientError::NotConnected;
    match command {
        Command::Publish { reply, .. } => fail(reply, error),
        Command::Subscribe { reply, .. } => fail(Some(reply), error),
        Command::Unsubscribe { reply, .. }
        | Command::Ping { reply }
        | Command::Disconnect { reply, .. } => fail(Some(reply), error),
    }
}

/// Moves everything the state machine has to send into `out`, showing it to the plugins.
/// Returns whether anything was added.
fn transmit(
    conn: &mut ClientConnection,
    out: &mut OutBuf,
    observer: Option<&mut PacketObserver>,
) -> bool {
    let before = out.len();
    match observer {
        None => while conn.poll_transmit(out) {},
        Some(observer) => {
            let mut staged = OutBuf::new();
            while conn.poll_transmit(&mut staged) {}
            if !staged.is_empty() {
                let bytes = staged.copy_to_bytes(staged.remaining());
                observer.on_sent(&bytes);
                out.push_shared(bytes);
            }
        }
    }
    out.len() != before
}

/// One vectored write of as much of `out` as the transport takes; a flush when `out` is empty.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &OutBuf,
) -> std::io::Result<usize> {
    if out.is_empty() {
        return writer.flush().await.map(|()| 0);
    }
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let n = out.chunks_vectored(&mut slices);
    writer
        .write_vectored(slices.get(..n).unwrap_or_default())
        .await
}

/// One read into `buf`; cancel-safe (nothing is lost if the future is dropped).
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    reader.read_buf(buf).await
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// aMQTT's backoff after failed attempt `n` of a phase: `min(max, 2^n s)`, plus up to 10%
/// jitter so that many clients do not reconnect in lockstep.
fn backoff(n: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1u64 << n.min(30)).min(max);
    let jitter = rand::random::<f64>() * 0.1;
    base.mul_f64(1.0 + jitter)
}

/// The current time as the state machine takes it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(10);
        for (n, secs) in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (40, 10.0)] {
            let d = backoff(n, max).as_secs_f64();
            assert!(d >= secs && d <= secs * 1.1, "attempt {n}: {d}");
        }
    }
}
