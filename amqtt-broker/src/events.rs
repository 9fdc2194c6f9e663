//! Broker events (aMQTT's `BrokerEvents` and `MQTTEvents`), emitted from this one place.
//!
//! The broker calls `Events::emit` with a closure that builds the event; when no
//! [`EventHook`] is installed the closure is never run, so the hot path pays one branch. A hook
//! is called synchronously on the task where the event happened and must not block: the plugin
//! framework clones what it needs and hands it to its own task, which keeps events in order and
//! isolates slow plugins. Lifecycle events (pre/post start and shutdown) are awaited, as aMQTT
//! 0.12 awaits them.

use std::sync::Arc;

use mqtt_codec::packet::Packet;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter, TopicName};

use crate::hooks::{BoxFuture, ClientInfo};

/// One broker event. Borrowed data: clone what must outlive the call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BrokerEvent<'a> {
    /// A CONNECT was accepted and CONNACK queued (`broker_client_connected`).
    ClientConnected {
        /// The client.
        client: &'a ClientInfo,
        /// The CONNACK's session-present flag.
        session_present: bool,
    },
    /// An accepted client's connection ended (`broker_client_disconnected`).
    ClientDisconnected {
        /// The client.
        client: &'a ClientInfo,
        /// Whether it ended with DISCONNECT (no will is published then).
        graceful: bool,
    },
    /// A filter was granted (`broker_client_subscribed`).
    ClientSubscribed {
        /// The client.
        client: &'a ClientInfo,
        /// The filter.
        filter: &'a TopicFilter,
        /// The requested (= granted) QoS.
        qos: QoS,
    },
    /// A filter was removed (`broker_client_unsubscribed`).
    ClientUnsubscribed {
        /// The client.
        client: &'a ClientInfo,
        /// The filter.
        filter: &'a TopicFilter,
    },
    /// A client's PUBLISH completed its QoS flow (`broker_message_received`).
    MessageReceived {
        /// The publisher.
        client: &'a ClientInfo,
        /// The message as published.
        message: &'a Message,
    },
    /// A message passed the publish checks and is being routed (`broker_message_broadcast`);
    /// `client` is `None` for messages published by the broker itself.
    MessageBroadcast {
        /// The publisher, if a client.
        client: Option<&'a ClientInfo>,
        /// The message.
        message: &'a Message,
    },
    /// A retained message was stored (`broker_retained_message` with `client_id=None`).
    RetainedStored {
        /// The stored message.
        message: &'a Message,
    },
    /// A topic's retained message was cleared by an empty retained payload.
    RetainedCleared {
        /// The topic.
        topic: &'a TopicName,
    },
    /// A message was queued for an offline persistent session (`broker_retained_message` with
    /// the client id).
    OfflineQueued {
        /// The offline client's id.
        client_id: &'a str,
        /// The queued message.
        message: &'a Message,
    },
    /// A packet was received (`mqtt_packet_received`): every packet decoded, including the
    /// acks and pings the protocol machine answers itself. Only emitted when
    /// [`EventHook::wants_packets`].
    PacketReceived {
        /// The client, once its CONNECT was accepted.
        client: Option<&'a ClientInfo>,
        /// The packet.
        packet: &'a Packet,
    },
    /// A packet was written to the connection's output (`mqtt_packet_sent`): every packet,
    /// CONNACK (also refusals), PUBLISH, the acks, SUBACK, UNSUBACK, PINGRESP, in the order
    /// written. Only emitted when [`EventHook::wants_packets`].
    PacketSent {
        /// The client, once its CONNECT was accepted (`None` for a refusing CONNACK).
        client: Option<&'a ClientInfo>,
        /// The packet.
        packet: &'a Packet,
    },
}

/// A broker lifecycle event, awaited by the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// `start` was called; no listener is bound yet.
    PreStart,
    /// Every listener is bound.
    PostStart,
    /// `shutdown` was called; clients are still connected.
    PreShutdown,
    /// Every connection has ended.
    PostShutdown,
}

/// Receives the broker's events. The plugin framework implements it.
pub trait EventHook: Send + Sync + 'static {
    /// Called for each event, on the task where it happened; must not block.
    fn on_event(&self, event: &BrokerEvent<'_>);

    /// Called for each lifecycle event and awaited.
    fn on_lifecycle(&self, event: LifecycleEvent) -> BoxFuture<'_, ()> {
        let _ = event;
        Box::pin(std::future::ready(()))
    }

    /// Whether [`BrokerEvent::PacketReceived`] and [`BrokerEvent::PacketSent`] are wanted. Only
    /// then does the broker turn on the protocol machine's packet trace, which costs a packet
    /// clone per packet received; otherwise packet events cost nothing.
    fn wants_packets(&self) -> bool {
        false
    }
}

/// The one place events are emitted from.
#[derive(Clone, Default)]
pub(crate) struct Events {
    hook: Option<Arc<dyn EventHook>>,
    packets: bool,
}

impl Events {
    pub(crate) fn new(hook: Option<Arc<dyn EventHook>>) -> Events {
        let packets = hook.as_ref().is_some_and(|h| h.wants_packets());
        Events { hook, packets }
    }

    /// Emits the event `build` makes, if anyone listens.
    #[inline]
    pub(crate) fn emit<'a>(&self, build: impl FnOnce() -> BrokerEvent<'a>) {
        if let Some(hook) = &self.hook {
            hook.on_event(&build());
        }
    }

    /// Whether packet events are wanted (connections turn their packet trace on).
    pub(crate) fn wants_packets(&self) -> bool {
        self.packets
    }

    /// Emits a packet event (received or `sent`), if packets are wanted.
    #[inline]
    pub(crate) fn emit_packet(&self, client: Option<&ClientInfo>, sent: bool, packet: &Packet) {
        if !self.packets {
            return;
        }
        if let Some(hook) = &self.hook {
            hook.on_event(&if sent {
                BrokerEvent::PacketSent { client, packet }
            } else {
                BrokerEvent::PacketReceived { client, packet }
            });
        }
    }

    pub(crate) async fn lifecycle(&self, event: LifecycleEvent) {
        if let Some(hook) = &self.hook {
            hook.on_lifecycle(event).await;
        }
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("hooked", &self.hook.is_some())
            .field("packets", &self.packets)
            .finish()
    }
}
