//! Broker URLs and the byte streams the benchmark runs over.
//!
//! [`Target::parse`] reads `mqtt://[user[:password]@]host[:port]`; [`Target::connect`] opens a
//! [`BenchStream`]. The stream is an enum so TLS (`mqtts://`) and WebSocket (`ws://`, `wss://`)
//! transports plug in as new variants without touching the publisher and subscriber loops,
//! which only need `AsyncRead + AsyncWrite`. Until those transports exist, their schemes are a
//! clear [`BenchError::UnsupportedScheme`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use url::Url;

use crate::error::BenchError;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Resolved broker address.
    pub(crate) addr: SocketAddr,
    /// User name from the URL, if any.
    pub(crate) username: Option<String>,
    /// Password from the URL, if any.
    pub(crate) password: Option<String>,
}

impl Target {
    /// Parses and resolves a broker URL.
    pub(crate) fn parse(text: &str) -> Result<Target, BenchError> {
        let invalid = |reason: &str| BenchError::InvalidUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
        let default_port = match url.scheme() {
            "mqtt" | "tcp" => 1883,
            scheme @ ("mqtts" | "ssl" | "ws" | "wss") => {
                return Err(BenchError::UnsupportedScheme(scheme.to_owned()))
            }
            _ => return Err(invalid("the scheme must be mqtt://")),
        };
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(default_port);
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
        })
    }

    /// Opens a stream to the broker (TCP with `TCP_NODELAY`).
    pub(crate) async fn connect(&self) -> Result<BenchStream, BenchError> {
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

/// A connection to the broker over one of the supported transports.
#[derive(Debug)]
pub(crate) enum BenchStream {
    /// Plain TCP (`mqtt://`).
    Tcp(TcpStream),
}

impl AsyncRead for BenchStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mqtt_url_gives_address_and_credentials() {
        let target = Target::parse("mqtt://user:secret@127.0.0.1:1884").unwrap();
        assert_eq!(target.addr, "127.0.0.1:1884".parse().unwrap());
        assert_eq!(target.username.as_deref(), Some("user"));
        assert_eq!(target.password.as_deref(), Some("secret"));
        assert_eq!(Target::parse("mqtt://127.0.0.1").unwrap().addr.port(), 1883);
    }

    #[test]
    fn tls_and_websocket_schemes_are_not_supported_yet() {
        for url in ["mqtts://127.0.0.1", "ws://127.0.0.1", "wss://127.0.0.1"] {
            assert!(matches!(
                Target::parse(url),
                Err(BenchError::UnsupportedScheme(_))
            ));
        }
        assert!(matches!(
            Target::parse("http://127.0.0.1"),
            Err(BenchError::InvalidUrl { .. })
        ));
    }
}
