//! Broker plugins: the [`BrokerPlugin`] trait, the events it receives, the registry that builds
//! plugins from aMQTT's YAML names, the manager that dispatches events and combines
//! authentication and topic-filtering answers, and every plugin aMQTT packages.
//!
//! The broker talks to plugins only through [`PluginManager`]:
//!
//! * it is the broker's [`EventHook`](crate::EventHook): an event is copied only when some
//!   plugin listens to it ([`PluginManager::wants`], a bit test), then queued for each
//!   listening plugin without waiting ([`PluginManager::emit`]). Each plugin has its own bounded
//!   queue and task, so a slow or panicking plugin is logged and loses its own events, and
//!   never stalls a connection. Lifecycle events are awaited ([`PluginManager::fire_and_wait`]);
//! * it is the broker's [`AccessControl`](crate::AccessControl):
//!   [`PluginManager::authenticate`] and [`PluginManager::topic_filtering`] ask the plugins
//!   that declared [`Hooks::AUTHENTICATE`] / [`Hooks::TOPIC_FILTERING`] and combine the
//!   answers the way aMQTT does.
//!
//! Plugins reach the running broker through their [`PluginContext`] ([`BrokerAccess`]: publish,
//! retain, sessions, subscriptions) and read the counters the broker keeps in [`BrokerStats`].

use std::fmt;

use async_trait::async_trait;
use mqtt_codec::packet::Packet;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter};

use crate::events::BrokerEvent;
pub use crate::hooks::{Action, ClientInfo, ConnectRequest};

mod auth;
mod context;
mod error;
mod logging;
mod manager;
pub mod password_file;
mod registry;
mod sys;
mod topic_checking;
mod wiring;

pub use auth::{AnonymousAuthConfig, AnonymousAuthPlugin, FileAuthConfig, FileAuthPlugin};
pub use context::{BrokerAccess, PluginContext, SessionSummary};
pub use error::PluginError;
pub use logging::{EventLoggerPlugin, PacketLoggerPlugin};
pub use manager::{PluginManager, PluginManagerBuilder, DEFAULT_QUEUE_CAPACITY};
pub use registry::{
    default_plugin_specs, legacy_plugin_specs, ConfiguredPlugin, EmptyConfig, LegacySections,
    PluginFactory, PluginRegistry, PluginSpec, Reconfiguration,
};
pub use sys::StatsSnapshot;
pub use sys::{BrokerStats, BrokerSysConfig, BrokerSysPlugin, SYS_VERSION_TOPIC};
pub use topic_checking::{
    AclConfig, AclTable, TopicAccessControlListPlugin, TopicTabooPlugin, ADMIN_USERNAME,
    ANONYMOUS_USERNAME, TABOO_TOPICS,
};

/// A broker plugin: one async method per aMQTT broker event (each a no-op by default), plus
/// optional authentication and topic filtering.
///
/// Event methods run on the plugin's own task, in the order the broker emitted the events; they
/// never delay a connection. [`authenticate`](BrokerPlugin::authenticate) is awaited by the
/// connecting client's task, so offload CPU-heavy work such as password hashing with
/// [`tokio::task::spawn_blocking`]. [`topic_filtering`](BrokerPlugin::topic_filtering) is
/// synchronous on purpose: it runs for every PUBLISH and for every delivery, where a boxed
/// future would cost an allocation per message; a plugin that needs IO should cache.
///
/// [`hooks`](BrokerPlugin::hooks) says which methods the broker should call. It defaults to
/// everything; a plugin that declares less lets the broker skip copying events nobody reads.
///
/// ```
/// use amqtt_broker::plugins::{BrokerPlugin, ClientInfo, Hooks};
///
/// struct Hello;
///
/// #[async_trait::async_trait]
/// impl BrokerPlugin for Hello {
///     fn hooks(&self) -> Hooks {
///         Hooks::CLIENT_CONNECTED
///     }
///     async fn on_broker_client_connected(&self, session: &ClientInfo) {
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

    /// `broker_client_connected`: a CONNECT was accepted.
    async fn on_broker_client_connected(&self, session: &ClientInfo) {
        let _ = session;
    }

    /// `broker_client_disconnected`: an accepted client's connection ended.
    async fn on_broker_client_disconnected(&self, session: &ClientInfo) {
        let _ = session;
    }

    /// `broker_client_subscribed`: once per granted filter; `qos` is the QoS the client asked
    /// for (as in aMQTT).
    async fn on_broker_client_subscribed(
        &self,
        session: &ClientInfo,
        topic: &TopicFilter,
        qos: QoS,
    ) {
        let _ = (session, topic, qos);
    }

    /// `broker_client_unsubscribed`: once per filter removed by an UNSUBSCRIBE.
    async fn on_broker_client_unsubscribed(&self, session: &ClientInfo, topic: &TopicFilter) {
        let _ = (session, topic);
    }

    /// `broker_retained_message`: with `client_id` `None` a retained message was stored or (with
    /// an empty payload) cleared; with `Some(id)` a message was queued for offline session `id`.
    async fn on_broker_retained_message(&self, client_id: Option<&str>, message: &Message) {
        let _ = (client_id, message);
    }

    /// `broker_message_received`: an inbound PUBLISH after its QoS flow completed.
    async fn on_broker_message_received(&self, session: &ClientInfo, message: &Message) {
        let _ = (session, message);
    }

    /// `broker_message_broadcast`: a message passed the publish checks and is being delivered;
    /// `session` is `None` for messages published by the broker or a plugin.
    async fn on_broker_message_broadcast(&self, session: Option<&ClientInfo>, message: &Message) {
        let _ = (session, message);
    }

    /// `mqtt_packet_received`: a decoded packet; `session` is `None` for a CONNECT that has not
    /// been accepted yet.
    async fn on_mqtt_packet_received(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let _ = (session, packet);
    }

    /// `mqtt_packet_sent`: a packet sent; `session` is `None` on CONNACK refusals.
    async fn on_mqtt_packet_sent(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let _ = (session, packet);
    }

    /// Whether this client may connect: `Some(true)` allows, `Some(false)` denies, `None`
    /// abstains. See [`PluginManager::authenticate`] for how answers are combined.
    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Option<bool> {
        let _ = request;
        None
    }

    /// Whether `session` may publish to, subscribe to (`topic` is then a filter) or receive
    /// from `topic`: `Some(true)` allows, `Some(false)` denies, `None` abstains. See
    /// [`PluginManager::topic_filtering`].
    fn topic_filtering(&self, session: &ClientInfo, topic: &str, action: Action) -> Option<bool> {
        let _ = (session, topic, action);
        None
    }

    /// Called once when the broker has shut down and no more events will come.
    async fn close(&self) {}
}

/// aMQTT's name for an action (`publish`, `subscribe`, `receive`).
pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Publish => "publish",
        Action::Subscribe => "subscribe",
        Action::Receive => "receive",
    }
}

/// One broker event as queued to plugins: an owned copy of the broker's
/// [`BrokerEvent`] (aMQTT's `BrokerEvents` and `MQTTEvents`).
#[derive(Clone, Debug)]
pub enum PluginEvent {
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
        /// The client.
        session: ClientInfo,
    },
    /// `broker_client_disconnected`.
    ClientDisconnected {
        /// The client.
        session: ClientInfo,
    },
    /// `broker_client_subscribed`.
    ClientSubscribed {
        /// The subscriber.
        session: ClientInfo,
        /// The granted filter.
        topic: TopicFilter,
        /// The requested QoS.
        qos: QoS,
    },
    /// `broker_client_unsubscribed`.
    ClientUnsubscribed {
        /// The client.
        session: ClientInfo,
        /// The filter removed.
        topic: TopicFilter,
    },
    /// `broker_retained_message`.
    RetainedMessage {
        /// `None` for the retained store, `Some` for an offline session's queue.
        client_id: Option<String>,
        /// The message (an empty payload clears a retained topic).
        message: Message,
    },
    /// `broker_message_received`.
    MessageReceived {
        /// The publisher.
        session: ClientInfo,
        /// The message.
        message: Message,
    },
    /// `broker_message_broadcast`.
    MessageBroadcast {
        /// The publisher; `None` for broker and plugin messages.
        session: Option<ClientInfo>,
        /// The message.
        message: Message,
    },
    /// `mqtt_packet_received`.
    PacketReceived {
        /// The client, once its CONNECT was accepted.
        session: Option<ClientInfo>,
        /// The packet.
        packet: Packet,
    },
    /// `mqtt_packet_sent`.
    PacketSent {
        /// The client, once its CONNECT was accepted.
        session: Option<ClientInfo>,
        /// The packet.
        packet: Packet,
    },
}

impl PluginEvent {
    /// The hook bit of the broker's `event`, without copying anything; `None` for events
    /// plugins do not see.
    pub fn hook_of(event: &BrokerEvent<'_>) -> Option<Hooks> {
        Some(match event {
            BrokerEvent::ClientConnected { .. } => Hooks::CLIENT_CONNECTED,
            BrokerEvent::ClientDisconnected { .. } => Hooks::CLIENT_DISCONNECTED,
            BrokerEvent::ClientSubscribed { .. } => Hooks::CLIENT_SUBSCRIBED,
            BrokerEvent::ClientUnsubscribed { .. } => Hooks::CLIENT_UNSUBSCRIBED,
            BrokerEvent::MessageReceived { .. } => Hooks::MESSAGE_RECEIVED,
            BrokerEvent::MessageBroadcast { .. } => Hooks::MESSAGE_BROADCAST,
            BrokerEvent::RetainedStored { .. }
            | BrokerEvent::RetainedCleared { .. }
            | BrokerEvent::OfflineQueued { .. } => Hooks::RETAINED_MESSAGE,
            BrokerEvent::PacketReceived { .. } => Hooks::PACKET_RECEIVED,
            #[allow(unreachable_patterns)] // the broker's event enum may grow
            _ => return None,
        })
    }

    /// An owned copy of the broker's `event` (client infos share their strings).
    pub fn from_broker(event: &BrokerEvent<'_>) -> Option<PluginEvent> {
        Some(match event {
            BrokerEvent::ClientConnected { client, .. } => PluginEvent::ClientConnected {
                session: (*client).clone(),
            },
            BrokerEvent::ClientDisconnected { client, .. } => PluginEvent::ClientDisconnected {
                session: (*client).clone(),
            },
            BrokerEvent::ClientSubscribed {
                client,
                filter,
                qos,
            } => PluginEvent::ClientSubscribed {
                session: (*client).clone(),
                topic: (*filter).clone(),
                qos: *qos,
            },
            BrokerEvent::ClientUnsubscribed { client, filter } => PluginEvent::ClientUnsubscribed {
                session: (*client).clone(),
                topic: (*filter).clone(),
            },
            BrokerEvent::MessageReceived { client, message } => PluginEvent::MessageReceived {
                session: (*client).clone(),
                message: (*message).clone(),
            },
            BrokerEvent::MessageBroadcast { client, message } => PluginEvent::MessageBroadcast {
                session: client.cloned(),
                message: (*message).clone(),
            },
            BrokerEvent::RetainedStored { message } => PluginEvent::RetainedMessage {
                client_id: None,
                message: (*message).clone(),
            },
            BrokerEvent::RetainedCleared { topic } => PluginEvent::RetainedMessage {
                client_id: None,
                message: Message::new((*topic).clone(), bytes::Bytes::new(), QoS::AtMostOnce, true),
            },
            BrokerEvent::OfflineQueued { client_id, message } => PluginEvent::RetainedMessage {
                client_id: Some((*client_id).to_owned()),
                message: (*message).clone(),
            },
            BrokerEvent::PacketReceived { client, packet } => PluginEvent::PacketReceived {
                session: client.cloned(),
                packet: (*packet).clone(),
            },
            #[allow(unreachable_patterns)] // the broker's event enum may grow
            _ => return None,
        })
    }

    /// The hook bit of this event.
    pub fn hook(&self) -> Hooks {
        match self {
            PluginEvent::PreStart => Hooks::PRE_START,
            PluginEvent::PostStart => Hooks::POST_START,
            PluginEvent::PreShutdown => Hooks::PRE_SHUTDOWN,
            PluginEvent::PostShutdown => Hooks::POST_SHUTDOWN,
            PluginEvent::ClientConnected { .. } => Hooks::CLIENT_CONNECTED,
            PluginEvent::ClientDisconnected { .. } => Hooks::CLIENT_DISCONNECTED,
            PluginEvent::ClientSubscribed { .. } => Hooks::CLIENT_SUBSCRIBED,
            PluginEvent::ClientUnsubscribed { .. } => Hooks::CLIENT_UNSUBSCRIBED,
            PluginEvent::RetainedMessage { .. } => Hooks::RETAINED_MESSAGE,
            PluginEvent::MessageReceived { .. } => Hooks::MESSAGE_RECEIVED,
            PluginEvent::MessageBroadcast { .. } => Hooks::MESSAGE_BROADCAST,
            PluginEvent::PacketReceived { .. } => Hooks::PACKET_RECEIVED,
            PluginEvent::PacketSent { .. } => Hooks::PACKET_SENT,
        }
    }

    /// aMQTT's event name (`broker_client_connected`, `mqtt_packet_sent`, …).
    pub fn name(&self) -> &'static str {
        match self {
            PluginEvent::PreStart => "broker_pre_start",
            PluginEvent::PostStart => "broker_post_start",
            PluginEvent::PreShutdown => "broker_pre_shutdown",
            PluginEvent::PostShutdown => "broker_post_shutdown",
            PluginEvent::ClientConnected { .. } => "broker_client_connected",
            PluginEvent::ClientDisconnected { .. } => "broker_client_disconnected",
            PluginEvent::ClientSubscribed { .. } => "broker_client_subscribed",
            PluginEvent::ClientUnsubscribed { .. } => "broker_client_unsubscribed",
            PluginEvent::RetainedMessage { .. } => "broker_retained_message",
            PluginEvent::MessageReceived { .. } => "broker_message_received",
            PluginEvent::MessageBroadcast { .. } => "broker_message_broadcast",
            PluginEvent::PacketReceived { .. } => "mqtt_packet_received",
            PluginEvent::PacketSent { .. } => "mqtt_packet_sent",
        }
    }

    /// Calls the plugin method for this event.
    pub async fn dispatch(&self, plugin: &dyn BrokerPlugin) {
        match self {
            PluginEvent::PreStart => plugin.on_broker_pre_start().await,
            PluginEvent::PostStart => plugin.on_broker_post_start().await,
            PluginEvent::PreShutdown => plugin.on_broker_pre_shutdown().await,
            PluginEvent::PostShutdown => plugin.on_broker_post_shutdown().await,
            PluginEvent::ClientConnected { session } => {
                plugin.on_broker_client_connected(session).await
            }
            PluginEvent::ClientDisconnected { session } => {
                plugin.on_broker_client_disconnected(session).await
            }
            PluginEvent::ClientSubscribed {
                session,
                topic,
                qos,
            } => {
                plugin
                    .on_broker_client_subscribed(session, topic, *qos)
                    .await
            }
            PluginEvent::ClientUnsubscribed { session, topic } => {
                plugin.on_broker_client_unsubscribed(session, topic).await
            }
            PluginEvent::RetainedMessage { client_id, message } => {
                plugin
                    .on_broker_retained_message(client_id.as_deref(), message)
                    .await
            }
            PluginEvent::MessageReceived { session, message } => {
                plugin.on_broker_message_received(session, message).await
            }
            PluginEvent::MessageBroadcast { session, message } => {
                plugin
                    .on_broker_message_broadcast(session.as_ref(), message)
                    .await
            }
            PluginEvent::PacketReceived { session, packet } => {
                plugin
                    .on_mqtt_packet_received(session.as_ref(), packet)
                    .await
            }
            PluginEvent::PacketSent { session, packet } => {
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
pub(crate) mod tests {
    use std::sync::Arc;

    use mqtt_codec::TopicName;

    use super::*;

    /// A client info for tests.
    pub(crate) fn client(id: &str, username: Option<&str>) -> ClientInfo {
        ClientInfo {
            client_id: Arc::from(id),
            username: username.map(Arc::from),
            remote_addr: None,
            listener: Arc::from("default"),
            clean_session: true,
            keep_alive: 0,
        }
    }

    #[test]
    fn every_broker_event_maps_to_one_hook_and_back() {
        let c = client("c", None);
        let topic = TopicName::new("a").unwrap();
        let message = Message::new(topic.clone(), "x", QoS::AtLeastOnce, false);
        let filter = TopicFilter::new("a/#").unwrap();
        let packet = Packet::PingReq;
        let events = [
            BrokerEvent::ClientConnected {
                client: &c,
                session_present: false,
            },
            BrokerEvent::ClientDisconnected {
                client: &c,
                graceful: true,
            },
            BrokerEvent::ClientSubscribed {
                client: &c,
                filter: &filter,
                qos: QoS::AtLeastOnce,
            },
            BrokerEvent::ClientUnsubscribed {
                client: &c,
                filter: &filter,
            },
            BrokerEvent::MessageReceived {
                client: &c,
                message: &message,
            },
            BrokerEvent::MessageBroadcast {
                client: None,
                message: &message,
            },
            BrokerEvent::RetainedStored { message: &message },
            BrokerEvent::RetainedCleared { topic: &topic },
            BrokerEvent::OfflineQueued {
                client_id: "off",
                message: &message,
            },
            BrokerEvent::PacketReceived {
                client: Some(&c),
                packet: &packet,
            },
        ];
        for event in &events {
            let hook = PluginEvent::hook_of(event).unwrap();
            let owned = PluginEvent::from_broker(event).unwrap();
            assert_eq!(owned.hook(), hook, "{}", owned.name());
            assert!(Hooks::ALL_EVENTS.contains(hook));
        }
        let Some(PluginEvent::RetainedMessage { client_id, message }) =
            PluginEvent::from_broker(&events[7])
        else {
            panic!("cleared retained maps to a retained message")
        };
        assert_eq!(client_id, None);
        assert!(message.payload.is_empty());
        assert!(!Hooks::ALL_EVENTS.intersects(Hooks::AUTHENTICATE | Hooks::TOPIC_FILTERING));
        assert!(Hooks::ALL.contains(Hooks::AUTHENTICATE | Hooks::TOPIC_FILTERING));
        assert!(!Hooks::ALL.contains(Hooks::USERNAME_ONLY_AUTH));
    }
}
