//! Certificates made at test time (rcgen), written to a temporary directory: a test CA, a
//! server certificate for `localhost`, `127.0.0.1` and `::1`, a client certificate signed by
//! the CA, and a second, unrelated CA with its own client certificate. No private key is
//! committed. Shared by the transport tests of the broker, the client and the root `tests/`
//! crate (included with `#[path]`).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A file pair: certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file a transport test needs, in one temporary directory removed on drop.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The test CA's certificate (PEM file) and its text.
    pub ca: PathBuf,
    pub ca_pem: String,
    /// The server certificate, signed by the CA.
    pub server: CertFiles,
    /// A client certificate signed by the CA.
    pub client: CertFiles,
    /// Another CA, unrelated to the first.
    pub other_ca: PathBuf,
    /// A client certificate signed by the other CA.
    pub rogue_client: CertFiles,
    /// A server certificate signed by the other CA.
    pub rogue_server: CertFiles,
}

impl Pki {
    /// Makes all certificates (a few milliseconds).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        // Readable by all: mosquitto started as root reads them as its own user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let ca = make_ca("amqtt-rs test CA");
        let other = make_ca("some other CA");
        let ca_pem = ca.pem();
        let ca_path = write(dir.path(), "ca.pem", &ca_pem);
        let other_ca = write(dir.path(), "other-ca.pem", &other.pem());
        let server = make_leaf(
            dir.path(),
            "server",
            &ca,
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = make_leaf(
            dir.path(),
            "client",
            &ca,
            &["client1"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let rogue_client = make_leaf(
            dir.path(),
            "rogue-client",
            &other,
            &["client1"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let rogue_server = make_leaf(
            dir.path(),
            "rogue-server",
            &other,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        Pki {
            dir,
            ca: ca_path,
            ca_pem,
            server,
            client,
            other_ca,
            rogue_client,
            rogue_server,
        }
    }

    /// The temporary directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// YAML for a TLS listener's certificate keys (`ssl`, `certfile`, `keyfile`).
    pub fn server_yaml(&self) -> String {
        format!(
            "ssl: on, certfile: {:?}, keyfile: {:?}",
            self.server.cert, self.server.key
        )
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("CA certificate")
}

fn make_leaf(
    dir: &Path,
    name: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> CertFiles {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("leaf certificate");
    CertFiles {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod PEM");
    path
}
