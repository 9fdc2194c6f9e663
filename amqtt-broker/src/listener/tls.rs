//! TLS for listeners with `ssl: true`: the server certificate and key (`certfile`, `keyfile`)
//! and, when a CA is given (`cafile`, `capath`, `cadata`), client certificates requested and
//! verified against it (mutual TLS; a client without a valid certificate is refused).
//!
//! Files are read once, when the broker is built; every problem is a [`ConfigError`] naming the
//! listener's key and the file. rustls with the `ring` provider; TLS 1.2 and 1.3.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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
    let certs = read_certs(certfile).map_err(|m| ConfigError::new(join(path, "certfile"), m))?;
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
        ConfigError::new(
            join(path, "keyfile"),
            format!("no PEM private key in {}: {e}", keyfile.display()),
        )
    })?;
    let roots = client_roots(l, path)?;
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

/// The CAs client certificates are verified against, or `None` when none is configured.
fn client_roots(l: &ListenerConfig, path: &str) -> Result<Option<RootCertStore>, ConfigError> {
    let mut roots = RootCertStore::empty();
    let mut add = |certs: Vec<CertificateDer<'static>>, key: &str, origin: &str| {
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ConfigError::new(
                    join(path, key),
                    format!("bad CA certificate in {origin}: {e}"),
                )
            })?;
        }
        Ok::<(), ConfigError>(())
    };
    if let Some(cafile) = &l.cafile {
        let certs = read_certs(cafile).map_err(|m| ConfigError::new(join(path, "cafile"), m))?;
        add(certs, "cafile", &cafile.display().to_string())?;
    }
    if let Some(capath) = &l.capath {
        let certs = read_cert_dir(capath).map_err(|m| ConfigError::new(join(path, "capath"), m))?;
        add(certs, "capath", &capath.display().to_string())?;
    }
    if let Some(cadata) = &l.cadata {
        let certs = CertificateDer::pem_slice_iter(cadata.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(join(path, "cadata"), format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ConfigError::new(
                join(path, "cadata"),
                "no PEM certificate in the text",
            ));
        }
        add(certs, "cadata", "cadata")?;
    }
    Ok((!roots.is_empty()).then_some(roots))
}

/// Every PEM certificate in `file`; none at all is an error.
fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", file.display()));
    }
    Ok(certs)
}

/// Every PEM certificate in the regular files of `dir` (OpenSSL's `capath` holds hashed links
/// to PEM files; any file with certificates counts, files without are skipped).
fn read_cert_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let entries =
        fs::read_dir(dir).map_err(|e| format!("cannot read directory {}: {e}", dir.display()))?;
    let mut certs = Vec::new();
    for entry in entries {
        let file = entry
            .map_err(|e| format!("cannot read directory {}: {e}", dir.display()))?
            .path();
        if !file.is_file() {
            continue;
        }
        if let Ok(found) = read_certs(&file) {
            certs.extend(found);
        }
    }
    if certs.is_empty() {
        return Err(format!("no PEM certificate in directory {}", dir.display()));
    }
    Ok(certs)
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}
