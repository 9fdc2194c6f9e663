//! Publish/subscribe on the wire: QoS flows, downgrade, overlapping subscriptions, retained
//! messages, wildcards and `$` topics, wills, ordering.

mod common;

use common::*;
use mqtt_codec::packet::Packet;
use mqtt_codec::{KeepAlive, QoS, QosPid};

#[tokio::test]
async fn qos_0_1_2_end_to_end() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sub", true).await;
        let ack = sub.subscribe(1, &[("t/#", QoS::ExactlyOnce)]).await;
        assert_eq!(
            ack.return_codes
                .iter()
                .map(|c| c.as_u8())
                .collect::<Vec<_>>(),
            vec![2]
        );
        let (mut publisher, _) = b.client("pub", true).await;
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let topic = format!("t/{i}");
            publisher
                .publish(
                    &topic,
                    format!("m{i}").as_bytes(),
                    qos,
                    false,
                    10 + i as u16,
                )
                .await;
            let p = sub.receive().await;
            assert_eq!(p.topic.as_str(), topic);
            assert_eq!(p.payload, format!("m{i}").as_bytes());
            assert_eq!(p.qos_pid.qos(), qos);
            assert!(!p.retain);
            assert!(!p.dup);
        }
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn delivery_qos_is_the_minimum_of_published_and_granted() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut s0, _) = b.client("s0", true).await;
        s0.subscribe(1, &[("q", QoS::AtMostOnce)]).await;
        let (mut s2, _) = b.client("s2", true).await;
        s2.subscribe(1, &[("q", QoS::ExactlyOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("q", b"one", QoS::AtLeastOnce, false, 1)
            .await;
        assert_eq!(s0.receive().await.qos_pid.qos(), QoS::AtMostOnce);
        assert_eq!(s2.receive().await.qos_pid.qos(), QoS::AtLeastOnce);
        publisher
            .publish("q", b"zero", QoS::AtMostOnce, false, 2)
            .await;
        assert_eq!(s2.receive().await.qos_pid.qos(), QoS::AtMostOnce);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_granted_qos() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(
            1,
            &[
                ("o/#", QoS::AtLeastOnce),
                ("o/+", QoS::AtMostOnce),
                ("o/x", QoS::ExactlyOnce),
            ],
        )
        .await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("o/x", b"once", QoS::ExactlyOnce, false, 1)
            .await;
        let p = sub.receive().await;
        assert_eq!(p.qos_pid.qos(), QoS::ExactlyOnce);
        sub.expect_nothing().await;
        // Downgraded by the publish QoS, still one copy.
        publisher
            .publish("o/y", b"y", QoS::AtLeastOnce, false, 2)
            .await;
        assert_eq!(sub.receive().await.qos_pid.qos(), QoS::AtLeastOnce);
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn resubscribing_replaces_the_granted_qos() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(1, &[("r", QoS::ExactlyOnce)]).await;
        sub.subscribe(2, &[("r", QoS::AtMostOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("r", b"x", QoS::ExactlyOnce, false, 1)
            .await;
        assert_eq!(sub.receive().await.qos_pid.qos(), QoS::AtMostOnce);
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wildcards_and_dollar_topics_follow_section_4_7() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut all, _) = b.client("all", true).await;
        all.subscribe(1, &[("#", QoS::AtMostOnce)]).await;
        let (mut plus, _) = b.client("plus", true).await;
        plus.subscribe(1, &[("+/b", QoS::AtMostOnce)]).await;
        let (mut dollar, _) = b.client("dollar", true).await;
        dollar.subscribe(1, &[("$app/#", QoS::AtMostOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;

        // [MQTT-4.7.2-1] `#` and `+/…` do not match topics starting with `$`.
        publisher
            .publish("$app/b", b"d", QoS::AtMostOnce, false, 1)
            .await;
        assert_eq!(dollar.recv_publish().await.topic.as_str(), "$app/b");
        publisher
            .publish("a/b", b"a", QoS::AtMostOnce, false, 2)
            .await;
        assert_eq!(
            all.recv_publish().await.topic.as_str(),
            "a/b",
            "`#` skipped the $ topic"
        );
        assert_eq!(
            plus.recv_publish().await.topic.as_str(),
            "a/b",
            "`+/b` skipped the $ topic"
        );
        dollar.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn clients_cannot_publish_to_sys_topics() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sys, _) = b.client("sys", true).await;
        sys.subscribe(1, &[("$SYS/#", QoS::AtLeastOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        // Acknowledged per its QoS, then dropped; the connection stays usable (unlike aMQTT).
        publisher
            .publish("$SYS/broker/fake", b"x", QoS::AtLeastOnce, true, 1)
            .await;
        publisher.ping().await;
        sys.expect_nothing().await;
        assert_eq!(b.broker.retained_count(), 0);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn broker_publishes_to_sys_reach_sys_subscribers() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sys, _) = b.client("sys", true).await;
        sys.subscribe(1, &[("$SYS/#", QoS::AtMostOnce)]).await;
        let (mut all, _) = b.client("all", true).await;
        all.subscribe(1, &[("#", QoS::AtMostOnce)]).await;
        let msg = mqtt_codec::session::Message::new(
            topic_name("$SYS/broker/uptime"),
            &b"42"[..],
            QoS::AtMostOnce,
            false,
        );
        assert_eq!(b.broker.publish(msg), 1);
        assert_eq!(&sys.recv_publish().await.payload[..], b"42");
        all.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn retained_messages_are_stored_replaced_and_cleared() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut publisher, _) = b.client("pub", true).await;
        let (mut live, _) = b.client("live", true).await;
        live.subscribe(1, &[("r/#", QoS::AtLeastOnce)]).await;

        publisher
            .publish("r/1", b"first", QoS::AtLeastOnce, true, 1)
            .await;
        let p = live.receive().await;
        assert!(!p.retain, "[MQTT-3.3.1-9] live forwards have retain 0");
        publisher
            .publish("r/1", b"second", QoS::AtMostOnce, true, 2)
            .await;
        live.receive().await;

        // A new subscription gets the newest retained message, with retain 1, at min QoS.
        let (mut late, _) = b.client("late", true).await;
        late.subscribe(1, &[("r/+", QoS::AtLeastOnce)]).await;
        let p = late.receive().await;
        assert!(p.retain);
        assert_eq!(&p.payload[..], b"second");
        assert_eq!(p.qos_pid.qos(), QoS::AtMostOnce);
        late.expect_nothing().await;

        // An empty retained payload clears the topic ([MQTT-3.3.1-10]) and is forwarded live.
        publisher
            .publish("r/1", b"", QoS::AtLeastOnce, true, 3)
            .await;
        assert!(live.receive().await.payload.is_empty());
        let (mut later, _) = b.client("later", true).await;
        later.subscribe(1, &[("r/#", QoS::AtLeastOnce)]).await;
        later.expect_nothing().await;
        assert_eq!(b.broker.retained_count(), 0);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn retained_message_sent_on_subscribe_follows_the_suback() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("status", b"up", QoS::ExactlyOnce, true, 1)
            .await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(7, &[("status", QoS::ExactlyOnce)]).await;
        let p = sub.receive().await;
        assert!(p.retain);
        assert_eq!(p.qos_pid.qos(), QoS::ExactlyOnce);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(1, &[("u/1", QoS::AtMostOnce), ("u/2", QoS::AtMostOnce)])
            .await;
        sub.unsubscribe(2, &["u/1", "never/subscribed"]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("u/1", b"no", QoS::AtMostOnce, false, 1)
            .await;
        publisher
            .publish("u/2", b"yes", QoS::AtMostOnce, false, 2)
            .await;
        assert_eq!(&sub.recv_publish().await.payload[..], b"yes");
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn too_deep_filter_gets_suback_failure() {
    bounded(async {
        let b = TestBroker::with_yaml("max_topic_levels: 4\n").await;
        let (mut sub, _) = b.client("sub", true).await;
        let ack = sub
            .subscribe(
                1,
                &[("a/b/c/d/e", QoS::AtMostOnce), ("a/b/c/d", QoS::AtMostOnce)],
            )
            .await;
        assert_eq!(
            ack.return_codes
                .iter()
                .map(|c| c.as_u8())
                .collect::<Vec<_>>(),
            vec![0x80, 0]
        );
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn duplicate_qos2_publish_is_delivered_once() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(1, &[("x", QoS::AtMostOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        let mut p = publish("x", b"once", QoS::ExactlyOnce, false, 5);
        publisher.send(Packet::Publish(p.clone())).await;
        assert_eq!(publisher.recv().await, Packet::PubRec(pid(5)));
        p.dup = true;
        publisher.send(Packet::Publish(p)).await;
        assert_eq!(publisher.recv().await, Packet::PubRec(pid(5)));
        publisher.send(Packet::PubRel(pid(5))).await;
        assert_eq!(publisher.recv().await, Packet::PubComp(pid(5)));
        assert_eq!(&sub.recv_publish().await.payload[..], b"once");
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn will_is_published_on_abnormal_close_with_its_qos_and_retain() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("will/#", QoS::ExactlyOnce)]).await;
        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("dying", true);
        conn.will = Some(will("will/dying", b"bye", QoS::AtLeastOnce, true));
        c.handshake(conn).await;
        c.drop_connection();
        let p = watcher.receive().await;
        assert_eq!(&p.payload[..], b"bye");
        assert_eq!(p.qos_pid.qos(), QoS::AtLeastOnce);
        assert!(!p.retain, "live delivery of a retained will has retain 0");
        // Retained: a later subscriber gets it with retain 1.
        let (mut late, _) = b.client("late", true).await;
        late.subscribe(1, &[("will/dying", QoS::AtLeastOnce)]).await;
        let p = late.receive().await;
        assert!(p.retain);
        assert_eq!(&p.payload[..], b"bye");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn will_is_published_on_protocol_violation() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("will/#", QoS::AtMostOnce)]).await;
        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("rude", true);
        conn.will = Some(will("will/rude", b"violated", QoS::AtMostOnce, false));
        c.handshake(conn).await;
        // PUBLISH with QoS 3 [MQTT-3.3.1-4].
        c.send_raw(&[0x36, 5, 0, 1, b'x', 0, 1]).await;
        c.expect_closed().await;
        assert_eq!(&watcher.recv_publish().await.payload[..], b"violated");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn no_will_after_disconnect() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut watcher, _) = b.client("watcher", true).await;
        watcher.subscribe(1, &[("will/#", QoS::AtMostOnce)]).await;
        let mut c = RawClient::connect(b.addr).await;
        let mut conn = connect("polite", true);
        conn.keep_alive = KeepAlive::from_secs(30);
        conn.will = Some(will(
            "will/polite",
            b"should not be sent",
            QoS::AtMostOnce,
            false,
        ));
        c.handshake(conn).await;
        c.disconnect().await;
        watcher.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ten_thousand_qos1_messages_arrive_in_order() {
    bounded(async {
        const N: u32 = 10_000;
        const WINDOW: u32 = 100;
        // The broker acknowledges a publisher at once, so nothing slows it down to the
        // subscriber's pace: queue bounds large enough for the whole run keep this test about
        // ordering (the drop-oldest bound has its own test).
        let b = TestBroker::with_yaml("max_queued_messages: 20000\n").await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(1, &[("seq", QoS::AtLeastOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        let receiver = tokio::spawn(async move {
            for i in 0..N {
                let p = sub.receive().await;
                assert_eq!(p.qos_pid.qos(), QoS::AtLeastOnce);
                let n = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
                assert_eq!(n, i, "out of order");
            }
            sub.expect_nothing().await;
        });
        // The publisher keeps at most WINDOW PUBLISH unacknowledged, like a real client.
        let mut acked = 0;
        for i in 0..N {
            let id = (i % 60_000 + 1) as u16;
            publisher
                .send(Packet::Publish(publish(
                    "seq",
                    &i.to_be_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    id,
                )))
                .await;
            while i + 1 - acked > WINDOW {
                assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
                acked += 1;
            }
        }
        while acked < N {
            assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
            acked += 1;
        }
        receiver.await.unwrap();
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_stall_others() {
    bounded(async {
        let b = TestBroker::with_yaml("max_queued_messages: 100\n").await;
        let (mut stuck, _) = b.client("stuck", true).await;
        stuck.subscribe(1, &[("load", QoS::AtMostOnce)]).await;
        let (mut fine, _) = b.client("fine", true).await;
        fine.subscribe(1, &[("load", QoS::AtMostOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        let payload = vec![7u8; 16 * 1024];
        // About 32 MiB to a client that never reads its socket.
        for i in 0..2_000u32 {
            publisher
                .publish("load", &payload, QoS::AtMostOnce, false, 1)
                .await;
            let p = fine.recv_publish().await;
            assert_eq!(p.payload.len(), payload.len(), "message {i}");
        }
        publisher.ping().await;
        drop(stuck);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn qos2_to_subscriber_completes_with_pubrel_and_pubcomp() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sub", true).await;
        sub.subscribe(1, &[("q2", QoS::ExactlyOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("q2", b"a", QoS::ExactlyOnce, false, 1)
            .await;
        let p = sub.recv_publish().await;
        let QosPid::ExactlyOnce(id) = p.qos_pid else {
            panic!("{p:?}")
        };
        sub.send(Packet::PubRec(id)).await;
        assert_eq!(sub.recv().await, Packet::PubRel(id));
        sub.send(Packet::PubComp(id)).await;
        sub.ping().await;
        b.stop().await;
    })
    .await;
}
