//! The benchmark payload: what a publisher stamps into every message and a subscriber reads back.
//!
//! Layout (little-endian), padded with zeros to the payload size:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..4  | magic `AQB1` (messages of other origins are counted as foreign, not analysed) |
//! | 4..8  | run id: random per process, so `pubsub` ignores messages of earlier runs still queued in the broker |
//! | 8..12 | publisher index |
//! | 12..16| sequence number, from 0 per publisher |
//! | 16..24| send time: nanoseconds since the Unix epoch (wall clock, so `pub` and `sub` may run in different processes on one machine) |
//!
//! Writing and reading are in place: no allocation per message.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the stamped header; the smallest payload allowed.
pub(crate) const HEADER_LEN: usize = 24;

const MAGIC: [u8; 4] = *b"AQB1";

/// What a subscriber reads from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The publishing process's run id.
    pub(crate) run: u32,
    /// The publisher's index.
    pub(crate) publisher: u32,
    /// The publisher's sequence number.
    pub(crate) seq: u32,
    /// Send time in nanoseconds since the Unix epoch.
    pub(crate) sent_ns: u64,
}

impl Stamp {
    /// Writes the stamp over the first [`HEADER_LEN`] bytes of `payload`; a shorter buffer is
    /// left untouched (arguments are checked against [`HEADER_LEN`] before any run).
    pub(crate) fn write(&self, payload: &mut [u8]) {
        if let Some(head) = payload.get_mut(..HEADER_LEN) {
            let stamp = MAGIC
                .into_iter()
                .chain(self.run.to_le_bytes())
                .chain(self.publisher.to_le_bytes())
                .chain(self.seq.to_le_bytes())
                .chain(self.sent_ns.to_le_bytes());
            for (to, from) in head.iter_mut().zip(stamp) {
                *to = from;
            }
        }
    }

    /// Reads a stamp; `None` for a payload that is too short or lacks the magic.
    pub(crate) fn read(payload: &[u8]) -> Option<Stamp> {
        let (magic, rest) = payload.split_first_chunk::<4>()?;
        if *magic != MAGIC {
            return None;
        }
        let (run, rest) = rest.split_first_chunk::<4>()?;
        let (publisher, rest) = rest.split_first_chunk::<4>()?;
        let (seq, rest) = rest.split_first_chunk::<4>()?;
        let (sent_ns, _) = rest.split_first_chunk::<8>()?;
        Some(Stamp {
            run: u32::from_le_bytes(*run),
            publisher: u32::from_le_bytes(*publisher),
            seq: u32::from_le_bytes(*seq),
            sent_ns: u64::from_le_bytes(*sent_ns),
        })
    }
}

/// This process's run id (random, fixed for the process).
pub(crate) fn run_id() -> u32 {
    static RUN_ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *RUN_ID.get_or_init(rand::random)
}

/// Wall-clock nanoseconds since the Unix epoch (0 before 1970).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_what_was_written() {
        let stamp = Stamp {
            run: 0xdead_beef,
            publisher: 7,
            seq: 0x0102_0304,
            sent_ns: 1_700_000_000_123_456_789,
        };
        let mut payload = [0u8; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
    }

    #[test]
    fn foreign_and_short_payloads_have_no_stamp() {
        assert_eq!(
            Stamp::read(b"hello world, this is not a bench payload"),
            None
        );
        assert_eq!(Stamp::read(b"AQB1"), None);
    }
}
