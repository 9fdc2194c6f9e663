//! Counting: live counters for the progress line, per-subscriber delivery statistics (loss,
//! duplicates, reordering, latency) and their merge.
//!
//! Each connection task owns its statistics and adds to the shared atomic [`Counters`] once per
//! read or write batch, never per message, so threads do not contend on a cache line per
//! message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::payload::Stamp;

/// Highest sequence number tracked exactly; a larger one (a corrupt or foreign payload) would
/// need a huge bitmap and is counted as foreign instead. 2^28 messages per publisher is far
/// beyond any bounded run.
const MAX_TRACKED_SEQ: u32 = 1 << 28;
/// Publishers tracked at most (a bound on memory against corrupt payloads).
const MAX_TRACKED_PUBLISHERS: usize = 1 << 16;
/// Latencies are recorded in microseconds up to one hour, 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Run-wide counters read by the progress line.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Messages stamped and queued by publishers.
    pub(crate) sent: AtomicU64,
    /// QoS 1/2 messages acknowledged (PUBACK or PUBCOMP).
    pub(crate) acked: AtomicU64,
    /// Messages received by subscribers (duplicates included).
    pub(crate) received: AtomicU64,
    /// Connections established.
    pub(crate) connected: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter (relaxed: only totals matter).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Reads a counter.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What one subscriber saw.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Only messages of this run are analysed (`pubsub`); others count as foreign.
    only_run: Option<u32>,
    /// Per (run id, publisher index): which sequence numbers arrived.
    publishers: HashMap<(u32, u32), SeqTracker>,
    /// Messages received, duplicates included.
    pub(crate) received: u64,
    /// Messages received for the first time.
    pub(crate) unique: u64,
    /// Messages received again.
    pub(crate) duplicates: u64,
    /// Messages that arrived after a higher sequence number of the same publisher.
    pub(crate) out_of_order: u64,
    /// Messages without a benchmark stamp.
    pub(crate) foreign: u64,
    /// End-to-end latency in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Wall-clock ns of the first and last message received.
    pub(crate) first_ns: Option<u64>,
    pub(crate) last_ns: Option<u64>,
}

impl Delivery {
    /// Empty statistics; with `only_run`, messages of other runs count as foreign.
    pub(crate) fn new(only_run: Option<u32>) -> Delivery {
        Delivery {
            only_run,
            publishers: HashMap::new(),
            received: 0,
            unique: 0,
            duplicates: 0,
            out_of_order: 0,
            foreign: 0,
            latency_us: new_histogram(),
            first_ns: None,
            last_ns: None,
        }
    }

    /// Records one received payload at wall-clock time `now_ns`.
    pub(crate) fn record(&mut self, payload: &[u8], now_ns: u64) {
        self.received += 1;
        self.first_ns.get_or_insert(now_ns);
        self.last_ns = Some(now_ns);
        let Some(stamp) = Stamp::read(payload) else {
            self.foreign += 1;
            return;
        };
        let key = (stamp.run, stamp.publisher);
        let known = self.publishers.contains_key(&key);
        if stamp.seq >= MAX_TRACKED_SEQ
            || self.only_run.is_some_and(|run| run != stamp.run)
            || (!known && self.publishers.len() >= MAX_TRACKED_PUBLISHERS)
        {
            self.foreign += 1;
            return;
        }
        match self.publishers.entry(key).or_default().record(stamp.seq) {
            Arrival::New { in_order } => {
                self.unique += 1;
                if !in_order {
                    self.out_of_order += 1;
                }
            }
            Arrival::Duplicate => self.duplicates += 1,
        }
        let latency_us = now_ns.saturating_sub(stamp.sent_ns) / 1000;
        self.latency_us
            .saturating_record(latency_us.min(MAX_LATENCY_US));
    }

    /// Sequence numbers missing between the first and the highest one seen, per publisher:
    /// the loss a subscriber can tell without knowing what was sent.
    pub(crate) fn gaps(&self) -> u64 {
        self.publishers.values().map(SeqTracker::gaps).sum()
    }

    /// Adds another subscriber's statistics to these.
    pub(crate) fn merge(&mut self, other: &Delivery) {
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.foreign += other.foreign;
        let _ = self.latency_us.add(&other.latency_us);
        self.first_ns = min_opt(self.first_ns, other.first_ns);
        self.last_ns = self.last_ns.max(other.last_ns);
    }
}

/// Which sequence numbers of one publisher arrived, as a bitmap.
#[derive(Debug, Default)]
struct SeqTracker {
    seen: Vec<u64>,
    first: Option<u32>,
    highest: Option<u32>,
    unique: u64,
}

/// How a sequence number arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// First time; `in_order` when it is above every number seen before.
    New { in_order: bool },
    /// Seen before.
    Duplicate,
}

impl SeqTracker {
    fn record(&mut self, seq: u32) -> Arrival {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if self.seen.len() <= word {
            // Amortised growth, as a Vec does: not an allocation per message.
            self.seen.resize(word + 1, 0);
        }
        let Some(slot) = self.seen.get_mut(word) else {
            return Arrival::Duplicate;
        };
        if *slot & bit != 0 {
            return Arrival::Duplicate;
        }
        *slot |= bit;
        self.unique += 1;
        self.first = Some(self.first.map_or(seq, |f| f.min(seq)));
        let in_order = !matches!(self.highest, Some(h) if seq <= h);
        if in_order {
            self.highest = Some(seq);
        }
        Arrival::New { in_order }
    }

    fn gaps(&self) -> u64 {
        match (self.first, self.highest) {
            (Some(first), Some(highest)) => {
                (u64::from(highest - first) + 1).saturating_sub(self.unique)
            }
            _ => 0,
        }
    }
}

/// A histogram for microsecond latencies.
#[allow(clippy::expect_used)] // Constant, valid bounds (see below): cannot fail.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 µs to one hour at 3 significant digits: constant, valid bounds (low >= 1,
    // high >= 2 * low, sigfig <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant, valid histogram bounds")
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(publisher: u32, seq: u32, sent_ns: u64) -> [u8; 32] {
        let mut buf = [0u8; 32];
        Stamp {
            run: 1,
            publisher,
            seq,
            sent_ns,
        }
        .write(&mut buf);
        buf
    }

    #[test]
    fn loss_duplicates_and_reordering_are_told_apart() {
        let mut delivery = Delivery::new(None);
        for seq in [0, 1, 3, 2, 3, 6] {
            delivery.record(&payload(0, seq, 1_000), 2_000_000);
        }
        delivery.record(b"not a stamped payload at all, no", 2_000_000);
        assert_eq!(delivery.received, 7);
        assert_eq!(delivery.unique, 5);
        assert_eq!(delivery.duplicates, 1);
        assert_eq!(delivery.out_of_order, 1, "2 after 3");
        assert_eq!(delivery.gaps(), 2, "4 and 5 never came");
        assert_eq!(delivery.foreign, 1);
        assert_eq!(delivery.latency_us.len(), 6);
        assert_eq!(delivery.latency_us.value_at_quantile(0.5), 1999);
    }

    #[test]
    fn merged_statistics_add_up() {
        let mut a = Delivery::new(None);
        let mut b = Delivery::new(None);
        a.record(&payload(0, 0, 0), 10_000);
        b.record(&payload(1, 0, 0), 5_000);
        b.record(&payload(1, 0, 0), 20_000);
        a.merge(&b);
        assert_eq!((a.received, a.unique, a.duplicates), (3, 2, 1));
        assert_eq!((a.first_ns, a.last_ns), (Some(5_000), Some(20_000)));
        assert_eq!(a.latency_us.len(), 3);
    }

    #[test]
    fn messages_of_another_run_are_foreign_when_filtering() {
        let mut delivery = Delivery::new(Some(2));
        delivery.record(&payload(0, 0, 0), 1_000);
        assert_eq!(
            (delivery.received, delivery.unique, delivery.foreign),
            (1, 0, 1)
        );
    }
}
