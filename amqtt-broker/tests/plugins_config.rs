//! Building plugins from aMQTT configs: errors naming plugin and key, aMQTT YAML files (new
//! style and legacy sections) loading unchanged and behaving as configured.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use amqtt_broker::plugins::password_file::{HashScheme, PasswordFile};
use amqtt_broker::{Broker, BrokerConfig, BrokerError};
use bytes::Bytes;
use common::{bounded, connect, RawClient};
use mqtt_codec::{ConnectReturnCode, QoS, SubAckReturnCode};

fn build(yaml: &str) -> Result<Broker, BrokerError> {
    let config = BrokerConfig::from_yaml_str(yaml)?;
    Broker::new(config)
}

fn build_error(yaml: &str) -> String {
    match build(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

async fn started(yaml: &str) -> (Broker, SocketAddr) {
    let broker = build(yaml).expect("broker");
    broker.start().await.expect("start");
    let addr = broker.local_addr("default").expect("bound");
    (broker, addr)
}

async fn connack(
    addr: SocketAddr,
    user: Option<&str>,
    password: &str,
) -> (RawClient, ConnectReturnCode) {
    static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut c = RawClient::connect(addr).await;
    let mut packet = connect(&format!("cfg-test-{id}"), true);
    packet.username = user.map(str::to_owned);
    packet.password = user.map(|_| Bytes::copy_from_slice(password.as_bytes()));
    let code = c.handshake(packet).await.return_code;
    (c, code)
}

const LISTENER: &str = "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:0\n";

#[test]
fn a_wrong_plugin_name_is_an_error_naming_it() {
    let err = build_error(&format!(
        "{LISTENER}plugins:\n  amqtt.plugins.authentication.AnonymousAuth:\n"
    ));
    assert!(
        err.contains("plugins.amqtt.plugins.authentication.AnonymousAuth: unknown plugin"),
        "{err}"
    );
    assert!(
        err.contains("amqtt.plugins.authentication.AnonymousAuthPlugin"),
        "{err}"
    );
}

#[test]
fn a_wrong_field_type_is_an_error_naming_plugin_and_key() {
    let err = build_error(&format!(
        "{LISTENER}plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: maybe\n"
    ));
    assert_eq!(
        err,
        "plugins.amqtt.plugins.authentication.AnonymousAuthPlugin.allow_anonymous: \
         invalid type: string \"maybe\", expected a boolean"
    );
    let err = build_error(&format!(
        "{LISTENER}plugins:\n  amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: soon\n"
    ));
    assert!(
        err.starts_with(
            "plugins.amqtt.plugins.sys.broker.BrokerSysPlugin.sys_interval: invalid type"
        ),
        "{err}"
    );
    let err = build_error(&format!(
        "{LISTENER}plugins:\n  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:\n    acl: {{alice: [\"a/#/b\"]}}\n"
    ));
    assert!(err.contains("TopicAccessControlListPlugin.acl"), "{err}");
    assert!(err.contains("`a/#/b` is not a valid topic filter"), "{err}");
    let err = build_error(&format!(
        "{LISTENER}plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymus: true\n"
    ));
    assert!(err.contains("AnonymousAuthPlugin"), "{err}");
    assert!(err.contains("unknown field `allow_anonymus`"), "{err}");
}

#[tokio::test]
async fn amqtts_default_broker_yaml_loads_unchanged() {
    // amqtt/scripts/default_broker.yaml, with the port made free for the test.
    let yaml = "listeners:
  default:
    type: tcp
    bind: 127.0.0.1:0
plugins:
  amqtt.plugins.logging_amqtt.EventLoggerPlugin:
  amqtt.plugins.logging_amqtt.PacketLoggerPlugin:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
  amqtt.plugins.sys.broker.BrokerSysPlugin:
    sys_interval: 20
";
    bounded(async {
        let (broker, addr) = started(yaml).await;
        let (_c, code) = connack(addr, None, "").await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn amqtt_docs_style_dashed_plugin_keys_load() {
    // aMQTT 0.12 rejects these dashed keys under `plugins`, although its docs use them.
    let dir = TempDir::new("dashed");
    let passwd = dir.passwd(&[("alice", "pw")]);
    let yaml = format!(
        "{LISTENER}plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow-anonymous: false
  amqtt.plugins.authentication.FileAuthPlugin:
    password-file: {}
",
        passwd.display()
    );
    bounded(async {
        let (broker, addr) = started(&yaml).await;
        assert_eq!(
            connack(addr, None, "").await.1,
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            connack(addr, Some("alice"), "pw").await.1,
            ConnectReturnCode::Accepted
        );
        assert_eq!(
            connack(addr, Some("alice"), "bad").await.1,
            ConnectReturnCode::NotAuthorized
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn amqtts_legacy_yaml_loads_unchanged_and_applies_its_sections() {
    // samples/legacy.yaml's shape: entry-point names, dashed keys, top-level sys_interval.
    let dir = TempDir::new("legacy");
    let passwd = dir.passwd(&[("alice", "pw"), ("bob", "pw2")]);
    let yaml = format!(
        "listeners:
  default:
    type: tcp
    bind: 127.0.0.1:0
sys_interval: 20
auth:
  plugins:
    - auth_file
  allow-anonymous: true
  password-file: {}
topic-check:
  enabled: true
  plugins:
    - topic_acl
  acl:
    alice:
      - a/#
    bob:
      - b/#
  publish-acl:
    alice:
      - a/#
",
        passwd.display()
    );
    bounded(async {
        let (broker, addr) = started(&yaml).await;
        // Only auth_file is selected: no user name means refused.
        assert_eq!(
            connack(addr, None, "").await.1,
            ConnectReturnCode::NotAuthorized
        );
        let (mut alice, code) = connack(addr, Some("alice"), "pw").await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        let ack = alice
            .subscribe(1, &[("a/1", QoS::AtMostOnce), ("b/1", QoS::AtMostOnce)])
            .await;
        assert_eq!(
            ack.return_codes,
            [
                SubAckReturnCode::Success(QoS::AtMostOnce),
                SubAckReturnCode::Failure
            ]
        );
        let (mut bob, code) = connack(addr, Some("bob"), "pw2").await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        // bob is not in the publish ACL.
        bob.publish("a/1", b"from bob", QoS::AtLeastOnce, false, 1)
            .await;
        let (mut alice_pub, _) = connack(addr, Some("alice"), "pw").await;
        alice_pub
            .publish("a/1", b"from alice", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(&alice.receive().await.payload[..], b"from alice");
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn legacy_topic_check_disabled_filters_nothing() {
    let yaml = format!(
        "{LISTENER}auth:\n  plugins: [auth_anonymous]\n  allow-anonymous: true\n\
         topic-check:\n  enabled: false\n  plugins: [topic_acl]\n  acl: {{alice: [a]}}\n"
    );
    bounded(async {
        let (broker, addr) = started(&yaml).await;
        let (mut c, code) = connack(addr, None, "").await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        let ack = c.subscribe(1, &[("anything/#", QoS::AtMostOnce)]).await;
        assert_eq!(
            ack.return_codes,
            [SubAckReturnCode::Success(QoS::AtMostOnce)]
        );
        broker.shutdown().await;
    })
    .await;
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "amqtt-plugins-cfg-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// A password file with sha-512 crypt entries (fast to check in debug builds).
    fn passwd(&self, users: &[(&str, &str)]) -> PathBuf {
        let mut file = PasswordFile::new();
        for (user, password) in users {
            file.set_password(user, password.as_bytes(), HashScheme::Sha512Crypt)
                .expect("hash");
        }
        let path = self.0.join("passwd");
        file.save(&path).expect("save");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn legacy_auth_without_a_plugin_list_uses_both_auth_plugins_like_amqtt() {
    // aMQTT (observed): both auth_anonymous and auth_file run; FileAuthPlugin without a
    // password file knows nobody, so clients with a user name are refused and clients without
    // one are let in.
    let yaml = format!("{LISTENER}auth:\n  allow-anonymous: true\n");
    bounded(async {
        let (broker, addr) = started(&yaml).await;
        assert_eq!(connack(addr, None, "").await.1, ConnectReturnCode::Accepted);
        assert_eq!(
            connack(addr, Some("alice"), "pw").await.1,
            ConnectReturnCode::NotAuthorized
        );
        broker.shutdown().await;
    })
    .await;
}
