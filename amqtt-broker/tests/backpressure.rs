//! Publisher backpressure (issue 8): while subscribers are alive, even slower than the
//! publishers, nothing is dropped at QoS 1 (publishers are slowed instead); a subscriber that
//! never reads its socket does not hold its publishers for longer than the stall timeout, and
//! what it cannot take is dropped and counted.
//!
//! These tests assert delivery, not speed: every run is bounded by the test deadline only.

mod common;

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{bounded, pid, topic_name, TestBroker};
use mqtt_codec::packet::{Packet, Publish};
use mqtt_codec::{Decoder, QoS, QosPid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A publisher that keeps up to `window` QoS 1 messages unacknowledged, like `amqtt_bench`.
struct Pipelined {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Pipelined {
    async fn connect(b: &TestBroker, client_id: &str) -> Pipelined {
        let (client, _) = b.client(client_id, true).await;
        // The raw client has done the handshake; reuse its socket from here on.
        let stream = client.into_stream();
        Pipelined {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(1 << 20),
        }
    }

    /// Publishes `count` messages on `topic` at `qos`, `window` at a time (QoS 1: unacknowledged;
    /// QoS 0: per write), each payload carrying `index` and its sequence number, padded to
    /// `size` bytes. Returns once every QoS 1 message is acknowledged.
    async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        index: u8,
        count: u32,
        window: u32,
        size: usize,
    ) {
        let mut next = 0u32;
        let mut acked = 0u32;
        let mut out = BytesMut::new();
        while acked < count {
            while next < count && next - acked < window {
                let mut payload = BytesMut::with_capacity(size.max(5));
                payload.put_u8(index);
                payload.put_u32(next);
                payload.resize(size.max(5), 0);
                let id = u16::try_from(next % 65_535 + 1).expect("id in range");
                let qos_pid = match qos {
                    QoS::AtMostOnce => QosPid::AtMostOnce,
                    _ => QosPid::AtLeastOnce(pid(id)),
                };
                Packet::Publish(Publish {
                    dup: false,
                    qos_pid,
                    retain: false,
                    topic: topic_name(topic),
                    payload: payload.freeze(),
                })
                .encode(&mut out)
                .expect("encodable");
                next += 1;
            }
            self.stream.write_all(&out).await.expect("write");
            out.clear();
            if qos == QoS::AtMostOnce {
                acked = next;
                continue;
            }
            // At least one acknowledgement before the window refills.
            let before = acked;
            while acked == before {
                while let Some(packet) = self.decoder.decode(&mut self.buf).expect("valid") {
                    assert!(matches!(packet, Packet::PubAck(_)), "got {packet:?}");
                    acked += 1;
                }
                if acked == before {
                    let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                    assert!(n > 0, "the broker closed the publisher's connection");
                }
            }
        }
    }
}

/// Which sequence numbers arrived from each publisher index, checking per-publisher order.
#[derive(Default)]
struct Tally {
    next: HashMap<u8, u32>,
    total: u64,
}

impl Tally {
    fn record(&mut self, payload: &Bytes) {
        let mut p = payload.clone();
        let index = p.get_u8();
        let seq = p.get_u32();
        let expected = self.next.entry(index).or_insert(0);
        // [MQTT-4.6.0-6] per-publisher order is kept; any gap is a lost message.
        assert_eq!(
            seq, *expected,
            "publisher {index}: message lost or reordered"
        );
        *expected += 1;
        self.total += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_eight_pipelined_publishers_to_one_subscriber_lose_nothing() {
    bounded(async {
        // A small queue bound, so the publishers (8 × window 16, acknowledged at once by the
        // broker) outrun the subscriber by far more than it holds.
        let b = TestBroker::with_yaml("max_queued_messages: 100\n").await;
        let (mut sub, _) = b.client("sink", true).await;
        sub.subscribe(1, &[("bp/#", QoS::AtLeastOnce)]).await;
        const PUBS: u8 = 8;
        const EACH: u32 = 1500;
        let mut tasks = Vec::new();
        for i in 0..PUBS {
            let mut p = Pipelined::connect(&b, &format!("pub{i}")).await;
            tasks.push(tokio::spawn(async move {
                p.publish(&format!("bp/{i}"), QoS::AtLeastOnce, i, EACH, 16, 64)
                    .await;
                p
            }));
        }
        let mut tally = Tally::default();
        while tally.total < u64::from(PUBS) * u64::from(EACH) {
            // One PUBACK per message, each its own write: a subscriber slower than the
            // publishers.
            let p = sub.receive().await;
            tally.record(&p.payload);
        }
        for t in tasks {
            t.await.expect("publisher task");
        }
        for i in 0..PUBS {
            assert_eq!(tally.next.get(&i).copied(), Some(EACH), "publisher {i}");
        }
        sub.expect_nothing().await;
        assert_eq!(b.broker.stats().publish_dropped, 0, "a message was dropped");
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_publisher_is_slowed_not_dropped_while_the_subscriber_reads() {
    bounded(async {
        let b = TestBroker::start().await;
        let (mut sub, _) = b.client("sink", true).await;
        sub.subscribe(1, &[("bp/q0", QoS::AtMostOnce)]).await;
        let mut p = Pipelined::connect(&b, "pub").await;
        const COUNT: u32 = 50_000;
        let publisher = tokio::spawn(async move {
            p.publish("bp/q0", QoS::AtMostOnce, 0, COUNT, 64, 32).await;
            p
        });
        let mut tally = Tally::default();
        while tally.total < u64::from(COUNT) {
            let p = sub.recv_publish().await;
            tally.record(&p.payload);
        }
        publisher.await.expect("publisher task");
        assert_eq!(b.broker.stats().publish_dropped, 0, "a message was dropped");
        b.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_publishers_only_briefly_and_its_drops_are_counted() {
    bounded(async {
        let b = TestBroker::with_yaml("max_queued_messages: 100\n").await;
        // A QoS 1 subscriber that never reads: its window fills, then its mailbox.
        let (mut stuck, _) = b.client("stuck", true).await;
        stuck.subscribe(1, &[("bp/#", QoS::AtLeastOnce)]).await;
        // A healthy subscriber on the same messages.
        let (mut healthy, _) = b.client("healthy", true).await;
        healthy.subscribe(1, &[("bp/#", QoS::AtLeastOnce)]).await;
        const COUNT: u32 = 3000;
        let mut p = Pipelined::connect(&b, "pub").await;
        let publisher = tokio::spawn(async move {
            // 2 KiB payloads: the stuck subscriber's socket buffers fill quickly too.
            p.publish("bp/x", QoS::AtLeastOnce, 0, COUNT, 16, 2048)
                .await;
            p
        });
        let mut tally = Tally::default();
        while tally.total < u64::from(COUNT) {
            let p = healthy.receive().await;
            tally.record(&p.payload);
        }
        // Every message was acknowledged to the publisher (the stuck subscriber held it back
        // for at most the stall timeout: otherwise the test deadline fails this) …
        let mut p = publisher.await.expect("publisher task");
        // … and it is still served normally.
        p.publish("bp/x", QoS::AtLeastOnce, 1, 100, 16, 64).await;
        let mut second = Tally::default();
        while second.total < 100 {
            let m = healthy.receive().await;
            second.record(&m.payload);
        }
        // The stuck subscriber's excess was dropped and counted, not buffered without bound.
        let dropped = b.broker.stats().publish_dropped;
        assert!(dropped > 0, "no drop counted");
        assert!(
            dropped <= u64::from(COUNT) + 100,
            "{dropped} drops: more than the stuck subscriber was sent"
        );
        stuck.drop_connection();
        b.stop().await;
    })
    .await;
}
