//! SUBACK (section 3.9): the packet id of the SUBSCRIBE and one return code per filter.

use bytes::{BufMut, BytesMut};

use super::kind;
use crate::error::{DecodeError, EncodeError};
use crate::types::{PacketId, QoS};
use crate::wire::{self, Cursor};

/// One return code of a SUBACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubAckReturnCode {
    /// The subscription was granted at this maximum QoS.
    Success(QoS),
    /// 0x80: the subscription was refused.
    Failure,
}

impl SubAckReturnCode {
    /// The wire value: 0x00, 0x01, 0x02 or 0x80.
    pub fn as_u8(self) -> u8 {
        match self {
            SubAckReturnCode::Success(qos) => qos.as_u8(),
            SubAckReturnCode::Failure => 0x80,
        }
    }

    /// The return code for a wire value; `None` for the reserved values ([MQTT-3.9.3-2]).
    pub fn from_u8(value: u8) -> Option<SubAckReturnCode> {
        match value {
            0x80 => Some(SubAckReturnCode::Failure),
            _ => QoS::from_u8(value).map(SubAckReturnCode::Success),
        }
    }
}

/// SUBACK: one return code per filter of the SUBSCRIBE, in order.
///
/// The decoder accepts a SUBACK with no return code; whether the count matches the SUBSCRIBE
/// is for the client state machine to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// The packet id of the SUBSCRIBE answered.
    pub packet_id: PacketId,
    /// One return code per requested filter.
    pub return_codes: Vec<SubAckReturnCode>,
}

impl SubAck {
    pub(crate) fn remaining_len(&self) -> usize {
        2 + self.return_codes.len()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let remaining = self.remaining_len();
        out.reserve(5 + remaining);
        wire::write_fixed_header(out, kind::SUBACK << 4, remaining)?;
        out.put_u16(self.packet_id.get());
        for code in &self.return_codes {
            out.put_u8(code.as_u8());
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn decode(body: &mut Cursor<'_>) -> Result<SubAck, DecodeError> {
        let packet_id = body.packet_id()?;
        let mut return_codes = Vec::with_capacity(body.remaining());
        while body.remaining() > 0 {
            let code = body.u8()?;
            return_codes.push(
                SubAckReturnCode::from_u8(code)
                    .ok_or(DecodeError::InvalidSubAckReturnCode(code))?,
            );
        }
        Ok(SubAck {
            packet_id,
            return_codes,
        })
    }
}
