//! TLS for listeners with `ssl: true`: the server certificate and key (`certfile`, `keyfile`)
//! and, when a CA is given (`cafile`, `capath`, `cadata`), client certificates requested and
//! verified against it (mutual TLS; a client without a valid certificate is refused).
//!
//! Files are read once, when the broker is built; every problem is a [`ConfigError`] naming the
//! listener's key and the file. rustls with the `ring` provider; TLS 1.2 and 1.3.

use std::sync::Arc;

use amqtt_tls::CaSources;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::config::ListenerConfig;
use crate::error::ConfigError;

/// Checks what can be checked without parsing: `ssl: true` has a `certfile` and a `keyfile`,
/// and every file or directory named exists. Used by [`crate::BrokerConfig::validate`].
pub(crate) fn check_files(l: &ListenerConfig, path: &str) -> Result<(), ConfigError> {
    if l.ssl && l.certfile.is_none() {
        return Err(ConfigError::new(
            join(path, "certfile"),
            "`ssl: true` needs a server certificate: set `certfile` and `keyfile` (PEM files)",
        ));
    }
    for (key, file) in [
        ("certfile", &l.certfile),
        ("keyfile", &l.keyfile),
        ("cafile", &l.cafile),
    ] {
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::new(
                    join(path, key),
                    format!("file not found: {}", file.display()),
                ));
            }
        }
    }
    if let Some(dir) = &l.capath {
        if !dir.is_dir() {
            return Err(ConfigError::new(
                join(path, "capath"),
                format!("directory not found: {}", dir.display()),
            ));
        }
    }
    Ok(())
}

/// The rustls server config of listener `l` (config path `path`).
pub(crate) fn server_config(
    l: &ListenerConfig,
    path: &str,
) -> Result<Arc<ServerConfig>, ConfigError> {
    check_files(l, path)?;
    let (Some(certfile), Some(keyfile)) = (&l.certfile, &l.keyfile) else {
        return Err(ConfigError::new(
            join(path, "keyfile"),
            "`certfile` and `keyfile` must be given together",
        ));
    };
    let certs = amqtt_tls::read_certs(certfile)
        .map_err(|e| ConfigError::new(join(path, "certfile"), e.to_string()))?;
    let key = amqtt_tls::read_private_key(keyfile)
        .map_err(|e| ConfigError::new(join(path, "keyfile"), e.to_string()))?;
    // The CAs client certificates are verified against, if any.
    let roots = CaSources {
        cafile: l.cafile.as_deref(),
        capath: l.capath.as_deref(),
        cadata: l.cadata.as_deref(),
    }
    .roots()
    .map_err(|e| ConfigError::new(join(path, e.key.as_str()), e.error.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(join(path, "ssl"), e.to_string()))?;
    let builder = match roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::new(join(path, "cafile"), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        ConfigError::new(
            join(path, "keyfile"),
            format!(
                "{} does not fit {}: {e}",
                keyfile.display(),
                certfile.display()
            ),
        )
    })?;
    Ok(Arc::new(config))
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}
