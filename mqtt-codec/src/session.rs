//! Session state that outlives a network connection ([MQTT-3.1.2-4], section 4.1).
//!
//! A [`Session`] is plain data: the outgoing QoS 1/2 messages in flight (PUBLISH awaiting
//! PUBACK/PUBREC, PUBREL awaiting PUBCOMP), the messages queued behind the in-flight window, the
//! incoming QoS 2 packet ids awaiting PUBREL, and the packet-id allocator. A connection state
//! machine ([`crate::client::ClientConnection`], [`crate::server::ServerConnection`]) takes one in
//! and gives it back with `into_session`, so a reconnect with clean session 0 resumes it. With the
//! `serde` feature it can be serialized for persistence.

use bytes::Bytes;

use crate::topic::TopicName;
use crate::types::QoS;

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

/// Limits of a session's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SessionLimits {
    /// Outgoing QoS 1/2 messages in flight at once (default 20).
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
    // Filled in by the state-machine implementation: in-flight table, queue, incoming QoS 2 ids,
    // packet-id allocator.
}

impl Session {
    /// An empty session with the given limits.
    pub fn new(limits: SessionLimits) -> Session {
        Session { limits }
    }

    /// The session's limits.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Queues a message for delivery while no connection drives the session (offline queueing,
    /// [MQTT-3.1.2-5]). QoS 0 messages may be refused (returned). When a bound is exceeded the
    /// oldest queued message is dropped and returned, so the caller can count and log it.
    pub fn enqueue(&mut self, message: Message) -> Option<Message> {
        let _ = message;
        todo!("session queue")
    }

    /// Outgoing QoS 1/2 messages (and PUBRELs) awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        todo!("session in-flight")
    }

    /// Messages queued behind the in-flight window.
    pub fn queued_len(&self) -> usize {
        todo!("session queue")
    }
}
