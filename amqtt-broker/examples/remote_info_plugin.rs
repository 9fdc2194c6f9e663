//! A custom broker plugin, the counterpart of aMQTT's `RemoteInfoPlugin` sample: it logs each
//! client's id and remote address and, when `display_port: true` is configured, the port.
//!
//! Run with `cargo run -p amqtt-broker --example remote_info_plugin`.

use std::sync::Arc;

use amqtt_broker::plugins::{
    BrokerEvent, BrokerPlugin, ConfiguredPlugin, Hooks, PluginContext, PluginError, PluginManager,
    PluginRegistry, PluginSpec, SessionInfo,
};
use serde::Deserialize;

/// Logs where clients connect from.
struct RemoteInfoPlugin {
    config: RemoteInfoConfig,
}

/// The plugin's config section (aMQTT's nested `Config` dataclass).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteInfoConfig {
    /// Also log the client's port.
    #[serde(default)]
    display_port: bool,
}

impl ConfiguredPlugin for RemoteInfoPlugin {
    type Config = RemoteInfoConfig;

    fn build(config: RemoteInfoConfig, _context: &PluginContext) -> Result<Self, PluginError> {
        Ok(RemoteInfoPlugin { config })
    }
}

#[async_trait::async_trait]
impl BrokerPlugin for RemoteInfoPlugin {
    fn hooks(&self) -> Hooks {
        Hooks::CLIENT_CONNECTED
    }

    async fn on_broker_client_connected(&self, session: &Arc<SessionInfo>) {
        let address = session
            .remote_addr
            .map_or_else(|| String::from("unknown"), |a| a.ip().to_string());
        let port = match (self.config.display_port, session.remote_addr) {
            (true, Some(addr)) => format!(" on port '{}'", addr.port()),
            _ => String::new(),
        };
        tracing::info!(
            "client '{}' connected from '{address}'{port}",
            session.client_id
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();

    // Register the plugin under the name a broker YAML file uses for it.
    let mut registry = PluginRegistry::new();
    registry.register::<RemoteInfoPlugin>("samples.plugins.RemoteInfoPlugin");
    let section: serde_yaml::Value = serde_yaml::from_str(
        "amqtt.plugins.authentication.AnonymousAuthPlugin:\n  allow_anonymous: true\n\
         samples.plugins.RemoteInfoPlugin:\n  display_port: true\n",
    )?;
    let plugins = PluginManager::builder(&registry, PluginContext::new())
        .specs(PluginSpec::list_from_yaml(&section)?)
        .build()?;
    plugins.start();

    // What the broker does for an accepted client.
    let session =
        Arc::new(SessionInfo::new("sensor-1").with_remote_addr("127.0.0.1:51234".parse()?));
    if plugins.authenticate(&session).await {
        plugins.emit(BrokerEvent::ClientConnected { session });
    }
    plugins.fire_and_wait(BrokerEvent::PostShutdown).await;
    plugins.shutdown().await;
    Ok(())
}
