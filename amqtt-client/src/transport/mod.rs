//! Transports: the byte streams MQTT runs over.
//!
//! The connection task only sees a [`Transport`]: any `AsyncRead + AsyncWrite` stream. Which
//! one a URI asks for is decided here and nowhere else, so adding TLS or WebSocket means adding
//! a module and an arm in [`open`]; the driver does not change. No MQTT is parsed here.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::ConnectionConfig;
use crate::error::ClientError;
use crate::uri::{BrokerUri, Scheme};

mod tcp;

/// A byte stream the client can run MQTT over. Implemented for every suitable stream, so
/// users and tests can hand the client their own (see [`crate::MQTTClient::connect_with`]).
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed transport, as the connection task holds it.
pub type BoxTransport = Box<dyn Transport>;

/// Opens the transport `uri` asks for, within `timeout`. `connection` has the TLS files and
/// `headers` the extra WebSocket handshake headers (both for the TLS/WebSocket transports).
pub(crate) async fn open(
    uri: &BrokerUri,
    connection: &ConnectionConfig,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<BoxTransport, ClientError> {
    // TLS files and headers are used by the TLS and WebSocket transports (a later issue).
    let _ = (connection, headers);
    let opening = async {
        match uri.scheme {
            Scheme::Mqtt => tcp::connect(&uri.host, uri.port).await,
            Scheme::Mqtts | Scheme::Ws | Scheme::Wss => Err(ClientError::UnsupportedScheme {
                scheme: uri.scheme.as_str().to_string(),
            }),
        }
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::ConnectTimeout),
    }
}
