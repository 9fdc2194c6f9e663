//! amqtt-broker: an MQTT 3.1.1 broker on tokio, configured like aMQTT.
//!
//! Build a [`BrokerConfig`] (from aMQTT's YAML with [`BrokerConfig::from_yaml_file`] or
//! [`BrokerConfig::from_yaml_str`], or in code), make a [`Broker`], then [`Broker::start`] it and
//! later [`Broker::shutdown`] it:
//!
//! ```no_run
//! # async fn run() -> Result<(), amqtt_broker::BrokerError> {
//! use amqtt_broker::{Broker, BrokerConfig};
//! let broker = Broker::new(BrokerConfig::from_yaml_file("broker.yaml")?)?;
//! broker.start().await?;
//! tokio::signal::ctrl_c().await?;
//! broker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Every connection is one task driving the codec's sans-IO
//! [`ServerConnection`](mqtt_codec::server::ServerConnection); nothing MQTT-specific is parsed
//! in this crate. Authentication and topic filtering go through one [`AccessControl`] object and
//! every broker event through one [`EventHook`] (see [`Extensions`]), which is where aMQTT's
//! plugins plug in. Retained messages and offline sessions live behind the [`RetainedStore`]
//! and [`SessionStore`] traits.
#![warn(missing_docs)]
// Nothing from the network or a file may panic (issue #9): no `unwrap`/`expect`/indexing
// outside tests; a provably in-bounds index carries a local `#[allow]` saying why.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

// Benchmark scaffolding: its inputs are the benchmarks' own constants, never the network or
// a file, so a failed `expect` there is a broken benchmark.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#[doc(hidden)]
pub mod bench_api;
mod broker;
pub mod config;
mod connection;
mod error;
pub mod events;
pub mod hooks;
mod listener;
pub mod plugins;
mod retained;
mod router;
mod sessions;
pub mod store;
mod timers;
mod transport;

pub use broker::{Broker, Extensions};
pub use config::{BrokerConfig, Limits, ListenerConfig, ListenerType, PluginEntry};
pub use error::{BrokerError, ConfigError};
pub use events::{BrokerEvent, EventHook, LifecycleEvent};
pub use hooks::{AccessControl, Action, AllowAll, ClientInfo, ConnectRequest};
pub use store::{
    MemoryRetainedStore, MemorySessionStore, RetainedStore, SessionStore, StoredSession,
};
