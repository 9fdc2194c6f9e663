//! Authentication plugins through real connections: AnonymousAuthPlugin, FileAuthPlugin with
//! sha-512 crypt (passlib- and mkpasswd-style), argon2id and bcrypt hashes, and their
//! combinations.

mod common;

use std::path::{Path, PathBuf};

use amqtt_broker::plugins::password_file::{HashScheme, PasswordFile};
use amqtt_broker::{Broker, BrokerConfig};
use bytes::Bytes;
use common::{bounded, connect, RawClient, TestBroker};
use mqtt_codec::ConnectReturnCode;
use sha_crypt::{CustomizedPasswordHasher, Params, ShaCrypt};

/// A started broker built from `plugins_yaml` (the body of a `plugins:` section, or other
/// top-level keys) with the packaged plugin registry.
async fn broker(yaml: &str) -> (Broker, std::net::SocketAddr) {
    let TestBroker { broker, addr } = TestBroker::with_plugins(yaml).await;
    (broker, addr)
}

/// The CONNACK return code for a client with these credentials.
async fn connack(
    addr: std::net::SocketAddr,
    username: Option<&str>,
    password: Option<&str>,
) -> ConnectReturnCode {
    let mut c = RawClient::connect(addr).await;
    let mut packet = connect("auth-test", true);
    packet.username = username.map(str::to_owned);
    packet.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    let code = c.handshake(packet).await.return_code;
    if code != ConnectReturnCode::Accepted {
        // [MQTT-3.2.2-5] the server closes the connection after a refusing CONNACK.
        c.expect_closed().await;
    }
    code
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "amqtt-plugins-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write fixture");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
}

/// A sha-512 crypt hash as passlib's `sha512_crypt.using(rounds=…).hash()` writes it
/// (`$6$rounds=N$salt$hash`); with `rounds: None`, as `mkpasswd -m sha-512` writes it (5,000
/// rounds implied, no `rounds=` field). `salt` is 12 bytes, stored as 16 crypt characters.
fn sha512_crypt(password: &str, salt: &[u8; 12], rounds: Option<u32>) -> String {
    let params = Params::new(rounds.unwrap_or(5000)).expect("rounds");
    let hash = ShaCrypt::SHA512
        .hash_password_customized(password.as_bytes(), salt, None, None, params)
        .expect("hash")
        .to_string();
    match rounds {
        Some(_) => hash,
        // Drop the `rounds=5000$` field: the implicit form means the same.
        None => hash.replacen("rounds=5000$", "", 1),
    }
}

fn file_auth_yaml(path: &Path, with_anonymous: Option<bool>) -> String {
    let mut yaml = String::from("plugins:\n");
    if let Some(allow) = with_anonymous {
        yaml.push_str(&format!(
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: {allow}\n"
        ));
    }
    yaml.push_str(&format!(
        "  amqtt.plugins.authentication.FileAuthPlugin:\n    password_file: {}\n",
        path.display()
    ));
    yaml
}

#[tokio::test]
async fn default_plugins_let_anonymous_clients_in() {
    bounded(async {
        let (broker, addr) = broker("").await;
        assert_eq!(connack(addr, None, None).await, ConnectReturnCode::Accepted);
        assert_eq!(
            connack(addr, Some("u"), Some("p")).await,
            ConnectReturnCode::Accepted
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn anonymous_refused_admits_any_user_name_as_amqtt_does() {
    bounded(async {
        let (broker, addr) = broker(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow-anonymous: false\n",
        )
        .await;
        assert_eq!(connack(addr, None, None).await, ConnectReturnCode::NotAuthorized);
        assert_eq!(
            connack(addr, Some("whoever"), Some("anything")).await,
            ConnectReturnCode::Accepted
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn no_authentication_plugin_refuses_everyone() {
    bounded(async {
        let (broker, addr) =
            broker("plugins:\n  amqtt.plugins.logging_amqtt.EventLoggerPlugin:\n").await;
        assert_eq!(
            connack(addr, None, None).await,
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            connack(addr, Some("u"), Some("p")).await,
            ConnectReturnCode::NotAuthorized
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn file_auth_with_passlib_and_mkpasswd_style_sha512_hashes() {
    bounded(async {
        let dir = TempDir::new("sha512");
        let passlib = sha512_crypt("alice-pw", b"passlib-salt", Some(1000));
        let mkpasswd = sha512_crypt("bob-pw", b"mkpasswdsalt", None);
        // `$6$rounds=1000$` + 16-character salt + `$` + 86-character hash.
        assert!(passlib.starts_with("$6$rounds=1000$"), "{passlib}");
        assert_eq!(passlib.len(), 15 + 16 + 1 + 86, "{passlib}");
        assert!(
            mkpasswd.starts_with("$6$") && !mkpasswd.contains("rounds="),
            "{mkpasswd}"
        );
        assert_eq!(mkpasswd.len(), 3 + 16 + 1 + 86, "{mkpasswd}");
        let path = dir.file(
            "passwd",
            &format!("# amqtt users\nalice:{passlib}\n\nbob:{mkpasswd}\n"),
        );
        let (broker, addr) = broker(&file_auth_yaml(&path, None)).await;
        use ConnectReturnCode::{Accepted, NotAuthorized};
        assert_eq!(
            connack(addr, Some("alice"), Some("alice-pw")).await,
            Accepted
        );
        assert_eq!(connack(addr, Some("bob"), Some("bob-pw")).await, Accepted);
        assert_eq!(
            connack(addr, Some("alice"), Some("bob-pw")).await,
            NotAuthorized
        );
        assert_eq!(connack(addr, Some("alice"), None).await, NotAuthorized);
        assert_eq!(
            connack(addr, Some("carol"), Some("alice-pw")).await,
            NotAuthorized
        );
        // FileAuth abstains without a user name and nothing else allows: refused.
        assert_eq!(connack(addr, None, None).await, NotAuthorized);
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn file_auth_with_argon2id_and_bcrypt_hashes() {
    bounded(async {
        let dir = TempDir::new("argon");
        let mut users = PasswordFile::new();
        users
            .set_password("argon", b"a-pw", HashScheme::Argon2id)
            .expect("hash");
        let bcrypt = bcrypt::hash("b-pw", 4).expect("bcrypt");
        let path = dir.file("passwd", &format!("{}brypt:{bcrypt}\n", users.to_text()));
        let (broker, addr) = broker(&file_auth_yaml(&path, None)).await;
        use ConnectReturnCode::{Accepted, NotAuthorized};
        assert_eq!(connack(addr, Some("argon"), Some("a-pw")).await, Accepted);
        assert_eq!(
            connack(addr, Some("argon"), Some("b-pw")).await,
            NotAuthorized
        );
        assert_eq!(connack(addr, Some("brypt"), Some("b-pw")).await, Accepted);
        assert_eq!(
            connack(addr, Some("brypt"), Some("a-pw")).await,
            NotAuthorized
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn file_auth_combined_with_anonymous_auth() {
    bounded(async {
        let dir = TempDir::new("combo");
        let path = dir.file(
            "passwd",
            &format!("alice:{}\n", sha512_crypt("pw", b"0123456789ab", None)),
        );
        use ConnectReturnCode::{Accepted, NotAuthorized};

        // allow_anonymous true + file: anonymous in, right password in, wrong password out.
        let (b, addr) = broker(&file_auth_yaml(&path, Some(true))).await;
        assert_eq!(connack(addr, None, None).await, Accepted);
        assert_eq!(connack(addr, Some("alice"), Some("pw")).await, Accepted);
        assert_eq!(
            connack(addr, Some("alice"), Some("no")).await,
            NotAuthorized
        );
        assert_eq!(
            connack(addr, Some("mallory"), Some("pw")).await,
            NotAuthorized
        );
        b.shutdown().await;

        // allow_anonymous false + file: anonymous out, and a user name alone no longer
        // suffices because the file plugin checks the password.
        let (b, addr) = broker(&file_auth_yaml(&path, Some(false))).await;
        assert_eq!(connack(addr, None, None).await, NotAuthorized);
        assert_eq!(connack(addr, Some("alice"), Some("pw")).await, Accepted);
        assert_eq!(
            connack(addr, Some("alice"), Some("no")).await,
            NotAuthorized
        );
        b.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_malformed_password_file_is_a_build_error_naming_file_and_line() {
    let dir = TempDir::new("malformed");
    let good = sha512_crypt("pw", b"0123456789ab", None);
    let path = dir.file("passwd", &format!("alice:{good}\n# ok\nbob\n"));
    let config = BrokerConfig::from_yaml_str(&format!(
        "listeners: {{default: {{bind: \"127.0.0.1:0\"}}}}\n{}",
        file_auth_yaml(&path, None)
    ))
    .expect("config");
    let err = Broker::new(config).expect_err("a build error").to_string();
    assert!(
        err.contains(&format!("{}:3: expected `username:hash`", path.display())),
        "{err}"
    );
    assert!(err.contains("FileAuthPlugin"), "{err}");

    let config = BrokerConfig::from_yaml_str(&format!(
        "listeners: {{default: {{bind: \"127.0.0.1:0\"}}}}\n{}",
        file_auth_yaml(&dir.0.join("missing"), None)
    ))
    .expect("config");
    let err = Broker::new(config).expect_err("a build error").to_string();
    assert!(err.contains("missing"), "{err}");
}

#[tokio::test]
#[ignore = "needs mkpasswd (whois)"]
async fn file_auth_accepts_hashes_made_by_mkpasswd() {
    let output = std::process::Command::new("mkpasswd")
        .args(["-m", "sha-512", "mk-secret"])
        .output()
        .expect("run mkpasswd");
    assert!(output.status.success(), "mkpasswd failed");
    let hash = String::from_utf8(output.stdout).expect("utf-8");
    let hash = hash.trim();
    assert!(hash.starts_with("$6$"), "{hash}");
    bounded(async {
        let dir = TempDir::new("mkpasswd");
        let path = dir.file("passwd", &format!("mk:{hash}\n"));
        let (broker, addr) = broker(&file_auth_yaml(&path, None)).await;
        assert_eq!(
            connack(addr, Some("mk"), Some("mk-secret")).await,
            ConnectReturnCode::Accepted
        );
        assert_eq!(
            connack(addr, Some("mk"), Some("mk-wrong")).await,
            ConnectReturnCode::NotAuthorized
        );
        broker.shutdown().await;
    })
    .await;
}
