//! [`ClientConfig`]: aMQTT's client configuration keys and defaults, loadable from its YAML.
//!
//! The keys and their meaning are aMQTT 0.12's (`amqtt/contexts.py`, `default_client.yaml`);
//! parsing is strict as in aMQTT: an unknown key is an error naming it. A few keys that aMQTT
//! does not have are amqtt-rs extensions (queue sizes, the response timeout); they are marked so
//! in their docs. Times are [`Duration`]s, read from YAML as seconds (integers or decimals).
//! Plain data: building a config never panics and never does IO except in
//! [`ClientConfig::from_yaml_file`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mqtt_codec::{Protocol, QoS};
use serde::{Deserialize, Deserializer};

use crate::error::ConfigError;

/// The name under which aMQTT registers its packet logger; active by default.
pub const PACKET_LOGGER_PLUGIN: &str = "amqtt.plugins.logging_amqtt.PacketLoggerPlugin";

/// The client's configuration (aMQTT's `ClientConfig`). `Default` gives aMQTT's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Keep-alive in seconds (default 10). CONNECT carries `keep_alive - ping_delay` as aMQTT
    /// does (9 by default); a PINGREQ goes out after that long without sending. 0 turns
    /// keep-alive off.
    pub keep_alive: u16,
    /// Seconds subtracted from `keep_alive` for the CONNECT keep-alive field (default 1).
    pub ping_delay: u16,
    /// QoS of `publish` calls that give none and whose topic is not in `topics` (default 0).
    #[serde(deserialize_with = "qos_from_int")]
    pub default_qos: QoS,
    /// Retain flag of `publish` calls that give none and whose topic is not in `topics`
    /// (default false).
    pub default_retain: bool,
    /// Reconnect automatically when the connection is lost (default true). Never after
    /// `disconnect`.
    pub auto_reconnect: bool,
    /// Time allowed to open the network connection (default 60 s).
    #[serde(deserialize_with = "duration_from_secs")]
    pub connection_timeout: Duration,
    /// Failed attempts allowed per reconnect phase before giving up (default 2, so 3 attempts
    /// after a loss); `None` (a negative number in YAML) retries forever.
    #[serde(deserialize_with = "retries_from_int")]
    pub reconnect_retries: Option<u32>,
    /// Upper bound of the reconnect backoff: after failed attempt `n` the client waits
    /// `min(reconnect_max_interval, 2^n s)` (default 10 s).
    #[serde(deserialize_with = "duration_from_secs")]
    pub reconnect_max_interval: Duration,
    /// The CONNECT clean-session flag (default true).
    pub cleansession: bool,
    /// Per-topic publish defaults: `{topic: {qos, retain}}` (default empty).
    pub topics: BTreeMap<String, TopicConfig>,
    /// The broker to connect to and TLS files (default `mqtt://127.0.0.1:1883`).
    pub connection: ConnectionConfig,
    /// Deprecated alias of `connection` (aMQTT warns); used when `connection` is not given.
    pub broker: Option<ConnectionConfig>,
    /// Client plugins by registered name, each with its configuration (default: the
    /// packet logger). A mapping `{name: config}` or a list of one-entry mappings.
    pub plugins: PluginsConfig,
    /// Check the server certificate's host name (default true; TLS transports).
    pub check_hostname: bool,
    /// Verify the server certificate (default true; `false` requires `check_hostname: false`).
    pub verify_cert: bool,
    /// The will message put in CONNECT (default none).
    pub will: Option<WillConfig>,
    /// amqtt-rs extension: the protocol version of CONNECT, `"3.1.1"` (default) or `"3.1"`
    /// (also written `mqttv311`, `mqttv31`, or as the level 4 or 3).
    #[serde(deserialize_with = "protocol_from_name")]
    pub protocol_version: Protocol,
    /// amqtt-rs extension: outgoing QoS 1/2 publishes in flight at once (default 20).
    pub max_inflight: u16,
    /// amqtt-rs extension: QoS 1/2 messages the session queues behind the in-flight window
    /// (default 1000).
    pub max_queued_messages: usize,
    /// amqtt-rs extension: requests (publish, subscribe, …) waiting for the connection task
    /// (default 256). `publish` waits when it is full, `try_publish` fails fast; requests made
    /// while disconnected wait here until the connection is back.
    pub request_queue_size: usize,
    /// amqtt-rs extension: received messages waiting for `deliver_message` (default 1024).
    pub incoming_queue_size: usize,
    /// amqtt-rs extension: received messages buffered inside the connection task once the
    /// incoming queue is full, before it stops reading the socket (default 65,536). While
    /// below this, acknowledgements keep flowing, so a handler that publishes and awaits
    /// completion never deadlocks.
    pub incoming_buffer_size: usize,
    /// amqtt-rs extension: how long to wait for CONNACK and PINGRESP (default 10 s).
    #[serde(deserialize_with = "duration_from_secs")]
    pub response_timeout: Duration,
    /// amqtt-rs extension: how long `disconnect` waits for queued QoS 1/2 publishes
    /// (default 10 s).
    #[serde(deserialize_with = "duration_from_secs")]
    pub disconnect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            keep_alive: 10,
            ping_delay: 1,
            default_qos: QoS::AtMostOnce,
            default_retain: false,
            auto_reconnect: true,
            connection_timeout: Duration::from_secs(60),
            reconnect_retries: Some(2),
            reconnect_max_interval: Duration::from_secs(10),
            cleansession: true,
            topics: BTreeMap::new(),
            connection: ConnectionConfig::default(),
            broker: None,
            plugins: PluginsConfig::default(),
            check_hostname: true,
            verify_cert: true,
            will: None,
            protocol_version: Protocol::V311,
            max_inflight: 20,
            max_queued_messages: 1000,
            request_queue_size: 256,
            incoming_queue_size: 1024,
            incoming_buffer_size: 65_536,
            response_timeout: Duration::from_secs(10),
            disconnect_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientConfig {
    /// Parses aMQTT client YAML (strict: unknown keys are errors) and validates it.
    pub fn from_yaml_str(yaml: &str) -> Result<ClientConfig, ConfigError> {
        Self::parse(yaml, "<string>")
    }

    /// Reads and parses an aMQTT client YAML file; errors name the file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<ClientConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks the rules that serde cannot: will topic, TLS options, queue sizes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.verify_cert && self.check_hostname {
            return Err(invalid(
                "verify_cert",
                "false requires check_hostname: false (as in aMQTT)",
            ));
        }
        let connection = self.effective_connection();
        if connection.certfile.is_some() != connection.keyfile.is_some() {
            return Err(invalid(
                "connection.certfile",
                "certfile and keyfile must be given together",
            ));
        }
        if let Some(will) = &self.will {
            mqtt_codec::TopicName::new(will.topic.as_str())
                .map_err(|e| invalid("will.topic", &e.to_string()))?;
        }
        for (key, value) in [
            ("request_queue_size", self.request_queue_size),
            ("incoming_queue_size", self.incoming_queue_size),
            ("incoming_buffer_size", self.incoming_buffer_size),
            ("max_inflight", usize::from(self.max_inflight)),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The `connection` section, or the deprecated `broker` one when only that is given.
    pub fn effective_connection(&self) -> &ConnectionConfig {
        match &self.broker {
            Some(broker) if self.connection == ConnectionConfig::default() => broker,
            _ => &self.connection,
        }
    }

    /// The QoS and retain flag a publish gets when it gives none: the `topics` entry for the
    /// topic, else `default_qos` / `default_retain`.
    pub fn publish_defaults(&self, topic: &str) -> (QoS, bool) {
        match self.topics.get(topic) {
            Some(t) => (t.qos, t.retain),
            None => (self.default_qos, self.default_retain),
        }
    }

    /// The keep-alive sent in CONNECT: `keep_alive - ping_delay`, as aMQTT computes it.
    pub fn connect_keep_alive(&self) -> u16 {
        if self.keep_alive == 0 {
            0
        } else {
            self.keep_alive.saturating_sub(self.ping_delay).max(1)
        }
    }

    fn parse(yaml: &str, origin: &str) -> Result<ClientConfig, ConfigError> {
        // An empty document is aMQTT's defaults.
        let config: Option<ClientConfig> =
            serde_yaml::from_str(yaml).map_err(|e| ConfigError::Yaml {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        let config = config.unwrap_or_default();
        if config.broker.is_some() {
            tracing::warn!("{origin}: 'broker' is deprecated, use 'connection'");
        }
        config.validate()?;
        Ok(config)
    }
}

/// Publish defaults for one topic (the `topics` section).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// QoS (default 0).
    #[serde(deserialize_with = "qos_from_int")]
    pub qos: QoS,
    /// Retain flag (default false).
    pub retain: bool,
}

/// The `connection` section: where to connect and the TLS files.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The broker URI used when `connect` is given none (default `mqtt://127.0.0.1:1883`).
    pub uri: String,
    /// CA certificates file (PEM) for TLS.
    pub cafile: Option<String>,
    /// CA certificates directory (accepted; aMQTT never applies it either).
    pub capath: Option<String>,
    /// CA certificates as PEM text.
    pub cadata: Option<String>,
    /// Client certificate (PEM), with `keyfile`.
    pub certfile: Option<String>,
    /// Client private key (PEM), with `certfile`.
    pub keyfile: Option<String>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            uri: "mqtt://127.0.0.1:1883".to_string(),
            cafile: None,
            capath: None,
            cadata: None,
            certfile: None,
            keyfile: None,
        }
    }
}

/// The `will` section: the message the broker publishes if this client vanishes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WillConfig {
    /// Will topic.
    pub topic: String,
    /// Will payload (sent as UTF-8).
    pub message: String,
    /// Will QoS (default 0).
    #[serde(default, deserialize_with = "qos_from_int")]
    pub qos: QoS,
    /// Will retain flag (default false).
    #[serde(default)]
    pub retain: bool,
}

/// The `plugins` section: plugin names in order, each with its configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginsConfig(pub Vec<(String, serde_yaml::Value)>);

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig(vec![(
            PACKET_LOGGER_PLUGIN.to_string(),
            serde_yaml::Value::Null,
        )])
    }
}

impl<'de> Deserialize<'de> for PluginsConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_yaml::Value::deserialize(d)?;
        let mut out = Vec::new();
        match value {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(map) => {
                push_entries(map, &mut out).map_err(D::Error::custom)?
            }
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    match item {
                        serde_yaml::Value::Mapping(map) => {
                            push_entries(map, &mut out).map_err(D::Error::custom)?
                        }
                        _ => {
                            return Err(D::Error::custom(
                                "expected a list of {plugin name: config} mappings",
                            ))
                        }
                    }
                }
            }
            _ => {
                return Err(D::Error::custom(
                    "expected a mapping of plugin names to configs",
                ))
            }
        }
        Ok(PluginsConfig(out))
    }
}

fn push_entries(
    map: serde_yaml::Mapping,
    out: &mut Vec<(String, serde_yaml::Value)>,
) -> Result<(), &'static str> {
    for (name, config) in map {
        let name = name.as_str().ok_or("plugin names must be strings")?;
        out.push((name.to_string(), config));
    }
    Ok(())
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn qos_from_int<'de, D: Deserializer<'de>>(d: D) -> Result<QoS, D::Error> {
    use serde::de::Error;
    let value = u8::deserialize(d)?;
    QoS::from_u8(value)
        .ok_or_else(|| D::Error::custom(format!("invalid QoS {value}: expected 0, 1 or 2")))
}

/// Parses a protocol version name (see [`ClientConfig::protocol_version`]).
pub fn parse_protocol(name: &str) -> Option<Protocol> {
    match name {
        "3.1.1" | "mqttv311" | "311" | "4" => Some(Protocol::V311),
        "3.1" | "mqttv31" | "31" | "3" => Some(Protocol::V31),
        _ => None,
    }
}

fn protocol_from_name<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
    use serde::de::Error;
    let value = serde_yaml::Value::deserialize(d)?;
    let name = match &value {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    parse_protocol(&name).ok_or_else(|| {
        D::Error::custom(format!(
            "unsupported protocol version {name:?}: expected \"3.1.1\" or \"3.1\""
        ))
    })
}

fn duration_from_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use serde::de::Error;
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(|_| {
        D::Error::custom(format!(
            "expected a non-negative number of seconds, got {secs}"
        ))
    })
}

fn retries_from_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let retries = i64::deserialize(d)?;
    if retries < 0 {
        Ok(None)
    } else {
        u32::try_from(retries)
            .map(Some)
            .map_err(|_| D::Error::custom("reconnect_retries is too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_has_amqtt_defaults() {
        let c = ClientConfig::default();
        assert_eq!(c.keep_alive, 10);
        assert_eq!(c.ping_delay, 1);
        assert_eq!(c.connect_keep_alive(), 9);
        assert_eq!(c.reconnect_retries, Some(2));
        assert_eq!(c.reconnect_max_interval, Duration::from_secs(10));
        assert!(c.auto_reconnect && c.cleansession);
        assert_eq!(c.plugins.0.len(), 1);
        assert_eq!(c.plugins.0[0].0, PACKET_LOGGER_PLUGIN);
    }

    #[test]
    fn amqtt_default_client_yaml_loads() {
        let yaml = r#"
keep_alive: 10
ping_delay: 1
default_qos: 0
default_retain: false
auto_reconnect: true
cleansession: true
reconnect_max_interval: 10
reconnect_retries: 2
connection:
  uri: "mqtt://127.0.0.1"
plugins:
  amqtt.plugins.logging_amqtt.PacketLoggerPlugin:
topics:
  some/topic:
    qos: 2
    retain: true
will:
  topic: last/will
  message: gone
  qos: 1
"#;
        let c = ClientConfig::from_yaml_str(yaml).unwrap();
        assert_eq!(c.connection.uri, "mqtt://127.0.0.1");
        assert_eq!(c.publish_defaults("some/topic"), (QoS::ExactlyOnce, true));
        assert_eq!(c.publish_defaults("other"), (QoS::AtMostOnce, false));
        let will = c.will.unwrap();
        assert_eq!(
            (will.topic.as_str(), will.qos, will.retain),
            ("last/will", QoS::AtLeastOnce, false)
        );
    }

    #[test]
    fn negative_reconnect_retries_means_forever() {
        let c = ClientConfig::from_yaml_str("reconnect_retries: -1\nreconnect_max_interval: 0.5")
            .unwrap();
        assert_eq!(c.reconnect_retries, None);
        assert_eq!(c.reconnect_max_interval, Duration::from_millis(500));
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = ClientConfig::from_yaml_str("keep-alive: 10").unwrap_err();
        assert!(err.to_string().contains("keep-alive"), "{err}");
    }

    #[test]
    fn qos_3_is_an_error() {
        let err = ClientConfig::from_yaml_str("default_qos: 3").unwrap_err();
        assert!(err.to_string().contains("invalid QoS 3"), "{err}");
    }

    #[test]
    fn verify_cert_false_needs_check_hostname_false() {
        let err = ClientConfig::from_yaml_str("verify_cert: false").unwrap_err();
        assert!(err.to_string().starts_with("verify_cert:"), "{err}");
        ClientConfig::from_yaml_str("verify_cert: false\ncheck_hostname: false").unwrap();
    }

    #[test]
    fn plugins_accept_a_list_of_mappings_and_null() {
        let c = ClientConfig::from_yaml_str("plugins:\n  - a.B: {x: 1}\n  - c.D:\n").unwrap();
        let names: Vec<_> = c.plugins.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.B", "c.D"]);
        let c = ClientConfig::from_yaml_str("plugins:").unwrap();
        assert!(c.plugins.0.is_empty());
        assert!(ClientConfig::from_yaml_str("plugins: [a.B]").is_err());
    }

    #[test]
    fn deprecated_broker_section_is_used_when_connection_is_absent() {
        let c = ClientConfig::from_yaml_str("broker:\n  uri: mqtt://example:1884").unwrap();
        assert_eq!(c.effective_connection().uri, "mqtt://example:1884");
    }

    #[test]
    fn protocol_version_accepts_mosquitto_names() {
        let c = ClientConfig::from_yaml_str("protocol_version: mqttv31").unwrap();
        assert_eq!(c.protocol_version, Protocol::V31);
        let c = ClientConfig::from_yaml_str("protocol_version: 4").unwrap();
        assert_eq!(c.protocol_version, Protocol::V311);
        assert!(ClientConfig::from_yaml_str("protocol_version: mqttv5").is_err());
    }

    #[test]
    fn empty_document_is_the_default() {
        assert_eq!(
            ClientConfig::from_yaml_str("").unwrap(),
            ClientConfig::default()
        );
    }
}
