//! A custom broker plugin, the counterpart of aMQTT's `RemoteInfoPlugin` sample: it logs each
//! client's id and remote address and, when `display_port: true` is configured, the port.
//!
//! The plugin is registered under a name of our choosing and configured from the broker YAML
//! like any packaged plugin. The example starts a broker on a free port, connects one client
//! and shuts down. Run it with
//! `cargo run -p amqtt-broker --example remote_info_plugin`.

use std::sync::Mutex;

use amqtt_broker::plugins::{
    BrokerPlugin, ClientInfo, ConfiguredPlugin, Hooks, PluginContext, PluginError, PluginRegistry,
};
use amqtt_broker::{Broker, BrokerConfig};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    async fn on_broker_client_connected(&self, session: &ClientInfo) {
        let line = describe(session, self.config.display_port);
        tracing::info!("{line}");
        LOG.lock().map(|mut log| log.push(line)).ok();
    }
}

/// `client 'ID' connected from 'ADDRESS'`, plus ` on port 'PORT'` when asked.
fn describe(session: &ClientInfo, display_port: bool) -> String {
    let address = session
        .remote_addr
        .map_or_else(|| String::from("unknown"), |a| a.ip().to_string());
    let port = match (display_port, session.remote_addr) {
        (true, Some(addr)) => format!(" on port '{}'", addr.port()),
        _ => String::new(),
    };
    format!(
        "client '{}' connected from '{address}'{port}",
        session.client_id
    )
}

/// What the plugin logged (the example's test reads it).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

const CONFIG: &str = "
listeners:
  default:
    type: tcp
    bind: 127.0.0.1:0
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
  samples.plugins.RemoteInfoPlugin:
    display_port: true
";

/// Starts the broker with the plugin, connects one client, and shuts down.
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Register the plugin under the name the YAML uses, next to the packaged ones.
    let mut registry = PluginRegistry::new();
    registry.register::<RemoteInfoPlugin>("samples.plugins.RemoteInfoPlugin");
    let broker = Broker::with_plugins(BrokerConfig::from_yaml_str(CONFIG)?, &registry)?;
    broker.start().await?;
    let addr = broker.local_addr("default").ok_or("no listener")?;

    // A minimal MQTT 3.1.1 client: CONNECT with client id "sensor-1", read the CONNACK.
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let connect = [
        0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 8, b's', b'e', b'n', b's', b'o',
        b'r', b'-', b'1',
    ];
    socket.write_all(&connect).await?;
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).await?;
    println!("CONNACK return code: {}", connack[3]);
    socket.write_all(&[0xe0, 0]).await?; // DISCONNECT

    broker.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_logs_the_client_and_its_port() {
        tokio::time::timeout(std::time::Duration::from_secs(30), super::run())
            .await
            .expect("the example finishes")
            .expect("the example runs");
        let log = super::LOG.lock().expect("log").clone();
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(
            log[0].starts_with("client 'sensor-1' connected from '127.0.0.1' on port '"),
            "{log:?}"
        );
    }
}
