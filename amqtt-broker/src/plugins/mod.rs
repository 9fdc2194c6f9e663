//! Broker plugins: the [`BrokerPlugin`] trait, the events it receives, the registry that builds
//! plugins from aMQTT's YAML names, the manager that dispatches events and combines
//! authentication and topic-filtering answers, and every plugin aMQTT packages.
//!
//! The broker talks to plugins only through [`PluginManager`]:
//!
//! * events go through [`PluginManager::wants`] (a bit test, so nothing is built or allocated
//!   when no plugin listens) and [`PluginManager::emit`], which queues the event for each
//!   listening plugin without waiting. Each plugin has its own bounded queue and task, so a slow
//!   or panicking plugin is logged and loses its own events, and never stalls a connection;
//! * lifecycle events ([`BrokerEvent::PreStart`] …) go through [`PluginManager::fire_and_wait`],
//!   which waits until every plugin has handled them (and everything queued before them);
//! * [`PluginManager::authenticate`] and [`PluginManager::topic_filtering`] ask the plugins
//!   that declared [`Hooks::AUTHENTICATE`] / [`Hooks::TOPIC_FILTERING`] and combine the
//!   answers the way aMQTT does.
//!
//! Nothing in this module reads sockets or knows the broker's internals: the broker hands
//! plugins a [`BrokerAccess`] (publish, retain, list sessions) and keeps a [`BrokerStats`]
//! up to date.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use mqtt_codec::{KeepAlive, LastWill, Packet, QoS, TopicFilter, TopicName};

mod auth;
mod context;
mod error;
mod logging;
mod manager;
pub mod password_file;
mod registry;
mod sys;
mod topic_checking;

pub use auth::{AnonymousAuthConfig, AnonymousAuthPlugin, FileAuthConfig, FileAuthPlugin};
pub use context::{BrokerAccess, PluginContext, SessionSummary};
pub use error::PluginError;
pub use logging::{EventLoggerPlugin, PacketLoggerPlugin};
pub use manager::{PluginManager, PluginManagerBuilder, DEFAULT_QUEUE_CAPACITY};
pub use registry::{
    default_plugin_specs, legacy_plugin_specs, ConfiguredPlugin, EmptyConfig, LegacySections,
    PluginFactory, PluginRegistry, PluginSpec,
};
pub use sys::{BrokerStats, BrokerSysConfig, BrokerSysPlugin, SYS_VERSION_TOPIC};
pub use topic_checking::{
    AclConfig, AclTable, TopicAccessControlListPlugin, TopicTabooPlugin, ADMIN_USERNAME,
    ANONYMOUS_USERNAME, TABOO_TOPICS,
};

/// A broker plugin: one async method per aMQTT broker event (each a no-op by default), plus
/// optional authentication and topic filtering.
///
/// Event methods run on the plugin's own task, in the order the broker emitted the events; they
/// never delay a connection. [`authenticate`](BrokerPlugin::authenticate) and
/// [`topic_filtering`](BrokerPlugin::topic_filtering) are awaited by the connection that asks, so
/// they should answer quickly (offload CPU-heavy work such as password hashing with
/// [`tokio::task::spawn_blocking`]).
///
/// [`hooks`](BrokerPlugin::hooks) says which methods the broker should call. It defaults to
/// everything; a plugin that declares less lets the broker skip building events nobody reads.
///
/// ```
/// use std::sync::Arc;
/// use amqtt_broker::plugins::{BrokerPlugin, Hooks, SessionInfo};
///
/// struct Hello;
///
/// #[async_trait::async_trait]
/// impl BrokerPlugin for Hello {
///     fn hooks(&self) -> Hooks {
///         Hooks::CLIENT_CONNECTED
///     }
///     async fn on_broker_client_connected(&self, session: &Arc<SessionInfo>) {
///         tracing::info!("hello {}", session.client_id);
///     }
/// }
/// ```
#[async_trait]
pub trait BrokerPlugin: Send + Sync + 'static {
    /// Which events and decisions this plugin takes part in; everything by default.
    ///
    /// Read once, when the [`PluginManager`] is built.
    fn hooks(&self) -> Hooks {
        Hooks::ALL
    }

    /// `broker_pre_start`: before the listeners are started (awaited by the broker).
    async fn on_broker_pre_start(&self) {}

    /// `broker_post_start`: after the listeners are up (awaited by the broker).
    async fn on_broker_post_start(&self) {}

    /// `broker_pre_shutdown`: at the start of shutdown (awaited by the broker).
    async fn on_broker_pre_shutdown(&self) {}

    /// `broker_post_shutdown`: at the end of shutdown (awaited by the broker).
    async fn on_broker_post_shutdown(&self) {}

    /// `broker_client_connected`: after an accepted CONNACK was sent.
    async fn on_broker_client_connected(&self, session: &Arc<SessionInfo>) {
        let _ = session;
    }

    /// `broker_client_disconnected`: after the connection ended and the session is marked
    /// disconnected.
    async fn on_broker_client_disconnected(&self, session: &Arc<SessionInfo>) {
        let _ = session;
    }

    /// `broker_client_subscribed`: once per granted filter, after SUBACK; `qos` is the QoS the
    /// client asked for (as in aMQTT).
    async fn on_broker_client_subscribed(
        &self,
        session: &Arc<SessionInfo>,
        topic: &TopicFilter,
        qos: QoS,
    ) {
        let _ = (session, topic, qos);
    }

    /// `broker_client_unsubscribed`: once per filter of an UNSUBSCRIBE.
    async fn on_broker_client_unsubscribed(&self, session: &Arc<SessionInfo>, topic: &TopicFilter) {
        let _ = (session, topic);
    }

    /// `broker_retained_message`: with `client_id` `None` a retained message was stored or (with
    /// an empty payload) cleared; with `Some(id)` a message was queued for offline session `id`.
    async fn on_broker_retained_message(
        &self,
        client_id: Option<&str>,
        message: &ApplicationMessage,
    ) {
        let _ = (client_id, message);
    }

    /// `broker_message_received`: an inbound PUBLISH after its QoS flow completed, before the
    /// topic checks.
    async fn on_broker_message_received(
        &self,
        session: &Arc<SessionInfo>,
        message: &ApplicationMessage,
    ) {
        let _ = (session, message);
    }

    /// `broker_message_broadcast`: a message passed the publish checks and is about to be
    /// delivered; `session` is `None` for messages published by the broker or a plugin.
    async fn on_broker_message_broadcast(
        &self,
        session: Option<&Arc<SessionInfo>>,
        message: &ApplicationMessage,
    ) {
        let _ = (session, message);
    }

    /// `mqtt_packet_received`: every decoded packet; `session` is `None` for a CONNECT that has
    /// not been accepted yet.
    async fn on_mqtt_packet_received(&self, session: Option<&Arc<SessionInfo>>, packet: &Packet) {
        let _ = (session, packet);
    }

    /// `mqtt_packet_sent`: every packet sent; `session` is `None` on CONNACK refusals.
    async fn on_mqtt_packet_sent(&self, session: Option<&Arc<SessionInfo>>, packet: &Packet) {
        let _ = (session, packet);
    }

    /// Whether this client may connect: `Some(true)` allows, `Some(false)` denies, `None`
    /// abstains. See [`PluginManager::authenticate`] for how answers are combined.
    async fn authenticate(&self, session: &SessionInfo) -> Option<bool> {
        let _ = session;
        None
    }

    /// Whether `session` may publish to, subscribe to or receive from `topic`: `Some(true)`
    /// allows, `Some(false)` denies, `None` abstains. See [`PluginManager::topic_filtering`].
    async fn topic_filtering(
        &self,
        session: &SessionInfo,
        topic: Topic<'_>,
        action: Action,
    ) -> Option<bool> {
        let _ = (session, topic, action);
        None
    }

    /// Called once when the broker has shut down and no more events will come.
    async fn close(&self) {}
}

/// What the broker knows about a connected client, shared with plugins.
///
/// Built once per connection by the broker and passed as `Arc<SessionInfo>`, so events carry
/// it without copying.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The client identifier (assigned by the broker if the client sent an empty one).
    pub client_id: String,
    /// The user name from CONNECT.
    pub username: Option<String>,
    /// The password from CONNECT (binary data; never logged).
    pub password: Option<Bytes>,
    /// The peer's address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// The name of the listener the client connected through (`default`, …).
    pub listener: String,
    /// The clean-session flag from CONNECT.
    pub clean_session: bool,
    /// The keep-alive from CONNECT.
    pub keep_alive: KeepAlive,
    /// The will from CONNECT.
    pub will: Option<LastWill>,
}

impl SessionInfo {
    /// A session for `client_id` with every other field empty (handy in tests and for
    /// sessions created by plugins).
    pub fn new(client_id: impl Into<String>) -> SessionInfo {
        SessionInfo {
            client_id: client_id.into(),
            username: None,
            password: None,
            remote_addr: None,
            listener: String::from("default"),
            clean_session: true,
            keep_alive: KeepAlive::default(),
            will: None,
        }
    }

    /// Sets the user name and password.
    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: Option<impl AsRef<[u8]>>,
    ) -> SessionInfo {
        self.username = Some(username.into());
        self.password = password.map(|p| Bytes::copy_from_slice(p.as_ref()));
        self
    }

    /// Sets the peer address.
    pub fn with_remote_addr(mut self, addr: SocketAddr) -> SessionInfo {
        self.remote_addr = Some(addr);
        self
    }
}

impl fmt::Debug for SessionInfo {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionInfo")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("remote_addr", &self.remote_addr)
            .field("listener", &self.listener)
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("will", &self.will.as_ref().map(|w| &w.topic))
            .finish()
    }
}

/// An application message as plugins see it (aMQTT's `ApplicationMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationMessage {
    /// The topic.
    pub topic: TopicName,
    /// The payload (shared, not copied).
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag.
    pub retain: bool,
}

/// The three things a topic plugin is asked about (aMQTT's `Action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A client publishes to a topic; a denied PUBLISH is acknowledged and dropped.
    Publish,
    /// A client subscribes to a filter; a denied filter gets 0x80 in SUBACK.
    Subscribe,
    /// A message is about to be delivered to a subscriber; a denied one is not sent to it.
    Receive,
}

impl Action {
    /// aMQTT's value: `publish`, `subscribe` or `receive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Receive => "receive",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The topic a topic plugin is asked about: a topic name (publish, receive) or a filter
/// (subscribe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic<'a> {
    /// A topic name, for [`Action::Publish`] and [`Action::Receive`].
    Name(&'a TopicName),
    /// A topic filter, for [`Action::Subscribe`].
    Filter(&'a TopicFilter),
}

impl Topic<'_> {
    /// The topic or filter as a string.
    pub fn as_str(&self) -> &str {
        match self {
            Topic::Name(name) => name.as_str(),
            Topic::Filter(filter) => filter.as_str(),
        }
    }
}

impl fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broker event, as queued to plugins (aMQTT's `BrokerEvents` and `MQTTEvents`).
#[derive(Clone, Debug)]
pub enum BrokerEvent {
    /// `broker_pre_start`.
    PreStart,
    /// `broker_post_start`.
    PostStart,
    /// `broker_pre_shutdown`.
    PreShutdown,
    /// `broker_post_shutdown`.
    PostShutdown,
    /// `broker_client_connected`.
    ClientConnected {
        /// The client's session.
        session: Arc<SessionInfo>,
    },
    /// `broker_client_disconnected`.
    ClientDisconnected {
        /// The client's session.
        session: Arc<SessionInfo>,
    },
    /// `broker_client_subscribed`.
    ClientSubscribed {
        /// The subscriber.
        session: Arc<SessionInfo>,
        /// The granted filter.
        topic: TopicFilter,
        /// The requested QoS.
        qos: QoS,
    },
    /// `broker_client_unsubscribed`.
    ClientUnsubscribed {
        /// The client.
        session: Arc<SessionInfo>,
        /// The filter removed.
        topic: TopicFilter,
    },
    /// `broker_retained_message`.
    RetainedMessage {
        /// `None` for the retained store, `Some` for an offline session's queue.
        client_id: Option<String>,
        /// The message (an empty payload clears a retained topic).
        message: ApplicationMessage,
    },
    /// `broker_message_received`.
    MessageReceived {
        /// The publisher.
        session: Arc<SessionInfo>,
        /// The message.
        message: ApplicationMessage,
    },
    /// `broker_message_broadcast`.
    MessageBroadcast {
        /// The publisher; `None` for broker and plugin messages.
        session: Option<Arc<SessionInfo>>,
        /// The message.
        message: ApplicationMessage,
    },
    /// `mqtt_packet_received`.
    PacketReceived {
        /// The client, once its CONNECT was accepted.
        session: Option<Arc<SessionInfo>>,
        /// The packet.
        packet: Packet,
    },
    /// `mqtt_packet_sent`.
    PacketSent {
        /// The client, once its CONNECT was accepted.
        session: Option<Arc<SessionInfo>>,
        /// The packet.
        packet: Packet,
    },
}

impl BrokerEvent {
    /// The hook bit of this event.
    pub fn hook(&self) -> Hooks {
        match self {
            BrokerEvent::PreStart => Hooks::PRE_START,
            BrokerEvent::PostStart => Hooks::POST_START,
            BrokerEvent::PreShutdown => Hooks::PRE_SHUTDOWN,
            BrokerEvent::PostShutdown => Hooks::POST_SHUTDOWN,
            BrokerEvent::ClientConnected { .. } => Hooks::CLIENT_CONNECTED,
            BrokerEvent::ClientDisconnected { .. } => Hooks::CLIENT_DISCONNECTED,
            BrokerEvent::ClientSubscribed { .. } => Hooks::CLIENT_SUBSCRIBED,
            BrokerEvent::ClientUnsubscribed { .. } => Hooks::CLIENT_UNSUBSCRIBED,
            BrokerEvent::RetainedMessage { .. } => Hooks::RETAINED_MESSAGE,
            BrokerEvent::MessageReceived { .. } => Hooks::MESSAGE_RECEIVED,
            BrokerEvent::MessageBroadcast { .. } => Hooks::MESSAGE_BROADCAST,
            BrokerEvent::PacketReceived { .. } => Hooks::PACKET_RECEIVED,
            BrokerEvent::PacketSent { .. } => Hooks::PACKET_SENT,
        }
    }

    /// aMQTT's event name (`broker_client_connected`, `mqtt_packet_sent`, …).
    pub fn name(&self) -> &'static str {
        match self {
            BrokerEvent::PreStart => "broker_pre_start",
            BrokerEvent::PostStart => "broker_post_start",
            BrokerEvent::PreShutdown => "broker_pre_shutdown",
            BrokerEvent::PostShutdown => "broker_post_shutdown",
            BrokerEvent::ClientConnected { .. } => "broker_client_connected",
            BrokerEvent::ClientDisconnected { .. } => "broker_client_disconnected",
            BrokerEvent::ClientSubscribed { .. } => "broker_client_subscribed",
            BrokerEvent::ClientUnsubscribed { .. } => "broker_client_unsubscribed",
            BrokerEvent::RetainedMessage { .. } => "broker_retained_message",
            BrokerEvent::MessageReceived { .. } => "broker_message_received",
            BrokerEvent::MessageBroadcast { .. } => "broker_message_broadcast",
            BrokerEvent::PacketReceived { .. } => "mqtt_packet_received",
            BrokerEvent::PacketSent { .. } => "mqtt_packet_sent",
        }
    }

    /// Calls the plugin method for this event.
    pub async fn dispatch(&self, plugin: &dyn BrokerPlugin) {
        match self {
            BrokerEvent::PreStart => plugin.on_broker_pre_start().await,
            BrokerEvent::PostStart => plugin.on_broker_post_start().await,
            BrokerEvent::PreShutdown => plugin.on_broker_pre_shutdown().await,
            BrokerEvent::PostShutdown => plugin.on_broker_post_shutdown().await,
            BrokerEvent::ClientConnected { session } => {
                plugin.on_broker_client_connected(session).await
            }
            BrokerEvent::ClientDisconnected { session } => {
                plugin.on_broker_client_disconnected(session).await
            }
            BrokerEvent::ClientSubscribed {
                session,
                topic,
                qos,
            } => {
                plugin
                    .on_broker_client_subscribed(session, topic, *qos)
                    .await
            }
            BrokerEvent::ClientUnsubscribed { session, topic } => {
                plugin.on_broker_client_unsubscribed(session, topic).await
            }
            BrokerEvent::RetainedMessage { client_id, message } => {
                plugin
                    .on_broker_retained_message(client_id.as_deref(), message)
                    .await
            }
            BrokerEvent::MessageReceived { session, message } => {
                plugin.on_broker_message_received(session, message).await
            }
            BrokerEvent::MessageBroadcast { session, message } => {
                plugin
                    .on_broker_message_broadcast(session.as_ref(), message)
                    .await
            }
            BrokerEvent::PacketReceived { session, packet } => {
                plugin
                    .on_mqtt_packet_received(session.as_ref(), packet)
                    .await
            }
            BrokerEvent::PacketSent { session, packet } => {
                plugin.on_mqtt_packet_sent(session.as_ref(), packet).await
            }
        }
    }
}

/// A set of plugin hooks: which events a plugin wants and which decisions it takes part in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hooks(u32);

impl Hooks {
    /// No hook.
    pub const NONE: Hooks = Hooks(0);
    /// `broker_pre_start`.
    pub const PRE_START: Hooks = Hooks(1 << 0);
    /// `broker_post_start`.
    pub const POST_START: Hooks = Hooks(1 << 1);
    /// `broker_pre_shutdown`.
    pub const PRE_SHUTDOWN: Hooks = Hooks(1 << 2);
    /// `broker_post_shutdown`.
    pub const POST_SHUTDOWN: Hooks = Hooks(1 << 3);
    /// `broker_client_connected`.
    pub const CLIENT_CONNECTED: Hooks = Hooks(1 << 4);
    /// `broker_client_disconnected`.
    pub const CLIENT_DISCONNECTED: Hooks = Hooks(1 << 5);
    /// `broker_client_subscribed`.
    pub const CLIENT_SUBSCRIBED: Hooks = Hooks(1 << 6);
    /// `broker_client_unsubscribed`.
    pub const CLIENT_UNSUBSCRIBED: Hooks = Hooks(1 << 7);
    /// `broker_retained_message`.
    pub const RETAINED_MESSAGE: Hooks = Hooks(1 << 8);
    /// `broker_message_received`.
    pub const MESSAGE_RECEIVED: Hooks = Hooks(1 << 9);
    /// `broker_message_broadcast`.
    pub const MESSAGE_BROADCAST: Hooks = Hooks(1 << 10);
    /// `mqtt_packet_received`.
    pub const PACKET_RECEIVED: Hooks = Hooks(1 << 11);
    /// `mqtt_packet_sent`.
    pub const PACKET_SENT: Hooks = Hooks(1 << 12);
    /// [`BrokerPlugin::authenticate`] is asked.
    pub const AUTHENTICATE: Hooks = Hooks(1 << 13);
    /// [`BrokerPlugin::topic_filtering`] is asked.
    pub const TOPIC_FILTERING: Hooks = Hooks(1 << 14);
    /// Marks an authentication plugin that lets clients in without checking a secret (aMQTT's
    /// `AnonymousAuthPlugin`); the manager warns when only such plugins authenticate.
    pub const USERNAME_ONLY_AUTH: Hooks = Hooks(1 << 15);

    /// The four lifecycle events.
    pub const LIFECYCLE: Hooks = Hooks(0b1111);
    /// Every event.
    pub const ALL_EVENTS: Hooks = Hooks((1 << 13) - 1);
    /// Every event and both decisions.
    pub const ALL: Hooks = Hooks((1 << 15) - 1);

    /// Whether every hook of `other` is in `self`.
    pub const fn contains(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a hook.
    pub const fn intersects(self, other: Hooks) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of both sets.
    pub const fn union(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }

    /// The hooks in both sets.
    pub const fn intersection(self, other: Hooks) -> Hooks {
        Hooks(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Hooks {
    type Output = Hooks;
    fn bitor(self, rhs: Hooks) -> Hooks {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for Hooks {
    fn bitor_assign(&mut self, rhs: Hooks) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooks({:#b})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_hook_is_in_all_events_and_decisions_are_not() {
        let session = Arc::new(SessionInfo::new("c"));
        let message = ApplicationMessage {
            topic: TopicName::new("a").unwrap(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
        };
        let events = [
            BrokerEvent::PreStart,
            BrokerEvent::PostStart,
            BrokerEvent::PreShutdown,
            BrokerEvent::PostShutdown,
            BrokerEvent::ClientConnected {
                session: session.clone(),
            },
            BrokerEvent::ClientDisconnected {
                session: session.clone(),
            },
            BrokerEvent::ClientSubscribed {
                session: session.clone(),
                topic: TopicFilter::new("a/#").unwrap(),
                qos: QoS::AtLeastOnce,
            },
            BrokerEvent::ClientUnsubscribed {
                session: session.clone(),
                topic: TopicFilter::new("a/#").unwrap(),
            },
            BrokerEvent::RetainedMessage {
                client_id: None,
                message: message.clone(),
            },
            BrokerEvent::MessageReceived {
                session: session.clone(),
                message: message.clone(),
            },
            BrokerEvent::MessageBroadcast {
                session: None,
                message,
            },
            BrokerEvent::PacketReceived {
                session: None,
                packet: Packet::PingReq,
            },
            BrokerEvent::PacketSent {
                session: Some(session),
                packet: Packet::PingResp,
            },
        ];
        let mut seen = Hooks::NONE;
        for event in &events {
            assert!(Hooks::ALL_EVENTS.contains(event.hook()), "{}", event.name());
            assert!(
                !seen.intersects(event.hook()),
                "duplicate bit for {}",
                event.name()
            );
            seen |= event.hook();
        }
        assert_eq!(seen, Hooks::ALL_EVENTS);
        assert!(!Hooks::ALL_EVENTS.intersects(Hooks::AUTHENTICATE | Hooks::TOPIC_FILTERING));
        assert!(Hooks::ALL.contains(Hooks::AUTHENTICATE | Hooks::TOPIC_FILTERING));
        assert!(!Hooks::ALL.contains(Hooks::USERNAME_ONLY_AUTH));
    }

    #[test]
    fn session_debug_does_not_show_the_password() {
        let session = SessionInfo::new("c").with_credentials("alice", Some("s3cret"));
        let text = format!("{session:?}");
        assert!(text.contains("alice"));
        assert!(!text.contains("s3cret"));
    }
}
