//! Persistent sessions: offline queueing, session present, clean session, bounds, expiry,
//! retransmission with DUP.

mod common;

use std::time::Duration;

use common::*;
use mqtt_codec::packet::Packet;
use mqtt_codec::QoS;

#[tokio::test]
async fn offline_qos1_and_qos2_messages_are_queued_and_delivered_with_session_present() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, ack) = b.client("keeper", false).await;
        assert!(!ack.session_present);
        sub.subscribe(1, &[("q/#", QoS::ExactlyOnce)]).await;
        sub.disconnect().await;

        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("q/1", b"one", QoS::AtLeastOnce, false, 1)
            .await;
        publisher
            .publish("q/0", b"zero", QoS::AtMostOnce, false, 2)
            .await;
        publisher
            .publish("q/2", b"two", QoS::ExactlyOnce, false, 3)
            .await;

        let (mut sub, ack) = b.client("keeper", false).await;
        assert!(ack.session_present, "[MQTT-3.2.2-2]");
        let first = sub.receive().await;
        assert_eq!(
            (&first.payload[..], first.qos_pid.qos()),
            (&b"one"[..], QoS::AtLeastOnce)
        );
        assert!(
            !first.retain,
            "queued messages are not retained messages (aMQTT sends retain 1)"
        );
        let second = sub.receive().await;
        assert_eq!(
            (&second.payload[..], second.qos_pid.qos()),
            (&b"two"[..], QoS::ExactlyOnce)
        );
        // QoS 0 is not kept for an offline client.
        sub.expect_nothing().await;
        // The subscription survived too.
        publisher
            .publish("q/3", b"live", QoS::AtLeastOnce, false, 4)
            .await;
        assert_eq!(&sub.receive().await.payload[..], b"live");
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn clean_session_discards_the_stored_session() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("forgetful", false).await;
        sub.subscribe(1, &[("c", QoS::AtLeastOnce)]).await;
        sub.disconnect().await;
        let (c, ack) = b.client("forgetful", true).await;
        assert!(!ack.session_present);
        c.disconnect().await;
        // Clean session 1 also discards at disconnect: nothing is left.
        let (mut sub, ack) = b.client("forgetful", false).await;
        assert!(!ack.session_present);
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("c", b"x", QoS::AtLeastOnce, false, 1)
            .await;
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn clean_session_client_leaves_nothing_behind() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut c, _) = b.client("transient", true).await;
        c.subscribe(1, &[("a", QoS::AtLeastOnce), ("b/#", QoS::AtMostOnce)])
            .await;
        assert_eq!(b.broker.subscription_count(), 2);
        c.disconnect().await;
        let (probe, _) = b.client("probe", true).await;
        // The disconnect is processed before the next connection is served by the same broker,
        // but on another task: wait for it rather than sleeping a fixed time.
        for _ in 0..100 {
            if b.broker.subscription_count() == 0 && b.broker.session_count() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(b.broker.subscription_count(), 0);
        assert_eq!(b.broker.session_count(), 1, "only the probe");
        probe.disconnect().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn offline_queue_bound_drops_the_oldest() {
    bounded(async {
        let b = TestBroker::with_yaml("max_queued_messages: 5\n").await;
        let (mut sub, _) = b.client("slowpoke", false).await;
        sub.subscribe(1, &[("b", QoS::AtLeastOnce)]).await;
        sub.disconnect().await;
        let (mut publisher, _) = b.client("pub", true).await;
        for i in 0..8u8 {
            publisher
                .publish("b", &[i], QoS::AtLeastOnce, false, u16::from(i) + 1)
                .await;
        }
        let (mut sub, ack) = b.client("slowpoke", false).await;
        assert!(ack.session_present);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(sub.receive().await.payload[0]);
        }
        assert_eq!(got, vec![3, 4, 5, 6, 7], "the 3 oldest were dropped");
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unacknowledged_messages_are_retransmitted_with_dup_after_reconnect() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("forgets-to-ack", false).await;
        sub.subscribe(1, &[("d", QoS::AtLeastOnce)]).await;
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("d", b"again", QoS::AtLeastOnce, false, 1)
            .await;
        let first = sub.recv_publish().await;
        assert!(!first.dup);
        sub.drop_connection();

        let (mut sub, ack) = b.client("forgets-to-ack", false).await;
        assert!(ack.session_present);
        let again = sub.recv_publish().await;
        assert!(again.dup, "[MQTT-4.4.0-1] retransmitted with DUP");
        assert_eq!(again.qos_pid, first.qos_pid, "same packet id");
        assert_eq!(&again.payload[..], b"again");
        sub.ack(&again).await;
        sub.expect_nothing().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn session_expiry_interval_drops_old_offline_sessions() {
    bounded(async {
        let b = TestBroker::with_yaml("session_expiry_interval: 0.2\n").await;
        let (mut sub, _) = b.client("ephemeral", false).await;
        sub.subscribe(1, &[("e", QoS::AtLeastOnce)]).await;
        sub.disconnect().await;
        // Wait (bounded by the test deadline) for the expiry check to remove the session.
        while b.broker.session_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.broker.subscription_count(), 0);
        let (_sub, ack) = b.client("ephemeral", false).await;
        assert!(!ack.session_present);
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn persistent_session_survives_a_lost_connection_and_queues_meanwhile() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("flaky", false).await;
        sub.subscribe(1, &[("f", QoS::AtLeastOnce)]).await;
        sub.drop_connection();
        let (mut publisher, _) = b.client("pub", true).await;
        publisher
            .publish("f", b"while away", QoS::AtLeastOnce, false, 1)
            .await;
        // The lost connection may still be tearing down: the message is either queued in the
        // mailbox and moved to the session, or queued in the stored session directly.
        let (mut sub, ack) = b.client("flaky", false).await;
        assert!(ack.session_present);
        assert_eq!(&sub.receive().await.payload[..], b"while away");
        sub.send(Packet::Disconnect).await;
        b.stop().await;
    })
    .await;
}
