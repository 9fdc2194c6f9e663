//! aMQTT's logging plugins (`amqtt.plugins.logging_amqtt`), writing through `tracing`:
//! `EventLoggerPlugin` (INFO for client connect/disconnect, DEBUG for every other event) and
//! `PacketLoggerPlugin` (a DEBUG line per packet received or sent).
//!
//! Both subscribe only to what the installed `tracing` subscriber would print when the broker
//! is built, so with DEBUG off the broker does not even build packet events.

use async_trait::async_trait;
use mqtt_codec::packet::Packet;
use mqtt_codec::session::Message;
use mqtt_codec::{QoS, TopicFilter};

use crate::plugins::{
    BrokerPlugin, ClientInfo, ConfiguredPlugin, EmptyConfig, Hooks, PluginContext, PluginError,
};

const EVENT_TARGET: &str = "amqtt::plugins::event_logger";
const PACKET_TARGET: &str = "amqtt::plugins::packet_logger";

/// `amqtt.plugins.logging_amqtt.EventLoggerPlugin` (entry point `event_logger_plugin`).
#[derive(Debug, Default)]
pub struct EventLoggerPlugin;

impl ConfiguredPlugin for EventLoggerPlugin {
    type Config = EmptyConfig;

    fn build(_config: EmptyConfig, _context: &PluginContext) -> Result<Self, PluginError> {
        Ok(EventLoggerPlugin)
    }
}

fn fired(name: &str) {
    tracing::debug!(target: EVENT_TARGET, "### 'on_{name}' EVENT FIRED ###");
}

#[async_trait]
impl BrokerPlugin for EventLoggerPlugin {
    fn hooks(&self) -> Hooks {
        let mut hooks = Hooks::NONE;
        if tracing::enabled!(target: EVENT_TARGET, tracing::Level::INFO) {
            hooks |= Hooks::CLIENT_CONNECTED | Hooks::CLIENT_DISCONNECTED;
        }
        if tracing::enabled!(target: EVENT_TARGET, tracing::Level::DEBUG) {
            hooks |= Hooks::ALL_EVENTS;
        }
        hooks
    }

    async fn on_broker_pre_start(&self) {
        fired("broker_pre_start");
    }

    async fn on_broker_post_start(&self) {
        fired("broker_post_start");
    }

    async fn on_broker_pre_shutdown(&self) {
        fired("broker_pre_shutdown");
    }

    async fn on_broker_post_shutdown(&self) {
        fired("broker_post_shutdown");
    }

    async fn on_broker_client_connected(&self, session: &ClientInfo) {
        tracing::info!(
            target: EVENT_TARGET,
            client_id = %session.client_id,
            "### 'on_broker_client_connected' EVENT FIRED ###"
        );
    }

    async fn on_broker_client_disconnected(&self, session: &ClientInfo) {
        tracing::info!(
            target: EVENT_TARGET,
            client_id = %session.client_id,
            "### 'on_broker_client_disconnected' EVENT FIRED ###"
        );
    }

    async fn on_broker_client_subscribed(
        &self,
        session: &ClientInfo,
        topic: &TopicFilter,
        qos: QoS,
    ) {
        tracing::debug!(
            target: EVENT_TARGET,
            client_id = %session.client_id,
            %topic,
            qos = qos.as_u8(),
            "### 'on_broker_client_subscribed' EVENT FIRED ###"
        );
    }

    async fn on_broker_client_unsubscribed(&self, session: &ClientInfo, topic: &TopicFilter) {
        tracing::debug!(
            target: EVENT_TARGET,
            client_id = %session.client_id,
            %topic,
            "### 'on_broker_client_unsubscribed' EVENT FIRED ###"
        );
    }

    async fn on_broker_retained_message(&self, client_id: Option<&str>, message: &Message) {
        tracing::debug!(
            target: EVENT_TARGET,
            client_id,
            topic = %message.topic,
            bytes = message.payload.len(),
            "### 'on_broker_retained_message' EVENT FIRED ###"
        );
    }

    async fn on_broker_message_received(&self, session: &ClientInfo, message: &Message) {
        tracing::debug!(
            target: EVENT_TARGET,
            client_id = %session.client_id,
            topic = %message.topic,
            "### 'on_broker_message_received' EVENT FIRED ###"
        );
    }

    async fn on_broker_message_broadcast(&self, session: Option<&ClientInfo>, message: &Message) {
        tracing::debug!(
            target: EVENT_TARGET,
            client_id = session.map(|s| &*s.client_id),
            topic = %message.topic,
            "### 'on_broker_message_broadcast' EVENT FIRED ###"
        );
    }

    async fn on_mqtt_packet_received(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let _ = session;
        tracing::debug!(target: EVENT_TARGET, packet = packet.name(), "### 'on_mqtt_packet_received' EVENT FIRED ###");
    }

    async fn on_mqtt_packet_sent(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let _ = session;
        tracing::debug!(target: EVENT_TARGET, packet = packet.name(), "### 'on_mqtt_packet_sent' EVENT FIRED ###");
    }
}

/// `amqtt.plugins.logging_amqtt.PacketLoggerPlugin` (entry point `packet_logger_plugin`):
/// `{client_id} <-in-- {packet:?}` and `{client_id} -out-> {packet:?}` at DEBUG. Passwords in
/// CONNECT are not printed.
#[derive(Debug, Default)]
pub struct PacketLoggerPlugin;

impl ConfiguredPlugin for PacketLoggerPlugin {
    type Config = EmptyConfig;

    fn build(_config: EmptyConfig, _context: &PluginContext) -> Result<Self, PluginError> {
        Ok(PacketLoggerPlugin)
    }
}

#[async_trait]
impl BrokerPlugin for PacketLoggerPlugin {
    fn hooks(&self) -> Hooks {
        if tracing::enabled!(target: PACKET_TARGET, tracing::Level::DEBUG) {
            Hooks::PACKET_RECEIVED | Hooks::PACKET_SENT
        } else {
            Hooks::NONE
        }
    }

    async fn on_mqtt_packet_received(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let client_id = session.map_or("", |s| &*s.client_id);
        tracing::debug!(target: PACKET_TARGET, "{client_id} <-in-- {:?}", Redacted(packet));
    }

    async fn on_mqtt_packet_sent(&self, session: Option<&ClientInfo>, packet: &Packet) {
        let client_id = session.map_or("", |s| &*s.client_id);
        tracing::debug!(target: PACKET_TARGET, "{client_id} -out-> {:?}", Redacted(packet));
    }
}

/// Debug-prints a packet with a CONNECT's password hidden.
struct Redacted<'a>(&'a Packet);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Packet::Connect(connect) if connect.password.is_some() => {
                let mut shown = (**connect).clone();
                shown.password = Some(bytes::Bytes::from_static(b"<redacted>"));
                f.debug_tuple("Connect").field(&shown).finish()
            }
            other => std::fmt::Debug::fmt(other, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::{Connect, KeepAlive, Protocol};

    use super::*;

    #[test]
    fn loggers_listen_to_nothing_when_tracing_is_off() {
        // No subscriber is installed in unit tests: nothing would be printed.
        assert!(EventLoggerPlugin.hooks().is_empty());
        assert!(PacketLoggerPlugin.hooks().is_empty());
    }

    #[test]
    fn packet_log_hides_the_password() {
        let packet = Packet::Connect(Box::new(Connect {
            protocol: Protocol::V311,
            keep_alive: KeepAlive(10),
            client_id: "c".into(),
            clean_session: true,
            will: None,
            username: Some("u".into()),
            password: Some(bytes::Bytes::from_static(b"hunter2")),
        }));
        let text = format!("{:?}", Redacted(&packet));
        assert!(text.contains("redacted"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
