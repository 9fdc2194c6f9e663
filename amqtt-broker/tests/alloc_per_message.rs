//! The publish path allocates nothing per message (issue 8): a counting global allocator
//! watches the whole process while a publisher's stream of QoS 0 and QoS 1 PUBLISH packets is
//! routed to a subscriber. Per-batch allocations (read buffers, event and transmit queues) are
//! allowed; they are shared by the many messages of one socket read.
//!
//! The test clients here encode everything up front and only count bytes on the way back, so
//! what is counted during the measured part is the broker's work.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use common::{bounded, pid, topic_name, TestBroker};
use mqtt_codec::packet::{Packet, Publish};
use mqtt_codec::{QoS, QosPid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// `count` PUBLISH packets on `topic`, encoded into one buffer.
fn stream_of(topic: &str, qos: QoS, count: u16) -> BytesMut {
    let mut out = BytesMut::new();
    let payload = Bytes::from_static(&[7u8; 32]);
    for i in 0..count {
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => QosPid::AtLeastOnce(pid(i + 1)),
        };
        Packet::Publish(Publish {
            dup: false,
            qos_pid,
            retain: false,
            topic: topic_name(topic),
            payload: payload.clone(),
        })
        .encode(&mut out)
        .expect("encodable");
    }
    out
}

async fn allocations_per_message(qos: QoS) -> f64 {
    const COUNT: u16 = 20_000;
    let b = TestBroker::start().await;
    // The subscriber asks for QoS 0 so that it needs to send nothing back.
    let (mut sub, _) = b.client("sink", true).await;
    sub.subscribe(1, &[("alloc/t", QoS::AtMostOnce)]).await;
    let mut sub = sub.into_stream();
    let (publisher, _) = b.client("source", true).await;
    let mut publisher = publisher.into_stream();
    let input = stream_of("alloc/t", qos, COUNT);
    // Each delivered PUBLISH: header (2), topic (2 + 7), payload (32).
    let expected = usize::from(COUNT) * (2 + 2 + 7 + 32);
    let mut got = vec![0u8; 64 * 1024];
    // Warm-up: one round so per-thread scratch and the connections' first buffers exist.
    let warm = stream_of("alloc/t", QoS::AtMostOnce, 100);
    publisher.write_all(&warm).await.expect("write");
    let mut received = 0;
    while received < 100 * (2 + 2 + 7 + 32) {
        received += sub.read(&mut got).await.expect("read");
    }

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let (write, ()) = tokio::join!(publisher.write_all(&input), async {
        let mut received = 0;
        while received < expected {
            let n = sub.read(&mut got).await.expect("read");
            assert!(n > 0, "the broker closed the subscriber");
            received += n;
        }
    });
    write.expect("write");
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    drop(publisher);
    drop(sub);
    b.stop().await;
    (after - before) as f64 / f64::from(COUNT)
}

// One test: the counter is process-wide, so nothing else may run beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_publishes_allocates_per_batch_not_per_message() {
    bounded(async {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let per_message = allocations_per_message(qos).await;
            eprintln!("{qos:?}: {per_message:.4} allocations per message");
            assert!(
                per_message < 0.5,
                "{per_message:.3} allocations per message on the {qos:?} publish path"
            );
        }
    })
    .await;
}
