//! Decision points: who may connect, and who may publish, subscribe to or receive a topic.
//!
//! Every authentication and topic decision of the broker goes through one [`AccessControl`]
//! object, so the plugin framework (aMQTT's auth and topic plugins) plugs in here without
//! touching the connection code. The default, [`AllowAll`], is aMQTT's default configuration:
//! anonymous clients are allowed and no topic is filtered.
//!
//! Topic checks are synchronous on purpose: they run on the hot path (per PUBLISH, and per
//! receiver for [`Action::Receive`]), and a boxed future per message would cost an allocation.
//! An implementation that needs IO (an HTTP or database ACL) should cache. When
//! [`AccessControl::filters_topics`] is false the broker never calls [`AccessControl::check_topic`]
//! and pays nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use mqtt_codec::ConnectReturnCode;

/// A boxed future, as returned by [`AccessControl::authenticate`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the broker knows about a connected client (aMQTT's `Session` connection fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client identifier (generated as `amqtt/` + 16 characters when the client sent none).
    pub client_id: Arc<str>,
    /// The user name from CONNECT.
    pub username: Option<Arc<str>>,
    /// The peer's address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// The name of the listener the client came in on.
    pub listener: Arc<str>,
    /// The clean-session flag of the CONNECT.
    pub clean_session: bool,
    /// The keep-alive of the CONNECT, in seconds.
    pub keep_alive: u16,
}

/// A CONNECT to authenticate.
#[derive(Clone, Debug)]
pub struct ConnectRequest<'a> {
    /// The client, as it will be known if accepted.
    pub client: &'a ClientInfo,
    /// The password from CONNECT (binary data).
    pub password: Option<&'a Bytes>,
}

/// What a topic check is about (aMQTT's `Action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The client publishes to the topic.
    Publish,
    /// The client subscribes with the topic filter.
    Subscribe,
    /// A message on the topic would be delivered to the client.
    Receive,
}

/// The broker's authentication and topic-filtering decisions.
///
/// The plugin framework implements this by combining aMQTT's auth and topic plugins.
pub trait AccessControl: Send + Sync + 'static {
    /// Decides a CONNECT: [`ConnectReturnCode::Accepted`] lets the client in; any other code is
    /// sent in CONNACK and the connection is closed (aMQTT answers every refusal with 0x05).
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> BoxFuture<'a, ConnectReturnCode>;

    /// Whether [`AccessControl::check_topic`] must be called at all. Read once, when the broker
    /// is built.
    fn filters_topics(&self) -> bool;

    /// Whether `client` may do `action` on `topic` (a topic name for publish and receive, a
    /// topic filter for subscribe). A denied PUBLISH is acknowledged and dropped, a denied
    /// SUBSCRIBE filter gets 0x80 in SUBACK, a denied receive is not delivered to that client.
    ///
    /// Called directly for [`Action::Receive`] (on the publisher's task, once per receiver, so it
    /// must be quick), and through [`AccessControl::check_topic_async`] for the others.
    fn check_topic(&self, client: &ClientInfo, topic: &str, action: Action) -> bool;

    /// The decision for [`Action::Publish`] and [`Action::Subscribe`], which may wait (e.g. on
    /// an async plugin). The connection awaits it before handling its next packet, so a
    /// client's packets stay in order. Defaults to [`AccessControl::check_topic`].
    fn check_topic_async<'a>(
        &'a self,
        client: &'a ClientInfo,
        topic: &'a str,
        action: Action,
    ) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(self.check_topic(client, topic, action)))
    }
}

/// aMQTT's default: every client is accepted, no topic is filtered.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl AccessControl for AllowAll {
    fn authenticate<'a>(
        &'a self,
        _request: ConnectRequest<'a>,
    ) -> BoxFuture<'a, ConnectReturnCode> {
        Box::pin(std::future::ready(ConnectReturnCode::Accepted))
    }

    fn filters_topics(&self) -> bool {
        false
    }

    fn check_topic(&self, _client: &ClientInfo, _topic: &str, _action: Action) -> bool {
        true
    }
}
