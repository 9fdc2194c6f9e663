//! What a plugin gets to work with (aMQTT's `BrokerContext`): the broker's config, its sessions
//! and subscriptions, the means to publish or retain a message, the broker's counters and a
//! tracing span to log in.
//!
//! Plugins are built before the broker runs, so the live part ([`BrokerAccess`]) is attached
//! later, when the broker starts; until then the accessors answer "nothing" and publishing
//! reports that the broker is not running.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter, TopicName};

use crate::config::BrokerConfig;
use crate::plugins::BrokerStats;

/// The live broker, as plugins see it. Implemented by the broker; every method returns at
/// once (no method waits on a client).
pub trait BrokerAccess: Send + Sync + 'static {
    /// Delivers `message` to every matching subscriber, as if a client had published it
    /// (aMQTT's `broadcast_message`); with `retain` set it is also stored. `$` topics are
    /// allowed here. Returns `false` if the broker has stopped and dropped it.
    fn publish(&self, message: Message) -> bool;

    /// Stores `message` as the retained message of its topic without delivering it (aMQTT's
    /// `retain_message`); an empty payload clears the topic. Returns `false` if the broker
    /// has stopped.
    fn retain(&self, message: Message) -> bool;

    /// A snapshot of every session the broker holds, connected or not.
    fn sessions(&self) -> Vec<SessionSummary>;

    /// A snapshot of every subscription: `(client_id, filter, granted QoS)`.
    fn subscriptions(&self) -> Vec<(String, TopicFilter, QoS)>;

    /// The number of topics holding a retained message.
    fn retained_count(&self) -> usize;
}

/// One session in [`BrokerAccess::sessions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// The client identifier.
    pub client_id: String,
    /// The user name it connected with.
    pub username: Option<String>,
    /// Whether a connection is attached.
    pub connected: bool,
    /// Whether the session ends with its connection.
    pub clean_session: bool,
    /// Outgoing QoS 1/2 messages not yet acknowledged.
    pub inflight_out: usize,
    /// Incoming QoS 2 messages not yet released.
    pub inflight_in: usize,
    /// Messages queued while the client is away or its window is full.
    pub queued: usize,
}

/// Handed to every plugin constructor; cheap to clone.
#[derive(Clone)]
pub struct PluginContext {
    plugin: Arc<str>,
    stats: Arc<BrokerStats>,
    broker: Arc<OnceLock<Arc<dyn BrokerAccess>>>,
    broker_config: Option<Arc<BrokerConfig>>,
}

impl PluginContext {
    /// A context not attached to a broker yet, with fresh counters.
    pub fn new() -> PluginContext {
        PluginContext {
            plugin: Arc::from(""),
            stats: Arc::new(BrokerStats::new()),
            broker: Arc::new(OnceLock::new()),
            broker_config: None,
        }
    }

    /// Uses `stats` as the broker's counters (the broker keeps them up to date).
    pub fn with_stats(mut self, stats: Arc<BrokerStats>) -> PluginContext {
        self.stats = stats;
        self
    }

    /// Makes the broker's config available through [`PluginContext::broker_config`].
    pub fn with_broker_config(mut self, config: Arc<BrokerConfig>) -> PluginContext {
        self.broker_config = Some(config);
        self
    }

    /// The same context, named for one plugin (the name appears in its log span).
    pub fn for_plugin(&self, name: &str) -> PluginContext {
        PluginContext {
            plugin: Arc::from(name),
            ..self.clone()
        }
    }

    /// Attaches the running broker. Every clone of this context sees it. Returns `false` if a
    /// broker was attached already (the first one stays).
    pub fn attach(&self, broker: Arc<dyn BrokerAccess>) -> bool {
        self.broker.set(broker).is_ok()
    }

    /// The name the plugin was configured under (empty for plugins passed as instances).
    pub fn plugin_name(&self) -> &str {
        &self.plugin
    }

    /// The broker's counters.
    pub fn stats(&self) -> &Arc<BrokerStats> {
        &self.stats
    }

    /// The whole broker config (listeners, limits, every plugin section), when the plugins
    /// were built from one ([`PluginManager::builder_for_config`](crate::plugins::PluginManager::builder_for_config)).
    pub fn broker_config(&self) -> Option<&BrokerConfig> {
        self.broker_config.as_deref()
    }

    /// The running broker, once attached.
    pub fn broker(&self) -> Option<&Arc<dyn BrokerAccess>> {
        self.broker.get()
    }

    /// A span to log in, carrying the plugin's name.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("plugin", name = %self.plugin)
    }

    /// Publishes a message from the broker (see [`BrokerAccess::publish`]). Returns `false`
    /// when no broker is running.
    pub fn publish(
        &self,
        topic: TopicName,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> bool {
        self.broker
            .get()
            .is_some_and(|b| b.publish(Message::new(topic, payload, qos, retain)))
    }

    /// Stores a retained message without delivering it (see [`BrokerAccess::retain`]).
    /// Returns `false` when no broker is running.
    pub fn retain(&self, topic: TopicName, payload: impl Into<Bytes>, qos: QoS) -> bool {
        self.broker
            .get()
            .is_some_and(|b| b.retain(Message::new(topic, payload, qos, true)))
    }

    /// A snapshot of the broker's sessions (empty when no broker is running).
    pub fn sessions(&self) -> Vec<SessionSummary> {
        self.broker.get().map(|b| b.sessions()).unwrap_or_default()
    }

    /// A snapshot of the broker's subscriptions (empty when no broker is running).
    pub fn subscriptions(&self) -> Vec<(String, TopicFilter, QoS)> {
        self.broker
            .get()
            .map(|b| b.subscriptions())
            .unwrap_or_default()
    }
}

impl Default for PluginContext {
    fn default() -> Self {
        PluginContext::new()
    }
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin", &self.plugin)
            .field("attached", &self.broker.get().is_some())
            .finish_non_exhaustive()
    }
}
