//! CONNACK (section 3.2): the acknowledge flags (Session Present) and the return code.

use bytes::{BufMut, BytesMut};

use super::kind;
use crate::error::{DecodeError, EncodeError};
use crate::types::ConnectReturnCode;
use crate::wire::Cursor;

/// CONNACK: the server's answer to CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session; always `false` when refusing
    /// ([MQTT-3.2.2-4]). MQTT 3.1 has no such flag: send `false` to a 3.1 client.
    pub session_present: bool,
    /// Accepted or the reason for refusing.
    pub return_code: ConnectReturnCode,
}

impl ConnAck {
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        // [MQTT-3.2.2-4]
        if self.session_present && self.return_code != ConnectReturnCode::Accepted {
            return Err(EncodeError::SessionPresentWithRefusal);
        }
        out.put_slice(&[
            kind::CONNACK << 4,
            2,
            u8::from(self.session_present),
            self.return_code.as_u8(),
        ]);
        Ok(())
    }

    #[inline]
    pub(crate) fn decode(body: &mut Cursor<'_>) -> Result<ConnAck, DecodeError> {
        let flags = body.u8()?;
        let code = body.u8()?;
        // [MQTT-3.2.2-1] bits 7-1 of the acknowledge flags are reserved.
        if flags & 0xfe != 0 {
            return Err(DecodeError::InvalidConnAck);
        }
        let return_code = ConnectReturnCode::from_u8(code).ok_or(DecodeError::InvalidConnAck)?;
        let session_present = flags == 1;
        // [MQTT-3.2.2-4]
        if session_present && return_code != ConnectReturnCode::Accepted {
            return Err(DecodeError::InvalidConnAck);
        }
        Ok(ConnAck {
            session_present,
            return_code,
        })
    }
}
