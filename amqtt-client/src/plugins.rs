//! Client plugins: aMQTT's `on_mqtt_packet_sent` / `on_mqtt_packet_received` events.
//!
//! A plugin is a [`ClientPlugin`]. The `plugins` section of [`crate::ClientConfig`] names
//! plugins, and a [`PluginRegistry`] maps those names to constructors; the packaged
//! [`PacketLoggerPlugin`] is registered under aMQTT's dotted name and is active by default, as in
//! aMQTT. Users register their own plugins under any name, or pass instances with
//! [`crate::MQTTClient::add_plugin`].
//!
//! Hooks run inside the connection task, synchronously and in packet order: they must be quick
//! and must not block (spawn a task for slow work). Packets are only decoded for the hooks when
//! some plugin [wants them](ClientPlugin::wants_packets), so an inactive packet logger costs
//! nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use mqtt_codec::Packet;

use crate::config::{PluginsConfig, PACKET_LOGGER_PLUGIN};
use crate::error::ConfigError;

/// What a hook knows about the client it runs in.
#[derive(Clone, Debug)]
pub struct PluginContext {
    /// The client identifier.
    pub client_id: String,
}

/// A client plugin. Every hook is a no-op by default.
pub trait ClientPlugin: Send + Sync + 'static {
    /// The plugin's name, for logs.
    fn name(&self) -> &str;

    /// Whether the packet hooks should be called at all (checked when a connection starts).
    fn wants_packets(&self) -> bool {
        true
    }

    /// A packet was handed to the transport (aMQTT `on_mqtt_packet_sent`).
    fn on_mqtt_packet_sent(&self, context: &PluginContext, packet: &Packet) {
        let _ = (context, packet);
    }

    /// A packet was read from the transport (aMQTT `on_mqtt_packet_received`).
    fn on_mqtt_packet_received(&self, context: &PluginContext, packet: &Packet) {
        let _ = (context, packet);
    }
}

/// Builds a plugin from its YAML configuration (`Null` when the config names it bare).
pub type PluginConstructor =
    Arc<dyn Fn(&serde_yaml::Value) -> Result<Arc<dyn ClientPlugin>, ConfigError> + Send + Sync>;

/// Plugin names and their constructors. `Default` holds the packaged plugins.
#[derive(Clone)]
pub struct PluginRegistry {
    constructors: HashMap<String, PluginConstructor>,
}

impl PluginRegistry {
    /// A registry without any plugin.
    pub fn empty() -> PluginRegistry {
        PluginRegistry {
            constructors: HashMap::new(),
        }
    }

    /// Registers (or replaces) a constructor under `name`.
    pub fn register<F>(&mut self, name: impl Into<String>, constructor: F)
    where
        F: Fn(&serde_yaml::Value) -> Result<Arc<dyn ClientPlugin>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.constructors.insert(name.into(), Arc::new(constructor));
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.constructors.contains_key(name)
    }

    /// Builds every plugin the config names, in order. An unknown name is an error.
    pub fn build(&self, config: &PluginsConfig) -> Result<Vec<Arc<dyn ClientPlugin>>, ConfigError> {
        config
            .0
            .iter()
            .map(|(name, value)| {
                let constructor = self
                    .constructors
                    .get(name)
                    .ok_or_else(|| ConfigError::UnknownPlugin(name.clone()))?;
                constructor(value)
            })
            .collect()
    }
}

impl Default for PluginRegistry {
    fn default() -> Self {
        let mut registry = PluginRegistry::empty();
        registry.register(PACKET_LOGGER_PLUGIN, |config| {
            expect_empty_config(PACKET_LOGGER_PLUGIN, config)?;
            Ok(Arc::new(PacketLoggerPlugin))
        });
        registry
    }
}

impl fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.constructors.keys().collect();
        names.sort();
        f.debug_struct("PluginRegistry")
            .field("names", &names)
            .finish()
    }
}

/// aMQTT's `PacketLoggerPlugin`: one debug line per packet sent or received, on the tracing
/// target `amqtt_client::packets`. Active only when that target is enabled at debug level.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketLoggerPlugin;

impl ClientPlugin for PacketLoggerPlugin {
    fn name(&self) -> &str {
        PACKET_LOGGER_PLUGIN
    }

    fn wants_packets(&self) -> bool {
        tracing::enabled!(target: "amqtt_client::packets", tracing::Level::DEBUG)
    }

    fn on_mqtt_packet_sent(&self, context: &PluginContext, packet: &Packet) {
        tracing::debug!(target: "amqtt_client::packets", "{} -out-> {:?}", context.client_id, packet);
    }

    fn on_mqtt_packet_received(&self, context: &PluginContext, packet: &Packet) {
        tracing::debug!(target: "amqtt_client::packets", "{} <-in-- {:?}", context.client_id, packet);
    }
}

/// The packet logger takes no configuration: `null` or `{}`.
fn expect_empty_config(name: &str, config: &serde_yaml::Value) -> Result<(), ConfigError> {
    match config {
        serde_yaml::Value::Null => Ok(()),
        serde_yaml::Value::Mapping(map) if map.is_empty() => Ok(()),
        _ => Err(ConfigError::PluginConfig {
            plugin: name.to_string(),
            message: "takes no configuration".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_registry_builds_the_packet_logger() {
        let plugins = PluginRegistry::default()
            .build(&PluginsConfig::default())
            .unwrap();
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0].name(), PACKET_LOGGER_PLUGIN);
    }

    #[test]
    fn unknown_plugin_is_an_error_naming_it() {
        let config = PluginsConfig(vec![("my.Plugin".into(), serde_yaml::Value::Null)]);
        let err = PluginRegistry::default().build(&config).err().unwrap();
        assert_eq!(err, ConfigError::UnknownPlugin("my.Plugin".into()));
    }

    #[test]
    fn packet_logger_rejects_a_config() {
        let value: serde_yaml::Value = serde_yaml::from_str("{level: 3}").unwrap();
        let config = PluginsConfig(vec![(PACKET_LOGGER_PLUGIN.into(), value)]);
        let err = PluginRegistry::default().build(&config).err().unwrap();
        assert!(err.to_string().contains("takes no configuration"), "{err}");
    }
}
