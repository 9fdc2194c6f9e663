//! Broker URLs and the byte streams the benchmark runs over.
//!
//! [`Target::parse`] reads `mqtt://`, `mqtts://`, `ws://` or `wss://`
//! `[user[:password]@]host[:port][/path]`; [`Target::connect`] opens a [`BenchStream`]. Plain
//! TCP is opened here (resolved once, `TCP_NODELAY`); TLS and WebSocket use the client crate's
//! transports ([`amqtt_client::transport`]), so the benchmark measures the same code the
//! client runs. The publisher and subscriber loops only see `AsyncRead + AsyncWrite`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use amqtt_client::transport::{self as client_transport, BoxTransport, TransportOptions};
use amqtt_client::{BrokerUri, ConnectionConfig, Scheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use url::Url;

use crate::error::BenchError;

/// How long a TLS handshake and WebSocket upgrade may take, TCP connect included.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings from the command line.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsFlags {
    /// PEM file of the CAs the broker's certificate is verified against (default: the
    /// Mozilla roots).
    pub(crate) ca_file: Option<String>,
    /// Accept any server certificate.
    pub(crate) insecure: bool,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Resolved broker address.
    pub(crate) addr: SocketAddr,
    /// User name from the URL, if any.
    pub(crate) username: Option<String>,
    /// Password from the URL, if any.
    pub(crate) password: Option<String>,
    /// For mqtts://, ws:// and wss://: the client crate's transport.
    layered: Option<Layered>,
}

/// A TLS and/or WebSocket transport, prepared once per run.
#[derive(Clone)]
struct Layered {
    uri: Arc<BrokerUri>,
    options: Arc<TransportOptions>,
}

impl fmt::Debug for Layered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Layered({}://…)", self.uri.scheme.as_str())
    }
}

impl Target {
    /// Parses and resolves a broker URL; for TLS, reads `tls.ca_file`.
    pub(crate) fn parse(text: &str, tls: &TlsFlags) -> Result<Target, BenchError> {
        let invalid = |reason: &str| BenchError::InvalidUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        let layered = match url.scheme() {
            "mqtt" | "tcp" => None,
            "mqtts" | "ssl" | "ws" | "wss" => Some(Layered::new(text, tls)?),
            _ => {
                return Err(invalid(
                    "the scheme must be mqtt://, mqtts://, ws:// or wss://",
                ))
            }
        };
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = match &layered {
            Some(layered) => layered.uri.port,
            None => url.port().unwrap_or(1883),
        };
        let host_port = format!("{host}:{port}");
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
            .map_err(|source| BenchError::Resolve {
                host: host_port.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| invalid("the host has no address"))?;
        let username = (!url.username().is_empty()).then(|| url.username().to_owned());
        Ok(Target {
            addr,
            username,
            password: url.password().map(str::to_owned),
            layered,
        })
    }

    /// Opens a stream to the broker: TCP with `TCP_NODELAY`, or the TLS / WebSocket
    /// transport of the URL.
    pub(crate) async fn connect(&self) -> Result<BenchStream, BenchError> {
        if let Some(layered) = &self.layered {
            let io = client_transport::open(&layered.uri, &layered.options, HANDSHAKE_TIMEOUT)
                .await
                .map_err(|e| BenchError::Transport(e.to_string()))?;
            return Ok(BenchStream::Layered {
                io,
                needs_flush: false,
            });
        }
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|source| BenchError::Connect {
                addr: self.addr,
                source,
            })?;
        // Batching is ours to do: every write carries as many packets as are ready.
        stream.set_nodelay(true)?;
        Ok(BenchStream::Tcp(stream))
    }
}

impl Layered {
    fn new(text: &str, tls: &TlsFlags) -> Result<Layered, BenchError> {
        let uri = BrokerUri::parse(text).map_err(|e| BenchError::InvalidUrl {
            url: text.to_owned(),
            reason: e.to_string(),
        })?;
        let connection = ConnectionConfig {
            cafile: tls.ca_file.clone(),
            ..ConnectionConfig::default()
        };
        let secure = matches!(uri.scheme, Scheme::Mqtts | Scheme::Wss);
        let options =
            TransportOptions::new(&uri, &connection, !tls.insecure, !tls.insecure, Vec::new())
                .map_err(|e| BenchError::Usage(e.to_string()))?;
        if !secure && (tls.ca_file.is_some() || tls.insecure) {
            return Err(BenchError::Usage(
                "--ca-file and --insecure only apply to mqtts:// and wss://".into(),
            ));
        }
        Ok(Layered {
            uri: Arc::new(uri),
            options: Arc::new(options),
        })
    }
}

/// A connection to the broker over one of the supported transports.
pub(crate) enum BenchStream {
    /// Plain TCP (`mqtt://`).
    Tcp(TcpStream),
    /// TLS and/or WebSocket (`mqtts://`, `ws://`, `wss://`). These buffer writes (TLS
    /// records, WebSocket messages): a flush the stream could not finish is retried on the
    /// next read or write, so bytes never wait in its buffer while the loop waits to read.
    Layered {
        /// The client crate's transport.
        io: BoxTransport,
        /// A write happened since the last completed flush.
        needs_flush: bool,
    },
}

impl fmt::Debug for BenchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchStream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            BenchStream::Layered { needs_flush, .. } => f
                .debug_struct("Layered")
                .field("needs_flush", needs_flush)
                .finish_non_exhaustive(),
        }
    }
}

/// Finishes a flush left pending by an earlier write, if any.
fn poll_pending_flush(
    io: &mut BoxTransport,
    needs_flush: &mut bool,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    if *needs_flush {
        match Pin::new(io).poll_flush(cx) {
            Poll::Ready(Ok(())) => *needs_flush = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(())
}

impl AsyncRead for BenchStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            BenchStream::Layered { io, needs_flush } => {
                poll_pending_flush(io, needs_flush, cx)?;
                Pin::new(io).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for BenchStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            BenchStream::Layered { io, needs_flush } => {
                let written = Pin::new(&mut *io).poll_write(cx, buf);
                if let Poll::Ready(Ok(n)) = written {
                    if n > 0 {
                        *needs_flush = true;
                    }
                }
                written
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            BenchStream::Layered { io, needs_flush } => {
                let flushed = Pin::new(io).poll_flush(cx);
                if let Poll::Ready(Ok(())) = flushed {
                    *needs_flush = false;
                }
                flushed
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            BenchStream::Layered { io, .. } => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mqtt_url_gives_address_and_credentials() {
        let none = TlsFlags::default();
        let target = Target::parse("mqtt://user:secret@127.0.0.1:1884", &none).unwrap();
        assert_eq!(target.addr, "127.0.0.1:1884".parse().unwrap());
        assert_eq!(target.username.as_deref(), Some("user"));
        assert_eq!(target.password.as_deref(), Some("secret"));
        assert!(target.layered.is_none());
        let port = |url| Target::parse(url, &none).unwrap().addr.port();
        assert_eq!(port("mqtt://127.0.0.1"), 1883);
    }

    #[test]
    fn tls_and_websocket_urls_get_their_default_ports_and_a_transport() {
        let none = TlsFlags::default();
        for (url, port) in [
            ("mqtts://127.0.0.1", 8883),
            ("ssl://127.0.0.1", 8883),
            ("ws://127.0.0.1", 80),
            ("wss://127.0.0.1", 443),
            ("ws://u:p@127.0.0.1:9001/mqtt", 9001),
        ] {
            let target = Target::parse(url, &none).unwrap();
            assert_eq!(target.addr.port(), port, "{url}");
            assert!(target.layered.is_some(), "{url}");
        }
        assert!(matches!(
            Target::parse("http://127.0.0.1", &none),
            Err(BenchError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn tls_flags_are_checked_before_any_connection() {
        let missing = TlsFlags {
            ca_file: Some("/nonexistent/ca.pem".into()),
            insecure: false,
        };
        let err = Target::parse("mqtts://127.0.0.1", &missing).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let insecure = TlsFlags {
            ca_file: None,
            insecure: true,
        };
        assert!(matches!(
            Target::parse("ws://127.0.0.1", &insecure),
            Err(BenchError::Usage(_))
        ));
        assert!(Target::parse("wss://127.0.0.1", &insecure).is_ok());
    }
}
