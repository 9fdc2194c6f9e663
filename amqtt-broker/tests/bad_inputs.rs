//! The bad-input catalogue of issue #9 (`/work/shared/reference/bad-inputs.md`): each item is
//! sent to a real broker on 127.0.0.1:0 as raw bytes, the exact reaction is asserted (close,
//! CONNACK code, SUBACK 0x80, ignore), and a second, well-behaved client is then served normally
//! by the same broker. Resource-hungry items (memory, 1,000 sockets) live in
//! `hardening_resources.rs`.

mod common;

use std::time::Duration;

use amqtt_broker::{Broker, BrokerConfig};
use bytes::Bytes;
use common::wire::{
    frame, good_connect, publish_of_size, raw_connect, raw_publish, raw_subscribe, string,
};
use common::{bounded, connect, RawClient, TestBroker};
use mqtt_codec::packet::Packet;
use mqtt_codec::{ConnectReturnCode, QoS, SubAckReturnCode};

/// A connected raw client (CONNECT sent as raw bytes, CONNACK 0 checked).
async fn connected(b: &TestBroker, client_id: &str) -> RawClient {
    let mut c = RawClient::connect(b.addr).await;
    c.send_raw(&good_connect(client_id)).await;
    assert_eq!(
        c.recv_connack().await.return_code,
        ConnectReturnCode::Accepted
    );
    c
}

/// Sends `bytes` on a fresh connection and asserts that the broker closes it without answering.
async fn closed_without_answer(b: &TestBroker, bytes: &[u8]) {
    let mut c = RawClient::connect(b.addr).await;
    c.send_raw(bytes).await;
    c.expect_closed().await;
}

/// Sends `bytes` after a successful CONNECT and asserts that the broker closes the connection.
async fn closed_after_connect(b: &TestBroker, client_id: &str, bytes: &[u8]) {
    let mut c = connected(b, client_id).await;
    c.send_raw(bytes).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn item_1_a_socket_that_never_sends_connect_is_closed_at_connect_timeout() {
    bounded(async {
        let b = TestBroker::with_yaml("connect_timeout: 0.5\n").await;
        let start = tokio::time::Instant::now();
        let mut c = RawClient::connect(b.addr).await;
        c.expect_closed().await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(450),
            "closed too early: {took:?}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "closed too late: {took:?}"
        );
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_2_a_huge_remaining_length_is_refused_at_once_before_and_after_connect() {
    bounded(async {
        let b = TestBroker::start().await;
        // [MQTT-2.2.3] 268,435,455 = ff ff ff 7f, the largest remaining length; then a trickle.
        for first in [0x10u8, 0x30, 0x82] {
            let mut c = RawClient::connect(b.addr).await;
            c.send_raw(&[first, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x04])
                .await;
            assert_eq!(
                c.next_within(Duration::from_secs(2)).await,
                Ok(None),
                "{first:#x}"
            );
        }
        let mut c = connected(&b, "huge-after-connect").await;
        c.send_raw(&[0x30, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01, b'a'])
            .await;
        assert_eq!(c.next_within(Duration::from_secs(2)).await, Ok(None));
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_3_malformed_fixed_headers_close_the_connection_at_once() {
    bounded(async {
        let b = TestBroker::start().await;
        // A 5-byte remaining length [MQTT-2.2.3], before and after CONNECT.
        closed_without_answer(&b, &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
        closed_after_connect(&b, "varint", &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
        // SUBSCRIBE with flags other than 0b0010 [MQTT-3.8.1-1].
        for first in [0x80u8, 0x83, 0x8a] {
            closed_after_connect(&b, "sub-flags", &raw_subscribe(first, 1, b"a/b", 0)).await;
        }
        // PUBLISH QoS 3 [MQTT-3.3.1-4].
        closed_after_connect(&b, "qos3", &frame(0x36, &[0, 1, b'a', 0, 1, b'x'])).await;
        // CONNECT with the reserved flag bit set [MQTT-3.1.2-3]: no CONNACK.
        closed_without_answer(&b, &raw_connect(b"MQTT", 4, 0x03, b"reserved", None)).await;
        // Unknown packet types 0 and 15, before and after CONNECT.
        for first in [0x00u8, 0xf0] {
            closed_without_answer(&b, &[first, 0x00]).await;
            closed_after_connect(&b, "unknown", &[first, 0x00]).await;
        }
        // Reserved flags on PUBREL/UNSUBSCRIBE/PINGREQ/DISCONNECT [MQTT-2.2.2-2].
        for bytes in [
            vec![0x60u8, 0x02, 0x00, 0x01],
            frame(0xa0, &[0, 1, 0, 1, b'a']),
            vec![0xc1, 0x00],
            vec![0xe2, 0x00],
        ] {
            closed_after_connect(&b, "flags", &bytes).await;
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_4_packets_out_of_order_or_server_only_close_the_connection() {
    bounded(async {
        let b = TestBroker::start().await;
        // [MQTT-3.1.0-1] the first packet must be CONNECT.
        closed_without_answer(&b, &raw_publish(b"a/b", 0, 0, b"x")).await;
        closed_without_answer(&b, &raw_subscribe(0x82, 1, b"#", 0)).await;
        closed_without_answer(&b, &[0xc0, 0x00]).await;
        // [MQTT-3.1.0-2] a second CONNECT.
        closed_after_connect(&b, "second", &good_connect("second")).await;
        // Server-only packets from a client: CONNACK, SUBACK, UNSUBACK, PINGRESP.
        for bytes in [
            vec![0x20u8, 0x02, 0x00, 0x00],
            vec![0x90, 0x03, 0x00, 0x01, 0x00],
            vec![0xb0, 0x02, 0x00, 0x01],
            vec![0xd0, 0x00],
        ] {
            closed_without_answer(&b, &bytes).await;
            closed_after_connect(&b, "server-only", &bytes).await;
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_5_wrong_protocol_name_closes_without_connack_and_wrong_level_gets_0x01() {
    bounded(async {
        let b = TestBroker::start().await;
        for name in [&b"MQTX"[..], b"mqtt", b"", b"MQIsdpX"] {
            closed_without_answer(&b, &raw_connect(name, 4, 0x02, b"name", None)).await;
        }
        for level in [0u8, 2, 5, 255] {
            let mut c = RawClient::connect(b.addr).await;
            c.send_raw(&raw_connect(b"MQTT", level, 0x02, b"level", None))
                .await;
            assert_eq!(
                c.recv_connack().await.return_code,
                ConnectReturnCode::UnacceptableProtocolVersion,
                "level {level}"
            );
            c.expect_closed().await;
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_6_empty_client_id_with_clean_session_0_gets_0x02_and_is_closed() {
    bounded(async {
        let b = TestBroker::start().await;
        let mut c = RawClient::connect(b.addr).await;
        c.send_raw(&raw_connect(b"MQTT", 4, 0x00, b"", None)).await;
        let ack = c.recv_connack().await;
        assert_eq!(ack.return_code, ConnectReturnCode::IdentifierRejected);
        assert!(!ack.session_present);
        // [MQTT-3.1.3-8] … and the connection closed (tinyMQTT CVE-2025-56352 did not).
        c.expect_closed().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_7_invalid_utf8_nul_and_empty_topics_close_the_connection() {
    bounded(async {
        let b = TestBroker::start().await;
        // Collects what other subscribers receive: nothing invalid may be forwarded.
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("#", QoS::AtMostOnce)]).await;
        let bad: [&[u8]; 4] = [b"a/\xff/b", b"a/\x00/b", b"\xc3\x28", b"a/\xed\xa0\x80"];
        for bytes in bad {
            // [MQTT-1.5.3-1/2] in a topic name, a filter, a client id, a user name.
            closed_after_connect(&b, "bad-topic", &raw_publish(bytes, 0, 0, b"x")).await;
            closed_after_connect(&b, "bad-filter", &raw_subscribe(0x82, 1, bytes, 0)).await;
            closed_after_connect(
                &b,
                "bad-unsub",
                &frame(0xa2, &{
                    let mut body = vec![0, 1];
                    string(bytes, &mut body);
                    body
                }),
            )
            .await;
            closed_without_answer(&b, &raw_connect(b"MQTT", 4, 0x02, bytes, None)).await;
            closed_without_answer(&b, &raw_connect(b"MQTT", 4, 0x02, b"u", Some(bytes))).await;
        }
        // [MQTT-4.7.3-1] a zero-length topic name; a zero-length filter.
        closed_after_connect(&b, "empty-topic", &raw_publish(b"", 0, 0, b"x")).await;
        closed_after_connect(&b, "empty-topic", &raw_publish(b"", 1, 1, b"x")).await;
        closed_after_connect(&b, "empty-filter", &raw_subscribe(0x82, 1, b"", 0)).await;
        watcher.expect_nothing().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_8_unreleased_qos2_ids_are_capped_at_the_limit_and_duplicates_are_not_counted() {
    bounded(async {
        let b = TestBroker::with_yaml("max_incoming_unreleased: 5\n").await;
        let mut c = connected(&b, "qos2-flood").await;
        // limit − 1 and limit: 5 distinct ids, plus re-sent ids, are acknowledged with PUBREC.
        for id in [1u16, 2, 3, 4, 1, 2, 5, 5, 3] {
            c.send_raw(&raw_publish(b"q/2", 2, id, b"x")).await;
            assert_eq!(c.recv().await, Packet::PubRec(common::pid(id)), "id {id}");
        }
        c.ping().await;
        // Releasing one makes room for a new one.
        c.send(Packet::PubRel(common::pid(1))).await;
        assert_eq!(c.recv().await, Packet::PubComp(common::pid(1)));
        c.send_raw(&raw_publish(b"q/2", 2, 6, b"x")).await;
        assert_eq!(c.recv().await, Packet::PubRec(common::pid(6)));
        // limit + 1: a sixth id awaiting PUBREL closes the connection.
        c.send_raw(&raw_publish(b"q/2", 2, 7, b"x")).await;
        c.expect_closed().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_9_deep_and_long_filters_get_suback_failure_and_deep_topics_close() {
    bounded(async {
        let b = TestBroker::with_yaml("max_topic_levels: 128\n").await;
        let mut c = connected(&b, "deep").await;
        let levels = |n: usize| vec!["a"; n].join("/");
        // 65,000 empty levels in a 64,999-byte filter; a 65,535-byte single level; 127/128/129.
        let deep = "/".repeat(64_999);
        let long = "a".repeat(65_535);
        let asked = [
            (deep.as_str(), false),
            (long.as_str(), true),
            (&levels(127)[..], true),
            (&levels(128)[..], true),
            (&levels(129)[..], false),
        ];
        for (i, (f, ok)) in asked.iter().enumerate() {
            let id = i as u16 + 1;
            c.send_raw(&raw_subscribe(0x82, id, f.as_bytes(), 0)).await;
            match c.recv().await {
                Packet::SubAck(ack) => {
                    let want = if *ok {
                        SubAckReturnCode::Success(QoS::AtMostOnce)
                    } else {
                        SubAckReturnCode::Failure
                    };
                    assert_eq!(ack.return_codes, [want], "filter of {} bytes", f.len());
                }
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
        // A PUBLISH at the level limit is routed; beyond it the connection is closed.
        c.send_raw(&raw_publish(levels(128).as_bytes(), 0, 0, b"in"))
            .await;
        let p = c.recv_publish().await;
        assert_eq!(p.payload, Bytes::from_static(b"in"));
        closed_after_connect(
            &b,
            "deep-pub",
            &raw_publish(levels(129).as_bytes(), 0, 0, b"x"),
        )
        .await;
        closed_after_connect(&b, "deep-pub", &raw_publish(deep.as_bytes(), 0, 0, b"x")).await;
        c.ping().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_10_wildcards_never_match_dollar_topics_and_clients_cannot_publish_to_sys() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut wild, _) = b.client("wild", true).await;
        wild.subscribe(
            1,
            &[
                ("#", QoS::AtMostOnce),
                ("+/x", QoS::AtMostOnce),
                ("+/+", QoS::AtMostOnce),
            ],
        )
        .await;
        let (mut sys, _) = b.client("sys", true).await;
        sys.subscribe(
            1,
            &[("$SYS/#", QoS::AtMostOnce), ("$foo/#", QoS::AtMostOnce)],
        )
        .await;
        let (mut publisher, _) = b.client("dollar-publisher", true).await;
        publisher
            .publish("$foo/x", b"dollar", QoS::AtLeastOnce, false, 1)
            .await;
        publisher
            .publish("$SYS/x", b"forged", QoS::AtLeastOnce, true, 2)
            .await;
        publisher
            .publish("plain/x", b"plain", QoS::AtLeastOnce, false, 3)
            .await;
        // [MQTT-4.7.2-1] `$foo/x` reaches `$foo/#` only; `$SYS/x` from a client reaches no one.
        assert_eq!(
            sys.recv_publish().await.payload,
            Bytes::from_static(b"dollar")
        );
        let p = wild.recv_publish().await;
        assert_eq!(p.payload, Bytes::from_static(b"plain"));
        wild.expect_nothing().await;
        sys.expect_nothing().await;
        assert_eq!(
            b.broker.retained_count(),
            0,
            "a forged $SYS message was retained"
        );
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

const ACL: &str = r##"plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:
    acl:
      alice: ["a/+/c"]
      anonymous: ["check/#"]
    publish-acl:
      - anonymous: ["check/#"]
"##;

#[tokio::test]
async fn item_11_wider_filters_and_wildcard_identities_gain_no_rights() {
    bounded(async {
        let b = TestBroker::with_plugins(ACL).await;
        let codes = |ack: mqtt_codec::packet::SubAck| {
            ack.return_codes
                .iter()
                .map(|c| *c != SubAckReturnCode::Failure)
                .collect::<Vec<_>>()
        };
        let mut alice = RawClient::connect(b.addr).await;
        let mut login = connect("alice-1", true);
        login.username = Some("alice".into());
        alice.handshake(login).await;
        let asked = [
            "a/x/c", "a/+/c", "a/#", "#", "+/+/c", "a/+/+", "a/x/c/#", "+/#",
        ];
        let filters: Vec<_> = asked.iter().map(|f| (*f, QoS::AtMostOnce)).collect();
        let got = codes(alice.subscribe(1, &filters).await);
        assert_eq!(got, [true, true, false, false, false, false, false, false]);
        // A user name or client id containing wildcards matches no ACL entry literally.
        for (id, user) in [("+", "+"), ("#", "#"), ("a/+/c", "al+ce"), ("alice", "#")] {
            let mut c = RawClient::connect(b.addr).await;
            let mut login = connect(id, true);
            login.username = Some(user.into());
            let ack = c.handshake(login).await;
            assert_eq!(ack.return_code, ConnectReturnCode::Accepted);
            let got = codes(
                c.subscribe(1, &[("a/x/c", QoS::AtMostOnce), ("#", QoS::AtMostOnce)])
                    .await,
            );
            assert_eq!(got, [false, false], "{id}/{user}");
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_12_a_malformed_password_file_is_a_start_up_error_naming_file_and_line() {
    let dir = std::env::temp_dir().join(format!("amqtt-bad-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("passwd");
    // A line without a hash, an empty user name, an empty hash (see also plugins_auth.rs).
    for (content, line) in [
        ("bob\n", 1),
        ("# users\n\n:$6$abc$def\n", 3),
        ("alice:\n", 1),
    ] {
        std::fs::write(&path, content).expect("write passwd");
        let yaml = format!(
            "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:0\nplugins:\n  amqtt.plugins.authentication.FileAuthPlugin:\n    password_file: {}\n",
            path.display()
        );
        let err = BrokerConfig::from_yaml_str(&yaml)
            .map_err(|e| e.to_string())
            .and_then(|c| Broker::new(c).map_err(|e| e.to_string()));
        let Err(msg) = err else {
            panic!("a malformed password file was accepted: {content:?}");
        };
        let want = format!("{}:{line}", path.display());
        assert!(msg.contains(&want), "{msg:?} does not name {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn item_12_an_acl_with_no_entries_denies_everything() {
    bounded(async {
        let b = TestBroker::with_plugins(
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:\n    acl:\n      # only a comment\n",
        )
        .await;
        let (mut c, _) = b.client("empty-acl", true).await;
        let ack = c.subscribe(1, &[("#", QoS::AtMostOnce), ("a", QoS::AtMostOnce)]).await;
        assert_eq!(ack.return_codes, [SubAckReturnCode::Failure, SubAckReturnCode::Failure]);
        c.ping().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_13_a_persistent_session_stops_receiving_what_a_narrowed_acl_forbids() {
    bounded(async {
        let wide = format!("{ACL}    receive-acl:\n      anonymous: [\"#\"]\n");
        let narrow = format!(
            "listeners:\n  default:\n    type: tcp\n    bind: \"127.0.0.1:0\"\n{ACL}    receive-acl:\n      anonymous: [\"check/served\"]\n"
        );
        let b = TestBroker::with_plugins(&wide).await;
        let (mut sub, _) = b.client("persistent", false).await;
        sub.subscribe(1, &[("check/#", QoS::AtLeastOnce)]).await;
        sub.disconnect().await;
        let (mut publisher, _) = b.client("acl-publisher", true).await;
        // While allowed, a message published offline is delivered on reconnect.
        publisher.publish("check/1", b"before", QoS::AtLeastOnce, false, 1).await;
        let mut c = RawClient::connect(b.addr).await;
        assert!(c.handshake(connect("persistent", false)).await.session_present);
        assert_eq!(c.receive().await.payload, Bytes::from_static(b"before"));
        c.disconnect().await;
        // Narrowed: the subscription stays, but nothing it may no longer read is delivered.
        let narrowed = BrokerConfig::from_yaml_str(&narrow).expect("narrowed config");
        b.broker.reload_plugins(&narrowed).expect("reload");
        publisher.publish("check/2", b"after", QoS::AtLeastOnce, false, 2).await;
        let mut c = RawClient::connect(b.addr).await;
        assert!(c.handshake(connect("persistent", false)).await.session_present);
        c.expect_nothing().await;
        publisher.publish("check/3", b"online", QoS::AtLeastOnce, false, 3).await;
        c.expect_nothing().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn item_17_random_packet_sequences_on_three_connections_sharing_an_id() {
    use rand::{Rng, SeedableRng};
    bounded(async {
        let b = TestBroker::with_yaml("max_incoming_unreleased: 4\n").await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x8376);
        let choices: Vec<Vec<u8>> = vec![
            good_connect("shared"),
            raw_connect(b"MQTT", 4, 0x00, b"shared", None),
            raw_subscribe(0x82, 1, b"s/#", 2),
            raw_subscribe(0x82, 2, b"s/+", 1),
            frame(0xa2, &[0, 3, 0, 3, b's', b'/', b'#']),
            raw_publish(b"s/1", 0, 0, b"x"),
            raw_publish(b"s/1", 1, 7, b"x"),
            raw_publish(b"s/1", 2, 9, b"x"),
            raw_publish(b"s/2", 2, 10, b"x"),
            vec![0x62, 0x02, 0x00, 0x09],
            vec![0x40, 0x02, 0x00, 0x01],
            vec![0x50, 0x02, 0x00, 0x01],
            vec![0x70, 0x02, 0x00, 0x01],
            vec![0xc0, 0x00],
            vec![0xe0, 0x00],
            vec![0x36, 0x00],
            vec![0xff, 0xff, 0xff],
        ];
        for _round in 0..30 {
            let n = rng.gen_range(1..=3);
            let mut conns = Vec::new();
            for _ in 0..n {
                conns.push(
                    tokio::net::TcpStream::connect(b.addr)
                        .await
                        .expect("connect"),
                );
            }
            for _ in 0..rng.gen_range(1..40) {
                let i = rng.gen_range(0..conns.len());
                let bytes = &choices[rng.gen_range(0..choices.len())];
                use tokio::io::AsyncWriteExt;
                // The broker may already have closed this connection: that is fine.
                let _ = conns[i].write_all(bytes).await;
            }
            drop(conns);
        }
        // Every connection ends; no session or connection is left behind but persistent ones.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while b.broker.connected_clients() != 0 {
            assert!(tokio::time::Instant::now() < deadline, "connections leaked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            b.broker.session_count() <= 1,
            "{} sessions",
            b.broker.session_count()
        );
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

/// A raw MQTT-over-WebSocket client: the test decides what goes into each binary frame.
struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    buf: bytes::BytesMut,
    decoder: mqtt_codec::Decoder,
}

impl WsClient {
    async fn connect(addr: std::net::SocketAddr) -> WsClient {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("tcp connect");
        let mut request = format!("ws://{addr}/mqtt")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static("mqtt"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, tcp)
            .await
            .expect("websocket upgrade");
        WsClient {
            ws,
            buf: bytes::BytesMut::new(),
            decoder: mqtt_codec::Decoder::new(usize::MAX >> 1),
        }
    }

    /// Sends `bytes` as one binary frame; the broker may already have closed.
    async fn frame(&mut self, bytes: &[u8]) {
        use futures_util::SinkExt;
        let message =
            tokio_tungstenite::tungstenite::Message::Binary(Bytes::copy_from_slice(bytes));
        let _ = self.ws.send(message).await;
    }

    /// The next packet, or `None` once the connection is closed.
    async fn next(&mut self) -> Option<Packet> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let read = async {
            loop {
                if let Some(p) = self
                    .decoder
                    .decode(&mut self.buf)
                    .expect("broker sent a valid packet")
                {
                    return Some(p);
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(common::RECV_DEADLINE, read)
            .await
            .expect("a packet or the close within the deadline")
    }

    async fn recv(&mut self) -> Packet {
        self.next().await.expect("a packet, not the close")
    }

    async fn expect_closed(&mut self) {
        if let Some(p) = self.next().await {
            panic!("expected the connection to close, got {p:?}");
        }
    }

    /// Sends `bytes` in frames cut at `cuts`.
    async fn frames_cut_at(&mut self, bytes: &[u8], cuts: &[usize]) {
        let mut from = 0;
        for &to in cuts.iter().chain([&bytes.len()]) {
            self.frame(&bytes[from..to]).await;
            from = to;
        }
    }
}

#[tokio::test]
async fn item_16_websocket_frames_are_reassembled_batched_and_held_to_the_same_limits() {
    bounded(async {
        let limit = 1024usize;
        let b = TestBroker::with_yaml(&format!(
            "  ws:\n    type: ws\n    bind: \"127.0.0.1:0\"\nmax_packet_size: {limit}\nmax_connect_packet_size: 256\n"
        ))
        .await;
        let ws_addr = b.broker.local_addr("ws").expect("ws listener bound");

        // A CONNECT split across frames, one of them ending inside the fixed header.
        let mut c = WsClient::connect(ws_addr).await;
        c.frames_cut_at(&good_connect("ws-split"), &[1, 2, 7]).await;
        match c.recv().await {
            Packet::ConnAck(ack) => assert_eq!(ack.return_code, ConnectReturnCode::Accepted),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        // Several packets in one frame: SUBSCRIBE, a QoS 1 PUBLISH, a PINGREQ.
        let mut batch = raw_subscribe(0x82, 1, b"t", 1);
        batch.extend(raw_publish(b"t", 1, 2, b"batched"));
        batch.extend([0xc0, 0x00]);
        c.frame(&batch).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(c.recv().await);
        }
        // (Acknowledgements of different flows need not keep their order: the codec queues
        // PUBACK as it decodes, SUBACK once the broker has subscribed.)
        let suback = Packet::SubAck(mqtt_codec::packet::SubAck {
            packet_id: common::pid(1),
            return_codes: vec![SubAckReturnCode::Success(QoS::AtLeastOnce)],
        });
        assert!(got.contains(&suback), "{got:?}");
        assert!(got.contains(&Packet::PubAck(common::pid(2))), "{got:?}");
        assert!(got.contains(&Packet::PingResp), "{got:?}");
        let routed: Vec<_> = got
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.payload.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(routed, [Bytes::from_static(b"batched")]);
        // A fixed header announcing more than its frame holds: the rest follows in later
        // frames (the NanoMQ CVE-2026-25627 class). limit − 1 and limit bytes are delivered.
        for size in [limit - 1, limit] {
            c.frames_cut_at(&publish_of_size(size), &[3, 10, size / 2])
                .await;
            match c.recv().await {
                Packet::Publish(p) => assert_eq!(p.payload.len(), size - 6, "size {size}"),
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
        // limit + 1 bytes in small frames (each far below the WebSocket message limit): the
        // same max_packet_size closes the connection.
        c.frames_cut_at(&publish_of_size(limit + 1), &[3, 10, 500])
            .await;
        c.expect_closed().await;

        // A 268 MB announced length is refused at once, before and after CONNECT.
        let mut c = WsClient::connect(ws_addr).await;
        c.frame(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await;
        c.expect_closed().await;
        let mut c = WsClient::connect(ws_addr).await;
        c.frame(&good_connect("ws-huge")).await;
        assert!(matches!(c.recv().await, Packet::ConnAck(_)));
        c.frame(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await;
        c.expect_closed().await;
        // The pre-CONNECT cap applies too: a 257-byte CONNECT, split over frames, is refused.
        let mut c = WsClient::connect(ws_addr).await;
        let big = good_connect(&"x".repeat(257 - 15));
        assert_eq!(big.len(), 257);
        c.frames_cut_at(&big, &[2, 100]).await;
        c.expect_closed().await;
        // PUBLISH before CONNECT closes, as over TCP.
        let mut c = WsClient::connect(ws_addr).await;
        c.frame(&raw_publish(b"t", 0, 0, b"early")).await;
        c.expect_closed().await;

        // Another client over WebSocket, and one over TCP, are served normally.
        let mut c = WsClient::connect(ws_addr).await;
        c.frame(&good_connect("ws-fine")).await;
        assert!(matches!(c.recv().await, Packet::ConnAck(_)));
        c.frame(&raw_subscribe(0x82, 1, b"fine", 0)).await;
        assert!(matches!(c.recv().await, Packet::SubAck(_)));
        c.frame(&raw_publish(b"fine", 0, 0, b"ok")).await;
        match c.recv().await {
            Packet::Publish(p) => assert_eq!(p.payload, Bytes::from_static(b"ok")),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}
