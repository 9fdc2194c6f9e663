//! Reloading plugin settings without dropping clients (what SIGHUP does): password files and
//! ACLs change for the next check, including deliveries to clients already subscribed; a
//! failed reload keeps the old settings.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use amqtt_broker::plugins::password_file::{HashScheme, PasswordFile};
use amqtt_broker::{Broker, BrokerConfig};
use bytes::Bytes;
use common::{bounded, connect, RawClient};
use mqtt_codec::{ConnectReturnCode, QoS};

fn config(yaml: &str) -> BrokerConfig {
    BrokerConfig::from_yaml_str(&format!(
        "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:0\n{yaml}"
    ))
    .expect("config")
}

async fn started(config: BrokerConfig) -> (Broker, SocketAddr) {
    let broker = Broker::new(config).expect("broker");
    broker.start().await.expect("start");
    let addr = broker.local_addr("default").expect("bound");
    (broker, addr)
}

async fn login(
    addr: SocketAddr,
    id: &str,
    user: &str,
    password: &str,
) -> (RawClient, ConnectReturnCode) {
    let mut c = RawClient::connect(addr).await;
    let mut packet = connect(id, true);
    packet.username = Some(user.to_owned());
    packet.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    let code = c.handshake(packet).await.return_code;
    (c, code)
}

fn write_passwd(path: &Path, users: &[(&str, &str)]) {
    let mut file = PasswordFile::new();
    for (user, password) in users {
        file.set_password(user, password.as_bytes(), HashScheme::Sha512Crypt)
            .expect("hash");
    }
    file.save(path).expect("save");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "amqtt-reload-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ACL_WIDE: &str = "plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl: {alice: ['x/#']}
    receive-acl: {alice: ['x/#']}
";

const ACL_NARROW: &str = "plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl: {alice: ['x/#']}
    receive-acl: {alice: ['x/1']}
";

#[tokio::test]
async fn a_narrowed_acl_applies_to_clients_already_subscribed() {
    bounded(async {
        let (broker, addr) = started(config(ACL_WIDE)).await;
        let (mut alice, code) = login(addr, "alice", "alice", "").await;
        assert_eq!(code, ConnectReturnCode::Accepted);
        alice.subscribe(1, &[("x/#", QoS::AtLeastOnce)]).await;
        let (mut publisher, _) = login(addr, "pub", "admin", "").await;
        publisher
            .publish("x/2", b"before", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(alice.receive().await.topic.as_str(), "x/2");

        broker.reload_plugins(&config(ACL_NARROW)).expect("reload");
        publisher
            .publish("x/2", b"after", QoS::AtLeastOnce, false, 2)
            .await;
        publisher
            .publish("x/1", b"still allowed", QoS::AtLeastOnce, false, 3)
            .await;
        let got = alice.receive().await;
        assert_eq!(got.topic.as_str(), "x/1");
        assert_eq!(&got.payload[..], b"still allowed");
        alice.ping().await;
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_changed_password_file_applies_after_reload_and_a_broken_one_is_refused() {
    bounded(async {
        let dir = TempDir::new("passwd");
        let path = dir.0.join("passwd");
        write_passwd(&path, &[("alice", "old")]);
        let yaml = format!(
            "plugins:\n  amqtt.plugins.authentication.FileAuthPlugin:\n    password_file: {}\n",
            path.display()
        );
        let (broker, addr) = started(config(&yaml)).await;
        let (mut connected, code) = login(addr, "a1", "alice", "old").await;
        assert_eq!(code, ConnectReturnCode::Accepted);

        write_passwd(&path, &[("alice", "new"), ("bob", "b")]);
        broker.reload_plugins(&config(&yaml)).expect("reload");
        assert_eq!(
            login(addr, "a2", "alice", "old").await.1,
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            login(addr, "a3", "alice", "new").await.1,
            ConnectReturnCode::Accepted
        );
        assert_eq!(
            login(addr, "b1", "bob", "b").await.1,
            ConnectReturnCode::Accepted
        );
        // The client connected before the reload is still served.
        connected.ping().await;

        // A malformed file: the reload fails naming file:line and the old users stay.
        std::fs::write(&path, "alice:not-a-hash\n").expect("write");
        let err = broker
            .reload_plugins(&config(&yaml))
            .expect_err("a malformed file must not load")
            .to_string();
        assert!(
            err.contains(&format!("{}:1: unsupported hash", path.display())),
            "{err}"
        );
        assert_eq!(
            login(addr, "a4", "alice", "new").await.1,
            ConnectReturnCode::Accepted
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_reload_that_adds_a_plugin_or_fails_halfway_changes_nothing() {
    bounded(async {
        let (broker, addr) = started(config(ACL_WIDE)).await;
        let err = broker
            .reload_plugins(&config(
                "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n",
            ))
            .expect_err("a removed plugin needs a restart")
            .to_string();
        assert!(err.contains("restart"), "{err}");
        // The ACL is replaced only if every plugin accepts its new section.
        let err = broker
            .reload_plugins(&config(
                "plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: sometimes
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl: {}
",
            ))
            .expect_err("a wrong type must not load")
            .to_string();
        assert!(err.contains("allow_anonymous"), "{err}");
        let (mut alice, _) = login(addr, "alice", "alice", "").await;
        let ack = alice.subscribe(1, &[("x/1", QoS::AtMostOnce)]).await;
        assert_eq!(
            ack.return_codes,
            [mqtt_codec::SubAckReturnCode::Success(QoS::AtMostOnce)]
        );
        broker.shutdown().await;
    })
    .await;
}
