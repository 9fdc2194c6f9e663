//! PEM files for rustls, shared by the amqtt-rs client (`mqtts://`, `wss://`) and broker
//! (`ssl: true` listeners): a certificate chain, a private key and the CA bundle of aMQTT's
//! `cafile` / `capath` / `cadata` keys.
//!
//! Every error names the file (or directory) and what was expected in it; the caller adds
//! the config key (`connection.cafile`, `listeners.default.keyfile`). No TLS configuration is
//! built here: the client and the broker each build their own from what this reads.

use std::fs;
use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file, directory or text could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The file could not be read, or holds a malformed PEM section.
    #[error("cannot read certificates from {}: {source}", file.display())]
    ReadCertificates {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no PEM certificate.
    #[error("no PEM certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    /// The directory could not be listed.
    #[error("cannot read directory {}: {source}", dir.display())]
    ReadDirectory {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// No file of the directory holds a PEM certificate.
    #[error("no PEM certificate in directory {}", .0.display())]
    NoCertificateInDirectory(PathBuf),
    /// The file could not be read or holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("no PEM private key in {}: {source}", file.display())]
    NoPrivateKey {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// PEM text (`cadata`) is malformed.
    #[error("bad PEM: {0}")]
    BadText(rustls_pki_types::pem::Error),
    /// PEM text (`cadata`) holds no certificate.
    #[error("no PEM certificate in the text")]
    NoCertificateInText,
    /// A CA certificate could not be used as a trust anchor.
    #[error("bad CA certificate in {origin}: {source}")]
    BadCa {
        /// The file, directory, or `cadata`.
        origin: String,
        /// Why rustls refused it.
        source: rustls::Error,
    },
}

/// The aMQTT key a CA came from, so the caller can name it in its config error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaKey {
    /// `cafile`: a PEM file of CA certificates.
    Cafile,
    /// `capath`: a directory of PEM files.
    Capath,
    /// `cadata`: PEM text.
    Cadata,
}

impl CaKey {
    /// The key's name as aMQTT spells it (`cafile`, `capath`, `cadata`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaKey::Cafile => "cafile",
            CaKey::Capath => "capath",
            CaKey::Cadata => "cadata",
        }
    }
}

/// A CA that could not be read, and which key named it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", key.as_str())]
pub struct CaError {
    /// The key the CA came from.
    pub key: CaKey,
    /// What is wrong with it.
    pub error: PemError,
}

/// Where CA certificates come from: aMQTT's `cafile`, `capath` and `cadata`, all optional and
/// all used when given.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaSources<'a> {
    /// A PEM file of CA certificates.
    pub cafile: Option<&'a Path>,
    /// A directory whose files hold PEM CA certificates.
    pub capath: Option<&'a Path>,
    /// PEM text of CA certificates.
    pub cadata: Option<&'a str>,
}

impl CaSources<'_> {
    /// The trust anchors of every source given, or `None` when no source is given (the
    /// client then uses public roots, the broker asks for no client certificate).
    ///
    /// # Errors
    /// [`CaError`] naming the first source that is unreadable, holds no certificate or holds
    /// one rustls refuses as a trust anchor.
    pub fn roots(&self) -> Result<Option<RootCertStore>, CaError> {
        let mut roots = RootCertStore::empty();
        let mut configured = false;
        if let Some(cafile) = self.cafile {
            let certs = read_certs(cafile).map_err(|error| CaError::new(CaKey::Cafile, error))?;
            add(&mut roots, certs, &cafile.display().to_string())
                .map_err(|error| CaError::new(CaKey::Cafile, error))?;
            configured = true;
        }
        if let Some(capath) = self.capath {
            let certs =
                read_cert_dir(capath).map_err(|error| CaError::new(CaKey::Capath, error))?;
            add(&mut roots, certs, &capath.display().to_string())
                .map_err(|error| CaError::new(CaKey::Capath, error))?;
            configured = true;
        }
        if let Some(cadata) = self.cadata {
            let certs = parse_certs(cadata).map_err(|error| CaError::new(CaKey::Cadata, error))?;
            add(&mut roots, certs, "cadata").map_err(|error| CaError::new(CaKey::Cadata, error))?;
            configured = true;
        }
        Ok(configured.then_some(roots))
    }
}

impl CaError {
    fn new(key: CaKey, error: PemError) -> CaError {
        CaError { key, error }
    }
}

/// Every PEM certificate in `file`, in order (a chain: the end entity first).
///
/// # Errors
/// [`PemError::ReadCertificates`] when the file cannot be read or a PEM section is
/// malformed, [`PemError::NoCertificate`] when it holds none.
pub fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| PemError::ReadCertificates {
            file: file.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate(file.to_owned()));
    }
    Ok(certs)
}

/// Every PEM certificate in the regular files of `dir`. OpenSSL's `capath` holds hashed links
/// to PEM files; any file with certificates counts, files without are skipped.
///
/// # Errors
/// [`PemError::ReadDirectory`] when the directory cannot be listed,
/// [`PemError::NoCertificateInDirectory`] when no file in it holds a certificate.
pub fn read_cert_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let unreadable = |source| PemError::ReadDirectory {
        dir: dir.to_owned(),
        source,
    };
    let mut certs = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let file = entry.map_err(unreadable)?.path();
        if !file.is_file() {
            continue;
        }
        if let Ok(found) = read_certs(&file) {
            certs.extend(found);
        }
    }
    if certs.is_empty() {
        return Err(PemError::NoCertificateInDirectory(dir.to_owned()));
    }
    Ok(certs)
}

/// Every PEM certificate in `text` (aMQTT's `cadata`).
///
/// # Errors
/// [`PemError::BadText`] for a malformed PEM section, [`PemError::NoCertificateInText`]
/// when it holds none.
pub fn parse_certs(text: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::BadText)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificateInText);
    }
    Ok(certs)
}

/// The first PEM private key in `file` (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`PemError::NoPrivateKey`] when the file cannot be read or holds no key.
pub fn read_private_key(file: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(file).map_err(|source| PemError::NoPrivateKey {
        file: file.to_owned(),
        source,
    })
}

/// Adds `certs` (read from `origin`) to `roots` as trust anchors.
fn add(
    roots: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    origin: &str,
) -> Result<(), PemError> {
    for cert in certs {
        roots.add(cert).map_err(|source| PemError::BadCa {
            origin: origin.to_owned(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
        ca_pem: String,
    }

    impl Files {
        /// A CA certificate (`ca.pem`), its key (`ca.key`) and a text file (`notes.txt`).
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = params.self_signed(&key).unwrap();
            let ca_pem = ca.pem();
            fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
            fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
            fs::write(dir.path().join("notes.txt"), "no PEM here\n").unwrap();
            Files { dir, ca_pem }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    #[test]
    fn certificates_and_a_key_are_read_from_pem_files() {
        let files = Files::new();
        assert_eq!(read_certs(&files.path("ca.pem")).unwrap().len(), 1);
        assert!(read_private_key(&files.path("ca.key")).is_ok());
        assert_eq!(parse_certs(&files.ca_pem).unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_file_and_what_was_expected() {
        let files = Files::new();
        let notes = files.path("notes.txt");
        let err = read_certs(&notes).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no PEM certificate in {}", notes.display())
        );
        let missing = files.path("missing.pem");
        let err = read_certs(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read certificates from {}:",
                missing.display()
            )),
            "{err}"
        );
        let err = read_private_key(&files.path("ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "no PEM private key in {}:",
                files.path("ca.pem").display()
            )),
            "{err}"
        );
        let err = parse_certs("just text").unwrap_err();
        assert_eq!(err.to_string(), "no PEM certificate in the text");
    }

    #[test]
    fn a_directory_counts_every_file_with_certificates_and_skips_the_rest() {
        let files = Files::new();
        fs::copy(files.path("ca.pem"), files.path("copy.pem")).unwrap();
        fs::create_dir(files.path("sub")).unwrap();
        assert_eq!(read_cert_dir(files.dir.path()).unwrap().len(), 2);
        let empty = files.path("sub");
        let err = read_cert_dir(&empty).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no PEM certificate in directory {}", empty.display())
        );
        let err = read_cert_dir(&files.path("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read directory"), "{err}");
    }

    #[test]
    fn roots_combine_every_source_and_are_none_without_any() {
        let files = Files::new();
        assert!(CaSources::default().roots().unwrap().is_none());
        let cafile = files.path("ca.pem");
        let capath = files.dir.path();
        let sources = CaSources {
            cafile: Some(&cafile),
            capath: Some(capath),
            cadata: Some(&files.ca_pem),
        };
        assert_eq!(sources.roots().unwrap().unwrap().len(), 3);
    }

    #[test]
    fn a_bad_source_is_named_by_its_key() {
        let files = Files::new();
        let notes = files.path("notes.txt");
        let err = CaSources {
            cafile: Some(&notes),
            ..CaSources::default()
        }
        .roots()
        .unwrap_err();
        assert_eq!(err.key, CaKey::Cafile);
        assert_eq!(
            err.to_string(),
            format!("cafile: no PEM certificate in {}", notes.display())
        );
        let err = CaSources {
            cadata: Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
            ..CaSources::default()
        }
        .roots()
        .unwrap_err();
        assert_eq!(err.key, CaKey::Cadata);
        assert!(err.to_string().starts_with("cadata: bad PEM"), "{err}");
    }
}
