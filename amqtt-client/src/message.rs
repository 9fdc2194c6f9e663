//! What the client hands to the application: received messages, connection states, outcomes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::Stream;
use mqtt_codec::{PacketId, Publish, QoS, TopicName};
use tokio::sync::oneshot;

use crate::error::ClientError;

/// A message received from the broker (aMQTT's `ApplicationMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationMessage {
    /// The topic it was published to.
    pub topic: TopicName,
    /// The payload, shared with the read buffer it arrived in.
    pub payload: Bytes,
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Whether the broker sent it as a retained message (a new subscription's first delivery).
    pub retain: bool,
    /// The DUP flag of the PUBLISH that carried it.
    pub dup: bool,
    /// The packet id of that PUBLISH (QoS 1 and 2 only).
    pub packet_id: Option<PacketId>,
}

impl From<Publish> for ApplicationMessage {
    fn from(publish: Publish) -> Self {
        ApplicationMessage {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos_pid.qos(),
            retain: publish.retain,
            dup: publish.dup,
            packet_id: publish.qos_pid.packet_id(),
        }
    }
}

/// The state of the client's connection, observed with [`crate::MQTTClient::state`].
///
/// A `watch` channel keeps only the latest state: an observer that is slow may see
/// `Reconnected` without having seen the `Lost` before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// `connect` has not been called yet.
    Idle,
    /// The first connection is being opened.
    Connecting,
    /// The first connection was accepted.
    Connected {
        /// The broker's CONNACK `session_present` flag.
        session_present: bool,
    },
    /// The connection was lost; the client is reconnecting if `auto_reconnect` is on.
    Lost,
    /// A connection was accepted again after a loss.
    Reconnected {
        /// The broker's CONNACK `session_present` flag. When false, the client has
        /// re-subscribed every filter itself.
        session_present: bool,
    },
    /// `disconnect` completed (or every handle was dropped).
    Disconnected,
    /// The client gave up: the broker refused the connection, or every attempt failed.
    Failed,
}

impl ConnectionState {
    /// Whether a connection is up (`Connected` or `Reconnected`).
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            ConnectionState::Connected { .. } | ConnectionState::Reconnected { .. }
        )
    }
}

/// What a successful `connect` learned from CONNACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// The broker resumed a stored session (only possible with `cleansession: false`).
    pub session_present: bool,
}

/// The completion of a publish queued with [`crate::MQTTClient::try_publish`]: resolves when
/// the QoS flow is complete (QoS 0: written to the socket; 1: PUBACK; 2: PUBCOMP).
///
/// Dropping it does not cancel the publish. Awaiting it is cancel-safe.
#[derive(Debug)]
#[must_use = "the publish goes out anyway; await this to know when it completed"]
pub struct PublishToken {
    pub(crate) reply: oneshot::Receiver<Result<(), ClientError>>,
}

impl Future for PublishToken {
    type Output = Result<(), ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.reply)
            .poll(cx)
            .map(|result| result.unwrap_or(Err(ClientError::NotConnected)))
    }
}

/// The received messages as a [`Stream`] (see [`crate::MQTTClient::messages`]). Ends when the
/// client is disconnected. Polling it is cancel-safe.
#[must_use = "streams do nothing unless polled"]
pub struct Messages(pub(crate) BoxStream<'static, ApplicationMessage>);

impl Stream for Messages {
    type Item = ApplicationMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Messages")
    }
}
