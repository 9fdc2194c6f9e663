//! [`OutBuf`]: the bytes a connection has to send, as small encoded headers plus shared payloads.
//!
//! Encoding appends small packets and PUBLISH headers to a contiguous tail; a large PUBLISH
//! payload is queued as its own shared [`Bytes`] chunk instead of being copied, so one message
//! fanned out to many subscribers shares a single payload. The IO shell writes it with
//! [`bytes::Buf::chunks_vectored`] (one `writev` for many packets) and [`bytes::Buf::advance`].

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this long are queued as shared chunks; shorter ones are copied into the
/// tail, where a copy is cheaper than an extra iovec.
pub const SHARE_PAYLOAD_AT: usize = 512;

/// Outgoing bytes of one connection. Implements [`Buf`].
#[derive(Debug, Default)]
pub struct OutBuf {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl OutBuf {
    /// An empty buffer that holds no allocation.
    pub fn new() -> OutBuf {
        OutBuf::default()
    }

    /// The contiguous tail that encoders append to.
    pub fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Queues a shared chunk after everything appended so far.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if bytes.len() < SHARE_PAYLOAD_AT {
            self.tail.extend_from_slice(&bytes);
            return;
        }
        self.freeze_tail();
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// Total number of bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len + self.tail.len()
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Releases the tail's allocation once everything has been written, so an idle connection
    /// holds no write buffer.
    pub fn shrink_if_empty(&mut self) {
        if self.is_empty() {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let head = self.tail.split().freeze();
            self.len += head.len();
            self.chunks.push_back(head);
        }
    }
}

impl Buf for OutBuf {
    fn remaining(&self) -> usize {
        self.len()
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(first) => first,
            None => &self.tail,
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for chunk in self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
        {
            if n == dst.len() {
                break;
            }
            if chunk.is_empty() {
                continue;
            }
            if let Some(slot) = dst.get_mut(n) {
                *slot = std::io::IoSlice::new(chunk);
                n += 1;
            }
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(first) => {
                    let take = cnt.min(first.len());
                    first.advance(take);
                    self.len -= take;
                    cnt -= take;
                    if first.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                None => {
                    let take = cnt.min(self.tail.len());
                    self.tail.advance(take);
                    return;
                }
            }
        }
    }
}
