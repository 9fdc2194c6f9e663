//! Topic plugins through real connections: the ACL matrix (subscribe, publish, receive) with
//! wildcards, `admin`, `anonymous` and bypass attempts, and TopicTabooPlugin.

mod common;

use std::net::SocketAddr;

use amqtt_broker::Broker;
use bytes::Bytes;
use common::{bounded, connect, RawClient, TestBroker};
use mqtt_codec::{ConnectReturnCode, QoS, SubAckReturnCode};

const ACL: &str = r##"plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl:
      alice: ["a/+/c", "b/#"]
      anonymous: ["public/#"]
      bob: ["x/#"]
    publish-acl:
      - alice: ["a/#", "b/#"]
      - anonymous: ["public/#"]
      - bob: ["x/#"]
    receive-acl:
      alice: ["#"]
      anonymous: ["public/#"]
      bob: ["x/1"]
"##;

async fn broker(yaml: &str) -> (Broker, SocketAddr) {
    let TestBroker { broker, addr } = TestBroker::with_plugins(yaml).await;
    (broker, addr)
}

async fn client(addr: SocketAddr, id: &str, username: Option<&str>) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    let mut packet = connect(id, true);
    packet.username = username.map(str::to_owned);
    packet.password = username.map(|_| Bytes::from_static(b"pw"));
    let ack = c.handshake(packet).await;
    assert_eq!(ack.return_code, ConnectReturnCode::Accepted, "{id}");
    c
}

/// SUBACK return codes for `filters` (each asked at QoS 1), as granted (`true`) or refused.
async fn granted(c: &mut RawClient, packet_id: u16, filters: &[&str]) -> Vec<bool> {
    let asked: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtLeastOnce)).collect();
    let ack = c.subscribe(packet_id, &asked).await;
    ack.return_codes
        .iter()
        .map(|code| match code {
            SubAckReturnCode::Success(_) => true,
            SubAckReturnCode::Failure => false,
        })
        .collect()
}

#[tokio::test]
async fn subscribe_matrix_with_wildcards_admin_and_anonymous() {
    bounded(async {
        let (broker, addr) = broker(ACL).await;
        let mut alice = client(addr, "alice-1", Some("alice")).await;
        assert_eq!(
            granted(
                &mut alice,
                1,
                &[
                    "a/x/c", "a/+/c", "b/#", "b/1/+", "b", "a/#", "#", "+/x/c", "a/x/c/d",
                    "$SYS/#", "public/x"
                ]
            )
            .await,
            [true, true, true, true, true, false, false, false, false, false, false]
        );
        let mut anonymous = client(addr, "anon-1", None).await;
        assert_eq!(
            granted(&mut anonymous, 1, &["public/#", "public/a/b", "a/x/c", "#"]).await,
            [true, true, false, false]
        );
        let mut admin = client(addr, "admin-1", Some("admin")).await;
        assert_eq!(
            granted(&mut admin, 1, &["#", "$SYS/#", "anything/+"]).await,
            [true, true, true]
        );
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn user_names_and_client_ids_with_wildcards_gain_no_rights() {
    bounded(async {
        let (broker, addr) = broker(ACL).await;
        for (id, user) in [("w1", "#"), ("w2", "+"), ("w3", "alice/#"), ("w4", "+/+")] {
            let mut c = client(addr, id, Some(user)).await;
            assert_eq!(
                granted(&mut c, 1, &["a/x/c", "public/x", "#", "x/1"]).await,
                [false, false, false, false],
                "user {user}"
            );
        }
        // A client id with wildcards is just an id: rights follow the user name.
        let mut c = client(addr, "#", Some("alice")).await;
        assert_eq!(granted(&mut c, 1, &["a/x/c", "#"]).await, [true, false]);
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn publish_acl_drops_denied_messages_after_acknowledging_them() {
    bounded(async {
        let (broker, addr) = broker(ACL).await;
        let mut admin = client(addr, "admin-sub", Some("admin")).await;
        assert_eq!(granted(&mut admin, 1, &["#"]).await, [true]);

        let mut alice = client(addr, "alice-pub", Some("alice")).await;
        // Denied: acknowledged per its QoS, then dropped.
        alice
            .publish("z/1", b"denied", QoS::AtLeastOnce, false, 1)
            .await;
        alice
            .publish("public/x", b"denied too", QoS::ExactlyOnce, false, 2)
            .await;
        // Allowed: delivered. The publisher's messages arrive in order, so the first one the
        // subscriber sees proves the denied ones were dropped.
        alice
            .publish("a/1", b"allowed", QoS::AtLeastOnce, false, 3)
            .await;
        let got = admin.receive().await;
        assert_eq!(got.topic.as_str(), "a/1");
        assert_eq!(&got.payload[..], b"allowed");

        let mut anonymous = client(addr, "anon-pub", None).await;
        anonymous
            .publish("a/1", b"denied", QoS::AtMostOnce, false, 1)
            .await;
        anonymous
            .publish("public/news", b"ok", QoS::AtMostOnce, false, 1)
            .await;
        let got = admin.receive().await;
        assert_eq!(got.topic.as_str(), "public/news");
        admin.expect_nothing().await;
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn receive_acl_is_checked_per_subscriber_at_delivery() {
    bounded(async {
        let (broker, addr) = broker(ACL).await;
        let mut bob = client(addr, "bob-sub", Some("bob")).await;
        assert_eq!(granted(&mut bob, 1, &["x/#"]).await, [true]);
        let mut alice = client(addr, "alice-sub", Some("alice")).await;
        assert_eq!(granted(&mut alice, 1, &["b/#"]).await, [true]);
        let mut admin_sub = client(addr, "admin-sub2", Some("admin")).await;
        assert_eq!(granted(&mut admin_sub, 1, &["x/#"]).await, [true]);

        let mut publisher = client(addr, "bob-pub", Some("bob")).await;
        publisher
            .publish("x/2", b"not for bob", QoS::AtLeastOnce, false, 1)
            .await;
        publisher
            .publish("x/1", b"for bob", QoS::AtLeastOnce, false, 2)
            .await;
        // bob may only receive x/1; admin receives both.
        let got = bob.receive().await;
        assert_eq!(got.topic.as_str(), "x/1");
        assert_eq!(admin_sub.receive().await.topic.as_str(), "x/2");
        assert_eq!(admin_sub.receive().await.topic.as_str(), "x/1");
        bob.expect_nothing().await;
        alice.expect_nothing().await;
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_empty_acl_denies_every_subscription_but_admin() {
    bounded(async {
        let (broker, addr) = broker(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n  \
             amqtt.plugins.topic_checking.TopicAccessControlListPlugin:\n    acl:\n      # nobody yet\n",
        )
        .await;
        let mut anonymous = client(addr, "anon", None).await;
        assert_eq!(granted(&mut anonymous, 1, &["a", "#"]).await, [false, false]);
        let mut admin = client(addr, "adm", Some("admin")).await;
        assert_eq!(granted(&mut admin, 1, &["a"]).await, [true]);
        // No publish-acl: publishing is unrestricted.
        anonymous.publish("a", b"x", QoS::AtLeastOnce, false, 2).await;
        assert_eq!(admin.receive().await.topic.as_str(), "a");
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn taboo_topics_are_denied_except_to_admin() {
    bounded(async {
        let (broker, addr) = broker(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n  \
             amqtt.plugins.topic_checking.TopicTabooPlugin:\n",
        )
        .await;
        let mut user = client(addr, "u", Some("user")).await;
        assert_eq!(
            granted(
                &mut user,
                1,
                &["prohibited", "top-secret", "data/classified", "#"]
            )
            .await,
            [false, false, false, true]
        );
        let mut admin = client(addr, "adm", Some("admin")).await;
        assert_eq!(granted(&mut admin, 1, &["#"]).await, [true]);

        // A user's taboo publish is dropped.
        user.publish("prohibited", b"no", QoS::AtLeastOnce, false, 2)
            .await;
        user.publish("open", b"yes", QoS::AtLeastOnce, false, 3)
            .await;
        assert_eq!(admin.receive().await.topic.as_str(), "open");
        assert_eq!(user.receive().await.topic.as_str(), "open");

        // Admin may publish it; only admin receives it.
        let mut admin_pub = client(addr, "adm-pub", Some("admin")).await;
        admin_pub
            .publish("data/classified", b"secret", QoS::AtLeastOnce, false, 4)
            .await;
        admin_pub
            .publish("open", b"again", QoS::AtLeastOnce, false, 5)
            .await;
        assert_eq!(admin.receive().await.topic.as_str(), "data/classified");
        assert_eq!(admin.receive().await.topic.as_str(), "open");
        assert_eq!(user.receive().await.topic.as_str(), "open");
        user.expect_nothing().await;
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn taboo_and_acl_together_deny_when_either_denies() {
    bounded(async {
        let (broker, addr) = broker(
            "plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
  amqtt.plugins.topic_checking.TopicTabooPlugin:
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl: {carol: ['prohibited', 'data/#', 'open']}
",
        )
        .await;
        let mut carol = client(addr, "carol", Some("carol")).await;
        // ACL allows all three; Taboo denies `prohibited` and `data/classified`; the ACL
        // denies `other`.
        assert_eq!(
            granted(
                &mut carol,
                1,
                &[
                    "prohibited",
                    "data/classified",
                    "data/open",
                    "open",
                    "other"
                ]
            )
            .await,
            [false, false, true, true, false]
        );
        let mut admin = client(addr, "adm", Some("admin")).await;
        assert_eq!(
            granted(&mut admin, 1, &["prohibited", "other"]).await,
            [true, true]
        );
        broker.shutdown().await;
    })
    .await;
}
