//! CONNECT handling, takeover, keep-alive, connect timeout, max connections, shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use amqtt_broker::hooks::BoxFuture;
use amqtt_broker::{
    AccessControl, Action, Broker, BrokerConfig, BrokerError, ClientInfo, ConnectRequest,
    Extensions,
};
use common::*;
use mqtt_codec::packet::Packet;
use mqtt_codec::{ConnectReturnCode, KeepAlive, QoS};

#[tokio::test]
async fn valid_connect_is_accepted_without_session_present() {
    bounded(async {
        let b = TestBroker::start().await;
        let (c, ack) = b.client("c1", true).await;
        assert!(!ack.session_present);
        c.disconnect().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unacceptable_protocol_level_gets_return_code_1_then_close() {
    bounded(async {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr).await;
        // CONNECT "MQTT" level 5.
        c.send_raw(&[
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 2, b'i', b'd',
        ])
        .await;
        match c.recv().await {
            Packet::ConnAck(ack) => assert_eq!(
                ack.return_code,
                ConnectReturnCode::UnacceptableProtocolVersion
            ),
            other => panic!("{other:?}"),
        }
        c.expect_closed().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn empty_client_id_with_clean_session_0_gets_identifier_rejected() {
    bounded(async {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr).await;
        let ack = c.handshake(connect("", false)).await;
        assert_eq!(ack.return_code, ConnectReturnCode::IdentifierRejected);
        c.expect_closed().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn empty_client_id_with_clean_session_1_is_assigned_an_id() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut c, ack) = b.client("", true).await;
        assert!(!ack.session_present);
        c.ping().await;
        assert_eq!(b.broker.session_count(), 1);
        c.disconnect().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn mqtt_3_1_connect_is_accepted() {
    bounded(async {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("old-protocol", true);
        conn.protocol = mqtt_codec::Protocol::V31;
        let ack = c.handshake(conn).await;
        assert_eq!(ack.return_code, ConnectReturnCode::Accepted);
        b.stop().await;
    })
    .await;
}

/// Refuses user "nobody" with 0x04 and anyone else without "ok" in the name with 0x05; denies
/// subscribing to `secret/#` and publishing to `private`.
struct TestAccess;

impl AccessControl for TestAccess {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> BoxFuture<'a, ConnectReturnCode> {
        let code = match request.client.username.as_deref() {
            Some("nobody") => ConnectReturnCode::BadUsernameOrPassword,
            _ if request.client.client_id.contains("ok") => ConnectReturnCode::Accepted,
            _ => ConnectReturnCode::NotAuthorized,
        };
        Box::pin(async move { code })
    }

    fn filters_topics(&self) -> bool {
        true
    }

    fn check_topic(&self, _client: &ClientInfo, topic: &str, action: Action) -> bool {
        !matches!(
            (action, topic),
            (Action::Subscribe, "secret/#") | (Action::Publish, "private")
        )
    }
}

#[tokio::test]
async fn authentication_refusals_carry_the_access_controls_return_code() {
    bounded(async {
        let ext = Extensions {
            access: Arc::new(TestAccess),
            ..Extensions::default()
        };
        let b = TestBroker::with_yaml_and("", ext).await;
        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("ok-but-bad-user", true);
        conn.username = Some("nobody".into());
        assert_eq!(
            c.handshake(conn).await.return_code,
            ConnectReturnCode::BadUsernameOrPassword
        );
        c.expect_closed().await;
        let mut c = RawClient::connect(b.addr).await;
        assert_eq!(
            c.handshake(connect("stranger", true)).await.return_code,
            ConnectReturnCode::NotAuthorized
        );
        c.expect_closed().await;

        // Topic decisions: SUBACK 0x80 for the refused filter, a refused PUBLISH is acked and dropped.
        let (mut c, _) = b.client("ok-client", true).await;
        let ack = c
            .subscribe(
                1,
                &[
                    ("secret/#", QoS::AtLeastOnce),
                    ("private", QoS::AtLeastOnce),
                ],
            )
            .await;
        assert_eq!(
            ack.return_codes
                .iter()
                .map(|r| r.as_u8())
                .collect::<Vec<_>>(),
            vec![0x80, 1]
        );
        c.publish("private", b"x", QoS::AtLeastOnce, false, 2).await;
        c.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn first_packet_other_than_connect_closes_the_connection() {
    bounded(async {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr).await;
        c.send(Packet::PingReq).await;
        c.expect_closed().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn second_connect_closes_the_connection() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut c, _) = b.client("twice", true).await;
        c.send(Packet::Connect(Box::new(connect("twice", true))))
            .await;
        c.expect_closed().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn packets_pipelined_after_connect_are_processed_after_connack() {
    bounded(async {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr).await;
        c.send_all(&[
            Packet::Connect(Box::new(connect("pipelined", true))),
            Packet::Subscribe(mqtt_codec::Subscribe { packet_id: pid(1), filters: vec![(filter("p/#"), QoS::AtMostOnce)] }),
            Packet::PingReq,
        ])
        .await;
        assert!(matches!(c.recv().await, Packet::ConnAck(a) if a.return_code == ConnectReturnCode::Accepted));
        // SUBACK (the broker's answer) and PINGRESP (the state machine's) may come in either order.
        let mut got = [c.recv().await, c.recv().await];
        got.sort_by_key(|p| p.name());
        assert_eq!(got[0], Packet::PingResp);
        assert!(matches!(got[1], Packet::SubAck(_)), "{got:?}");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_socket_that_never_sends_connect_is_closed_at_the_connect_timeout() {
    bounded(async {
        let b = TestBroker::with_yaml("connect_timeout: 0.3\n").await;
        let started = Instant::now();
        let mut c = RawClient::connect(b.addr).await;
        c.expect_closed().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250),
            "closed too early: {waited:?}"
        );
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pingreq_gets_pingresp() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut c, _) = b.client("pinger", true).await;
        c.ping().await;
        c.ping().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_one_and_a_half_keep_alives_and_its_will_published() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("wills/#", QoS::AtLeastOnce)]).await;

        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("sleepy", true);
        conn.keep_alive = KeepAlive::from_secs(1);
        conn.will = Some(will("wills/sleepy", b"gone", QoS::AtLeastOnce, false));
        let started = Instant::now();
        assert_eq!(
            c.handshake(conn).await.return_code,
            ConnectReturnCode::Accepted
        );
        c.expect_closed().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400),
            "dropped too early: {waited:?}"
        );
        let w = watcher.receive().await;
        assert_eq!(w.topic.as_str(), "wills/sleepy");
        assert_eq!(&w.payload[..], b"gone");
        assert_eq!(w.qos_pid.qos(), QoS::AtLeastOnce);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn timeout_disconnect_delay_extends_the_keep_alive_window() {
    bounded(async {
        let b = TestBroker::with_yaml("timeout-disconnect-delay: 1\n").await;
        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("patient", true);
        conn.keep_alive = KeepAlive::from_secs(1);
        let started = Instant::now();
        c.handshake(conn).await;
        c.expect_closed().await;
        assert!(
            started.elapsed() >= Duration::from_millis(2400),
            "{:?}",
            started.elapsed()
        );
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn takeover_closes_the_old_connection_publishes_its_will_and_resumes_the_session() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("wills/#", QoS::AtMostOnce)]).await;

        let mut old = RawClient::connect(b.addr).await;
        let mut conn = connect("dup-id", false);
        conn.will = Some(will("wills/dup-id", b"taken over", QoS::AtMostOnce, false));
        old.handshake(conn).await;
        old.subscribe(1, &[("news", QoS::AtLeastOnce)]).await;

        let (mut new, ack) = b.client("dup-id", false).await;
        assert!(
            ack.session_present,
            "[MQTT-3.2.2-2] the stored session is resumed"
        );
        old.expect_closed().await;
        assert_eq!(&watcher.receive().await.payload[..], b"taken over");

        // The subscription came with the session.
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("news", b"hello", QoS::AtLeastOnce, false, 1)
            .await;
        let p = new.receive().await;
        assert_eq!(&p.payload[..], b"hello");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn takeover_with_clean_session_discards_the_old_session() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut old, _) = b.client("dup", false).await;
        old.subscribe(1, &[("news", QoS::AtLeastOnce)]).await;
        let (mut new, ack) = b.client("dup", true).await;
        assert!(!ack.session_present);
        old.expect_closed().await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("news", b"hello", QoS::AtLeastOnce, false, 1)
            .await;
        new.expect_nothing().await;
        assert_eq!(b.broker.subscription_count(), 0);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_and_existing_ones_untouched() {
    bounded(async {
        let b = TestBroker::with_config(
            BrokerConfig::from_yaml_str(
                "listeners: {default: {bind: \"127.0.0.1:0\", max_connections: 2}}",
            )
            .unwrap(),
            Extensions::default(),
        )
        .await;
        let (mut c1, _) = b.client("one", true).await;
        let (c2, _) = b.client("two", true).await;
        let mut c3 = RawClient::connect(b.addr).await;
        c3.expect_closed().await;
        c1.ping().await;
        c2.disconnect().await;
        // A slot is free again once the second client is gone.
        let mut ok = false;
        for _ in 0..50 {
            let mut c4 = RawClient::connect(b.addr).await;
            c4.send(Packet::Connect(Box::new(connect("four", true))))
                .await;
            if let Some(Packet::ConnAck(ack)) = c4.next().await {
                assert_eq!(ack.return_code, ConnectReturnCode::Accepted);
                ok = true;
                break;
            }
            // The second client's task may still be finishing; try again.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "a fourth client was never accepted");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_disconnects_clients_and_returns() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut c, _) = b.client("stay", true).await;
        let addr = b.addr;
        b.broker.shutdown().await;
        c.expect_closed().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    })
    .await;
}

#[tokio::test]
async fn external_connection_is_served_under_a_named_listener() {
    bounded(async {
        let config = BrokerConfig::from_yaml_str(
            "listeners:\n  default: {bind: \"127.0.0.1:0\"}\n  side: {type: external, bind: null}\n",
        )
        .unwrap();
        let broker = Arc::new(Broker::new(config).unwrap());
        broker.start().await.unwrap();
        let (client, server) = tokio::io::duplex(4096);
        let err = broker.external_connected(tokio::io::duplex(64).1, "nope").await.unwrap_err();
        assert!(matches!(err, BrokerError::UnknownListener(ref n) if n == "nope"), "{err}");
        let b2 = broker.clone();
        let served = tokio::spawn(async move { b2.external_connected(server, "side").await });
        // Speak MQTT over the in-memory pipe.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut out = bytes::BytesMut::new();
        Packet::Connect(Box::new(connect("piped", true))).encode(&mut out).unwrap();
        Packet::PingReq.encode(&mut out).unwrap();
        Packet::Disconnect.encode(&mut out).unwrap();
        wr.write_all(&out).await.unwrap();
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, vec![0x20, 2, 0, 0, 0xd0, 0]);
        served.await.unwrap().unwrap();
        broker.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_busy_port_is_a_bind_error_naming_the_listener() {
    bounded(async {
        let b = TestBroker::start().await;
        let yaml = format!("listeners: {{default: {{bind: \"{}\"}}}}", b.addr);
        let second = Broker::new(BrokerConfig::from_yaml_str(&yaml).unwrap()).unwrap();
        let err = second.start().await.unwrap_err();
        assert!(
            matches!(err, BrokerError::Bind { ref listener, .. } if listener == "default"),
            "{err}"
        );
        assert!(err.to_string().contains(&b.addr.to_string()), "{err}");
        b.stop().await;
    })
    .await;
}
