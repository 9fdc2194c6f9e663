//! The client's errors: configuration, connection, protocol and request failures.
//!
//! [`ClientError`] is what every public call returns. It is `Clone` (IO errors are shared behind
//! an [`Arc`]) because one failure, such as a lost connection, may answer many waiting requests.

use std::path::PathBuf;
use std::sync::Arc;

use mqtt_codec::session::Message;
use mqtt_codec::{ConnectReturnCode, DecodeError, ProtocolError};

/// Why a client configuration could not be loaded or used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error, as text.
        message: String,
    },
    /// The YAML does not have the shape of aMQTT's client configuration.
    #[error("{origin}: {message}")]
    Yaml {
        /// The file name, or `<string>` for YAML given as a string.
        origin: String,
        /// What serde_yaml reported: the key path, the line and what was expected.
        message: String,
    },
    /// A key has a value outside its range.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, as a dotted path (`will.qos`).
        key: String,
        /// What was expected.
        message: String,
    },
    /// A plugin named in `plugins` is not registered.
    #[error("plugins: unknown plugin '{0}' (register it in a PluginRegistry first)")]
    UnknownPlugin(String),
    /// A plugin's configuration has the wrong shape.
    #[error("plugins.{plugin}: {message}")]
    PluginConfig {
        /// The plugin's name.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// Everything a client call can fail with.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The URI given to `connect` could not be used.
    #[error("invalid broker URI '{uri}': {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS could not be set up, or TLS refused the connection: the server's certificate is
    /// not signed by a trusted CA or does not name the host, the broker rejected the client
    /// certificate, or the two sides share no protocol version. The message says which and
    /// what to change. Final: `connect` returns it after the first attempt, without retrying
    /// (a handshake broken by the network is [`ClientError::Io`] and retried).
    #[error("{0}")]
    Tls(String),
    /// The WebSocket upgrade failed (bad URL or header, refused by the server, …).
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// A topic name or filter is invalid.
    #[error("invalid topic '{topic}': {source}")]
    InvalidTopic {
        /// The topic or filter as given.
        topic: String,
        /// The rule it breaks.
        source: DecodeError,
    },
    /// A QoS outside 0..=2.
    #[error("invalid QoS {0}: expected 0, 1 or 2")]
    InvalidQoS(u8),
    /// The broker refused the connection; the CONNACK return code says why.
    #[error("connection refused by the broker: {0}")]
    Refused(ConnectReturnCode),
    /// A network error.
    #[error("network error: {0}")]
    Io(Arc<std::io::Error>),
    /// Opening the connection or the CONNECT/CONNACK handshake took longer than allowed.
    #[error("timed out connecting to the broker")]
    ConnectTimeout,
    /// Every connection attempt failed (aMQTT: "Too many failed attempts").
    #[error("too many failed connection attempts ({attempts}); last error: {last}")]
    ConnectFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<ClientError>,
    },
    /// The broker violated the protocol; the connection was closed.
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    /// No PINGRESP or CONNACK within the response timeout: the connection is lost.
    #[error("the broker did not answer within the response timeout")]
    ResponseTimeout,
    /// The connection was lost: the broker closed it, or a ping was waiting when it broke
    /// (publishes and subscriptions are not failed by a loss: they complete after reconnecting).
    #[error("the connection to the broker was lost")]
    ConnectionLost,
    /// The client is not connected and will not reconnect: `connect` was never called,
    /// `disconnect` was called, or reconnecting gave up (aMQTT: "Will not reconnect").
    #[error("not connected, and will not reconnect")]
    NotConnected,
    /// `try_publish`: the request queue is full. The message is returned.
    #[error("the request queue is full")]
    QueueFull(Box<Message>),
    /// `deliver_message` waited for its whole timeout.
    #[error("timeout waiting for a message")]
    Timeout,
    /// `disconnect` reached its deadline with QoS 1/2 publishes still unacknowledged; the
    /// connection was closed anyway.
    #[error("disconnected with {0} QoS 1/2 publishes still unacknowledged at the deadline")]
    DisconnectTimeout(usize),
    /// `connect` was called on a client that is already connected.
    #[error("already connected")]
    AlreadyConnected,
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        ClientError::Io(Arc::new(error))
    }
}

impl ClientError {
    /// The CONNACK return code, when the broker refused the connection (aMQTT's
    /// `ConnectError.return_code`).
    pub fn return_code(&self) -> Option<ConnectReturnCode> {
        match self {
            ClientError::Refused(code) => Some(*code),
            ClientError::ConnectFailed { last, .. } => last.return_code(),
            _ => None,
        }
    }
}
