//! The subscriber loop: decodes PUBLISH packets straight from the read buffer, acknowledges
//! QoS 1/2 deliveries in batches and records every stamp in its [`Delivery`] statistics.
//!
//! It stops at its deadline, when the run's message count is reached, or, once the publishers
//! are done ([`Finish`]), when everything expected arrived or nothing came for a quiet period.

use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use mqtt_codec::{Packet, QosPid};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::BenchError;
use crate::link::Link;
use crate::payload::now_ns;
use crate::stats::{Counters, Delivery};

/// Sent to subscribers once every publisher has finished.
#[derive(Debug)]
pub(crate) struct Finish {
    /// Messages each subscriber should receive, by subscriber index.
    pub(crate) expected: Vec<u64>,
    /// Stop at this time whatever arrived.
    pub(crate) until: Instant,
    /// Stop after this long without a new message.
    pub(crate) quiet: Duration,
}

/// What one subscriber does and when it stops.
#[derive(Debug)]
pub(crate) struct SubscriberPlan {
    /// The subscriber index.
    pub(crate) index: usize,
    /// Hard stop.
    pub(crate) deadline: Instant,
    /// Stop when the run's subscribers together received this many messages.
    pub(crate) total_count: Option<u64>,
    /// Analyse only messages of this run id (`pubsub`).
    pub(crate) only_run: Option<u32>,
}

/// What one subscriber saw.
#[derive(Debug)]
pub(crate) struct SubscriberOutcome {
    /// Its statistics.
    pub(crate) delivery: Delivery,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<BenchError>,
}

/// Runs one subscriber until its plan or the [`Finish`] says to stop, then disconnects.
pub(crate) async fn run(
    mut link: Link,
    plan: SubscriberPlan,
    finish: watch::Receiver<Option<Arc<Finish>>>,
    counters: Arc<Counters>,
) -> SubscriberOutcome {
    let mut delivery = Delivery::new(plan.only_run);
    let result = receive(&mut link, &plan, finish, &counters, &mut delivery).await;
    if result.is_ok() {
        link.close().await;
    }
    SubscriberOutcome {
        delivery,
        error: result.err(),
    }
}

async fn receive(
    link: &mut Link,
    plan: &SubscriberPlan,
    mut finish_rx: watch::Receiver<Option<Arc<Finish>>>,
    counters: &Counters,
    delivery: &mut Delivery,
) -> Result<(), BenchError> {
    let mut finish: Option<Arc<Finish>> = None;
    let mut finish_open = true;
    let mut finish_known_at = Instant::now();
    let mut last_message = Instant::now();
    let sleep = tokio::time::sleep_until(plan.deadline);
    tokio::pin!(sleep);
    loop {
        let received_before = delivery.received;
        while let Some(packet) = link.next_packet()? {
            match packet {
                Packet::Publish(publish) => {
                    delivery.record(&publish.payload, now_ns());
                    match publish.qos_pid {
                        QosPid::AtMostOnce => {}
                        // PUBACK / PUBREC: fixed header, length 2, packet id (sections 3.4, 3.5).
                        QosPid::AtLeastOnce(id) => {
                            link.out.put_slice(&[0x40, 0x02]);
                            link.out.put_u16(id.get());
                        }
                        QosPid::ExactlyOnce(id) => {
                            link.out.put_slice(&[0x50, 0x02]);
                            link.out.put_u16(id.get());
                        }
                    }
                }
                Packet::PubRel(id) => {
                    // PUBCOMP (section 3.7).
                    link.out.put_slice(&[0x70, 0x02]);
                    link.out.put_u16(id.get());
                }
                Packet::PingResp => {}
                other => return Err(BenchError::Unexpected(other.name())),
            }
        }
        let now = Instant::now();
        if delivery.received > received_before {
            Counters::add(&counters.received, delivery.received - received_before);
            last_message = now;
        }

        if now >= plan.deadline {
            return Ok(());
        }
        if plan
            .total_count
            .is_some_and(|count| Counters::get(&counters.received) >= count)
        {
            return link.flush(Duration::from_secs(2)).await;
        }
        let mut wake = plan.deadline;
        if let Some(finish) = &finish {
            let expected = finish.expected.get(plan.index).copied().unwrap_or(0);
            let quiet_end = last_message.max(finish_known_at) + finish.quiet;
            if delivery.unique >= expected || now >= finish.until || now >= quiet_end {
                return link.flush(Duration::from_secs(2)).await;
            }
            wake = wake.min(finish.until).min(quiet_end);
        }
        link.ping_if_due(now);
        if let Some(ping) = link.ping_at() {
            wake = wake.min(ping);
        }
        sleep.as_mut().reset(wake);
        tokio::select! {
            biased;
            result = link.io() => result?,
            changed = finish_rx.changed(), if finish_open && finish.is_none() => {
                match changed {
                    Ok(()) => {
                        finish = finish_rx.borrow_and_update().clone();
                        finish_known_at = Instant::now();
                    }
                    Err(_) => finish_open = false,
                }
            }
            () = &mut sleep => {}
        }
    }
}
