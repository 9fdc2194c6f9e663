//! Issue #9's limits at their boundaries: each configurable limit is exercised at limit − 1,
//! limit and limit + 1 on a real broker, the exact reaction is asserted (SUBACK 0x80, close,
//! held back until an acknowledgement, oldest dropped, keep-alive capped), and a second,
//! well-behaved client is then served normally. `max_packet_size`, the pre-CONNECT cap and
//! `max_connections` are in `hardening_resources.rs`, the unreleased-QoS-2 cap and
//! `max_topic_levels` in `bad_inputs.rs`.

mod common;

use std::time::Duration;

use amqtt_broker::BrokerConfig;
use bytes::Bytes;
use common::{bounded, connect, RawClient, TestBroker};
use mqtt_codec::packet::Packet;
use mqtt_codec::{KeepAlive, QoS, SubAckReturnCode};

/// A topic of exactly `len` bytes: `t/` followed by `x`s (two levels).
fn topic_of_len(len: usize) -> String {
    format!("t/{}", "x".repeat(len - 2))
}

/// A will topic of exactly `len` bytes: `w/` followed by `x`s.
fn will_topic_of_len(len: usize) -> String {
    format!("w/{}", "x".repeat(len - 2))
}

#[tokio::test]
async fn max_topic_length_refuses_longer_filters_and_closes_on_longer_topics() {
    bounded(async {
        let limit = 64usize;
        let b = TestBroker::with_yaml(&format!("max_topic_length: {limit}\n")).await;
        let (mut c, _) = b.client("lengths", true).await;
        // Filters: limit − 1 and limit are granted, limit + 1 gets SUBACK 0x80.
        for (i, (len, ok)) in [(limit - 1, true), (limit, true), (limit + 1, false)]
            .into_iter()
            .enumerate()
        {
            let f = topic_of_len(len);
            let ack = c.subscribe(i as u16 + 1, &[(&f, QoS::AtMostOnce)]).await;
            let want = if ok {
                SubAckReturnCode::Success(QoS::AtMostOnce)
            } else {
                SubAckReturnCode::Failure
            };
            assert_eq!(ack.return_codes, [want], "filter of {len} bytes");
        }
        // Topics: limit − 1 and limit are routed (to the client's own subscriptions)…
        for len in [limit - 1, limit] {
            c.publish(&topic_of_len(len), b"in", QoS::AtLeastOnce, false, 10)
                .await;
            let p = c.receive().await;
            assert_eq!(p.topic.as_str().len(), len);
        }
        c.expect_nothing().await;
        // …limit + 1 closes the publisher's connection without PUBACK/PUBREC (nobody receives
        // it, so it must not look accepted), at every QoS, and reaches nobody.
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher
            .subscribe(1, &[("t/#", QoS::AtMostOnce), ("w/#", QoS::AtMostOnce)])
            .await;
        for (qos, id) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 7),
            (QoS::ExactlyOnce, 8),
        ] {
            let (mut over, _) = b.client("too-long", true).await;
            over.send(Packet::Publish(common::publish(
                &topic_of_len(limit + 1),
                b"x",
                qos,
                false,
                id,
            )))
            .await;
            over.expect_closed().await;
            watcher.expect_nothing().await;
        }
        // A will on a topic over the limit is not published either; one at the limit is.
        for (len, published) in [(limit + 1, false), (limit, true)] {
            let mut w = RawClient::connect(b.addr).await;
            let mut conn = connect("will-length", true);
            conn.will = Some(common::will(
                &will_topic_of_len(len),
                b"will",
                QoS::AtMostOnce,
                false,
            ));
            w.handshake(conn).await;
            w.drop_connection();
            if published {
                let p = watcher.recv_publish().await;
                assert_eq!(p.topic.as_str().len(), len);
                assert_eq!(p.payload, Bytes::from_static(b"will"));
            } else {
                watcher.expect_nothing().await;
            }
        }
        c.ping().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[test]
fn max_topic_length_defaults_to_the_spec_maximum_and_rejects_nonsense() {
    let base = "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:0\n";
    let c = BrokerConfig::from_yaml_str(base).expect("config");
    assert_eq!(c.limits.max_topic_length, 65_535);
    for ok in [1usize, 65_535] {
        let c = BrokerConfig::from_yaml_str(&format!("{base}max_topic_length: {ok}\n"))
            .expect("in range");
        assert_eq!(c.limits.max_topic_length, ok);
    }
    for bad in ["0", "65536", "-1", "long"] {
        match BrokerConfig::from_yaml_str(&format!("{base}max_topic_length: {bad}\n")) {
            Ok(_) => panic!("accepted max_topic_length: {bad}"),
            Err(e) => assert!(e.to_string().contains("max_topic_length"), "{bad}: {e}"),
        }
    }
    let mut c = BrokerConfig::from_yaml_str(base).expect("config");
    c.limits.max_topic_length = 0;
    assert!(
        amqtt_broker::Broker::new(c).is_err(),
        "validate() checks it"
    );
}

/// Connects with `keep_alive` seconds, then stays silent; returns how long after the CONNACK
/// the broker closed the connection.
async fn silent_for(b: &TestBroker, client_id: &str, keep_alive: u16) -> Duration {
    let mut c = RawClient::connect(b.addr).await;
    let mut conn = connect(client_id, true);
    conn.keep_alive = KeepAlive::from_secs(keep_alive);
    c.handshake(conn).await;
    let start = tokio::time::Instant::now();
    match c.next_within(Duration::from_secs(15)).await {
        Ok(None) => start.elapsed(),
        Ok(Some(p)) => panic!("keep-alive {keep_alive}: expected the close, got {p:?}"),
        Err(()) => panic!("keep-alive {keep_alive}: still open after 15 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keepalive_caps_the_keep_alive_enforced_at_limit_minus_one_limit_and_plus_one() {
    bounded(async {
        let limit = 4u16;
        let b = TestBroker::with_yaml(&format!("max_keepalive: {limit}\n")).await;
        // [MQTT-3.1.2-24] a silent client is dropped after 1.5 × its keep-alive; beyond
        // `max_keepalive` (and for keep-alive 0) after 1.5 × the limit instead.
        let (below, at, above, zero) = tokio::join!(
            silent_for(&b, "ka-below", limit - 1),
            silent_for(&b, "ka-at", limit),
            silent_for(&b, "ka-above", limit + 1),
            silent_for(&b, "ka-zero", 0),
        );
        let window = |secs: u16| Duration::from_millis(u64::from(secs) * 1500);
        // Closed no earlier than the window, and well before the next case's window (a loaded
        // machine may be late, so the upper bound is the window plus 1.4 s).
        let check = |what: &str, got: Duration, secs: u16| {
            assert!(
                got + Duration::from_millis(100) >= window(secs)
                    && got < window(secs) + Duration::from_millis(1400),
                "{what}: closed after {got:?}, expected about {:?}",
                window(secs)
            );
        };
        check("limit − 1", below, limit - 1);
        check("limit", at, limit);
        // Uncapped, limit + 1 would be 7.5 s: the check's upper bound (7.4 s) excludes it.
        check("limit + 1", above, limit);
        check("keep-alive 0", zero, limit);
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn max_inflight_holds_back_the_message_beyond_the_window_until_an_ack() {
    bounded(async {
        let limit = 4u16;
        let b = TestBroker::with_yaml(&format!("max_inflight: {limit}\n")).await;
        let (mut sub, _) = b.client("window", true).await;
        sub.subscribe(1, &[("w/#", QoS::AtLeastOnce)]).await;
        let (mut publisher, _) = b.client("window-pub", true).await;
        let mut received = Vec::new();
        // limit − 1, then limit messages unacknowledged: each is sent at once.
        for i in 1..=limit {
            publisher
                .publish("w/x", &[i as u8], QoS::AtLeastOnce, false, i)
                .await;
            received.push(sub.recv_publish().await);
            assert_eq!(received.len(), usize::from(i));
        }
        // limit + 1: held back while `limit` are unacknowledged…
        publisher
            .publish(
                "w/x",
                &[limit as u8 + 1],
                QoS::AtLeastOnce,
                false,
                limit + 1,
            )
            .await;
        sub.expect_nothing().await;
        // …and sent as soon as one is acknowledged.
        sub.ack(&received[0]).await;
        let next = sub.recv_publish().await;
        assert_eq!(next.payload.as_ref(), [limit as u8 + 1]);
        let payloads: Vec<u8> = received.iter().map(|p| p.payload[0]).collect();
        assert_eq!(payloads, (1..=limit as u8).collect::<Vec<_>>());
        for p in received.iter().skip(1).chain([&next]) {
            sub.ack(p).await;
        }
        sub.ping().await;
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

/// Publishes `payloads` at QoS 1 to `q/x` while the persistent client `client_id` (subscribed
/// to `q/#`) is offline, then reconnects it and returns the payloads it is sent, acknowledging
/// each, until nothing more comes.
async fn queued_while_offline(b: &TestBroker, client_id: &str, payloads: &[Vec<u8>]) -> Vec<Bytes> {
    let (mut sub, _) = b.client(client_id, false).await;
    sub.subscribe(1, &[("q/#", QoS::AtLeastOnce)]).await;
    sub.disconnect().await;
    let (mut publisher, _) = b.client(&format!("{client_id}-pub"), true).await;
    for (i, payload) in payloads.iter().enumerate() {
        publisher
            .publish("q/x", payload, QoS::AtLeastOnce, false, i as u16 + 1)
            .await;
    }
    publisher.disconnect().await;
    let (mut sub, ack) = b.client(client_id, false).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    while let Ok(Some(packet)) = sub.next_within(common::QUIET).await {
        match packet {
            Packet::Publish(p) => {
                sub.ack(&p).await;
                got.push(p.payload);
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    // Clean up the persistent session.
    sub.disconnect().await;
    let (c, _) = b.client(client_id, true).await;
    c.disconnect().await;
    got
}

fn numbered(n: u8, size: usize) -> Vec<u8> {
    vec![n; size]
}

#[tokio::test]
async fn max_queued_messages_drops_the_oldest_beyond_the_limit() {
    bounded(async {
        let limit = 5u8;
        let b = TestBroker::with_yaml(&format!("max_queued_messages: {limit}\n")).await;
        for (n, first_kept) in [(limit - 1, 1u8), (limit, 1), (limit + 1, 2)] {
            let before = b.broker.stats().publish_dropped;
            let payloads: Vec<Vec<u8>> = (1..=n).map(|i| numbered(i, 1)).collect();
            let got = queued_while_offline(&b, &format!("queued-{n}"), &payloads).await;
            let want: Vec<Bytes> = (first_kept..=n).map(|i| Bytes::from(vec![i])).collect();
            assert_eq!(
                got, want,
                "{n} messages queued with max_queued_messages {limit}"
            );
            let dropped = b.broker.stats().publish_dropped - before;
            assert_eq!(
                dropped,
                u64::from(first_kept - 1),
                "{n} messages: drops counted"
            );
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn max_queued_bytes_drops_the_oldest_beyond_the_limit() {
    bounded(async {
        let limit = 1000usize;
        let b = TestBroker::with_yaml(&format!("max_queued_bytes: {limit}\n")).await;
        // Ten 100-byte messages make the limit; the last one is one byte shorter (limit − 1),
        // exact (limit) or followed by a one-byte message (limit + 1).
        let cases: [(&str, Vec<Vec<u8>>, u8); 3] = [
            (
                "limit - 1",
                (1..=10)
                    .map(|i| numbered(i, if i == 10 { 99 } else { 100 }))
                    .collect(),
                1,
            ),
            ("limit", (1..=10).map(|i| numbered(i, 100)).collect(), 1),
            (
                "limit + 1",
                (1..=11)
                    .map(|i| numbered(i, if i == 11 { 1 } else { 100 }))
                    .collect(),
                2,
            ),
        ];
        for (i, (what, payloads, first_kept)) in cases.into_iter().enumerate() {
            let total: usize = payloads.iter().map(Vec::len).sum();
            assert_eq!(total, limit - 1 + i, "{what}: test set-up");
            let before = b.broker.stats().publish_dropped;
            let got = queued_while_offline(&b, &format!("bytes-{i}"), &payloads).await;
            let want: Vec<Bytes> = payloads
                .iter()
                .skip(usize::from(first_kept - 1))
                .map(|p| Bytes::from(p.clone()))
                .collect();
            assert_eq!(got, want, "{what}");
            let dropped = b.broker.stats().publish_dropped - before;
            assert_eq!(dropped, u64::from(first_kept - 1), "{what}: drops counted");
        }
        b.assert_still_serves().await;
        b.stop().await;
    })
    .await;
}

#[test]
fn the_default_configuration_is_valid_and_builds_a_broker() {
    // `Broker::default` relies on this (its `expect` cannot fire).
    let config = BrokerConfig::default();
    config
        .validate()
        .expect("the default configuration is valid");
    let broker = amqtt_broker::Broker::default();
    assert_eq!(broker.config(), &config);
}
