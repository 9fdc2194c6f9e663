//! PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK (sections 3.4 to 3.7 and 3.11): a fixed header
//! and a packet id, nothing else.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::types::PacketId;

/// Appends a two-byte acknowledgement with `first_byte` (type and flags) and `id`.
#[inline]
pub(crate) fn encode(out: &mut BytesMut, first_byte: u8, id: PacketId) -> Result<(), EncodeError> {
    let id = id.get().to_be_bytes();
    out.put_slice(&[first_byte, 2, id[0], id[1]]);
    Ok(())
}

/// Decodes the body of an acknowledgement: exactly a non-zero packet id.
#[inline]
pub(crate) fn decode_in_place(body: &[u8]) -> Result<PacketId, DecodeError> {
    match *body {
        [hi, lo] => PacketId::new(u16::from_be_bytes([hi, lo])).ok_or(DecodeError::ZeroPacketId),
        [_, _, ref rest @ ..] => Err(DecodeError::TrailingBytes(rest.len())),
        _ => Err(DecodeError::Truncated),
    }
}
