//! The connection flags `amqtt_pub` and `amqtt_sub` share, and how they become a client.
//!
//! aMQTT's flags are kept with their meaning (`--url`, `-c/--config-file`, `-i`, `-k`,
//! `--clean-session`, `--ca-*`, `--will-*`, `--extra-headers`, `-d`); mosquitto's `-h`, `-p`,
//! `-u`, `-P`, `-L`, `-I`, `--cafile`, `--capath`, `--cert`, `--key`, `--insecure`,
//! `--will-payload` and `--quiet` are accepted too. `--help` has no short form because `-h` is
//! the host, as in mosquitto.

use std::time::Duration;

use amqtt_client::{ClientConfig, ConnectParams, MQTTClient, QoS, WillConfig};
use clap::Args;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use url::Url;

use crate::CliError;

/// Connection options common to both tools.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Broker URL: `[mqtt(s)|ws(s)]://[username:password@]HOST[:port]` (mosquitto's `-L` may add
    /// `/topic`, used when `-t` is absent).
    #[arg(long = "url", short = 'L', value_name = "URL")]
    pub url: Option<String>,
    /// Broker host (default: the config's `connection.uri`, else 127.0.0.1).
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Broker port (default 1883).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// User name (overrides the URL's).
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: Option<String>,
    /// Password (overrides the URL's).
    #[arg(short = 'P', long = "pw", alias = "password", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Client configuration file (aMQTT client YAML).
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    pub config_file: Option<String>,
    /// Client id (default: `<tool>/<pid>-<hostname>`, as aMQTT).
    #[arg(short = 'i', long = "client-id", value_name = "ID")]
    pub client_id: Option<String>,
    /// Client id prefix; the process id is appended (mosquitto's `-I`).
    #[arg(
        short = 'I',
        long = "id-prefix",
        value_name = "PREFIX",
        conflicts_with = "client_id"
    )]
    pub id_prefix: Option<String>,
    /// Keep-alive in seconds (overrides the config's `keep_alive`).
    #[arg(short = 'k', long = "keep-alive", value_name = "SECS")]
    pub keep_alive: Option<u16>,
    /// MQTT version: mqttv311 (default) or mqttv31 (mosquitto's -V).
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", value_parser = parse_protocol_version)]
    pub protocol_version: Option<amqtt_client::Protocol>,
    /// Outgoing QoS 1/2 messages in flight at once (mosquitto's -M; default 20).
    #[arg(short = 'M', long = "max-inflight", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight: Option<u16>,
    /// Clean session on connect (default: off, as in aMQTT's tools).
    #[arg(long = "clean-session")]
    pub clean_session: bool,
    /// File of trusted CA certificates (PEM), for mqtts:// and wss://.
    #[arg(long = "ca-file", alias = "cafile", value_name = "FILE")]
    pub ca_file: Option<String>,
    /// Directory of trusted CA certificates (PEM).
    #[arg(long = "ca-path", alias = "capath", value_name = "DIR")]
    pub ca_path: Option<String>,
    /// Trusted CA certificates as PEM text.
    #[arg(long = "ca-data", value_name = "PEM")]
    pub ca_data: Option<String>,
    /// Client certificate (PEM), with --key.
    #[arg(long = "cert", value_name = "FILE", requires = "key")]
    pub cert: Option<String>,
    /// Client private key (PEM), with --cert.
    #[arg(long = "key", value_name = "FILE", requires = "cert")]
    pub key: Option<String>,
    /// Do not verify the server certificate or its host name.
    #[arg(long = "insecure")]
    pub insecure: bool,
    /// Topic of the will, published if this client disconnects unexpectedly.
    #[arg(long = "will-topic", value_name = "TOPIC")]
    pub will_topic: Option<String>,
    /// Payload of the will (required with --will-topic).
    #[arg(long = "will-message", alias = "will-payload", value_name = "MESSAGE")]
    pub will_message: Option<String>,
    /// QoS of the will.
    #[arg(long = "will-qos", value_name = "QOS", default_value = "0", value_parser = parse_qos)]
    pub will_qos: QoS,
    /// Publish the will retained.
    #[arg(long = "will-retain")]
    pub will_retain: bool,
    /// JSON object of extra HTTP headers for the WebSocket handshake.
    #[arg(long = "extra-headers", value_name = "JSON")]
    pub extra_headers: Option<String>,
    /// Debug output: every packet sent and received, and the client's log.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// No log output at all (errors are still reported).
    #[arg(long = "quiet", conflicts_with = "debug")]
    pub quiet: bool,
}

/// A client ready to connect, and where to.
#[derive(Debug)]
pub struct Prepared {
    /// The configured client.
    pub client: MQTTClient,
    /// The broker URI, credentials included.
    pub uri: String,
    /// aMQTT's other `connect()` arguments.
    pub params: ConnectParams,
    /// The topic named in the path of a `-L mqtt://host/topic` URL.
    pub url_topic: Option<String>,
}

impl ConnectArgs {
    /// Builds the client `tool` (`amqtt_pub`, `amqtt_sub`) runs: config file, flags, URL.
    pub fn prepare(&self, tool: &str) -> Result<Prepared, CliError> {
        let mut config = match &self.config_file {
            Some(path) => ClientConfig::from_yaml_file(path)
                .map_err(|e| CliError::failure(format!("config error: {e}")))?,
            None => ClientConfig::default(),
        };
        if let Some(keep_alive) = self.keep_alive {
            config.keep_alive = keep_alive;
        }
        if let Some(protocol) = self.protocol_version {
            config.protocol_version = protocol;
        }
        if let Some(max_inflight) = self.max_inflight {
            config.max_inflight = max_inflight;
        }
        config.will = self.will()?;
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config.connection.certfile = Some(cert.clone());
            config.connection.keyfile = Some(key.clone());
        }
        if self.insecure {
            config.verify_cert = false;
            config.check_hostname = false;
        }
        let (uri, url_topic) = self.uri(config.effective_connection().uri.as_str())?;
        let client_id = match (&self.client_id, &self.id_prefix) {
            (Some(id), _) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
            (None, None) => format!("{tool}/{}-{}", std::process::id(), hostname()),
        };
        let params = ConnectParams {
            cleansession: Some(self.clean_session),
            cafile: self.ca_file.clone(),
            capath: self.ca_path.clone(),
            cadata: self.ca_data.clone(),
            additional_headers: self.headers()?,
        };
        let client = MQTTClient::new(Some(client_id), config)
            .map_err(|e| CliError::failure(format!("config error: {e}")))?;
        Ok(Prepared {
            client,
            uri,
            params,
            url_topic,
        })
    }

    /// The will from `--will-*`, else the config's. aMQTT's rule: topic and message together.
    fn will(&self) -> Result<Option<WillConfig>, CliError> {
        match (&self.will_topic, &self.will_message) {
            (Some(topic), Some(message)) => Ok(Some(WillConfig {
                topic: topic.clone(),
                message: message.clone(),
                qos: self.will_qos,
                retain: self.will_retain,
            })),
            (None, None) if !self.will_retain => Ok(None),
            (None, None) => Err(CliError::failure(
                "--will-retain needs --will-topic and --will-message",
            )),
            _ => Err(CliError::failure(
                "must specify both --will-message and --will-topic",
            )),
        }
    }

    /// The broker URI: `--url`/`-L` or the config's, then `-h`, `-p`, `-u`, `-P` applied.
    fn uri(&self, config_uri: &str) -> Result<(String, Option<String>), CliError> {
        let base = self.url.as_deref().unwrap_or(config_uri);
        let mut url = Url::parse(base)
            .map_err(|e| CliError::failure(format!("invalid URL '{base}': {e}")))?;
        let bad =
            |what: &str| CliError::failure(format!("invalid URL '{base}': cannot set the {what}"));
        if let Some(host) = &self.host {
            url.set_host(Some(host)).map_err(|_| bad("host"))?;
        }
        if let Some(port) = self.port {
            url.set_port(Some(port)).map_err(|_| bad("port"))?;
        }
        if let Some(user) = &self.username {
            url.set_username(&encode_userinfo(user))
                .map_err(|_| bad("user name"))?;
        }
        if let Some(password) = &self.password {
            url.set_password(Some(&encode_userinfo(password)))
                .map_err(|_| bad("password"))?;
        }
        let mut url_topic = None;
        if self.url.is_some() && matches!(url.scheme(), "mqtt" | "mqtts") {
            let path = url.path().trim_start_matches('/');
            if !path.is_empty() {
                let topic = percent_encoding::percent_decode_str(path)
                    .decode_utf8_lossy()
                    .into_owned();
                url_topic = Some(topic);
                url.set_path("");
            }
        }
        Ok((url.to_string(), url_topic))
    }

    fn headers(&self) -> Result<Vec<(String, String)>, CliError> {
        let Some(json) = &self.extra_headers else {
            return Ok(Vec::new());
        };
        let bad = || {
            CliError::failure("--extra-headers: expected a JSON object of strings, like {\"Authorization\": \"Bearer x\"}")
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|_| bad())?;
        let object = value.as_object().ok_or_else(bad)?;
        object
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .ok_or_else(bad)
            })
            .collect()
    }
}

/// Parses a QoS flag value: 0, 1 or 2.
pub fn parse_qos(value: &str) -> Result<QoS, String> {
    value
        .parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("'{value}' is not a QoS: expected 0, 1 or 2"))
}

/// Parses `-V`: mqttv311 or mqttv31 (MQTT 5 is not supported).
pub fn parse_protocol_version(value: &str) -> Result<amqtt_client::Protocol, String> {
    amqtt_client::parse_protocol(value)
        .ok_or_else(|| format!("'{value}' is not supported: expected mqttv311 or mqttv31"))
}

/// Parses seconds (integer or decimal).
pub fn parse_secs(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("'{value}' is not a number of seconds"))
}

/// Characters escaped in URL userinfo.
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn encode_userinfo(value: &str) -> String {
    utf8_percent_encode(value, USERINFO).to_string()
}

/// The machine's host name, for default client ids.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnectArgs {
        ConnectArgs::default()
    }

    #[test]
    fn host_port_and_credentials_build_the_uri() {
        let a = ConnectArgs {
            host: Some("broker".into()),
            port: Some(1884),
            username: Some("u@x".into()),
            password: Some("p:w".into()),
            ..args()
        };
        let (uri, topic) = a.uri("mqtt://127.0.0.1:1883").unwrap();
        assert_eq!(uri, "mqtt://u%40x:p%3Aw@broker:1884");
        assert_eq!(topic, None);
        let parsed = amqtt_client::BrokerUri::parse(&uri).unwrap();
        assert_eq!(
            (parsed.username.as_deref(), parsed.password.as_deref()),
            (Some("u@x"), Some("p:w"))
        );
    }

    #[test]
    fn mosquitto_style_url_path_is_the_topic() {
        let a = ConnectArgs {
            url: Some("mqtt://h:1999/a/b".into()),
            ..args()
        };
        let (uri, topic) = a.uri("mqtt://127.0.0.1").unwrap();
        assert_eq!(uri, "mqtt://h:1999");
        assert_eq!(topic.as_deref(), Some("a/b"));
    }

    #[test]
    fn will_topic_and_message_go_together() {
        let a = ConnectArgs {
            will_topic: Some("w".into()),
            ..args()
        };
        assert!(a.will().unwrap_err().message.contains("both"));
        let a = ConnectArgs {
            will_retain: true,
            ..args()
        };
        assert!(a.will().is_err());
        let a = ConnectArgs {
            will_topic: Some("w".into()),
            will_message: Some("m".into()),
            will_qos: QoS::AtLeastOnce,
            ..args()
        };
        assert_eq!(a.will().unwrap().unwrap().qos, QoS::AtLeastOnce);
    }

    #[test]
    fn extra_headers_must_be_an_object_of_strings() {
        let a = ConnectArgs {
            extra_headers: Some(r#"{"A": "b"}"#.into()),
            ..args()
        };
        assert_eq!(a.headers().unwrap(), [("A".to_string(), "b".to_string())]);
        let a = ConnectArgs {
            extra_headers: Some("[1]".into()),
            ..args()
        };
        assert!(a.headers().is_err());
    }

    #[test]
    fn qos_flag_accepts_0_to_2_only() {
        assert_eq!(parse_qos("2"), Ok(QoS::ExactlyOnce));
        assert!(parse_qos("3").is_err());
        assert!(parse_qos("x").is_err());
    }
}
