//! TLS (`mqtts://`, and under `wss://`) with rustls and the `ring` provider.
//!
//! The server certificate is verified against the CAs of `cafile`/`capath`/`cadata` when one
//! is given, else against the Mozilla roots of `webpki-roots`. Host names and IP addresses
//! both work as the server name (an IP address is checked against the certificate's IP
//! SANs). `check_hostname: false` verifies the chain but not the name; `verify_cert: false`
//! (or [`ClientConfig::danger_accept_invalid_certs`]) accepts any certificate. A client
//! certificate comes from `certfile` + `keyfile`. Every file problem is a config error naming
//! the key and the file; a failed handshake says what the server presented and why it was
//! refused.

use std::path::Path;
use std::sync::Arc;

use amqtt_tls::CaSources;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, ClientConfig as TlsConfig, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::{ClientConfig, ConnectionConfig};
use crate::error::{ClientError, ConfigError};

impl ClientConfig {
    /// Turns off every check of the server certificate (chain and host name): anyone on the
    /// path can then read and change the traffic. For tests against self-signed brokers only;
    /// the same as aMQTT's `verify_cert: false` with `check_hostname: false` and the CLI's
    /// `--insecure`.
    pub fn danger_accept_invalid_certs(mut self) -> ClientConfig {
        self.verify_cert = false;
        self.check_hostname = false;
        self
    }
}

/// A ready TLS client configuration (built once per `connect`, used by every reconnect).
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
}

impl Tls {
    /// Builds the rustls configuration; reads the CA and client certificate files.
    pub(crate) fn new(
        connection: &ConnectionConfig,
        check_hostname: bool,
        verify_cert: bool,
    ) -> Result<Tls, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = TlsConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let builder = if verify_cert && check_hostname {
            builder.with_root_certificates(Arc::new(roots(connection)?))
        } else {
            let chain = if verify_cert {
                let roots = Arc::new(roots(connection)?);
                let chain = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                Some(chain)
            } else {
                None
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Relaxed { chain, provider }))
        };
        let config = match (&connection.certfile, &connection.keyfile) {
            (Some(certfile), Some(keyfile)) => {
                let certs = amqtt_tls::read_certs(Path::new(certfile))
                    .map_err(|e| invalid("connection.certfile", e.to_string()))?;
                let key = amqtt_tls::read_private_key(Path::new(keyfile))
                    .map_err(|e| invalid("connection.keyfile", e.to_string()))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    invalid(
                        "connection.keyfile",
                        format!("{keyfile} does not fit {certfile}: {e}"),
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the TLS handshake over `stream` for server `host`.
    pub(crate) async fn connect<S>(
        &self,
        stream: S,
        host: &str,
    ) -> Result<TlsStream<S>, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            ClientError::Tls(format!("'{host}' is not a valid server name for TLS: {e}"))
        })?;
        self.connector.connect(name, stream).await.map_err(|e| {
            rejection(host, &e).unwrap_or_else(|| {
                // The network broke the handshake (reset, end of stream): worth another try.
                ClientError::Io(Arc::new(std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {host} failed: {e}"),
                )))
            })
        })
    }
}

/// The final [`ClientError::Tls`] for an error (of the connection to `host`) that says the TLS handshake was refused for
/// good, or `None` for anything else (such as the network breaking it).
///
/// Retrying cannot mend a certificate the client does not trust, a host name the certificate
/// does not list, a client certificate the broker rejects, or two sides without a common
/// protocol version or cipher suite, so the driver gives up on these at once. Looks through
/// the error's sources: with TLS 1.3 the broker's rejection of a client certificate arrives
/// only after the handshake, on the first read (and, over `wss://`, inside the WebSocket
/// upgrade's error).
pub(crate) fn rejection(
    host: &str,
    error: &(dyn std::error::Error + 'static),
) -> Option<ClientError> {
    let cause = rustls_cause(error)?;
    is_final(cause).then(|| ClientError::Tls(explain(host, cause, error)))
}

/// Whether retrying the handshake cannot change the outcome of `error`.
fn is_final(error: &rustls::Error) -> bool {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::InvalidCertRevocationList(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::PeerIncompatible(_) => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::CertificateRequired
                | Alert::UnknownCA
                | Alert::AccessDenied
                | Alert::HandshakeFailure
                | Alert::ProtocolVersion
                | Alert::InsufficientSecurity
        ),
        _ => false,
    }
}

/// The rustls error behind `error`, looking inside IO errors (whose `source` skips the error
/// they wrap) and along the `source` chain.
fn rustls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(cause) = e.downcast_ref::<rustls::Error>() {
            return Some(cause);
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The trust anchors: the configured CAs, or webpki-roots when none is configured.
fn roots(connection: &ConnectionConfig) -> Result<RootCertStore, ClientError> {
    let sources = CaSources {
        cafile: connection.cafile.as_deref().map(Path::new),
        capath: connection.capath.as_deref().map(Path::new),
        cadata: connection.cadata.as_deref(),
    };
    let configured = sources.roots().map_err(|e| {
        invalid(
            &format!("connection.{}", e.key.as_str()),
            e.error.to_string(),
        )
    })?;
    Ok(configured.unwrap_or_else(|| {
        RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
    }))
}

fn invalid(key: &str, message: impl Into<String>) -> ClientError {
    ClientError::Config(ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    })
}

/// The message of a refused handshake, with a hint at the usual cause.
fn explain(host: &str, cause: &rustls::Error, error: &dyn std::fmt::Display) -> String {
    use rustls::AlertDescription as Alert;
    let hint = match cause {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the server's certificate is not signed by a trusted CA: give its CA with cafile, \
             capath or cadata)"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => " (the certificate does not name this host: connect with a name it lists)",
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            " (the broker wants a client certificate: give certfile and keyfile)"
        }
        rustls::Error::AlertReceived(
            Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateUnknown,
        ) => " (the broker rejected the client certificate)",
        _ => "",
    };
    format!("TLS handshake with {host} failed: {error}{hint}")
}

/// The verifier of `check_hostname: false` (`chain` given: the chain is verified, the name is
/// not) and of `verify_cert: false` (no `chain`: any certificate is accepted). The handshake
/// signatures are checked either way, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
