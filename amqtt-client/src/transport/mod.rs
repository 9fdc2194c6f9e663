//! Transports: the byte streams MQTT runs over.
//!
//! The connection task only sees a [`Transport`]: any `AsyncRead + AsyncWrite` stream. Which
//! one a URI asks for is decided here and nowhere else: `mqtt://` is TCP, `mqtts://` TLS over
//! TCP, `ws://` WebSocket over TCP and `wss://` WebSocket over TLS over TCP. The driver does
//! not know which it got. No MQTT is parsed here.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::ConnectionConfig;
use crate::error::ClientError;
use crate::uri::{BrokerUri, Scheme};

mod tcp;
mod tls;
mod ws;

/// A byte stream the client can run MQTT over. Implemented for every suitable stream, so
/// users and tests can hand the client their own (see [`crate::MQTTClient::connect_with`]).
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed transport, as the connection task holds it.
pub type BoxTransport = Box<dyn Transport>;

/// What opening a transport needs besides the URI, prepared once per `connect` (the TLS
/// configuration reads its files here, so a bad file fails `connect` at once instead of
/// being retried). Public so other tools (`amqtt_bench`) open the same transports as the
/// client: [`TransportOptions::new`], then [`open`] for each connection.
pub struct TransportOptions {
    tls: Option<tls::Tls>,
    headers: Vec<(String, String)>,
}

impl TransportOptions {
    /// Prepares the transport `uri` asks for: TLS for `mqtts` and `wss` (CA and client
    /// certificate files from `connection`), the extra HTTP headers for `ws` and `wss`.
    ///
    /// `check_hostname` and `verify_cert` mean what they mean in [`crate::ClientConfig`].
    ///
    /// # Errors
    /// [`ClientError::Config`] for an unreadable or invalid CA, certificate or key file.
    pub fn new(
        uri: &BrokerUri,
        connection: &ConnectionConfig,
        check_hostname: bool,
        verify_cert: bool,
        additional_headers: Vec<(String, String)>,
    ) -> Result<TransportOptions, ClientError> {
        let tls = match uri.scheme {
            Scheme::Mqtts | Scheme::Wss => {
                Some(tls::Tls::new(connection, check_hostname, verify_cert)?)
            }
            Scheme::Mqtt | Scheme::Ws => None,
        };
        Ok(TransportOptions {
            tls,
            headers: additional_headers,
        })
    }
}

/// The error for a failed read or write on a transport to `host`: [`ClientError::Tls`] when
/// TLS refused the connection for good (with TLS 1.3 the broker rejects a client certificate
/// only after the handshake, so the first read after CONNECT reports it), else
/// [`ClientError::Io`].
pub(crate) fn stream_error(host: &str, error: std::io::Error) -> ClientError {
    tls::rejection(host, &error).unwrap_or_else(|| error.into())
}

/// Opens the transport `uri` asks for, within `timeout` (TCP connect, TLS handshake and
/// WebSocket upgrade together). `options` must have been prepared for a URI of the same
/// scheme. Cancel-safe: dropping the future drops the half-open connection.
///
/// # Errors
/// [`ClientError::Io`] when the TCP connect fails or the network breaks the TLS handshake,
/// [`ClientError::Tls`] when TLS refuses the connection (a final error: see
/// [`ClientError::Tls`]), [`ClientError::WebSocket`], or [`ClientError::ConnectTimeout`].
pub async fn open(
    uri: &BrokerUri,
    options: &TransportOptions,
    timeout: Duration,
) -> Result<BoxTransport, ClientError> {
    let opening = async {
        let tcp = tcp::connect(&uri.host, uri.port).await?;
        let tls = match (&options.tls, uri.scheme) {
            (Some(tls), Scheme::Mqtts | Scheme::Wss) => Some(tls),
            _ => None,
        };
        let stream: BoxTransport = match (uri.scheme, tls) {
            (Scheme::Mqtt, _) => Box::new(tcp),
            (Scheme::Ws, _) => {
                Box::new(ws::connect(tcp, &uri.host, &uri.ws_url, &options.headers).await?)
            }
            (Scheme::Mqtts, Some(tls)) => Box::new(tls.connect(tcp, &uri.host).await?),
            (Scheme::Wss, Some(tls)) => {
                let tls = tls.connect(tcp, &uri.host).await?;
                Box::new(ws::connect(tls, &uri.host, &uri.ws_url, &options.headers).await?)
            }
            (Scheme::Mqtts | Scheme::Wss, None) => {
                return Err(ClientError::Tls(
                    "no TLS configuration prepared for this URI".to_owned(),
                ))
            }
        };
        Ok(stream)
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::ConnectTimeout),
    }
}
