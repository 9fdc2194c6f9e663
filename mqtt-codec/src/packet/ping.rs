//! PINGREQ and PINGRESP (sections 3.12 and 3.13): a fixed header with remaining length 0.

use bytes::{BufMut, BytesMut};

use crate::error::EncodeError;

/// Appends PINGREQ or PINGRESP (`packet_type` 12 or 13).
#[inline]
pub(crate) fn encode(out: &mut BytesMut, packet_type: u8) -> Result<(), EncodeError> {
    out.put_slice(&[packet_type << 4, 0]);
    Ok(())
}
