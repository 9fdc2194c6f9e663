//! The publisher loop: stamps and writes PUBLISH packets, paced or as fast as the socket takes
//! them, keeping at most `window` QoS 1/2 messages unacknowledged.
//!
//! The PUBLISH fixed header, topic and packet id are encoded once with the codec
//! ([`Publish::encode_header`]); per message the loop copies that header into the write buffer,
//! patches the packet id, appends the payload and stamps it in place. Packets accumulate in the
//! write buffer up to [`BATCH_BYTES`] and go out in one write: no allocation and no syscall per
//! message.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mqtt_codec::{Packet, PacketId, Publish, QoS, QosPid, TopicName};
use tokio::time::Instant;

use crate::error::BenchError;
use crate::link::Link;
use crate::payload::{now_ns, run_id, Stamp, HEADER_LEN};
use crate::stats::Counters;

/// Bytes queued before the publisher stops filling and waits for the socket.
const BATCH_BYTES: usize = 64 * 1024;

/// What one publisher does.
#[derive(Clone, Debug)]
pub(crate) struct PublisherPlan {
    /// The publisher index, stamped into every payload.
    pub(crate) index: u32,
    /// Where it publishes.
    pub(crate) topic: TopicName,
    /// QoS of its messages.
    pub(crate) qos: QoS,
    /// Payload size in bytes (at least [`HEADER_LEN`]).
    pub(crate) size: usize,
    /// Messages per second, or as fast as possible.
    pub(crate) rate: Option<f64>,
    /// Unacknowledged QoS 1/2 messages allowed.
    pub(crate) window: u16,
    /// Messages to send at most.
    pub(crate) count: Option<u64>,
}

/// What one publisher did.
#[derive(Debug)]
pub(crate) struct PublisherOutcome {
    /// The publisher index.
    pub(crate) index: u32,
    /// Messages stamped and queued.
    pub(crate) sent: u64,
    /// Messages acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
    pub(crate) acked: u64,
    /// When it stopped queueing new messages.
    pub(crate) publish_end: Instant,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<BenchError>,
}

/// Runs one publisher from `start` until `deadline` (or its count), then waits up to `drain`
/// for outstanding acknowledgements and disconnects.
pub(crate) async fn run(
    mut link: Link,
    plan: PublisherPlan,
    start: Instant,
    deadline: Instant,
    drain: Duration,
    counters: Arc<Counters>,
) -> PublisherOutcome {
    let mut state = State::new(&plan);
    let result = state
        .publish(&mut link, &plan, start, deadline, drain, &counters)
        .await;
    let outcome = PublisherOutcome {
        index: plan.index,
        sent: state.seq,
        acked: state.acked,
        publish_end: state.publish_end.unwrap_or_else(Instant::now),
        error: result.err(),
    };
    if outcome.error.is_none() {
        link.close().await;
    }
    outcome
}

/// The publisher's progress and its pre-encoded packet.
struct State {
    /// Fixed header, topic and packet id of every PUBLISH.
    header: Vec<u8>,
    /// Zeros to pad payloads with.
    padding: Vec<u8>,
    /// Next sequence number = messages queued so far.
    seq: u64,
    run: u32,
    acked: u64,
    in_flight: InFlight,
    publish_end: Option<Instant>,
}

impl State {
    fn new(plan: &PublisherPlan) -> State {
        // Patched per message; 1 only gives the header its length.
        #[allow(clippy::expect_used)] // A constant that is not zero: cannot fail.
        let first_id = PacketId::new(1).expect("1 is not zero");
        let template = Publish {
            dup: false,
            qos_pid: match plan.qos {
                QoS::AtMostOnce => QosPid::AtMostOnce,
                QoS::AtLeastOnce => QosPid::AtLeastOnce(first_id),
                QoS::ExactlyOnce => QosPid::ExactlyOnce(first_id),
            },
            retain: false,
            topic: plan.topic.clone(),
            payload: Bytes::from(vec![0u8; plan.size]),
        };
        let mut header = BytesMut::new();
        // The topic was validated and the payload size checked against MQTT's maximum, so the
        // header encodes; an empty header would only make the broker see malformed packets.
        let _ = template.encode_header(&mut header);
        State {
            header: header.to_vec(),
            padding: vec![0u8; plan.size],
            seq: 0,
            run: run_id(),
            acked: 0,
            in_flight: InFlight::new(plan.qos),
            publish_end: None,
        }
    }

    async fn publish(
        &mut self,
        link: &mut Link,
        plan: &PublisherPlan,
        start: Instant,
        deadline: Instant,
        drain: Duration,
        counters: &Counters,
    ) -> Result<(), BenchError> {
        let limit = plan.count.unwrap_or(u64::MAX);
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            let acked_before = self.acked;
            while let Some(packet) = link.next_packet()? {
                self.handle(packet, link)?;
            }
            Counters::add(&counters.acked, self.acked - acked_before);

            let now = Instant::now();
            let publishing = now < deadline && self.seq < limit;
            let mut wake = deadline;
            if publishing {
                let due = match plan.rate {
                    Some(rate) => {
                        let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
                        wake = start + Duration::from_secs_f64(due as f64 / rate);
                        due.min(limit)
                    }
                    None => limit,
                };
                let seq_before = self.seq;
                while self.seq < due
                    && link.out.len() < BATCH_BYTES
                    && self.in_flight.has_room(plan.window)
                {
                    self.queue_one(&mut link.out, plan.index)?;
                }
                Counters::add(&counters.sent, self.seq - seq_before);
            } else {
                let end = *self.publish_end.get_or_insert(now);
                if self.in_flight.is_empty() && link.out.is_empty() {
                    return Ok(());
                }
                if now >= end + drain {
                    return Err(BenchError::Timeout(if link.out.is_empty() {
                        "acknowledgements after publishing"
                    } else {
                        "the broker to read what was published"
                    }));
                }
                wake = end + drain;
            }
            link.ping_if_due(now);
            if let Some(ping) = link.ping_at() {
                wake = wake.min(ping);
            }
            sleep.as_mut().reset(wake);
            tokio::select! {
                biased;
                result = link.io() => result?,
                () = &mut sleep => {}
            }
        }
    }

    /// Appends one stamped PUBLISH to `out`.
    fn queue_one(&mut self, out: &mut BytesMut, publisher: u32) -> Result<(), BenchError> {
        out.extend_from_slice(&self.header);
        if let Some(id) = self.in_flight.allocate() {
            // The packet id is the last two bytes of the header (section 3.3.2.2).
            let at = out.len() - 2;
            if let Some(slot) = out.get_mut(at..) {
                slot.copy_from_slice(&id.to_be_bytes());
            }
        }
        let payload_at = out.len();
        out.extend_from_slice(&self.padding);
        if let Some(payload) = out.get_mut(payload_at..payload_at + HEADER_LEN) {
            Stamp {
                run: self.run,
                publisher,
                // Sequence numbers wrap after 2^32 messages; subscribers track far fewer.
                seq: self.seq as u32,
                sent_ns: now_ns(),
            }
            .write(payload);
        }
        self.seq += 1;
        Ok(())
    }

    /// Handles an acknowledgement from the broker.
    fn handle(&mut self, packet: Packet, link: &mut Link) -> Result<(), BenchError> {
        match packet {
            Packet::PubAck(id) if self.in_flight.qos == QoS::AtLeastOnce => {
                self.in_flight.complete(id, Stage::Sent)?;
                self.acked += 1;
            }
            Packet::PubRec(id) if self.in_flight.qos == QoS::ExactlyOnce => {
                self.in_flight.advance(id)?;
                // PUBREL (section 3.6): fixed header 0x62, length 2, packet id.
                link.out.put_slice(&[0x62, 0x02]);
                link.out.put_u16(id.get());
            }
            Packet::PubComp(id) if self.in_flight.qos == QoS::ExactlyOnce => {
                self.in_flight.complete(id, Stage::Released)?;
                self.acked += 1;
            }
            Packet::PingResp => {}
            other => return Err(BenchError::Unexpected(other.name())),
        }
        Ok(())
    }
}

/// Where a QoS 1/2 message is in its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    Free = 0,
    /// PUBLISH sent, waiting for PUBACK/PUBREC.
    Sent = 1,
    /// PUBREL sent, waiting for PUBCOMP.
    Released = 2,
}

/// Packet ids in flight: a stage per id, allocated round-robin so an id is reused as late as
/// possible.
struct InFlight {
    qos: QoS,
    stages: Vec<u8>,
    count: u16,
    next: u16,
}

impl InFlight {
    fn new(qos: QoS) -> InFlight {
        let stages = if qos == QoS::AtMostOnce {
            Vec::new()
        } else {
            vec![Stage::Free as u8; 1 << 16]
        };
        InFlight {
            qos,
            stages,
            count: 0,
            next: 1,
        }
    }

    fn has_room(&self, window: u16) -> bool {
        self.qos == QoS::AtMostOnce || self.count < window
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A free packet id, marked as sent; `None` at QoS 0.
    fn allocate(&mut self) -> Option<u16> {
        if self.qos == QoS::AtMostOnce {
            return None;
        }
        // The window (at most 65,000) is below the 65,535 ids, so a free one exists.
        loop {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            if let Some(stage) = self.stages.get_mut(usize::from(id)) {
                if *stage == Stage::Free as u8 {
                    *stage = Stage::Sent as u8;
                    self.count += 1;
                    return Some(id);
                }
            }
        }
    }

    /// PUBREC: the id moves from sent to released.
    fn advance(&mut self, id: PacketId) -> Result<(), BenchError> {
        match self.stages.get_mut(usize::from(id.get())) {
            Some(stage) if *stage == Stage::Sent as u8 => {
                *stage = Stage::Released as u8;
                Ok(())
            }
            // A repeated PUBREC for a released id is answered with PUBREL again (4.3.3).
            Some(stage) if *stage == Stage::Released as u8 => Ok(()),
            _ => Err(BenchError::UnknownPacketId(id.get())),
        }
    }

    /// PUBACK or PUBCOMP: the id is free again.
    fn complete(&mut self, id: PacketId, expected: Stage) -> Result<(), BenchError> {
        match self.stages.get_mut(usize::from(id.get())) {
            Some(stage) if *stage == expected as u8 => {
                *stage = Stage::Free as u8;
                self.count -= 1;
                Ok(())
            }
            _ => Err(BenchError::UnknownPacketId(id.get())),
        }
    }
}

#[cfg(test)]
mod tests {
    use mqtt_codec::Decoder;

    use super::*;

    fn plan(qos: QoS) -> PublisherPlan {
        PublisherPlan {
            index: 3,
            topic: TopicName::new("bench/3").unwrap(),
            qos,
            size: 40,
            rate: None,
            window: 2,
            count: None,
        }
    }

    #[test]
    fn queued_packets_decode_as_stamped_publishes_with_fresh_ids() {
        let mut state = State::new(&plan(QoS::AtLeastOnce));
        let mut out = BytesMut::new();
        state.queue_one(&mut out, 3).unwrap();
        state.queue_one(&mut out, 3).unwrap();
        assert!(!state.in_flight.has_room(2));
        let mut decoder = Decoder::default();
        for (seq, id) in [(0u32, 1u16), (1, 2)] {
            let Some(Packet::Publish(publish)) = decoder.decode(&mut out).unwrap() else {
                panic!("not a PUBLISH");
            };
            assert_eq!(publish.topic.as_str(), "bench/3");
            assert_eq!(publish.qos_pid.packet_id().map(PacketId::get), Some(id));
            assert_eq!(publish.payload.len(), 40);
            let stamp = Stamp::read(&publish.payload).unwrap();
            assert_eq!((stamp.run, stamp.publisher, stamp.seq), (run_id(), 3, seq));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn qos2_ids_are_freed_by_pubcomp_only_after_pubrec() {
        let mut in_flight = InFlight::new(QoS::ExactlyOnce);
        let id = PacketId::new(in_flight.allocate().unwrap()).unwrap();
        assert!(in_flight.complete(id, Stage::Released).is_err());
        in_flight.advance(id).unwrap();
        in_flight.complete(id, Stage::Released).unwrap();
        assert!(in_flight.is_empty());
        assert!(matches!(
            in_flight.advance(id),
            Err(BenchError::UnknownPacketId(1))
        ));
    }

    #[test]
    fn qos0_publishes_carry_no_packet_id() {
        let mut state = State::new(&plan(QoS::AtMostOnce));
        let mut out = BytesMut::new();
        state.queue_one(&mut out, 3).unwrap();
        let Some(Packet::Publish(publish)) = Decoder::default().decode(&mut out).unwrap() else {
            panic!("not a PUBLISH");
        };
        assert_eq!(publish.qos_pid, QosPid::AtMostOnce);
        assert!(state.in_flight.has_room(0));
    }
}
