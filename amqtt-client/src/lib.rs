//! amqtt-client: `MQTTClient`, an MQTT 3.1.1 client on tokio with aMQTT's API and config.
//!
//! ```no_run
//! # async fn demo() -> Result<(), amqtt_client::ClientError> {
//! use amqtt_client::{ClientConfig, MQTTClient, QoS};
//! let client = MQTTClient::new(None, ClientConfig::default())?;
//! client.connect("mqtt://127.0.0.1:1883").await?;
//! client.publish("a/b", "hello", QoS::AtLeastOnce, false).await?;
//! client.disconnect().await?;
//! # Ok(()) }
//! ```
//!
//! How it is built: all MQTT rules (handshake, packet ids, QoS 1/2 flows, retransmission,
//! keep-alive) live in `mqtt_codec::client::ClientConnection`. This crate is the tokio shell
//! around it: one task per client owns the socket and drives the state machine (`driver`),
//! [`MQTTClient`] handles talk to it over bounded channels, [`transport`] opens the byte
//! stream, and [`ClientConfig`] reads aMQTT's client YAML.
#![warn(missing_docs)]
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod client;
mod config;
mod driver;
mod error;
mod message;
pub mod plugins;
pub mod transport;
mod uri;

pub use client::{ConnectParams, MQTTClient};
pub use config::{
    parse_protocol, ClientConfig, ConnectionConfig, PluginsConfig, TopicConfig, WillConfig,
    PACKET_LOGGER_PLUGIN,
};
pub use error::{ClientError, ConfigError};
pub use message::{ApplicationMessage, ConnectOutcome, ConnectionState, Messages, PublishToken};
pub use mqtt_codec::{
    ConnectReturnCode, Packet, Protocol, QoS, SubAckReturnCode, TopicFilter, TopicName,
};
pub use plugins::{ClientPlugin, PacketLoggerPlugin, PluginContext, PluginRegistry};
pub use uri::{BrokerUri, Scheme};
