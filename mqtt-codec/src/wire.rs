//! The primitive encodings every packet uses (section 1.5 and 2.2.3): the remaining-length
//! variable byte integer, big-endian `u16`s, and `u16`-length-prefixed strings and binaries.
//!
//! Reading works over a frozen packet body ([`Reader`]): strings and binaries become slices of
//! that body, so nothing is copied. Nothing here knows about packets or does IO.

use std::mem::MaybeUninit;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::types::PacketId;

/// The largest remaining length MQTT can express: 268,435,455 bytes (four 7-bit groups).
pub(crate) const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The largest string or binary field: its length is a `u16`.
pub(crate) const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// Decodes the remaining length that starts at `buf[0]`.
///
/// Returns `Ok(None)` while the varint is incomplete, else the value and how many bytes it took.
/// A non-minimal encoding (`0x80 0x00` for 0) is accepted: 3.1.1 does not forbid it.
#[inline]
pub(crate) fn read_remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().enumerate() {
        // [MQTT-2.2.3] at most four bytes; a fifth is malformed.
        if i == 4 {
            return Err(DecodeError::RemainingLengthTooLong);
        }
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        // Four continuation bytes: the fifth one would be too many, whatever it is.
        return Err(DecodeError::RemainingLengthTooLong);
    }
    Ok(None)
}

/// How many bytes the remaining length `len` takes on the wire (1..=4).
#[inline]
pub(crate) fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends a fixed header: the first byte and the minimal encoding of `remaining`.
#[inline]
pub(crate) fn write_fixed_header(
    out: &mut BytesMut,
    first_byte: u8,
    remaining: usize,
) -> Result<(), EncodeError> {
    let mut header = StackBuf::<5>::new();
    put_fixed_header(&mut header, first_byte, remaining)?;
    out.extend_from_slice(header.as_slice());
    Ok(())
}

/// A fixed header (the first byte and the minimal encoding of `remaining`) followed by `next`
/// as a big-endian `u16`, packed into the bytes of a little-endian word, with how many of
/// them are used (3..=7): appended with [`put_prefix`], it is one store instead of several.
#[inline]
pub(crate) fn header_word(
    first_byte: u8,
    remaining: usize,
    next: u16,
) -> Result<([u8; 8], usize), EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    let mut word = u64::from(first_byte);
    let mut shift = 8;
    let mut value = remaining;
    loop {
        let mut byte = (value & 0x7f) as u64;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        word |= byte << shift;
        shift += 8;
        if value == 0 {
            break;
        }
    }
    // At most four length bytes (checked above), so `shift` is at most 40 and both bytes fit.
    let [hi, lo] = next.to_be_bytes();
    word |= u64::from(hi) << shift | u64::from(lo) << (shift + 8);
    Ok((word.to_le_bytes(), shift / 8 + 2))
}

/// Appends the first `len` bytes of `block` by copying the whole block and cutting the buffer
/// back: a copy of a size known when compiling (a few moves) instead of a call to copy `len`
/// bytes. The caller reserves room for the whole block, so this never reallocates.
#[inline]
pub(crate) fn put_prefix<const N: usize>(out: &mut BytesMut, block: &[u8; N], len: usize) {
    let end = out.len() + len.min(N);
    out.extend_from_slice(block);
    out.truncate(end);
}

/// Appends what `fill` writes into a [`Spare`] view of `out`'s spare capacity, after reserving
/// `reserve` bytes: no capacity check or length update per field, one update at the end.
/// Returns `false`, with nothing appended, if `fill` wrote past the reservation.
#[inline]
pub(crate) fn append_with(
    out: &mut BytesMut,
    reserve: usize,
    fill: impl FnOnce(&mut Spare<'_>),
) -> bool {
    out.reserve(reserve);
    let mut spare = Spare {
        buf: out.spare_capacity_mut(),
        filled: 0,
        fits: true,
    };
    fill(&mut spare);
    let Spare { filled, fits, .. } = spare;
    if !fits {
        return false;
    }
    // SAFETY: every `Spare` method writes the bytes from `filled` to the new `filled` (and
    // possibly more) before moving `filled` past them, and none moves it when a write does not
    // fit, so `spare_capacity_mut()[..filled]` is initialized.
    unsafe { out.set_len(out.len() + filled) };
    true
}

/// A cursor writing into a buffer's spare capacity; see [`append_with`].
pub(crate) struct Spare<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
    fits: bool,
}

impl Spare<'_> {
    /// Writes `bytes`.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.filled..self.filled + bytes.len()) {
            Some(dst) => {
                copy_to_uninit(bytes, dst);
                self.filled += bytes.len();
            }
            None => self.fits = false,
        }
    }

    /// Writes the first `len` bytes of `block` by writing all of it and moving past `len`: a
    /// copy of a size known when compiling instead of a call to copy `len` bytes.
    #[inline]
    pub(crate) fn put_prefix<const N: usize>(&mut self, block: &[u8; N], len: usize) {
        match self.buf.get_mut(self.filled..self.filled + N) {
            Some(dst) => {
                copy_to_uninit(block, dst);
                self.filled += len.min(N);
            }
            None => self.fits = false,
        }
    }
}

/// Copies `src` into the start of `dst` (all of it if `dst` is long enough, else as much as
/// fits). A loop writing `MaybeUninit`s one by one is compiled to byte-by-byte stores; this is
/// one `memcpy` (or a few moves when the length is known when compiling).
#[inline(always)]
fn copy_to_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    let len = src.len().min(dst.len());
    // SAFETY: both pointers are valid for `len` bytes (`len` is at most either length), and
    // they cannot overlap: `dst` is borrowed mutably while `src` is borrowed. `MaybeUninit<u8>`
    // has the layout of `u8`, and writing initialized bytes into it is always allowed.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), len) };
}

/// Puts a fixed header into `header`; `false` only if it does not fit.
#[inline]
pub(crate) fn put_fixed_header<const N: usize>(
    header: &mut StackBuf<N>,
    first_byte: u8,
    remaining: usize,
) -> Result<bool, EncodeError> {
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    let mut fits = header.put(&[first_byte]);
    let mut value = remaining;
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        fits &= header.put(&[byte]);
        if value == 0 {
            return Ok(fits);
        }
    }
}

/// A few bytes assembled on the stack, so that a header is appended with one copy.
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    #[inline]
    pub(crate) fn new() -> StackBuf<N> {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends `bytes`; `false` (and nothing appended) if they do not fit.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) -> bool {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                true
            }
            None => false,
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Appends a `u16`-prefixed UTF-8 string, refusing what a decoder would refuse:
/// more than 65,535 bytes or a U+0000 ([MQTT-1.5.3-2]).
#[inline]
pub(crate) fn put_string(out: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    if s.len() > MAX_FIELD_LEN {
        return Err(EncodeError::StringTooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::NullCharacter);
    }
    out.put_u16(s.len() as u16);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends a string that is already known to be valid (a [`crate::TopicName`] or
/// [`crate::TopicFilter`]: at most 65,535 bytes, no U+0000).
#[inline]
pub(crate) fn put_valid_string(out: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= MAX_FIELD_LEN);
    out.put_u16(s.len() as u16);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a `u16`-prefixed binary field (will message, password).
#[inline]
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) -> Result<(), EncodeError> {
    if b.len() > MAX_FIELD_LEN {
        return Err(EncodeError::BinaryTooLong);
    }
    out.put_u16(b.len() as u16);
    out.extend_from_slice(b);
    Ok(())
}

/// The encoded size of a string or binary field: its two length bytes plus its bytes.
#[inline]
pub(crate) fn field_len(len: usize) -> usize {
    2 + len
}

/// A cursor over one packet's body. Every read checks the length first, so a short body is
/// [`DecodeError::Truncated`], never a panic.
pub(crate) struct Reader {
    body: Bytes,
}

impl Reader {
    /// A reader over a complete packet body (the bytes after the fixed header).
    #[inline]
    pub(crate) fn new(body: Bytes) -> Reader {
        Reader { body }
    }

    /// Reads one byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.body.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.body.get_u8())
    }

    /// Reads a big-endian `u16`.
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.body.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.body.get_u16())
    }

    /// Reads a `u16`-prefixed field as a slice of the body.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// The next `len` bytes, without consuming them.
    #[inline]
    pub(crate) fn peek(&self, len: usize) -> Result<&[u8], DecodeError> {
        self.body.get(..len).ok_or(DecodeError::Truncated)
    }

    /// Everything not read yet, without consuming it.
    #[inline]
    pub(crate) fn rest(&self) -> &[u8] {
        &self.body
    }

    /// Consumes the next `len` bytes as a slice of the body.
    #[inline]
    pub(crate) fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.body.len() < len {
            return Err(DecodeError::Truncated);
        }
        Ok(self.body.split_to(len))
    }

    /// Skips `len` bytes that [`Reader::peek`] has shown to be there.
    #[inline]
    pub(crate) fn skip(&mut self, len: usize) {
        self.body.advance(len.min(self.body.len()));
    }

    /// Reads a `u16`-prefixed UTF-8 string without copying it, checking [MQTT-1.5.3-1] and
    /// [MQTT-1.5.3-2].
    #[inline]
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if memchr::memchr(0, &raw).is_some() {
            return Err(DecodeError::NullCharacter);
        }
        ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads a `u16`-prefixed UTF-8 string into an owned `String`.
    #[inline]
    pub(crate) fn owned_string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from(self.string()?))
    }

    /// Succeeds only if the whole body was read.
    #[inline]
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.body.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// One pass over the bytes of a topic name or filter, eight bytes at a time: whether any is
/// U+0000, `+` or `#` (what the topic rules must look at more closely) and whether all are
/// ASCII (then they are UTF-8 without running the general decoder).
pub(crate) struct TopicBytes<'a> {
    bytes: &'a [u8],
    special: bool,
    nul: bool,
    ascii: bool,
}

impl<'a> TopicBytes<'a> {
    /// Scans `bytes`.
    #[inline]
    pub(crate) fn scan(bytes: &'a [u8]) -> TopicBytes<'a> {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        // Exact for "is any byte of `v` zero" (it may misplace which one, never whether).
        let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let word_flags = |v: u64| {
            let nul = zero_byte(v);
            let wildcard =
                zero_byte(v ^ (ONES * u64::from(b'+'))) | zero_byte(v ^ (ONES * u64::from(b'#')));
            (nul, wildcard, v & HIGH)
        };
        let (mut nul, mut wildcard, mut high) = (0u64, 0u64, 0u64);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let (n, w, h) = word_flags(load_word(word));
            nul |= n;
            wildcard |= w;
            high |= h;
        }
        // The last bytes: an overlapping load of the last eight bytes when there are that many,
        // else the bytes assembled in a register, padded with a byte that is ASCII and not
        // special. (Copying the tail into a stack array and loading it as a word stalls on store
        // forwarding, which cost more than the rest of the scan.)
        let tail = words.remainder();
        if !tail.is_empty() {
            let last = match bytes.len().checked_sub(8).and_then(|at| bytes.get(at..)) {
                Some(last) => load_word(last),
                None => tail
                    .iter()
                    .rev()
                    .fold(u64::from_le_bytes([b'a'; 8]), |w, &b| w << 8 | u64::from(b)),
            };
            let (n, w, h) = word_flags(last);
            nul |= n;
            wildcard |= w;
            high |= h;
        }
        TopicBytes {
            bytes,
            special: nul | wildcard != 0,
            nul: nul != 0,
            ascii: high == 0,
        }
    }

    /// Whether some byte is U+0000, `+` or `#`.
    #[inline]
    pub(crate) fn has_special(&self) -> bool {
        self.special
    }

    /// Whether some byte is U+0000.
    #[inline]
    pub(crate) fn has_nul(&self) -> bool {
        self.nul
    }

    /// The bytes as a `&str`, or [`DecodeError::InvalidUtf8`] ([MQTT-1.5.3-1]).
    #[inline]
    pub(crate) fn to_str(&self) -> Result<&'a str, DecodeError> {
        if self.ascii {
            // SAFETY: `scan` found no byte with the high bit set, and every sequence of ASCII
            // bytes is well-formed UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(self.bytes) });
        }
        std::str::from_utf8(self.bytes).map_err(|_| DecodeError::InvalidUtf8)
    }
}

/// The first eight bytes of `bytes` as a little-endian word (zero bytes where there are fewer).
#[inline(always)]
fn load_word(bytes: &[u8]) -> u64 {
    match bytes.first_chunk::<8>() {
        Some(word) => u64::from_le_bytes(*word),
        None => 0,
    }
}

/// A cursor over one packet's body borrowed in place from the read buffer, for packets whose
/// fields are all copied out (SUBSCRIBE, UNSUBSCRIBE, SUBACK, CONNACK): no split, no reference
/// count. Every read checks the length first, so a short body is [`DecodeError::Truncated`].
pub(crate) struct Cursor<'a> {
    body: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over a complete packet body (the bytes after the fixed header).
    #[inline]
    pub(crate) fn new(body: &'a [u8]) -> Cursor<'a> {
        Cursor { body }
    }

    /// How many bytes are left.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.body.len()
    }

    /// Reads one byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let [byte, rest @ ..] = self.body else {
            return Err(DecodeError::Truncated);
        };
        self.body = rest;
        Ok(*byte)
    }

    /// Reads a big-endian `u16`.
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let [hi, lo, rest @ ..] = self.body else {
            return Err(DecodeError::Truncated);
        };
        self.body = rest;
        Ok(u16::from_be_bytes([*hi, *lo]))
    }

    /// Reads a packet id, refusing 0 ([MQTT-2.3.1-1]).
    #[inline]
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// How many `u16`-prefixed fields, each followed by `gap` more bytes, the rest of the body
    /// holds (a last field cut short counts too), so a list of them is allocated once.
    #[inline]
    pub(crate) fn count_fields(&self, gap: usize) -> usize {
        let mut body = self.body;
        let mut count = 0;
        while let [hi, lo, rest @ ..] = body {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            body = rest.get(len + gap..).unwrap_or_default();
            count += 1;
        }
        count
    }

    /// Reads a `u16`-prefixed field as a slice of the body.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        let (field, rest) = self
            .body
            .split_at_checked(len)
            .ok_or(DecodeError::Truncated)?;
        self.body = rest;
        Ok(field)
    }

    /// Succeeds only if the whole body was read.
    #[inline]
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.body.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_len(len: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_fixed_header(&mut out, 0x30, len).unwrap();
        out[1..].to_vec()
    }

    #[test]
    fn remaining_length_uses_the_spec_boundaries() {
        // Table 2.4 of the spec.
        for (value, bytes) in [
            (0, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xff, 0xff, 0x7f]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (268_435_455, vec![0xff, 0xff, 0xff, 0x7f]),
        ] {
            assert_eq!(encode_len(value), bytes, "encoding {value}");
            assert_eq!(remaining_length_len(value), bytes.len());
            assert_eq!(
                read_remaining_length(&bytes),
                Ok(Some((value, bytes.len())))
            );
            assert_eq!(read_remaining_length(&bytes[..bytes.len() - 1]), Ok(None));
        }
    }

    #[test]
    fn the_header_word_holds_the_fixed_header_then_the_next_u16() {
        for remaining in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut expected = BytesMut::new();
            write_fixed_header(&mut expected, 0x32, remaining).unwrap();
            expected.put_u16(0xabcd);
            let (word, len) = header_word(0x32, remaining, 0xabcd).unwrap();
            assert_eq!(&word[..len], &expected[..], "remaining length {remaining}");
        }
        assert_eq!(
            header_word(0x30, MAX_REMAINING_LENGTH + 1, 0),
            Err(EncodeError::PacketTooLarge(MAX_REMAINING_LENGTH + 1))
        );
    }

    #[test]
    fn append_with_writes_prefixes_and_fields_in_order() {
        let mut out = BytesMut::from(&b"before"[..]);
        let block = *b"topic and what follows it";
        assert!(append_with(&mut out, 64, |spare| {
            spare.put_prefix(&block, 5);
            spare.put(b"/payload");
        }));
        assert_eq!(&out[..], b"beforetopic/payload");
        // A write past the reservation appends nothing.
        let mut out = BytesMut::new();
        assert!(!append_with(&mut out, 0, |spare| spare.put(&[1; 4096])));
        assert!(out.is_empty());
    }

    #[test]
    fn remaining_length_over_the_maximum_is_refused_by_the_encoder() {
        let mut out = BytesMut::new();
        assert_eq!(
            write_fixed_header(&mut out, 0x30, MAX_REMAINING_LENGTH + 1),
            Err(EncodeError::PacketTooLarge(MAX_REMAINING_LENGTH + 1))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_fifth_remaining_length_byte_is_an_error_even_before_it_arrives() {
        assert_eq!(
            read_remaining_length(&[0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::RemainingLengthTooLong)
        );
        assert_eq!(
            read_remaining_length(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::RemainingLengthTooLong)
        );
    }

    #[test]
    fn non_minimal_remaining_length_is_accepted() {
        assert_eq!(read_remaining_length(&[0x80, 0x00]), Ok(Some((0, 2))));
    }

    #[test]
    fn strings_with_nul_or_bad_utf8_are_refused() {
        let mut r = Reader::new(Bytes::from_static(b"\x00\x03a\x00b"));
        assert_eq!(r.string(), Err(DecodeError::NullCharacter));
        let mut r = Reader::new(Bytes::from_static(b"\x00\x02\xc3\x28"));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8));
        // U+D800 encoded as ED A0 80 is a surrogate: ill-formed per [MQTT-1.5.3-1].
        let mut r = Reader::new(Bytes::from_static(b"\x00\x03\xed\xa0\x80"));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8));
        let mut r = Reader::new(Bytes::from_static(b"\x00\x05ab"));
        assert_eq!(r.string(), Err(DecodeError::Truncated));
    }

    #[test]
    fn topic_bytes_finds_every_special_byte_at_every_position() {
        for len in 0..40 {
            let clean = vec![b'x'; len];
            let scan = TopicBytes::scan(&clean);
            assert!(!scan.has_special() && !scan.has_nul());
            assert_eq!(scan.to_str(), Ok(clean_str(&clean)));
            for at in 0..len {
                for special in [0, b'+', b'#'] {
                    let mut bytes = clean.clone();
                    bytes[at] = special;
                    let scan = TopicBytes::scan(&bytes);
                    assert!(scan.has_special(), "{bytes:?}");
                    assert_eq!(scan.has_nul(), special == 0, "{bytes:?}");
                }
                // A lone non-ASCII byte is not UTF-8; a whole character is.
                let mut bytes = clean.clone();
                bytes[at] = 0xc3;
                assert_eq!(
                    TopicBytes::scan(&bytes).to_str(),
                    Err(DecodeError::InvalidUtf8)
                );
                bytes.insert(at + 1, 0xa9);
                assert_eq!(TopicBytes::scan(&bytes).to_str().map(str::len), Ok(len + 1));
                assert!(!TopicBytes::scan(&bytes).has_special());
            }
        }
    }

    fn clean_str(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_bom_is_kept_in_strings() {
        // [MQTT-1.5.3-3] EF BB BF is U+FEFF and must not be stripped.
        let mut r = Reader::new(Bytes::from_static(b"\x00\x04\xef\xbb\xbfa"));
        assert_eq!(&*r.string().unwrap(), "\u{feff}a");
        r.finish().unwrap();
    }
}
