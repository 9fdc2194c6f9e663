//! DISCONNECT (section 3.14): a fixed header with remaining length 0, client to server.

use bytes::{BufMut, BytesMut};

use super::kind;
use crate::error::EncodeError;

/// Appends DISCONNECT.
#[inline]
pub(crate) fn encode(out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_slice(&[kind::DISCONNECT << 4, 0]);
    Ok(())
}
