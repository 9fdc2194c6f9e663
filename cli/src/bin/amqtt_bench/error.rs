//! The errors of a benchmark run. Each prints as one line; `main` prefixes it with the tool's
//! name and exits non-zero.

use std::io;
use std::net::SocketAddr;

use mqtt_codec::{ConnectReturnCode, DecodeError};

/// Why a run (or one of its connections) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// A flag has a value that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The broker URL could not be parsed.
    #[error("invalid broker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host:port looked up.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Opening a TLS or WebSocket transport failed (connect, handshake or upgrade).
    #[error("{0}")]
    Transport(String),
    /// The broker refused the CONNECT.
    #[error("the broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// The broker refused a subscription.
    #[error("the broker refused the subscription to {0:?} (SUBACK 0x80)")]
    SubscriptionRefused(String),
    /// The broker did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The broker sent bytes that are not MQTT.
    #[error("malformed packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// The broker sent a packet that does not fit the flow.
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    /// The broker acknowledged a packet id that was not in flight.
    #[error("the broker acknowledged packet id {0}, which was not in flight")]
    UnknownPacketId(u16),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// A socket error during the run.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}
